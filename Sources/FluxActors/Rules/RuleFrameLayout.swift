import Foundation

/// How one evaluation's frame is filled from an application: a tree of the field paths the
/// compiled expressions read (so `customer` is looked up once however many of its fields are
/// used), then the derived slots (`age(customer.date_of_birth)`) computed once each.
struct RuleFrameLayout: Sendable {
    struct FieldStep: Sendable {
        var key: String
        var slot: Int?
        var dotted: String
        var children: [FieldStep]
    }

    /// Fields that `CheckoutRequest` has already validated and typed; read from its stored
    /// properties (the same values as in `raw`) rather than by hashing keys into `raw`.
    enum TypedField: Sendable {
        case merchantID, storeID, mode, customerID, customerName, phone, pan, dateOfBirth, bureauScore
        case amountPaise, tenureMonths

        init?(_ dotted: String) {
            switch dotted {
            case "merchant_id": self = .merchantID
            case "store_id": self = .storeID
            case "mode": self = .mode
            case "customer.id": self = .customerID
            case "customer.name": self = .customerName
            case "customer.phone": self = .phone
            case "customer.pan": self = .pan
            case "customer.date_of_birth": self = .dateOfBirth
            case "customer.bureau_score": self = .bureauScore
            case "loan.amount_paise": self = .amountPaise
            case "loan.tenure_months": self = .tenureMonths
            default: return nil
            }
        }

        @inline(__always)
        func value(in request: CheckoutRequest) -> RuleValue? {
            switch self {
            case .merchantID: .string(request.merchantID)
            case .storeID: request.storeID.map { .string($0) }
            case .mode: .string(request.mode.rawValue)
            case .customerID: .string(request.customerID)
            case .customerName: .string(request.customerName)
            case .phone: .string(request.phone)
            case .pan: .string(request.pan)
            case .dateOfBirth: .string(request.dateOfBirth)
            case .bureauScore: .integer(Int64(request.bureauScore))
            case .amountPaise: .integer(request.amountPaise)
            case .tenureMonths: .integer(Int64(request.tenureMonths))
            }
        }
    }

    private let typed: [(field: TypedField, slot: Int)]
    private let steps: [FieldStep]
    /// Every slot's value before the request is read: "… is missing" for fields.
    private let defaults: [RuleValue]
    private let derived: [DerivedSlot]

    init(_ layout: SlotLayout) {
        var steps: [FieldStep] = []
        var typed: [(field: TypedField, slot: Int)] = []
        var defaults = [RuleValue](repeating: .fault(RuleFault("not computed")), count: layout.count)
        for (path, slot) in layout.fields {
            let dotted = path.joined(separator: ".")
            defaults[slot] = .fault(RuleFault("\(dotted) is missing"))
            if let field = TypedField(dotted) {
                typed.append((field, slot))
            } else {
                Self.insert(path[...], slot: slot, prefix: "", into: &steps)
            }
        }
        self.steps = steps
        self.typed = typed
        self.defaults = defaults
        self.derived = layout.derived
    }

    private static func insert(_ path: ArraySlice<String>, slot: Int, prefix: String, into steps: inout [FieldStep]) {
        guard let key = path.first else { return }
        let dotted = prefix.isEmpty ? key : "\(prefix).\(key)"
        let index: Int
        if let existing = steps.firstIndex(where: { $0.key == key }) {
            index = existing
        } else {
            steps.append(FieldStep(key: key, slot: nil, dotted: dotted, children: []))
            index = steps.count - 1
        }
        if path.count == 1 {
            steps[index].slot = slot
        } else {
            insert(path.dropFirst(), slot: slot, prefix: dotted, into: &steps[index].children)
        }
    }

    /// Fills a frame for `application` and runs `body` with it. The frame lives on the stack
    /// and is torn down before this returns; `body` must not keep it.
    func withFrame<R>(_ request: CheckoutRequest, today: Date, _ body: (RuleFrame) -> R) -> R {
        let count = defaults.count
        let civilToday = CivilDay(today)
        return withUnsafeTemporaryAllocation(of: RuleValue.self, capacity: max(count, 1)) { buffer in
            let base = buffer.baseAddress!
            if count > 0 { defaults.withUnsafeBufferPointer { base.initialize(from: $0.baseAddress!, count: count) } }
            defer { base.deinitialize(count: count) }
            for (field, slot) in typed {
                if let value = field.value(in: request) { base[slot] = value }
            }
            if !steps.isEmpty { Self.fill(steps, from: request.raw, into: base) }
            for d in derived {
                base[d.slot] = RuleOperations.call(d.function, base[d.source], today: civilToday)
            }
            return body(RuleFrame(slots: base, today: civilToday))
        }
    }

    private static func fill(_ steps: [FieldStep], from json: JSONValue, into base: UnsafeMutablePointer<RuleValue>) {
        guard case .object(let fields) = json else { return }
        for step in steps {
            if let value = fields[step.key] { take(step, value, into: base) }
        }
    }

    @inline(__always)
    private static func take(_ step: FieldStep, _ value: JSONValue, into base: UnsafeMutablePointer<RuleValue>) {
        if let slot = step.slot, case .fault(let missing) = base[slot] {
            base[slot] = RuleValue(field: value, missing: missing, path: step.dotted)
        }
        if !step.children.isEmpty { fill(step.children, from: value, into: base) }
    }
}
