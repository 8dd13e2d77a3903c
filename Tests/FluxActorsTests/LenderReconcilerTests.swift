import Foundation
import Logging
import Testing

@testable import FluxActors

/// The background check of references the waterfall gave up on (`not_found` twice).
@Suite struct LenderReconcilerTests {
    static let s: UInt64 = 1_000_000_000

    func policy() -> ReconcilerPolicy {
        var p = ReconcilerPolicy()
        p.firstCheckAfter = .seconds(5)
        p.multiplier = 2
        p.maxInterval = .seconds(30)
        p.watchFor = .seconds(300)
        p.cancelAttempts = 2
        return p
    }

    func context(_ app: String = "app-1", lender: String = "hero") -> LenderCallContext {
        var c = LenderFixtures.context()
        c.applicationID = app
        c.idempotencyKey = "\(app).\(lender)"
        return c
    }

    @Test func checksWithCappedBackoffUntilTheDeadline() {
        var book = ReconciliationBook(policy: policy())
        let first = book.watch(lenderID: "hero", context: context(), now: 0)
        let second = book.watch(lenderID: "hero", context: context(), now: 0)  // the same reference once
        #expect(first && second)
        #expect(book.stats["hero"]?.watching == 1)
        let early = book.due(now: 4 * Self.s)
        #expect(early.isEmpty)
        var times: [UInt64] = []
        var now = 5 * Self.s
        while let w = book.due(now: now).first {
            times.append(now / Self.s)
            let d = book.recordStatus(key: w.context.idempotencyKey, .notFound, now: now)
            #expect(d == .recheck)
            now = book.nextDue ?? .max
            if now == .max { break }
        }
        // 5, then +10, +20, +30 (capped) … until 300 s have passed.
        #expect(Array(times.prefix(5)) == [5, 15, 35, 65, 95])
        #expect(times.last! < 300)
        #expect(book.watches.isEmpty)
        #expect(book.stats["hero"]?.expired == 1)
        #expect(book.stats["hero"]?.watching == 0)
    }

