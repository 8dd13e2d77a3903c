import Foundation

/// The production journal: PostgreSQL through libpq. Docs/journal-postgres.md describes the
/// schema, the single-writer proof and the figures.
///
/// Connections: `lanes` writers (appends; the first also does shard hand-overs, snapshots and
/// migrations) and `readers` readers, each owned by its own thread (`PostgresWorker`); callers
/// are bridged with continuations. A lost connection fails the call in flight with
/// `.unavailable` and is opened again on the next call.
///
/// An `append` splits its batch by shard into the writer lanes (`shard % lanes`: every event of
/// a stream in one lane, in order) and writes the parts at once, each in one round trip and one
/// transaction (group commit) on its lane's connection. Per-stream atomicity — what
/// `JournalStore` promises — holds because a stream never spans two lanes. Parts of 64 events or
/// more go in with binary `COPY` followed by the checks of `flux_journal_check` in the same
/// transaction (`appendByCopy`); smaller ones, and any part that check refuses in part, go to
/// `flux_journal_append` as eight arrays, which checks every stream (fencing, then sequence) and
/// writes the accepted ones (`appendExact`).
public final class PostgresJournalStore: JournalStore, @unchecked Sendable {
    // @unchecked Sendable: every stored property is immutable; the workers are thread-safe and
    // `nextReader` is guarded by `lock`.
    /// The writer lanes; `lanes[0]` also runs hand-overs, snapshots and migrations.
    private let lanes: [PostgresWorker]
    private var writer: PostgresWorker { lanes[0] }
    private let readers: [PostgresWorker]
    private let lock = NSLock()
    private var nextReader = 0
    /// The conninfo without any password, for messages.
    public let description: String
    /// The schema the tables live in; nil: the connection's default `search_path`.
    public let schema: String?

    /// How many times `append` re-runs a batch that lost a race (two writers creating one new
    /// stream, a deadlock) before reporting `.unavailable`.
    static let raceRetries = 5
    /// See `defaultCopyThreshold`.
    let copyThreshold: Int
    /// See `defaultSplitThreshold`.
    let splitThreshold: Int

    /// How many writer lanes (connections that append in parallel) a store has unless told
    /// otherwise. Two: on the 2-core benchmark VM two lanes took the journal past one
    /// connection's raw COPY rate (Docs/journal-postgres.md, "Figures"); more lanes mean more
    /// server backends per node and smaller transactions per batch.
    public static let defaultLanes = 2

    /// `conninfo`: a `postgres://` URI or a libpq keyword/value string; TLS settings (`sslmode`,
    /// `sslrootcert`, …) pass to libpq unchanged. `schema`: tables live there (created if
    /// missing) instead of the connection's default `search_path`. `lanes`: writer connections
    /// that append in parallel (at least 1). Does not connect: the first call does. Throws
    /// `.invalidConfiguration` when libpq cannot parse `conninfo`.
    public convenience init(
        conninfo: String, schema: String? = nil, readers: Int = 2, lanes: Int = PostgresJournalStore.defaultLanes
    ) throws(JournalError) {
        try self.init(
            conninfo: conninfo, schema: schema, readers: readers, lanes: lanes,
            copyThreshold: Self.defaultCopyThreshold)
    }

