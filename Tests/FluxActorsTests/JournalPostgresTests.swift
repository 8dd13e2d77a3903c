import Foundation
import Logging
import Testing

@testable import FluxActors

/// PostgreSQL-only behaviour: connection loss, many writers racing, settings passed to libpq.
/// The shared `JournalStore` suite runs on PostgreSQL too (`journalStoreKinds()`).
@Suite("PostgresJournalStore", .timeLimit(.minutes(1)), .enabled(if: testPostgresConninfo != nil))
struct JournalPostgresTests {
    let conninfo = testPostgresConninfo ?? ""

    /// A store in a fresh schema whose connections carry their own application name, so a test
    /// can kill exactly them.
    func withStore(
        readers: Int = 2, copyThreshold: Int = PostgresJournalStore.defaultCopyThreshold,
        _ body: (PostgresJournalStore, _ applicationName: String) async throws -> Void
    ) async throws {
        let tag = UUID().uuidString.prefix(8).lowercased()
        let schema = "flux_test_\(tag)"
        let applicationName = "flux_test_\(tag)"
        let store = try PostgresJournalStore(
            conninfo: conninfo + " application_name=\(applicationName)", schema: schema, readers: readers,
            copyThreshold: copyThreshold)
        do {
            try await store.prepare()
            try await body(store, applicationName)
        } catch {
            await store.close()
            try? await dropPostgresSchema(conninfo: conninfo, schema: schema)
            throw error
        }
        await store.close()
        try await dropPostgresSchema(conninfo: conninfo, schema: schema)
    }

    func terminateBackends(_ applicationName: String) async throws {
        try await postgresExec(
            conninfo: conninfo,
            """
            SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
            WHERE application_name = '\(applicationName)' AND pid <> pg_backend_pid()
            """)
    }

    @Test func reconnectsAfterItsBackendsAreTerminated() async throws {
        try await withStore { store, applicationName in
            #expect(try await store.append(journalEvents("s", 1...2)).refused.isEmpty)
            #expect(try await store.read(stream: "s", afterSeq: 0).count == 2)
            try await terminateBackends(applicationName)

            // The call that finds its connection gone fails as `.unavailable` (nothing else), and
            // the next one connects again; nothing was half-written.
            var attempts = 0
            while true {
                attempts += 1
                do {
                    #expect(try await store.append(journalEvents("s", 3...3)).refused.isEmpty)
                    break
                } catch let error as JournalError {
                    guard case .unavailable = error else { throw error }
                    #expect(attempts < 2, "still unavailable after reconnecting: \(error)")
                    if attempts >= 2 { return }
                }
            }
            // The first call did find the connection gone (the backends really were killed).
            #expect(attempts == 2)
            var events: [JournalEvent] = []
            for _ in 0..<2 {
                // The reader that lost its connection may fail once too.
                if let read = try? await store.read(stream: "s", afterSeq: 0) {
                    events = read
                    break
                }
            }
            #expect(events == journalEvents("s", 1...3))
        }
    }

