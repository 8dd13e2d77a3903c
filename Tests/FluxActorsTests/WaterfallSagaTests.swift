import Foundation
import Testing

@testable import FluxActors

// MARK: - Harness: the saga driven directly, with a scripted shell

/// What one lender answers, in order. An empty queue means the call never returns (it stays in
/// flight), so a test can act while the saga waits.
struct LenderScript {
    var admission: [Admission] = [.permitted]
    var apply: [ApplyOutcome] = []
    var status: [StatusOutcome] = []
    var disburse: [DisburseOutcome] = [.disbursed]
    /// `nil` inside: the lender has no `cancel` operation.
    var cancel: [CancelOutcome?] = []

    static func approves(_ ref: String = "REF-1", bps: Int = 1600) -> LenderScript {
        LenderScript(apply: [.approved(reference: ref, annualRateBps: bps, reason: nil)])
    }
    static func rejects(_ why: String = "score too low") -> LenderScript {
        LenderScript(apply: [.rejected(reason: why, reference: nil)])
    }
    static func unreachable(_ why: String = "connection refused") -> LenderScript {
        LenderScript(apply: [.failed(reason: why)])
    }
    static func timesOut(then status: [StatusOutcome]) -> LenderScript {
        LenderScript(apply: [.unknown(reason: "timed out after 5000 ms", timedOut: true)], status: status)
    }
}

/// Plays the actor shell: performs each effect by popping the lender's scripted answer and feeds
/// the answer back as an input. Keeps the journal (every event in order) and every effect seen.
struct SagaHarness {
    static let t0 = Date(timeIntervalSince1970: 1_717_200_000)  // 2024-06-01T00:00:00Z
    static let applicationID = "app_01J0TEST"

    var saga: WaterfallSaga
    var now = SagaHarness.t0
    var scripts: [String: LenderScript]
    var journal: [ApplicationEvent] = []
    /// Every effect the saga asked for, in order (performed or left in flight).
    var effects: [SagaEffect] = []
    var queue: [SagaEffect] = []
    /// Effects whose script had no answer left: the call is still in flight.
    var inFlight: [SagaEffect] = []

    init(
        ranking: [String], excluded: [ApplicationEvent.ExcludedLenderReason] = [],
        scripts: [String: LenderScript] = [:], policy: SagaPolicy = SagaPolicy()
    ) {
        saga = WaterfallSaga(policy: policy)
        self.scripts = scripts
        for e in Self.opening(ranking: ranking, excluded: excluded) {
            saga.apply(e)
            journal.append(e)
        }
    }

    static func opening(ranking: [String], excluded: [ApplicationEvent.ExcludedLenderReason] = [])
        -> [ApplicationEvent]
    {
        let request: JSONValue = [
            "merchant_id": "m_croma", "mode": "waterfall",
            "customer": ["id": "c_42", "name": "Asha", "bureau_score": 780],
            "loan": ["amount_paise": 4_500_000, "tenure_months": 6],
        ]
        return [
            .received(
                .init(
                    applicationID: applicationID, merchantID: "m_croma", customerID: "c_42", idempotencyKey: "idem-1",
                    requestHash: String(repeating: "ab", count: 32), request: request, at: t0)),
            .ranked(
                .init(
                    rulesetVersion: 3, lenders: ranking, scores: ranking.indices.map { Double(100 - $0) },
                    excluded: excluded)),
        ]
    }

    /// Feeds one input at the next instant (1 ms later), journals its events, queues its effects.
    @discardableResult
    mutating func send(_ input: SagaInput) -> SagaStep {
        now += 0.001
        let step = saga.handle(input, now: now)
        journal += step.events
        effects += step.effects
        queue += step.effects
        return step
    }

    /// Performs queued effects until none is left (or `limit` effects were performed).
    mutating func run(limit: Int = 200) {
        var performed = 0
        while !queue.isEmpty, performed < limit {
            let effect = queue.removeFirst()
            performed += 1
            guard let input = answer(effect) else {
                inFlight.append(effect)
                continue
            }
            send(input)
        }
    }

    /// `start` then `run`.
    mutating func play() {
        send(.start)
        run()
    }

    static func call<O>(_ outcome: O, tries: Int = 1, latencyMs: Int = 40) -> LenderCall<O> {
        LenderCall(outcome: outcome, tries: tries, latencyMs: latencyMs)
    }

    private mutating func answer(_ effect: SagaEffect) -> SagaInput? {
        switch effect {
        case .admit(let l):
            guard let a = pop(l, \.admission) else { return nil }
            return .admission(lenderID: l, a)
        case .apply(let l):
            guard let a = pop(l, \.apply) else { return nil }
            return .applied(lenderID: l, Self.call(a))
        case .inquireStatus(let l, _, let after):
            guard let s = pop(l, \.status) else { return nil }
            now += after.seconds
            return .inquired(lenderID: l, Self.call(s))
        case .disburse(let l, _, let after):
            guard let d = pop(l, \.disburse) else { return nil }
            now += after.seconds
            return .disbursal(lenderID: l, Self.call(d))
        case .openLoan(let loanID, _, _, _):
            return .loanOpened(loanID: loanID)
        case .cancelAtLender(let l, _):
            guard let c = pop(l, \.cancel) else { return nil }
            return .compensation(lenderID: l, c.map { Self.call($0) })
        }
    }

    private mutating func pop<T>(_ lender: String, _ path: WritableKeyPath<LenderScript, [T]>) -> T? {
        guard var s = scripts[lender], !s[keyPath: path].isEmpty else { return nil }
        let v = s[keyPath: path].removeFirst()
        scripts[lender] = s
        return v
    }

    // MARK: Reading

    var applies: [String] {
        effects.compactMap { if case .apply(let l) = $0 { l } else { nil } }
    }
    var admits: [String] {
        effects.compactMap { if case .admit(let l) = $0 { l } else { nil } }
    }
    var inquiryDelays: [Duration] {
        effects.compactMap { if case .inquireStatus(_, _, let d) = $0 { d } else { nil } }
    }
    var disburseDelays: [Duration] {
        effects.compactMap { if case .disburse(_, _, let d) = $0 { d } else { nil } }
    }
    var outcomes: [AttemptOutcome] { saga.attempts.map(\.outcome) }
    var types: [String] { journal.map(\.typeName) }

    /// A fresh saga folded over the journal (what a node that reloads the stream has).
    func replayed(upTo count: Int? = nil) -> WaterfallSaga {
        var fresh = WaterfallSaga(policy: saga.policy)
        for e in journal.prefix(count ?? journal.count) { fresh.apply(e) }
        return fresh
    }

