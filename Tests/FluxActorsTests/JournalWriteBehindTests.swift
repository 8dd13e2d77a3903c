import Foundation
import Logging
import Testing

@testable import FluxActors

/// `EventJournal`, the write-behind buffer, over a real SQLite store (wrapped to inject failures).
@Suite("EventJournal", .timeLimit(.minutes(1)))
struct JournalWriteBehindTests {
    static let quietLogger = Logger(label: "flux.journal.test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A journal whose flush interval never elapses during a test: batches go out when full, on
    /// `flush()` or on shutdown.
    static func withJournal(
        batchSize: Int = 1024, capacity: Int = 100_000, flushInterval: Duration = .seconds(3600),
        _ body: (EventJournal, FlakyJournalStore, JournalStoreFixture) async throws -> Void
    ) async throws {
        try await withJournalStore(.sqlite) { fixture throws in
            let flaky = FlakyJournalStore(fixture.store)
            let journal = EventJournal(
                store: flaky, batchSize: batchSize, flushInterval: flushInterval, capacity: capacity,
                logger: quietLogger, retryDelay: .milliseconds(1), maxRetryDelay: .milliseconds(4))
            await journal.start()
            try await body(journal, flaky, fixture)
            await journal.shutdown()
        }
    }

    /// Waits (yielding, then 1 ms naps) until `condition` holds; fails the test after 5 s.
    static func eventually(_ what: String, _ condition: () async -> Bool) async {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(5))
        var tries = 0
        while !(await condition()) {
            if clock.now > deadline {
                Issue.record("timed out waiting for \(what)")
                return
            }
            tries += 1
            if tries < 100 { await Task.yield() } else { try? await Task.sleep(for: .milliseconds(1)) }
        }
    }

