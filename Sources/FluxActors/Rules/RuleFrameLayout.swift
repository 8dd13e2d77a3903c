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

    private let steps: [FieldStep]
    /// Every slot's value before the request is read: "… is missing" for fields.
    private let defaults: [RuleValue]
    private let derived: [DerivedSlot]

    init(_ layout: SlotLayout) {
        var steps: [FieldStep] = []
        var defaults = [RuleValue](repeating: .fault(RuleFault("not computed")), count: layout.count)
        for (path, slot) in layout.fields {
            defaults[slot] = .fault(RuleFault("\(path.joined(separator: ".")) is missing"))
            Self.insert(path[...], slot: slot, prefix: "", into: &steps)
        }
        self.steps = steps
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
    func withFrame<R>(_ application: JSONValue, today: Date, _ body: (RuleFrame) -> R) -> R {
        let count = defaults.count
        let civilToday = CivilDay(today)
        return withUnsafeTemporaryAllocation(of: RuleValue.self, capacity: max(count, 1)) { buffer in
            let base = buffer.baseAddress!
            if count > 0 { defaults.withUnsafeBufferPointer { base.initialize(from: $0.baseAddress!, count: count) } }
            defer { base.deinitialize(count: count) }
            Self.fill(steps, from: application, into: base)
            for d in derived {
                base[d.slot] = RuleOperations.call(d.function, base[d.source], today: civilToday)
            }
            return body(RuleFrame(slots: base, today: civilToday))
        }
    }

    private static func fill(_ steps: [FieldStep], from json: JSONValue, into base: UnsafeMutablePointer<RuleValue>) {
        guard case .object(let fields) = json else { return }
        for step in steps {
            guard let value = fields[step.key] else { continue }
            if let slot = step.slot, case .fault(let missing) = base[slot] {
                base[slot] = RuleValue(field: value, missing: missing, path: step.dotted)
            }
            if !step.children.isEmpty { fill(step.children, from: value, into: base) }
        }
    }
}