    /// The ghost-loan rule over a whole run: no lender is ever asked to lend twice.
    func expectNoLenderAskedTwice(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(Set(applies).count == applies.count, "apply sent twice: \(applies)", sourceLocation: sourceLocation)
    }
}

extension Duration {
    var seconds: TimeInterval {
        let c = components
        return TimeInterval(c.seconds) + TimeInterval(c.attoseconds) / 1e18
    }
}

func types(_ step: SagaStep) -> [String] { step.events.map(\.typeName) }

// MARK: - Happy paths and closing

@Suite("WaterfallSaga: lenders in order")
struct WaterfallOrderTests {
    @Test("first lender approves: approved → disburse → openLoan → loanOpened → disbursed")
    func firstLenderApproves() {
        var h = SagaHarness(ranking: ["L1", "L2"])
        #expect(h.saga.phase == .ready)
        #expect(h.saga.status == .pending)

        var step = h.send(.start)
        #expect(step.events.isEmpty)
        #expect(step.effects == [.admit(lenderID: "L1")])

        step = h.send(.admission(lenderID: "L1", .permitted))
        #expect(types(step) == ["LenderAttemptStarted"])
        guard case .attemptStarted(let started) = step.events.first else {
            Issue.record("no LenderAttemptStarted")
            return
        }
        #expect(started.idempotencyKey == "app_01J0TEST.L1")
        #expect(started.idempotencyKey == h.saga.attemptKey("L1"))
        #expect(step.effects == [.apply(lenderID: "L1")])
        #expect(h.saga.phase == .applying(lenderID: "L1"))
        #expect(h.saga.attempts.map(\.outcome) == [.pending])

        step = h.send(
            .applied(
                lenderID: "L1",
                SagaHarness.call(
                    .approved(reference: "ABF-9", annualRateBps: 1600, reason: nil), tries: 2, latencyMs: 85)
            ))
        #expect(types(step) == ["LenderAttemptFinished", "ApplicationApproved"])
        #expect(step.effects == [.disburse(lenderID: "L1", reference: "ABF-9", after: .zero)])
        #expect(h.saga.status == .approved)
        #expect(h.saga.phase == .disbursing(lenderID: "L1", reference: "ABF-9", annualRateBps: 1600))

        step = h.send(.disbursal(lenderID: "L1", SagaHarness.call(.disbursed)))
        #expect(step.events.isEmpty, "the disbursal is journalled only once the loan is open")
        #expect(
            step.effects == [
                .openLoan(loanID: "loan_01J0TEST", lenderID: "L1", reference: "ABF-9", annualRateBps: 1600)
            ])

        step = h.send(.loanOpened(loanID: "loan_01J0TEST"))
        #expect(types(step) == ["ApplicationDisbursed"])
        #expect(step.events.last?.closesStream == true)
        #expect(step.effects.isEmpty)
        #expect(h.saga.status == .disbursed)
        #expect(h.saga.phase == .terminal)
        #expect(h.saga.loanID == "loan_01J0TEST")
        #expect(h.saga.lenderID == "L1")
        #expect(h.saga.lenderReference == "ABF-9")
        #expect(h.saga.annualRateBps == 1600)

        let row = h.saga.attempts
        #expect(row.count == 1)
        #expect(row.first?.outcome == .approved)
        #expect(row.first?.tries == 2)
        #expect(row.first?.latencyMs == 85)
        #expect(row.first?.lenderReference == "ABF-9")
        #expect(h.admits == ["L1"], "L2 is never tried")

