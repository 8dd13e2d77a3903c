import Foundation
import Testing

@testable import FluxActors

/// A journal store under test on a fresh, empty database, plus a way to open a second handle on
/// the same database (another "process") and to clean up.
struct JournalStoreFixture: Sendable {
    let store: any JournalStore
    let openAnother: @Sendable () async throws -> any JournalStore
    let cleanup: @Sendable () async -> Void
}

/// One kind of journal store that the shared suite runs against.
struct JournalStoreKind: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable () async throws -> JournalStoreFixture
    var testDescription: String { name }

    static let sqlite = JournalStoreKind(name: "sqlite") {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("flux-journal-\(UUID().uuidString)")
        let open: @Sendable () async throws -> any JournalStore = {
            let store = try makeJournalStore("sqlite:db/journal.db", relativeTo: directory)
            try await store.prepare()
            return store
        }
        return JournalStoreFixture(
            store: try await open(), openAnother: open,
            cleanup: { try? FileManager.default.removeItem(at: directory) })
    }
}

/// Every store the shared journal suite runs against. PostgreSQL joins when `FLUX_TEST_POSTGRES`
/// holds a conninfo (once the PostgreSQL store exists).
func journalStoreKinds() -> [JournalStoreKind] {
    // PostgreSQL store: when FLUX_TEST_POSTGRES is set (JournalPostgresSupport.swift), a fresh
    // schema per fixture.
    // Twice: every batch through the exact path, and every batch through the COPY path.
    [.sqlite]
        + (testPostgresConninfo.map {
            [
                .postgres($0, copyThreshold: .max, name: "postgres-exact"),
                .postgres($0, copyThreshold: 1, name: "postgres-copy"),
            ]
        } ?? [])
}

/// Runs `body` with a fresh store of `kind`, closing and cleaning up afterwards.
func withJournalStore(
    _ kind: JournalStoreKind, _ body: (JournalStoreFixture) async throws -> Void
) async throws {
    let fixture = try await kind.make()
    do {
        try await body(fixture)
    } catch {
        await fixture.store.close()
        await fixture.cleanup()
        throw error
    }
    await fixture.store.close()
    await fixture.cleanup()
}

/// A fixed, microsecond-precise time: what the journal stores comes back equal.
let journalTestTime = Date(timeIntervalSince1970: 1_750_000_000.123456)

func journalEvent(
    _ stream: String, _ seq: Int64, shard: Int = 1, epoch: Int64 = 0, type: String = "Test",
    data: String? = nil, closes: Bool = false
) -> JournalEvent {
    JournalEvent(
        shard: shard, stream: stream, seq: seq, type: type, data: data ?? #"{"n":\#(seq)}"#, writerEpoch: epoch,
        at: journalTestTime.addingTimeInterval(Double(seq)), closesStream: closes)
}

func journalEvents(_ stream: String, _ seqs: ClosedRange<Int64>, shard: Int = 1, epoch: Int64 = 0) -> [JournalEvent] {
    seqs.map { journalEvent(stream, $0, shard: shard, epoch: epoch) }
}

/// Wraps a store; `failing` makes every call fail with `.unavailable` until it is cleared.
/// Records the batches that reached the inner store.
final class FlakyJournalStore: JournalStore, @unchecked Sendable {
    // @unchecked Sendable: all mutable state is guarded by `lock`.
    private let inner: any JournalStore
    private let lock = NSLock()
    private var _failuresLeft = 0
    private var _answersToLose = 0
    private var _failForever = false
    private var _batches: [[JournalEvent]] = []
    private var _attempts = 0

    init(_ inner: any JournalStore) { self.inner = inner }

    /// The next `count` appends fail.
    func failNext(_ count: Int) { lock.withLock { _failuresLeft = count } }
    func setFailing(_ failing: Bool) { lock.withLock { _failForever = failing } }
    /// The next `count` appends reach the inner store (and are written there), then fail with
    /// `.unavailable`, as when a commit's answer is lost.
    func loseNextAnswers(_ count: Int) { lock.withLock { _answersToLose = count } }
    var batches: [[JournalEvent]] { lock.withLock { _batches } }
    var attempts: Int { lock.withLock { _attempts } }

    private func shouldFail() -> Bool {
        lock.withLock {
            _attempts += 1
            if _failForever { return true }
            if _failuresLeft > 0 {
                _failuresLeft -= 1
                return true
            }
            return false
        }
    }

    func prepare() async throws(JournalError) { try await inner.prepare() }
    func append(_ events: [JournalEvent]) async throws(JournalError) -> AppendResult {
        if shouldFail() { throw .unavailable("injected failure") }
        let result = try await inner.append(events)
        let lose = lock.withLock {
            _batches.append(events)
            if _answersToLose > 0 {
                _answersToLose -= 1
                return true
            }
            return false
        }
        if lose { throw .unavailable("injected lost answer") }
        return result
    }
    func read(stream: String, afterSeq: Int64) async throws(JournalError) -> [JournalEvent] {
        try await inner.read(stream: stream, afterSeq: afterSeq)
    }
    func acquireShard(_ shard: Int, owner: String) async throws(JournalError) -> Int64 {
        try await inner.acquireShard(shard, owner: owner)
    }
    func shardOwnerships() async throws(JournalError) -> [ShardOwnership] { try await inner.shardOwnerships() }
    func openStreams(shards: [Int], prefix: String) async throws(JournalError) -> [String] {
        try await inner.openStreams(shards: shards, prefix: prefix)
    }
    func saveSnapshot(_ snapshot: JournalSnapshot) async throws(JournalError) { try await inner.saveSnapshot(snapshot) }
    func latestSnapshot(stream: String) async throws(JournalError) -> JournalSnapshot? {
        try await inner.latestSnapshot(stream: stream)
    }
    func close() async { await inner.close() }
}
