import Testing

@testable import FluxWire

private let codec = WireFrameCodec()

private func frameBytes(
    version: UInt8 = WireFrameHeader.magicVersion, type: UInt16 = WireMessageType.ping, flags: UInt8 = 0,
    correlationID: UInt64 = 7, payload: [UInt8] = []
) -> [UInt8] {
    var w = WireWriter()
    w.writeU8(version)
    w.writeU16(type)
    w.writeU8(flags)
    w.writeU64(correlationID)
    for byte in payload { w.writeU8(byte) }
    return w.bytes
}

private func decodeError(_ bytes: [UInt8], codec: WireFrameCodec = codec) -> WireError? {
    do {
        _ = try codec.decode(bytes)
        return nil
    } catch {
        return error
    }
}

@Suite struct WireFrameTests {
    @Test func headerLayoutIsBigEndianAndTwelveBytes() throws {
        let envelope = WireEnvelope(
            type: 0x0102, flags: [.reply, .error], correlationID: 0x0A0B_0C0D_0E0F_1011, payload: [9, 8])
        let bytes = try codec.encode(envelope)
        #expect(bytes == [0xF1, 0x01, 0x02, 0b110, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 9, 8])
    }

    @Test func roundTripsSmallPayloadUncompressed() throws {
        let envelope = WireEnvelope(type: WireMessageType.forward, correlationID: 42, payload: Array(0..<200))
        let bytes = try codec.encode(envelope)
        #expect(bytes[3] & 1 == 0)
        #expect(try codec.decode(bytes) == envelope)
    }

    @Test func compressesLargeCompressiblePayload() throws {
        let payload = [UInt8](repeating: 0x41, count: 64 * 1024)
        let envelope = WireEnvelope(type: WireMessageType.forward, flags: .reply, correlationID: 3, payload: payload)
        let bytes = try codec.encode(envelope)
        #expect(bytes[3] & 1 == 1)
        #expect(bytes.count < 1024)
        let decoded = try codec.decode(bytes)
        #expect(decoded == envelope)
        #expect(!decoded.header.flags.contains(.compressed))
    }

    @Test func leavesIncompressiblePayloadAlone() throws {
        var rng = SplitMix(seed: 1)
        let payload = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let bytes = try codec.encode(WireEnvelope(type: WireMessageType.forward, payload: payload))
        #expect(bytes[3] & 1 == 0)
        #expect(bytes.count == WireFrameHeader.size + payload.count)
    }

