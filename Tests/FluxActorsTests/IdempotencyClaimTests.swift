import Foundation
import Logging
import Testing

@testable import FluxActors

/// The Idempotency-Key's claim is journaled together with the application's first events (one
/// durability wait for the 201). An application whose key another one holds is voided: never
/// acknowledged, absent to every read, never run. Against every store.
@Suite("Idempotency-Key claims", .timeLimit(.minutes(1)))
struct IdempotencyClaimTests {
    static let quiet = Logger(label: "flux.claims.test", factory: { _ in SwiftLogNoOpLogHandler() })
    static let shards = ShardMap(shards: 4)

    final class Loans: LoanOpening {
        func openLoan(_ request: LoanOpeningRequest) async throws {}
    }

    static func withSwitchboard(
        _ kind: JournalStoreKind, _ body: (EventJournal, () -> Switchboard) async throws -> Void
    ) async throws {
        try await withJournalStore(kind) { fixture in
            let journal = EventJournal(store: fixture.store, flushInterval: .milliseconds(1), logger: Self.quiet)
            await journal.start()
            let services = ApplicationServices(
                journal: journal, gateway: InstantLender(reference: "C-1"), loans: Loans(), policy: SagaPolicy(),
                shards: Self.shards,
                epoch: { _ in 1 }, now: { Date() }, logger: Self.quiet, onSettled: { _, _ in })
            do {
                try await body(journal) { Switchboard(services: services) }
            } catch {
                await journal.shutdown()
                throw error
            }
            await journal.shutdown()
        }
    }

    static func request(customer: String, amountPaise: Int64 = 7_990_000) throws -> CheckoutRequest {
        try CheckoutRequest(json: [
            "merchant_id": "croma", "store_id": "croma-blr-12",
            "customer": [
                "id": .string(customer), "name": "Asha Rao", "phone": "+919800000001", "pan": "ABCDE1234F",
                "date_of_birth": "1992-04-01", "bureau_score": 762,
            ],
            "loan": ["amount_paise": .int(amountPaise), "tenure_months": 12],
            "mode": "waterfall",
        ])
    }

    static let decision = RuleDecision(version: 1, ranked: [RankedLender(lenderID: "hero", score: 1)], excluded: [])

    static func id(_ customer: String, _ key: String) -> String {
        Switchboard.applicationID(merchantID: "croma", customerID: customer, idempotencyKey: key)
    }

    static func types(_ journal: EventJournal, _ id: String) async throws -> [String] {
        try await journal.read(stream: LoanApplication.streamName(id)).map(\.type)
    }

    /// An unfinished application's first events, written as `create` writes them, without a claim.
    static func storeFirstEvents(_ journal: EventJournal, customer: String, key: String) async throws {
        let id = Self.id(customer, key)
        let request = try Self.request(customer: customer)
        let events: [ApplicationEvent] = [
            .received(
                .init(
                    applicationID: id, merchantID: "croma", customerID: customer, idempotencyKey: key,
                    requestHash: Switchboard.requestHash(request.raw), request: request.raw, at: Date())),
            .ranked(.init(rulesetVersion: 1, lenders: ["hero"], scores: [1], excluded: [])),
        ]
        let stream = LoanApplication.streamName(id)
        try await journal.append(
            events.enumerated().map { index, e in
                JournalEvent(
                    shard: Self.shards.shard(for: id), stream: stream, seq: Int64(index + 1), type: e.typeName,
                    data: e.encodedData(), writerEpoch: 1, at: Date())
            })
        try await journal.awaitDurable(stream: stream, upTo: 2)
    }

    static func claim(_ journal: EventJournal, key: String, for holder: String, shard: Int) async throws {
        let stream = Switchboard.idempotencyStream(merchantID: "croma", idempotencyKey: key)
        try await journal.append([Switchboard.claimEvent(stream, for: holder, shard: shard, epoch: 1, at: Date())])
        try await journal.awaitDurable(stream: stream, upTo: 1)
    }

    static func holder(_ journal: EventJournal, key: String) async throws -> String? {
        let stream = Switchboard.idempotencyStream(merchantID: "croma", idempotencyKey: key)
        guard let first = try await journal.read(stream: stream).first else { return nil }
        return try JSONValue.parse(Data(first.data.utf8))["application_id"]?.stringValue
    }

    @Test(arguments: journalStoreKinds())
    func aKeyAnotherCustomerHoldsIsAConflictAndTheSecondApplicationIsVoided(kind: JournalStoreKind) async throws {
        try await Self.withSwitchboard(kind) { journal, makeSwitchboard in
            let switchboard = makeSwitchboard()
            let first = try await switchboard.create(
                request: Self.request(customer: "c-1"), idempotencyKey: "K-1", decision: Self.decision)
            #expect(first.created)
            #expect(first.application.id == Self.id("c-1", "K-1"))

            let second = Self.id("c-2", "K-1")
            func secondCustomerIsRefused(by board: Switchboard) async {
                await #expect(throws: SwitchboardError.idempotencyConflict(existingID: first.application.id)) {
                    _ = try await board.create(
                        request: Self.request(customer: "c-2"), idempotencyKey: "K-1", decision: Self.decision)
                }
            }
            await secondCustomerIsRefused(by: switchboard)
            #expect(
                try await Self.types(journal, second) == [
                    "ApplicationReceived", "LendersRanked", Switchboard.voidedType,
                ])
            #expect(try await switchboard.find(second) == nil)
            #expect(try await makeSwitchboard().find(second) == nil)
            let open = try await journal.openStreams(shards: Array(0..<Self.shards.shards), prefix: "app/")
            #expect(!open.contains(LoanApplication.streamName(second)))
            #expect(try await Self.holder(journal, key: "K-1") == first.application.id)

