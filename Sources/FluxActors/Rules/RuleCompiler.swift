/// The registers of one evaluation: one slot per distinct field path the ruleset reads, and one
/// per distinct `age/len/lower(field)`, each filled once before any condition runs.
struct RuleFrame {
    /// Valid for the duration of one `evaluate` call only (see `RuleProgram.run`).
    let slots: UnsafeMutablePointer<RuleValue>
    let today: CivilDay
}

/// A field-derived value computed once per evaluation: `age(customer.date_of_birth)`.
struct DerivedSlot: Sendable {
    var function: RuleOperations.Function
    var source: Int
    var slot: Int
}

/// Assigns slots while a ruleset compiles; shared by all of its expressions so that every
/// lender reading `customer.bureau_score` reads the same slot.
struct SlotLayout: Sendable {
    private(set) var fields: [(path: [String], slot: Int)] = []
    private var fieldIndex: [[String]: Int] = [:]
    private(set) var derived: [DerivedSlot] = []
    private var derivedIndex: [String: Int] = [:]
    private(set) var count = 0

    mutating func field(_ path: [String]) -> Int {
        if let slot = fieldIndex[path] { return slot }
        let slot = count
        count += 1
        fieldIndex[path] = slot
        fields.append((path, slot))
        return slot
    }

    mutating func derived(_ function: RuleOperations.Function, of source: Int) -> Int {
        let key = "\(function.rawValue)#\(source)"
        if let slot = derivedIndex[key] { return slot }
        let slot = count
        count += 1
        derivedIndex[key] = slot
        derived.append(DerivedSlot(function: function, source: source, slot: slot))
        return slot
    }
}

/// An expression after names and types are checked and constants folded.
indirect enum TypedExpression: Sendable {
    case constant(RuleValue)
    case slot(Int)
    case list([TypedExpression])
    case negate(TypedExpression)
    case not(TypedExpression)
    case binary(BinaryOperator, TypedExpression, TypedExpression)
    case membership(TypedExpression, TypedExpression, negated: Bool)
    case between(TypedExpression, TypedExpression, TypedExpression, negated: Bool)
    case call(RuleOperations.Function, TypedExpression)

    var constantValue: RuleValue? {
        if case .constant(let v) = self { return v }
        return nil
    }
}

/// Checks and compiles one expression in the scope it is written in.
struct ExpressionCompiler {
    /// Fields of the application whose type Flux validates (`CheckoutRequest`); other fields
    /// under `customer.`, `product.` and `loan.` are allowed and typed when a request arrives.
    static let knownFields: [String: RuleType] = [
        "merchant_id": .string, "store_id": .string, "mode": .string,
        "customer.id": .string, "customer.name": .string, "customer.phone": .string,
        "customer.email": .string, "customer.pan": .string, "customer.date_of_birth": .string,
        "customer.pincode": .string, "customer.monthly_income_paise": .integer,
        "customer.bureau_score": .integer,
        "product.sku": .string, "product.category": .string, "product.price_paise": .integer,
        "loan.amount_paise": .integer, "loan.tenure_months": .integer,
    ]
    static let objectRoots: Set<String> = ["customer", "product", "loan"]
    static let valueRoots: Set<String> = ["merchant_id", "store_id", "mode"]
    static let maxPathSegments = 8

    var layout: SlotLayout
    /// nil where dials are not in scope (a descriptor's `validate`).
    var dials: [String: RuleValue]?
    /// The lender's own priority; nil outside a ruleset lender.
    var priority: Int64?

    struct Checked {
        var expression: TypedExpression
        var type: RuleType
        /// For a list whose elements' types are known.
        var elementTypes: [RuleType]?
    }

    enum Expected { case condition, score }

    mutating func compile(_ text: String, as expected: Expected) throws(ExpressionError) -> RuleCode {
        let syntax = try RuleParser.parse(text)
        let checked = try check(syntax)
        switch expected {
        case .condition:
            guard checked.type == .boolean || checked.type == .any else {
                throw ExpressionError(
                    position: syntax.position,
                    message: "a condition must be true or false, but this is a \(checked.type.name)")
            }
        case .score:
            guard checked.type.maybeNumeric else {
                throw ExpressionError(
                    position: syntax.position, message: "a score must be a number, but this is a \(checked.type.name)")
            }
        }
        return Self.emit(checked.expression)
    }

    // MARK: Names and types

    private static func fail(_ node: SyntaxNode, _ message: String) -> ExpressionError {
        ExpressionError(position: node.position, message: message)
    }

    private static func constant(_ v: RuleValue) -> Checked {
        var elementTypes: [RuleType]?
        if case .list(let elements) = v { elementTypes = elements.map(\.staticType) }
        return Checked(expression: .constant(v), type: v.staticType, elementTypes: elementTypes)
    }

