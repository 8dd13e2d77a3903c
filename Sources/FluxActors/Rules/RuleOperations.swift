/// The meaning of every operator and function, shared by the compiler (constant folding) and
/// the running program, so both agree by construction. Every function is total: a problem comes
/// back as `.fault`, never a trap.
enum RuleOperations {
    enum Function: String, Sendable, CaseIterable {
        case age, len, lower
    }

    static func typeFault(_ what: String, _ a: RuleValue, _ b: RuleValue) -> RuleValue {
        .fault(RuleFault("\(what) cannot take a \(a.typeName) and a \(b.typeName)"))
    }

    // MARK: Arithmetic

    @inline(__always)
    static func arithmetic(_ op: BinaryOperator, _ a: RuleValue, _ b: RuleValue) -> RuleValue {
        switch (a, b) {
        case (.integer(let x), .integer(let y)):
            return integerArithmetic(op, x, y)
        case (.fault, _): return a
        case (_, .fault): return b
        case (.integer(let x), .decimal(let y)): return decimalArithmetic(op, Double(x), y)
        case (.decimal(let x), .integer(let y)): return decimalArithmetic(op, x, Double(y))
        case (.decimal(let x), .decimal(let y)): return decimalArithmetic(op, x, y)
        default: return typeFault("'\(op.rawValue)'", a, b)
        }
    }

    static func integerArithmetic(_ op: BinaryOperator, _ x: Int64, _ y: Int64) -> RuleValue {
        let result: (partialValue: Int64, overflow: Bool)
        switch op {
        case .add: result = x.addingReportingOverflow(y)
        case .subtract: result = x.subtractingReportingOverflow(y)
        case .multiply: result = x.multipliedReportingOverflow(by: y)
        case .divide: return decimalArithmetic(op, Double(x), Double(y))
        case .remainder:
            if y == 0 { return .fault(RuleFault("division by zero in '%'")) }
            result = x.remainderReportingOverflow(dividingBy: y)
        default: return .fault(RuleFault("'\(op.rawValue)' is not arithmetic"))
        }
        if result.overflow { return .fault(RuleFault("integer overflow in '\(op.rawValue)'")) }
        return .integer(result.partialValue)
    }

    static func decimalArithmetic(_ op: BinaryOperator, _ x: Double, _ y: Double) -> RuleValue {
        let r: Double
        switch op {
        case .add: r = x + y
        case .subtract: r = x - y
        case .multiply: r = x * y
        case .divide:
            if y == 0 { return .fault(RuleFault("division by zero in '/'")) }
            r = x / y
        case .remainder: return .fault(RuleFault("'%' needs whole numbers, not decimals"))
        default: return .fault(RuleFault("'\(op.rawValue)' is not arithmetic"))
        }
        guard r.isFinite else { return .fault(RuleFault("'\(op.rawValue)' gave a number too large")) }
        return .decimal(r)
    }

    static func negate(_ a: RuleValue) -> RuleValue {
        switch a {
        case .integer(let x):
            let r = Int64(0).subtractingReportingOverflow(x)
            return r.overflow ? .fault(RuleFault("integer overflow in '-'")) : .integer(r.partialValue)
        case .decimal(let x): return .decimal(-x)
        case .fault: return a
        default: return .fault(RuleFault("'-' cannot take a \(a.typeName)"))
        }
    }

    // MARK: Comparison

    /// -1, 0 or 1; or the fault that prevents ordering the two.
    @inline(__always)
    static func order(_ what: StaticString, _ a: RuleValue, _ b: RuleValue) -> Result<Int, RuleFault> {
        switch (a, b) {
        case (.integer(let x), .integer(let y)): return .success(x < y ? -1 : (x == y ? 0 : 1))
        case (.string(let x), .string(let y)): return .success(x < y ? -1 : (x == y ? 0 : 1))
        case (.fault(let f), _): return .failure(f)
        case (_, .fault(let f)): return .failure(f)
        case (.integer(let x), .decimal(let y)): return .success(compare(Double(x), y))
        case (.decimal(let x), .integer(let y)): return .success(compare(x, Double(y)))
        case (.decimal(let x), .decimal(let y)): return .success(compare(x, y))
        default: return .failure(RuleFault("'\(what)' cannot compare a \(a.typeName) with a \(b.typeName)"))
        }
    }

    @inline(__always)
    private static func compare(_ x: Double, _ y: Double) -> Int { x < y ? -1 : (x == y ? 0 : 1) }

    @inline(__always)
    static func compare(_ op: BinaryOperator, _ a: RuleValue, _ b: RuleValue) -> RuleValue {
        switch op {
        case .equal, .notEqual:
            switch equal(a, b) {
            case .success(let eq): return .boolean(eq == (op == .equal))
            case .failure(let f): return .fault(f)
            }
        default:
            switch order(op == .less ? "<" : op == .lessOrEqual ? "<=" : op == .greater ? ">" : ">=", a, b) {
            case .success(let c):
                switch op {
                case .less: return .boolean(c < 0)
                case .lessOrEqual: return .boolean(c <= 0)
                case .greater: return .boolean(c > 0)
                default: return .boolean(c >= 0)
                }
            case .failure(let f): return .fault(f)
            }
        }
    }