            // Asked again, on this node or after a restart: the same answer, nothing more stored.
            for board in [switchboard, makeSwitchboard()] { await secondCustomerIsRefused(by: board) }
            #expect(try await Self.types(journal, second).count == 3)
        }
    }

    @Test(arguments: journalStoreKinds())
    func aReplayIsTheSameApplicationAndADifferentBodyAConflict(kind: JournalStoreKind) async throws {
        try await Self.withSwitchboard(kind) { journal, makeSwitchboard in
            let switchboard = makeSwitchboard()
            let first = try await switchboard.create(
                request: Self.request(customer: "c-1"), idempotencyKey: "K-2", decision: Self.decision)
            // After a restart the replay finds the stored application (its events are refused
            // as already stored; the refusal is cleared and nothing is appended).
            let restarted = makeSwitchboard()
            let replay = try await restarted.create(
                request: Self.request(customer: "c-1"), idempotencyKey: "K-2", decision: Self.decision)
            #expect(!replay.created)
            #expect(replay.application.id == first.application.id)
            await #expect(throws: SwitchboardError.idempotencyConflict(existingID: first.application.id)) {
                _ = try await makeSwitchboard().create(
                    request: Self.request(customer: "c-1", amountPaise: 5_000_000), idempotencyKey: "K-2",
                    decision: Self.decision)
            }
            let types = try await Self.types(journal, first.application.id)
            #expect(types.prefix(2) == ["ApplicationReceived", "LendersRanked"])
            #expect(!types.contains(Switchboard.voidedType))
            #expect(types.filter { $0 == "ApplicationReceived" }.count == 1)
        }
    }

    /// A node that stopped between a refused claim and the void left an unfinished application
    /// whose key another holds: loading it voids it instead of running it.
    @Test(arguments: journalStoreKinds())
    func anApplicationWhoseKeyAnotherHoldsIsVoidedWhenRecovered(kind: JournalStoreKind) async throws {
        try await Self.withSwitchboard(kind) { journal, makeSwitchboard in
            let orphan = Self.id("c-3", "K-3")
            try await Self.claim(journal, key: "K-3", for: Self.id("c-9", "K-3"), shard: 0)
            try await Self.storeFirstEvents(journal, customer: "c-3", key: "K-3")

            let switchboard = makeSwitchboard()
            #expect(try await switchboard.recover(shards: Array(0..<Self.shards.shards)) == 0)
            #expect(try await Self.types(journal, orphan).last == Switchboard.voidedType)
            #expect(try await switchboard.find(orphan) == nil)
            #expect(await switchboard.liveCount == 0)
        }
    }

    /// An unfinished application whose key nobody claimed (its claim was lost with a lane that
    /// failed) claims it when it is loaded, and goes on.
    @Test(arguments: journalStoreKinds())
    func anApplicationWhoseKeyNobodyClaimedClaimsItWhenRecovered(kind: JournalStoreKind) async throws {
        try await Self.withSwitchboard(kind) { journal, makeSwitchboard in
            let id = Self.id("c-4", "K-4")
            try await Self.storeFirstEvents(journal, customer: "c-4", key: "K-4")
            let switchboard = makeSwitchboard()
            #expect(try await switchboard.recover(shards: Array(0..<Self.shards.shards)) == 1)
            #expect(try await Self.holder(journal, key: "K-4") == id)
            let app = try #require(try await switchboard.find(id))
            _ = await app.view(wait: .seconds(5))
            #expect(await app.status == .disbursed)
        }
    }

    /// A claim whose application was never stored (the journal failed after it) does not block
    /// the application: the retry creates it.
    @Test(arguments: journalStoreKinds())
    func aClaimWithoutItsApplicationLetsTheRetryCreateIt(kind: JournalStoreKind) async throws {
        try await Self.withSwitchboard(kind) { journal, makeSwitchboard in
            let id = Self.id("c-5", "K-5")
            try await Self.claim(journal, key: "K-5", for: id, shard: Self.shards.shard(for: id))
            let created = try await makeSwitchboard().create(
                request: Self.request(customer: "c-5"), idempotencyKey: "K-5", decision: Self.decision)
            #expect(created.created)
            #expect(created.application.id == id)
            #expect(try await Self.types(journal, id).prefix(2) == ["ApplicationReceived", "LendersRanked"])
        }
    }
}
