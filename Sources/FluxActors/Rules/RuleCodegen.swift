/// A compiled expression: a tree of nodes built once per ruleset version. Each node kind is a
/// final subclass, so running one is a virtual call on a guaranteed reference (no closure
/// context to retain). The common shapes (a field against a constant, a field in a constant
/// list) have nodes of their own so that a typical condition is one call; every node computes
/// exactly what `RuleOperations` computes (integer fast paths fall back to it for any other
/// value), so faults and their messages are the same in every shape.
///
/// `@unchecked Sendable`: a node is immutable after init (every stored property of every
/// subclass is a `let` of a `Sendable` type), so sharing one across threads is safe. The base
/// class cannot be `final`, which is what stops the checked conformance.
class RuleNode: @unchecked Sendable {
    func run(_ frame: RuleFrame) -> RuleValue { preconditionFailure("RuleNode is abstract") }

    /// A condition's outcome without building its value: what `run` gives when that is a
    /// boolean, `.other` for anything else (a fault, a value of another type), for which the
    /// caller runs `run` to learn what it is. The common condition nodes override it with the
    /// same fast paths as `run` and never build a `RuleValue`; every override gives `.holds`
    /// or `.fails` exactly when `run` gives `true` or `false`.
    func test(_ frame: RuleFrame) -> RuleTruth { RuleTruth(run(frame)) }

    /// For a node that compares an integer slot with integer constants: the same check as a
    /// range, which the decision loop runs inline when the slot holds an integer (any other
    /// value goes to `test`).
    var integerRange: IntegerRangeCheck? { nil }

    @inline(__always)
    final func callAsFunction(_ frame: RuleFrame) -> RuleValue { run(frame) }
}

typealias RuleCode = RuleNode

/// `slot` holds an integer in `low ... high` (or, `negated`, outside it): every integer
/// comparison of a slot with a constant, and `between` two integer constants, in one form.
/// An empty range (`low > high`) holds for no integer.
struct IntegerRangeCheck: Sendable {
    /// -1: no check.
    var slot: Int
    var low: Int64
    var high: Int64
    var negated: Bool

    static let none = IntegerRangeCheck(slot: -1, low: 1, high: 0, negated: false)

    @inline(__always)
    func test(_ x: Int64) -> RuleTruth { RuleTruth((low <= x && x <= high) != negated) }

    /// `x OP c` for an integer slot `x`, as `integerCompare` computes it.
    init(slot: Int, _ op: BinaryOperator, _ c: Int64) {
        self.slot = slot
        negated = false
        switch op {
        case .equal: (low, high) = (c, c)
        case .notEqual: (low, high, negated) = (c, c, true)
        case .less: (low, high) = c == .min ? (1, 0) : (.min, c - 1)
        case .lessOrEqual: (low, high) = (.min, c)
        case .greater: (low, high) = c == .max ? (1, 0) : (c + 1, .max)
        default: (low, high) = (c, .max)
        }
    }

    init(slot: Int, low: Int64, high: Int64, negated: Bool) {
        (self.slot, self.low, self.high, self.negated) = (slot, low, high, negated)
    }
}

/// The outcome of a condition as `RuleNode.test` reports it.
enum RuleTruth: UInt8 {
    case fails, holds, other

    @inline(__always)
    init(_ b: Bool) { self = b ? .holds : .fails }

    @inline(__always)
    init(_ value: RuleValue) {
        if case .boolean(let b) = value { self = b ? .holds : .fails } else { self = .other }
    }
}