    /// `copyThreshold`: the smallest part of a batch (one lane's share) that takes the COPY path
    /// (tests run the shared suite with 1, so every part does). `splitThreshold`: the smallest
    /// batch that is split over the lanes (tests use 1, so every batch is).
    init(
        conninfo: String, schema: String?, readers: Int, lanes: Int = PostgresJournalStore.defaultLanes,
        copyThreshold: Int, splitThreshold: Int = PostgresJournalStore.defaultSplitThreshold
    ) throws(JournalError) {
        self.copyThreshold = max(1, copyThreshold)
        self.splitThreshold = max(1, splitThreshold)
        _ = try PostgresConninfo.parse(conninfo)
        if let schema {
            guard !schema.isEmpty, schema.utf8.count <= 63,
                schema.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
            else {
                throw .invalidConfiguration(
                    "PostgreSQL journal schema must be 1-63 ASCII letters, digits or underscores")
            }
        }
        let setUp: @Sendable (PostgresConnection) throws(JournalError) -> Void = { connection throws(JournalError) in
            // A stuck server must not hold a batch for ever: the write-behind journal retries.
            var settings =
                "SET client_min_messages = warning; SET statement_timeout = '30s'; SET lock_timeout = '10s'; SET TIME ZONE 'UTC'; SET standard_conforming_strings = on;"
            if let schema {
                settings += " CREATE SCHEMA IF NOT EXISTS \"\(schema)\"; SET search_path TO \"\(schema)\";"
            }
            do throws(JournalError) {
                try connection.exec(settings)
            } catch {
                // Two nodes creating the schema at once: one fails on the catalog; retry once.
                try connection.exec(settings)
            }
        }
        description = PostgresConninfo.redacted(conninfo)
        self.schema = schema
        self.lanes = (0..<max(1, lanes)).map {
            PostgresWorker(name: "flux.journal.pg.writer\($0)", conninfo: conninfo, setUp: setUp)
        }
        self.readers = (0..<max(1, readers)).map {
            PostgresWorker(name: "flux.journal.pg.reader\($0)", conninfo: conninfo, setUp: setUp)
        }
    }

    deinit {
        lanes.forEach { $0.stopSoon() }
        readers.forEach { $0.stopSoon() }
    }

    private func reader() -> PostgresWorker {
        lock.withLock {
            nextReader = (nextReader + 1) % readers.count
            return readers[nextReader]
        }
    }

    // MARK: - Schema

    /// The newest schema this build knows.
    static let schemaVersion = PostgresJournalSchema.migrations.count

    public func prepare() async throws(JournalError) {
        try await writer.run { connection throws(JournalError) in
            try connection.exec("BEGIN")
            do throws(JournalError) {
                try connection.exec("SET LOCAL statement_timeout = 0")
                // Nodes that start together migrate one after the other: each waits here, then
                // sees the version the previous one left.
                try connection.exec("SELECT pg_advisory_xact_lock(\(PostgresJournalSchema.lockClass), 0)")
                try connection.exec(
                    """
                    CREATE TABLE IF NOT EXISTS schema_version (
                        version integer PRIMARY KEY,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """)
                let current = try Int(
                    connection.exec("SELECT COALESCE(MAX(version), 0) FROM schema_version").int64(0, 0))
                if current > Self.schemaVersion {
                    throw .invalidConfiguration(
                        "PostgreSQL journal schema version \(current) is newer than this build knows (\(Self.schemaVersion))"
                    )
                }
                for version in (current + 1)..<(Self.schemaVersion + 1) {
                    try connection.exec(PostgresJournalSchema.migrations[version - 1])
                    try connection.exec("INSERT INTO schema_version (version) VALUES (\(version))")
                }
                try connection.exec("COMMIT")
            } catch {
                if connection.isUsable { _ = try? connection.exec("ROLLBACK") }
                throw error
            }
        }
    }

    // MARK: - Append

    /// Batches of fewer events are not split over the lanes: each part would pay a commit of
    /// its own and fall below `defaultCopyThreshold` (measured: batch 64 split into two parts of
    /// 32 through the exact path fell to about half its unsplit rate).
    static let defaultSplitThreshold = 2 * defaultCopyThreshold

    /// Batches of at least this many events take the COPY path (`appendByCopy`); smaller ones
    /// the exact path (`appendExact`, one round trip). Both refuse exactly alike.
    static let defaultCopyThreshold = 64

