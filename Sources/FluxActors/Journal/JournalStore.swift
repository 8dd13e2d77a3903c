import Foundation

/// One event as the journal stores it. `data` is the event's JSON object as UTF-8 text.
public struct JournalEvent: Sendable, Equatable {
    public var shard: Int
    public var stream: String
    /// 1-based, gap-free within a stream.
    public var seq: Int64
    public var type: String
    public var data: String
    /// The epoch of the shard that the writer held when it appended this event.
    public var writerEpoch: Int64
    /// UTC; stored with microsecond precision.
    public var at: Date
    /// True for the event that ends a stream's live life (an application's terminal status).
    /// The journal uses it to list the streams that recovery must bring back.
    public var closesStream: Bool

    public init(
        shard: Int, stream: String, seq: Int64, type: String, data: String, writerEpoch: Int64, at: Date,
        closesStream: Bool = false
    ) {
        self.shard = shard
        self.stream = stream
        self.seq = seq
        self.type = type
        self.data = data
        self.writerEpoch = writerEpoch
        self.at = at
        self.closesStream = closesStream
    }
}

/// Why the journal refused a stream's events.
public enum AppendRefusal: Sendable, Equatable {
    /// (`stream`, `seq`) already exists, or the batch would leave a gap: another writer got there first.
    case sequenceConflict(expected: Int64, got: Int64)
    /// The writer's epoch is older than the shard's current epoch: the shard has a new owner.
    case fenced(writerEpoch: Int64, currentEpoch: Int64)
}

/// What `append` did: every stream not named in `refused` was written, all of its events.
public struct AppendResult: Sendable, Equatable {
    public var refused: [String: AppendRefusal]
    public init(refused: [String: AppendRefusal] = [:]) { self.refused = refused }
}

public enum JournalError: Error, Sendable, Equatable {
    /// The database cannot be reached or refused the write for a reason that may pass.
    case unavailable(String)
    /// The write-behind buffer is full (back-pressure): the caller must not take new work.
    case overloaded
    /// The journal refused this stream's events (see `AppendRefusal`); the writer must stop.
    case refused(stream: String, AppendRefusal)
    /// Stored data that cannot be read back.
    case corrupt(String)
    /// Bad configuration (journal URL, path).
    case invalidConfiguration(String)
}

public struct ShardOwnership: Sendable, Equatable, Codable {
    public var shard: Int
    public var owner: String
    public var epoch: Int64
    public init(shard: Int, owner: String, epoch: Int64) {
        self.shard = shard
        self.owner = owner
        self.epoch = epoch
    }
}

public struct JournalSnapshot: Sendable, Equatable {
    public var shard: Int
    public var stream: String
    /// The snapshot holds the state after this event.
    public var seq: Int64
    public var data: String
    public var at: Date
    public init(shard: Int, stream: String, seq: Int64, data: String, at: Date) {
        self.shard = shard
        self.stream = stream
        self.seq = seq
        self.data = data
        self.at = at
    }
}

/// The durable event store behind the write-behind journal: SQLite (embedded default) or
/// PostgreSQL. Implementations must be safe to call from many tasks at once.
///
/// Single-writer rule (ARCHITECTURE principle 2): `append` refuses a stream's events when their
/// (`stream`, `seq`) already exists, when they would leave a gap, or when their `writerEpoch` is
/// older than the shard's epoch in the shard table. Refusal is per stream; the other streams of
/// the same batch are written.
public protocol JournalStore: Sendable {
    /// Creates or migrates the schema (idempotent; safe when several nodes start at once).
    func prepare() async throws(JournalError)
    /// Writes a batch atomically per stream (group commit). Events of one stream are in seq order.
    /// When it throws, each stream of the batch is either written whole or not at all, but which
    /// ones were written is unknown (a commit whose answer was lost; PostgreSQL's writer lanes,
    /// one of which committed while another failed): a caller that retries the batch finds the
    /// written streams as duplicates (`EventJournal` takes identical stored events as written).
    func append(_ events: [JournalEvent]) async throws(JournalError) -> AppendResult
    /// The events of `stream` with seq > `afterSeq`, oldest first.
    func read(stream: String, afterSeq: Int64) async throws(JournalError) -> [JournalEvent]
    /// Takes `shard` for `owner`: bumps its epoch atomically and returns the new epoch.
    func acquireShard(_ shard: Int, owner: String) async throws(JournalError) -> Int64
    /// The shard table.
    func shardOwnerships() async throws(JournalError) -> [ShardOwnership]
    /// Streams of the given shards whose latest event does not close them, whose name starts with `prefix`.
    func openStreams(shards: [Int], prefix: String) async throws(JournalError) -> [String]
    func saveSnapshot(_ snapshot: JournalSnapshot) async throws(JournalError)
    func latestSnapshot(stream: String) async throws(JournalError) -> JournalSnapshot?
    /// Closes connections. Calls after `close` fail with `.unavailable`.
    func close() async
}
