import Foundation
import Logging
import Testing

@testable import FluxActors

/// Snapshots of long streams (Docs/journal.md): written every `StreamSnapshots.every` events,
/// recovery from the latest snapshot plus the tail equals recovery from the whole stream; the
/// loan book recovers through them. Against every store.
@Suite("Journal snapshots", .timeLimit(.minutes(1)))
struct JournalSnapshotTests {
    static let quietLogger = Logger(label: "flux.journal.test", factory: { _ in SwiftLogNoOpLogHandler() })

    static func withJournal(
        _ kind: JournalStoreKind, _ body: (EventJournal, JournalStoreFixture) async throws -> Void
    ) async throws {
        try await withJournalStore(kind) { fixture throws in
            let journal = EventJournal(
                store: fixture.store, flushInterval: .milliseconds(1), logger: quietLogger,
                retryDelay: .milliseconds(1), maxRetryDelay: .milliseconds(4))
            await journal.start()
            do {
                try await body(journal, fixture)
            } catch {
                await journal.shutdown()
                throw error
            }
            await journal.shutdown()
        }
    }

    @Test func dueAtEachMultipleOfN() {
        #expect(StreamSnapshots.every == 50)
        #expect(StreamSnapshots.due(after: 0, upTo: 49) == nil)
        #expect(StreamSnapshots.due(after: 49, upTo: 50) == 50)
        #expect(StreamSnapshots.due(after: 50, upTo: 51) == nil)
        #expect(StreamSnapshots.due(after: 48, upTo: 103) == 100)
        #expect(StreamSnapshots.due(after: 100, upTo: 100) == nil)
        #expect(StreamSnapshots.due(after: 3, upTo: 9, every: 0) == nil)
    }

    /// A toy fold: the count and the sum of the events' `n`.
    struct Tally: Sendable, Equatable, Codable {
        var count: Int64 = 0
        var sum: Int64 = 0
        mutating func apply(_ e: JournalEvent) throws {
            let object = try JSONSerialization.jsonObject(with: Data(e.data.utf8)) as? [String: Any]
            count += 1
            sum += (object?["n"] as? Int64) ?? Int64((object?["n"] as? Int) ?? 0)
        }
        var json: String { String(decoding: try! JSONEncoder().encode(self), as: UTF8.self) }
        static func decode(_ s: JournalSnapshot) -> Tally? {
            try? JSONDecoder().decode(Tally.self, from: Data(s.data.utf8))
        }
    }

    @Test(arguments: journalStoreKinds())
    func aSnapshotIsWrittenAtNAndRecoveryFromItEqualsTheWholeStream(kind: JournalStoreKind) async throws {
        try await Self.withJournal(kind) { journal, fixture in
            let stream = "tally/1"
            var state = Tally()
            var last: Int64 = 0
            // Appends `count` events as one batch, the way a stream's owner does, with a snapshot when due.
            func grow(by count: Int64) async throws {
                let events = ((last + 1)...(last + count)).map { journalEvent(stream, $0) }
                try await journal.append(events)
                try await journal.awaitDurable(stream: stream, upTo: last + count)
                for e in events { try state.apply(e) }
                if StreamSnapshots.due(after: last, upTo: last + count) != nil {
                    try await journal.saveSnapshot(
                        JournalSnapshot(
                            shard: 1, stream: stream, seq: last + count, data: state.json, at: journalTestTime))
                }
                last += count
            }
            for _ in 0..<49 { try await grow(by: 1) }
            #expect(try await fixture.store.latestSnapshot(stream: stream) == nil)
            try await grow(by: 1)
            let first = try #require(try await fixture.store.latestSnapshot(stream: stream))
            #expect(first.seq == 50)
            #expect(Tally.decode(first) == state)
            // Batches that cross a multiple of N: the snapshot holds the state after the batch.
            for _ in 0..<10 { try await grow(by: 7) }
            #expect(last == 120)
            #expect(try await fixture.store.latestSnapshot(stream: stream)?.seq == 106)

            let recovered = try await journal.recover(stream: stream, decode: Tally.decode)
            #expect(recovered.snapshotSeq == 106)
            #expect(recovered.tail.map(\.seq) == Array(107...120))
            #expect(recovered.lastSeq == 120)
            var fromSnapshot = try #require(recovered.snapshot)
            for e in recovered.tail { try fromSnapshot.apply(e) }
            var fromStream = Tally()
            for e in try await fixture.store.read(stream: stream, afterSeq: 0) { try fromStream.apply(e) }
            #expect(fromSnapshot == fromStream)
            #expect(fromStream == state)

            // A second process (another store on the same database) recovers the same way.
            let other = try await fixture.openAnother()
            let otherJournal = EventJournal(store: other, logger: Self.quietLogger)
            let again = try await otherJournal.recover(stream: stream, decode: Tally.decode)
            #expect(again.snapshot == recovered.snapshot && again.tail == recovered.tail)
            await otherJournal.shutdown()
            await other.close()
        }
    }

