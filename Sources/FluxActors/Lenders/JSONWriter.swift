import Foundation

/// Fast JSON text for lender request bodies and fast parsing of lender replies: the connector's
/// hot path (one render and one parse per attempt) without `JSONEncoder`/`JSONDecoder`.
/// Keys are written sorted, so bodies are stable across runs.
enum JSONWriter {
    static func string(_ v: JSONValue) -> String { String(decoding: bytes(v), as: UTF8.self) }

    static func bytes(_ v: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(v, into: &out)
        return out
    }

    static func number(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return String(d)
    }

    static func write(_ v: JSONValue, into out: inout [UInt8]) {
        switch v {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d): out.append(contentsOf: (d.isFinite ? String(d) : "null").utf8)
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (n, e) in a.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                write(e, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (n, k) in o.keys.sorted().enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                write(o[k]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        let utf8 = s.utf8
        if !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out.append(contentsOf: utf8)
        } else {
            for c in utf8 {
                switch c {
                case UInt8(ascii: "\""):
                    out.append(0x5C)
                    out.append(0x22)
                case UInt8(ascii: "\\"):
                    out.append(0x5C)
                    out.append(0x5C)
                case 0x0A:
                    out.append(0x5C)
                    out.append(UInt8(ascii: "n"))
                case 0x0D:
                    out.append(0x5C)
                    out.append(UInt8(ascii: "r"))
                case 0x09:
                    out.append(0x5C)
                    out.append(UInt8(ascii: "t"))
                case 0..<0x20:
                    out.append(0x5C)
                    out.append(UInt8(ascii: "u"))
                    out.append(0x30)
                    out.append(0x30)
                    out.append(hexDigits[Int(c >> 4)])
                    out.append(hexDigits[Int(c & 0xF)])
                default: out.append(c)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// A strict, bounded JSON parser for lender replies (RFC 8259; depth at most 64).
struct JSONReader {
    struct Failure: Error { var offset: Int }

    static let maxDepth = 64

    private let u: [UInt8]
    private var i = 0

    static func parse(_ bytes: [UInt8]) -> JSONValue? {
        var r = JSONReader(u: bytes)
        do {
            r.skipSpace()
            let v = try r.value(depth: 0)
            r.skipSpace()
            guard r.i == r.u.count else { return nil }
            return v
        } catch {
            return nil
        }
    }

    private init(u: [UInt8]) { self.u = u }

    private mutating func skipSpace() {
        while i < u.count, u[i] == 0x20 || u[i] == 0x0A || u[i] == 0x0D || u[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ word: String) throws(Failure) {
        for c in word.utf8 {
            guard i < u.count, u[i] == c else { throw Failure(offset: i) }
            i += 1
        }
    }

    private mutating func value(depth: Int) throws(Failure) -> JSONValue {
        guard depth < Self.maxDepth, i < u.count else { throw Failure(offset: i) }
        switch u[i] {
        case UInt8(ascii: "{"):
            i += 1
            var o: [String: JSONValue] = [:]
            skipSpace()
            if i < u.count, u[i] == UInt8(ascii: "}") {
                i += 1
                return .object(o)
            }
            while true {
                skipSpace()
                guard i < u.count, u[i] == UInt8(ascii: "\"") else { throw Failure(offset: i) }
                let k = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                o[k] = try value(depth: depth + 1)
                skipSpace()
                guard i < u.count else { throw Failure(offset: i) }
                if u[i] == UInt8(ascii: ",") {
                    i += 1
                } else if u[i] == UInt8(ascii: "}") {
                    i += 1
                    return .object(o)
                } else {
                    throw Failure(offset: i)
                }
            }
        case UInt8(ascii: "["):
            i += 1
            var a: [JSONValue] = []
            skipSpace()
            if i < u.count, u[i] == UInt8(ascii: "]") {
                i += 1
                return .array(a)
            }
            while true {
                skipSpace()
                a.append(try value(depth: depth + 1))
                skipSpace()
                guard i < u.count else { throw Failure(offset: i) }
                if u[i] == UInt8(ascii: ",") {
                    i += 1
                } else if u[i] == UInt8(ascii: "]") {
                    i += 1
                    return .array(a)
                } else {
                    throw Failure(offset: i)
                }
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
            try expect("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        default: return try number()
        }
    }

    private mutating func number() throws(Failure) -> JSONValue {
        let start = i
        var isInteger = true
        if i < u.count, u[i] == UInt8(ascii: "-") { i += 1 }
        let digitsStart = i
        while i < u.count, u[i] >= 0x30, u[i] <= 0x39 { i += 1 }
        guard i > digitsStart else { throw Failure(offset: i) }
        guard u[digitsStart] != 0x30 || i == digitsStart + 1 else { throw Failure(offset: digitsStart) }
        if i < u.count, u[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            let f = i
            while i < u.count, u[i] >= 0x30, u[i] <= 0x39 { i += 1 }
            guard i > f else { throw Failure(offset: i) }
        }
        if i < u.count, u[i] == UInt8(ascii: "e") || u[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < u.count, u[i] == UInt8(ascii: "+") || u[i] == UInt8(ascii: "-") { i += 1 }
            let e = i
            while i < u.count, u[i] >= 0x30, u[i] <= 0x39 { i += 1 }
            guard i > e else { throw Failure(offset: i) }
        }
        let text = String(decoding: u[start..<i], as: UTF8.self)
        if isInteger, let n = Int64(text) { return .int(n) }
        guard let d = Double(text) else { throw Failure(offset: start) }
        return .double(d)
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard i + 4 <= u.count else { throw Failure(offset: i) }
        var n: UInt32 = 0
        for _ in 0..<4 {
            let c = u[i]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: throw Failure(offset: i)
            }
            n = n << 4 | UInt32(d)
            i += 1
        }
        return n
    }

    private mutating func string() throws(Failure) -> String {
        i += 1  // opening quote
        let start = i
        // Fast path: no escapes.
        while i < u.count, u[i] != UInt8(ascii: "\""), u[i] != UInt8(ascii: "\\"), u[i] >= 0x20 { i += 1 }
        guard i < u.count else { throw Failure(offset: i) }
        if u[i] == UInt8(ascii: "\"") {
            // Invalid UTF-8 is refused, not repaired: what Flux stores is what the client sent.
            guard let s = String(validating: u[start..<i], as: UTF8.self) else { throw Failure(offset: start) }
            i += 1
            return s
        }
        var out = Array(u[start..<i])
        while true {
            guard i < u.count else { throw Failure(offset: i) }
            let c = u[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                guard let s = String(validating: out, as: UTF8.self) else { throw Failure(offset: start) }
                return s
            }
            guard c >= 0x20 else { throw Failure(offset: i) }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < u.count else { throw Failure(offset: i) }
            let e = u[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800, scalar < 0xDC00 {
                    try expect("\\u")
                    let low = try hex4()
                    guard low >= 0xDC00, low < 0xE000 else { throw Failure(offset: i) }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let us = Unicode.Scalar(scalar) else { throw Failure(offset: i) }
                out.append(contentsOf: Array(String(Character(us)).utf8))
            default: throw Failure(offset: i)
            }
        }
    }
}

extension JSONValue {
    /// Compact JSON text with sorted keys, written without `JSONEncoder` (`JSONWriter`).
    public func compactJSONBytes() -> [UInt8] { JSONWriter.bytes(self) }

    /// Parses one JSON value with the strict, bounded parser of lender replies (`JSONReader`);
    /// nil when the bytes are not exactly one JSON value.
    public static func parseCompact(_ bytes: [UInt8]) -> JSONValue? { JSONReader.parse(bytes) }
}
