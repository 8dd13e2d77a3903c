import Foundation
import Logging

/// Opens the loan account of a disbursed application. Idempotent on `loanID`: a recovered saga
/// that asks again gets the same loan, never a second one.
public protocol LoanOpening: Sendable {
    func openLoan(_ request: LoanOpeningRequest) async throws
}

public struct LoanOpeningRequest: Sendable, Equatable {
    public var loanID: String
    public var applicationID: String
    public var lenderID: String
    public var lenderReference: String
    public var customerID: String
    public var merchantID: String
    public var principalPaise: Int64
    public var annualRateBps: Int
    public var tenureMonths: Int
    public var disbursedAt: Date
}

/// What every application actor on a node shares.
public struct ApplicationServices: Sendable {
    public var journal: EventJournal
    public var gateway: any LenderGateway
    public var loans: any LoanOpening
    public var policy: SagaPolicy
    public var shards: ShardMap
    /// The writer epoch this node holds for a shard (`nil`: not ours).
    public var epoch: @Sendable (Int) -> Int64?
    public var now: @Sendable () -> Date
    public var logger: Logger
    /// Called once when an application reaches a terminal status or its actor stops.
    public var onSettled: @Sendable (_ id: String, _ status: ApplicationStatus) -> Void
    /// Keeps checking a reference the waterfall gave up on (`not_found` twice) in the background.
    public var reconciler: Reconciler?

    public init(
        journal: EventJournal, gateway: any LenderGateway, loans: any LoanOpening, policy: SagaPolicy,
        shards: ShardMap, epoch: @escaping @Sendable (Int) -> Int64?, now: @escaping @Sendable () -> Date,
        logger: Logger, onSettled: @escaping @Sendable (String, ApplicationStatus) -> Void,
        reconciler: Reconciler? = nil
    ) {
        self.reconciler = reconciler
        self.journal = journal
        self.gateway = gateway
        self.loans = loans
        self.policy = policy
        self.shards = shards
        self.epoch = epoch
        self.now = now
        self.logger = logger
        self.onSettled = onSettled
    }
}

