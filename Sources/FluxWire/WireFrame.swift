import CLZ4

/// Bits of the header's flags byte. Bits 3–7 are reserved and must be zero.
public struct WireFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The payload on the wire is `u32 BE original size ‖ LZ4 block`.
    public static let compressed = WireFlags(rawValue: 1 << 0)
    /// The frame answers the ask with the same correlation id.
    public static let reply = WireFlags(rawValue: 1 << 1)
    /// The reply is an error (payload is a `WireErrorReply`).
    public static let error = WireFlags(rawValue: 1 << 2)

    static let known: WireFlags = [.compressed, .reply, .error]
}

/// The fixed 12-byte header that follows the 4-byte length prefix.
public struct WireFrameHeader: Hashable, Sendable {
    /// High nibble 0xF is the magic, low nibble the protocol version (1).
    public static let magicVersion: UInt8 = 0xF1
    public static let size = 12

    public var type: UInt16
    public var flags: WireFlags
    public var correlationID: UInt64

    public init(type: UInt16, flags: WireFlags = [], correlationID: UInt64 = 0) {
        self.type = type
        self.flags = flags
        self.correlationID = correlationID
    }
}

/// Size limits of one connection. All are enforced before memory is allocated.
public struct WireLimits: Hashable, Sendable {
    /// Largest frame (header + payload as sent, without the length prefix).
    public var maxFrameSize: Int
    /// Largest payload after LZ4 decompression.
    public var maxDecompressedSize: Int
    /// Payloads longer than this are LZ4-compressed when that makes them smaller.
    public var compressionThreshold: Int

    public init(
        maxFrameSize: Int = 4 * 1024 * 1024,
        maxDecompressedSize: Int = 16 * 1024 * 1024,
        compressionThreshold: Int = 1024
    ) {
        // LZ4 works on Int32 sizes; keep every limit well inside that.
        self.maxFrameSize = min(max(maxFrameSize, WireFrameHeader.size), 1 << 30)
        self.maxDecompressedSize = min(max(maxDecompressedSize, 0), 1 << 30)
        self.compressionThreshold = max(compressionThreshold, 0)
    }

    public static let `default` = WireLimits()
}

/// One frame as the node sees it: header plus the payload after decompression.
public struct WireEnvelope: Hashable, Sendable {
    public var header: WireFrameHeader
    public var payload: [UInt8]

    public init(header: WireFrameHeader, payload: [UInt8]) {
        self.header = header
        self.payload = payload
    }

    public init(type: UInt16, flags: WireFlags = [], correlationID: UInt64 = 0, payload: [UInt8]) {
        self.header = WireFrameHeader(type: type, flags: flags, correlationID: correlationID)
        self.payload = payload
    }
}

/// Pure frame codec: bytes in, `WireEnvelope` out and back. No NIO types, so the
/// fuzz target compiles it directly.
public struct WireFrameCodec: Sendable {
    public var limits: WireLimits

    public init(limits: WireLimits = .default) {
        self.limits = limits
    }

    /// Checks a length prefix before anything of that size is buffered.
    public func checkLength(_ length: UInt32) throws(WireError) {
        guard Int(length) <= limits.maxFrameSize else {
            throw .frameTooLarge(length: Int(length), max: limits.maxFrameSize)
        }
        guard Int(length) >= WireFrameHeader.size else {
            throw .truncatedHeader(length: Int(length))
        }
    }

    /// Decodes one frame body (what follows the length prefix).
    public func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> WireEnvelope {
        guard bytes.count <= limits.maxFrameSize else {
            throw .frameTooLarge(length: bytes.count, max: limits.maxFrameSize)
        }
        guard bytes.count >= WireFrameHeader.size else {
            throw .truncatedHeader(length: bytes.count)
        }
        guard bytes[0] == WireFrameHeader.magicVersion else {
            throw .unsupportedVersion(bytes[0])
        }
        let type = UInt16(bytes[1]) << 8 | UInt16(bytes[2])
        guard WireMessageType.isKnown(type) else { throw .unknownType(type) }
        let flags = WireFlags(rawValue: bytes[3])
        guard flags.isSubset(of: .known) else { throw .reservedFlags(flags.rawValue) }
        var correlationID: UInt64 = 0
        for i in 4..<12 { correlationID = correlationID << 8 | UInt64(bytes[i]) }
        let body = UnsafeRawBufferPointer(rebasing: bytes[WireFrameHeader.size...])
        let payload: [UInt8]
        if flags.contains(.compressed) {
            payload = try Self.decompress(body, max: limits.maxDecompressedSize)
        } else {
            payload = Array(body)
        }
        var header = WireFrameHeader(type: type, flags: flags, correlationID: correlationID)
        header.flags.remove(.compressed)
        return WireEnvelope(header: header, payload: payload)
    }

    public func decode(_ bytes: [UInt8]) throws(WireError) -> WireEnvelope {
        do {
            return try bytes.withUnsafeBytes { raw in try decode(raw) }
        } catch let error as WireError {
            throw error
        } catch {
            preconditionFailure("only WireError is thrown")
        }
    }