    @Test func refusesToEncodeOversizedFrame() {
        let small = WireFrameCodec(limits: WireLimits(maxFrameSize: 100, compressionThreshold: 1 << 20))
        #expect(throws: WireError.frameTooLarge(length: 112, max: 100)) {
            try small.encode(WireEnvelope(type: WireMessageType.ping, payload: [UInt8](repeating: 1, count: 100)))
        }
    }

    @Test func tooLongFrame() {
        let small = WireFrameCodec(limits: WireLimits(maxFrameSize: 64))
        #expect(
            decodeError(frameBytes(payload: [UInt8](repeating: 0, count: 60)), codec: small)
                == .frameTooLarge(length: 72, max: 64))
        #expect(throws: WireError.frameTooLarge(length: 65, max: 64)) { try small.checkLength(65) }
        #expect(throws: WireError.frameTooLarge(length: Int(UInt32.max), max: 64)) {
            try small.checkLength(.max)
        }
    }

    @Test func truncatedHeader() {
        #expect(decodeError(Array(frameBytes().prefix(11))) == .truncatedHeader(length: 11))
        #expect(decodeError([]) == .truncatedHeader(length: 0))
        #expect(throws: WireError.truncatedHeader(length: 3)) { try codec.checkLength(3) }
    }

    @Test func unknownVersion() {
        #expect(decodeError(frameBytes(version: 0xF2)) == .unsupportedVersion(0xF2))
        #expect(decodeError(frameBytes(version: 0x00)) == .unsupportedVersion(0))
    }

    @Test func unknownType() {
        #expect(decodeError(frameBytes(type: 0x7777)) == .unknownType(0x7777))
    }

    @Test func reservedFlags() {
        #expect(decodeError(frameBytes(flags: 0x08)) == .reservedFlags(0x08))
    }

    @Test func badCompression() throws {
        // Size prefix only.
        #expect(
            decodeError(frameBytes(flags: 1, payload: [0, 0, 0, 5]))
                == .badCompression("shorter than its size prefix and one block byte"))
        // Zero original size.
        #expect(
            decodeError(frameBytes(flags: 1, payload: [0, 0, 0, 0, 0x10])) == .badCompression("original size is zero"))
        // Garbage block.
        let garbage = decodeError(frameBytes(flags: 1, payload: [0, 0, 0, 100, 0xFF, 0xFF, 0xFF, 0xFF]))
        guard case .badCompression = garbage else {
            Issue.record("expected badCompression, got \(String(describing: garbage))")
            return
        }
        // A valid block whose size prefix lies (says one byte more).
        let payload = [UInt8](repeating: 7, count: 5000)
        var good = try codec.encode(WireEnvelope(type: WireMessageType.ping, payload: payload))
        #expect(good[3] & 1 == 1)
        good[15] &+= 1  // low byte of the original size: 5000 → 5001
        #expect(decodeError(good) == .badCompression("block decompressed to 5000 bytes, size prefix says 5001"))
        // A claim no LZ4 block of that length could expand to.
        guard case .badCompression = decodeError(frameBytes(flags: 1, payload: [0, 0x10, 0, 0, 0x00])) else {
            Issue.record("impossible ratio not refused")
            return
        }
    }

    @Test func decompressedTooLarge() throws {
        let small = WireFrameCodec(limits: WireLimits(maxDecompressedSize: 4096))
        let payload = [UInt8](repeating: 7, count: 5000)
        let bytes = try codec.encode(WireEnvelope(type: WireMessageType.ping, payload: payload))
        #expect(decodeError(bytes, codec: small) == .decompressedTooLarge(length: 5000, max: 4096))
        // A claimed size of 4 GiB is refused before any allocation.
        #expect(
            decodeError(frameBytes(flags: 1, payload: [0xFF, 0xFF, 0xFF, 0xFF, 0]))
                == .decompressedTooLarge(length: Int(UInt32.max), max: WireLimits.default.maxDecompressedSize))
    }

    @Test func lengthScannerChecksPrefixesAcrossChunkBoundaries() throws {
        let small = WireFrameCodec(limits: WireLimits(maxFrameSize: 100))
        var stream: [UInt8] = []
        for length in [12, 100, 50] {
            stream += [0, 0, 0, UInt8(length)] + [UInt8](repeating: 0xAB, count: length)
        }
        // Any chunking of a good stream passes.
        for chunk in [1, 3, 7, 64, stream.count] {
            var scanner = WireLengthScanner()
            var i = 0
            while i < stream.count {
                let end = min(i + chunk, stream.count)
                try scan(&scanner, Array(stream[i..<end]), small).get()
                i = end
            }
        }
        // A too-long prefix after a good frame is caught as soon as its 4 bytes arrive.
        var scanner = WireLengthScanner()
        let bad: [UInt8] = [0, 0, 0, 12] + [UInt8](repeating: 0, count: 12) + [0, 0, 0, 101]
        #expect(throws: WireError.frameTooLarge(length: 101, max: 100)) {
            try scan(&scanner, bad, small).get()
        }
    }
}

private func scan(_ scanner: inout WireLengthScanner, _ bytes: [UInt8], _ codec: WireFrameCodec) -> Result<
    Void, WireError
> {
    bytes.withUnsafeBytes { raw in
        Result { () throws(WireError) in try scanner.scan(raw, codec: codec) }
    }
}

/// Deterministic generator for test data.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