extension ExpressionCompiler {
    static func emit(_ expression: TypedExpression) -> RuleCode {
        switch expression {
        case .constant(let v):
            return ConstantNode(v)
        case .slot(let i):
            return SlotNode(i)
        case .list(let items):
            return ListNode(items.map(emit))
        case .negate(let a):
            return NegateNode(emit(a))
        case .not(let a):
            return NotNode(emit(a))
        case .call(let function, let a):
            return CallNode(function, emit(a))
        case .binary(let op, let a, let b):
            return emitBinary(op, a, b)
        case .membership(let a, let b, let negated):
            if case .constant(.list(let elements)) = b {
                if case .slot(let i) = a { return SlotInListNode(i, elements, negated: negated) }
                return InListNode(emit(a), elements, negated: negated)
            }
            return MembershipNode(emit(a), emit(b), negated: negated)
        case .between(let a, let low, let high, let negated):
            if case .slot(let i) = a, let lo = low.constantValue, let hi = high.constantValue {
                return SlotBetweenNode(i, lo, hi, negated: negated)
            }
            return BetweenNode(emit(a), emit(low), emit(high), negated: negated)
        }
    }

    private static func emitBinary(_ op: BinaryOperator, _ a: TypedExpression, _ b: TypedExpression) -> RuleCode {
        switch op {
        case .and:
            return ShortCircuitNode(and: emit(a), emit(b))
        case .or:
            return ShortCircuitNode(or: emit(a), emit(b))
        case .equal, .notEqual, .less, .lessOrEqual, .greater, .greaterOrEqual:
            switch (a, b) {
            case (.slot(let i), .constant(let c)): return SlotCompareNode(op, i, c)
            case (.constant(let c), .slot(let i)): return ConstantCompareSlotNode(op, c, i)
            case (.slot(let i), .slot(let j)): return SlotsCompareNode(op, i, j)
            default: return CompareNode(op, emit(a), emit(b))
            }
        case .add, .subtract, .multiply, .divide, .remainder:
            switch (a, b) {
            case (.slot(let i), .constant(let c)): return SlotArithmeticNode(op, i, c)
            case (.constant(let c), .slot(let i)): return ConstantArithmeticSlotNode(op, c, i)
            default: return ArithmeticNode(op, emit(a), emit(b))
            }
        }
    }
}

/// `x OP y` on two integers, as `RuleOperations.compare` computes it.
@inline(__always)
private func integerCompare(_ op: BinaryOperator, _ x: Int64, _ y: Int64) -> Bool {
    switch op {
    case .equal: x == y
    case .notEqual: x != y
    case .less: x < y
    case .lessOrEqual: x <= y
    case .greater: x > y
    default: x >= y
    }
}

final class ConstantNode: RuleNode, @unchecked Sendable {
    let value: RuleValue
    init(_ value: RuleValue) { self.value = value }
    override func run(_ frame: RuleFrame) -> RuleValue { value }
}

final class SlotNode: RuleNode, @unchecked Sendable {
    let slot: Int
    init(_ slot: Int) { self.slot = slot }
    override func run(_ frame: RuleFrame) -> RuleValue { frame.slots[slot] }
}

final class ListNode: RuleNode, @unchecked Sendable {
    let items: [RuleNode]
    init(_ items: [RuleNode]) { self.items = items }
    override func run(_ frame: RuleFrame) -> RuleValue { .list(items.map { $0.run(frame) }) }
}

final class NegateNode: RuleNode, @unchecked Sendable {
    let a: RuleNode
    init(_ a: RuleNode) { self.a = a }
    override func run(_ frame: RuleFrame) -> RuleValue { RuleOperations.negate(a.run(frame)) }
}

final class NotNode: RuleNode, @unchecked Sendable {
    let a: RuleNode
    init(_ a: RuleNode) { self.a = a }
    override func run(_ frame: RuleFrame) -> RuleValue { RuleOperations.not(a.run(frame)) }
    override func test(_ frame: RuleFrame) -> RuleTruth {
        switch a.test(frame) {
        case .holds: .fails
        case .fails: .holds
        case .other: .other
        }
    }
}