        let view = h.saga.view()
        #expect(view["id"] == "app_01J0TEST")
        #expect(view["status"] == "disbursed")
        #expect(view["mode"] == "waterfall")
        #expect(view["merchant_id"] == "m_croma")
        #expect(view["lender_id"] == "L1")
        #expect(view["lender_reference"] == "ABF-9")
        #expect(view["loan_id"] == "loan_01J0TEST")
        #expect(view["annual_rate_bps"] == 1600)
        #expect(view["decline_reasons"] == [])
        #expect(view["offers"] == [])
        #expect(view["created_at"] == "2024-06-01T00:00:00.000Z")
        #expect(view["updated_at"] == .string(Timestamp.format(h.now)))
        #expect(view["pending_reason"] == nil)
        #expect(view["cancel_requested"] == nil)
        #expect(
            view["attempts"]
                == [
                    [
                        "lender_id": "L1", "outcome": "approved", "reason": nil, "tries": 2, "latency_ms": 85,
                        "started_at": "2024-06-01T00:00:00.002Z",
                    ]
                ])
    }

    @Test("the loan id is derived from the application id")
    func loanIDIsDeterministic() {
        #expect(WaterfallSaga.loanID(for: "app_01J0TEST") == "loan_01J0TEST")
        #expect(WaterfallSaga.loanID(for: "xyz") == "loan_xyz")
        var a = SagaHarness(ranking: ["L1"], scripts: ["L1": .approves()])
        var b = SagaHarness(ranking: ["L1"], scripts: ["L1": .approves()])
        a.play()
        b.now += 3600
        b.play()
        #expect(a.saga.loanID == "loan_01J0TEST")
        #expect(a.saga.loanID == b.saga.loanID)
    }

    @Test("reject then approve: the second lender disburses")
    func rejectThenApprove() {
        var h = SagaHarness(
            ranking: ["L1", "L2", "L3"], scripts: ["L1": .rejects("bureau score below 750"), "L2": .approves("PIR-7")])
        h.play()
        #expect(h.saga.status == .disbursed)
        #expect(h.saga.lenderID == "L2")
        #expect(h.saga.lenderReference == "PIR-7")
        #expect(h.outcomes == [.rejected, .approved])
        #expect(h.saga.attempts.first?.reason == "bureau score below 750")
        #expect(h.admits == ["L1", "L2"])
        #expect(h.applies == ["L1", "L2"])
        #expect(
            h.types == [
                "ApplicationReceived", "LendersRanked", "LenderAttemptStarted", "LenderAttemptFinished",
                "LenderAttemptStarted", "LenderAttemptFinished", "ApplicationApproved", "ApplicationDisbursed",
            ])
        #expect(h.saga.view()["attempts"]?.arrayValue?.map { $0["lender_id"] } == ["L1", "L2"])
    }

    @Test("every lender rejects: declined, with one reason per lender")
    func allReject() {
        var h = SagaHarness(
            ranking: ["L1", "L2"], scripts: ["L1": .rejects("income too low"), "L2": .rejects("fraud score")])
        h.play()
        #expect(h.saga.status == .declined)
        #expect(h.saga.phase == .terminal)
        #expect(h.types.last == "ApplicationDeclined")
        #expect(h.saga.declineReasons == ["L1: rejected (income too low)", "L2: rejected (fraud score)"])
        #expect(h.saga.view()["decline_reasons"] == ["L1: rejected (income too low)", "L2: rejected (fraud score)"])
        #expect(h.saga.lenderID == nil)
        #expect(h.saga.loanID == nil)
        #expect(h.queue.isEmpty && h.inFlight.isEmpty)
    }

    @Test("no lender can be reached: failed, not declined")
    func allUnreachable() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .unreachable(), "L2": .unreachable("HTTP 400")])
        h.play()
        #expect(h.saga.status == .failed)
        #expect(h.types.last == "ApplicationFailed")
        #expect(h.outcomes == [.error, .error])
        #expect(h.saga.declineReasons == ["L1: error (connection refused)", "L2: error (HTTP 400)"])
        #expect(h.inquiryDelays.isEmpty, "a certain failure needs no status inquiry")
    }

    @Test("one rejection among unreachable lenders makes it declined")
    func rejectionAndFailureIsDeclined() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .unreachable(), "L2": .rejects()])
        h.play()
        #expect(h.saga.status == .declined)
    }

    @Test("open circuit: the lender is skipped without a call and the next one is tried")
    func openCircuitSkips() {
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: ["L1": LenderScript(admission: [.circuitOpen], apply: []), "L2": .approves()])
        h.play()
        #expect(h.saga.status == .disbursed)
        #expect(h.saga.lenderID == "L2")
        #expect(h.outcomes == [.skippedOpenCircuit, .approved])
        #expect(h.saga.attempts.first?.reason == "circuit open")
        #expect(h.saga.attempts.first?.tries == 0)
        #expect(h.applies == ["L2"])
        #expect(h.types.contains("LenderAttemptSkipped"))
        #expect(h.saga.view()["attempts"]?.arrayValue?.first?["outcome"] == "skipped_open_circuit")
    }

    @Test("every circuit open: failed (nobody could be asked)")
    func allCircuitsOpen() {
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: [
                "L1": LenderScript(admission: [.circuitOpen]), "L2": LenderScript(admission: [.circuitOpen]),
            ])
        h.play()
        #expect(h.saga.status == .failed)
        #expect(h.applies.isEmpty)
    }

    @Test("validation failure: skipped_validation with the condition; only those → declined")
    func validationSkips() {
        var h = SagaHarness(
            ranking: ["L1", "L2", "L3"],
            scripts: [
                "L1": LenderScript(admission: [.validationFailed("customer.age >= 21")]),
                "L2": LenderScript(admission: [.unknownLender]),
                "L3": LenderScript(admission: [.validationFailed("loan.amount_paise <= 20000000")]),
            ])
        h.play()
        #expect(h.outcomes == [.skippedValidation, .skippedValidation, .skippedValidation])
        #expect(
            h.saga.attempts.map(\.reason) == [
                "customer.age >= 21", "no connector descriptor", "loan.amount_paise <= 20000000",
            ])
        #expect(h.applies.isEmpty)
        #expect(h.saga.status == .declined)
        #expect(h.saga.declineReasons.first == "L1: skipped_validation (customer.age >= 21)")
    }

    @Test("empty ranking: declined at once with the rules' exclusion reasons")
    func emptyRanking() {
        var h = SagaHarness(
            ranking: [],
            excluded: [
                .init(lenderID: "L1", failed: ["customer.bureau_score >= 750", "loan.tenure_months <= 12"]),
                .init(lenderID: "L2", failed: ["merchant_id in [\"m_other\"]"]),
            ])
        let step = h.send(.start)
        #expect(types(step) == ["ApplicationDeclined"])
        #expect(step.effects.isEmpty)
        #expect(h.saga.status == .declined)
        #expect(
            h.saga.declineReasons == [
                "L1: customer.bureau_score >= 750; loan.tenure_months <= 12", "L2: merchant_id in [\"m_other\"]",
            ])
        #expect(h.saga.attempts.isEmpty)
    }

    @Test("empty ranking and nothing excluded: declined, no lender configured")
    func emptyRankingNoExclusions() {
        var h = SagaHarness(ranking: [])
        h.play()
        #expect(h.saga.status == .declined)
        #expect(h.saga.declineReasons == ["no lender is configured for this application"])
    }
}

// MARK: - Status inquiries (the ghost-loan rule while running)

@Suite("WaterfallSaga: status inquiries")
struct WaterfallInquiryTests {
    @Test("timeout → inquiry at once → approved: ghost_recovered and disbursed")
    func timeoutThenApproved() {
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: ["L1": .timesOut(then: [.approved(reference: "ABF-3", annualRateBps: 1450)])])
        h.send(.start)
        h.send(.admission(lenderID: "L1", .permitted))
        let step = h.send(
            .applied(lenderID: "L1", SagaHarness.call(.unknown(reason: "timed out after 5000 ms", timedOut: true))))
        #expect(types(step) == ["LenderAttemptFinished"])
        #expect(step.effects == [.inquireStatus(lenderID: "L1", reference: nil, after: .zero)])
        #expect(h.saga.phase == .inquiring(lenderID: "L1", reference: nil))
        #expect(h.outcomes == [.timeout])
        #expect(h.saga.status == .pending)
        h.queue.removeAll()