    @Test func aLateApprovalIsCancelled() {
        var book = ReconciliationBook(policy: policy())
        _ = book.watch(lenderID: "hero", context: context(), now: 0)
        let w = book.due(now: 5 * Self.s)[0]
        let d = book.recordStatus(
            key: w.context.idempotencyKey, .approved(reference: "L-9", annualRateBps: 1600), now: 5 * Self.s)
        guard case .cancel(let c) = d else {
            Issue.record("\(d)")
            return
        }
        #expect(c.lenderReference == "L-9")
        let done = book.recordCancel(key: w.context.idempotencyKey, .cancelled, now: 5 * Self.s)
        #expect(done == .cancelled)
        #expect(
            book.stats["hero"] == ReconciliationBook.Stats(watching: 0, checks: 1, orphanApprovals: 1, cancelled: 1))
    }

    @Test func withoutCancelOrWhenItKeepsFailingItIsFlagged() {
        var book = ReconciliationBook(policy: policy())
        _ = book.watch(lenderID: "hero", context: context("a"), now: 0)
        _ = book.watch(lenderID: "abfl", context: context("b", lender: "abfl"), now: 0)
        for w in book.due(now: 5 * Self.s) {
            _ = book.recordStatus(
                key: w.context.idempotencyKey, .approved(reference: "R", annualRateBps: 1), now: 5 * Self.s)
        }
        guard case .flag = book.recordCancel(key: "a.hero", nil, now: 5 * Self.s) else {
            Issue.record("no cancel operation must be flagged")
            return
        }
        // cancelAttempts 2: the first failure asks again, the second flags.
        let retry = book.recordCancel(key: "b.abfl", .failed(reason: "HTTP 500"), now: 5 * Self.s)
        #expect(retry == .recheck)
        let again = book.due(now: 15 * Self.s)
        #expect(again.map(\.lenderID) == ["abfl"])
        _ = book.recordStatus(key: "b.abfl", .approved(reference: "R", annualRateBps: 1), now: 15 * Self.s)
        guard case .flag(let why) = book.recordCancel(key: "b.abfl", .failed(reason: "HTTP 500"), now: 15 * Self.s)
        else {
            Issue.record("a cancel that keeps failing must be flagged")
            return
        }
        #expect(why.contains("HTTP 500"))
        #expect(book.stats["hero"]?.flagged == 1)
        #expect(book.stats["abfl"]?.flagged == 1)
        #expect(book.stats["abfl"]?.orphanApprovals == 1)
        #expect(book.watches.isEmpty)
    }

    @Test func aRejectionSettlesIt() {
        var book = ReconciliationBook(policy: policy())
        _ = book.watch(lenderID: "hero", context: context(), now: 0)
        let w = book.due(now: 5 * Self.s)[0]
        guard case .settled = book.recordStatus(key: w.context.idempotencyKey, .rejected(reason: "no"), now: 5 * Self.s)
        else {
            Issue.record("rejected must settle")
            return
        }
        #expect(book.watches.isEmpty)
    }

    @Test func bounded() {
        var p = policy()
        p.maxWatched = 1
        var book = ReconciliationBook(policy: p)
        let a = book.watch(lenderID: "hero", context: context("a"), now: 0)
        let b = book.watch(lenderID: "hero", context: context("b"), now: 0)
        #expect(a && !b)
    }

    /// A gateway whose `status` answers from a script and whose `cancel` is counted.
    final class Gateway: LenderGateway {
        let statuses = LenderTestLock<[StatusOutcome]>([])
        let cancels = LenderTestLock<[String]>([])
        let hasCancel: Bool
        init(hasCancel: Bool) { self.hasCancel = hasCancel }

        func admit(lenderID: String, context: LenderCallContext) async -> Admission { .permitted }
        func apply(lenderID: String, context: LenderCallContext) async -> LenderCall<ApplyOutcome> {
            LenderCall(outcome: .failed(reason: "not in this test"), tries: 0, latencyMs: 0)
        }
        func status(lenderID: String, context: LenderCallContext) async -> LenderCall<StatusOutcome> {
            let next = statuses.withLock { $0.isEmpty ? StatusOutcome.notFound : $0.removeFirst() }
            return LenderCall(outcome: next, tries: 1, latencyMs: 1)
        }
        func disburse(lenderID: String, context: LenderCallContext) async -> LenderCall<DisburseOutcome> {
            LenderCall(outcome: .disbursed, tries: 0, latencyMs: 0)
        }
        func cancel(lenderID: String, context: LenderCallContext) async -> LenderCall<CancelOutcome>? {
            guard hasCancel else { return nil }
            cancels.withLock { $0.append(context.lenderReference ?? "?") }
            return LenderCall(outcome: .cancelled, tries: 1, latencyMs: 1)
        }
    }

    @Test func theActorChecksDueReferencesAndCancels() async {
        let clock = TestClock()
        let g = Gateway(hasCancel: true)
        g.statuses.withLock { $0 = [.notFound, .approved(reference: "L-7", annualRateBps: 1500)] }
        let r = Reconciler(gateway: g, policy: policy(), clock: clock.lenderClock)
        await r.watch(lenderID: "hero", context: context())
        await r.runDue()
        #expect(g.statuses.withLock { $0.count } == 2)  // not due yet
        clock.advance(ms: 5_000)
        await r.runDue()
        clock.advance(ms: 10_000)
        await r.runDue()
        #expect(g.cancels.withLock { $0 } == ["L-7"])
        let stats = await r.stats()["hero"]
        #expect(stats?.orphanApprovals == 1 && stats?.cancelled == 1 && stats?.checks == 2)
        #expect(await r.watchedCount == 0)
    }

    @Test func theActorFlagsWithoutCancel() async {
        let clock = TestClock()
        let g = Gateway(hasCancel: false)
        g.statuses.withLock { $0 = [.approved(reference: "L-8", annualRateBps: 1500)] }
        let r = Reconciler(gateway: g, policy: policy(), clock: clock.lenderClock)
        await r.watch(lenderID: "tata", context: context(lender: "tata"))
        clock.advance(ms: 5_000)
        await r.runDue()
        #expect(await r.stats()["tata"]?.flagged == 1)
    }
}

