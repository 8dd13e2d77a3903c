import CSQLite
import Dispatch
import Foundation

/// The embedded journal: one SQLite file in WAL mode, which several node processes on one machine
/// may share. Every SQLite call runs on one serial dispatch queue (never on Swift's cooperative
/// pool or a NIO event loop); callers are bridged with continuations.
///
/// Writes use `BEGIN IMMEDIATE`, so two processes serialise on SQLite's write lock (waiting up to
/// `busyTimeout`) instead of failing half-way through a transaction. Commits use
/// `synchronous = FULL`: a batch reported durable survives a power cut, not only a crash.
public final class SQLiteJournalStore: JournalStore, @unchecked Sendable {
    // @unchecked Sendable: the only mutable state is `connection`, and it is read and written
    // exclusively from `queue` (a serial queue), inside `run`/`init`/`close`.
    private let queue: DispatchQueue
    private var connection: SQLiteConnection?
    /// Checkpoints (copying WAL pages into the database file, and its fsync) run on a connection
    /// of their own, so that they never hold up a commit. `checkpointer` and `checkpointTimer`
    /// are read and written only on `checkpointQueue` (serial), like `connection` on `queue`.
    private let checkpointQueue: DispatchQueue
    private var checkpointer: SQLiteConnection?
    private var checkpointTimer: DispatchSourceTimer?
    public let path: String

    /// SQLite's page cache of the connection, in KiB (SQLite's default is 2,000).
    static let cacheKiB = 65_536
    /// How often the checkpointer copies the WAL into the database file.
    static let checkpointInterval = DispatchTimeInterval.milliseconds(250)
    /// A safety net only: should the checkpointer fall behind, the writer checkpoints by itself
    /// once the WAL holds this many pages (256 MiB; SQLite's default is 1,000 pages).
    static let walLimitPages = 65_536

    /// The newest schema this build knows. Migrations are in `Self.migrations`, index = version - 1.
    static let schemaVersion = migrations.count

    /// Opens (creating if needed) the database file. Call `prepare()` before anything else.
    public init(path: String, busyTimeout: Duration = .seconds(5)) throws(JournalError) {
        self.path = path
        self.queue = DispatchQueue(label: "flux.journal.sqlite")
        self.checkpointQueue = DispatchQueue(label: "flux.journal.sqlite.checkpoint")
        let opened: Result<SQLiteConnection, JournalError> = queue.sync {
            do throws(JournalError) {
                return .success(try SQLiteConnection(path: path, busyTimeout: busyTimeout))
            } catch {
                return .failure(error)
            }
        }
        connection = try opened.get()
    }

    // MARK: - Plumbing