        let inquired = h.send(
            .inquired(lenderID: "L1", SagaHarness.call(.approved(reference: "ABF-3", annualRateBps: 1450))))
        #expect(types(inquired) == ["LenderStatusInquired", "ApplicationApproved"])
        #expect(inquired.effects == [.disburse(lenderID: "L1", reference: "ABF-3", after: .zero)])
        h.run()
        #expect(h.saga.status == .disbursed)
        #expect(h.outcomes == [.ghostRecovered])
        #expect(h.saga.attempts.first?.lenderReference == "ABF-3")
        #expect(h.saga.annualRateBps == 1450)
        #expect(h.admits == ["L1"], "L2 is never admitted")
        #expect(h.saga.view()["attempts"]?.arrayValue?.first?["outcome"] == "ghost_recovered")
    }

    @Test("lost reply (not a timeout) → row error, inquiry → approved: ghost_recovered")
    func lostReplyThenApproved() {
        var h = SagaHarness(
            ranking: ["L1"],
            scripts: [
                "L1": LenderScript(
                    apply: [.unknown(reason: "connection reset after sending", timedOut: false)],
                    status: [.approved(reference: "R", annualRateBps: 1200)])
            ])
        h.play()
        #expect(h.inquiryDelays == [.zero])
        #expect(h.outcomes == [.ghostRecovered])
        #expect(h.saga.status == .disbursed)
    }

    @Test("timeout → inquiry → rejected: the next lender is tried")
    func timeoutThenRejected() {
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: ["L1": .timesOut(then: [.rejected(reason: "policy decline")]), "L2": .approves("L2-REF")])
        h.play()
        #expect(h.outcomes == [.rejected, .approved])
        #expect(h.saga.attempts.first?.reason == "policy decline")
        #expect(h.saga.lenderID == "L2")
        #expect(h.saga.status == .disbursed)
        h.expectNoLenderAskedTwice()
    }

    @Test("timeout → not_found once: asked again after notFoundRecheck; then approved")
    func notFoundOnceThenApproved() {
        var policy = SagaPolicy()
        policy.notFoundRecheck = .milliseconds(750)
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: ["L1": .timesOut(then: [.notFound, .approved(reference: "R", annualRateBps: 1500)])],
            policy: policy)
        h.play()
        #expect(h.inquiryDelays == [.zero, .milliseconds(750)])
        #expect(h.outcomes == [.ghostRecovered])
        #expect(h.saga.status == .disbursed)
        #expect(h.admits == ["L1"])
    }

    @Test("timeout → not_found twice: the lender never took it, move on")
    func notFoundTwiceMovesOn() {
        var h = SagaHarness(
            ranking: ["L1", "L2"], scripts: ["L1": .timesOut(then: [.notFound, .notFound]), "L2": .approves()])
        h.send(.start)
        h.run()
        #expect(h.inquiryDelays == [.zero, SagaPolicy().notFoundRecheck])
        #expect(h.admits == ["L1", "L2"])
        #expect(h.outcomes == [.timeout, .approved])
        #expect(
            h.saga.attempts.first?.reason
                == "timed out after 5000 ms; the lender has no record of the application (status not_found twice)")
        #expect(h.saga.status == .disbursed)
        #expect(h.saga.lenderID == "L2")
    }

    @Test("timeout → not_found twice on the last lender: failed (no business answer)")
    func notFoundTwiceOnLastLenderFails() {
        var h = SagaHarness(ranking: ["L1"], scripts: ["L1": .timesOut(then: [.notFound, .notFound])])
        h.play()
        #expect(h.saga.status == .failed)
    }

    @Test("unknown forever: never moves on; parks with lender_status_unknown; backoff grows and caps")
    func unknownRepeatedlyNeverMovesOn() {
        let answers = [StatusOutcome](repeating: .unknown(reason: "HTTP 502"), count: 12)
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .timesOut(then: answers), "L2": .approves()])
        h.send(.start)
        h.send(.admission(lenderID: "L1", .permitted))
        h.send(.applied(lenderID: "L1", SagaHarness.call(.unknown(reason: "timed out", timedOut: true))))
        h.queue.removeAll()
        var pendingReasons: [String?] = []
        for n in 1...12 {
            let step = h.send(.inquired(lenderID: "L1", SagaHarness.call(.unknown(reason: "HTTP 502"))))
            #expect(types(step) == ["LenderStatusInquired"])
            #expect(step.effects.count == 1)
            guard case .inquireStatus(let l, _, _) = step.effects.first else {
                Issue.record("answer \(n): expected another inquiry, got \(step.effects)")
                return
            }
            #expect(l == "L1")
            pendingReasons.append(h.saga.pendingReason)
            #expect(h.saga.status == .pending)
        }
        #expect(h.admits == ["L1"], "the next lender is never admitted while the first may have lent")
        #expect(h.applies == ["L1"])
        #expect(
            h.inquiryDelays == [
                .zero, .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600),
                .milliseconds(3200), .milliseconds(6400), .milliseconds(12800), .milliseconds(25600), .seconds(30),
                .seconds(30), .seconds(30), .seconds(30),
            ])
        let parking = SagaPolicy().inquiriesBeforeParking
        #expect(pendingReasons.prefix(parking - 1).allSatisfy { $0 == nil })
        #expect(pendingReasons.dropFirst(parking - 1).allSatisfy { $0 == "lender_status_unknown" })
        #expect(h.saga.view()["pending_reason"] == "lender_status_unknown")
        #expect(h.saga.view()["status"] == "pending")
        #expect(h.outcomes == [.pending])
    }

    @Test("the inquiry backoff never exceeds inquiryBackoffMax, even after very many answers")
    func backoffCapsAfterManyAnswers() {
        var policy = SagaPolicy()
        policy.inquiryBackoffInitial = .milliseconds(50)
        policy.inquiryBackoffMax = .milliseconds(1000)
        policy.inquiriesBeforeParking = 2
        let answers = [StatusOutcome](repeating: .pending, count: 80)
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .timesOut(then: answers)], policy: policy)
        h.play()
        let delays = h.inquiryDelays
        #expect(delays.count == 81)
        #expect(
            Array(delays.prefix(7)) == [
                .zero, .milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(400),
                .milliseconds(800), .milliseconds(1000),
            ])
        #expect(delays.allSatisfy { $0 <= .milliseconds(1000) })
        #expect(zip(delays, delays.dropFirst()).allSatisfy { $0 <= $1 }, "delays never shrink")
        #expect(h.admits == ["L1"])
        #expect(h.saga.pendingReason == "lender_status_unknown")
    }

    @Test("a parked attempt that is finally approved clears pending_reason and disburses")
    func parkedThenApproved() {
        var answers = [StatusOutcome](repeating: .unknown(reason: "HTTP 504"), count: 6)
        answers.append(.approved(reference: "LATE", annualRateBps: 1700))
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .timesOut(then: answers)])
        h.play()
        #expect(h.saga.status == .disbursed)
        #expect(h.saga.pendingReason == nil)
        #expect(h.saga.view()["pending_reason"] == nil)
        #expect(h.admits == ["L1"])
    }

    @Test(
        "a timed-out attempt that was parked and then approved is ghost_recovered")
    func parkedTimeoutRecoveredIsGhostRecovered() {
        var answers = [StatusOutcome](
            repeating: .unknown(reason: "HTTP 504"), count: SagaPolicy().inquiriesBeforeParking)
        answers.append(.approved(reference: "LATE", annualRateBps: 1700))
        var h = SagaHarness(ranking: ["L1"], scripts: ["L1": .timesOut(then: answers)])
        h.play()
        #expect(h.saga.status == .disbursed)
        #expect(h.outcomes == [.ghostRecovered])
    }

    @Test("apply says pending → inquiry at once → approved: row approved (not a ghost)")
    func pendingThenApproved() {
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: [
                "L1": LenderScript(
                    apply: [.pending(reference: "TC-55")], status: [.approved(reference: "TC-55", annualRateBps: 1300)])
            ])
        h.send(.start)
        h.send(.admission(lenderID: "L1", .permitted))
        let step = h.send(.applied(lenderID: "L1", SagaHarness.call(.pending(reference: "TC-55"))))
        #expect(step.effects == [.inquireStatus(lenderID: "L1", reference: "TC-55", after: .zero)])
        #expect(h.saga.attempts.first?.reason == "the lender is deciding")
        h.queue.removeAll()
        h.send(.inquired(lenderID: "L1", SagaHarness.call(.pending)))
        h.run()
        #expect(h.inquiryDelays == [.zero, .milliseconds(200)])
        #expect(h.outcomes == [.approved])
        #expect(h.saga.status == .disbursed)
        #expect(h.saga.lenderReference == "TC-55")
    }

    @Test("the known lender reference is passed to every inquiry")
    func inquiryCarriesReference() {
        var h = SagaHarness(
            ranking: ["L1"],
            scripts: [
                "L1": LenderScript(apply: [.pending(reference: "TC-1")], status: [.notFound, .rejected(reason: "no")])
            ])
        h.play()
        let refs = h.effects.compactMap { if case .inquireStatus(_, let r, _) = $0 { r } else { nil } }
        #expect(refs == ["TC-1", "TC-1"])
        #expect(h.saga.status == .declined)
    }
}