    /// Through the write-behind journal: the backends die between appends, the journal retries
    /// by itself and every awaited event ends up durable, in order, once.
    @Test func theWriteBehindJournalRidesOutAConnectionLoss() async throws {
        try await withStore { store, applicationName in
            let journal = EventJournal(
                store: store, batchSize: 64, flushInterval: .milliseconds(1),
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
            await journal.start()
            for stream in 0..<20 { try await journal.append(journalEvents("w-\(stream)", 1...2)) }
            try await journal.flush()
            try await terminateBackends(applicationName)
            for stream in 0..<20 { try await journal.append(journalEvents("w-\(stream)", 3...5)) }
            for stream in 0..<20 { try await journal.awaitDurable(stream: "w-\(stream)", upTo: 5) }
            await journal.shutdown()
            for stream in 0..<20 {
                #expect(try await store.read(stream: "w-\(stream)", afterSeq: 0) == journalEvents("w-\(stream)", 1...5))
            }
        }
    }

    /// Four writers (four connections) race to create the same new streams while the shard
    /// changes hands twice: every stream ends gap-free, duplicate-free, and written by one writer.
    /// Through the exact path (`Int.max`) and through the COPY path (1).
    @Test(arguments: [Int.max, 1])
    func manyWritersRacingOnNewStreamsAndAMovingShard(copyThreshold: Int) async throws {
        try await withStore(copyThreshold: copyThreshold) { store, _ in
            let writers = try await withThrowingTaskGroup(of: PostgresJournalStore.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        // Same schema: `withStore` made it; another store on it is another "node".
                        try PostgresJournalStore(
                            conninfo: conninfo, schema: store.schema, readers: 1, copyThreshold: copyThreshold)
                    }
                }
                var stores = [store]
                for try await other in group { stores.append(other) }
                return stores
            }
            let epoch = try await store.acquireShard(5, owner: "n0")
            let streams = (0..<50).map { "new-\($0)" }
            let outcomes = try await withThrowingTaskGroup(of: (Int, Int, Int).self) { group in
                for (index, writer) in writers.enumerated() {
                    group.addTask {
                        var accepted = 0
                        var conflicts = 0
                        var fenced = 0
                        for chunk in stride(from: 0, to: streams.count, by: 10) {
                            var batch: [JournalEvent] = []
                            for stream in streams[chunk..<(chunk + 10)] {
                                for seq: Int64 in 1...2 {
                                    batch.append(
                                        journalEvent(stream, seq, shard: 5, epoch: epoch, data: #"{"w":\#(index)}"#))
                                }
                            }
                            let result = try await writer.append(batch)
                            accepted += 10 - result.refused.count
                            for refusal in result.refused.values {
                                if case .fenced = refusal { fenced += 1 } else { conflicts += 1 }
                            }
                        }
                        return (accepted, conflicts, fenced)
                    }
                }
                group.addTask {
                    _ = try await writers[1].acquireShard(5, owner: "n1")
                    _ = try await writers[2].acquireShard(5, owner: "n2")
                    return (0, 0, 0)
                }
                var all: [(Int, Int, Int)] = []
                for try await outcome in group { all.append(outcome) }
                return all
            }
            // Every stream was written by at most one writer, fully; the others were refused.
            let accepted = outcomes.map(\.0).reduce(0, +)
            #expect(accepted <= streams.count)
            for stream in streams {
                let events = try await store.read(stream: stream, afterSeq: 0)
                #expect(events.isEmpty || events.map(\.seq) == [1, 2])
                #expect(Set(events.map(\.data)).count <= 1)
                #expect(events.allSatisfy { $0.writerEpoch == epoch })
            }
            let written = try await withThrowingTaskGroup(of: Bool.self) { group in
                for stream in streams { group.addTask { try await !store.read(stream: stream, afterSeq: 0).isEmpty } }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(written == accepted)
            #expect(try await store.shardOwnerships() == [ShardOwnership(shard: 5, owner: "n2", epoch: epoch + 2)])
            for other in writers.dropFirst() { await other.close() }
        }
    }

    /// A journal written by the version-1 schema (its `streams` table, its append function)
    /// migrates to version 2 with its data: open streams stay listed, sequences go on from where
    /// they were (through the COPY path), a closed stream reopens, duplicates are refused, and
    /// a node of the previous build can still list open streams through the `streams` view.
    @Test func aVersionOneJournalMigrates() async throws {
        let tag = UUID().uuidString.prefix(8).lowercased()
        let schema = "flux_test_\(tag)"
        let old = try PostgresJournalStore(conninfo: conninfo, schema: schema, readers: 1, copyThreshold: .max)
        let new = try PostgresJournalStore(conninfo: conninfo, schema: schema, readers: 1, copyThreshold: 1)
        do {
            try await old.execute(
                """
                CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
                \(PostgresJournalSchema.migrations[0]);
                INSERT INTO schema_version (version) VALUES (1);
                """)
            let written =
                journalEvents("open-1", 1...2) + [
                    journalEvent("closed-1", 1), journalEvent("closed-1", 2, closes: true),
                ]
                + [journalEvent("reopen", 1, closes: true)]
            #expect(try await old.append(written).refused.isEmpty)

            try await new.prepare()
            #expect(try await new.openStreams(shards: [1], prefix: "") == ["open-1"])
            let next = [
                journalEvent("open-1", 3, closes: true), journalEvent("closed-1", 3), journalEvent("reopen", 2),
                journalEvent("fresh", 1),
            ]
            #expect(try await new.append(next).refused.isEmpty)
            #expect(try await new.openStreams(shards: [1], prefix: "") == ["closed-1", "fresh", "reopen"])
            #expect(
                try await new.append([journalEvent("open-1", 3)]).refused == [
                    "open-1": .sequenceConflict(expected: 4, got: 3)
                ])
            #expect(try await new.read(stream: "open-1", afterSeq: 0).map(\.seq) == [1, 2, 3])
            #expect(try await new.read(stream: "closed-1", afterSeq: 0).map(\.closesStream) == [false, true, false])
            // What the previous build's openStreams runs.
            try await new.execute("SELECT stream FROM streams WHERE shard = ANY ('{1}'::integer[]) AND open")
        } catch {
            await old.close()
            await new.close()
            try? await dropPostgresSchema(conninfo: conninfo, schema: schema)
            throw error
        }
        await old.close()
        await new.close()
        try await dropPostgresSchema(conninfo: conninfo, schema: schema)
    }

    /// The COPY path (every batch takes it here): bad rows fail the whole batch and leave the
    /// connection usable; stream names that need quoting reach the checks intact; a batch that
    /// is fenced in part writes its other streams.
    @Test func theCopyPathRefusesAndQuotesLikeTheExactPath() async throws {
        let tag = UUID().uuidString.prefix(8).lowercased()
        let schema = "flux_test_\(tag)"
        let store = try PostgresJournalStore(conninfo: conninfo, schema: schema, readers: 1, copyThreshold: 1)
        do {
            try await store.prepare()
            await #expect(throws: JournalError.self) {
                try await store.append([journalEvent("ok", 1), journalEvent("bad", 1, data: "not json")])
            }
            await #expect(throws: JournalError.self) {
                try await store.append([journalEvent("ok", 1), journalEvent("nul", 1, data: "{\"a\":\"\u{0}\"}")])
            }
            #expect(try await store.read(stream: "ok", afterSeq: 0) == [])
            #expect(try await store.append([journalEvent("ok", 1)]).refused.isEmpty)

            let odd = #"a"b\c'd,{} e"#
            #expect(try await store.append(journalEvents(odd, 1...2) + journalEvents("plain", 1...1)).refused.isEmpty)
            #expect(try await store.append(journalEvents(odd, 3...4)).refused.isEmpty)
            #expect(try await store.openStreams(shards: [1], prefix: "") == [odd, "ok", "plain"].sorted())
            #expect(try await store.append([journalEvent(odd, 5, closes: true)]).refused.isEmpty)
            #expect(try await store.openStreams(shards: [1], prefix: "") == ["ok", "plain"])
            #expect(try await store.read(stream: odd, afterSeq: 0).map(\.seq) == [1, 2, 3, 4, 5])

            #expect(try await store.acquireShard(7, owner: "n1") == 1)
            let mixed = [
                journalEvent("on-7", 1, shard: 7, epoch: 0), journalEvent("on-8", 1, shard: 8, epoch: 0),
                journalEvent("plain", 2), journalEvent("on-7", 2, shard: 7, epoch: 0),
            ]
            #expect(try await store.append(mixed).refused == ["on-7": .fenced(writerEpoch: 0, currentEpoch: 1)])
            #expect(try await store.read(stream: "on-7", afterSeq: 0) == [])
            #expect(try await store.read(stream: "on-8", afterSeq: 0).count == 1)
            #expect(try await store.read(stream: "plain", afterSeq: 0).count == 2)
        } catch {
            await store.close()
            try? await dropPostgresSchema(conninfo: conninfo, schema: schema)
            throw error
        }
        await store.close()
        try await dropPostgresSchema(conninfo: conninfo, schema: schema)
    }

    @Test func aNewerSchemaThanTheBuildRefusesToOpen() async throws {
        try await withStore { store, _ in
            try await store.execute("INSERT INTO schema_version (version) VALUES (999)")
            await #expect(throws: JournalError.self) { try await store.prepare() }
        }
    }

    @Test func prepareTwiceChangesNothing() async throws {
        try await withStore { store, _ in
            _ = try await store.append(journalEvents("p", 1...1))
            try await store.prepare()
            #expect(try await store.read(stream: "p", afterSeq: 0).count == 1)
        }
    }

    @Test func dataRoundTripsByteForByte() async throws {
        try await withStore { store, _ in
            let data = #"{"b":1,"a":"x\"y\\z","é":"ü","n":[1.50,2e3]}"#
            _ = try await store.append([journalEvent("j", 1, type: #"Ty"pe\"#, data: data)])
            let read = try await store.read(stream: "j", afterSeq: 0)
            #expect(read.first?.data == data)
            #expect(read.first?.type == #"Ty"pe\"#)
        }
    }

    @Test func aDatabaseThatIsDownIsUnavailableNotAHang() async throws {
        let store = try PostgresJournalStore(conninfo: "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2")
        await #expect(throws: JournalError.self) { try await store.append(journalEvents("d", 1...1)) }
        do {
            _ = try await store.read(stream: "d", afterSeq: 0)
        } catch {
            guard case .unavailable = error else {
                Issue.record("expected unavailable, got \(error)")
                return
            }
        }
        await store.close()
    }

    /// `sslmode` reaches libpq unchanged: this test server has no TLS, so `require` fails with
    /// libpq's TLS message, while `disable` connects.
    @Test func sslmodeReachesLibpq() async throws {
        let strict = try PostgresJournalStore(conninfo: conninfo + " sslmode=require", readers: 1)
        do {
            _ = try await strict.shardOwnerships()
            Issue.record("sslmode=require connected to a server without TLS")
        } catch {
            guard case .unavailable(let message) = error else { throw error }
            #expect(message.contains("SSL"))
        }
        await strict.close()
        let plain = try PostgresJournalStore(conninfo: conninfo + " sslmode=disable", readers: 1)
        try await plain.execute("SELECT 1")
        await plain.close()
    }
}

/// Connection settings: parsed by libpq, TLS settings passed through, bad ones refused early.
@Suite("PostgresConninfo")
struct JournalPostgresConninfoTests {
    @Test func keywordValueSettingsKeepSslmode() throws {
        let settings = try PostgresConninfo.parse(
            "host=db.internal port=5433 dbname=flux user=flux sslmode=verify-full sslrootcert=/etc/ca.pem")
        #expect(settings["sslmode"] == "verify-full")
        #expect(settings["sslrootcert"] == "/etc/ca.pem")
        #expect(settings["port"] == "5433")
    }

    @Test func uriSettingsKeepSslmode() throws {
        let settings = try PostgresConninfo.parse("postgres://flux:secret@db.internal:5433/flux?sslmode=require")
        #expect(settings["sslmode"] == "require")
        #expect(settings["host"] == "db.internal")
        #expect(settings["dbname"] == "flux")
        #expect(settings["password"] == "secret")
    }

    @Test func redactedHidesThePassword() {
        let text = PostgresConninfo.redacted("postgres://flux:secret@db/flux?sslmode=require")
        #expect(!text.contains("secret"))
        #expect(text.contains("sslmode=require"))
    }

    @Test(arguments: ["host=x nonsense_option=1", "postgres://[bad", "host='unterminated"])
    func badSettingsAreAConfigurationError(setting: String) {
        #expect {
            try makeJournalStore(setting, relativeTo: FileManager.default.temporaryDirectory)
        } throws: { error in
            guard let error = error as? JournalError, case .invalidConfiguration = error else { return false }
            return true
        }
    }

    @Test func binaryCopyRowsHaveTheWireLayout() throws {
        var copy = PostgresBinaryCopy()
        let at = Date(timeIntervalSince1970: 946_684_800.000_002)  // 2000-01-01 + 2 µs
        try copy.append(
            JournalEvent(
                shard: 3, stream: "s", seq: 258, type: "T", data: "{}", writerEpoch: -1, at: at, closesStream: true))
        #expect(
            copy.rows == [
                0, 8,
                0, 0, 0, 4, 0, 0, 0, 3,
                0, 0, 0, 1, UInt8(ascii: "s"),
                0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2,
                0, 0, 0, 1, UInt8(ascii: "T"),
                0, 0, 0, 2, UInt8(ascii: "{"), UInt8(ascii: "}"),
                0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 255,
                0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2,
                0, 0, 0, 1, 1,
            ])
        let before = copy.rows
        #expect(throws: JournalError.self) {
            try copy.append(
                JournalEvent(shard: 3, stream: "s", seq: 1, type: "T", data: "\u{0}", writerEpoch: 0, at: at))
        }
        #expect(copy.rows == before)
        let data = PostgresBinaryCopy.data(rows: [copy.rows[...]], byteCount: copy.rows.count)
        #expect(Array(data.prefix(19)) == Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(data.suffix(2)) == [0xFF, 0xFF])
    }

    @Test func binaryArraysHaveTheWireLayout() throws {
        var ints = PostgresBinaryArray(.int8)
        ints.append(Int64(-2))
        ints.append(Int64(1) << 40)
        #expect(
            ints.bytes == [
                0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 2, 0, 0, 0, 1,
                0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 254,
                0, 0, 0, 8, 0, 0, 1, 0, 0, 0, 0, 0,
            ])
        var texts = PostgresBinaryArray(.text)
        try texts.append(#"a"b\c"#)
        try texts.append("")
        #expect(texts.count == 2)
        #expect(Array(texts.bytes[20...]) == [0, 0, 0, 5] + Array(#"a"b\c"#.utf8) + [0, 0, 0, 0])
        #expect(throws: JournalError.self) { try texts.append("a\0b") }
        #expect(texts.count == 2)
    }
}
