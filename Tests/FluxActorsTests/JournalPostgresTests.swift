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
        readers: Int = 2, lanes: Int = PostgresJournalStore.defaultLanes,
        copyThreshold: Int = PostgresJournalStore.defaultCopyThreshold, splitThreshold: Int = 1,
        _ body: (PostgresJournalStore, _ applicationName: String) async throws -> Void
    ) async throws {
        let tag = UUID().uuidString.prefix(8).lowercased()
        let schema = "flux_test_\(tag)"
        let applicationName = "flux_test_\(tag)"
        let store = try PostgresJournalStore(
            conninfo: conninfo + " application_name=\(applicationName)", schema: schema, readers: readers,
            lanes: lanes, copyThreshold: copyThreshold, splitThreshold: splitThreshold)
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

    // MARK: - Writer lanes

    /// One query's single value, on a fresh connection (test plumbing).
    func queryInt(_ sql: String) throws -> Int64 {
        let connection = try PostgresConnection(conninfo: conninfo)
        defer { connection.close() }
        return try connection.exec(sql).int64(0, 0)
    }

    /// A batch over twelve shards, so over all three lanes, with its streams' events interleaved
    /// (exact path) or consecutive (COPY path when the lane's part is big enough): every stream
    /// is written whole, in order, and the next batch continues every one of them gap-free.
    @Test(arguments: [Int.max, 1])
    func aBatchAcrossLanesIsWrittenWholeAndInOrder(copyThreshold: Int) async throws {
        try await withStore(lanes: 3, copyThreshold: copyThreshold) { store, _ in
            let streams = (0..<12).map { (name: "lane-\($0)", shard: $0) }
            let interleaved = (Int64(1)...4).flatMap { seq in
                streams.map { journalEvent($0.name, seq, shard: $0.shard) }
            }
            #expect(try await store.append(interleaved).refused.isEmpty)
            let consecutive: [JournalEvent] = streams.flatMap { stream -> [JournalEvent] in
                (Int64(5)...8).map {
                    journalEvent(stream.name, $0, shard: stream.shard, closes: $0 == 8 && stream.shard < 6)
                }
            }
            #expect(try await store.append(consecutive).refused.isEmpty)
            for stream in streams {
                let events = try await store.read(stream: stream.name, afterSeq: 0)
                #expect(events.map(\.seq) == Array(1...8))
                #expect(events.allSatisfy { $0.shard == stream.shard })
            }
            #expect(
                try await store.openStreams(shards: Array(0..<12), prefix: "lane-")
                    == (6..<12).map { "lane-\($0)" }.sorted())
            // A duplicate in one lane is refused alone; the other lanes' streams go on.
            let mixed =
                [journalEvent("lane-0", 8, shard: 0)]
                + streams.dropFirst().map { journalEvent($0.name, 9, shard: $0.shard) }
            #expect(try await store.append(mixed).refused == ["lane-0": .sequenceConflict(expected: 9, got: 8)])
            #expect(try await store.read(stream: "lane-1", afterSeq: 8).map(\.seq) == [9])
        }
    }

    /// A stale epoch in one lane refuses only the streams of that shard: the other streams of
    /// the same lane and of the other lane are written.
    @Test(arguments: [Int.max, 1])
    func aStaleEpochInOneLaneRefusesOnlyThatShard(copyThreshold: Int) async throws {
        try await withStore(lanes: 2, copyThreshold: copyThreshold) { store, _ in
            #expect(try await store.acquireShard(3, owner: "n2") == 1)
            let batch = (0..<6).flatMap { shard in journalEvents("s-\(shard)", 1...3, shard: shard, epoch: 0) }
            let result = try await store.append(batch)
            #expect(result.refused == ["s-3": .fenced(writerEpoch: 0, currentEpoch: 1)])
            for shard in 0..<6 {
                let events = try await store.read(stream: "s-\(shard)", afterSeq: 0)
                #expect(events.map(\.seq) == (shard == 3 ? [] : [1, 2, 3]))
            }
        }
    }

    /// The lane of shard 1 loses its connection while the lane of shard 0 commits: `append`
    /// fails as `.unavailable`, as one writer would, and shard 0's part is durable. A plain
    /// retry of the store finds shard 0's stream stored (a duplicate); the write-behind journal's
    /// retry must take it as written, not refuse it.
    @Test(arguments: [Int.max, 1])
    func aLaneThatLosesItsConnectionFailsTheBatchAndTheRetryIsNotARefusal(copyThreshold: Int) async throws {
        try await withStore(lanes: 2, copyThreshold: copyThreshold) { store, applicationName in
            let blocker = try PostgresJournalStore(conninfo: conninfo, schema: store.schema, readers: 1, lanes: 1)
            defer { Task { await blocker.close() } }
            let lock = "\(PostgresJournalSchema.shardLockClass), 1"
            /// Holds shard 1's lock so that lane 1 waits for it, then kills lane 1's backend.
            func failLaneOne(while running: () async throws -> Void) async throws {
                try await blocker.execute("SELECT pg_advisory_lock(\(lock))")
                try await running()
                let waiting = """
                    SELECT count(*) FROM pg_stat_activity
                    WHERE application_name = '\(applicationName)' AND wait_event_type = 'Lock' AND wait_event = 'advisory'
                    """
                await JournalWriteBehindTests.eventually("lane 1 waiting for shard 1") {
                    (try? queryInt(waiting)) == 1
                }
                #expect(
                    try queryInt(
                        """
                        SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
                        WHERE application_name = '\(applicationName)' AND wait_event_type = 'Lock'
                        """) == 1)
                try await blocker.execute("SELECT pg_advisory_unlock(\(lock))")
            }

            let batch = journalEvents("even", 1...3, shard: 0) + journalEvents("odd", 1...3, shard: 1)
            // Started once shard 1's lock is held, so that lane 1 cannot commit first.
            var attempt: Task<AppendResult, any Error>?
            try await failLaneOne { attempt = Task { try await store.append(batch) } }
            do {
                _ = try await attempt!.value
                Issue.record("the batch succeeded although lane 1 lost its connection")
            } catch let error as JournalError {
                guard case .unavailable = error else { throw error }
            }
            #expect(try await store.read(stream: "even", afterSeq: 0) == journalEvents("even", 1...3, shard: 0))
            #expect(try await store.read(stream: "odd", afterSeq: 0) == [])
            // The store alone: the committed stream is a duplicate now, the other one is written.
            #expect(try await store.append(batch).refused == ["even": .sequenceConflict(expected: 4, got: 1)])
            #expect(try await store.read(stream: "odd", afterSeq: 0) == journalEvents("odd", 1...3, shard: 1))

            // Through the write-behind journal: the retry after the partial commit refuses nothing.
            let journal = EventJournal(
                store: store, batchSize: 1024, flushInterval: .milliseconds(1),
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                retryDelay: .milliseconds(5))
            await journal.start()
            let next = journalEvents("even", 4...6, shard: 0) + journalEvents("odd", 4...6, shard: 1)
            try await failLaneOne { try await journal.append(next) }
            try await journal.awaitDurable(stream: "even", upTo: 6)
            try await journal.awaitDurable(stream: "odd", upTo: 6)
            try await journal.append(journalEvents("even", 7...7, shard: 0) + journalEvents("odd", 7...7, shard: 1))
            try await journal.flush()
            await journal.shutdown()
            #expect(try await store.read(stream: "even", afterSeq: 0) == journalEvents("even", 1...7, shard: 0))
            #expect(try await store.read(stream: "odd", afterSeq: 0) == journalEvents("odd", 1...7, shard: 1))
        }
    }

    /// Two stores with different lane counts fight over two shards at once, with batches that
    /// span both: each shard ends up with exactly its winner's events, every stream gap-free.
    @Test(arguments: [Int.max, 1])
    func twoWritersWithLanesFightingOverTwoShards(copyThreshold: Int) async throws {
        try await withStore(lanes: 2, copyThreshold: copyThreshold) { first, _ in
            let second = try PostgresJournalStore(
                conninfo: conninfo, schema: first.schema, readers: 1, lanes: 3, copyThreshold: copyThreshold,
                splitThreshold: 1)
            defer { Task { await second.close() } }
            var winners: [Int: (tag: String, epoch: Int64)] = [:]
            var epochs: [String: [Int: Int64]] = ["a": [:], "b": [:]]
            for shard in [42, 43] {
                async let epochA = first.acquireShard(shard, owner: "a")
                async let epochB = second.acquireShard(shard, owner: "b")
                let (a, b) = try await (epochA, epochB)
                #expect(Set([a, b]) == [1, 2])
                epochs["a"]![shard] = a
                epochs["b"]![shard] = b
                winners[shard] = a > b ? ("a", a) : ("b", b)
            }
            let streams = (0..<40).map { (name: "app-\($0)", shard: 42 + $0 % 2) }
            let allEpochs = epochs
            @Sendable func write(_ store: PostgresJournalStore, tag: String) async throws -> [String: AppendRefusal] {
                var refused: [String: AppendRefusal] = [:]
                for chunk in stride(from: 0, to: streams.count, by: 8) {
                    var batch: [JournalEvent] = []
                    for stream in streams[chunk..<(chunk + 8)] {
                        for seq: Int64 in 1...3 {
                            batch.append(
                                journalEvent(
                                    stream.name, seq, shard: stream.shard, epoch: allEpochs[tag]![stream.shard]!,
                                    data: #"{"by":"\#(tag)"}"#))
                        }
                    }
                    refused.merge(try await store.append(batch).refused) { $1 }
                }
                return refused
            }
            async let refusedA = write(first, tag: "a")
            async let refusedB = write(second, tag: "b")
            let refused = try await ["a": refusedA, "b": refusedB]
            for stream in streams {
                let winner = winners[stream.shard]!
                let loser = winner.tag == "a" ? "b" : "a"
                #expect(refused[winner.tag]![stream.name] == nil)
                #expect(refused[loser]![stream.name] != nil)
                let events = try await first.read(stream: stream.name, afterSeq: 0)
                #expect(events.map(\.seq) == [1, 2, 3])
                #expect(events.allSatisfy { $0.data == #"{"by":"\#(winner.tag)"}"# && $0.writerEpoch == 2 })
            }
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

    /// Lanes by `shard % lanes`, batch order kept in each lane, a stream never split (its lane
    /// is its first event's), negative shards in range, empty lanes left out.
    @Test func lanePartitionKeepsStreamsWholeAndInOrder() {
        let events = [
            journalEvent("a", 1, shard: 0), journalEvent("b", 1, shard: 1), journalEvent("a", 2, shard: 0),
            journalEvent("c", 1, shard: -1), journalEvent("b", 2, shard: 4), journalEvent("d", 1, shard: 3),
        ]
        let parts = PostgresJournalStore.lanePartition(events, lanes: 2)
        #expect(parts.map(\.lane) == [0, 1])
        #expect(parts[0].events.map { "\($0.stream)\($0.seq)" } == ["a1", "a2"])
        #expect(parts[1].events.map { "\($0.stream)\($0.seq)" } == ["b1", "c1", "b2", "d1"])
        #expect(PostgresJournalStore.lanePartition(events, lanes: 1).map(\.events) == [events])
        let four = PostgresJournalStore.lanePartition(events, lanes: 4)
        #expect(four.map(\.lane) == [0, 1, 3])
        #expect(four.flatMap(\.events).count == events.count)
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