// MARK: - Recovery (a fresh node folds the journal and resumes)

@Suite("WaterfallSaga: recovery")
struct WaterfallRecoveryTests {
    @Test("ghost rule: a saga rebuilt after LenderAttemptStarted asks status, never apply again")
    func resumeAfterAttemptStartedInquires() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": LenderScript(apply: [])])
        h.play()
        #expect(h.inFlight == [.apply(lenderID: "L1")], "the apply never answers: the node dies")
        #expect(h.types.last == "LenderAttemptStarted")

        var fresh = h.replayed()
        #expect(fresh.phase == .applying(lenderID: "L1"))
        let resumed = fresh.resume(now: h.now + 60)
        #expect(types(resumed) == ["LenderAttemptFinished"])
        #expect(resumed.effects == [.inquireStatus(lenderID: "L1", reference: nil, after: .zero)])
        #expect(!resumed.effects.contains(.apply(lenderID: "L1")))
        guard case .attemptFinished(let f) = resumed.events.first else { return }
        #expect(f.needsInquiry)
        #expect(f.outcome == .error)
        #expect(f.reason == "the node stopped while the call was in flight")
        #expect(fresh.attemptKey("L1") == "app_01J0TEST.L1", "the same key as the first call")

        // The lender had lent: the recovered saga finds it and disburses with it.
        let found = fresh.handle(
            .inquired(lenderID: "L1", SagaHarness.call(.approved(reference: "GHOST", annualRateBps: 1600))),
            now: h.now + 61)
        #expect(types(found) == ["LenderStatusInquired", "ApplicationApproved"])
        #expect(found.effects == [.disburse(lenderID: "L1", reference: "GHOST", after: .zero)])
        #expect(fresh.attempts.map(\.outcome) == [.ghostRecovered])
    }

    @Test("recovering after any prefix of the journal never re-sends apply to a started lender")
    func everyPrefixRespectsGhostRule() {
        var h = SagaHarness(
            ranking: ["L1", "L2", "L3", "L4"],
            scripts: [
                "L1": .rejects(),
                "L2": LenderScript(admission: [.circuitOpen]),
                "L3": .timesOut(then: [.unknown(reason: "502"), .notFound, .notFound]),
                "L4": LenderScript(
                    apply: [.approved(reference: "L4R", annualRateBps: 1900, reason: "ok")],
                    disburse: [.unknown(reason: "reset"), .disbursed]),
            ])
        h.play()
        #expect(h.saga.status == .disbursed)
        for n in 2...h.journal.count {
            var fresh = h.replayed(upTo: n)
            let started = Set(
                h.journal.prefix(n).compactMap { if case .attemptStarted(let s) = $0 { s.lenderID } else { nil } })
            let step = fresh.resume(now: h.now)
            for case .apply(let l) in step.effects {
                #expect(!started.contains(l), "prefix \(n): apply re-sent to \(l)")
            }
            #expect(step.effects.count <= 1)
        }
    }

    @Test("recovery while disbursing: disburse again at once (idempotent), same loan id")
    func resumeWhileDisbursing() {
        var h = SagaHarness(
            ranking: ["L1"],
            scripts: [
                "L1": LenderScript(apply: [.approved(reference: "R1", annualRateBps: 1600, reason: nil)], disburse: [])
            ])
        h.play()
        #expect(h.inFlight == [.disburse(lenderID: "L1", reference: "R1", after: .zero)])
        var fresh = h.replayed()
        #expect(fresh.status == .approved)
        let step = fresh.resume(now: h.now)
        #expect(step.events.isEmpty)
        #expect(step.effects == [.disburse(lenderID: "L1", reference: "R1", after: .zero)])
        let opened = fresh.handle(.disbursal(lenderID: "L1", SagaHarness.call(.disbursed)), now: h.now)
        #expect(
            opened.effects == [.openLoan(loanID: "loan_01J0TEST", lenderID: "L1", reference: "R1", annualRateBps: 1600)]
        )
    }

    @Test("recovery while inquiring: the counters come back from the events")
    func resumeWhileInquiring() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .timesOut(then: [.notFound])])
        h.play()
        #expect(h.inFlight.count == 1)
        var fresh = h.replayed()
        #expect(fresh == h.saga)
        _ = fresh.resume(now: h.now)
        // One more not_found after recovery is the second one: move on.
        let step = fresh.handle(.inquired(lenderID: "L1", SagaHarness.call(.notFound)), now: h.now)
        #expect(step.effects == [.admit(lenderID: "L2")])
    }

    @Test("recovery of a parked inquiry keeps pending_reason")
    func resumeParked() {
        let answers = [StatusOutcome](repeating: .pending, count: SagaPolicy().inquiriesBeforeParking)
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .timesOut(then: answers)])
        h.play()
        var fresh = h.replayed()
        #expect(fresh.pendingReason == "lender_status_unknown")
        #expect(fresh == h.saga)
        let step = fresh.resume(now: h.now)
        guard case .inquireStatus("L1", _, _) = step.effects.first else {
            Issue.record("expected an inquiry, got \(step.effects)")
            return
        }
    }

    @Test("recovery between lenders admits the next one; a finished saga does nothing")
    func resumeReadyAndTerminal() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .rejects(), "L2": LenderScript(admission: [])])
        h.play()
        var ready = h.replayed()
        #expect(ready.resume(now: h.now).effects == [.admit(lenderID: "L2")])

        var done = SagaHarness(ranking: ["L1"], scripts: ["L1": .approves()])
        done.play()
        var terminal = done.replayed()
        let step = terminal.resume(now: done.now)
        #expect(step.events.isEmpty && step.effects.isEmpty)
    }

    @Test(
        "replaying every event of a finished run reproduces the same state and view",
        arguments: [
            ("approve", ["L1": LenderScript.approves()]),
            ("reject-approve", ["L1": .rejects(), "L2": .approves()]),
            ("all-reject", ["L1": .rejects(), "L2": .rejects(), "L3": .rejects()]),
            ("unreachable", ["L1": .unreachable(), "L2": .unreachable(), "L3": .unreachable()]),
            (
                "skips-ghost",
                [
                    "L1": LenderScript(admission: [.circuitOpen]),
                    "L2": LenderScript(admission: [.validationFailed("x > 1")]),
                    "L3": .timesOut(then: [
                        .unknown(reason: "a"), .pending, .notFound, .approved(reference: "G", annualRateBps: 10),
                    ]),
                ]
            ),
            ("not-found", ["L1": .timesOut(then: [.notFound, .notFound]), "L2": .rejects(), "L3": .approves()]),
            (
                "disbursal-failed",
                [
                    "L1": LenderScript(
                        apply: [.approved(reference: "A", annualRateBps: 1, reason: nil)],
                        disburse: [.failed(reason: "KYC")]),
                    "L2": .approves(),
                ]
            ),
        ] as [(String, [String: LenderScript])])
    func replayReproducesState(name: String, scripts: [String: LenderScript]) {
        var h = SagaHarness(ranking: ["L1", "L2", "L3"], scripts: scripts)
        h.play()
        #expect(h.saga.status.isTerminal, "\(name)")
        let fresh = h.replayed()
        #expect(fresh == h.saga, "\(name)")
        #expect(fresh.view() == h.saga.view(), "\(name)")
    }

    @Test(
        "replay equals the live saga after disbursal retries")
    func replayAfterDisbursalRetries() {
        var h = SagaHarness(
            ranking: ["L1"],
            scripts: [
                "L1": LenderScript(
                    apply: [.approved(reference: "A", annualRateBps: 1, reason: nil)],
                    disburse: [.unknown(reason: "reset"), .disbursed])
            ])
        h.play()
        #expect(h.saga.status == .disbursed)
        #expect(h.replayed() == h.saga)
    }
}

