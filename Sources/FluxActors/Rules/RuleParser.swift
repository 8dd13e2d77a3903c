/// The syntax tree of one expression, before names and types are checked.
struct SyntaxNode: Sendable {
    indirect enum Kind: Sendable {
        case integer(Int64)
        case decimal(Double)
        case string(String)
        case boolean(Bool)
        case list([SyntaxNode])
        /// `customer.bureau_score`, `dials.min_score`, `priority`: identifiers joined by dots.
        case path([String])
        case call(name: String, arguments: [SyntaxNode])
        case negate(SyntaxNode)
        case not(SyntaxNode)
        case binary(BinaryOperator, SyntaxNode, SyntaxNode)
        case membership(SyntaxNode, SyntaxNode, negated: Bool)
        case between(SyntaxNode, low: SyntaxNode, high: SyntaxNode, negated: Bool)
    }

    var kind: Kind
    var position: SourcePosition
    /// Height of the tree under this node (a leaf is 1); bounded by `RuleParser.maxDepth`.
    var depth: Int
}

enum BinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/", remainder = "%"
    case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case and, or

    var isComparison: Bool {
        switch self {
        case .equal, .notEqual, .less, .lessOrEqual, .greater, .greaterOrEqual: true
        default: false
        }
    }
}

/// Recursive-descent parser. Precedence, lowest first: `or`, `and`, `not`, comparisons
/// (`== != < <= > >=`, `in`, `not in`, `between … and …`; not chainable), `+ -`, `* / %`,
/// unary `-`, then literals, lists, calls, paths and parentheses.
struct RuleParser {
    static let maxDepth = 64
    static let maxBytes = 4096

    private var tokens: [Token]
    private var index = 0
    private var nesting = 0

    static func parse(_ text: String) throws(ExpressionError) -> SyntaxNode {
        guard text.utf8.count <= maxBytes else {
            throw ExpressionError(
                position: SourcePosition(line: 1, column: 1),
                message: "expression is longer than \(maxBytes) bytes")
        }
        var parser = RuleParser(tokens: try RuleLexer.tokenize(text))
        if case .end = parser.current.kind {
            throw ExpressionError(position: parser.current.position, message: "expression is empty")
        }
        let node = try parser.expression()
        guard case .end = parser.current.kind else {
            throw ExpressionError(
                position: parser.current.position,
                message: "unexpected \(parser.current.display) after a complete expression")
        }
        return node
    }

    private init(tokens: [Token]) { self.tokens = tokens }

    private var current: Token { tokens[index] }

    private mutating func take() -> Token {
        let t = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return t
    }

    private func isKeyword(_ word: String, offset: Int = 0) -> Bool {
        let i = min(index + offset, tokens.count - 1)
        if case .identifier(let s) = tokens[i].kind { return s == word }
        return false
    }

    private func isSymbol(_ symbol: Token.Symbol) -> Bool {
        if case .symbol(let s) = current.kind { return s == symbol }
        return false
    }

    private mutating func expect(_ symbol: Token.Symbol, _ what: String) throws(ExpressionError) {
        guard isSymbol(symbol) else {
            throw ExpressionError(position: current.position, message: "expected \(what), found \(current.display)")
        }
        _ = take()
    }

    private func node(_ kind: SyntaxNode.Kind, at position: SourcePosition, children: [SyntaxNode])
        throws(ExpressionError) -> SyntaxNode
    {
        let depth = (children.map(\.depth).max() ?? 0) + 1
        guard depth <= Self.maxDepth else {
            throw ExpressionError(
                position: position, message: "expression is nested deeper than \(Self.maxDepth) levels")
        }
        return SyntaxNode(kind: kind, position: position, depth: depth)
    }

    private mutating func expression() throws(ExpressionError) -> SyntaxNode {
        // Bounds recursion through parentheses, lists, calls and prefix operators before the
        // tree itself is built (the tree's height is checked in `node`).
        nesting += 1
        defer { nesting -= 1 }
        guard nesting <= Self.maxDepth else {
            throw ExpressionError(
                position: current.position, message: "expression is nested deeper than \(Self.maxDepth) levels")
        }
        return try orExpression()
    }

    private mutating func orExpression() throws(ExpressionError) -> SyntaxNode {
        var left = try andExpression()
        while isKeyword("or") {
            let op = take()
            let right = try andExpression()
            left = try node(.binary(.or, left, right), at: op.position, children: [left, right])
        }
        return left
    }

    private mutating func andExpression() throws(ExpressionError) -> SyntaxNode {
        var left = try notExpression()
        while isKeyword("and") {
            let op = take()
            let right = try notExpression()
            left = try node(.binary(.and, left, right), at: op.position, children: [left, right])
        }
        return left
    }

    private mutating func notExpression() throws(ExpressionError) -> SyntaxNode {
        if isKeyword("not") {
            let op = take()
            nesting += 1
            defer { nesting -= 1 }
            guard nesting <= Self.maxDepth else {
                throw ExpressionError(
                    position: op.position, message: "expression is nested deeper than \(Self.maxDepth) levels")
            }
            let operand = try notExpression()
            return try node(.not(operand), at: op.position, children: [operand])
        }
        return try comparison()
    }

    private func comparisonOperator() -> BinaryOperator? {
        guard case .symbol(let s) = current.kind else { return nil }
        switch s {
        case .equal: return .equal
        case .notEqual: return .notEqual
        case .less: return .less
        case .lessOrEqual: return .lessOrEqual
        case .greater: return .greater
        case .greaterOrEqual: return .greaterOrEqual
        default: return nil
        }
    }

    private var startsComparison: Bool {
        comparisonOperator() != nil || isKeyword("in") || isKeyword("between")
            || (isKeyword("not") && (isKeyword("in", offset: 1) || isKeyword("between", offset: 1)))
    }

