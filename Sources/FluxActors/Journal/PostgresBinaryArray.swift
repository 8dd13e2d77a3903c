import Foundation

/// A one-dimensional PostgreSQL array in the binary wire format (what `array_recv` reads), built
/// straight into bytes: the journal sends a batch as eight of these, so neither side formats or
/// parses array text (no quoting, no escaping, no number printing).
///
/// Layout: ndim = 1, flags = 0 (no NULLs), element type OID, length, lower bound = 1, then each
/// element as a 4-byte length and its binary value; all integers big-endian.
struct PostgresBinaryArray {
    enum Element {
        case int4, int8, text, bool

        /// The element type's OID (pg_type).
        var oid: UInt32 {
            switch self {
            case .int4: 23
            case .int8: 20
            case .text: 25
            case .bool: 16
            }
        }

        /// The array type's OID (pg_type), for the parameter's declared type.
        var arrayOID: UInt32 {
            switch self {
            case .int4: 1007
            case .int8: 1016
            case .text: 1009
            case .bool: 1000
            }
        }
    }

    let element: Element
    private(set) var bytes: [UInt8] = []
    private(set) var count: Int32 = 0
    /// Where the array's length goes (patched as elements arrive).
    private static let lengthOffset = 12

    init(_ element: Element, reserving bytesCapacity: Int = 0) {
        self.element = element
        bytes.reserveCapacity(20 + bytesCapacity)
        append32(1)  // ndim
        append32(0)  // flags: no NULLs
        append32(element.oid)
        append32(0)  // length, patched
        append32(1)  // lower bound
    }

    mutating func append(_ value: Int32) {
        precondition(element == .int4, "int4 into a \(element) array")
        append32(4)
        append32(UInt32(bitPattern: value))
        didAppend()
    }

    mutating func append(_ value: Int64) {
        precondition(element == .int8, "int8 into a \(element) array")
        append32(8)
        let v = UInt64(bitPattern: value)
        append32(UInt32(truncatingIfNeeded: v >> 32))
        append32(UInt32(truncatingIfNeeded: v))
        didAppend()
    }

    mutating func append(_ value: Bool) {
        precondition(element == .bool, "bool into a \(element) array")
        append32(1)
        bytes.append(value ? 1 : 0)
        didAppend()
    }

    /// Appends UTF-8 text; PostgreSQL text cannot hold a NUL byte (`.corrupt`).
    mutating func append(_ value: String) throws(JournalError) {
        precondition(element == .text, "text into a \(element) array")
        try Self.appendText(value, into: &bytes)
        didAppend()
    }

    /// A text value in PostgreSQL's binary format (32-bit big-endian length, then UTF-8), as both
    /// arrays and binary COPY rows carry it; text cannot hold a NUL byte (`.corrupt`).
    static func appendText(_ value: String, into bytes: inout [UInt8]) throws(JournalError) {
        var value = value
        let ok = value.withUTF8 { utf8 -> Bool in
            guard utf8.isEmpty || memchr(utf8.baseAddress!, 0, utf8.count) == nil else { return false }
            withUnsafeBytes(of: UInt32(utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: utf8)
            return true
        }
        if !ok { throw .corrupt("journal event contains a NUL byte, which PostgreSQL cannot store") }
    }

    private mutating func didAppend() {
        count += 1
        let c = UInt32(bitPattern: count)
        bytes[Self.lengthOffset] = UInt8(truncatingIfNeeded: c >> 24)
        bytes[Self.lengthOffset + 1] = UInt8(truncatingIfNeeded: c >> 16)
        bytes[Self.lengthOffset + 2] = UInt8(truncatingIfNeeded: c >> 8)
        bytes[Self.lengthOffset + 3] = UInt8(truncatingIfNeeded: c)
    }

    private mutating func append32(_ v: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 24))
        bytes.append(UInt8(truncatingIfNeeded: v >> 16))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }
}
