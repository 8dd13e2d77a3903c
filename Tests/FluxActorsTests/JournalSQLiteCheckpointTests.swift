import Foundation
import Testing

@testable import FluxActors

@Suite("SQLite journal: checkpoints off the commit path")
struct JournalSQLiteCheckpointTests {
    @Test("committed events reach the database file by the checkpointer, not by the writer")
    func checkpointerCopiesTheWAL() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flux-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("journal.db").path
        let store = try SQLiteJournalStore(path: path)
        try await store.prepare()
        func size(_ file: String) -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int) ?? 0
        }
        let before = size(path)
        // ~2,000 events of 1 KiB: far below the writer's own checkpoint threshold (65,536 pages).
        let payload = #"{"pad":""# + String(repeating: "x", count: 1000) + #""}"#
        for batch in 0..<20 {
            let events = (1...100).map { n in
                journalEvent("s/\(batch)", Int64(n), data: payload)
            }
            let result = try await store.append(events)
            #expect(result.refused.isEmpty)
        }
        // (The checkpointer may already have run during the appends; the WAL size is not asserted.)
        // The checkpointer runs every 250 ms; give it a few ticks.
        let deadline = ContinuousClock.now + .seconds(5)
        while size(path) < before + 1_000_000, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(size(path) >= before + 1_000_000, "the database file holds the events after a checkpoint")
        #expect(try await store.read(stream: "s/19", afterSeq: 0).count == 100)
        await store.close()
    }
}
