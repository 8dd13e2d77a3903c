import Foundation

/// Snapshots of long streams (Docs/journal.md, "Snapshots"): a stream's owner saves the folded
/// state after every `every`-th event, once those events are durable; recovery reads the latest
/// snapshot and only the events after it. A snapshot is a cache of the journal, never the truth:
/// one that cannot be read is ignored and the whole stream is folded.
public enum StreamSnapshots {
    /// N: a snapshot after events 50, 100, 150, … of a stream.
    public static let every: Int64 = 50

    /// The seq at which a snapshot is due when a stream grows from `previous` to `last` events:
    /// the highest multiple of `every` in (`previous`, `last`], or nil when there is none.
    public static func due(after previous: Int64, upTo last: Int64, every: Int64 = every) -> Int64? {
        guard every > 0, last > previous, last / every > previous / every else { return nil }
        return last / every * every
    }
}

/// What recovery of one stream found: the state of its latest usable snapshot (if any), the
/// seq that snapshot holds (0 without one), and the events after it, oldest first.
public struct RecoveredStream<State: Sendable>: Sendable {
    public var snapshot: State?
    public var snapshotSeq: Int64
    public var tail: [JournalEvent]
    /// The stream's last seq (0 when the stream is empty).
    public var lastSeq: Int64 { tail.last?.seq ?? snapshotSeq }
}

extension EventJournal {
    /// Loads `stream` for its owner: the latest snapshot that `decode` accepts plus the events
    /// after it (durable ones, then any still buffered). Without a usable snapshot: every event.
    public func recover<State: Sendable>(
        stream: String, decode: @Sendable (JournalSnapshot) -> State?
    ) async throws(JournalError) -> RecoveredStream<State> {
        if let snapshot = try await latestSnapshot(stream: stream), let state = decode(snapshot) {
            let tail = try await read(stream: stream, afterSeq: snapshot.seq)
            // A tail that does not continue the snapshot means the snapshot does not belong to
            // these events (it cannot happen through the journal's API): trust the events.
            if tail.first.map({ $0.seq == snapshot.seq + 1 }) ?? true {
                return RecoveredStream(snapshot: state, snapshotSeq: snapshot.seq, tail: tail)
            }
        }
        return RecoveredStream(snapshot: nil, snapshotSeq: 0, tail: try await read(stream: stream, afterSeq: 0))
    }
}
