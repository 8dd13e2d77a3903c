import Foundation
import Logging
import Metrics

/// How long and how often the reconciler keeps asking about a reference the waterfall gave up
/// on (`status` said `not_found` twice, so the saga moved to the next lender).
public struct ReconcilerPolicy: Sendable, Equatable {
    /// Delay before the first background check.
    public var firstCheckAfter: Duration = .seconds(5)
    /// Each later check waits `multiplier` times longer, up to `maxInterval`.
    public var multiplier = 2
    public var maxInterval: Duration = .seconds(600)
    /// A reference is watched this long, then forgotten (the lender's own expiry of unfinished
    /// applications is far shorter).
    public var watchFor: Duration = .seconds(48 * 3600)
    /// A failed `cancel` is tried again at the next check, this many times in all, before the
    /// approval is raised to operators.
    public var cancelAttempts = 3
    /// At most this many references are watched at once; more are refused (and logged).
    public var maxWatched = 100_000

    public init() {}
}

/// The pure core of the reconciler: the references being watched, when each is next due, and
/// what each `status` / `cancel` answer means. Time is a nanosecond count passed in.
public struct ReconciliationBook: Sendable {
    public struct Watch: Sendable, Equatable {
        public var lenderID: String
        public var context: LenderCallContext
        public var checks = 0
        public var cancelTries = 0
        var nextAt: UInt64
        var deadline: UInt64
        var inFlight = false
    }

    public enum Decision: Sendable, Equatable {
        /// Ask again later.
        case recheck
        /// Nothing to do: the lender declined it, or the watch ran out of time.
        case settled(String)
        /// The lender lent for an application Flux gave up on: call its `cancel` with this context.
        case cancel(LenderCallContext)
        /// Raise to operators: the lender lent and it cannot be (or was not) cancelled.
        case flag(String)
        /// The lender's `cancel` worked.
        case cancelled
    }

    public struct Stats: Sendable, Equatable {
        public var watching = 0
        public var checks = 0
        /// Approvals found for references Flux had given up on.
        public var orphanApprovals = 0
        public var cancelled = 0
        /// Raised to operators (no `cancel` operation, or it kept failing).
        public var flagged = 0
        public var expired = 0

        public init(
            watching: Int = 0, checks: Int = 0, orphanApprovals: Int = 0, cancelled: Int = 0, flagged: Int = 0,
            expired: Int = 0
        ) {
            self.watching = watching
            self.checks = checks
            self.orphanApprovals = orphanApprovals
            self.cancelled = cancelled
            self.flagged = flagged
            self.expired = expired
        }
    }

    public let policy: ReconcilerPolicy
    public private(set) var watches: [String: Watch] = [:]
    public private(set) var stats: [String: Stats] = [:]

    public init(policy: ReconcilerPolicy) { self.policy = policy }

    static func nanos(_ d: Duration) -> UInt64 {
        let c = d.components
        return UInt64(max(0, c.seconds)) * 1_000_000_000 + UInt64(max(0, c.attoseconds) / 1_000_000_000)
    }

    /// Starts watching one (lender, application) reference; a second watch of the same one is a
    /// no-op. Returns false when the book is full.
    public mutating func watch(lenderID: String, context: LenderCallContext, now: UInt64) -> Bool {
        let key = context.idempotencyKey
        if watches[key] != nil { return true }
        guard watches.count < policy.maxWatched else { return false }
        watches[key] = Watch(
            lenderID: lenderID, context: context, nextAt: now &+ Self.nanos(policy.firstCheckAfter),
            deadline: now &+ Self.nanos(policy.watchFor))
        stats[lenderID, default: Stats()].watching += 1
        return true
    }

    /// The watches due now (marked in flight until their answer is recorded); the ones past
    /// their deadline are dropped as expired.
    public mutating func due(now: UInt64) -> [Watch] {
        var out: [Watch] = []
        for (key, w) in watches where !w.inFlight && w.nextAt <= now {
            if now >= w.deadline {
                drop(key, w.lenderID)
                stats[w.lenderID, default: Stats()].expired += 1
                continue
            }
            watches[key]?.inFlight = true
            out.append(w)
        }
        return out.sorted { $0.nextAt < $1.nextAt }
    }

    /// The earliest time a watch falls due (nil: nothing watched).
    public var nextDue: UInt64? { watches.values.filter { !$0.inFlight }.map(\.nextAt).min() }

    private mutating func drop(_ key: String, _ lender: String) {
        watches[key] = nil
        stats[lender, default: Stats()].watching -= 1
    }

    private mutating func reschedule(_ key: String, now: UInt64) {
        guard var w = watches[key] else { return }
        w.inFlight = false
        w.checks += 1
        var delay = Self.nanos(policy.firstCheckAfter)
        let cap = Self.nanos(policy.maxInterval)
        for _ in 0..<min(w.checks, 40) {
            delay = delay.multipliedReportingOverflow(by: UInt64(max(1, policy.multiplier))).partialValue
            if delay >= cap { break }
        }
        w.nextAt = now &+ min(delay, cap)
        watches[key] = w
    }