    /// Equality: numbers compare by value (an integer equals the same decimal); values of
    /// different kinds are a fault, not merely unequal.
    @inline(__always)
    static func equal(_ a: RuleValue, _ b: RuleValue) -> Result<Bool, RuleFault> {
        if let eq = looselyEqual(a, b) { return .success(eq) }
        if case .fault(let f) = a { return .failure(f) }
        if case .fault(let f) = b { return .failure(f) }
        return .failure(RuleFault("'==' cannot compare a \(a.typeName) with a \(b.typeName)"))
    }

    /// nil when the two are not of comparable kinds.
    @inline(__always)
    static func looselyEqual(_ a: RuleValue, _ b: RuleValue) -> Bool? {
        switch (a, b) {
        case (.integer(let x), .integer(let y)): return x == y
        // Unequal lengths settle most string comparisons without looking at the bytes.
        case (.string(let x), .string(let y)): return x.utf8.count == y.utf8.count && x == y
        case (.boolean(let x), .boolean(let y)): return x == y
        case (.integer(let x), .decimal(let y)): return Double(x) == y
        case (.decimal(let x), .integer(let y)): return x == Double(y)
        case (.decimal(let x), .decimal(let y)): return x == y
        default: return nil
        }
    }

    static func between(_ x: RuleValue, _ low: RuleValue, _ high: RuleValue, negated: Bool) -> RuleValue {
        switch (order("between", low, x), order("between", x, high)) {
        case (.success(let a), .success(let b)): return .boolean((a <= 0 && b <= 0) != negated)
        case (.failure(let f), _), (_, .failure(let f)): return .fault(f)
        }
    }

    /// `x in list`: true when some element equals `x`; elements of another kind never match.
    static func membership(_ x: RuleValue, _ list: RuleValue, negated: Bool) -> RuleValue {
        if case .fault = x { return x }
        switch list {
        case .list(let elements): return contains(elements, x, negated: negated)
        case .fault: return list
        default: return .fault(RuleFault("'in' needs a list on its right, not a \(list.typeName)"))
        }
    }

    @inline(__always)
    static func contains(_ elements: [RuleValue], _ x: RuleValue, negated: Bool) -> RuleValue {
        if case .list = x { return .fault(RuleFault("'in' looks for a single value, not a list")) }
        for element in elements where looselyEqual(x, element) == true { return .boolean(!negated) }
        return .boolean(negated)
    }

    // MARK: Logic

    static func not(_ a: RuleValue) -> RuleValue {
        switch a {
        case .boolean(let b): return .boolean(!b)
        case .fault: return a
        default: return .fault(RuleFault("'not' needs true or false, not a \(a.typeName)"))
        }
    }

    /// The left operand of `and`/`or`: its truth, or the fault that stops the expression.
    @inline(__always)
    static func truth(_ a: RuleValue, _ what: StaticString) -> Result<Bool, RuleFault> {
        switch a {
        case .boolean(let b): return .success(b)
        case .fault(let f): return .failure(f)
        default: return .failure(RuleFault("'\(what)' needs true or false, not a \(a.typeName)"))
        }
    }

    // MARK: Functions

    static func call(_ function: Function, _ a: RuleValue, today: CivilDay) -> RuleValue {
        if case .fault = a { return a }
        switch (function, a) {
        case (.age, .string(let s)):
            guard let birth = CivilDay(parsing: s) else {
                return .fault(RuleFault("age() needs a date YYYY-MM-DD"))
            }
            return .integer(Int64(birth.years(until: today)))
        case (.len, .string(let s)): return .integer(Int64(s.count))
        case (.len, .list(let l)): return .integer(Int64(l.count))
        case (.lower, .string(let s)): return .string(lowercased(s))
        default: return .fault(RuleFault("\(function.rawValue)() cannot take a \(a.typeName)"))
        }
    }

    /// `lowercased()` with a fast path for ASCII text (nearly every field an application holds):
    /// already lower case is returned as is, otherwise the bytes are mapped without Unicode tables.
    static func lowercased(_ s: String) -> String {
        var s = s
        var ascii = true
        // `withUTF8` reads a small (inline) string in place: no allocation to scan it.
        let lowered: String? = s.withUTF8 { u in
            var hasUpper = false
            for c in u {
                if c >= 0x80 {
                    ascii = false
                    return nil
                }
                if c &- 0x41 < 26 { hasUpper = true }
            }
            guard hasUpper else { return nil }
            return String(unsafeUninitializedCapacity: u.count) { out in
                for i in 0..<u.count {
                    let c = u[i]
                    out[i] = c &- 0x41 < 26 ? c &+ 0x20 : c
                }
                return u.count
            }
        }
        if !ascii { return s.lowercased() }
        return lowered ?? s
    }
}