    private mutating func comparison() throws(ExpressionError) -> SyntaxNode {
        let left = try additive()
        let result: SyntaxNode
        if let op = comparisonOperator() {
            let token = take()
            let right = try additive()
            result = try node(.binary(op, left, right), at: token.position, children: [left, right])
        } else if isKeyword("in") || (isKeyword("not") && isKeyword("in", offset: 1)) {
            // `token` is either `in` or the `not` of `not in`.
            let token = take()
            var isNegated = false
            if case .identifier("not") = token.kind {
                _ = take()
                isNegated = true
            }
            let right = try additive()
            result = try node(
                .membership(left, right, negated: isNegated), at: token.position, children: [left, right])
        } else if isKeyword("between") || (isKeyword("not") && isKeyword("between", offset: 1)) {
            let token = take()
            var isNegated = false
            if case .identifier("not") = token.kind {
                _ = take()
                isNegated = true
            }
            let low = try additive()
            guard isKeyword("and") else {
                throw ExpressionError(
                    position: current.position, message: "expected 'and' in 'between … and …', found \(current.display)"
                )
            }
            _ = take()
            let high = try additive()
            result = try node(
                .between(left, low: low, high: high, negated: isNegated), at: token.position,
                children: [left, low, high])
        } else {
            return left
        }
        if startsComparison {
            throw ExpressionError(
                position: current.position,
                message: "comparisons cannot be chained; join them with 'and' (found \(current.display))")
        }
        return result
    }

    private mutating func additive() throws(ExpressionError) -> SyntaxNode {
        var left = try multiplicative()
        while isSymbol(.plus) || isSymbol(.minus) {
            let token = take()
            let op: BinaryOperator = token.kind == .symbol(.plus) ? .add : .subtract
            let right = try multiplicative()
            left = try node(.binary(op, left, right), at: token.position, children: [left, right])
        }
        return left
    }

    private mutating func multiplicative() throws(ExpressionError) -> SyntaxNode {
        var left = try unary()
        while isSymbol(.star) || isSymbol(.slash) || isSymbol(.percent) {
            let token = take()
            let op: BinaryOperator =
                switch token.kind {
                case .symbol(.star): .multiply
                case .symbol(.slash): .divide
                default: .remainder
                }
            let right = try unary()
            left = try node(.binary(op, left, right), at: token.position, children: [left, right])
        }
        return left
    }

    private mutating func unary() throws(ExpressionError) -> SyntaxNode {
        if isSymbol(.minus) {
            let token = take()
            nesting += 1
            defer { nesting -= 1 }
            guard nesting <= Self.maxDepth else {
                throw ExpressionError(
                    position: token.position, message: "expression is nested deeper than \(Self.maxDepth) levels")
            }
            let operand = try unary()
            return try node(.negate(operand), at: token.position, children: [operand])
        }
        return try primary()
    }

    private static let keywords: Set<String> = ["and", "or", "not", "in", "between"]

    private mutating func primary() throws(ExpressionError) -> SyntaxNode {
        let token = take()
        switch token.kind {
        case .integer(let i): return SyntaxNode(kind: .integer(i), position: token.position, depth: 1)
        case .decimal(let d): return SyntaxNode(kind: .decimal(d), position: token.position, depth: 1)
        case .string(let s): return SyntaxNode(kind: .string(s), position: token.position, depth: 1)
        case .symbol(.leftParen):
            let inner = try expression()
            try expect(.rightParen, "')'")
            return inner
        case .symbol(.leftBracket):
            var elements: [SyntaxNode] = []
            while !isSymbol(.rightBracket) {
                elements.append(try expression())
                if isSymbol(.comma) {
                    _ = take()
                } else if !isSymbol(.rightBracket) {
                    throw ExpressionError(
                        position: current.position, message: "expected ',' or ']' in a list, found \(current.display)")
                }
            }
            _ = take()
            return try node(.list(elements), at: token.position, children: elements)
        case .identifier(let name):
            if name == "true" || name == "false" {
                return SyntaxNode(kind: .boolean(name == "true"), position: token.position, depth: 1)
            }
            if Self.keywords.contains(name) {
                throw ExpressionError(position: token.position, message: "expected a value, found '\(name)'")
            }
            if isSymbol(.leftParen) {
                _ = take()
                var arguments: [SyntaxNode] = []
                while !isSymbol(.rightParen) {
                    arguments.append(try expression())
                    if isSymbol(.comma) {
                        _ = take()
                    } else if !isSymbol(.rightParen) {
                        throw ExpressionError(
                            position: current.position,
                            message: "expected ',' or ')' after an argument, found \(current.display)")
                    }
                }
                _ = take()
                var result = try node(.call(name: name, arguments: arguments), at: token.position, children: arguments)
                // `table('name').output`: keep the field access so the call reports itself.
                if isSymbol(.dot) {
                    _ = take()
                    guard case .identifier = current.kind else {
                        throw ExpressionError(
                            position: current.position, message: "expected a name after '.', found \(current.display)")
                    }
                    _ = take()
                    result.depth += 1
                }
                return result
            }
            var parts = [name]
            while isSymbol(.dot) {
                _ = take()
                guard case .identifier(let part) = current.kind else {
                    throw ExpressionError(
                        position: current.position, message: "expected a name after '.', found \(current.display)")
                }
                _ = take()
                parts.append(part)
            }
            return SyntaxNode(kind: .path(parts), position: token.position, depth: 1)
        case .end:
            throw ExpressionError(position: token.position, message: "expression ends too early; expected a value")
        case .symbol:
            throw ExpressionError(position: token.position, message: "expected a value, found \(token.display)")
        }
    }
}