    /// A background `status` answer.
    public mutating func recordStatus(key: String, _ answer: StatusOutcome, now: UInt64) -> Decision {
        guard let w = watches[key] else { return .settled("not watched") }
        stats[w.lenderID, default: Stats()].checks += 1
        switch answer {
        case .approved(let reference, _):
            if w.cancelTries == 0 { stats[w.lenderID, default: Stats()].orphanApprovals += 1 }
            var context = w.context
            context.lenderReference = reference
            watches[key]?.context = context
            return .cancel(context)
        case .rejected(let reason):
            drop(key, w.lenderID)
            return .settled("the lender declined it: \(reason)")
        case .notFound, .pending, .unknown:
            reschedule(key, now: now)
            return .recheck
        }
    }

    /// The answer to the `cancel` a `.cancel` decision asked for (nil: the descriptor has no `cancel`).
    public mutating func recordCancel(key: String, _ answer: CancelOutcome?, now: UInt64) -> Decision {
        guard let w = watches[key] else { return .settled("not watched") }
        switch answer {
        case .cancelled?:
            drop(key, w.lenderID)
            stats[w.lenderID, default: Stats()].cancelled += 1
            return .cancelled
        case nil:
            drop(key, w.lenderID)
            stats[w.lenderID, default: Stats()].flagged += 1
            return .flag("the lender's descriptor has no cancel operation")
        case .failed(let reason)?:
            watches[key]?.cancelTries += 1
            if w.cancelTries + 1 >= policy.cancelAttempts {
                drop(key, w.lenderID)
                stats[w.lenderID, default: Stats()].flagged += 1
                return .flag("cancel failed \(policy.cancelAttempts) times: \(reason)")
            }
            reschedule(key, now: now)
            return .recheck
        }
    }
}

/// Keeps asking lenders about references the waterfall gave up on after `status` said
/// `not_found` twice (the lender may still book it late). If such a lender later reports an
/// approval, the reconciler calls the descriptor's `cancel`; without one (or when it keeps
/// failing) it raises the loan to operators: `flux_orphan_approvals_total{lender,result}`, an
/// error log line, and the counts in `GET /v1/lenders` stats.
///
/// The watch list lives in memory on this node (not journalled): a restart forgets it.
public actor Reconciler {
    private var book: ReconciliationBook
    private let gateway: any LenderGateway
    private let clock: LenderClock
    private let logger: Logger
    private var loop: Task<Void, Never>?

    public init(
        gateway: any LenderGateway, policy: ReconcilerPolicy = ReconcilerPolicy(), clock: LenderClock = .system,
        logger: Logger = Logger(label: "flux.reconciler")
    ) {
        self.book = ReconciliationBook(policy: policy)
        self.gateway = gateway
        self.clock = clock
        self.logger = logger
    }

    /// Watch this attempt's reference in the background. Call it when the saga moves on after
    /// `not_found` twice; `context` is the attempt's (its idempotency key names the watch).
    public func watch(lenderID: String, context: LenderCallContext) {
        guard book.watch(lenderID: lenderID, context: context, now: clock.nowNanos()) else {
            logger.error(
                "reconciler is full; reference not watched",
                metadata: ["lender": "\(lenderID)", "application": "\(context.applicationID)"])
            return
        }
    }

    /// Runs every check that is due now, one after another. The background loop calls it; tests
    /// call it after moving their clock.
    public func runDue() async {
        for w in book.due(now: clock.nowNanos()) {
            let key = w.context.idempotencyKey
            let status = await gateway.status(lenderID: w.lenderID, context: w.context)
            var decision = book.recordStatus(key: key, status.outcome, now: clock.nowNanos())
            if case .cancel(let context) = decision {
                let answer = await gateway.cancel(lenderID: w.lenderID, context: context)
                decision = book.recordCancel(key: key, answer?.outcome, now: clock.nowNanos())
                report(decision, w, reference: context.lenderReference)
            }
        }
    }

    private func report(_ decision: ReconciliationBook.Decision, _ w: ReconciliationBook.Watch, reference: String?) {
        let meta: Logger.Metadata = [
            "lender": "\(w.lenderID)", "application": "\(w.context.applicationID)",
            "lender_reference": "\(reference ?? "?")",
        ]
        switch decision {
        case .cancelled:
            Counter(
                label: "flux_orphan_approvals_total", dimensions: [("lender", w.lenderID), ("result", "cancelled")]
            )
            .increment()
            logger.warning("late approval for an abandoned attempt was cancelled at the lender", metadata: meta)
        case .flag(let why):
            Counter(label: "flux_orphan_approvals_total", dimensions: [("lender", w.lenderID), ("result", "flagged")])
                .increment()
            var m = meta
            m["why"] = "\(why)"
            logger.error(
                "ORPHAN APPROVAL: a lender lent for an application Flux gave up on; operators must act", metadata: m)
        default:
            break
        }
    }

    /// Per-lender counts for `GET /v1/lenders`.
    public func stats() -> [String: ReconciliationBook.Stats] { book.stats }

    public var watchedCount: Int { book.watches.count }

    /// Starts the background loop: it wakes every `tick` and runs the due checks.
    public func start(tick: Duration = .seconds(1)) {
        guard loop == nil else { return }
        loop = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: tick)
                guard let self else { return }
                await self.runDue()
            }
        }
    }

    public func stop() {
        loop?.cancel()
        loop = nil
    }
}