final class CallNode: RuleNode, @unchecked Sendable {
    let function: RuleOperations.Function
    let a: RuleNode
    init(_ function: RuleOperations.Function, _ a: RuleNode) {
        self.function = function
        self.a = a
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        RuleOperations.call(function, a.run(frame), today: frame.today)
    }
}

final class SlotInListNode: RuleNode, @unchecked Sendable {
    let slot: Int
    let elements: [RuleValue]
    let negated: Bool
    /// The elements when all are strings, or all integers: a value of that kind is then looked
    /// up without matching each element's kind (any other value takes the general path).
    let strings: [String]?
    let integers: [Int64]?
    init(_ slot: Int, _ elements: [RuleValue], negated: Bool) {
        self.slot = slot
        self.elements = elements
        self.negated = negated
        var strings: [String] = []
        var integers: [Int64] = []
        for element in elements {
            switch element {
            case .string(let s): strings.append(s)
            case .integer(let i): integers.append(i)
            default: break
            }
        }
        self.strings = strings.count == elements.count ? strings : nil
        self.integers = integers.count == elements.count ? integers : nil
        if let all = self.strings {
            let buffer = UnsafeMutableBufferPointer<String>.allocate(capacity: all.count)
            _ = buffer.initialize(from: all)
            stringBuffer = buffer
        } else {
            stringBuffer = nil
        }
        if let all = self.integers {
            let buffer = UnsafeMutableBufferPointer<Int64>.allocate(capacity: all.count)
            _ = buffer.initialize(from: all)
            integerBuffer = buffer
        } else {
            integerBuffer = nil
        }
    }
    /// `strings` and `integers` in memory of the node's own, read by `test` without retaining
    /// an array (reading an array property retains its buffer). Freed in `deinit`; never written
    /// after `init`.
    private let stringBuffer: UnsafeMutableBufferPointer<String>?
    private let integerBuffer: UnsafeMutableBufferPointer<Int64>?

    deinit {
        if let stringBuffer {
            stringBuffer.deinitialize()
            stringBuffer.deallocate()
        }
        integerBuffer?.deallocate()
    }

    override func test(_ frame: RuleFrame) -> RuleTruth {
        // As `run`'s fast paths (`strings.contains(x)`, `integers.contains(x)`).
        switch frame.slots[slot] {
        case .string(let x):
            if let stringBuffer {
                for i in stringBuffer.indices where stringBuffer[i] == x { return RuleTruth(!negated) }
                return RuleTruth(negated)
            }
        case .integer(let x):
            if let integerBuffer {
                for i in integerBuffer.indices where integerBuffer[i] == x { return RuleTruth(!negated) }
                return RuleTruth(negated)
            }
        default: break
        }
        return RuleTruth(run(frame))
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        switch frame.slots[slot] {
        case .string(let x):
            if let strings { return .boolean(strings.contains(x) != negated) }
        case .integer(let x):
            if let integers { return .boolean(integers.contains(x) != negated) }
        default: break
        }
        let x = frame.slots[slot]
        if case .fault = x { return x }
        return RuleOperations.contains(elements, x, negated: negated)
    }
}

final class InListNode: RuleNode, @unchecked Sendable {
    let a: RuleNode
    let elements: [RuleValue]
    let negated: Bool
    init(_ a: RuleNode, _ elements: [RuleValue], negated: Bool) {
        self.a = a
        self.elements = elements
        self.negated = negated
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        let x = a.run(frame)
        if case .fault = x { return x }
        return RuleOperations.contains(elements, x, negated: negated)
    }
}

final class MembershipNode: RuleNode, @unchecked Sendable {
    let a: RuleNode
    let list: RuleNode
    let negated: Bool
    init(_ a: RuleNode, _ list: RuleNode, negated: Bool) {
        self.a = a
        self.list = list
        self.negated = negated
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        RuleOperations.membership(a.run(frame), list.run(frame), negated: negated)
    }
}

