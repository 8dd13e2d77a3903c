/// Compact JSON objects written field by field, for the journal's `data` column on the checkout
/// path: events are encoded several times per checkout, and Foundation's `JSONEncoder` (keyed
/// containers, key conversion, boxing) cost about 12 % of a node's CPU per checkout.
///
/// Keys are written in the order the caller gives them; callers give them sorted by their UTF-8
/// bytes, which is what `JSONEncoder`'s `.sortedKeys` wrote before, so stored text keeps its shape
/// (ApplicationEventTests compares both byte for byte). `nil` optionals are left out, as the
/// synthesized `Codable` conformances did.
struct JSONObjectWriter {
    private(set) var bytes: [UInt8]
    private var needsComma = false

    init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
        bytes.append(UInt8(ascii: "{"))
    }

    /// The object's text (closes it).
    consuming func finish() -> String {
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func key(_ name: StaticString) {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        needsComma = true
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func string(_ name: StaticString, _ value: String) {
        key(name)
        JSONWriter.writeString(value, into: &bytes)
    }

    mutating func string(_ name: StaticString, _ value: String?) {
        if let value { string(name, value) }
    }

    mutating func int(_ name: StaticString, _ value: some BinaryInteger) {
        key(name)
        Self.writeInt(Int64(value), into: &bytes)
    }

    mutating func int(_ name: StaticString, _ value: (some BinaryInteger)?) {
        if let value { int(name, value) }
    }

    mutating func bool(_ name: StaticString, _ value: Bool) {
        key(name)
        bytes.append(contentsOf: value ? Self.trueBytes : Self.falseBytes)
    }

    mutating func json(_ name: StaticString, _ value: JSONValue) {
        key(name)
        JSONWriter.write(value, into: &bytes)
    }

    mutating func strings(_ name: StaticString, _ values: [String]) {
        array(name, values) { v, out in JSONWriter.writeString(v, into: &out) }
    }

    mutating func doubles(_ name: StaticString, _ values: [Double]) {
        array(name, values) { v, out in Self.writeDouble(v, into: &out) }
    }

    private mutating func array<T>(_ name: StaticString, _ values: [T], _ write: (T, inout [UInt8]) -> Void) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (n, v) in values.enumerated() {
            if n > 0 { bytes.append(UInt8(ascii: ",")) }
            write(v, &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// A nested object under `name`, written by `body`.
    mutating func object(_ name: StaticString, _ body: (inout JSONObjectWriter) -> Void) {
        key(name)
        nested(body)
    }

    /// An array of objects under `name`, one per element, each written by `body`.
    mutating func objects<T>(_ name: StaticString, _ items: [T], _ body: (inout JSONObjectWriter, T) -> Void) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (n, item) in items.enumerated() {
            if n > 0 { bytes.append(UInt8(ascii: ",")) }
            nested { body(&$0, item) }
        }
        bytes.append(UInt8(ascii: "]"))
    }

    private mutating func nested(_ body: (inout JSONObjectWriter) -> Void) {
        let outer = needsComma
        needsComma = false
        bytes.append(UInt8(ascii: "{"))
        body(&self)
        bytes.append(UInt8(ascii: "}"))
        needsComma = outer
    }

    private static let trueBytes = Array("true".utf8)
    private static let falseBytes = Array("false".utf8)

    /// Decimal digits without going through `String`.
    static func writeInt(_ value: Int64, into out: inout [UInt8]) {
        if value == 0 {
            out.append(UInt8(ascii: "0"))
            return
        }
        var magnitude = value.magnitude
        if value < 0 { out.append(UInt8(ascii: "-")) }
        let start = out.count
        while magnitude > 0 {
            out.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        }
        out[start...].reverse()
    }

    /// A whole number as an integer (as `JSONEncoder` writes it), otherwise the shortest text that
    /// reads back as the same `Double`; not-finite values (never stored) as `null`.
    static func writeDouble(_ value: Double, into out: inout [UInt8]) {
        guard value.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        if value == value.rounded(), abs(value) < 9.0e15 {
            writeInt(Int64(value), into: &out)
        } else {
            out.append(contentsOf: String(value).utf8)
        }
    }
}