    @Test func groupCommitResumesAllWaitersOfOneBatchTogether() async throws {
        try await Self.withJournal { journal, flaky, _ in
            for stream in ["a", "b", "c"] { try await journal.append(journalEvents(stream, 1...2)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for stream in ["a", "b", "c"] {
                    group.addTask { try await journal.awaitDurable(stream: stream, upTo: 2) }
                }
                await Self.eventually("three waiters") { await journal.durabilityWaiters == 3 }
                #expect(flaky.batches.isEmpty)
                try await journal.flush()
                try await group.waitForAll()
            }
            #expect(flaky.batches.count == 1)
            #expect(flaky.batches.first?.count == 6)
            #expect(await journal.durabilityWaiters == 0)
        }
    }

    @Test func aFullBatchIsWrittenWithoutWaitingForTheInterval() async throws {
        try await Self.withJournal(batchSize: 4) { journal, flaky, _ in
            try await journal.append(journalEvents("a", 1...2))
            try await journal.append(journalEvents("b", 1...2))
            try await journal.awaitDurable(stream: "b", upTo: 2)
            try await journal.awaitDurable(stream: "a", upTo: 2)
            #expect(flaky.batches.map(\.count) == [4])
        }
    }

    @Test func theFlushIntervalWritesAPartialBatch() async throws {
        try await withJournalStore(.sqlite) { fixture throws in
            let journal = EventJournal(
                store: fixture.store, flushInterval: .milliseconds(1), logger: Self.quietLogger)
            try await journal.append(journalEvents("a", 1...3))
            try await journal.awaitDurable(stream: "a", upTo: 3)
            #expect(try await fixture.store.read(stream: "a", afterSeq: 0).count == 3)
            await journal.shutdown()
        }
    }

    @Test func awaitingWhatIsAlreadyDurableReturnsAtOnce() async throws {
        try await Self.withJournal { journal, flaky, _ in
            try await journal.append(journalEvents("a", 1...3))
            try await journal.flush()
            // The flusher would never run again on its own (interval of an hour): these must not wait.
            try await journal.awaitDurable(stream: "a", upTo: 2)
            try await journal.awaitDurable(stream: "a", upTo: 3)
            try await journal.awaitDurable(stream: "never-appended", upTo: 1)
            try await journal.append([journalEvent("a", 4)])
            try await journal.awaitDurable(stream: "a", upTo: 3)
            #expect(flaky.batches.count == 1)
            #expect(await journal.bufferedEvents == 1)
        }
    }

    /// A seq the journal knows is durable conflicts: refused at once, nothing of the append is
    /// buffered, and the stream's writer goes on (the store never sees the conflict).
    @Test func anAppendOfASeqKnownDurableIsRefusedAtOnceAndTheStreamGoesOn() async throws {
        try await Self.withJournal { journal, flaky, fixture in
            try await journal.append(journalEvents("a", 1...2))
            try await journal.flush()
            // Its writer goes on (a 3 is buffered, so the journal keeps what it knows of "a").
            try await journal.append([journalEvent("a", 3)])
            let expected = JournalError.refused(stream: "a", .sequenceConflict(expected: 4, got: 1))
            await #expect(throws: expected) { try await journal.append([journalEvent("a", 1)]) }
            await #expect(throws: expected) { try await journal.append([journalEvent("b", 1), journalEvent("a", 1)]) }
            #expect(await journal.bufferedEvents == 1)
            try await journal.flush()
            #expect(try await fixture.store.read(stream: "a", afterSeq: 0).map(\.seq) == [1, 2, 3])
            #expect(try await fixture.store.read(stream: "b", afterSeq: 0).isEmpty)
            #expect(flaky.batches.count == 2)
        }
    }

    @Test func aRefusedStreamFailsItsWaitersAndLaterAppendsOthersAreWritten() async throws {
        try await Self.withJournal { journal, flaky, fixture in
            // Another writer already took s:1.
            _ = try await fixture.store.append([journalEvent("s", 1, data: #"{"by":"other"}"#)])
            try await journal.append([journalEvent("s", 1)])
            try await journal.append([journalEvent("ok", 1)])
            try await journal.append([journalEvent("s", 2)])
            let expected = JournalError.refused(stream: "s", .sequenceConflict(expected: 2, got: 1))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    await #expect(throws: expected) { try await journal.awaitDurable(stream: "s", upTo: 2) }
                }
                await Self.eventually("the waiter") { await journal.durabilityWaiters == 1 }
                try await journal.flush()
                try await group.waitForAll()
            }
            try await journal.awaitDurable(stream: "ok", upTo: 1)
            await #expect(throws: expected) { try await journal.awaitDurable(stream: "s", upTo: 1) }
            await #expect(throws: expected) { try await journal.append([journalEvent("s", 3)]) }
            #expect(try await fixture.store.read(stream: "s", afterSeq: 0).map(\.data) == [#"{"by":"other"}"#])
            #expect(try await journal.read(stream: "s").count == 1)
            #expect(await journal.bufferedEvents == 0)
            #expect(flaky.batches.count == 1)

            // The owner reloads the stream (one event) and goes on from there.
            try await journal.clearRefusal(stream: "s")
            try await journal.append([journalEvent("s", 2, data: #"{"by":"me"}"#)])
            try await journal.flush()
            #expect(try await fixture.store.read(stream: "s", afterSeq: 0).map(\.seq) == [1, 2])
        }
    }

    @Test func aFencedWriterIsRefusedAndAcquiringTheShardClearsIt() async throws {
        try await Self.withJournal { journal, _, fixture in
            #expect(try await journal.acquireShard(5, owner: "me") == 1)
            #expect(try await fixture.store.acquireShard(5, owner: "someone-else") == 2)
            try await journal.append([journalEvent("x", 1, shard: 5, epoch: 1)])
            try await journal.flush()
            await #expect(throws: JournalError.refused(stream: "x", .fenced(writerEpoch: 1, currentEpoch: 2))) {
                try await journal.awaitDurable(stream: "x", upTo: 1)
            }
            #expect(try await journal.acquireShard(5, owner: "me") == 3)
            try await journal.append([journalEvent("x", 1, shard: 5, epoch: 3)])
            try await journal.flush()
            try await journal.awaitDurable(stream: "x", upTo: 1)
            #expect(try await fixture.store.read(stream: "x", afterSeq: 0).map(\.writerEpoch) == [3])
        }
    }

    @Test func aFullBufferPushesBack() async throws {
        try await Self.withJournal(capacity: 5) { journal, flaky, fixture in
            flaky.setFailing(true)
            try await journal.append(journalEvents("a", 1...3))
            await #expect(throws: JournalError.overloaded) { try await journal.append(journalEvents("b", 1...3)) }
            try await journal.append(journalEvents("b", 1...2))
            #expect(await journal.isAvailable == false)
            await #expect(throws: JournalError.overloaded) { try await journal.append([journalEvent("c", 1)]) }
            flaky.setFailing(false)
            try await journal.flush()
            #expect(await journal.isAvailable)
            try await journal.append([journalEvent("c", 1)])
            try await journal.flush()
            #expect(try await fixture.store.read(stream: "b", afterSeq: 0).count == 2)
        }
    }

    @Test func aFailingStoreLosesNothingAndTheJournalRecoversByItself() async throws {
        try await Self.withJournal { journal, flaky, fixture in
            flaky.setFailing(true)
            for n in 0..<10 { try await journal.append(journalEvents("app-\(n)", 1...3)) }
            let flushed = Task { try await journal.flush() }
            await Self.eventually("failed writes") { flaky.attempts >= 3 }
            #expect(await journal.isAvailable == false)
            try await journal.append(journalEvents("late", 1...1))
            flaky.setFailing(false)
            try await flushed.value
            try await journal.flush()
            try await journal.awaitDurable(stream: "late", upTo: 1)
            #expect(await journal.isAvailable)
            for n in 0..<10 {
                #expect(try await fixture.store.read(stream: "app-\(n)", afterSeq: 0).map(\.seq) == [1, 2, 3])
            }
            #expect(try await fixture.store.read(stream: "late", afterSeq: 0).count == 1)
        }
    }

    /// A batch that was written but whose answer was lost is retried: the retry finds its
    /// streams stored exactly as sent and takes them as written — no refusal, no stopped writer —
    /// while a stream whose stored events differ is still refused.
    @Test func aRetryAfterALostAnswerIsNotARefusal() async throws {
        try await Self.withJournal { journal, flaky, fixture in
            _ = try await fixture.store.append([journalEvent("taken", 1, data: #"{"by":"other"}"#)])
            flaky.loseNextAnswers(1)
            try await journal.append(journalEvents("a", 1...3) + journalEvents("b", 1...2))
            try await journal.append([journalEvent("taken", 1)])
            try await journal.flush()
            #expect(flaky.attempts == 2)
            try await journal.awaitDurable(stream: "a", upTo: 3)
            try await journal.awaitDurable(stream: "b", upTo: 2)
            await #expect(throws: JournalError.refused(stream: "taken", .sequenceConflict(expected: 2, got: 1))) {
                try await journal.awaitDurable(stream: "taken", upTo: 1)
            }
            try await journal.append(journalEvents("a", 4...4))
            try await journal.flush()
            #expect(try await fixture.store.read(stream: "a", afterSeq: 0) == journalEvents("a", 1...4))
            #expect(try await fixture.store.read(stream: "b", afterSeq: 0) == journalEvents("b", 1...2))
        }
    }

    @Test func readReturnsDurableThenBufferedEvents() async throws {
        try await Self.withJournal { journal, _, fixture in
            try await journal.append(journalEvents("a", 1...2))
            try await journal.flush()
            try await journal.append(journalEvents("a", 3...4))
            #expect(try await fixture.store.read(stream: "a", afterSeq: 0).count == 2)
            #expect(try await journal.read(stream: "a").map(\.seq) == [1, 2, 3, 4])
            #expect(try await journal.read(stream: "b") == [])
        }
    }

    @Test func shutdownFlushesAndThenRefusesAppends() async throws {
        try await withJournalStore(.sqlite) { fixture throws in
            let journal = EventJournal(store: fixture.store, flushInterval: .seconds(3600), logger: Self.quietLogger)
            try await journal.append(journalEvents("a", 1...5))
            await journal.shutdown()
            #expect(try await fixture.store.read(stream: "a", afterSeq: 0).count == 5)
            await #expect(throws: JournalError.self) { try await journal.append([journalEvent("a", 6)]) }
            try await journal.awaitDurable(stream: "a", upTo: 5)
            #expect(await journal.isAvailable == false)
        }
    }

    @Test func shutdownWhileTheStoreFailsTellsTheWaiters() async throws {
        try await withJournalStore(.sqlite) { fixture throws in
            let flaky = FlakyJournalStore(fixture.store)
            let journal = EventJournal(
                store: flaky, flushInterval: .zero, logger: Self.quietLogger, retryDelay: .milliseconds(1),
                maxRetryDelay: .milliseconds(2))
            flaky.setFailing(true)
            try await journal.append(journalEvents("a", 1...2))
            let waiter = Task { try await journal.awaitDurable(stream: "a", upTo: 2) }
            await Self.eventually("the waiter") { await journal.durabilityWaiters == 1 }
            await journal.shutdown()
            await #expect(throws: JournalError.self) { try await waiter.value }
            await #expect(throws: JournalError.self) { try await journal.awaitDurable(stream: "a", upTo: 2) }
        }
    }

    @Test func cancellingAWaiterEndsItsWait() async throws {
        try await Self.withJournal { journal, _, _ in
            try await journal.append(journalEvents("a", 1...1))
            let waiter = Task { try await journal.awaitDurable(stream: "a", upTo: 1) }
            await Self.eventually("the waiter") { await journal.durabilityWaiters == 1 }
            waiter.cancel()
            await #expect(throws: JournalError.self) { try await waiter.value }
            #expect(await journal.durabilityWaiters == 0)
        }
    }

    @Test func manyStreamsAndBatchesKeepEveryEvent() async throws {
        try await Self.withJournal(batchSize: 64, flushInterval: .milliseconds(1)) { journal, flaky, fixture in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 0..<50 {
                    group.addTask {
                        for seq in Int64(1)...6 {
                            try await journal.append([journalEvent("app-\(n)", seq)])
                            if seq % 3 == 0 { try await journal.awaitDurable(stream: "app-\(n)", upTo: seq) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            for n in 0..<50 {
                #expect(try await fixture.store.read(stream: "app-\(n)", afterSeq: 0).map(\.seq) == Array(1...6))
            }
            #expect(flaky.batches.allSatisfy { $0.count <= 64 })
        }
    }
}
