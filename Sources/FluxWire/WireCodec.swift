/// Appends FluxWire primitives to a byte array.
///
/// Integers are fixed-width big-endian (`u8`…`u64`) or LEB128 varints; strings
/// and byte strings are a varint length then the bytes; lists are a varint count
/// then the elements.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func writeU8(_ value: UInt8) { bytes.append(value) }
    public mutating func writeBool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func writeU16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    public mutating func writeU32(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    public mutating func writeU64(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func writeString(_ value: String) {
        var utf8 = value
        utf8.withUTF8 { buffer in
            writeVarint(UInt64(buffer.count))
            bytes.append(contentsOf: buffer)
        }
    }

    public mutating func writeBytes(_ value: [UInt8]) {
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func writeCount(_ count: Int) { writeVarint(UInt64(count)) }
}

/// Reads FluxWire primitives from a payload. Every read is bounds-checked and
/// every length or count is checked against both its bound and the bytes left
/// before anything is allocated, so a payload can never make the reader
/// allocate more than its own size.
public struct WireReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var index: Int
    /// The message version read by `WireMessage.decode`, for `init(from:)`.
    public internal(set) var messageVersion: UInt8 = 0

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.index = 0
    }

    public var remaining: Int { bytes.count - index }

    public mutating func readU8(_ field: String) throws(WireError) -> UInt8 {
        guard index < bytes.count else { throw .truncated(field: field) }
        defer { index += 1 }
        return bytes[index]
    }

    public mutating func readBool(_ field: String) throws(WireError) -> Bool {
        switch try readU8(field) {
        case 0: return false
        case 1: return true
        case let other: throw .invalidValue(field: field, reason: "boolean byte \(other) is neither 0 nor 1")
        }
    }

    public mutating func readU16(_ field: String) throws(WireError) -> UInt16 {
        UInt16(truncatingIfNeeded: try readFixed(field, width: 2))
    }

    public mutating func readU32(_ field: String) throws(WireError) -> UInt32 {
        UInt32(truncatingIfNeeded: try readFixed(field, width: 4))
    }

    public mutating func readU64(_ field: String) throws(WireError) -> UInt64 {
        try readFixed(field, width: 8)
    }

    private mutating func readFixed(_ field: String, width: Int) throws(WireError) -> UInt64 {
        guard remaining >= width else { throw .truncated(field: field) }
        var value: UInt64 = 0
        for i in index..<(index + width) { value = value << 8 | UInt64(bytes[i]) }
        index += width
        return value
    }

    public mutating func readVarint(_ field: String) throws(WireError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readU8(field)
            let part = UInt64(byte & 0x7f)
            // The tenth byte may carry only the top bit of a 64-bit value.
            if shift == 63 && part > 1 { throw .varintOverflow(field: field) }
            value |= part << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift > 63 { throw .varintOverflow(field: field) }
        }
    }

    /// A varint that must fit `max` (e.g. a port, a status code).
    public mutating func readVarint(_ field: String, max: UInt64) throws(WireError) -> UInt64 {
        let value = try readVarint(field)
        guard value <= max else { throw .invalidValue(field: field, reason: "\(value) exceeds \(max)") }
        return value
    }

    private mutating func readLength(_ field: String, max: Int) throws(WireError) -> Int {
        let length = try readVarint(field)
        guard length <= UInt64(max) else { throw .lengthOverBound(field: field, length: length, max: max) }
        guard length <= UInt64(remaining) else { throw .truncated(field: field) }
        return Int(length)
    }

    public mutating func readBytes(_ field: String, max: Int) throws(WireError) -> [UInt8] {
        let length = try readLength(field, max: max)
        defer { index += length }
        return Array(bytes[index..<(index + length)])
    }

    public mutating func readString(_ field: String, max: Int) throws(WireError) -> String {
        let length = try readLength(field, max: max)
        defer { index += length }
        let slice = bytes[index..<(index + length)]
        guard let string = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8(field: field) }
        return string
    }

    /// A list count, bounded by `max` and by the bytes left (every element
    /// takes at least `minElementSize` bytes), so `reserveCapacity(count)` is safe.
    public mutating func readCount(_ field: String, max: Int, minElementSize: Int = 1) throws(WireError) -> Int {
        let count = try readVarint(field)
        guard count <= UInt64(max) else { throw .countOverBound(field: field, count: count, max: max) }
        guard count <= UInt64(remaining) / UInt64(Swift.max(minElementSize, 1)) else {
            throw .truncated(field: field)
        }
        return Int(count)
    }

    /// Throws unless every byte was consumed.
    public func finish() throws(WireError) {
        guard remaining == 0 else { throw .trailingBytes(count: remaining) }
    }
}