    /// Folds an operation on constants now, so a fault there (`1 / 0`) is a compile error.
    private static func folded(_ node: SyntaxNode, _ checked: Checked) throws(ExpressionError) -> Checked {
        switch checked.expression {
        case .constant: return checked
        case .slot: return checked
        default: break
        }
        guard isFoldable(checked.expression) else { return checked }
        var nothing = RuleValue.boolean(false)
        let value = withUnsafeMutablePointer(to: &nothing) { pointer in
            emit(checked.expression)(RuleFrame(slots: pointer, today: CivilDay(year: 1970, month: 1, day: 1)))
        }
        if case .fault(let f) = value { throw fail(node, f.reason) }
        return constant(value)
    }

    private static func isFoldable(_ e: TypedExpression) -> Bool {
        switch e {
        case .constant: true
        case .slot: false
        case .call(.age, _): false  // depends on `today`
        case .list(let items): items.allSatisfy { $0.constantValue != nil }
        case .negate(let a), .not(let a), .call(_, let a): a.constantValue != nil
        case .binary(_, let a, let b), .membership(let a, let b, _): a.constantValue != nil && b.constantValue != nil
        case .between(let a, let b, let c, _): [a, b, c].allSatisfy { $0.constantValue != nil }
        }
    }

    mutating func check(_ node: SyntaxNode) throws(ExpressionError) -> Checked {
        switch node.kind {
        case .integer(let i): return Self.constant(.integer(i))
        case .decimal(let d): return Self.constant(.decimal(d))
        case .string(let s): return Self.constant(.string(s))
        case .boolean(let b): return Self.constant(.boolean(b))
        case .path(let parts): return try resolve(parts, node)
        case .list(let items):
            var expressions: [TypedExpression] = []
            var types: [RuleType] = []
            for item in items {
                let c = try check(item)
                if c.type == .list { throw Self.fail(item, "lists cannot hold lists") }
                expressions.append(c.expression)
                types.append(c.type)
            }
            return try Self.folded(node, Checked(expression: .list(expressions), type: .list, elementTypes: types))
        case .negate(let operand):
            let a = try check(operand)
            guard a.type.maybeNumeric else { throw Self.fail(node, "'-' needs a number, not a \(a.type.name)") }
            return try Self.folded(node, Checked(expression: .negate(a.expression), type: a.type))
        case .not(let operand):
            let a = try check(operand)
            guard a.type == .boolean || a.type == .any else {
                throw Self.fail(node, "'not' needs true or false, not a \(a.type.name)")
            }
            return try Self.folded(node, Checked(expression: .not(a.expression), type: .boolean))
        case .binary(let op, let left, let right):
            let a = try check(left)
            let b = try check(right)
            let type = try Self.binaryType(op, a.type, b.type, node)
            return try Self.folded(node, Checked(expression: .binary(op, a.expression, b.expression), type: type))
        case .membership(let left, let right, let negated):
            let a = try check(left)
            let b = try check(right)
            guard b.type == .list || b.type == .any else {
                throw Self.fail(node, "'in' needs a list on its right, not a \(b.type.name)")
            }
            if a.type == .list { throw Self.fail(node, "'in' looks for a single value, not a list") }
            if let elements = b.elementTypes, !elements.isEmpty, a.type != .any,
                !elements.contains(where: { $0.comparable(with: a.type) })
            {
                throw Self.fail(node, "a \(a.type.name) can never be in this list of \(elements[0].name)s")
            }
            return try Self.folded(
                node, Checked(expression: .membership(a.expression, b.expression, negated: negated), type: .boolean))
        case .between(let value, let low, let high, let negated):
            let x = try check(value)
            let lo = try check(low)
            let hi = try check(high)
            for bound in [lo.type, hi.type] {
                guard Self.orderable(x.type, bound) else {
                    throw Self.fail(node, "'between' cannot compare a \(x.type.name) with a \(bound.name)")
                }
            }
            return try Self.folded(
                node,
                Checked(
                    expression: .between(x.expression, lo.expression, hi.expression, negated: negated), type: .boolean))
        case .call(let name, let arguments):
            return try call(name, arguments, node)
        }
    }

    private static func orderable(_ a: RuleType, _ b: RuleType) -> Bool {
        let ok: Set<RuleType> = [.integer, .decimal, .string, .any]
        return ok.contains(a) && ok.contains(b) && a.comparable(with: b)
    }

