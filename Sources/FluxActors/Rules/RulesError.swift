/// A ruleset or condition that does not compile. Maps to `422 invalid_rules`.
///
/// `path` is the JSON path of the offending value inside the ruleset (`lenders[0].when[2]`,
/// `dials.min_bureau_score`; empty for a standalone condition). `message` is complete on its own:
/// it starts with the path and, for an expression, the position inside it
/// (`lenders[0].when[2], line 1, column 5: unknown identifier 'custmer'`).
public struct RulesError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var path: String

    public init(message: String, path: String) {
        self.message = message
        self.path = path
    }

    /// An error in the ruleset's structure, located by JSON path only.
    static func at(_ path: String, _ text: String) -> RulesError {
        RulesError(message: path.isEmpty ? text : "\(path): \(text)", path: path)
    }

    /// An error inside an expression, located by JSON path and line/column.
    static func at(_ path: String, _ position: SourcePosition, _ text: String) -> RulesError {
        let location = "line \(position.line), column \(position.column)"
        return RulesError(message: path.isEmpty ? "\(location): \(text)" : "\(path), \(location): \(text)", path: path)
    }

    public var description: String { message }
}

/// A 1-based line and column inside an expression's text (columns count Unicode scalars).
struct SourcePosition: Sendable, Equatable {
    var line: Int
    var column: Int
}
