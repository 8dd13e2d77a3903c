import Foundation
import Testing

@testable import FluxActors

@Suite("SQLite journal: schema migrations")
struct JournalSQLiteMigrationTests {
    /// A journal written with the version-1 schema (events keyed by stream name) migrates through
    /// version 2 (events keyed by stream number) to version 3 (streams keyed by number) with its
    /// data: events read back the same, open
    /// streams stay listed, sequences go on where they were, a closed stream reopens, stale and
    /// duplicate sequences are refused, and new streams are numbered after the old ones.
    @Test func aVersionOneJournalMigrates() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flux-mig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("journal.db").path
        // Version 1 as the previous build wrote it.
        do {
            let v1 = try SQLiteConnection(path: path, busyTimeout: .seconds(1))
            try v1.exec("PRAGMA journal_mode = WAL")
            try v1.exec("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            try v1.exec(SQLiteJournalStore.migrations[0])
            try v1.exec("INSERT INTO schema_version (version) VALUES (1)")
            try v1.exec(
                """
                INSERT INTO events (shard, stream, seq, type, data, writer_epoch, at, closes) VALUES
                    (1, 'open-1', 1, 'A', '{"n":1}', 0, 1750000001000000, 0),
                    (1, 'open-1', 2, 'B', '{"n":2}', 0, 1750000002000000, 0),
                    (1, 'closed-1', 1, 'A', '{"n":1}', 0, 1750000001000000, 0),
                    (1, 'closed-1', 2, 'C', '{"n":2}', 0, 1750000002000000, 1),
                    (2, 'other-shard', 1, 'A', '{"n":1}', 3, 1750000001000000, 0);
                INSERT INTO streams (stream, shard, last_seq, open) VALUES
                    ('open-1', 1, 2, 1), ('closed-1', 1, 2, 0), ('other-shard', 2, 1, 1);
                INSERT INTO shards (shard, owner, epoch) VALUES (2, 'n1', 3);
                """)
            v1.close()
        }

        let store = try SQLiteJournalStore(path: path)
        try await store.prepare()
        let read = try await store.read(stream: "open-1", afterSeq: 0)
        #expect(read.map(\.seq) == [1, 2])
        #expect(read.map(\.type) == ["A", "B"])
        #expect(read.map(\.data) == [#"{"n":1}"#, #"{"n":2}"#])
        #expect(read.first?.at == Date(timeIntervalSince1970: 1_750_000_001))
        #expect(try await store.read(stream: "closed-1", afterSeq: 1).map(\.closesStream) == [true])
        #expect(try await store.openStreams(shards: [1, 2], prefix: "") == ["open-1", "other-shard"])

        let next = [
            journalEvent("open-1", 3, closes: true), journalEvent("closed-1", 3), journalEvent("fresh", 1),
            journalEvent("other-shard", 2, shard: 2, epoch: 3),
        ]
        #expect(try await store.append(next).refused.isEmpty)
        #expect(try await store.openStreams(shards: [1], prefix: "") == ["closed-1", "fresh"])
        #expect(
            try await store.append([journalEvent("open-1", 3), journalEvent("fresh", 1)]).refused == [
                "open-1": .sequenceConflict(expected: 4, got: 3), "fresh": .sequenceConflict(expected: 2, got: 1),
            ])
        #expect(
            try await store.append([journalEvent("other-shard", 3, shard: 2, epoch: 2)]).refused == [
                "other-shard": .fenced(writerEpoch: 2, currentEpoch: 3)
            ])
        #expect(try await store.read(stream: "open-1", afterSeq: 0).map(\.seq) == [1, 2, 3])
        #expect(try await store.read(stream: "fresh", afterSeq: 0).map(\.seq) == [1])
        await store.close()

        // The new stream took the number after the migrated ones; a reopened file is version 2.
        let check = try SQLiteConnection(path: path, busyTimeout: .seconds(1))
        defer { check.close() }
        let ids = try check.statement("SELECT stream, id FROM streams ORDER BY id")
        var order: [String] = []
        while try ids.step() { order.append(ids.text(0)) }
        #expect(order.last == "fresh")
        #expect(order.count == 4)
        let version = try check.statement("SELECT MAX(version) FROM schema_version")
        _ = try version.step()
        #expect(version.int64(0) == Int64(SQLiteJournalStore.schemaVersion))
        #expect(SQLiteJournalStore.schemaVersion == 3)
        _ = try version.step()

        // Version 3: rows under their number (the rowid), open streams indexed in number order.
        let columns = try check.statement("SELECT name, pk FROM pragma_table_info('streams') WHERE pk > 0")
        var keys: [String] = []
        while try columns.step() { keys.append(columns.text(0)) }
        #expect(keys == ["id"])
        let indexed = try check.statement("SELECT name FROM pragma_index_info('streams_open')")
        var openColumns: [String] = []
        while try indexed.step() { openColumns.append(indexed.text(0)) }
        #expect(openColumns == ["open"])
        let unique = try check.statement(
            "SELECT COUNT(*) FROM pragma_index_list('streams') WHERE \"unique\" = 1 AND origin = 'u'")
        _ = try unique.step()
        #expect(unique.int64(0) == 1)
        _ = try unique.step()
    }
}
