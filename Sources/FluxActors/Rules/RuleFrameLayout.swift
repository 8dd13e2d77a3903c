import Foundation

/// How one evaluation's frame is filled from an application: a tree of the field paths the
/// compiled expressions read (so `customer` is looked up once however many of its fields are
/// used), then the derived slots (`age(customer.date_of_birth)`) computed once each.
struct RuleFrameLayout: Sendable {
    /// One name of a field path while the tree is built.
    struct FieldStep: Sendable {
        var key: String
        var slot: Int?
        var dotted: String
        var children: [FieldStep]
    }

    /// The tree laid out flat, breadth first: the children of a step are
    /// `steps[childStart ..< childStart + childCount]`; the roots are `steps[0 ..< rootCount]`.
    /// Read through an unsafe buffer while filling, so no step is copied (and retained).
    struct FlatStep: Sendable {
        var key: String
        var length: Int
        var slot: Int
        var dotted: String
        var missing: RuleFault
        var childStart: Int
        var childCount: Int
    }

    /// Fields that `CheckoutRequest` has already validated and typed; read from its stored
    /// properties (the same values as in `raw`) rather than by hashing keys into `raw`.
    enum TypedField: Sendable {
        case merchantID, storeID, mode, customerID, customerName, phone, pan, dateOfBirth, bureauScore
        case amountPaise, tenureMonths, email, pincode, monthlyIncomePaise, productSKU, productCategory
        case productPricePaise

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
            case "customer.email": self = .email
            case "customer.pincode": self = .pincode
            case "customer.monthly_income_paise": self = .monthlyIncomePaise
            case "product.sku": self = .productSKU
            case "product.category": self = .productCategory
            case "product.price_paise": self = .productPricePaise
            default: return nil
            }
        }

        /// Whether the field always holds an integer (a non-optional integer property): its slot
        /// then holds no reference and needs no teardown.
        var isAlwaysInteger: Bool {
            switch self {
            case .bureauScore, .amountPaise, .tenureMonths: true
            default: false
            }
        }

        /// Initialises `slot` with the field's value, or `missing` when the request lacks it.
        @inline(__always)
        func initialize(
            _ slot: UnsafeMutablePointer<RuleValue>, from request: borrowing CheckoutRequest, missing: RuleFault
        ) {
            switch self {
            case .merchantID: slot.initialize(to: .string(request.merchantID))
            case .storeID: slot.initialize(to: request.storeID.map { .string($0) } ?? .fault(missing))
            case .mode: slot.initialize(to: .string(request.mode.rawValue))
            case .customerID: slot.initialize(to: .string(request.customerID))
            case .customerName: slot.initialize(to: .string(request.customerName))
            case .phone: slot.initialize(to: .string(request.phone))
            case .pan: slot.initialize(to: .string(request.pan))
            case .dateOfBirth: slot.initialize(to: .string(request.dateOfBirth))
            case .bureauScore: slot.initialize(to: .integer(Int64(request.bureauScore)))
            case .amountPaise: slot.initialize(to: .integer(request.amountPaise))
            case .tenureMonths: slot.initialize(to: .integer(Int64(request.tenureMonths)))
            case .email: slot.initialize(to: request.email.map { .string($0) } ?? .fault(missing))
            case .pincode: slot.initialize(to: request.pincode.map { .string($0) } ?? .fault(missing))
            case .monthlyIncomePaise:
                slot.initialize(to: request.monthlyIncomePaise.map { .integer($0) } ?? .fault(missing))
            case .productSKU: slot.initialize(to: request.productSKU.map { .string($0) } ?? .fault(missing))
            case .productCategory:
                slot.initialize(to: request.productCategory.map { .string($0) } ?? .fault(missing))
            case .productPricePaise:
                slot.initialize(to: request.productPricePaise.map { .integer($0) } ?? .fault(missing))
            }
        }

    }

    private let typed: RuleTable<TypedSlot>
    private let steps: [FlatStep]
    private let rootCount: Int
    // Structs rather than tuples: no run-time type metadata lookups on the hot path.
    struct TypedSlot: Sendable {
        var field: TypedField
        var slot: Int
        /// What the slot holds when the request lacks the field (an optional one).
        var missing: RuleFault
    }

    struct MissingSlot: Sendable {
        var slot: Int
        var fault: RuleFault
    }

    private let slotCount: Int
    /// The slots that may hold a reference (a string, a list, a fault) and so are torn down;
    /// the others always hold an integer.
    private let teardown: RuleTable<Int>
    /// The slots read from `raw` (fields `CheckoutRequest` does not type), each with the fault
    /// it holds until the walk of `raw` finds its field.
    private let rawSlots: RuleTable<MissingSlot>
    private let derived: RuleTable<DerivedSlot>

    init(_ layout: SlotLayout) {
        var steps: [FieldStep] = []
        var typed: [TypedSlot] = []
        var rawSlots: [MissingSlot] = []
        var faults: [Int: RuleFault] = [:]
        for (path, slot) in layout.fields {
            let dotted = path.joined(separator: ".")
            let fault = RuleFault("\(dotted) is missing")
            faults[slot] = fault
            if let field = TypedField(dotted) {
                typed.append(TypedSlot(field: field, slot: slot, missing: fault))
            } else {
                rawSlots.append(MissingSlot(slot: slot, fault: fault))
                Self.insert(path[...], slot: slot, prefix: "", into: &steps)
            }
        }
        var flat: [FlatStep] = []
        var level: [FieldStep] = steps
        var pending: [(children: [FieldStep], parent: Int)] = []
        // Breadth first: a level's steps are contiguous, then each parent's children.
        func append(_ items: [FieldStep], parent: Int?) {
            if let parent {
                flat[parent].childStart = flat.count
                flat[parent].childCount = items.count
            }
            for item in items {
                let missing: RuleFault
                if let slot = item.slot, let f = faults[slot] {
                    missing = f
                } else {
                    missing = RuleFault("\(item.dotted) is missing")
                }
                flat.append(
                    FlatStep(
                        key: item.key, length: item.key.utf8.count, slot: item.slot ?? -1, dotted: item.dotted,
                        missing: missing, childStart: 0, childCount: 0))
                if !item.children.isEmpty { pending.append((item.children, flat.count - 1)) }
            }
        }
        append(level, parent: nil)
        while !pending.isEmpty {
            let next = pending.removeFirst()
            append(next.children, parent: next.parent)
        }
        level = []
        self.steps = flat
        self.rootCount = steps.count
        self.typed = RuleTable(typed)
        self.rawSlots = RuleTable(rawSlots)
        self.slotCount = layout.count
        let integers = Set(typed.filter { $0.field.isAlwaysInteger }.map(\.slot))
        self.teardown = RuleTable((0..<layout.count).filter { !integers.contains($0) })
        self.derived = RuleTable(layout.derived)
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

    /// Fills a frame for `request` and runs `body` with it. The frame lives on the stack and is
    /// torn down before this returns; `body` must not keep it.
    ///
    /// Every slot is written exactly once (initialised, never assigned over a previous value):
    /// a typed field or its "… is missing" fault, a field of `raw` (its fault first, replaced
    /// when the walk finds it), then each derived value.
    func withFrame<R>(_ request: borrowing CheckoutRequest, today: Date, _ body: (RuleFrame) -> R) -> R {
        let count = slotCount
        return withUnsafeTemporaryAllocation(of: RuleValue.self, capacity: max(count, 1)) { buffer in
            let base = buffer.baseAddress!
            let typed = typed.items
            for t in typed.indices {
                typed[t].field.initialize(base + typed[t].slot, from: request, missing: typed[t].missing)
            }
            let raw = rawSlots.items
            if !raw.isEmpty {
                for r in raw.indices { (base + raw[r].slot).initialize(to: .fault(raw[r].fault)) }
                steps.withUnsafeBufferPointer { steps in
                    Self.fill(steps, 0, rootCount, from: request.raw, into: base)
                }
            }
            let day = CivilDay(today)
            let derived = derived.items
            for d in derived.indices {
                (base + derived[d].slot).initialize(
                    to: RuleOperations.call(derived[d].function, base[derived[d].source], today: day))
            }
            defer {
                // Only the slots that may hold a reference (an integer needs no teardown), one
                // at a time: a whole-buffer deinitialize goes through the generic array destroy.
                let teardown = teardown.items
                for i in teardown.indices {
                    let slot = base + teardown[i]
                    // A number or a boolean holds no reference: nothing to tear down.
                    switch slot.pointee {
                    case .integer, .decimal, .boolean: continue
                    default: slot.deinitialize(count: 1)
                    }
                }
            }
            return body(RuleFrame(slots: base, today: day))
        }
    }

    private static func fill(
        _ steps: UnsafeBufferPointer<FlatStep>, _ start: Int, _ count: Int, from json: JSONValue,
        into base: UnsafeMutablePointer<RuleValue>
    ) {
        guard case .object(let fields) = json else { return }
        let end = start + count
        // Hashing a String key (SipHash) costs more than scanning a small object and comparing
        // key lengths, which are stored in the string; an application's `customer`, `loan` and
        // `product` objects are small. Large objects are looked up.
        guard fields.count <= 32 else {
            for i in start..<end {
                if let value = fields[steps[i].key] { take(steps, i, value, into: base) }
            }
            return
        }
        var remaining = count
        for (key, value) in fields {
            let length = key.utf8.count
            for i in start..<end where steps[i].length == length && steps[i].key == key {
                take(steps, i, value, into: base)
                remaining -= 1
                break
            }
            if remaining == 0 { return }
        }
    }

    @inline(__always)
    private static func take(
        _ steps: UnsafeBufferPointer<FlatStep>, _ i: Int, _ value: JSONValue,
        into base: UnsafeMutablePointer<RuleValue>
    ) {
        let slot = steps[i].slot
        // Assigned over the slot's "… is missing" fault (set before the walk).
        if slot >= 0 { base[slot] = RuleValue(field: value, missing: steps[i].missing, path: steps[i].dotted) }
        if steps[i].childCount > 0 {
            fill(steps, steps[i].childStart, steps[i].childCount, from: value, into: base)
        }
    }
}

/// A table read on every evaluation, in memory of its own: read through `items` without
/// retaining an array or entering a closure. Initialised in `init`, never written again, freed
/// in `deinit`, so reading it from any thread while it lives is safe (`@unchecked Sendable`;
/// the elements are `Sendable`).
final class RuleTable<Element: Sendable>: @unchecked Sendable {
    let items: UnsafeBufferPointer<Element>

    init(_ elements: [Element]) {
        let buffer = UnsafeMutablePointer<Element>.allocate(capacity: max(elements.count, 1))
        buffer.initialize(from: elements, count: elements.count)
        items = UnsafeBufferPointer(start: buffer, count: elements.count)
    }

    deinit {
        let buffer = UnsafeMutablePointer(mutating: items.baseAddress!)
        buffer.deinitialize(count: items.count)
        buffer.deallocate()
    }
}