final class SlotBetweenNode: RuleNode, @unchecked Sendable {
    let slot: Int
    let low: RuleValue
    let high: RuleValue
    let negated: Bool
    /// The bounds when both are integers.
    let integerBounds: ClosedRange<Int64>?
    init(_ slot: Int, _ low: RuleValue, _ high: RuleValue, negated: Bool) {
        self.slot = slot
        self.low = low
        self.high = high
        self.negated = negated
        if case .integer(let lo) = low, case .integer(let hi) = high, lo <= hi {
            integerBounds = lo...hi
        } else {
            integerBounds = nil
        }
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        if case .integer(let x) = frame.slots[slot], case .integer(let lo) = low, case .integer(let hi) = high {
            return .boolean((lo <= x && x <= hi) != negated)
        }
        return RuleOperations.between(frame.slots[slot], low, high, negated: negated)
    }
    override var integerRange: IntegerRangeCheck? {
        guard case .integer(let lo) = low, case .integer(let hi) = high else { return nil }
        return IntegerRangeCheck(slot: slot, low: lo, high: hi, negated: negated)
    }
    override func test(_ frame: RuleFrame) -> RuleTruth {
        if let integerBounds, case .integer(let x) = frame.slots[slot] {
            return RuleTruth(integerBounds.contains(x) != negated)
        }
        return RuleTruth(run(frame))
    }
}

final class BetweenNode: RuleNode, @unchecked Sendable {
    let a: RuleNode
    let low: RuleNode
    let high: RuleNode
    let negated: Bool
    init(_ a: RuleNode, _ low: RuleNode, _ high: RuleNode, negated: Bool) {
        self.a = a
        self.low = low
        self.high = high
        self.negated = negated
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        RuleOperations.between(a.run(frame), low.run(frame), high.run(frame), negated: negated)
    }
}

/// `and` / `or`: the right side runs only when the left does not decide (`false` for `and`,
/// `true` for `or`).
final class ShortCircuitNode: RuleNode, @unchecked Sendable {
    let left: RuleNode
    let right: RuleNode
    /// The left value that decides without the right: false for `and`, true for `or`.
    let decidesOn: Bool
    let name: StaticString
    init(and left: RuleNode, _ right: RuleNode) {
        (self.left, self.right, self.decidesOn, self.name) = (left, right, false, "and")
    }
    init(or left: RuleNode, _ right: RuleNode) {
        (self.left, self.right, self.decidesOn, self.name) = (left, right, true, "or")
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        switch RuleOperations.truth(left.run(frame), name) {
        case .failure(let f): return .fault(f)
        case .success(let l) where l == decidesOn: return .boolean(l)
        case .success:
            switch RuleOperations.truth(right.run(frame), name) {
            case .success(let r): return .boolean(r)
            case .failure(let f): return .fault(f)
            }
        }
    }
    /// `x >= a and x <= b` on one integer slot is `x` in the intersection of the two ranges:
    /// when the slot holds an integer both sides are booleans, and `and` of the two is the
    /// intersection (an empty one holds for no integer).
    override var integerRange: IntegerRangeCheck? {
        guard !decidesOn, let l = left.integerRange, let r = right.integerRange, l.slot == r.slot, !l.negated,
            !r.negated
        else { return nil }
        return IntegerRangeCheck(slot: l.slot, low: max(l.low, r.low), high: min(l.high, r.high), negated: false)
    }
    override func test(_ frame: RuleFrame) -> RuleTruth {
        // As `run`: anything but a boolean on either side is a fault (`.other`).
        let l = left.test(frame)
        if l == .other || (l == .holds) == decidesOn { return l }
        return right.test(frame)
    }
}