    @Test(arguments: journalStoreKinds())
    func anUnreadableSnapshotIsIgnored(kind: JournalStoreKind) async throws {
        try await Self.withJournal(kind) { journal, fixture in
            try await journal.append(journalEvents("tally/2", 1...60))
            try await journal.flush()
            try await journal.saveSnapshot(
                JournalSnapshot(shard: 1, stream: "tally/2", seq: 50, data: #"{"other":true}"#, at: journalTestTime))
            let recovered = try await journal.recover(stream: "tally/2", decode: Tally.decode)
            #expect(recovered.snapshot == nil)
            #expect(recovered.snapshotSeq == 0)
            #expect(recovered.tail.count == 60)
        }
    }

    @Test(arguments: journalStoreKinds())
    func aSnapshotWaitsForItsEventsToBeDurable(kind: JournalStoreKind) async throws {
        try await withJournalStore(kind) { fixture throws in
            let flaky = FlakyJournalStore(fixture.store)
            let journal = EventJournal(
                store: flaky, flushInterval: .milliseconds(1), logger: Self.quietLogger,
                retryDelay: .milliseconds(1), maxRetryDelay: .milliseconds(2))
            flaky.failNext(3)
            try await journal.append(journalEvents("tally/3", 1...50))
            try await journal.saveSnapshot(
                JournalSnapshot(
                    shard: 1, stream: "tally/3", seq: 50, data: Tally(count: 50, sum: 1275).json, at: journalTestTime))
            // Saved only after the events it describes: both are in the store.
            #expect(try await fixture.store.read(stream: "tally/3", afterSeq: 0).count == 50)
            #expect(try await fixture.store.latestSnapshot(stream: "tally/3")?.seq == 50)
            #expect(flaky.attempts >= 4)
            await journal.shutdown()
        }
    }

    // MARK: - The loan book

    static let disbursedAt = Date(timeIntervalSince1970: 1_738_318_530.25)

    static func request(_ application: String, reference: String = "ABFL-778") -> LoanOpeningRequest {
        LoanOpeningRequest(
            loanID: LoanAccountState.loanID(forApplication: application), applicationID: application,
            lenderID: "abfl", lenderReference: reference, customerID: "c-1", merchantID: "croma",
            principalPaise: 10_000_000, annualRateBps: 1200, tenureMonths: 12, disbursedAt: disbursedAt)
    }

    static func book(_ journal: EventJournal) -> LoanBook {
        LoanBook(journal: journal, shards: ShardMap(shards: 16), epoch: { _ in 0 }, now: { disbursedAt })
    }

    @Test func aLoanSnapshotRoundTrips() throws {
        let opened = try LoanOpened(
            applicationID: "app_S1", lenderID: "abfl", lenderReference: "R", customerID: "c", merchantID: "m",
            principalPaise: 5_000_000, annualRateBps: 1500, tenureMonths: 9, disbursedAt: Self.disbursedAt)
        let state = LoanAccountState(opened: opened)
        #expect(LoanAccountState(snapshotData: state.snapshotData()) == state)
        #expect(LoanAccountState(snapshotData: #"{"v":2}"#) == nil)
        #expect(LoanAccountState(snapshotData: "not json") == nil)
        #expect(LoanBook.snapshotEvery == 50)
    }

    @Test(arguments: journalStoreKinds())
    func theLoanBookRecoversFromTheLatestSnapshot(kind: JournalStoreKind) async throws {
        try await Self.withJournal(kind) { journal, _ in
            try await Self.book(journal).openLoan(Self.request("app_L1"))
            let loanID = LoanAccountState.loanID(forApplication: "app_L1")
            let stream = LoanBook.streamName(loanID)
            let full = try #require(try await Self.book(journal).account(loanID))
            let fullState = await full.state

            // A snapshot of the same state: recovery from it equals recovery from the stream.
            try await journal.saveSnapshot(
                JournalSnapshot(shard: 1, stream: stream, seq: 1, data: fullState.snapshotData(), at: Self.disbursedAt))
            let viaSnapshot = try #require(try await Self.book(journal).account(loanID))
            #expect(await viaSnapshot.state == fullState)

            // The book really reads the snapshot: one that (for this test only) differs from the
            // events is what comes back.
            let marked = try LoanOpened(
                applicationID: "app_L1", lenderID: "abfl", lenderReference: "FROM-SNAPSHOT", customerID: "c-1",
                merchantID: "croma", principalPaise: 10_000_000, annualRateBps: 1200, tenureMonths: 12,
                disbursedAt: Self.disbursedAt)
            try await journal.saveSnapshot(
                JournalSnapshot(
                    shard: 1, stream: stream, seq: 1, data: LoanAccountState(opened: marked).snapshotData(),
                    at: Self.disbursedAt))
            let marker = try #require(try await Self.book(journal).account(loanID))
            #expect(await marker.state.opened.lenderReference == "FROM-SNAPSHOT")

            #expect(try await Self.book(journal).account("loan_nothing") == nil)
        }
    }

    /// A retry of an opening (after a restart or a hand-over, when the book's memory is empty)
    /// does not read the journal first: the journal refuses the second seq 1, the first opening
    /// stands, and the loan's stream takes later events again.
    @Test(arguments: journalStoreKinds())
    func openingALoanTheJournalHasAlreadyKeepsTheFirst(kind: JournalStoreKind) async throws {
        try await Self.withJournal(kind) { journal, fixture in
            try await Self.book(journal).openLoan(Self.request("app_L3", reference: "FIRST"))
            let loanID = LoanAccountState.loanID(forApplication: "app_L3")
            let stream = LoanBook.streamName(loanID)

            let again = Self.book(journal)
            try await again.openLoan(Self.request("app_L3", reference: "SECOND"))
            let account = try #require(try await again.account(loanID))
            #expect(await account.state.opened.lenderReference == "FIRST")
            #expect(try await fixture.store.read(stream: stream, afterSeq: 0).map(\.seq) == [1])

            try await journal.append([
                JournalEvent(
                    shard: ShardMap(shards: 16).shard(for: loanID), stream: stream, seq: 2, type: "TestMark",
                    data: "{}", writerEpoch: 0, at: Self.disbursedAt)
            ])
            try await journal.awaitDurable(stream: stream, upTo: 2)
            #expect(try await fixture.store.read(stream: stream, afterSeq: 0).map(\.seq) == [1, 2])
        }
    }

    @Test func recordRefusesASecondOpening() async throws {
        try await Self.withJournal(.sqlite) { journal, _ in
            let book = Self.book(journal)
            try await book.openLoan(Self.request("app_L2"))
            let opened = try LoanOpened(
                applicationID: "app_L2", lenderID: "abfl", lenderReference: "X", customerID: "c-1",
                merchantID: "croma", principalPaise: 10_000_000, annualRateBps: 1200, tenureMonths: 12,
                disbursedAt: Self.disbursedAt)
            await #expect(throws: LoanBookError.self) {
                _ = try await book.record([.opened(opened)], loanID: "loan_L2")
            }
            await #expect(throws: LoanBookError.self) { _ = try await book.record([], loanID: "loan_none") }
            #expect(try await book.record([], loanID: "loan_L2").id == "loan_L2")
        }
    }
}