    /// Splits the batch into the lanes (`lanePartition`) and writes the parts at once, each in
    /// its own transaction. Per-stream atomicity holds: a stream's events are all in one part.
    /// When a lane fails, `append` throws that lane's error (the first failing lane's, in lane
    /// order) — the same `JournalError` one writer would throw — after every lane has finished;
    /// the parts of the lanes that committed are durable, so a caller that retries the batch
    /// finds their streams stored already (`EventJournal` treats identical stored events as
    /// written: see "Writer lanes" in Docs/journal-postgres.md). A batch under `splitThreshold`
    /// goes whole to the first lane.
    public func append(_ events: [JournalEvent]) async throws(JournalError) -> AppendResult {
        if events.isEmpty { return AppendResult() }
        if events.count < splitThreshold || lanes.count == 1 {
            // Whole, on the first lane: one commit instead of several smaller ones, on the same
            // connection every time — exactly the single-writer path. Correct on any lane: a
            // transaction checks and locks its own shards.
            return try await append(events, lane: 0)
        }
        let parts = Self.lanePartition(events, lanes: lanes.count)
        if parts.count == 1 { return try await append(parts[0].events, lane: parts[0].lane) }
        let outcomes = await withTaskGroup(
            of: (Int, Result<AppendResult, JournalError>).self, returning: [Result<AppendResult, JournalError>?].self
        ) { group in
            for (index, part) in parts.enumerated() {
                group.addTask { (index, await self.outcome(part.events, lane: part.lane)) }
            }
            var outcomes = [Result<AppendResult, JournalError>?](repeating: nil, count: parts.count)
            for await (index, outcome) in group { outcomes[index] = outcome }
            return outcomes
        }
        var refused: [String: AppendRefusal] = [:]
        for outcome in outcomes {
            switch outcome {
            case .success(let result)?: refused.merge(result.refused) { first, _ in first }
            case .failure(let error)?: throw error
            case nil: preconditionFailure("a journal lane finished without an outcome")
            }
        }
        return AppendResult(refused: refused)
    }

    /// The batch's events per lane, in batch order within each lane, lanes ascending, empty lanes
    /// left out. A stream's lane is its first event's `shard % lanes`, so a stream is never split
    /// even if its events disagreed on their shard.
    static func lanePartition(_ events: [JournalEvent], lanes: Int) -> [(lane: Int, events: [JournalEvent])] {
        if lanes <= 1 { return [(0, events)] }
        var parts = [[JournalEvent]](repeating: [], count: lanes)
        for lane in 0..<lanes { parts[lane].reserveCapacity(events.count / lanes + 16) }
        var laneOf: [String: Int] = [:]
        var previous: (stream: String, lane: Int)?
        for event in events {
            let lane: Int
            if let previous, previous.stream == event.stream {
                lane = previous.lane
            } else if let known = laneOf[event.stream] {
                lane = known
            } else {
                lane = (event.shard % lanes + lanes) % lanes
                laneOf[event.stream] = lane
            }
            previous = (event.stream, lane)
            parts[lane].append(event)
        }
        var nonEmpty: [(lane: Int, events: [JournalEvent])] = []
        for (lane, part) in parts.enumerated() where !part.isEmpty { nonEmpty.append((lane, part)) }
        return nonEmpty
    }

    /// `append(_:lane:)` as a value, for the task group. (Not a typed `do`/`catch` inside the
    /// child task's closure: built that way in release with Swift 6.3.1, the tuples the children
    /// returned came back with wrong lane indexes — an index out of range or a lane missing — as
    /// if miscompiled; this form returns them intact.)
    private func outcome(_ events: [JournalEvent], lane: Int) async -> Result<AppendResult, JournalError> {
        do throws(JournalError) {
            return .success(try await append(events, lane: lane))
        } catch {
            return .failure(error)
        }
    }

    /// One lane's part of a batch: one round trip and one transaction on the lane's connection.
    private func append(_ events: [JournalEvent], lane: Int) async throws(JournalError) -> AppendResult {
        let copyThreshold = self.copyThreshold
        return try await lanes[lane].run { connection throws(JournalError) in
            if events.count >= copyThreshold, let plan = CopyPlan(events),
                let result = try Self.appendByCopy(events, plan, connection)
            {
                return result
            }
            return try Self.appendExact(events, connection)
        }
    }

    /// The exact path: the batch goes to `flux_journal_append` as eight binary arrays; one round
    /// trip, one transaction. Re-runs a batch that lost a race (another writer created one of its
    /// new streams first: the re-run sees it and refuses properly; a deadlock).
    static func appendExact(_ events: [JournalEvent], _ connection: PostgresConnection) throws(JournalError)
        -> AppendResult
    {
        let parameters = try appendArrays(events)
        var attempt = 0
        while true {
            attempt += 1
            let result: PostgresResult
            do throws(JournalError) {
                result = try connection.exec(
                    """
                    SELECT * FROM flux_journal_append(
                        $1::integer[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[],
                        $7::bigint[], $8::boolean[])
                    """, binary: parameters)
            } catch {
                if connection.isUsable, lostRace(connection.lastErrorState), attempt < raceRetries { continue }
                throw error
            }
            return AppendResult(refused: try refusals(result))
        }
    }