final class SlotCompareNode: RuleNode, @unchecked Sendable {
    let op: BinaryOperator
    let slot: Int
    let constant: RuleValue
    /// The constant when it is an integer.
    let integer: Int64?
    init(_ op: BinaryOperator, _ slot: Int, _ constant: RuleValue) {
        self.op = op
        self.slot = slot
        self.constant = constant
        if case .integer(let i) = constant { integer = i } else { integer = nil }
    }
    override var integerRange: IntegerRangeCheck? {
        guard let integer else { return nil }
        return IntegerRangeCheck(slot: slot, op, integer)
    }
    override func test(_ frame: RuleFrame) -> RuleTruth {
        switch frame.slots[slot] {
        case .integer(let x):
            if let integer { return RuleTruth(integerCompare(op, x, integer)) }
        case .string(let x):
            if case .string(let y) = constant, op == .equal || op == .notEqual {
                // As `RuleOperations.looselyEqual`: unequal lengths settle it without the bytes.
                return RuleTruth((x.utf8.count == y.utf8.count && x == y) == (op == .equal))
            }
        default: break
        }
        return RuleTruth(run(frame))
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        switch (frame.slots[slot], constant) {
        case (.integer(let x), .integer(let y)): return .boolean(integerCompare(op, x, y))
        case (.string(let x), .string(let y)) where op == .equal || op == .notEqual:
            // As `RuleOperations.looselyEqual`: unequal lengths settle it without the bytes.
            return .boolean((x.utf8.count == y.utf8.count && x == y) == (op == .equal))
        default: return RuleOperations.compare(op, frame.slots[slot], constant)
        }
    }
}

final class ConstantCompareSlotNode: RuleNode, @unchecked Sendable {
    let op: BinaryOperator
    let constant: RuleValue
    let slot: Int
    init(_ op: BinaryOperator, _ constant: RuleValue, _ slot: Int) {
        self.op = op
        self.constant = constant
        self.slot = slot
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        if case .integer(let x) = constant, case .integer(let y) = frame.slots[slot] {
            return .boolean(integerCompare(op, x, y))
        }
        return RuleOperations.compare(op, constant, frame.slots[slot])
    }
    override func test(_ frame: RuleFrame) -> RuleTruth {
        if case .integer(let x) = constant, case .integer(let y) = frame.slots[slot] {
            return RuleTruth(integerCompare(op, x, y))
        }
        return RuleTruth(run(frame))
    }
    override var integerRange: IntegerRangeCheck? {
        guard case .integer(let c) = constant else { return nil }
        // `c OP x` is `x (mirrored OP) c`.
        switch op {
        case .equal, .notEqual: return IntegerRangeCheck(slot: slot, op, c)
        case .less: return IntegerRangeCheck(slot: slot, .greater, c)
        case .lessOrEqual: return IntegerRangeCheck(slot: slot, .greaterOrEqual, c)
        case .greater: return IntegerRangeCheck(slot: slot, .less, c)
        case .greaterOrEqual: return IntegerRangeCheck(slot: slot, .lessOrEqual, c)
        default: return nil
        }
    }
}

final class SlotsCompareNode: RuleNode, @unchecked Sendable {
    let op: BinaryOperator
    let left: Int
    let right: Int
    init(_ op: BinaryOperator, _ left: Int, _ right: Int) {
        self.op = op
        self.left = left
        self.right = right
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        if case .integer(let x) = frame.slots[left], case .integer(let y) = frame.slots[right] {
            return .boolean(integerCompare(op, x, y))
        }
        return RuleOperations.compare(op, frame.slots[left], frame.slots[right])
    }
    override func test(_ frame: RuleFrame) -> RuleTruth {
        if case .integer(let x) = frame.slots[left], case .integer(let y) = frame.slots[right] {
            return RuleTruth(integerCompare(op, x, y))
        }
        return RuleTruth(run(frame))
    }
}

