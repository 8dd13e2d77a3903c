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
/// what each `status` / `cancel` answer means. Time is a nanosecond count passed in. A watch
/// that ends (declined, cancelled, flagged, expired) is also put in `ended` for the shell to
/// journal (`takeEnded()`).
public struct ReconciliationBook: Sendable {
    public struct Watch: Sendable, Equatable {
        public var lenderID: String
        public var context: LenderCallContext
        /// The shard of the watched application (where its watch stream lives).
        public var shard: Int
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

    /// How a watch ended.
    public enum Outcome: String, Sendable, Equatable, Codable {
        /// The lender said it declined the application: nothing was lent.
        case declined
        /// The lender approved late and its `cancel` undid it.
        case cancelled
        /// The lender approved late and it could not be cancelled: raised to operators.
        case flagged
        /// Watched for `watchFor` without an answer.
        case expired
    }

    public struct Ended: Sendable, Equatable {
        public var key: String
        public var watch: Watch
        public var outcome: Outcome
        public var reason: String?
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
    /// Watches that ended since the last `takeEnded()`, oldest first.
    public private(set) var ended: [Ended] = []

    public init(policy: ReconcilerPolicy) { self.policy = policy }

    static func nanos(_ d: Duration) -> UInt64 {
        let c = d.components
        return UInt64(max(0, c.seconds)) * 1_000_000_000 + UInt64(max(0, c.attoseconds) / 1_000_000_000)
    }

    /// Starts watching one (lender, application) reference; a second watch of the same one is a
    /// no-op. `remaining` shortens the watch (a watch recovered from the journal keeps its
    /// original deadline). Returns false when the book is full.
    public mutating func watch(
        lenderID: String, context: LenderCallContext, shard: Int = 0, now: UInt64, remaining: Duration? = nil
    ) -> Bool {
        let key = context.idempotencyKey
        if watches[key] != nil { return true }
        guard watches.count < policy.maxWatched else { return false }
        let life = min(Self.nanos(policy.watchFor), remaining.map(Self.nanos) ?? .max)
        watches[key] = Watch(
            lenderID: lenderID, context: context, shard: shard, nextAt: now &+ Self.nanos(policy.firstCheckAfter),
            deadline: now &+ life)
        stats[lenderID, default: Stats()].watching += 1
        return true
    }

