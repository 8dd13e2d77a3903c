import Foundation

/// A compiled ruleset (CONTRACT §3): which lenders may take an application, and in what order.
/// Compiled once per version; `evaluate` never parses.
public struct Ruleset: Sendable {
    static let maxLenders = 200
    static let maxConditions = 100
    static let maxDials = 256
    static let maxDialListCount = 1024
    static let maxDialStringBytes = 1024
    static let maxTables = 100
    static let maxIdentifierBytes = 64
    static let priorityRange: ClosedRange<Int64> = -1_000_000...1_000_000
    static let topLevelKeys: Set<String> = ["version", "dials", "lenders", "tables"]
    static let lenderKeys: Set<String> = ["lender_id", "priority", "when", "score"]

    private let program: RuleProgram
    /// The ruleset object without its version.
    private let body: [String: JSONValue]
    public private(set) var version: Int
    /// From the optional dial `allowed_tenure_months`: a checkout whose tenure is not in it is
    /// refused (`422 invalid_field loan.tenure_months`).
    public let allowedTenureMonths: Set<Int>?

    /// Validates and compiles a ruleset object. `version` defaults to 1.
    public static func compile(_ json: JSONValue) throws(RulesError) -> Ruleset {
        guard case .object(let top) = json else { throw .at("", "a ruleset must be a JSON object") }
        for key in top.keys.sorted() where !topLevelKeys.contains(key) {
            throw .at(key, "unknown key '\(key)'; a ruleset has version, dials, lenders and tables")
        }
        var version = 1
        if let v = top["version"] {
            guard case .int(let i) = v, i >= 1, i <= Int64(Int32.max) else {
                throw .at("version", "version must be a positive integer")
            }
            version = Int(i)
        }
        let dials = try compileDials(top["dials"])
        let allowedTenureMonths = try tenureDial(dials.json["allowed_tenure_months"])
        if let tables = top["tables"] {
            guard case .array(let items) = tables else { throw .at("tables", "tables must be an array") }
            guard items.count <= maxTables else { throw .at("tables", "at most \(maxTables) tables") }
            for (i, item) in items.enumerated() where item.objectValue == nil {
                throw .at("tables[\(i)]", "a table must be an object")
            }
        }
        guard let lendersJSON = top["lenders"] else { throw .at("lenders", "lenders is required") }
        guard case .array(let lenderItems) = lendersJSON else { throw .at("lenders", "lenders must be an array") }
        guard lenderItems.count <= maxLenders else { throw .at("lenders", "at most \(maxLenders) lenders") }

        var layout = SlotLayout()
        var lenders: [RuleProgram.Lender] = []
        var seen: Set<String> = []
        for (index, item) in lenderItems.enumerated() {
            let lender = try compileLender(item, path: "lenders[\(index)]", dials: dials.values, layout: &layout)
            guard seen.insert(lender.id).inserted else {
                throw .at("lenders[\(index)].lender_id", "lender_id '\(lender.id)' appears twice")
            }
            lenders.append(lender)
        }
        var body = top
        body["version"] = nil
        return Ruleset(
            program: RuleProgram(frame: RuleFrameLayout(layout), lenders: lenders), body: body, version: version,
            allowedTenureMonths: allowedTenureMonths)
    }

    private init(program: RuleProgram, body: [String: JSONValue], version: Int, allowedTenureMonths: Set<Int>?) {
        self.program = program
        self.body = body
        self.version = version
        self.allowedTenureMonths = allowedTenureMonths
    }

    public func withVersion(_ v: Int) -> Ruleset {
        var copy = self
        copy.version = v
        return copy
    }

    /// The ruleset object as JSON, with its current version.
    public var document: JSONValue {
        var object = body
        object["version"] = .int(Int64(version))
        return .object(object)
    }

    /// The lenders named by the ruleset, in ruleset order.
    public var lenderIDs: [String] { program.lenders.map(\.id) }

    /// A ruleset with these dials changed (a `null` value removes a dial), re-validated and
    /// recompiled as a whole. The version is unchanged; the caller publishes it as a new one.
    public func patchingDials(_ patch: [String: JSONValue]) throws(RulesError) -> Ruleset {
        var dials = body["dials"]?.objectValue ?? [:]
        for (key, value) in patch {
            if case .null = value { dials[key] = nil } else { dials[key] = value }
        }
        var object = body
        object["dials"] = .object(dials)
        return try Ruleset.compile(.object(object)).withVersion(version)
    }

