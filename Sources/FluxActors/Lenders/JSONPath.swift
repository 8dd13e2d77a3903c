import Foundation

/// A compiled JSONPath of the simple form lenders' replies need: `$`, `.name`, `['name']`,
/// `["name"]` and `[index]` steps (`$.data.loans[0].id`). Compiled once at descriptor load;
/// evaluating it walks the reply without parsing anything.
public struct JSONPath: Sendable, Hashable, CustomStringConvertible {
    public enum Step: Sendable, Hashable {
        case key(String)
        case index(Int)
    }

    public let steps: [Step]
    public let description: String

    static let maxLength = 512
    static let maxSteps = 32

    public struct ParseError: Error, Sendable, Equatable {
        public var message: String
    }

    public init(_ text: String) throws(ParseError) {
        guard text.utf8.count <= Self.maxLength else {
            throw ParseError(message: "JSONPath is longer than \(Self.maxLength) bytes")
        }
        let u = Array(text.utf8)
        guard u.first == UInt8(ascii: "$") else { throw ParseError(message: "JSONPath must start with '$'") }
        var i = 1
        var steps: [Step] = []
        func isNameByte(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
                || c >= 0x80
        }
        while i < u.count {
            if u[i] == UInt8(ascii: ".") {
                var j = i + 1
                while j < u.count, isNameByte(u[j]) { j += 1 }
                guard j > i + 1 else {
                    throw ParseError(message: "JSONPath '\(text)': expected a name after '.' at offset \(i)")
                }
                steps.append(.key(String(decoding: u[(i + 1)..<j], as: UTF8.self)))
                i = j
            } else if u[i] == UInt8(ascii: "[") {
                var j = i + 1
                guard j < u.count else { throw ParseError(message: "JSONPath '\(text)': unclosed '['") }
                if u[j] == UInt8(ascii: "'") || u[j] == UInt8(ascii: "\"") {
                    let quote = u[j]
                    j += 1
                    let start = j
                    while j < u.count, u[j] != quote { j += 1 }
                    guard j + 1 < u.count, u[j + 1] == UInt8(ascii: "]") else {
                        throw ParseError(message: "JSONPath '\(text)': unclosed quoted name at offset \(i)")
                    }
                    steps.append(.key(String(decoding: u[start..<j], as: UTF8.self)))
                    i = j + 2
                } else {
                    var n = 0
                    let start = j
                    while j < u.count, u[j] >= 0x30, u[j] <= 0x39, j - start < 7 {
                        n = n * 10 + Int(u[j] - 0x30)
                        j += 1
                    }
                    guard j > start, j < u.count, u[j] == UInt8(ascii: "]") else {
                        throw ParseError(
                            message:
                                "JSONPath '\(text)': expected an index of up to 7 digits or a quoted name at offset \(i)"
                        )
                    }
                    steps.append(.index(n))
                    i = j + 1
                }
            } else {
                throw ParseError(message: "JSONPath '\(text)': unexpected character at offset \(i)")
            }
            guard steps.count <= Self.maxSteps else {
                throw ParseError(message: "JSONPath '\(text)' has more than \(Self.maxSteps) steps")
            }
        }
        self.steps = steps
        self.description = text
    }

    /// The value at this path, or nil when any step is missing. A JSON `null` is returned as `.null`.
    public func evaluate(_ root: JSONValue) -> JSONValue? {
        var current = root
        for step in steps {
            switch (step, current) {
            case (.key(let k), .object(let o)):
                guard let next = o[k] else { return nil }
                current = next
            case (.index(let n), .array(let a)):
                guard n < a.count else { return nil }
                current = a[n]
            default:
                return nil
            }
        }
        return current
    }
}
