import Foundation
import Logging
import Synchronization

public enum RulesPublishError: Error, Sendable, Equatable {
    case invalid(RulesError)
    case versionConflict(current: Int)
    case journalUnavailable(String)
}

/// The active ruleset of the node. Published versions are journalled (stream `config/rules`), so
/// a restarted node carries on with the last published version; the rules file is read only
/// when the journal has none (a cluster's first start).
public final class RulesBook: Sendable {
    public static let stream = "config/rules"
    private let journal: EventJournal
    private let shard: Int
    private let epoch: @Sendable (Int) -> Int64?
    private let now: @Sendable () -> Date
    /// Read on every checkout without a hop: the current compiled ruleset.
    private let current: Mutex<(ruleset: Ruleset, seq: Int64)>
    /// Publishing is rare; one at a time keeps versions and seqs in step.
    private let publishing = AsyncSerial()

    private init(
        journal: EventJournal, shard: Int, epoch: @escaping @Sendable (Int) -> Int64?,
        now: @escaping @Sendable () -> Date, ruleset: Ruleset, seq: Int64
    ) {
        self.journal = journal
        self.shard = shard
        self.epoch = epoch
        self.now = now
        self.current = Mutex((ruleset, seq))
    }

    public var ruleset: Ruleset { current.withLock { $0.ruleset } }

    /// Loads the last published ruleset from the journal, or compiles `initial` (the rules file)
    /// when the journal has none (a cluster's first start). The file's ruleset is not journalled:
    /// the first publish (`PUT`/`PATCH`, at the owner of this stream's shard) writes version
    /// file-version + 1 as the stream's first event, so nodes starting together never race to
    /// write it.
    public static func load(
        journal: EventJournal, shards: ShardMap, epoch: @escaping @Sendable (Int) -> Int64?,
        now: @escaping @Sendable () -> Date, initial: () throws -> JSONValue
    ) async throws -> RulesBook {
        let shard = shards.shard(for: stream)
        let events = try await journal.read(stream: stream)
        if let last = events.last {
            let doc = try JSONValue.parse(Data(last.data.utf8))
            let ruleset = try Ruleset.compile(doc)
            return RulesBook(journal: journal, shard: shard, epoch: epoch, now: now, ruleset: ruleset, seq: last.seq)
        }
        let ruleset = try Ruleset.compile(try initial())
        return RulesBook(journal: journal, shard: shard, epoch: epoch, now: now, ruleset: ruleset, seq: 0)
    }

    /// Picks up versions another node published (after its broadcast, or on the periodic check).
    /// Returns the active version.
    @discardableResult
    public func refresh() async throws -> Int {
        let seq = current.withLock { $0.seq }
        let events = try await journal.read(stream: Self.stream)
        guard let last = events.last, last.seq > seq else { return ruleset.version }
        let ruleset = try Ruleset.compile(try JSONValue.parse(Data(last.data.utf8)))
        current.withLock { if $0.seq < last.seq { $0 = (ruleset, last.seq) } }
        return self.ruleset.version
    }

    /// Publishes `document` as version `ifMatch + 1`.
    public func publish(_ document: JSONValue, ifMatch: Int) async throws(RulesPublishError) -> Ruleset {
        try await change(ifMatch: ifMatch) { _ throws(RulesError) in try Ruleset.compile(document) }
    }

    /// Changes dials only; also a new version.
    public func patchDials(_ patch: [String: JSONValue], ifMatch: Int) async throws(RulesPublishError) -> Ruleset {
        try await change(ifMatch: ifMatch) { current throws(RulesError) in try current.patchingDials(patch) }
    }

    private func change(ifMatch: Int, _ make: (Ruleset) throws(RulesError) -> Ruleset) async throws(RulesPublishError)
        -> Ruleset
    {
        await publishing.acquire()
        defer { publishing.release() }
        // This node may have just taken the stream's shard: start from what the journal has.
        do { try await refresh() } catch { throw .journalUnavailable("\(error)") }
        let (active, seq) = current.withLock { ($0.ruleset, $0.seq) }
        guard active.version == ifMatch else { throw .versionConflict(current: active.version) }
        let next: Ruleset
        do { next = try make(active).withVersion(active.version + 1) } catch { throw .invalid(error) }
        do { try await record(next, seq: seq + 1) } catch { throw .journalUnavailable("\(error)") }
        return next
    }

    private func record(_ ruleset: Ruleset, seq: Int64) async throws(JournalError) {
        guard let writerEpoch = epoch(shard) else {
            throw .unavailable(
                "this node does not own the rules' shard (\(shard)); the request should have been forwarded")
        }
        let event = JournalEvent(
            shard: shard, stream: Self.stream, seq: seq, type: "RulesPublished", data: ruleset.document.jsonString(),
            writerEpoch: writerEpoch, at: now())
        try await journal.append([event])
        try await journal.awaitDurable(stream: Self.stream, upTo: seq)
        current.withLock { $0 = (ruleset, seq) }
    }
}

/// A tiny async mutex: one holder at a time, waiters resumed in order.
final class AsyncSerial: Sendable {
    private let state = Mutex<(held: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.held {
                    s.waiters.append(c)
                    return false
                }
                s.held = true
                return true
            }
            if resumeNow { c.resume() }
        }
    }

    func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.held = false
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