    /// Ranks the ruleset's lenders for an application. Pure: the same request and `today` give
    /// the same decision.
    public func evaluate(_ request: borrowing CheckoutRequest, today: Date, hasConnector: (String) -> Bool)
        -> RuleDecision
    {
        program.decide(request, today: today, version: version, hasConnector: hasConnector)
    }

    // MARK: Validation

    private static func isIdentifier(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard let first = u.first, u.count <= maxIdentifierBytes else { return false }
        let isLetter = { (c: UInt8) in (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F }
        return isLetter(first) && u.allSatisfy { isLetter($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    /// Lender ids follow `CheckoutRequest`'s identifier rule: letters, digits, '-', '_', '.', ':'.
    private static func isLenderID(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard !u.isEmpty, u.count <= maxIdentifierBytes else { return false }
        return u.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
                || c == 0x2E || c == 0x3A
        }
    }

    private static func compileDials(_ json: JSONValue?) throws(RulesError) -> (
        json: [String: JSONValue], values: [String: RuleValue]
    ) {
        guard let json else { return ([:], [:]) }
        guard case .object(let fields) = json else { throw .at("dials", "dials must be an object") }
        guard fields.count <= maxDials else { throw .at("dials", "at most \(maxDials) dials") }
        var values: [String: RuleValue] = [:]
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
            let path = "dials.\(name)"
            guard isIdentifier(name) else {
                throw .at(
                    path,
                    "a dial name is letters, digits and '_', starting with a letter (at most \(maxIdentifierBytes))")
            }
            guard let v = RuleValue(dial: value) else {
                throw .at(path, "a dial is a number, a string, true/false or a list of those")
            }
            switch v {
            case .string(let s) where s.utf8.count > maxDialStringBytes:
                throw .at(path, "a dial string is at most \(maxDialStringBytes) bytes")
            case .list(let items):
                guard items.count <= maxDialListCount else {
                    throw .at(path, "a dial list has at most \(maxDialListCount) items")
                }
                for case .string(let s) in items where s.utf8.count > maxDialStringBytes {
                    throw .at(path, "a dial string is at most \(maxDialStringBytes) bytes")
                }
            default: break
            }
            values[name] = v
        }
        return (fields, values)
    }

    private static func tenureDial(_ json: JSONValue?) throws(RulesError) -> Set<Int>? {
        guard let json else { return nil }
        let path = "dials.allowed_tenure_months"
        guard case .array(let items) = json else { throw .at(path, "allowed_tenure_months must be a list of months") }
        var months: Set<Int> = []
        for item in items {
            guard case .int(let m) = item, m >= 1, m <= Int64(CheckoutRequest.maxTenureMonths) else {
                throw .at(path, "allowed_tenure_months holds whole months from 1 to \(CheckoutRequest.maxTenureMonths)")
            }
            months.insert(Int(m))
        }
        return months
    }

    private static func compileLender(
        _ json: JSONValue, path: String, dials: [String: RuleValue], layout: inout SlotLayout
    ) throws(RulesError) -> RuleProgram.Lender {
        guard case .object(let fields) = json else { throw .at(path, "a lender must be an object") }
        for key in fields.keys.sorted() where !lenderKeys.contains(key) {
            throw .at("\(path).\(key)", "unknown key '\(key)'; a lender has lender_id, priority, when and score")
        }
        guard case .string(let id) = fields["lender_id"] ?? .null else {
            throw .at("\(path).lender_id", "lender_id is required and must be a string")
        }
        guard isLenderID(id) else {
            throw .at(
                "\(path).lender_id",
                "lender_id must be 1 to \(maxIdentifierBytes) letters, digits, '-', '_', '.' or ':'")
        }
        guard case .int(let priority) = fields["priority"] ?? .null, priorityRange.contains(priority) else {
            throw .at(
                "\(path).priority",
                "priority is required and must be an integer from \(priorityRange.lowerBound) to \(priorityRange.upperBound)"
            )
        }
        var whenItems: [JSONValue] = []
        if let when = fields["when"] {
            guard case .array(let items) = when else { throw .at("\(path).when", "when must be an array of strings") }
            guard items.count <= maxConditions else { throw .at("\(path).when", "at most \(maxConditions) conditions") }
            whenItems = items
        }
        var compiler = ExpressionCompiler(layout: layout, dials: dials, priority: priority)
        var conditions: [RuleProgram.Condition] = []
        for (i, item) in whenItems.enumerated() {
            let itemPath = "\(path).when[\(i)]"
            guard case .string(let text) = item else { throw .at(itemPath, "a condition must be a string") }
            do {
                conditions.append(RuleProgram.Condition(text: text, code: try compiler.compile(text, as: .condition)))
            } catch {
                throw .at(itemPath, error.position, error.message)
            }
        }
        var scoreText = "priority"
        if let score = fields["score"] {
            guard case .string(let text) = score else { throw .at("\(path).score", "score must be a string") }
            scoreText = text
        }
        let scoreCode: RuleCode
        do {
            scoreCode = try compiler.compile(scoreText, as: .score)
        } catch {
            throw .at("\(path).score", error.position, error.message)
        }
        layout = compiler.layout
        return RuleProgram.Lender(
            id: id, priority: priority, conditions: conditions, scoreText: scoreText, score: scoreCode)
    }
}

/// The compiled form shared by every copy of a `Ruleset` version. Immutable after init.
final class RuleProgram: Sendable {
    struct Condition: Sendable {
        var text: String
        var code: RuleCode
    }

    struct Lender: Sendable {
        var id: String
        var priority: Int64
        var conditions: [Condition]
        var scoreText: String
        var score: RuleCode
    }

    /// A condition as `decide` reads it: every lender's conditions in one flat array, read
    /// through an unsafe buffer, with the node unmanaged so that running it retains nothing.
    /// `Unmanaged` is safe here: `lenders` holds every node strongly for the program's life.
    struct Step: @unchecked Sendable {
        var text: String
        var node: Unmanaged<RuleNode>
        /// `[text]`, made once: the `failed` list of a lender that fails this condition alone
        /// (the most common exclusion) shares it instead of allocating.
        var alone: [String]
        /// For a condition that compares an integer slot with integer constants (the commonest
        /// shape): the check, run inline by `decide` without calling the node.
        var range: IntegerRangeCheck
    }

    /// A lender as `decide` reads it; its conditions are `steps[start ..< end]`.
    /// `Unmanaged` is safe for the reason given on `Step`.
    struct Span: @unchecked Sendable {
        var id: String
        var priority: Int64
        var start: Int
        var end: Int
        var scoreText: String
        var score: Unmanaged<RuleNode>
        /// For a lender of at most `maxSharedFailures` conditions, where its lists start in
        /// `failedBySet` (-1 for a longer lender): the `failed` list for every set of its
        /// conditions that are plain `false` is `failedBySet[failedBase + set]`, the set as a bit
        /// mask (bit i: condition i). Made once: the usual exclusion then allocates nothing.
        var failedBase: Int
    }

    /// Lenders with more conditions build their `failed` lists per decision (2^n lists each).
    static let maxSharedFailures = 6

    /// A ranked lender before sorting. A struct, not a tuple: a tuple's type metadata is looked
    /// up at run time on every temporary allocation.
    struct Eligible {
        var score: Double
        var index: Int
    }

    let frame: RuleFrameLayout
    /// Owns every node that `steps` and `spans` refer to unmanaged.
    let lenders: [Lender]
    private let steps: RuleTable<Step>
    private let spans: RuleTable<Span>
    /// The shared `failed` lists of every lender (see `Span.failedBase`).
    private let failedBySet: RuleTable<[String]>

    init(frame: RuleFrameLayout, lenders: [Lender]) {
        self.frame = frame
        self.lenders = lenders
        var steps: [Step] = []
        var spans: [Span] = []
        var failedBySet: [[String]] = []
        for lender in lenders {
            let start = steps.count
            for c in lender.conditions {
                steps.append(
                    Step(
                        text: c.text, node: Unmanaged.passUnretained(c.code), alone: [c.text],
                        range: c.code.integerRange ?? .none))
            }
            var failedBase = -1
            let n = lender.conditions.count
            if n <= Self.maxSharedFailures {
                failedBase = failedBySet.count
                for set in 0..<(1 << n) {
                    failedBySet.append(
                        lender.conditions.indices.filter { set & (1 << $0) != 0 }.map { lender.conditions[$0].text })
                }
            }
            spans.append(
                Span(
                    id: lender.id, priority: lender.priority, start: start, end: steps.count,
                    scoreText: lender.scoreText, score: Unmanaged.passUnretained(lender.score),
                    failedBase: failedBase))
        }
        self.steps = RuleTable(steps)
        self.spans = RuleTable(spans)
        self.failedBySet = RuleTable(failedBySet)
    }

    /// What a failed condition says in `excluded[].failed`: its text, plus the reason when it
    /// could not be evaluated.
    static func failure(_ text: String, _ value: RuleValue) -> String {
        switch value {
        case .boolean: text
        case .fault(let f): "\(text) (\(f.reason))"
        default: "\(text) (gave a \(value.typeName), not true or false)"
        }
    }

    func decide(
        _ request: borrowing CheckoutRequest, today: Date, version: Int, hasConnector: (String) -> Bool
    ) -> RuleDecision {
        let steps = steps.items
        let lenders = spans.items
        let shared = failedBySet.items
        return frame.withFrame(request, today: today) { frame in
            withUnsafeTemporaryAllocation(of: Eligible.self, capacity: max(lenders.count, 1)) { eligible in
                Self.decide(
                    frame, steps: steps, lenders: lenders, shared: shared, eligible: eligible, version: version,
                    hasConnector: hasConnector)
            }
        }
    }

    private static func decide(
        _ frame: RuleFrame, steps: UnsafeBufferPointer<Step>, lenders: UnsafeBufferPointer<Span>,
        shared: UnsafeBufferPointer<[String]>, eligible: UnsafeMutableBufferPointer<Eligible>, version: Int,
        hasConnector: (String) -> Bool
    ) -> RuleDecision {
        var eligibleCount = 0
        var excluded: [ExcludedLender] = []
        for index in lenders.indices {
            let start = lenders[index].start
            let end = lenders[index].end
            // The usual path: a lender with a connector whose conditions each hold or are a
            // plain `false`. Those that are `false` are kept as a bit mask (bit i: condition i);
            // the first outcome of any other kind (a fault, a value that is not a boolean, a
            // condition beyond the 64 the mask holds) hands over to `failures(from:)`, which
            // lists everything the usual way.
            var set: UInt64 = 0
            let connected = hasConnector(lenders[index].id)
            var other = connected ? -1 : start
            if other < 0 {
                for c in start..<end {
                    let truth: RuleTruth
                    let slot = steps[c].range.slot
                    if slot >= 0, case .integer(let x) = frame.slots[slot] {
                        truth = steps[c].range.test(x)
                    } else {
                        truth = steps[c].node._withUnsafeGuaranteedRef { $0.test(frame) }
                    }
                    if truth == .holds { continue }
                    if truth == .fails && c - start < 64 {
                        set |= 1 &<< UInt64(c - start)
                        continue
                    }
                    other = c
                    break
                }
            }
            if other < 0 && set == 0 {
                switch lenders[index].score._withUnsafeGuaranteedRef({ $0.run(frame) }) {
                case .integer(let i):
                    eligible[eligibleCount] = Eligible(score: Double(i), index: index)
                    eligibleCount += 1
                    continue
                case .decimal(let d):
                    eligible[eligibleCount] = Eligible(score: d, index: index)
                    eligibleCount += 1
                    continue
                case .fault(let f):
                    excluded.append(
                        ExcludedLender(
                            lenderID: lenders[index].id, failed: ["score \(lenders[index].scoreText) (\(f.reason))"]))
                case let value:
                    excluded.append(
                        ExcludedLender(
                            lenderID: lenders[index].id,
                            failed: ["score \(lenders[index].scoreText) (gave a \(value.typeName), not a number)"]))
                }
                continue
            }
            if excluded.isEmpty { excluded.reserveCapacity(lenders.count - index) }
            let failed: [String]
            if other >= 0 {
                failed = Self.failures(
                    frame, steps, start: start, end: end, plainFalse: set, from: other, connector: connected)
            } else if lenders[index].failedBase >= 0 {
                failed = shared[lenders[index].failedBase + Int(set)]
            } else if set.nonzeroBitCount == 1 {
                failed = steps[start + set.trailingZeroBitCount].alone
            } else {
                failed = Self.failures(steps, start, set)
            }
            excluded.append(ExcludedLender(lenderID: lenders[index].id, failed: failed))
        }
        // Insertion sort: a handful of lenders, no allocation. Score descending, then priority
        // descending, then lender_id.
        func before(_ a: Eligible, _ b: Eligible) -> Bool {
            if a.score != b.score { return a.score > b.score }
            let pa = lenders[a.index].priority
            let pb = lenders[b.index].priority
            if pa != pb { return pa > pb }
            return lenders[a.index].id < lenders[b.index].id
        }
        if eligibleCount > 1 {
            for i in 1..<eligibleCount {
                let item = eligible[i]
                var j = i
                while j > 0 && before(item, eligible[j - 1]) {
                    eligible[j] = eligible[j - 1]
                    j -= 1
                }
                eligible[j] = item
            }
        }
        var ranked: [RankedLender] = []
        ranked.reserveCapacity(eligibleCount)
        for i in 0..<eligibleCount {
            ranked.append(RankedLender(lenderID: lenders[eligible[i].index].id, score: eligible[i].score))
        }
        return RuleDecision(version: version, ranked: ranked, excluded: excluded)
    }

    /// A lender's `failed` list the general way, from condition `from` on: `no connector
    /// descriptor` when it has none, the plain `false` conditions before `from` (`plainFalse`),
    /// then every condition from `from` that does not hold, with the reason when it could not be
    /// evaluated.
    private static func failures(
        _ frame: RuleFrame, _ steps: UnsafeBufferPointer<Step>, start: Int, end: Int, plainFalse: UInt64, from: Int,
        connector: Bool
    ) -> [String] {
        var failed: [String] = []
        failed.reserveCapacity(end - from + plainFalse.nonzeroBitCount + 1)
        if !connector { failed.append("no connector descriptor") }
        failed.append(contentsOf: failures(steps, start, plainFalse))
        for c in from..<end {
            switch steps[c].node._withUnsafeGuaranteedRef({ $0.test(frame) }) {
            case .holds: continue
            case .fails: failed.append(steps[c].text)
            case .other:
                let value = steps[c].node._withUnsafeGuaranteedRef { $0.run(frame) }
                failed.append(RuleProgram.failure(steps[c].text, value))
            }
        }
        return failed
    }

    /// The texts of the conditions in `set` (bit i: the lender's condition i), in order.
    private static func failures(_ steps: UnsafeBufferPointer<Step>, _ start: Int, _ set: UInt64) -> [String] {
        var failed: [String] = []
        failed.reserveCapacity(set.nonzeroBitCount)
        var rest = set
        while rest != 0 {
            failed.append(steps[start + rest.trailingZeroBitCount].text)
            rest &= rest &- 1
        }
        return failed
    }
}

/// The Lender Selector's answer for one application.
public struct RuleDecision: Sendable, Equatable, Codable {
    public var version: Int
    /// Lenders whose every condition holds, best score first.
    public var ranked: [RankedLender]
    /// The others, in ruleset order, each with every condition it failed.
    public var excluded: [ExcludedLender]

    public init(version: Int, ranked: [RankedLender], excluded: [ExcludedLender]) {
        self.version = version
        self.ranked = ranked
        self.excluded = excluded
    }
}

public struct RankedLender: Sendable, Equatable, Codable {
    public var lenderID: String
    public var score: Double

    public init(lenderID: String, score: Double) {
        self.lenderID = lenderID
        self.score = score
    }

    enum CodingKeys: String, CodingKey {
        case lenderID = "lender_id"
        case score
    }
}

public struct ExcludedLender: Sendable, Equatable, Codable {
    public var lenderID: String
    /// The source text of every failed condition (with the reason when it could not be
    /// evaluated), or `no connector descriptor`.
    public var failed: [String]

    public init(lenderID: String, failed: [String]) {
        self.lenderID = lenderID
        self.failed = failed
    }

    enum CodingKeys: String, CodingKey {
        case lenderID = "lender_id"
        case failed
    }
}
