import Foundation
import Logging
import Testing

@testable import FluxActors

/// Handing an application over (its shard released: a graceful shutdown, a rebalance) while it
/// is between the lender's disbursal and its loan account.
@Suite struct ApplicationHandOverTests {
    static let quiet = Logger(label: "flux.handover.test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A loan book that cannot write (what `LoanBook` answers once the shard's epoch is gone).
    final class RefusingLoans: LoanOpening {
        let attempts = LenderTestLock<Int>(0)
        func openLoan(_ request: LoanOpeningRequest) async throws {
            attempts.withLock { $0 += 1 }
            throw LoanBookError.journalUnavailable("this node no longer holds the shard")
        }
    }

    @Test func releasingAShardDoesNotWaitForALoanThatCannotBeOpenedHere() async throws {
        try await withJournalStore(.sqlite) { store in
            let journal = EventJournal(store: store.store, flushInterval: .milliseconds(1), logger: Self.quiet)
            await journal.start()
            let loans = RefusingLoans()
            let shards = ShardMap(shards: 4)
            let services = ApplicationServices(
                journal: journal, gateway: InstantLender(reference: "H-1"), loans: loans, policy: SagaPolicy(),
                shards: shards,
                epoch: { _ in 1 }, now: { Date() }, logger: Self.quiet, onSettled: { _, _ in })
            let switchboard = Switchboard(services: services)
            let request = try CheckoutRequest(json: LenderFixtures.checkoutJSON)
            let (app, created) = try await switchboard.create(
                request: request, idempotencyKey: "handover-1",
                decision: RuleDecision(
                    version: 1, ranked: [RankedLender(lenderID: "hero", score: 1)], excluded: []))
            #expect(created)
            // Wait until the application is retrying its loan account.
            let deadline = ContinuousClock.now + .seconds(10)
            while loans.attempts.withLock({ $0 }) < 2, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(loans.attempts.withLock { $0 } >= 2)

            // The hand-over finishes although the loan can never be opened on this node.
            let released = LenderTestLock<Bool>(false)
            let release = Task {
                await switchboard.release(shards: Set(0..<shards.shards))
                released.withLock { $0 = true }
            }
            let releaseDeadline = ContinuousClock.now + .seconds(10)
            while !released.withLock({ $0 }), ContinuousClock.now < releaseDeadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(released.withLock { $0 }, "release waited for a loan account that cannot be opened here")
            release.cancel()

            // It stopped retrying, and did not claim a disbursal it never booked: the journal
            // still shows it disbursing, so its next owner disburses (idempotently) and opens it.
            let attempts = loans.attempts.withLock { $0 }
            try await Task.sleep(for: .milliseconds(100))
            #expect(loans.attempts.withLock { $0 } == attempts)
            #expect(await app.status != .disbursed)
            try await journal.flush()
            let events = try await journal.read(stream: LoanApplication.streamName(app.id))
            #expect(!events.contains { $0.type == "ApplicationDisbursed" })
            #expect(events.contains { $0.type == "ApplicationApproved" })
            await journal.shutdown()
        }
    }
}