// MARK: - Cancel

@Suite("WaterfallSaga: cancel")
struct WaterfallCancelTests {
    @Test("cancel before the application exists is refused")
    func cancelNew() {
        var saga = WaterfallSaga()
        let step = saga.handle(.cancel, now: SagaHarness.t0)
        #expect(step.cancelReply == .refused(reason: "the application does not exist"))
        #expect(step.events.isEmpty && step.effects.isEmpty)
        #expect(saga == WaterfallSaga())
    }

    @Test("cancel a received application before any lender: cancelled at once")
    func cancelReadyBeforeStart() {
        var h = SagaHarness(ranking: ["L1"], scripts: ["L1": .approves()])
        let step = h.send(.cancel)
        #expect(step.cancelReply == .cancelled)
        #expect(types(step) == ["CancelRequested", "ApplicationCancelled"])
        #expect(step.effects.isEmpty)
        #expect(h.saga.status == .cancelled)
        #expect(h.saga.declineReasons == ["cancelled by the merchant"])
        #expect(h.saga.view()["cancel_requested"] == nil, "only shown while not terminal")
        h.play()
        #expect(h.effects.isEmpty, "start after cancel does nothing")
        #expect(h.send(.cancel).cancelReply == .alreadyCancelled)
    }

    @Test("cancel between lenders (admission in flight): cancelled; the late admission is ignored")
    func cancelBetweenLenders() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .rejects(), "L2": LenderScript(admission: [])])
        h.play()
        #expect(h.inFlight == [.admit(lenderID: "L2")])
        let step = h.send(.cancel)
        #expect(step.cancelReply == .cancelled)
        #expect(h.saga.status == .cancelled)
        let late = h.send(.admission(lenderID: "L2", .permitted))
        #expect(late.events.isEmpty && late.effects.isEmpty)
        #expect(h.applies == ["L1"])
    }

    @Test("cancel while applying, then the lender approves: compensated (flagged), cancelled")
    func cancelApplyingThenApproved() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": LenderScript(apply: [], cancel: [nil])])
        h.play()
        #expect(h.inFlight == [.apply(lenderID: "L1")])

        let c = h.send(.cancel)
        #expect(c.cancelReply == .accepted)
        #expect(types(c) == ["CancelRequested"])
        #expect(c.effects.isEmpty)
        #expect(h.saga.cancelRequested)
        #expect(h.saga.status == .pending)
        #expect(h.saga.view()["cancel_requested"] == true)

        let again = h.send(.cancel)
        #expect(again.cancelReply == .accepted)
        #expect(again.events.isEmpty && again.effects.isEmpty, "a second cancel journals nothing")

        let approved = h.send(
            .applied(lenderID: "L1", SagaHarness.call(.approved(reference: "R9", annualRateBps: 1600, reason: nil))))
        #expect(types(approved) == ["LenderAttemptFinished", "ApplicationApproved"])
        #expect(approved.effects == [.cancelAtLender(lenderID: "L1", reference: "R9")])
        #expect(h.saga.phase == .compensating(lenderID: "L1", reference: "R9"))

        h.queue.removeAll()
        let comp = h.send(.compensation(lenderID: "L1", nil))
        #expect(types(comp) == ["LenderApprovalCompensated", "ApplicationCancelled"])
        #expect(comp.effects.isEmpty)
        guard case .compensated(let k) = comp.events.first else { return }
        #expect(k.result == "flagged")
        #expect(k.reason == "the lender has no cancel operation")
        #expect(k.lenderReference == "R9")
        #expect(h.saga.status == .cancelled)
        #expect(h.admits == ["L1"])
        #expect(h.applies == ["L1"])
        #expect(!h.effects.contains { if case .disburse = $0 { true } else { false } }, "never disbursed")
    }

    @Test("compensation through the lender's cancel, and a failed one")
    func compensationResults() {
        for (answer, result, reason) in [
            (CancelOutcome.cancelled, "cancelled", String?.none),
            (.failed(reason: "HTTP 500"), "flagged", "lender cancel failed: HTTP 500"),
        ] {
            var h = SagaHarness(ranking: ["L1"], scripts: ["L1": LenderScript(apply: [], cancel: [answer])])
            h.play()
            h.send(.cancel)
            h.send(.applied(lenderID: "L1", SagaHarness.call(.approved(reference: "R", annualRateBps: 1, reason: nil))))
            h.run()
            #expect(h.saga.status == .cancelled)
            let comp = h.journal.compactMap { if case .compensated(let c) = $0 { c } else { nil } }
            #expect(comp.map(\.result) == [result])
            #expect(comp.map(\.reason) == [reason])
        }
    }

    @Test("cancel while applying, then the lender rejects: cancelled, the next lender is not tried")
    func cancelApplyingThenRejected() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": LenderScript(apply: []), "L2": .approves()])
        h.play()
        #expect(h.send(.cancel).cancelReply == .accepted)
        let step = h.send(.applied(lenderID: "L1", SagaHarness.call(.rejected(reason: "no", reference: nil))))
        #expect(types(step) == ["LenderAttemptFinished", "ApplicationCancelled"])
        #expect(step.effects.isEmpty)
        #expect(h.saga.status == .cancelled)
        #expect(h.admits == ["L1"])
    }

    @Test("cancel while applying, then a timeout: the inquiry still settles it before closing")
    func cancelApplyingThenTimeout() {
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: [
                "L1": LenderScript(
                    apply: [], status: [.unknown(reason: "502"), .approved(reference: "G", annualRateBps: 1)],
                    cancel: [.cancelled])
            ])
        h.play()
        h.send(.cancel)
        let step = h.send(.applied(lenderID: "L1", SagaHarness.call(.unknown(reason: "timed out", timedOut: true))))
        #expect(step.effects == [.inquireStatus(lenderID: "L1", reference: nil, after: .zero)])
        #expect(h.saga.status == .pending)
        h.run()
        #expect(h.saga.status == .cancelled)
        #expect(
            h.types.suffix(4) == [
                "LenderStatusInquired", "ApplicationApproved", "LenderApprovalCompensated", "ApplicationCancelled",
            ])
        #expect(h.admits == ["L1"])
    }

    @Test("cancel while inquiring: accepted; not_found twice then closes as cancelled")
    func cancelInquiring() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .timesOut(then: [.notFound]), "L2": .approves()])
        h.play()
        #expect(h.saga.phase == .inquiring(lenderID: "L1", reference: nil))
        let c = h.send(.cancel)
        #expect(c.cancelReply == .accepted)
        #expect(c.effects.isEmpty)
        let step = h.send(.inquired(lenderID: "L1", SagaHarness.call(.notFound)))
        #expect(types(step) == ["LenderStatusInquired", "ApplicationCancelled"])
        #expect(step.effects.isEmpty)
        #expect(h.saga.status == .cancelled)
        #expect(h.admits == ["L1"])
    }

    @Test("cancel while disbursing is refused")
    func cancelDisbursing() {
        var h = SagaHarness(
            ranking: ["L1"],
            scripts: [
                "L1": LenderScript(apply: [.approved(reference: "R", annualRateBps: 1, reason: nil)], disburse: [])
            ])
        h.play()
        let before = h.saga
        let step = h.send(.cancel)
        #expect(step.cancelReply == .refused(reason: "the application is approved and its disbursal has started"))
        #expect(step.events.isEmpty && step.effects.isEmpty)
        #expect(h.saga == before)
        // Also while waiting for the loan account.
        h.send(.disbursal(lenderID: "L1", SagaHarness.call(.disbursed)))
        #expect(
            h.send(.cancel).cancelReply == .refused(reason: "the application is approved and its disbursal has started")
        )
    }

    @Test("cancel a finished application: refused, or alreadyCancelled")
    func cancelTerminal() {
        var disbursed = SagaHarness(ranking: ["L1"], scripts: ["L1": .approves()])
        disbursed.play()
        #expect(disbursed.send(.cancel).cancelReply == .refused(reason: "the application is disbursed"))
        #expect(disbursed.saga.status == .disbursed)

        var declined = SagaHarness(ranking: ["L1"], scripts: ["L1": .rejects()])
        declined.play()
        #expect(declined.send(.cancel).cancelReply == .refused(reason: "the application is declined"))

        var failed = SagaHarness(ranking: ["L1"], scripts: ["L1": .unreachable()])
        failed.play()
        #expect(failed.send(.cancel).cancelReply == .refused(reason: "the application is failed"))

        var cancelled = SagaHarness(ranking: ["L1"])
        cancelled.send(.cancel)
        let again = cancelled.send(.cancel)
        #expect(again.cancelReply == .alreadyCancelled)
        #expect(again.events.isEmpty)
    }

    @Test(
        "a second cancel while the approval is being compensated is accepted, not refused")
    func cancelCompensating() {
        var h = SagaHarness(ranking: ["L1"], scripts: ["L1": LenderScript(apply: [], cancel: [])])
        h.play()
        h.send(.cancel)
        h.send(.applied(lenderID: "L1", SagaHarness.call(.approved(reference: "R", annualRateBps: 1, reason: nil))))
        #expect(h.saga.phase == .compensating(lenderID: "L1", reference: "R"))
        let again = h.send(.cancel)
        #expect(again.cancelReply == .accepted)
    }

    @Test("a cancel never produces an effect, in any state")
    func cancelHasNoEffects() {
        // Stop the run at each effect in turn and cancel there.
        let scripts: [String: LenderScript] = [
            "L1": .rejects(),
            "L2": .timesOut(then: [.pending, .approved(reference: "R", annualRateBps: 1)]),
        ]
        var full = SagaHarness(ranking: ["L1", "L2"], scripts: scripts)
        full.play()
        for stop in 0...full.effects.count {
            var h = SagaHarness(ranking: ["L1", "L2"], scripts: scripts)
            h.send(.start)
            h.run(limit: stop)
            let step = h.send(.cancel)
            #expect(step.effects.isEmpty, "after \(stop) effects")
            #expect(step.cancelReply != nil)
        }
    }
}