    /// The watches due now (marked in flight until their answer is recorded); the ones past
    /// their deadline are dropped as expired.
    public mutating func due(now: UInt64) -> [Watch] {
        var out: [Watch] = []
        for (key, w) in watches where !w.inFlight && w.nextAt <= now {
            if now >= w.deadline {
                end(key, .expired, "watched for \(policy.watchFor) without an answer")
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

    /// The ended watches, for the shell to journal; clears the list.
    public mutating func takeEnded() -> [Ended] {
        defer { ended = [] }
        return ended
    }

    /// Stops watching without an outcome (this node no longer owns the application's shard, or
    /// the journal shows the watch already ended). Nothing goes to `ended`.
    public mutating func forget(key: String) {
        guard let w = watches.removeValue(forKey: key) else { return }
        stats[w.lenderID, default: Stats()].watching -= 1
    }

    /// `forget` for every watch of these shards. Returns the keys forgotten.
    @discardableResult
    public mutating func forget(shards: Set<Int>) -> [String] {
        let keys = watches.filter { shards.contains($0.value.shard) }.map(\.key).sorted()
        for key in keys { forget(key: key) }
        return keys
    }

    private mutating func end(_ key: String, _ outcome: Outcome, _ reason: String?) {
        guard let w = watches.removeValue(forKey: key) else { return }
        stats[w.lenderID, default: Stats()].watching -= 1
        ended.append(Ended(key: key, watch: w, outcome: outcome, reason: reason))
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
            end(key, .declined, reason)
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
            end(key, .cancelled, nil)
            stats[w.lenderID, default: Stats()].cancelled += 1
            return .cancelled
        case nil:
            let why = "the lender's descriptor has no cancel operation"
            end(key, .flagged, why)
            stats[w.lenderID, default: Stats()].flagged += 1
            return .flag(why)
        case .failed(let reason)?:
            watches[key]?.cancelTries += 1
            if w.cancelTries + 1 >= policy.cancelAttempts {
                let why = "cancel failed \(policy.cancelAttempts) times: \(reason)"
                end(key, .flagged, why)
                stats[w.lenderID, default: Stats()].flagged += 1
                return .flag(why)
            }
            reschedule(key, now: now)
            return .recheck
        }
    }
}

/// Where the reconciler journals its watch list, so that a restart or a failover does not
/// forget a reference the waterfall gave up on. Each watch is a stream
/// `reconcile/<applicationID>.<lenderID>` in the application's shard: `WatchStarted` (seq 1),
/// then `WatchEnded` (seq 2, closes the stream). `EventJournal.openStreams` lists the watches a
/// new owner of the shard brings back (`Reconciler.recover(shards:)`).
public struct ReconcilerJournal: Sendable {
    public var journal: EventJournal
    /// The shard of an application, as the caller places it (the watch lives in the same shard).
    public var shard: @Sendable (_ applicationID: String) -> Int
    /// The writer epoch this node holds for a shard (`nil`: not ours).
    public var epoch: @Sendable (Int) -> Int64?
    /// Wall time (UTC), for the events' `at` and a recovered watch's remaining time.
    public var now: @Sendable () -> Date

    public init(
        journal: EventJournal, shard: @escaping @Sendable (String) -> Int,
        epoch: @escaping @Sendable (Int) -> Int64?, now: @escaping @Sendable () -> Date
    ) {
        self.journal = journal
        self.shard = shard
        self.epoch = epoch
        self.now = now
    }

    public static let streamPrefix = "reconcile/"

    public static func streamName(applicationID: String, lenderID: String) -> String {
        "\(streamPrefix)\(applicationID).\(lenderID)"
    }
}

/// The events of a watch stream.
public enum WatchEvent: Sendable, Equatable {
    case started(Started)
    case ended(Ended)

    public struct Started: Sendable, Equatable, Codable {
        public var lenderID: String
        public var applicationID: String
        public var idempotencyKey: String
        public var lenderReference: String?
        public var applicationCreatedAt: Date
        /// The checkout as received (the lender's `status` and `cancel` templates read it).
        public var request: JSONValue
        public var startedAt: Date
    }

    public struct Ended: Sendable, Equatable, Codable {
        public var lenderID: String
        public var outcome: ReconciliationBook.Outcome
        public var reason: String?
        /// The loan id the lender reported with its late approval, if it did.
        public var lenderReference: String?
        public var at: Date
    }

    public var typeName: String {
        switch self {
        case .started: "ReconcileWatchStarted"
        case .ended: "ReconcileWatchEnded"
        }
    }

    public var closesStream: Bool {
        if case .ended = self { return true }
        return false
    }

    public func encodedData() -> String {
        let data: Data?
        switch self {
        case .started(let p): data = try? ApplicationEvent.encoder.encode(p)
        case .ended(let p): data = try? ApplicationEvent.encoder.encode(p)
        }
        // Plain structs of strings, dates and JSON values: encoding cannot fail.
        return String(decoding: data ?? Data("{}".utf8), as: UTF8.self)
    }

    public static func decode(type: String, data: String) throws(ReconcilerError) -> WatchEvent {
        do {
            switch type {
            case "ReconcileWatchStarted":
                return .started(try ApplicationEvent.decoder.decode(Started.self, from: Data(data.utf8)))
            case "ReconcileWatchEnded":
                return .ended(try ApplicationEvent.decoder.decode(Ended.self, from: Data(data.utf8)))
            default:
                throw ReconcilerError.corrupt("unknown watch event type \(type)")
            }
        } catch let e as ReconcilerError {
            throw e
        } catch {
            throw .corrupt("cannot decode \(type): \(error)")
        }
    }
}

public enum ReconcilerError: Error, Sendable, Equatable {
    case journalUnavailable(String)
    case corrupt(String)
}

/// Keeps asking lenders about references the waterfall gave up on after `status` said
/// `not_found` twice (the lender may still book it late). If such a lender later reports an
/// approval, the reconciler calls the descriptor's `cancel`; without one (or when it keeps
/// failing) it raises the loan to operators: `flux_orphan_approvals_total{lender,result}`, an
/// error log line, and the counts in `GET /v1/lenders` stats.
///
/// With a `ReconcilerJournal`, every watch is journalled (durable before `watch` returns) and
/// `recover(shards:)` brings back the watches of shards this node takes; without one the watch
/// list lives in memory only.
public actor Reconciler {
    private var book: ReconciliationBook
    private let gateway: any LenderGateway
    private let clock: LenderClock
    private let logger: Logger
    private let persistence: ReconcilerJournal?
    /// Watches whose `WatchStarted` is in the journal: only these get a `WatchEnded`.
    private var journalled: Set<String> = []
    private var loop: Task<Void, Never>?

    public init(
        gateway: any LenderGateway, policy: ReconcilerPolicy = ReconcilerPolicy(), clock: LenderClock = .system,
        journal: ReconcilerJournal? = nil, logger: Logger = Logger(label: "flux.reconciler")
    ) {
        self.book = ReconciliationBook(policy: policy)
        self.gateway = gateway
        self.clock = clock
        self.persistence = journal
        self.logger = logger
    }

    /// Watch this attempt's reference in the background. Call it when the saga moves on after
    /// `not_found` twice; `context` is the attempt's (its idempotency key names the watch).
    /// With a journal, returns once the watch is durable (or the journal failed: logged, and the
    /// watch is kept in memory).
    public func watch(lenderID: String, context: LenderCallContext) async {
        let key = context.idempotencyKey
        guard book.watches[key] == nil else { return }
        let shard = persistence?.shard(context.applicationID) ?? 0
        guard book.watch(lenderID: lenderID, context: context, shard: shard, now: clock.nowNanos()) else {
            logger.error(
                "reconciler is full; reference not watched",
                metadata: ["lender": "\(lenderID)", "application": "\(context.applicationID)"])
            return
        }
        guard let p = persistence else { return }
        let stream = ReconcilerJournal.streamName(applicationID: context.applicationID, lenderID: lenderID)
        do {
            // A stream from an earlier life: an open one is this watch already; a closed one
            // means the reference was settled and needs no more checks.
            let earlier = try await p.journal.read(stream: stream)
            if earlier.contains(where: \.closesStream) {
                book.forget(key: key)
                return
            }
            if !earlier.isEmpty {
                journalled.insert(key)
                return
            }
            let started = WatchEvent.started(
                .init(
                    lenderID: lenderID, applicationID: context.applicationID, idempotencyKey: key,
                    lenderReference: context.lenderReference, applicationCreatedAt: context.createdAt,
                    request: context.request.raw, startedAt: p.now()))
            try await p.journal.append([event(started, stream: stream, seq: 1, shard: shard, p)])
            try await p.journal.awaitDurable(stream: stream, upTo: 1)
            journalled.insert(key)
        } catch {
            logger.error(
                "watch not journalled; a restart of this node forgets it",
                metadata: [
                    "lender": "\(lenderID)", "application": "\(context.applicationID)", "error": "\(error)",
                ])
        }
    }

    private func event(_ e: WatchEvent, stream: String, seq: Int64, shard: Int, _ p: ReconcilerJournal)
        -> JournalEvent
    {
        JournalEvent(
            shard: shard, stream: stream, seq: seq, type: e.typeName, data: e.encodedData(),
            writerEpoch: p.epoch(shard) ?? 0, at: p.now(), closesStream: e.closesStream)
    }

    /// Brings back the open watches of these shards from the journal (start-up, or this node
    /// took the shards over). Each keeps its original deadline; its first check is
    /// `firstCheckAfter` from now. Returns how many are watched now. A watch that cannot be
    /// read is logged and skipped.
    @discardableResult
    public func recover(shards: [Int]) async throws(ReconcilerError) -> Int {
        guard let p = persistence, !shards.isEmpty else { return 0 }
        let streams: [String]
        do {
            streams = try await p.journal.openStreams(shards: shards, prefix: ReconcilerJournal.streamPrefix)
        } catch {
            throw .journalUnavailable("\(error)")
        }
        var recovered = 0
        for stream in streams {
            let events: [JournalEvent]
            do { events = try await p.journal.read(stream: stream) } catch { throw .journalUnavailable("\(error)") }
            do {
                guard let first = events.first, !events.contains(where: \.closesStream) else { continue }
                guard case .started(let s) = try WatchEvent.decode(type: first.type, data: first.data) else {
                    throw ReconcilerError.corrupt("\(stream) does not start with ReconcileWatchStarted")
                }
                let request: CheckoutRequest
                do { request = try CheckoutRequest(json: s.request) } catch {
                    throw ReconcilerError.corrupt("\(stream): stored request no longer valid: \(error.message)")
                }
                let context = LenderCallContext(
                    applicationID: s.applicationID, request: request, createdAt: s.applicationCreatedAt,
                    idempotencyKey: s.idempotencyKey, lenderReference: s.lenderReference)
                let elapsed = max(0, p.now().timeIntervalSince(s.startedAt))
                let remaining = book.policy.watchFor - .milliseconds(Int64(min(elapsed, 1e12) * 1000))
                if book.watches[s.idempotencyKey] == nil {
                    guard
                        book.watch(
                            lenderID: s.lenderID, context: context, shard: first.shard, now: clock.nowNanos(),
                            remaining: max(.zero, remaining))
                    else {
                        logger.error("reconciler is full; recovered watch dropped", metadata: ["stream": "\(stream)"])
                        continue
                    }
                }
                journalled.insert(s.idempotencyKey)
                recovered += 1
            } catch {
                logger.error("cannot recover watch", metadata: ["stream": "\(stream)", "error": "\(error)"])
            }
        }
        if recovered > 0 {
            logger.info(
                "reconciler recovered watches", metadata: ["count": "\(recovered)", "shards": "\(shards.count)"])
        }
        return recovered
    }

    /// Stops watching the references of shards this node gave up (their new owner recovers
    /// them from the journal). Nothing is journalled.
    public func release(shards: [Int]) {
        for key in book.forget(shards: Set(shards)) { journalled.remove(key) }
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
            await journalEnded()
        }
        await journalEnded()  // expired ones
    }

    /// Closes the journal stream of every watch that ended.
    private func journalEnded() async {
        let ended = book.takeEnded()
        guard let p = persistence else { return }
        for e in ended where journalled.remove(e.key) != nil {
            let stream = ReconcilerJournal.streamName(
                applicationID: e.watch.context.applicationID, lenderID: e.watch.lenderID)
            let body = WatchEvent.ended(
                .init(
                    lenderID: e.watch.lenderID, outcome: e.outcome, reason: e.reason,
                    lenderReference: e.watch.context.lenderReference, at: p.now()))
            do {
                try await p.journal.append([event(body, stream: stream, seq: 2, shard: e.watch.shard, p)])
            } catch {
                // Not closed: the next owner of the shard checks the reference again (a second
                // `cancel` is idempotent at the lender).
                logger.warning(
                    "end of watch not journalled", metadata: ["stream": "\(stream)", "error": "\(error)"])
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