    private static func binaryType(_ op: BinaryOperator, _ a: RuleType, _ b: RuleType, _ node: SyntaxNode)
        throws(ExpressionError) -> RuleType
    {
        switch op {
        case .and, .or:
            for t in [a, b] where t != .boolean && t != .any {
                throw fail(node, "'\(op.rawValue)' needs true or false, not a \(t.name)")
            }
            return .boolean
        case .equal, .notEqual:
            if a == .list || b == .list { throw fail(node, "'\(op.rawValue)' cannot compare lists; use 'in'") }
            guard a.comparable(with: b) else {
                throw fail(node, "'\(op.rawValue)' cannot compare a \(a.name) with a \(b.name)")
            }
            return .boolean
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            guard orderable(a, b) else {
                throw fail(node, "'\(op.rawValue)' cannot compare a \(a.name) with a \(b.name)")
            }
            return .boolean
        case .add, .subtract, .multiply, .divide, .remainder:
            for t in [a, b] where !t.maybeNumeric {
                throw fail(node, "'\(op.rawValue)' needs numbers, not a \(t.name)")
            }
            switch op {
            case .divide: return .decimal
            case .remainder:
                if a == .decimal || b == .decimal { throw fail(node, "'%' needs whole numbers, not decimals") }
                return .integer
            default:
                if a == .decimal || b == .decimal { return .decimal }
                if a == .integer && b == .integer { return .integer }
                return .any
            }
        }
    }

    private mutating func call(_ name: String, _ arguments: [SyntaxNode], _ node: SyntaxNode)
        throws(ExpressionError) -> Checked
    {
        if name == "table" { throw Self.fail(node, "decision tables are not supported yet") }
        guard let function = RuleOperations.Function(rawValue: name) else {
            throw Self.fail(node, "unknown function '\(name)'; the functions are age, len and lower")
        }
        guard arguments.count == 1 else {
            throw Self.fail(node, "\(name)() takes 1 argument, not \(arguments.count)")
        }
        let a = try check(arguments[0])
        let type: RuleType
        switch function {
        case .age:
            guard a.type == .string || a.type == .any else {
                throw Self.fail(node, "age() needs a date string YYYY-MM-DD, not a \(a.type.name)")
            }
            if case .constant(.string(let s)) = a.expression, CivilDay(parsing: s) == nil {
                throw Self.fail(arguments[0], "age() needs a date YYYY-MM-DD")
            }
            type = .integer
        case .len:
            guard a.type == .string || a.type == .list || a.type == .any else {
                throw Self.fail(node, "len() needs a string or a list, not a \(a.type.name)")
            }
            type = .integer
        case .lower:
            guard a.type == .string || a.type == .any else {
                throw Self.fail(node, "lower() needs a string, not a \(a.type.name)")
            }
            type = .string
        }
        if case .slot(let source) = a.expression {
            return Checked(expression: .slot(layout.derived(function, of: source)), type: type)
        }
        return try Self.folded(node, Checked(expression: .call(function, a.expression), type: type))
    }

    private mutating func resolve(_ parts: [String], _ node: SyntaxNode) throws(ExpressionError) -> Checked {
        let root = parts[0]
        let dotted = parts.joined(separator: ".")
        guard parts.count <= Self.maxPathSegments else {
            throw Self.fail(node, "\(dotted) is deeper than \(Self.maxPathSegments) names")
        }
        switch root {
        case "dials":
            guard let dials else { throw Self.fail(node, "dials are only available in a ruleset") }
            guard parts.count == 2 else {
                throw Self.fail(
                    node,
                    parts.count == 1 ? "name a dial: dials.NAME" : "dial '\(parts[1])' is a value, it has no fields")
            }
            guard let value = dials[parts[1]] else { throw Self.fail(node, "unknown dial '\(parts[1])'") }
            return Self.constant(value)
        case "priority":
            guard let priority else { throw Self.fail(node, "priority is only available in a ruleset lender") }
            guard parts.count == 1 else { throw Self.fail(node, "priority is a number, it has no fields") }
            return Self.constant(.integer(priority))
        case _ where Self.valueRoots.contains(root):
            guard parts.count == 1 else { throw Self.fail(node, "\(root) is a string, it has no fields") }
        case _ where Self.objectRoots.contains(root):
            guard parts.count >= 2 else {
                throw Self.fail(
                    node, "\(root) is an object; name one of its fields, e.g. \(root).\(Self.example(root))")
            }
        default:
            throw Self.fail(
                node,
                "unknown identifier '\(root)'; expressions read customer., product., loan., merchant_id, store_id, mode, dials. and priority"
            )
        }
        return Checked(expression: .slot(layout.field(parts)), type: Self.knownFields[dotted] ?? .any)
    }

    private static func example(_ root: String) -> String {
        switch root {
        case "customer": "bureau_score"
        case "product": "category"
        default: "amount_paise"
        }
    }
}