// MARK: - Stale and odd inputs; disbursal

@Suite("WaterfallSaga: stale inputs and disbursal")
struct WaterfallStaleInputTests {
    @Test("inputs for a lender that is not the current one change nothing")
    func staleInputsIgnored() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": LenderScript(apply: [])])
        h.play()
        let before = h.saga
        let inputs: [SagaInput] = [
            .start,
            .admission(lenderID: "L1", .permitted),
            .admission(lenderID: "L2", .permitted),
            .applied(lenderID: "L2", SagaHarness.call(.approved(reference: "X", annualRateBps: 1, reason: nil))),
            .inquired(lenderID: "L1", SagaHarness.call(.approved(reference: "X", annualRateBps: 1))),
            .disbursal(lenderID: "L1", SagaHarness.call(.disbursed)),
            .loanOpened(loanID: "loan_01J0TEST"),
            .compensation(lenderID: "L1", nil),
        ]
        for input in inputs {
            var copy = h.saga
            let step = copy.handle(input, now: h.now)
            #expect(step.events.isEmpty, "\(input)")
            #expect(step.effects == [.apply(lenderID: "L1")] || step.effects.isEmpty, "\(input)")
            #expect(!step.effects.contains(.apply(lenderID: "L2")))
            #expect(copy == before, "\(input)")
        }
    }

    @Test("a second .applied for the same lender is ignored")
    func secondAppliedIgnored() {
        var h = SagaHarness(ranking: ["L1", "L2"], scripts: ["L1": .rejects(), "L2": LenderScript(admission: [])])
        h.play()
        let before = h.saga
        let step = h.send(
            .applied(lenderID: "L1", SagaHarness.call(.approved(reference: "X", annualRateBps: 1, reason: nil))))
        #expect(step.events.isEmpty && step.effects.isEmpty)
        #expect(h.saga == before)
        #expect(h.saga.status == .pending)
    }

    @Test("a late answer after the application closed is ignored")
    func lateAnswerAfterTerminal() {
        var h = SagaHarness(ranking: ["L1"], scripts: ["L1": .rejects()])
        h.play()
        let before = h.saga
        for input: SagaInput in [
            .applied(lenderID: "L1", SagaHarness.call(.approved(reference: "X", annualRateBps: 1, reason: nil))),
            .inquired(lenderID: "L1", SagaHarness.call(.approved(reference: "X", annualRateBps: 1))),
            .start,
        ] {
            let step = h.send(input)
            #expect(step.events.isEmpty && step.effects.isEmpty)
        }
        #expect(h.saga == before)
    }

    @Test("disbursal failed: the attempt becomes an error and the next lender is tried")
    func disbursalFailedMovesOn() {
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: [
                "L1": LenderScript(
                    apply: [.approved(reference: "R1", annualRateBps: 1600, reason: nil)],
                    disburse: [.failed(reason: "merchant account frozen")]),
                "L2": .approves("R2", bps: 1800),
            ])
        h.send(.start)
        h.run(limit: 2)  // admit, apply: the disburse is left to the test
        #expect(h.saga.status == .approved)
        #expect(h.queue == [.disburse(lenderID: "L1", reference: "R1", after: .zero)])
        h.queue.removeAll()
        let failed = h.send(.disbursal(lenderID: "L1", SagaHarness.call(.failed(reason: "merchant account frozen"))))
        h.queue.removeAll()
        #expect(types(failed) == ["DisbursalFailed"])
        #expect(failed.effects == [.admit(lenderID: "L2")])
        #expect(h.saga.status == .pending)
        #expect(h.saga.lenderID == nil)
        #expect(h.saga.view()["lender_id"] == .null)
        #expect(h.saga.attempts.first?.outcome == .error)
        #expect(h.saga.attempts.first?.reason == "disbursal failed: merchant account frozen")
        h.send(.admission(lenderID: "L2", .permitted))
        h.run()
        #expect(h.saga.status == .disbursed)
        #expect(h.saga.lenderID == "L2")
        #expect(h.saga.annualRateBps == 1800)
        #expect(h.outcomes == [.error, .approved])
    }

    @Test("disbursal failed at the last lender: failed")
    func disbursalFailedLast() {
        var h = SagaHarness(
            ranking: ["L1"],
            scripts: [
                "L1": LenderScript(
                    apply: [.approved(reference: "R1", annualRateBps: 1, reason: nil)], disburse: [.failed(reason: "x")]
                )
            ])
        h.play()
        #expect(h.saga.status == .failed)
        #expect(h.saga.declineReasons == ["L1: error (disbursal failed: x)"])
    }

    @Test("disbursal unknown/pending: disburse again with a growing, capped backoff")
    func disbursalUnknownRetries() {
        var policy = SagaPolicy()
        policy.disburseBackoffInitial = .milliseconds(100)
        policy.disburseBackoffMax = .milliseconds(500)
        var answers = [DisburseOutcome]()
        for i in 0..<6 { answers.append(i.isMultiple(of: 2) ? .unknown(reason: "reset") : .pending) }
        answers.append(.disbursed)
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: [
                "L1": LenderScript(
                    apply: [.approved(reference: "R1", annualRateBps: 1, reason: nil)], disburse: answers)
            ],
            policy: policy)
        h.play()
        #expect(
            h.disburseDelays == [
                .zero, .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(500),
                .milliseconds(500), .milliseconds(500),
            ])
        #expect(h.saga.status == .disbursed)
        #expect(h.admits == ["L1"])
        #expect(!h.types.contains("DisbursalFailed"))
    }

    @Test(
        "the next lender's first disburse is immediate even if the previous lender's disbursal was retried")
    func disburseRetriesResetPerLender() {
        var h = SagaHarness(
            ranking: ["L1", "L2"],
            scripts: [
                "L1": LenderScript(
                    apply: [.approved(reference: "R1", annualRateBps: 1, reason: nil)],
                    disburse: [.unknown(reason: "reset"), .failed(reason: "x")]),
                "L2": .approves("R2"),
            ])
        h.play()
        #expect(h.saga.status == .disbursed)
        #expect(h.disburseDelays == [.zero, .milliseconds(200), .zero])
    }

    @Test("a second disbursed answer or a loanOpened before disbursal is ignored")
    func disbursalDuplicates() {
        var h = SagaHarness(
            ranking: ["L1"],
            scripts: [
                "L1": LenderScript(apply: [.approved(reference: "R1", annualRateBps: 1, reason: nil)], disburse: [])
            ])
        h.play()
        let early = h.send(.loanOpened(loanID: "loan_01J0TEST"))
        #expect(early.events.isEmpty && early.effects.isEmpty)
        let first = h.send(.disbursal(lenderID: "L1", SagaHarness.call(.disbursed)))
        #expect(first.effects.count == 1)
        let second = h.send(.disbursal(lenderID: "L1", SagaHarness.call(.disbursed)))
        #expect(second.events.isEmpty && second.effects.isEmpty)
        #expect(h.saga.status == .approved)
        let done = h.send(.loanOpened(loanID: "loan_01J0TEST"))
        #expect(types(done) == ["ApplicationDisbursed"])
    }
}
