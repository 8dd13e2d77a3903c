import Foundation

/// A standalone condition in the rules language, for a lender descriptor's `validate`.
/// Reads the application's fields; `dials` and `priority` are not in scope.
public struct Condition: Sendable {
    public let text: String
    private let frame: RuleFrameLayout
    private let code: RuleCode

    /// Compiles `text`. `path` (e.g. `validate[1]`) is the JSON path put into errors.
    public static func compile(_ text: String, path: String = "") throws(RulesError) -> Condition {
        var compiler = ExpressionCompiler(layout: SlotLayout(), dials: nil, priority: nil)
        do {
            let code = try compiler.compile(text, as: .condition)
            return Condition(text: text, frame: RuleFrameLayout(compiler.layout), code: code)
        } catch {
            throw .at(path, error.position, error.message)
        }
    }

    private init(text: String, frame: RuleFrameLayout, code: RuleCode) {
        self.text = text
        self.frame = frame
        self.code = code
    }

    public func holds(for request: CheckoutRequest, today: Date) -> Bool {
        failure(for: request, today: today) == nil
    }

    /// nil when the condition holds; otherwise its text, plus the reason when it could not be
    /// evaluated (`loan.emi_paise > 0 (loan.emi_paise is missing)`).
    public func failure(for request: CheckoutRequest, today: Date) -> String? {
        let value = frame.withFrame(request, today: today) { code($0) }
        if case .boolean(true) = value { return nil }
        return RuleProgram.failure(text, value)
    }
}