/// The watch list in the journal: it survives a restart (a new `Reconciler` on the same journal)
/// and is brought back per shard.
@Suite struct LenderReconcilerJournalTests {
    static let quiet = Logger(label: "flux.reconciler.test", factory: { _ in SwiftLogNoOpLogHandler() })

    func policy() -> ReconcilerPolicy {
        var p = ReconcilerPolicy()
        p.firstCheckAfter = .seconds(5)
        p.watchFor = .seconds(300)
        return p
    }

    func context(_ app: String, lender: String = "hero") -> LenderCallContext {
        var c = LenderFixtures.context()
        c.applicationID = app
        c.idempotencyKey = "\(app).\(lender)"
        return c
    }

    /// A journal on a fresh SQLite file, a wall clock the test moves, and the shard of every
    /// application: the number after "app-" modulo 4.
    struct Fixture {
        let journal: EventJournal
        let wall = LenderTestLock<Date>(Date(timeIntervalSince1970: 1_767_225_600))
        let epochs = LenderTestLock<[Int: Int64]>([0: 7, 1: 7, 2: 7, 3: 7])

        var persistence: ReconcilerJournal {
            let wall = self.wall
            let epochs = self.epochs
            return ReconcilerJournal(
                journal: journal, shard: { id in (Int(id.split(separator: "-").last ?? "") ?? 0) % 4 },
                epoch: { s in epochs.withLock { $0[s] } }, now: { wall.withLock { $0 } })
        }

        func reconciler(_ gateway: any LenderGateway, _ clock: TestClock, policy: ReconcilerPolicy) -> Reconciler {
            Reconciler(
                gateway: gateway, policy: policy, clock: clock.lenderClock, journal: persistence,
                logger: LenderReconcilerJournalTests.quiet)
        }
    }

    func withFixture(_ body: (Fixture) async throws -> Void) async throws {
        try await withJournalStore(.sqlite) { store in
            let journal = EventJournal(store: store.store, flushInterval: .milliseconds(1), logger: Self.quiet)
            await journal.start()
            try await body(Fixture(journal: journal))
            await journal.shutdown()
        }
    }

    @Test func aWatchIsJournalledInItsApplicationsShardAndRecoveredAfterARestart() async throws {
        try await withFixture { f in
            let clock = TestClock()
            let before = f.reconciler(LenderReconcilerTests.Gateway(hasCancel: true), clock, policy: policy())
            await before.watch(lenderID: "hero", context: context("app-6"))
            await before.watch(lenderID: "hero", context: context("app-6"))  // once
            let events = try await f.journal.read(stream: "reconcile/app-6.hero")
            #expect(events.count == 1)
            #expect(events.first?.type == "ReconcileWatchStarted")
            #expect(events.first?.shard == 2)
            #expect(events.first?.writerEpoch == 7)
            #expect(events.first?.closesStream == false)
            #expect(try await f.journal.openStreams(shards: [2], prefix: "reconcile/") == ["reconcile/app-6.hero"])

            // The node restarts: a new reconciler on the same journal. Other shards bring back nothing.
            let g = LenderReconcilerTests.Gateway(hasCancel: true)
            g.statuses.withLock { $0 = [.approved(reference: "L-6", annualRateBps: 1500)] }
            let after = f.reconciler(g, clock, policy: policy())
            #expect(try await after.recover(shards: [0, 1, 3]) == 0)
            #expect(await after.watchedCount == 0)
            #expect(try await after.recover(shards: [2]) == 1)
            #expect(try await after.recover(shards: [2]) == 1)  // again: still one watch
            #expect(await after.watchedCount == 1)
            #expect(await after.stats()["hero"]?.watching == 1)
            clock.advance(ms: 5_000)
            await after.runDue()
            // The recovered context carries the checkout, and the late approval was cancelled.
            #expect(g.cancels.withLock { $0 } == ["L-6"])
            #expect(await after.stats()["hero"]?.cancelled == 1)
            try await f.journal.flush()
            let closed = try await f.journal.read(stream: "reconcile/app-6.hero")
            #expect(closed.map(\.type) == ["ReconcileWatchStarted", "ReconcileWatchEnded"])
            #expect(closed.last?.closesStream == true)
            #expect(closed.last?.data.contains(#""outcome":"cancelled""#) == true)
            #expect(closed.last?.data.contains("L-6") == true)
            #expect(try await f.journal.openStreams(shards: [2], prefix: "reconcile/") == [])

            // A third life recovers nothing, and the same reference given up again is not watched.
            let third = f.reconciler(g, clock, policy: policy())
            #expect(try await third.recover(shards: [0, 1, 2, 3]) == 0)
            await third.watch(lenderID: "hero", context: context("app-6"))
            #expect(await third.watchedCount == 0)
        }
    }