    /// 23505: another writer stored one of the batch's keys first; 40P01/40001: deadlock,
    /// serialisation. Running the batch again settles it.
    static func lostRace(_ sqlState: String) -> Bool { ["23505", "40P01", "40001"].contains(sqlState) }

    /// The rows of `flux_journal_append`: one per refused stream.
    static func refusals(_ result: PostgresResult) throws(JournalError) -> [String: AppendRefusal] {
        var refused: [String: AppendRefusal] = [:]
        for row in 0..<result.rows {
            let a = try result.int64(row, 2)
            let b = try result.int64(row, 3)
            refused[result.text(row, 0)] =
                result.bool(row, 1) ? .fenced(writerEpoch: a, currentEpoch: b) : .sequenceConflict(expected: a, got: b)
        }
        return refused
    }

    /// A batch grouped by stream, streams in name order (two writers that race on streams
    /// meet them in one order), for the COPY path. Nil when the batch does not fit it (the exact
    /// path takes it): a stream whose events are not consecutive, or a stream name with a NUL
    /// byte.
    struct CopyPlan {
        struct Stream {
            var name: String
            /// Of its last event (as `open_streams` records it).
            var shard: Int
            var first: Int64
            var last: Int64
            var closes: Bool
            var events: [Int]
        }
        var streams: [Stream]
        /// Each shard of the batch, ascending, with the lowest writer epoch of its events.
        var shards: [(shard: Int, epoch: Int64)]

        init?(_ events: [JournalEvent]) {
            var index: [String: Int] = [:]
            var streams: [Stream] = []
            var epochs: [Int: Int64] = [:]
            for (position, event) in events.enumerated() {
                guard Int32(exactly: event.shard) != nil else { return nil }
                epochs[event.shard] = min(epochs[event.shard] ?? .max, event.writerEpoch)
                if let at = index[event.stream] {
                    guard event.seq == streams[at].last &+ 1 else { return nil }
                    streams[at].last = event.seq
                    streams[at].shard = event.shard
                    streams[at].closes = event.closesStream
                    streams[at].events.append(position)
                } else {
                    guard !event.stream.utf8.contains(0) else { return nil }
                    index[event.stream] = streams.count
                    streams.append(
                        Stream(
                            name: event.stream, shard: event.shard, first: event.seq, last: event.seq,
                            closes: event.closesStream, events: [position]))
                }
            }
            self.streams = streams.sorted { $0.name < $1.name }
            self.shards = epochs.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }

        /// `SELECT flux_journal_check(…)` with its arrays as literals.
        var checkQuery: String {
            let tails = streams.filter { $0.first > 1 }
            let open = streams.filter { !$0.closes }
            let close = streams.filter { $0.closes && $0.first > 1 }
            return """
                SELECT flux_journal_check(\(Self.literal(shards.map { "\($0.shard)" }))::integer[], \
                \(Self.literal(shards.map { "\($0.epoch)" }))::bigint[], \
                \(Self.textLiteral(tails.map(\.name)))::text[], \(Self.literal(tails.map { "\($0.first - 1)" }))::bigint[], \
                \(Self.textLiteral(open.map(\.name)))::text[], \(Self.literal(open.map { "\($0.shard)" }))::integer[], \
                \(Self.textLiteral(close.map(\.name)))::text[])
                """
        }

        /// An array literal of values that need no quoting (numbers).
        static func literal(_ values: [String]) -> String { "'{" + values.joined(separator: ",") + "}'" }