/// One loan application: the shell around its `WaterfallSaga`. It journals the saga's events in
/// order, makes them durable before any effect the outside can see, performs the effects and
/// feeds their results back.
public actor LoanApplication {
    public nonisolated let id: String
    public nonisolated let stream: String
    public nonisolated let shard: Int
    private let services: ApplicationServices
    private let request: CheckoutRequest
    private let epoch: Int64
    private var saga: WaterfallSaga
    /// Last seq handed to the journal, and last seq assigned.
    private var appendedSeq: Int64 = 0
    private var assignedSeq: Int64 = 0
    private var outbox: [JournalEvent] = []
    private var draining = false
    private var appendWaiters: [(seq: Int64, continuation: CheckedContinuation<Void, Never>)] = []
    private var viewWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiterID = 0
    /// Set when the journal refused this stream: another writer owns it now. The actor does nothing more.
    private var stopped = false
    private var settledReported = false
    /// Set when the shard is being handed to another node: no new lender call starts.
    private var suspended = false
    private var callsInFlight = 0
    private var quietWaiters: [CheckedContinuation<Void, Never>] = []

    public static func streamName(_ id: String) -> String { "app/\(id)" }

    /// Events already in the journal (recovery) or to be journalled by `begin` (a new application).
    init(
        id: String, request: CheckoutRequest, saga: WaterfallSaga, seq: Int64, epoch: Int64,
        services: ApplicationServices
    ) {
        self.id = id
        self.stream = Self.streamName(id)
        self.shard = services.shards.shard(for: id)
        self.request = request
        self.saga = saga
        self.appendedSeq = seq
        self.assignedSeq = seq
        self.epoch = epoch
        self.services = services
    }

    public var status: ApplicationStatus { saga.status }
    public var requestHash: String { saga.received?.requestHash ?? "" }
    public var sagaState: WaterfallSaga { saga }

    // MARK: - Starting

    /// Journals a new application's first events and waits until they are durable (the 201 is an
    /// effect the outside sees). Throws when the journal cannot take them: nothing is stored then
    /// that a later read would see as acknowledged.
    ///
    /// `claim` (the Idempotency-Key's claim, another stream) is appended with them, so that one
    /// durability wait covers both. Either may be refused as already stored: the result says which
    /// got in. Any other failure throws.
    func begin(events: [ApplicationEvent], claim: JournalEvent) async throws(JournalError) -> Beginning {
        for e in events { saga.apply(e) }
        let batch = events.map { journalEvent($0) }
        var result = Beginning(claimed: true, stored: true, lastSeq: assignedSeq)
        var claimEvents = [claim]
        // The journal refuses at once what it knows is stored (Docs/journal.md): a claim it knows
        // is taken is left out, and an application it knows exists stores nothing.
        while true {
            do {
                try await services.journal.append(claimEvents + batch)
                break
            } catch .refused(let refused, .sequenceConflict) where refused == claim.stream && !claimEvents.isEmpty {
                // Known to be taken (or just refused to another creation with this key).
                result.claimed = false
                claimEvents = []
            } catch .refused(let refused, .sequenceConflict) where refused == stream {
                stopped = true
                return Beginning(claimed: false, stored: false, lastSeq: 0)
            }
        }
        appendedSeq = assignedSeq
        if !claimEvents.isEmpty {
            do {
                try await services.journal.awaitDurable(stream: claim.stream, upTo: claim.seq)
            } catch .refused(_, .sequenceConflict) {
                result.claimed = false
            }
        }
        do {
            try await services.journal.awaitDurable(stream: stream, upTo: appendedSeq)
        } catch .refused(_, .sequenceConflict) {
            result.stored = false
            stopped = true
        }
        return result
    }

    /// What `begin` stored: the key's claim, the application's first events (up to `lastSeq`).
    struct Beginning: Sendable, Equatable {
        var claimed: Bool
        var stored: Bool
        var lastSeq: Int64
    }

    /// Starts (or, after recovery, continues) the waterfall in the background.
    func run(recovered: Bool) {
        let now = services.now()
        let step = recovered ? saga.resume(now: now) : saga.handle(.start, now: now)
        commit(step)
    }

    // MARK: - Public operations

    /// The application view; with `wait`, held until the application is terminal (or
    /// `offers_ready`) or the wait runs out.
    public func view(wait: Duration? = nil) async -> JSONValue {
        if let wait, wait > .zero, !saga.status.isTerminal, saga.status != .offersReady, !stopped {
            let id = nextWaiterID
            nextWaiterID += 1
            let timer = Task { [weak self] in
                try? await Task.sleep(for: wait)
                await self?.releaseWaiter(id)
            }
            await withCheckedContinuation { c in viewWaiters[id] = c }
            timer.cancel()
        }
        return saga.view()
    }

    private func releaseWaiter(_ id: Int) {
        viewWaiters.removeValue(forKey: id)?.resume()
    }

    public func cancel() async -> CancelReply {
        let step = saga.handle(.cancel, now: services.now())
        commit(step)
        if step.cancelReply == .cancelled, !step.events.isEmpty {
            // The merchant sees "cancelled": make it durable before answering.
            _ = await durable(upTo: assignedSeq)
        }
        return step.cancelReply ?? .refused(reason: "not cancellable")
    }

    /// Hands the application over (its shard moves to another node): no new lender call
    /// starts, the call in progress finishes and its outcome is handed to the journal, then the
    /// actor stops. The new owner reloads it from the journal and carries on.
    public func suspend() async {
        guard !stopped else { return }
        suspended = true
        while callsInFlight > 0 {
            await withCheckedContinuation { quietWaiters.append($0) }
        }
        if appendedSeq < assignedSeq, !stopped {
            let target = assignedSeq
            await withCheckedContinuation { c in appendWaiters.append((target, c)) }
        }
        stop(reason: "shard handed over", handedOver: true)
    }

    /// Marks a lender call as started; false when the actor is stopping or handing over.
    private func beginCall() -> Bool {
        guard !stopped, !suspended else { return false }
        callsInFlight += 1
        return true
    }

    private func endCall() {
        callsInFlight -= 1
        if callsInFlight == 0, !quietWaiters.isEmpty {
            let waiters = quietWaiters
            quietWaiters.removeAll()
            for w in waiters { w.resume() }
        }
    }

    // MARK: - The loop

    private func feed(_ input: SagaInput) {
        guard !stopped else { return }
        commit(saga.handle(input, now: services.now()))
    }

    private func commit(_ step: SagaStep) {
        if !step.events.isEmpty {
            for e in step.events { outbox.append(journalEvent(e)) }
            drain()
            if saga.status.isTerminal || saga.status == .offersReady { wakeViewWaiters() }
            if saga.status.isTerminal { reportSettled() }
        }
        let barrier = assignedSeq
        for effect in step.effects {
            Task { await self.execute(effect, barrier: barrier) }
        }
    }

    private func journalEvent(_ e: ApplicationEvent) -> JournalEvent {
        assignedSeq += 1
        return JournalEvent(
            shard: shard, stream: stream, seq: assignedSeq, type: e.typeName, data: e.encodedData(),
            writerEpoch: epoch, at: services.now(), closesStream: e.closesStream)
    }

    /// Hands the outbox to the journal in seq order. One drain runs at a time, so events reach the
    /// journal in the order the saga produced them even though this actor is re-entrant.
    private func drain() {
        guard !draining else { return }
        draining = true
        Task {
            var backoff = Duration.milliseconds(5)
            while !outbox.isEmpty && !stopped {
                let batch = outbox
                do {
                    try await services.journal.append(batch)
                    outbox.removeFirst(batch.count)
                    appendedSeq = batch.last!.seq
                    backoff = .milliseconds(5)
                    let ready = appendWaiters.filter { $0.seq <= appendedSeq }
                    appendWaiters.removeAll { $0.seq <= appendedSeq }
                    for w in ready { w.continuation.resume() }
                } catch JournalError.refused(_, let why) {
                    // Another writer owns the stream now (its shard moved): this actor is done.
                    stop(reason: "journal refused the stream: \(why)")
                    break
                } catch {
                    // Back-pressure or an unavailable database: these events are already decided,
                    // so they wait for the journal rather than being dropped.
                    services.logger.warning(
                        "journal append delayed", metadata: ["application": "\(id)", "error": "\(error)"])
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(1))
                }
            }
            draining = false
        }
    }

    /// Waits until every event up to `seq` is durable. False when this actor must stop.
    private func durable(upTo seq: Int64) async -> Bool {
        if appendedSeq < seq {
            await withCheckedContinuation { c in appendWaiters.append((seq, c)) }
        }
        while !stopped {
            do {
                try await services.journal.awaitDurable(stream: stream, upTo: seq)
                return true
            } catch .refused(_, let why) {
                stop(reason: "journal refused the stream: \(why)")
                return false
            } catch {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        return false
    }

    /// Stops for good: waiters are released, the switchboard is told. A hand-over is routine; any
    /// other stop (the journal refused the stream) is an error worth a log line.
    private func stop(reason: String, handedOver: Bool = false) {
        guard !stopped else { return }
        stopped = true
        if handedOver {
            services.logger.debug("application handed over", metadata: ["application": "\(id)"])
        } else {
            services.logger.error(
                "application actor stopped", metadata: ["application": "\(id)", "reason": "\(reason)"])
        }
        for w in appendWaiters { w.continuation.resume() }
        appendWaiters.removeAll()
        wakeViewWaiters()
        reportSettled()
    }

    private func wakeViewWaiters() {
        let waiters = viewWaiters
        viewWaiters.removeAll()
        for (_, c) in waiters { c.resume() }
    }

    private func reportSettled() {
        guard !settledReported else { return }
        settledReported = true
        services.onSettled(id, stopped ? .pending : saga.status)
    }

    private func context(reference: String? = nil, lender: String) -> LenderCallContext {
        LenderCallContext(
            applicationID: id, request: request, createdAt: saga.createdAt ?? services.now(),
            idempotencyKey: saga.attemptKey(lender), lenderReference: reference)
    }

    private static func isInquiring(_ saga: WaterfallSaga, _ lender: String) -> Bool {
        if case .inquiring(let current, _) = saga.phase { return current == lender }
        return false
    }

    private func execute(_ effect: SagaEffect, barrier: Int64) async {
        let gateway = services.gateway
        switch effect {
        case .admit(let lender):
            guard beginCall() else { return }
            defer { endCall() }
            let admission = await gateway.admit(lenderID: lender, context: context(lender: lender))
            feed(.admission(lenderID: lender, admission))
        case .apply(let lender):
            guard await durable(upTo: barrier), beginCall() else { return }
            defer { endCall() }
            let call = await gateway.apply(lenderID: lender, context: context(lender: lender))
            feed(.applied(lenderID: lender, call))
        case .inquireStatus(let lender, let reference, let after):
            if after > .zero { try? await Task.sleep(for: after) }
            guard await durable(upTo: barrier), beginCall() else { return }
            defer { endCall() }
            let call = await gateway.status(lenderID: lender, context: context(reference: reference, lender: lender))
            // When this answer makes the saga move on (a second `not_found`), the lender may
            // still surface an approval later: the reference is watched (approval found → cancel
            // or operators) before the saga moves on, so a crash in between cannot lose the watch.
            if case .notFound = call.outcome, let reconciler = services.reconciler {
                var preview = saga
                _ = preview.handle(.inquired(lenderID: lender, call), now: services.now())
                if !Self.isInquiring(preview, lender) {
                    await reconciler.watch(lenderID: lender, context: context(reference: reference, lender: lender))
                }
            }
            feed(.inquired(lenderID: lender, call))
        case .disburse(let lender, let reference, let after):
            if after > .zero { try? await Task.sleep(for: after) }
            // Money must not move for a loan Flux cannot book (terms whose rounded schedule does
            // not close): such a disbursal fails before the lender is asked.
            do {
                _ = try AmortizationSchedule.make(
                    principalPaise: request.amountPaise, annualRateBps: saga.annualRateBps ?? 0,
                    tenureMonths: request.tenureMonths, disbursedOn: CalendarDate(utc: services.now()))
            } catch {
                feed(
                    .disbursal(
                        lenderID: lender,
                        LenderCall(
                            outcome: .failed(reason: "the loan cannot be booked: \(error)"), tries: 0, latencyMs: 0)))
                return
            }
            guard await durable(upTo: barrier), beginCall() else { return }
            defer { endCall() }
            let call = await gateway.disburse(
                lenderID: lender, context: context(reference: reference, lender: lender))
            feed(.disbursal(lenderID: lender, call))
        case .openLoan(let loanID, let lender, let reference, let bps):
            let opening = LoanOpeningRequest(
                loanID: loanID, applicationID: id, lenderID: lender, lenderReference: reference,
                customerID: request.customerID, merchantID: request.merchantID, principalPaise: request.amountPaise,
                annualRateBps: bps, tenureMonths: request.tenureMonths, disbursedAt: services.now())
            var backoff = Duration.milliseconds(20)
            guard beginCall() else { return }
            defer { endCall() }
            // Retried until it is open, unless the application is handed over meanwhile (its
            // shard released, so this node can no longer write the loan): the journal still shows
            // it disbursing, and its next owner disburses again (the lender is idempotent on the
            // reference) and opens the loan. Waiting here would hold the hand-over up for ever.
            while true {
                do {
                    try await services.loans.openLoan(opening)
                    break
                } catch {
                    if stopped || suspended { return }
                    services.logger.warning(
                        "opening loan failed, retrying", metadata: ["loan": "\(loanID)", "error": "\(error)"])
                    try? await Task.sleep(for: backoff)
                    if stopped || suspended { return }
                    backoff = min(backoff * 2, .seconds(2))
                }
            }
            feed(.loanOpened(loanID: loanID))
        case .cancelAtLender(let lender, let reference):
            guard await durable(upTo: barrier), beginCall() else { return }
            defer { endCall() }
            let call = await gateway.cancel(lenderID: lender, context: context(reference: reference, lender: lender))
            feed(.compensation(lenderID: lender, call))
        }
    }
}
