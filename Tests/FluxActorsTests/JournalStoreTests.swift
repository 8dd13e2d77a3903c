import Foundation
import Testing

@testable import FluxActors

/// The journal suite every `JournalStore` must pass (SQLite now, PostgreSQL when configured).
@Suite("JournalStore", .timeLimit(.minutes(1)))
struct JournalStoreTests {
    @Test(arguments: journalStoreKinds())
    func appendThenReadReturnsEventsInOrder(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let store = fixture.store
            let events = [
                journalEvent("app-1", 1, type: "Received", data: #"{"amount_paise":2500000}"#),
                journalEvent("app-1", 2, type: "Ranked"),
                journalEvent("app-1", 3, type: "Approved", closes: true),
            ]
            let result = try await store.append(events)
            #expect(result.refused.isEmpty)
            #expect(try await store.read(stream: "app-1", afterSeq: 0) == events)
            #expect(try await store.read(stream: "app-1", afterSeq: 1) == Array(events[1...]))
            #expect(try await store.read(stream: "app-1", afterSeq: 3) == [])
            #expect(try await store.read(stream: "nobody", afterSeq: 0) == [])
        }
    }

    @Test(arguments: journalStoreKinds())
    func interleavedBatchesKeepPerStreamOrder(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let store = fixture.store
            let first = [journalEvent("a", 1), journalEvent("b", 1), journalEvent("a", 2), journalEvent("b", 2)]
            #expect(try await store.append(first).refused.isEmpty)
            let second = [journalEvent("b", 3), journalEvent("a", 3)]
            #expect(try await store.append(second).refused.isEmpty)
            #expect(try await store.read(stream: "a", afterSeq: 0).map(\.seq) == [1, 2, 3])
            #expect(try await store.read(stream: "b", afterSeq: 0).map(\.seq) == [1, 2, 3])
        }
    }

    @Test(arguments: journalStoreKinds())
    func duplicatesAndGapsAreRefused(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let store = fixture.store
            _ = try await store.append(journalEvents("s", 1...2))
            let duplicate = try await store.append([journalEvent("s", 2, data: #"{"other":true}"#)])
            #expect(duplicate.refused == ["s": .sequenceConflict(expected: 3, got: 2)])
            let gap = try await store.append([journalEvent("s", 4)])
            #expect(gap.refused == ["s": .sequenceConflict(expected: 3, got: 4)])
            // A gap inside the batch refuses the whole stream, including its good first event.
            let inner = try await store.append([journalEvent("s", 3), journalEvent("s", 5)])
            #expect(inner.refused == ["s": .sequenceConflict(expected: 4, got: 5)])
            let fresh = try await store.append([journalEvent("t", 2)])
            #expect(fresh.refused == ["t": .sequenceConflict(expected: 1, got: 2)])
            #expect(try await store.read(stream: "s", afterSeq: 0) == journalEvents("s", 1...2))
            #expect(try await store.read(stream: "t", afterSeq: 0) == [])
        }
    }

    @Test(arguments: journalStoreKinds())
    func refusalIsPerStreamInsideAMixedBatch(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let store = fixture.store
            _ = try await store.append(journalEvents("b", 1...1))
            let batch = [journalEvent("a", 1), journalEvent("b", 1), journalEvent("c", 1), journalEvent("a", 2)]
            let result = try await store.append(batch)
            #expect(result.refused == ["b": .sequenceConflict(expected: 2, got: 1)])
            #expect(try await store.read(stream: "a", afterSeq: 0).map(\.seq) == [1, 2])
            #expect(try await store.read(stream: "b", afterSeq: 0).count == 1)
            #expect(try await store.read(stream: "c", afterSeq: 0).map(\.seq) == [1])
        }
    }

    @Test(arguments: journalStoreKinds())
    func acquireShardBumpsEpochAndFencesOlderWriters(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let store = fixture.store
            // A shard nobody has acquired has epoch 0.
            #expect(try await store.append([journalEvent("x", 1, shard: 7, epoch: 0)]).refused.isEmpty)
            #expect(try await store.acquireShard(7, owner: "n1") == 1)
            #expect(try await store.acquireShard(7, owner: "n2") == 2)
            #expect(try await store.acquireShard(8, owner: "n1") == 1)
            #expect(
                try await store.shardOwnerships() == [
                    ShardOwnership(shard: 7, owner: "n2", epoch: 2), ShardOwnership(shard: 8, owner: "n1", epoch: 1),
                ])
            let stale = try await store.append([journalEvent("x", 2, shard: 7, epoch: 1)])
            #expect(stale.refused == ["x": .fenced(writerEpoch: 1, currentEpoch: 2)])
            // Fencing wins over a sequence conflict: the writer learns its shard moved.
            let staleAndDuplicate = try await store.append([journalEvent("x", 1, shard: 7, epoch: 0)])
            #expect(staleAndDuplicate.refused == ["x": .fenced(writerEpoch: 0, currentEpoch: 2)])
            #expect(try await store.append([journalEvent("x", 2, shard: 7, epoch: 2)]).refused.isEmpty)
            #expect(try await store.read(stream: "x", afterSeq: 0).map(\.writerEpoch) == [0, 2])
        }
    }

    @Test(arguments: journalStoreKinds())
    func openStreamsListsStreamsNotClosed(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let store = fixture.store
            _ = try await store.append([
                journalEvent("app-1", 1, shard: 1),
                journalEvent("app-2", 1, shard: 1), journalEvent("app-2", 2, shard: 1, closes: true),
                journalEvent("loan-1", 1, shard: 1),
                journalEvent("app-3", 1, shard: 2),
                journalEvent("app-4", 1, shard: 3),
            ])
            #expect(try await store.openStreams(shards: [1], prefix: "app-") == ["app-1"])
            #expect(try await store.openStreams(shards: [2, 1], prefix: "app-") == ["app-1", "app-3"])
            #expect(try await store.openStreams(shards: [1], prefix: "") == ["app-1", "loan-1"])
            #expect(try await store.openStreams(shards: [], prefix: "") == [])
            // A closed stream that goes on (e.g. an application cancelled then reopened) is open again.
            _ = try await store.append([journalEvent("app-2", 3, shard: 1)])
            #expect(try await store.openStreams(shards: [1], prefix: "app-") == ["app-1", "app-2"])
        }
    }

    /// Appends that leave a stream open do not rewrite its `streams` row (SQLite); the listing
    /// and the sequence check must still follow every append, and the one that closes it.
    @Test(arguments: journalStoreKinds())
    func aStreamStaysOpenAcrossAppendsUntilOneCloses(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let store = fixture.store
            for seq in Int64(1)...4 {
                #expect(try await store.append([journalEvent("app-7", seq, shard: 5)]).refused.isEmpty)
                #expect(try await store.openStreams(shards: [5], prefix: "") == ["app-7"])
            }
            let stale = try await store.append([journalEvent("app-7", 3, shard: 5)])
            #expect(stale.refused == ["app-7": .sequenceConflict(expected: 5, got: 3)])
            #expect(try await store.append([journalEvent("app-7", 5, shard: 5, closes: true)]).refused.isEmpty)
            #expect(try await store.openStreams(shards: [5], prefix: "") == [])
            #expect(try await store.read(stream: "app-7", afterSeq: 0).map(\.seq) == [1, 2, 3, 4, 5])
        }
    }

    @Test(arguments: journalStoreKinds())
    func latestSnapshotWins(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let store = fixture.store
            #expect(try await store.latestSnapshot(stream: "loan-1") == nil)
            for seq: Int64 in [5, 10, 7] {
                try await store.saveSnapshot(
                    JournalSnapshot(shard: 1, stream: "loan-1", seq: seq, data: #"{"s":\#(seq)}"#, at: journalTestTime))
            }
            try await store.saveSnapshot(
                JournalSnapshot(shard: 1, stream: "loan-2", seq: 1, data: "{}", at: journalTestTime))
            let latest = try await store.latestSnapshot(stream: "loan-1")
            #expect(
                latest == JournalSnapshot(shard: 1, stream: "loan-1", seq: 10, data: #"{"s":10}"#, at: journalTestTime))
        }
    }

    @Test(arguments: journalStoreKinds())
    func dataSurvivesCloseAndReopen(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let events = journalEvents("app-9", 1...4, shard: 3, epoch: 1)
            #expect(try await fixture.store.acquireShard(3, owner: "n1") == 1)
            _ = try await fixture.store.append(events)
            try await fixture.store.saveSnapshot(
                JournalSnapshot(shard: 3, stream: "app-9", seq: 2, data: "{}", at: journalTestTime))
            await fixture.store.close()
            await #expect(throws: JournalError.self) { try await fixture.store.read(stream: "app-9", afterSeq: 0) }

            let reopened = try await fixture.openAnother()
            #expect(try await reopened.read(stream: "app-9", afterSeq: 0) == events)
            #expect(try await reopened.openStreams(shards: [3], prefix: "") == ["app-9"])
            #expect(try await reopened.latestSnapshot(stream: "app-9")?.seq == 2)
            #expect(try await reopened.acquireShard(3, owner: "n2") == 2)
            // The sequence goes on where it was, not from 1.
            let next = try await reopened.append([journalEvent("app-9", 5, shard: 3, epoch: 2)])
            #expect(next.refused.isEmpty)
            await reopened.close()
        }
    }

    @Test(arguments: journalStoreKinds())
    func prepareIsIdempotentAndSafeConcurrently(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let others = try await withThrowingTaskGroup(of: (any JournalStore).self) { group in
                for _ in 0..<3 { group.addTask { try await fixture.openAnother() } }
                var stores: [any JournalStore] = []
                for try await store in group { stores.append(store) }
                return stores
            }
            try await fixture.store.prepare()
            _ = try await others[0].append(journalEvents("m", 1...1))
            #expect(try await fixture.store.read(stream: "m", afterSeq: 0).count == 1)
            for store in others { await store.close() }
        }
    }

    /// Two "processes" (two stores on one database) take the same shard and write at once:
    /// exactly one owner's events land, each stream is gap-free and has no duplicates.
    @Test(arguments: journalStoreKinds())
    func twoWritersFightingOverOneShard(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let first = fixture.store
            let second = try await fixture.openAnother()
            async let epochA = first.acquireShard(42, owner: "a")
            async let epochB = second.acquireShard(42, owner: "b")
            let (a, b) = try await (epochA, epochB)
            #expect(Set([a, b]) == [1, 2])
            let winner = a > b ? "a" : "b"
            #expect(try await first.shardOwnerships() == [ShardOwnership(shard: 42, owner: winner, epoch: 2)])

            let streams = (0..<40).map { "app-\($0)" }
            @Sendable func write(_ store: any JournalStore, epoch: Int64, tag: String) async throws -> Int {
                var refusedStreams = 0
                for chunk in stride(from: 0, to: streams.count, by: 5) {
                    var batch: [JournalEvent] = []
                    for stream in streams[chunk..<(chunk + 5)] {
                        for seq: Int64 in 1...3 {
                            batch.append(
                                journalEvent(stream, seq, shard: 42, epoch: epoch, data: #"{"by":"\#(tag)"}"#))
                        }
                    }
                    refusedStreams += try await store.append(batch).refused.count
                }
                return refusedStreams
            }
            async let refusedA = write(first, epoch: a, tag: "a")
            async let refusedB = write(second, epoch: b, tag: "b")
            let (ra, rb) = try await (refusedA, refusedB)
            #expect((winner == "a" ? ra : rb) == 0)
            #expect((winner == "a" ? rb : ra) == streams.count)
            for stream in streams {
                let events = try await first.read(stream: stream, afterSeq: 0)
                #expect(events.map(\.seq) == [1, 2, 3])
                #expect(events.allSatisfy { $0.data == #"{"by":"\#(winner)"}"# && $0.writerEpoch == 2 })
            }
            await second.close()
        }
    }

    /// Two writers that both believe they own a stream (same epoch) race on its sequence numbers:
    /// for every stream exactly one wins, the other is refused with a sequence conflict.
    @Test(arguments: journalStoreKinds())
    func racingWritersOnOneStreamNeverInterleave(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let first = fixture.store
            let second = try await fixture.openAnother()
            let streams = (0..<30).map { "race-\($0)" }
            @Sendable func write(_ store: any JournalStore, tag: String) async throws -> Int {
                var accepted = 0
                for stream in streams {
                    let batch = (Int64(1)...3).map { journalEvent(stream, $0, data: #"{"by":"\#(tag)"}"#) }
                    let result = try await store.append(batch)
                    if let refusal = result.refused[stream] {
                        guard case .sequenceConflict = refusal else {
                            Issue.record("unexpected refusal \(refusal)")
                            continue
                        }
                    } else {
                        accepted += 1
                    }
                }
                return accepted
            }
            async let acceptedA = write(first, tag: "a")
            async let acceptedB = write(second, tag: "b")
            let (aa, ab) = try await (acceptedA, acceptedB)
            #expect(aa + ab == streams.count)
            for stream in streams {
                let events = try await second.read(stream: stream, afterSeq: 0)
                #expect(events.map(\.seq) == [1, 2, 3])
                #expect(Set(events.map(\.data)).count == 1)
            }
            await second.close()
        }
    }
}

@Suite("makeJournalStore")
struct JournalMakeStoreTests {
    @Test func sqliteRelativePathCreatesFolders() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flux-mk-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try makeJournalStore("sqlite:a/b/journal.db", relativeTo: directory)
        try await store.prepare()
        await store.close()
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("a/b/journal.db").path))
    }

    @Test func sqliteAbsolutePathIsUsedAsIs() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flux-mk-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try makeJournalStore(
            "sqlite:\(directory.path)/j.db", relativeTo: URL(fileURLWithPath: "/nonexistent"))
        try await store.prepare()
        await store.close()
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("j.db").path))
    }

    @Test(arguments: [
        "postgres://flux@localhost/flux", "postgresql://localhost/flux", "host=localhost dbname=flux",
    ])
    func postgresSettingsOpenThePostgresStore(setting: String) async throws {
        // Does not connect: the database may be down when the node starts.
        let store = try makeJournalStore(setting, relativeTo: FileManager.default.temporaryDirectory)
        #expect(store is PostgresJournalStore)
        await store.close()
    }

    @Test(arguments: ["", "sqlite:", "mysql://x", "journal.db"])
    func badSettingsAreRejected(setting: String) {
        #expect(throws: JournalError.self) {
            try makeJournalStore(setting, relativeTo: FileManager.default.temporaryDirectory)
        }
    }

    @Test func aFileThatIsNotADatabaseIsReported() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flux-mk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(repeating: 0x41, count: 4096).write(to: directory.appendingPathComponent("j.db"))
        let store = try makeJournalStore("sqlite:j.db", relativeTo: directory)
        await #expect(throws: JournalError.self) { try await store.prepare() }
        await store.close()
    }
}