        /// An array literal of text values, as an SQL string literal: inside the array each
        /// element is double-quoted with \ and " escaped by a backslash; inside the SQL literal
        /// (standard_conforming_strings on, which the connection sets) ' is doubled.
        static func textLiteral(_ values: [String]) -> String {
            var bytes: [UInt8] = Array("'{".utf8)
            bytes.reserveCapacity(values.reduce(4) { $0 + $1.utf8.count + 3 })
            for (n, value) in values.enumerated() {
                if n > 0 { bytes.append(UInt8(ascii: ",")) }
                bytes.append(UInt8(ascii: "\""))
                for byte in value.utf8 {
                    switch byte {
                    case UInt8(ascii: "\\"), UInt8(ascii: "\""): bytes += [UInt8(ascii: "\\"), byte]
                    case UInt8(ascii: "'"): bytes += [byte, byte]
                    default: bytes.append(byte)
                    }
                }
                bytes.append(UInt8(ascii: "\""))
            }
            bytes += Array("}'".utf8)
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The COPY path, one round trip and one transaction: `BEGIN; COPY events … FROM STDIN
    /// (FORMAT binary); SELECT flux_journal_check(…); COMMIT`. The events go first, as binary
    /// COPY data (encoded while the server starts the COPY), so the server never waits for the
    /// client between the checks and the rows; the check then takes the shard locks, checks
    /// fencing and each continuing stream's tail, and keeps `open_streams`. Nil when the batch
    /// is refused in part (the check raises), lost a race on the events key (another writer
    /// stored one of its keys first) or a deadlock: rolled back, and the caller runs the batch
    /// through the exact path, which writes the accepted streams and names the refused ones.
    static func appendByCopy(_ events: [JournalEvent], _ plan: CopyPlan, _ connection: PostgresConnection)
        throws(JournalError) -> AppendResult?
    {
        let script =
            "BEGIN; COPY events \(PostgresBinaryCopy.columns) FROM STDIN (FORMAT binary); \(plan.checkQuery); COMMIT"
        var copy = PostgresBinaryCopy(reservingEvents: events.count)
        do throws(JournalError) {
            try connection.copyScript(
                script,
                meanwhile: { () throws(JournalError) in
                    for stream in plan.streams {
                        for position in stream.events { try copy.append(events[position]) }
                    }
                },
                rows: { _ in PostgresBinaryCopy.data(rows: [copy.rows[...]], byteCount: copy.rows.count) })
        } catch {
            let state = connection.lastErrorState
            if connection.isUsable { _ = try? connection.exec("ROLLBACK") }
            if connection.isUsable, state == PostgresJournalSchema.refusedState || lostRace(state) { return nil }
            throw error
        }
        return AppendResult()
    }

    /// The batch as eight binary PostgreSQL arrays, one per column of `flux_journal_append`.
    static func appendArrays(_ events: [JournalEvent]) throws(JournalError) -> [PostgresBinaryArray] {
        let n = events.count
        var shard = PostgresBinaryArray(.int4, reserving: n * 8)
        var stream = PostgresBinaryArray(.text, reserving: n * 32)
        var seq = PostgresBinaryArray(.int8, reserving: n * 12)
        var type = PostgresBinaryArray(.text, reserving: n * 24)
        var data = PostgresBinaryArray(.text, reserving: n * 260)
        var epoch = PostgresBinaryArray(.int8, reserving: n * 12)
        var at = PostgresBinaryArray(.int8, reserving: n * 12)
        var closes = PostgresBinaryArray(.bool, reserving: n * 5)
        for event in events {
            guard let shardNumber = Int32(exactly: event.shard) else {
                throw .corrupt("journal shard \(event.shard) does not fit PostgreSQL's integer")
            }
            shard.append(shardNumber)
            try stream.append(event.stream)
            seq.append(event.seq)
            try type.append(event.type)
            try data.append(event.data)
            epoch.append(event.writerEpoch)
            at.append(JournalTime.microseconds(event.at))
            closes.append(event.closesStream)
        }
        return [shard, stream, seq, type, data, epoch, at, closes]
    }

    // MARK: - Shards and snapshots

    public func acquireShard(_ shard: Int, owner: String) async throws(JournalError) -> Int64 {
        try await writer.run { connection throws(JournalError) in
            let result = try connection.exec(
                "SELECT flux_journal_acquire_shard($1::integer, $2::text)", [String(shard), owner])
            guard result.rows == 1 else { throw .corrupt("acquireShard returned no epoch") }
            return try result.int64(0, 0)
        }
    }

    public func shardOwnerships() async throws(JournalError) -> [ShardOwnership] {
        try await reader().run { connection throws(JournalError) in
            let result = try connection.exec("SELECT shard, owner, epoch FROM shards ORDER BY shard")
            var rows: [ShardOwnership] = []
            for row in 0..<result.rows {
                rows.append(
                    ShardOwnership(
                        shard: Int(try result.int64(row, 0)), owner: result.text(row, 1),
                        epoch: try result.int64(row, 2)))
            }
            return rows
        }
    }

    public func saveSnapshot(_ snapshot: JournalSnapshot) async throws(JournalError) {
        try await writer.run { connection throws(JournalError) in
            // Only the newest snapshot of a stream is ever read: an older one is not stored, and
            // storing a newer one drops the older ones (one statement, one transaction).
            _ = try connection.exec(
                """
                WITH saved AS (
                    INSERT INTO snapshots (shard, stream, seq, data, at)
                    SELECT $1::integer, $2::text, $3::bigint, $4::json, \(PostgresJournalSchema.timestamp("$5::bigint"))
                    WHERE NOT EXISTS (SELECT 1 FROM snapshots WHERE stream = $2::text AND seq > $3::bigint)
                    ON CONFLICT (stream, seq) DO UPDATE SET shard = excluded.shard, data = excluded.data, at = excluded.at
                    RETURNING seq
                )
                DELETE FROM snapshots WHERE stream = $2::text AND seq < (SELECT MAX(seq) FROM saved)
                """,
                [
                    String(snapshot.shard), snapshot.stream, String(snapshot.seq), snapshot.data,
                    String(JournalTime.microseconds(snapshot.at)),
                ])
        }
    }

    public func latestSnapshot(stream: String) async throws(JournalError) -> JournalSnapshot? {
        try await reader().run { connection throws(JournalError) in
            let result = try connection.exec(
                """
                SELECT shard, seq, data, \(PostgresJournalSchema.microseconds("at")) FROM snapshots
                WHERE stream = $1 ORDER BY seq DESC LIMIT 1
                """, [stream])
            guard result.rows == 1 else { return nil }
            return JournalSnapshot(
                shard: Int(try result.int64(0, 0)), stream: stream, seq: try result.int64(0, 1),
                data: result.text(0, 2),
                at: JournalTime.date(try result.int64(0, 3)))
        }
    }

    // MARK: - Reads

    public func read(stream: String, afterSeq: Int64) async throws(JournalError) -> [JournalEvent] {
        try await reader().run { connection throws(JournalError) in
            let result = try connection.exec(
                """
                SELECT shard, seq, type, data, writer_epoch, \(PostgresJournalSchema.microseconds("at")), closes
                FROM events WHERE stream = $1 AND seq > $2::bigint ORDER BY seq
                """, [stream, String(afterSeq)])
            var events: [JournalEvent] = []
            events.reserveCapacity(result.rows)
            for row in 0..<result.rows {
                events.append(
                    JournalEvent(
                        shard: Int(try result.int64(row, 0)), stream: stream, seq: try result.int64(row, 1),
                        type: result.text(row, 2), data: result.text(row, 3), writerEpoch: try result.int64(row, 4),
                        at: JournalTime.date(try result.int64(row, 5)), closesStream: result.bool(row, 6)))
            }
            return events
        }
    }

    public func openStreams(shards: [Int], prefix: String) async throws(JournalError) -> [String] {
        if shards.isEmpty { return [] }
        let list = "{" + Set(shards).sorted().map(String.init).joined(separator: ",") + "}"
        return try await reader().run { connection throws(JournalError) in
            let result = try connection.exec(
                """
                SELECT stream FROM open_streams
                WHERE shard = ANY ($1::integer[]) AND starts_with(stream, $2::text)
                """, [list, prefix])
            return (0..<result.rows).map { result.text($0, 0) }.sorted()
        }
    }

    /// Runs `sql` on the writer connection (tests and tools).
    func execute(_ sql: String) async throws(JournalError) {
        try await writer.run { connection throws(JournalError) in _ = try connection.exec(sql) }
    }

    public func close() async {
        for lane in lanes { await lane.shutdown() }
        for reader in readers { await reader.shutdown() }
    }
}