    @Test func aRecoveredWatchKeepsItsDeadline() async throws {
        try await withFixture { f in
            let clock = TestClock()
            let g = LenderReconcilerTests.Gateway(hasCancel: true)
            let before = f.reconciler(g, clock, policy: policy())
            await before.watch(lenderID: "hero", context: context("app-1"))
            await before.watch(lenderID: "tata", context: context("app-5", lender: "tata"))
            // 298 of its 300 s pass while the node is down.
            f.wall.withLock { $0 = $0.addingTimeInterval(298) }
            let after = f.reconciler(g, clock, policy: policy())
            #expect(try await after.recover(shards: [1]) == 2)
            clock.advance(ms: 5_000)
            await after.runDue()
            #expect(await after.stats()["hero"]?.checks == 0)  // expired without asking the lender
            #expect(await after.watchedCount == 0)
            #expect(await after.stats()["hero"]?.expired == 1)
            try await f.journal.flush()
            let ended = try await f.journal.read(stream: "reconcile/app-5.tata")
            #expect(ended.last?.data.contains(#""outcome":"expired""#) == true)
            #expect(try await f.journal.openStreams(shards: [1], prefix: "reconcile/") == [])
        }
    }

    @Test func releasedShardsAreForgottenAndLeftOpenForTheirNewOwner() async throws {
        try await withFixture { f in
            let clock = TestClock()
            let g = LenderReconcilerTests.Gateway(hasCancel: false)
            let r = f.reconciler(g, clock, policy: policy())
            await r.watch(lenderID: "hero", context: context("app-2"))
            await r.watch(lenderID: "hero", context: context("app-3"))
            await r.release(shards: [2])
            #expect(await r.watchedCount == 1)
            #expect(await r.stats()["hero"]?.watching == 1)
            try await f.journal.flush()
            #expect(try await f.journal.openStreams(shards: [2, 3], prefix: "reconcile/").count == 2)
            // Flagged (no cancel operation): the stream closes with that outcome.
            g.statuses.withLock { $0 = [.approved(reference: "L-3", annualRateBps: 1)] }
            clock.advance(ms: 5_000)
            await r.runDue()
            #expect(await r.stats()["hero"]?.flagged == 1)
            try await f.journal.flush()
            #expect(try await f.journal.openStreams(shards: [2, 3], prefix: "reconcile/") == ["reconcile/app-2.hero"])
            let flagged = try await f.journal.read(stream: "reconcile/app-3.hero")
            #expect(flagged.last?.data.contains(#""outcome":"flagged""#) == true)
        }
    }

    @Test func watchEventsRoundTrip() throws {
        let started = WatchEvent.started(
            .init(
                lenderID: "hero", applicationID: "app-1", idempotencyKey: "app-1.hero", lenderReference: nil,
                applicationCreatedAt: Date(timeIntervalSince1970: 1_767_225_600), request: LenderFixtures.checkoutJSON,
                startedAt: Date(timeIntervalSince1970: 1_767_225_700)))
        #expect(try WatchEvent.decode(type: started.typeName, data: started.encodedData()) == started)
        let ended = WatchEvent.ended(
            .init(
                lenderID: "hero", outcome: .flagged, reason: "no cancel", lenderReference: "L-1",
                at: Date(timeIntervalSince1970: 1_767_225_800)))
        #expect(try WatchEvent.decode(type: ended.typeName, data: ended.encodedData()) == ended)
        #expect(ended.closesStream && !started.closesStream)
        #expect(throws: ReconcilerError.self) { try WatchEvent.decode(type: "Nope", data: "{}") }
        #expect(throws: ReconcilerError.self) { try WatchEvent.decode(type: "ReconcileWatchEnded", data: "{") }
    }
}
