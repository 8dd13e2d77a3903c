import Foundation
import Logging

public enum LoanBookError: Error, Sendable, Equatable {
    case journalUnavailable(String)
    case corrupt(String)
    case invalidTerms(String)
}

/// The node's loan accounts (stream `loan/<id>`): opened once per disbursed application,
/// reloaded lazily from the journal when asked for.
public actor LoanBook: LoanOpening {
    /// N of Docs/journal.md: a loan's state is saved as a snapshot each time its stream passes
    /// a multiple of N events; recovery reads the latest snapshot and the events after it.
    public static let snapshotEvery: Int64 = StreamSnapshots.every

    private let journal: EventJournal
    private let shards: ShardMap
    private let epoch: @Sendable (Int) -> Int64?
    private let now: @Sendable () -> Date
    /// Cached loans, each with the last seq of its stream; the oldest is forgotten first.
    private var cached = FIFOCache<String, (account: LoanAccount, lastSeq: Int64)>(capacity: 20_000)
    /// Loans with a `record` in progress, and who waits for them (one writer per loan at a time).
    private var recording: [String: [CheckedContinuation<Void, Never>]] = [:]

    public init(
        journal: EventJournal, shards: ShardMap, epoch: @escaping @Sendable (Int) -> Int64?,
        now: @escaping @Sendable () -> Date
    ) {
        self.journal = journal
        self.shards = shards
        self.epoch = epoch
        self.now = now
    }

    public static func streamName(_ loanID: String) -> String { "loan/\(loanID)" }

    /// Opens the loan unless it is open already (a recovered saga asks again). Returns when the
    /// `LoanOpened` event is durable.
    public func openLoan(_ r: LoanOpeningRequest) async throws {
        // Memory only: a loan this book has not seen is appended as seq 1 without reading the
        // journal first (a read per new loan on the checkout's path). If the journal already
        // holds the loan (a retry after a restart or a hand-over), the append is refused as a
        // sequence conflict and the journal's copy is loaded below: the first opening stands.
        if cached[r.loanID] != nil { return }
        let opened: LoanOpened
        do {
            opened = try LoanOpened(
                applicationID: r.applicationID, lenderID: r.lenderID, lenderReference: r.lenderReference,
                customerID: r.customerID, merchantID: r.merchantID, principalPaise: r.principalPaise,
                annualRateBps: r.annualRateBps, tenureMonths: r.tenureMonths, disbursedAt: r.disbursedAt)
        } catch {
            throw LoanBookError.invalidTerms("\(error)")
        }
        precondition(opened.loanID == r.loanID, "the saga and the ledger agree on loan ids")
        let event = LoanEvent.opened(opened)
        let stream = Self.streamName(r.loanID)
        let shard = shards.shard(for: r.loanID)
        let journalEvent = JournalEvent(
            shard: shard, stream: stream, seq: 1, type: event.typeName, data: event.encodedData(),
            writerEpoch: epoch(shard) ?? 0, at: now(), closesStream: event.closesStream)
        // Cache first: a concurrent `account` call for this id must not append seq 1 twice.
        cache(r.loanID, LoanAccount(opened: opened), lastSeq: 1)
        do {
            try await journal.append([journalEvent])
            try await journal.awaitDurable(stream: stream, upTo: 1)
        } catch .refused(_, .sequenceConflict) {
            // Opened before (by this node before a restart, or by another owner): the journal's
            // copy is the loan. The refusal is cleared so that the loan's later events append.
            forget(r.loanID)
            do { try await journal.clearRefusal(stream: stream) } catch {
                throw LoanBookError.journalUnavailable("\(error)")
            }
            guard try await account(r.loanID) != nil else {
                throw LoanBookError.corrupt("\(r.loanID): the journal refused seq 1 but holds no loan")
            }
        } catch {
            forget(r.loanID)
            throw LoanBookError.journalUnavailable("\(error)")
        }
    }

    /// The loan account, from memory or the journal (its latest snapshot and the events after
    /// it); `nil` when there is no such loan.
    public func account(_ loanID: String) async throws -> LoanAccount? {
        if let a = cached[loanID]?.account { return a }
        let recovered: RecoveredStream<LoanAccountState>
        do {
            recovered = try await journal.recover(stream: Self.streamName(loanID)) {
                LoanAccountState(snapshotData: $0.data)
            }
        } catch {
            throw LoanBookError.journalUnavailable("\(error)")
        }
        if let a = cached[loanID]?.account { return a }
        if recovered.snapshot == nil && recovered.tail.isEmpty { return nil }
        var loanEvents: [LoanEvent] = []
        for e in recovered.tail {
            do { loanEvents.append(try LoanEvent.decode(type: e.type, data: e.data)) } catch {
                throw LoanBookError.corrupt("\(loanID) seq \(e.seq): \(error)")
            }
        }
        let state: LoanAccountState
        do {
            if let snapshot = recovered.snapshot {
                state = try LoanAccountState.replay(from: snapshot, loanEvents)
            } else {
                state = try LoanAccountState.replay(loanEvents)
            }
        } catch {
            throw LoanBookError.corrupt("\(loanID): \(error)")
        }
        let account = LoanAccount(state: state)
        cache(loanID, account, lastSeq: recovered.lastSeq)
        return account
    }

    /// Journals events that happen to an open loan (payments, …; never `LoanOpened`), waits
    /// until they are durable, applies them, and saves a snapshot when the stream passes a
    /// multiple of `snapshotEvery`. Calls for one loan run one after the other.
    public func record(_ events: [LoanEvent], loanID: String) async throws -> LoanAccount {
        if events.contains(where: { if case .opened = $0 { true } else { false } }) {
            throw LoanBookError.invalidTerms("a loan is opened once: record takes the events after LoanOpened")
        }
        await lock(loanID)
        defer { unlock(loanID) }
        guard let account = try await account(loanID), let previous = cached[loanID]?.lastSeq else {
            throw LoanBookError.invalidTerms("no loan \(loanID)")
        }
        if events.isEmpty { return account }
        let stream = Self.streamName(loanID)
        let shard = shards.shard(for: loanID)
        let epoch = epoch(shard) ?? 0
        let at = now()
        let journalEvents = events.enumerated().map { i, event in
            JournalEvent(
                shard: shard, stream: stream, seq: previous + Int64(i) + 1, type: event.typeName,
                data: event.encodedData(), writerEpoch: epoch, at: at, closesStream: event.closesStream)
        }
        let last = previous + Int64(events.count)
        do {
            try await journal.append(journalEvents)
            try await journal.awaitDurable(stream: stream, upTo: last)
        } catch {
            // Refused (another writer) or not durable: what the journal holds is the loan.
            forget(loanID)
            throw LoanBookError.journalUnavailable("\(error)")
        }
        for event in events { await account.apply(event) }
        cached.update(loanID) { $0.lastSeq = last }
        if StreamSnapshots.due(after: previous, upTo: last, every: Self.snapshotEvery) != nil {
            let state = await account.state
            // A snapshot is a cache: when it cannot be saved, recovery reads more events.
            try? await journal.saveSnapshot(
                JournalSnapshot(shard: shard, stream: stream, seq: last, data: state.snapshotData(), at: at))
        }
        return account
    }

    private func lock(_ loanID: String) async {
        if recording[loanID] == nil {
            recording[loanID] = []
            return
        }
        await withCheckedContinuation { recording[loanID, default: []].append($0) }
    }

    private func unlock(_ loanID: String) {
        guard var waiters = recording[loanID], !waiters.isEmpty else {
            recording.removeValue(forKey: loanID)
            return
        }
        // The lock passes straight to the next waiter.
        let next = waiters.removeFirst()
        recording[loanID] = waiters
        next.resume()
    }

    private func cache(_ id: String, _ account: LoanAccount, lastSeq: Int64) {
        cached.insert((account, lastSeq), for: id)
    }

    private func forget(_ id: String) {
        cached.removeValue(forKey: id)
    }

    /// Forgets the cached loans of shards this node gave up: their next owner may append to
    /// them, so a later read here must come from the journal.
    public func release(shards gone: Set<Int>) {
        cached.removeAll { id, _ in gone.contains(shards.shard(for: id)) }
    }
}
