/// An error found while compiling one expression: where, and what. The ruleset compiler adds
/// the JSON path and turns it into a `RulesError`.
struct ExpressionError: Error, Sendable, Equatable {
    var position: SourcePosition
    var message: String
}

struct Token: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case integer(Int64)
        case decimal(Double)
        case string(String)
        case identifier(String)
        case symbol(Symbol)
        case end
    }

    enum Symbol: String, Sendable {
        case leftParen = "(", rightParen = ")", leftBracket = "[", rightBracket = "]"
        case comma = ",", dot = ".", plus = "+", minus = "-", star = "*", slash = "/", percent = "%"
        case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    }

    var kind: Kind
    var position: SourcePosition

    /// How the token reads in an error message.
    var display: String {
        switch kind {
        case .integer(let i): "'\(i)'"
        case .decimal(let d): "'\(d)'"
        case .string: "a string"
        case .identifier(let s): "'\(s)'"
        case .symbol(let s): "'\(s.rawValue)'"
        case .end: "the end of the expression"
        }
    }
}

/// Splits an expression into tokens. Works on UTF-8 bytes; only string literals may hold
/// non-ASCII text.
struct RuleLexer {
    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var column = 1

    init(_ text: String) { bytes = Array(text.utf8) }

    static func tokenize(_ text: String) throws(ExpressionError) -> [Token] {
        var lexer = RuleLexer(text)
        var tokens: [Token] = []
        while true {
            let token = try lexer.next()
            tokens.append(token)
            if token.kind == .end { return tokens }
        }
    }

    private var position: SourcePosition { SourcePosition(line: line, column: column) }

    private func peek(_ offset: Int = 0) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private mutating func advance() {
        let c = bytes[index]
        index += 1
        if c == 0x0A {
            line += 1
            column = 1
        } else if c & 0xC0 != 0x80 {
            // A UTF-8 continuation byte belongs to the scalar already counted.
            column += 1
        }
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    private static func isIdentifierStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
    }
    private static func isIdentifierPart(_ c: UInt8) -> Bool { isIdentifierStart(c) || isDigit(c) }

    mutating func next() throws(ExpressionError) -> Token {
        while let c = peek(), c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { advance() }
        let start = position
        guard let c = peek() else { return Token(kind: .end, position: start) }

        if Self.isDigit(c) { return try number(start) }
        if Self.isIdentifierStart(c) {
            let from = index
            while let d = peek(), Self.isIdentifierPart(d) { advance() }
            return Token(kind: .identifier(String(decoding: bytes[from..<index], as: UTF8.self)), position: start)
        }
        if c == 0x27 || c == 0x22 { return try string(quote: c, start) }

        let two: (UInt8, UInt8?) = (c, peek(1))
        func symbol(_ s: Token.Symbol, length: Int) -> Token {
            for _ in 0..<length { advance() }
            return Token(kind: .symbol(s), position: start)
        }
        switch two {
        case (0x3D, 0x3D): return symbol(.equal, length: 2)
        case (0x21, 0x3D): return symbol(.notEqual, length: 2)
        case (0x3C, 0x3D): return symbol(.lessOrEqual, length: 2)
        case (0x3E, 0x3D): return symbol(.greaterOrEqual, length: 2)
        case (0x3C, _): return symbol(.less, length: 1)
        case (0x3E, _): return symbol(.greater, length: 1)
        case (0x28, _): return symbol(.leftParen, length: 1)
        case (0x29, _): return symbol(.rightParen, length: 1)
        case (0x5B, _): return symbol(.leftBracket, length: 1)
        case (0x5D, _): return symbol(.rightBracket, length: 1)
        case (0x2C, _): return symbol(.comma, length: 1)
        case (0x2E, _): return symbol(.dot, length: 1)
        case (0x2B, _): return symbol(.plus, length: 1)
        case (0x2D, _): return symbol(.minus, length: 1)
        case (0x2A, _): return symbol(.star, length: 1)
        case (0x2F, _): return symbol(.slash, length: 1)
        case (0x25, _): return symbol(.percent, length: 1)
        case (0x3D, _): throw ExpressionError(position: start, message: "'=' is not an operator; use '==' to compare")
        case (0x21, _): throw ExpressionError(position: start, message: "'!' is not an operator; use 'not'")
        case (0x26, _): throw ExpressionError(position: start, message: "'&' is not an operator; use 'and'")
        case (0x7C, _): throw ExpressionError(position: start, message: "'|' is not an operator; use 'or'")
        default:
            let scalar =
                String(decoding: bytes[index..<min(index + 4, bytes.count)], as: UTF8.self)
                .unicodeScalars.first.map { String($0) } ?? "?"
            throw ExpressionError(position: start, message: "unexpected character '\(scalar)'")
        }
    }

    private mutating func number(_ start: SourcePosition) throws(ExpressionError) -> Token {
        let from = index
        while let d = peek(), Self.isDigit(d) { advance() }
        var isDecimal = false
        if peek() == 0x2E, let d = peek(1), Self.isDigit(d) {
            isDecimal = true
            advance()
            while let d = peek(), Self.isDigit(d) { advance() }
        }
        if let d = peek(), Self.isIdentifierStart(d) {
            throw ExpressionError(position: position, message: "a number must not run into a name")
        }
        let text = String(decoding: bytes[from..<index], as: UTF8.self)
        if isDecimal {
            guard let value = Double(text), value.isFinite else {
                throw ExpressionError(position: start, message: "decimal literal \(text) is out of range")
            }
            return Token(kind: .decimal(value), position: start)
        }
        guard let value = Int64(text) else {
            throw ExpressionError(position: start, message: "integer literal \(text) does not fit in 64 bits")
        }
        return Token(kind: .integer(value), position: start)
    }

    private mutating func string(quote: UInt8, _ start: SourcePosition) throws(ExpressionError) -> Token {
        advance()
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw ExpressionError(position: start, message: "string is not closed") }
            if c == quote {
                advance()
                return Token(kind: .string(String(decoding: out, as: UTF8.self)), position: start)
            }
            if c == 0x5C {
                let escapePosition = position
                advance()
                guard let e = peek() else { throw ExpressionError(position: start, message: "string is not closed") }
                switch e {
                case 0x5C, 0x27, 0x22: out.append(e)
                case 0x6E: out.append(0x0A)
                case 0x74: out.append(0x09)
                default:
                    throw ExpressionError(
                        position: escapePosition, message: "unknown escape; use \\\\, \\', \\\", \\n or \\t")
                }
                advance()
                continue
            }
            out.append(c)
            advance()
        }
    }
}