    private func run<T: Sendable>(
        _ body: @escaping @Sendable (SQLiteConnection) throws(JournalError) -> T
    ) async throws(JournalError) -> T {
        let result: Result<T, JournalError> = await withCheckedContinuation { continuation in
            queue.async {
                guard let connection = self.connection else {
                    continuation.resume(returning: .failure(.unavailable("journal store is closed")))
                    return
                }
                do throws(JournalError) {
                    continuation.resume(returning: .success(try body(connection)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back on any error.
    private static func transaction<T>(
        _ connection: SQLiteConnection, _ body: () throws(JournalError) -> T
    ) throws(JournalError) -> T {
        try connection.exec("BEGIN IMMEDIATE")
        do throws(JournalError) {
            let value = try body()
            try connection.exec("COMMIT")
            return value
        } catch {
            try? connection.exec("ROLLBACK")
            throw error
        }
    }

    // MARK: - Schema

    static let migrations: [String] = [
        // 1: the journal.
        """
        CREATE TABLE events (
            shard INTEGER NOT NULL,
            stream TEXT NOT NULL,
            seq INTEGER NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            writer_epoch INTEGER NOT NULL,
            at INTEGER NOT NULL,
            closes INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (stream, seq)
        );
        CREATE TABLE shards (
            shard INTEGER PRIMARY KEY,
            owner TEXT NOT NULL,
            epoch INTEGER NOT NULL
        );
        CREATE TABLE streams (
            stream TEXT PRIMARY KEY,
            shard INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            open INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX streams_open ON streams (shard, stream) WHERE open = 1;
        CREATE TABLE snapshots (
            shard INTEGER NOT NULL,
            stream TEXT NOT NULL,
            seq INTEGER NOT NULL,
            data TEXT NOT NULL,
            at INTEGER NOT NULL,
            PRIMARY KEY (stream, seq)
        );
        """,
        // 2: events keyed by a stream number given in creation order instead of the stream's name
        // (a hash): the streams being written are the newest ones, so their events share the last
        // pages of the (stream_id, seq) index instead of dirtying a page each at random places in
        // the file (Docs/journal.md, "SQLite settings"). Existing rows keep their order of names.
        """
        CREATE TABLE streams_v2 (
            stream TEXT PRIMARY KEY,
            id INTEGER NOT NULL UNIQUE,
            shard INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            open INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO streams_v2 (stream, id, shard, last_seq, open)
            SELECT stream, ROW_NUMBER() OVER (ORDER BY stream), shard, last_seq, open FROM streams;
        CREATE TABLE events_v2 (
            stream_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            shard INTEGER NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            writer_epoch INTEGER NOT NULL,
            at INTEGER NOT NULL,
            closes INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (stream_id, seq)
        );
        INSERT INTO events_v2 (stream_id, seq, shard, type, data, writer_epoch, at, closes)
            SELECT s.id, e.seq, e.shard, e.type, e.data, e.writer_epoch, e.at, e.closes
            FROM events e JOIN streams_v2 s ON s.stream = e.stream ORDER BY e.rowid;
        DROP TABLE events;
        ALTER TABLE events_v2 RENAME TO events;
        DROP TABLE streams;
        ALTER TABLE streams_v2 RENAME TO streams;
        CREATE INDEX streams_open ON streams (shard, id) WHERE open = 1;
        """,
        // 3: `streams` keyed by its number (the rowid), its name in an index of its own, and the
        // open streams indexed in number order. Version 2 kept each row under its name (a hash)
        // and the open ones by shard: every new stream, and every stream that closed, dirtied a
        // page at a random place in three B-trees — about seven random pages per checkout, most of
        // the WAL written under load (Docs/journal.md, "SQLite settings"). Now only the name index
        // takes a random insert (once per stream); rows and the open index grow at their ends,
        // where the streams being written are.
        """
        CREATE TABLE streams_v3 (
            id INTEGER PRIMARY KEY,
            stream TEXT NOT NULL UNIQUE,
            shard INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            open INTEGER NOT NULL
        );
        INSERT INTO streams_v3 (id, stream, shard, last_seq, open)
            SELECT id, stream, shard, last_seq, open FROM streams ORDER BY id;
        DROP TABLE streams;
        ALTER TABLE streams_v3 RENAME TO streams;
        CREATE INDEX streams_open ON streams (open) WHERE open = 1;
        """,
    ]

    public func prepare() async throws(JournalError) {
        try await run { connection throws(JournalError) in
            // WAL lets readers of other processes go on while one process writes.
            let mode = try connection.statement("PRAGMA journal_mode = WAL")
            _ = try mode.step()
            let journalMode = mode.text(0).lowercased()
            _ = try? mode.step()
            guard journalMode == "wal" else {
                throw .invalidConfiguration(
                    "SQLite journal at \(connection.path) cannot use WAL mode (got \(journalMode))")
            }
            try connection.exec("PRAGMA synchronous = FULL")
            // Measured on the checkout path (Docs/journal.md "SQLite settings"): each commit dirties
            // index pages all over the file (stream names are hashes), so a larger page cache saves
            // the re-reads; checkpoints are the checkpointer's job (`startCheckpointer`).
            try connection.exec("PRAGMA cache_size = -\(Self.cacheKiB)")
            try connection.exec("PRAGMA wal_autocheckpoint = \(Self.walLimitPages)")
            // BEGIN IMMEDIATE takes the write lock first: nodes starting together migrate one by one,
            // and each sees the version the previous one left.
            try Self.transaction(connection) { () throws(JournalError) in
                try connection.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                let select = try connection.statement("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                _ = try select.step()
                let current = Int(select.int64(0))
                _ = try select.step()
                if current > Self.schemaVersion {
                    throw .invalidConfiguration(
                        "SQLite journal schema version \(current) is newer than this build knows (\(Self.schemaVersion))"
                    )
                }
                for version in (current + 1)..<(Self.schemaVersion + 1) {
                    try connection.exec(Self.migrations[version - 1])
                    try connection.exec("INSERT INTO schema_version (version) VALUES (\(version))")
                }
            }
        }
        startCheckpointer()
    }

    // MARK: - Append

    public func append(_ events: [JournalEvent]) async throws(JournalError) -> AppendResult {
        if events.isEmpty { return AppendResult() }
        return try await run { connection throws(JournalError) in
            try Self.transaction(connection) { () throws(JournalError) in
                try Self.appendInTransaction(connection, events)
            }
        }
    }

    /// Checks and writes each stream of the batch; a refused stream writes nothing, the others
    /// are written. Runs inside the caller's transaction.
    private static func appendInTransaction(
        _ connection: SQLiteConnection, _ events: [JournalEvent]
    ) throws(JournalError) -> AppendResult {
        // Streams in the order they first appear; each with the indices of its events.
        var order: [String] = []
        var indices: [String: [Int]] = [:]
        for (index, event) in events.enumerated() {
            if indices[event.stream] == nil {
                order.append(event.stream)
                indices[event.stream] = [index]
            } else {
                indices[event.stream]!.append(index)
            }
        }

        var epochs: [Int: Int64] = [:]
        func epoch(of shard: Int) throws(JournalError) -> Int64 {
            if let known = epochs[shard] { return known }
            let select = try connection.statement("SELECT epoch FROM shards WHERE shard = ?1")
            select.bind(1, shard)
            let current = try select.step() ? select.int64(0) : 0
            if current != 0 { _ = try select.step() }
            epochs[shard] = current
            return current
        }

        // Numbers for the batch's new streams: one past the highest so far (one seek down the
        // `id` index), read once per transaction.
        var nextID: Int64?
        func newID() throws(JournalError) -> Int64 {
            if nextID == nil {
                let select = try connection.statement("SELECT COALESCE(MAX(id), 0) FROM streams")
                _ = try select.step()
                nextID = select.int64(0) + 1
                _ = try select.step()
            }
            defer { nextID! += 1 }
            return nextID!
        }

        var refused: [String: AppendRefusal] = [:]
        for stream in order {
            let streamIndices = indices[stream]!
            let streamEvents = streamIndices.map { events[$0] }
            if let refusal = try fencing(streamEvents, epoch(of:)) {
                refused[stream] = refusal
                continue
            }
            let known = try streamRow(connection, stream)  // nil: a new stream
            if let refusal = try sequenceCheck(connection, known?.id, streamEvents) {
                refused[stream] = refusal
                continue
            }
            let id: Int64
            if let known { id = known.id } else { id = try newID() }
            let insert = try connection.statement(
                """
                INSERT INTO events (shard, stream_id, seq, type, data, writer_epoch, at, closes)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                """)
            for index in streamIndices {
                let event = events[index]
                sqlite3_reset(insert.handle)
                insert.bind(1, event.shard)
                insert.bind(2, id)
                insert.bind(3, event.seq)
                insert.bind(4, event.type)
                insert.bind(5, event.data)
                insert.bind(6, event.writerEpoch)
                insert.bind(7, JournalTime.microseconds(event.at))
                insert.bind(8, event.closesStream)
                do throws(JournalError) {
                    try insert.step()
                } catch {
                    // `streams` is kept in the same transaction as `events`, so a duplicate here
                    // means the two tables disagree: stop rather than guess.
                    throw .corrupt("stream \(stream) seq \(event.seq): \(error)")
                }
            }
            // `streams` answers "which streams of a shard are open" (recovery). Its row is written
            // only when that answer changes — a new stream, a stream closing or reopening, a shard
            // change — not on every append: each write dirties a page of its B-tree and of its
            // index somewhere in the file (stream names are hashes), which under load was two of
            // the three random pages a stream's append cost (Docs/journal.md "SQLite settings").
            // The sequence check reads the last seq from `events` itself.
            let last = events[streamIndices.last!]
            let open = !last.closesStream
            // nil (a new stream) differs from any row.
            if known?.open != open || known?.shard != last.shard {
                let upsert = try connection.statement(
                    """
                    INSERT INTO streams (stream, id, shard, last_seq, open) VALUES (?1, ?2, ?3, ?4, ?5)
                    ON CONFLICT (stream) DO UPDATE SET
                        shard = excluded.shard, last_seq = excluded.last_seq, open = excluded.open
                    """)
                upsert.bind(1, stream)
                upsert.bind(2, id)
                upsert.bind(3, last.shard)
                upsert.bind(4, last.seq)
                upsert.bind(5, open)
                try upsert.step()
            }
        }
        return AppendResult(refused: refused)
    }

    /// The stream's row in `streams` (its number, its shard and whether it is open), nil for a
    /// new stream.
    private static func streamRow(
        _ connection: SQLiteConnection, _ stream: String
    ) throws(JournalError) -> (id: Int64, shard: Int, open: Bool)? {
        let select = try connection.statement("SELECT id, shard, open FROM streams WHERE stream = ?1")
        select.bind(1, stream)
        guard try select.step() else { return nil }
        let row = (id: select.int64(0), shard: Int(select.int64(1)), open: select.int64(2) != 0)
        _ = try select.step()
        return row
    }

    /// Why one stream's events must be refused for their writer's epoch, or nil. Checked before
    /// the sequence: a writer whose shard has moved on is told so even when its sequence is also
    /// stale.
    private static func fencing(
        _ events: [JournalEvent], _ epoch: (Int) throws(JournalError) -> Int64
    ) throws(JournalError) -> AppendRefusal? {
        for event in events {
            let current = try epoch(event.shard)
            if event.writerEpoch < current {
                return .fenced(writerEpoch: event.writerEpoch, currentEpoch: current)
            }
        }
        return nil
    }

    /// Why one stream's events must be refused for their sequence, or nil. `id` is the stream's
    /// number, nil for a new stream (whose first event must be seq 1).
    private static func sequenceCheck(
        _ connection: SQLiteConnection, _ id: Int64?, _ events: [JournalEvent]
    ) throws(JournalError) -> AppendRefusal? {
        var last: Int64 = 0
        if let id {
            // One seek down the (stream_id, seq) key.
            let select = try connection.statement("SELECT MAX(seq) FROM events WHERE stream_id = ?1")
            select.bind(1, id)
            if try select.step() {
                last = select.int64(0)
                _ = try select.step()
            }
        }
        var expected = last + 1
        for event in events {
            if event.seq != expected { return .sequenceConflict(expected: expected, got: event.seq) }
            expected += 1
        }
        return nil
    }

    // MARK: - Reads

    public func read(stream: String, afterSeq: Int64) async throws(JournalError) -> [JournalEvent] {
        try await run { connection throws(JournalError) in
            let select = try connection.statement(
                """
                SELECT shard, seq, type, data, writer_epoch, at, closes FROM events
                WHERE stream_id = (SELECT id FROM streams WHERE stream = ?1) AND seq > ?2 ORDER BY seq
                """)
            select.bind(1, stream)
            select.bind(2, afterSeq)
            var events: [JournalEvent] = []
            while try select.step() {
                events.append(
                    JournalEvent(
                        shard: Int(select.int64(0)), stream: stream, seq: select.int64(1), type: select.text(2),
                        data: select.text(3), writerEpoch: select.int64(4), at: JournalTime.date(select.int64(5)),
                        closesStream: select.int64(6) != 0))
            }
            return events
        }
    }

    public func acquireShard(_ shard: Int, owner: String) async throws(JournalError) -> Int64 {
        try await run { connection throws(JournalError) in
            try Self.transaction(connection) { () throws(JournalError) in
                let upsert = try connection.statement(
                    """
                    INSERT INTO shards (shard, owner, epoch) VALUES (?1, ?2, 1)
                    ON CONFLICT (shard) DO UPDATE SET epoch = epoch + 1, owner = excluded.owner
                    RETURNING epoch
                    """)
                upsert.bind(1, shard)
                upsert.bind(2, owner)
                guard try upsert.step() else { throw .corrupt("acquireShard returned no epoch") }
                let epoch = upsert.int64(0)
                _ = try upsert.step()
                return epoch
            }
        }
    }

    public func shardOwnerships() async throws(JournalError) -> [ShardOwnership] {
        try await run { connection throws(JournalError) in
            let select = try connection.statement("SELECT shard, owner, epoch FROM shards ORDER BY shard")
            var rows: [ShardOwnership] = []
            while try select.step() {
                rows.append(ShardOwnership(shard: Int(select.int64(0)), owner: select.text(1), epoch: select.int64(2)))
            }
            return rows
        }
    }

    public func openStreams(shards: [Int], prefix: String) async throws(JournalError) -> [String] {
        try await run { connection throws(JournalError) in
            // One pass over the open streams (the partial index, in number order), whatever the
            // number of shards asked for.
            let select = try connection.statement(
                "SELECT stream, shard FROM streams INDEXED BY streams_open WHERE open = 1")
            let wanted = Set(shards)
            var streams: [String] = []
            while try select.step() {
                guard wanted.contains(Int(select.int64(1))) else { continue }
                let stream = select.text(0)
                if stream.hasPrefix(prefix) { streams.append(stream) }
            }
            return streams.sorted()
        }
    }

    public func saveSnapshot(_ snapshot: JournalSnapshot) async throws(JournalError) {
        try await run { connection throws(JournalError) in
            try Self.transaction(connection) { () throws(JournalError) in
                let upsert = try connection.statement(
                    """
                    INSERT INTO snapshots (shard, stream, seq, data, at) VALUES (?1, ?2, ?3, ?4, ?5)
                    ON CONFLICT (stream, seq) DO UPDATE SET
                        shard = excluded.shard, data = excluded.data, at = excluded.at
                    """)
                upsert.bind(1, snapshot.shard)
                upsert.bind(2, snapshot.stream)
                upsert.bind(3, snapshot.seq)
                upsert.bind(4, snapshot.data)
                upsert.bind(5, JournalTime.microseconds(snapshot.at))
                try upsert.step()
                // Only the newest snapshot of a stream is ever read: drop the older ones.
                let prune = try connection.statement(
                    """
                    DELETE FROM snapshots WHERE stream = ?1
                    AND seq < (SELECT MAX(seq) FROM snapshots WHERE stream = ?1)
                    """)
                prune.bind(1, snapshot.stream)
                try prune.step()
            }
        }
    }

    public func latestSnapshot(stream: String) async throws(JournalError) -> JournalSnapshot? {
        try await run { connection throws(JournalError) in
            let select = try connection.statement(
                "SELECT shard, seq, data, at FROM snapshots WHERE stream = ?1 ORDER BY seq DESC LIMIT 1")
            select.bind(1, stream)
            guard try select.step() else { return nil }
            let snapshot = JournalSnapshot(
                shard: Int(select.int64(0)), stream: stream, seq: select.int64(1), data: select.text(2),
                at: JournalTime.date(select.int64(3)))
            _ = try select.step()
            return snapshot
        }
    }

    deinit {
        // A store dropped without `close()`: its timer must not go on firing. Cancelling a
        // dispatch source is thread-safe, and nothing else can reach this object any more.
        checkpointTimer?.cancel()
    }

    /// Opens the checkpointer's connection and runs a passive checkpoint every
    /// `checkpointInterval`: it copies what is committed while the writer goes on appending (WAL
    /// mode lets both run), and it is a no-op when nothing new was committed.
    private func startCheckpointer() {
        checkpointQueue.sync {
            guard checkpointTimer == nil,
                let connection = try? SQLiteConnection(path: path, busyTimeout: .milliseconds(100)),
                // A connection learns that the file is in WAL mode when it first reads it; until
                // then a checkpoint is a silent no-op (JournalSQLiteCheckpointTests caught this).
                (try? connection.exec("PRAGMA journal_mode = WAL")) != nil
            else { return }
            checkpointer = connection
            let timer = DispatchSource.makeTimerSource(queue: checkpointQueue)
            timer.schedule(deadline: .now() + Self.checkpointInterval, repeating: Self.checkpointInterval)
            timer.setEventHandler { [weak self] in
                guard let db = self?.checkpointer?.db else { return }
                // Busy (another process checkpointing, say) is fine: the next tick tries again.
                _ = sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
            }
            checkpointTimer = timer
            timer.resume()
        }
    }

    public func close() async {
        checkpointQueue.sync {
            checkpointTimer?.cancel()
            checkpointTimer = nil
            checkpointer?.close()
            checkpointer = nil
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                self.connection?.close()
                self.connection = nil
                continuation.resume()
            }
        }
    }
}