    /// Encodes a frame body (header + possibly compressed payload), without the
    /// length prefix. Compresses when the payload is over the threshold and LZ4
    /// makes it smaller. Throws if the result would exceed `maxFrameSize`.
    public func encode(_ frame: WireEnvelope) throws(WireError) -> [UInt8] {
        var flags = frame.header.flags
        flags.remove(.compressed)
        var body: [UInt8]? = nil
        if frame.payload.count > limits.compressionThreshold, frame.payload.count <= limits.maxDecompressedSize,
            let packed = Self.compress(frame.payload), packed.count < frame.payload.count
        {
            body = packed
            flags.insert(.compressed)
        }
        let payload = body ?? frame.payload
        let total = WireFrameHeader.size + payload.count
        guard total <= limits.maxFrameSize else {
            throw .frameTooLarge(length: total, max: limits.maxFrameSize)
        }
        var out = [UInt8]()
        out.reserveCapacity(total)
        out.append(WireFrameHeader.magicVersion)
        out.append(UInt8(truncatingIfNeeded: frame.header.type >> 8))
        out.append(UInt8(truncatingIfNeeded: frame.header.type))
        out.append(flags.rawValue)
        for shift in stride(from: 56, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: frame.header.correlationID >> UInt64(shift)))
        }
        out.append(contentsOf: payload)
        return out
    }

    /// `u32 BE original size ‖ LZ4 block`, or nil if LZ4 fails.
    static func compress(_ input: [UInt8]) -> [UInt8]? {
        guard !input.isEmpty, input.count <= Int(LZ4_MAX_INPUT_SIZE) else { return nil }
        let bound = Int(LZ4_compressBound(Int32(input.count)))
        var out = [UInt8](repeating: 0, count: 4 + bound)
        let written: Int32 = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                LZ4_compress_default(
                    src.baseAddress!.assumingMemoryBound(to: CChar.self),
                    dst.baseAddress!.advanced(by: 4).assumingMemoryBound(to: CChar.self),
                    Int32(input.count), Int32(bound))
            }
        }
        guard written > 0 else { return nil }
        let size = UInt32(input.count)
        out[0] = UInt8(truncatingIfNeeded: size >> 24)
        out[1] = UInt8(truncatingIfNeeded: size >> 16)
        out[2] = UInt8(truncatingIfNeeded: size >> 8)
        out[3] = UInt8(truncatingIfNeeded: size)
        out.removeLast(bound - Int(written))
        return out
    }

    static func decompress(_ body: UnsafeRawBufferPointer, max: Int) throws(WireError) -> [UInt8] {
        guard body.count > 4 else { throw .badCompression("shorter than its size prefix and one block byte") }
        let size = Int(body[0]) << 24 | Int(body[1]) << 16 | Int(body[2]) << 8 | Int(body[3])
        guard size > 0 else { throw .badCompression("original size is zero") }
        // Checked before allocating: a tiny frame must not make us reserve gigabytes.
        guard size <= max else { throw .decompressedTooLarge(length: size, max: max) }
        // LZ4 cannot expand more than ~255x; a larger claim is a lie we refuse early.
        guard size <= (body.count - 4) * 255 else {
            throw .badCompression("original size \(size) impossible for \(body.count - 4) compressed bytes")
        }
        let block = UnsafeRawBufferPointer(rebasing: body[4...])
        var out = [UInt8](repeating: 0, count: size)
        let got: Int32 = out.withUnsafeMutableBytes { dst in
            LZ4_decompress_safe(
                block.baseAddress!.assumingMemoryBound(to: CChar.self),
                dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                Int32(block.count), Int32(size))
        }
        guard got >= 0 else { throw .badCompression("corrupt LZ4 block") }
        guard Int(got) == size else {
            throw .badCompression("block decompressed to \(got) bytes, size prefix says \(size)")
        }
        return out
    }
}

extension WireEnvelope {
    public init<M: WireMessage>(_ message: M, flags: WireFlags = [], correlationID: UInt64 = 0) {
        self.init(type: M.type, flags: flags, correlationID: correlationID, payload: message.encodedPayload())
    }

    /// A reply; the server fills in the correlation id of the ask.
    public static func reply<M: WireMessage>(_ message: M) -> WireEnvelope {
        WireEnvelope(message, flags: .reply)
    }

    /// An error reply (`WireErrorReply` with the error flag).
    public static func errorReply(code: String, message: String) -> WireEnvelope {
        WireEnvelope(WireErrorReply(code: code, message: message), flags: [.reply, .error])
    }

    public var type: UInt16 { header.type }
    public var correlationID: UInt64 { header.correlationID }
    public var isReply: Bool { header.flags.contains(.reply) }
    public var isError: Bool { header.flags.contains(.error) }

    /// Decodes the payload as `M`. An error reply becomes `WireError.remote`;
    /// another type becomes `WireError.unexpectedMessage`.
    public func decode<M: WireMessage>(as: M.Type = M.self) throws(WireError) -> M {
        if M.type != WireMessageType.errorReply, isError || header.type == WireMessageType.errorReply {
            let reply = try WireErrorReply.decode(payload)
            throw .remote(code: reply.code, message: reply.message)
        }
        guard header.type == M.type else { throw .unexpectedMessage(expected: M.type, got: header.type) }
        return try M.decode(payload)
    }
}
