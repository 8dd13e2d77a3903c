/// Turns a checked expression into closures. The common shapes (a field against a constant,
/// a field in a constant list) get closures of their own so that a typical condition is one
/// call and one switch.
extension ExpressionCompiler {
    static func emit(_ expression: TypedExpression) -> RuleCode {
        switch expression {
        case .constant(let v):
            return { _ in v }
        case .slot(let i):
            return { frame in frame.slots[i] }
        case .list(let items):
            let codes = items.map(emit)
            return { frame in .list(codes.map { $0(frame) }) }
        case .negate(let a):
            let code = emit(a)
            return { frame in RuleOperations.negate(code(frame)) }
        case .not(let a):
            let code = emit(a)
            return { frame in RuleOperations.not(code(frame)) }
        case .call(let function, let a):
            let code = emit(a)
            return { frame in RuleOperations.call(function, code(frame), today: frame.today) }
        case .binary(let op, let a, let b):
            return emitBinary(op, a, b)
        case .membership(let a, let b, let negated):
            if case .constant(.list(let elements)) = b {
                if case .slot(let i) = a {
                    return { frame in
                        let x = frame.slots[i]
                        if case .fault = x { return x }
                        return RuleOperations.contains(elements, x, negated: negated)
                    }
                }
                let code = emit(a)
                return { frame in
                    let x = code(frame)
                    if case .fault = x { return x }
                    return RuleOperations.contains(elements, x, negated: negated)
                }
            }
            let x = emit(a)
            let list = emit(b)
            return { frame in RuleOperations.membership(x(frame), list(frame), negated: negated) }
        case .between(let a, let low, let high, let negated):
            if case .slot(let i) = a, let lo = low.constantValue, let hi = high.constantValue {
                return { frame in RuleOperations.between(frame.slots[i], lo, hi, negated: negated) }
            }
            let x = emit(a)
            let lo = emit(low)
            let hi = emit(high)
            return { frame in RuleOperations.between(x(frame), lo(frame), hi(frame), negated: negated) }
        }
    }

    private static func emitBinary(_ op: BinaryOperator, _ a: TypedExpression, _ b: TypedExpression) -> RuleCode {
        switch op {
        case .and:
            let left = emit(a)
            let right = emit(b)
            return { frame in
                switch RuleOperations.truth(left(frame), "and") {
                case .failure(let f): return .fault(f)
                case .success(false): return .boolean(false)
                case .success(true):
                    switch RuleOperations.truth(right(frame), "and") {
                    case .success(let r): return .boolean(r)
                    case .failure(let f): return .fault(f)
                    }
                }
            }
        case .or:
            let left = emit(a)
            let right = emit(b)
            return { frame in
                switch RuleOperations.truth(left(frame), "or") {
                case .failure(let f): return .fault(f)
                case .success(true): return .boolean(true)
                case .success(false):
                    switch RuleOperations.truth(right(frame), "or") {
                    case .success(let r): return .boolean(r)
                    case .failure(let f): return .fault(f)
                    }
                }
            }
        case .equal, .notEqual, .less, .lessOrEqual, .greater, .greaterOrEqual:
            switch (a, b) {
            case (.slot(let i), .constant(let c)):
                return { frame in RuleOperations.compare(op, frame.slots[i], c) }
            case (.constant(let c), .slot(let i)):
                return { frame in RuleOperations.compare(op, c, frame.slots[i]) }
            case (.slot(let i), .slot(let j)):
                return { frame in RuleOperations.compare(op, frame.slots[i], frame.slots[j]) }
            default:
                let left = emit(a)
                let right = emit(b)
                return { frame in RuleOperations.compare(op, left(frame), right(frame)) }
            }
        case .add, .subtract, .multiply, .divide, .remainder:
            switch (a, b) {
            case (.slot(let i), .constant(let c)):
                return { frame in RuleOperations.arithmetic(op, frame.slots[i], c) }
            case (.constant(let c), .slot(let i)):
                return { frame in RuleOperations.arithmetic(op, c, frame.slots[i]) }
            default:
                let left = emit(a)
                let right = emit(b)
                return { frame in RuleOperations.arithmetic(op, left(frame), right(frame)) }
            }
        }
    }
}