final class CompareNode: RuleNode, @unchecked Sendable {
    let op: BinaryOperator
    let left: RuleNode
    let right: RuleNode
    init(_ op: BinaryOperator, _ left: RuleNode, _ right: RuleNode) {
        self.op = op
        self.left = left
        self.right = right
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        RuleOperations.compare(op, left.run(frame), right.run(frame))
    }
    override func test(_ frame: RuleFrame) -> RuleTruth {
        let a = left.run(frame)
        let b = right.run(frame)
        // Two numbers: as `RuleOperations.compare` (integers exactly, a decimal on either side
        // as doubles), without its general matching.
        if let c = numericOrder(a, b) {
            switch op {
            case .equal: return RuleTruth(c == 0)
            case .notEqual: return RuleTruth(c != 0)
            case .less: return RuleTruth(c < 0)
            case .lessOrEqual: return RuleTruth(c <= 0)
            case .greater: return RuleTruth(c > 0)
            default: return RuleTruth(c >= 0)
            }
        }
        return RuleTruth(RuleOperations.compare(op, a, b))
    }
}

/// -1, 0 or 1 for two numbers, as `RuleOperations.order` and `looselyEqual` give them; nil for
/// anything else. A decimal is never NaN (arithmetic refuses non-finite results and JSON has no
/// NaN), so "neither less nor equal" is "greater" as in `order`.
@inline(__always)
private func numericOrder(_ a: RuleValue, _ b: RuleValue) -> Int? {
    @inline(__always) func order(_ x: Double, _ y: Double) -> Int { x < y ? -1 : (x == y ? 0 : 1) }
    switch a {
    case .integer(let x):
        switch b {
        case .integer(let y): return x < y ? -1 : (x == y ? 0 : 1)
        case .decimal(let y): return order(Double(x), y)
        default: return nil
        }
    case .decimal(let x):
        switch b {
        case .integer(let y): return order(x, Double(y))
        case .decimal(let y): return order(x, y)
        default: return nil
        }
    default: return nil
    }
}

final class SlotArithmeticNode: RuleNode, @unchecked Sendable {
    let op: BinaryOperator
    let slot: Int
    let constant: RuleValue
    init(_ op: BinaryOperator, _ slot: Int, _ constant: RuleValue) {
        self.op = op
        self.slot = slot
        self.constant = constant
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        if case .integer(let x) = frame.slots[slot], case .integer(let y) = constant {
            return RuleOperations.integerArithmetic(op, x, y)
        }
        return RuleOperations.arithmetic(op, frame.slots[slot], constant)
    }
}

final class ConstantArithmeticSlotNode: RuleNode, @unchecked Sendable {
    let op: BinaryOperator
    let constant: RuleValue
    let slot: Int
    init(_ op: BinaryOperator, _ constant: RuleValue, _ slot: Int) {
        self.op = op
        self.constant = constant
        self.slot = slot
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        if case .integer(let x) = constant, case .integer(let y) = frame.slots[slot] {
            return RuleOperations.integerArithmetic(op, x, y)
        }
        return RuleOperations.arithmetic(op, constant, frame.slots[slot])
    }
}

final class ArithmeticNode: RuleNode, @unchecked Sendable {
    let op: BinaryOperator
    let left: RuleNode
    let right: RuleNode
    init(_ op: BinaryOperator, _ left: RuleNode, _ right: RuleNode) {
        self.op = op
        self.left = left
        self.right = right
    }
    override func run(_ frame: RuleFrame) -> RuleValue {
        let a = left.run(frame)
        let b = right.run(frame)
        // Two numbers: as `RuleOperations.arithmetic`, without its general matching.
        switch a {
        case .integer(let x):
            switch b {
            case .integer(let y): return RuleOperations.integerArithmetic(op, x, y)
            case .decimal(let y): return RuleOperations.decimalArithmetic(op, Double(x), y)
            default: break
            }
        case .decimal(let x):
            switch b {
            case .integer(let y): return RuleOperations.decimalArithmetic(op, x, Double(y))
            case .decimal(let y): return RuleOperations.decimalArithmetic(op, x, y)
            default: break
            }
        default: break
        }
        return RuleOperations.arithmetic(op, a, b)
    }
}
