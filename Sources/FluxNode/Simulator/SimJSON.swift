import FluxActors
import Foundation

/// The simulator's request and reply bodies are FluxActors' `JSONValue` (the same tree the
/// connector uses). The simulator reads fields by dotted path (each lender's API names them
/// differently) and writes replies by path, so a dynamic tree is simpler here than one
/// `Codable` type per lender.
typealias SimJSON = JSONValue

extension JSONValue {
    /// The value at a dotted path (`a.b.c`), or nil when any step is missing or not an object.
    func value(at path: String) -> JSONValue? {
        var current = self
        for key in path.split(separator: ".") {
            guard case .object(let o) = current, let next = o[String(key)] else { return nil }
            current = next
        }
        return current
    }

    /// Sets `value` at a dotted path, creating objects on the way.
    mutating func set(_ value: JSONValue, at path: String) {
        let keys = path.split(separator: ".").map(String.init)
        self = Self.setting(value, keys: keys[...], in: self)
    }

    private static func setting(_ value: JSONValue, keys: ArraySlice<String>, in node: JSONValue) -> JSONValue {
        guard let first = keys.first else { return value }
        var o: [String: JSONValue]
        if case .object(let existing) = node { o = existing } else { o = [:] }
        o[first] = setting(value, keys: keys.dropFirst(), in: o[first] ?? .null)
        return .object(o)
    }

    /// The JSON type with its article, for the simulator's field errors ("not a boolean").
    var simTypeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// Parses JSON text with the connector's hand-written parser (not `JSONDecoder`: this is
    /// every request's hot path). Stricter than a lender reply needs: text that is not UTF-8 and
    /// numbers out of `Double`'s range are refused too. Nesting deeper than 64 is refused.
    static func decode(_ bytes: some Collection<UInt8>) throws(SimJSONSyntaxError) -> JSONValue {
        let bytes = Array(bytes)
        // Outside strings every byte must be ASCII anyway, so checking the whole text is
        // checking the strings.
        guard String(validating: bytes, as: UTF8.self) != nil else { throw SimJSONSyntaxError("invalid UTF-8") }
        guard let value = JSONValue.parseCompact(bytes) else { throw SimJSONSyntaxError("not a JSON value") }
        guard value.numbersAreFinite else { throw SimJSONSyntaxError("number out of range") }
        return value
    }

    private var numbersAreFinite: Bool {
        switch self {
        case .double(let d): d.isFinite
        case .array(let a): a.allSatisfy(\.numbersAreFinite)
        case .object(let o): o.values.allSatisfy(\.numbersAreFinite)
        default: true
        }
    }

    /// Compact JSON, keys sorted.
    func encoded() -> Data { Data(compactJSONBytes()) }
}

struct SimJSONSyntaxError: Error, Equatable {
    var message: String
    init(_ message: String) { self.message = message }
}
