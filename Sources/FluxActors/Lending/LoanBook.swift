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
    private let journal: EventJournal
    private let shards: ShardMap
    private let epoch: @Sendable (Int) -> Int64?
    private let now: @Sendable () -> Date
    private var accounts: [String: LoanAccount] = [:]
    private let maxCached = 20_000
    private var order: [String] = []

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
        if try await account(r.loanID) != nil { return }
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
        cache(r.loanID, LoanAccount(opened: opened))
        do {
            try await journal.append([journalEvent])
            try await journal.awaitDurable(stream: stream, upTo: 1)
        } catch .refused(_, .sequenceConflict) {
            // Another writer opened it first: the journal's copy is the loan.
            accounts.removeValue(forKey: r.loanID)
            _ = try await account(r.loanID)
        } catch {
            accounts.removeValue(forKey: r.loanID)
            throw LoanBookError.journalUnavailable("\(error)")
        }
    }

    /// The loan account, from memory or the journal; `nil` when there is no such loan.
    public func account(_ loanID: String) async throws -> LoanAccount? {
        if let a = accounts[loanID] { return a }
        let events: [JournalEvent]
        do {
            events = try await journal.read(stream: Self.streamName(loanID))
        } catch {
            throw LoanBookError.journalUnavailable("\(error)")
        }
        if let a = accounts[loanID] { return a }
        guard !events.isEmpty else { return nil }
        var loanEvents: [LoanEvent] = []
        for e in events {
            do { loanEvents.append(try LoanEvent.decode(type: e.type, data: e.data)) } catch {
                throw LoanBookError.corrupt("\(loanID) seq \(e.seq): \(error)")
            }
        }
        let account: LoanAccount
        do { account = try LoanAccount(replaying: loanEvents) } catch {
            throw LoanBookError.corrupt("\(loanID): \(error)")
        }
        cache(loanID, account)
        return account
    }

    private func cache(_ id: String, _ account: LoanAccount) {
        if accounts.updateValue(account, forKey: id) == nil { order.append(id) }
        while order.count > maxCached { accounts.removeValue(forKey: order.removeFirst()) }
    }
}
