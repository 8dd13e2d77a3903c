import Crypto
import Foundation
import Logging

public enum SwitchboardError: Error, Sendable, Equatable {
    case idempotencyConflict(existingID: String)
    case liveApplicationExists(id: String)
    case journalUnavailable(String)
    case notFound
    /// The stream exists but cannot be read back (a bug or a damaged journal).
    case corrupt(String)
}

/// The node's applications: creates them (idempotently), finds them (in memory or from the
/// journal), recovers the unfinished ones at start-up, and keeps the rule "one live application
/// per customer per merchant".
public actor Switchboard {
    private let services: ApplicationServices
    private var live: [String: LoanApplication] = [:]
    /// merchant + customer → the id of their live application.
    private var liveByCustomer: [String: String] = [:]
    private var customerOf: [String: String] = [:]
    /// Loads and creations in progress, so concurrent calls for one id share one actor.
    private var loading: [String: Task<LoanApplication?, any Error>] = [:]
    /// Creations in progress (by id): a concurrent replay of the same POST waits for the first.
    private var creating: [String: [CheckedContinuation<Void, Never>]] = [:]
    /// Recently finished applications (GET after the answer); the oldest is forgotten first.
    private var terminalCache = FIFOCache<String, LoanApplication>(capacity: 10_000)

    public init(services: ApplicationServices) {
        self.services = services
    }

    /// `init` takes the services before `onSettled` can point back at the switchboard; the node
    /// wires `settled(_:_:)` into them.
    public func settled(_ id: String, _ status: ApplicationStatus) {
        if let key = customerOf.removeValue(forKey: id), liveByCustomer[key] == id {
            liveByCustomer.removeValue(forKey: key)
        }
        guard let app = live.removeValue(forKey: id) else { return }
        if status.isTerminal {
            terminalCache.insert(app, for: id)
        }
    }

    public var liveCount: Int { live.count }

    // MARK: - Identity

    /// Deterministic: the same merchant, customer and Idempotency-Key always name the same
    /// application, on any node, so a retried POST finds the first one. The first 8 hex digits
    /// hash merchant and customer (`ShardMap` routes by them: one customer's applications share a
    /// shard, so "one live application per customer" is decided by one owner); the other 16 hash
    /// merchant and key.
    public static func applicationID(merchantID: String, customerID: String, idempotencyKey: String) -> String {
        let customer = SHA256.hash(data: Data("\(merchantID)\u{0}\(customerID)".utf8))
        let key = SHA256.hash(data: Data("\(merchantID)\u{0}\(idempotencyKey)".utf8))
        return "app_" + hex(customer.prefix(4)) + hex(key.prefix(8))
    }

    /// The journal stream that claims an Idempotency-Key for one application (seq 1, written
    /// once): the journal's uniqueness on (stream, seq) makes a key name one application even
    /// when two requests with different customers land on different shards.
    public static func idempotencyStream(merchantID: String, idempotencyKey: String) -> String {
        "idem/" + hex(SHA256.hash(data: Data("\(merchantID)\u{0}\(idempotencyKey)".utf8)).prefix(16))
    }

    private static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var s = ""
        for b in bytes {
            s.append(Character(Unicode.Scalar(hexDigits[Int(b >> 4)])))
            s.append(Character(Unicode.Scalar(hexDigits[Int(b & 0xf)])))
        }
        return s
    }
    private static let hexDigits = Array("0123456789abcdef".utf8)

    public static func requestHash(_ body: JSONValue) -> String {
        hex(SHA256.hash(data: JSONWriter.bytes(body)))
    }

    // MARK: - Create

    /// Creates the application or, for a replayed Idempotency-Key with the same body, returns the
    /// existing one (`created == false`).
    public func create(
        request: CheckoutRequest, idempotencyKey: String, decision: RuleDecision
    ) async throws(SwitchboardError) -> (application: LoanApplication, created: Bool) {
        let id = Self.applicationID(
            merchantID: request.merchantID, customerID: request.customerID, idempotencyKey: idempotencyKey)
        let hash = Self.requestHash(request.raw)
        // One create per id at a time: a concurrent replay waits for the first and then finds it.
        while creating[id] != nil {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in creating[id]?.append(c) }
        }
        if let existing = live[id] ?? terminalCache[id] {
            guard await existing.requestHash == hash else { throw .idempotencyConflict(existingID: id) }
            return (existing, false)
        }
        creating[id] = []
        defer { for waiter in creating.removeValue(forKey: id) ?? [] { waiter.resume() } }
        let shard = services.shards.shard(for: id)
        guard let epoch = services.epoch(shard) else {
            throw .journalUnavailable("this node does not own the application's shard")
        }
        let claimStream = Self.idempotencyStream(merchantID: request.merchantID, idempotencyKey: idempotencyKey)
        let customerKey = "\(request.merchantID)\u{0}\(request.customerID)"
        if let other = liveByCustomer[customerKey], other != id {
            // The settled notice may still be on its way: ask the application itself.
            if let app = live[other], await !app.status.isTerminal {
                // A replay of an earlier application of this customer is still answered as one.
                if let holder = try await claimHolder(claimStream) {
                    if holder != id { throw .idempotencyConflict(existingID: holder) }
                    if let existing = try await find(id) {
                        guard await existing.requestHash == hash else { throw .idempotencyConflict(existingID: id) }
                        return (existing, false)
                    }
                }
                throw .liveApplicationExists(id: other)
            }
        }
        let now = services.now()
        let received = ApplicationEvent.received(
            .init(
                applicationID: id, merchantID: request.merchantID, customerID: request.customerID,
                idempotencyKey: idempotencyKey, requestHash: hash, request: request.raw, at: now))
        let ranked = ApplicationEvent.ranked(
            .init(
                rulesetVersion: decision.version, lenders: decision.ranked.map(\.lenderID),
                scores: decision.ranked.map(\.score),
                excluded: decision.excluded.map { .init(lenderID: $0.lenderID, failed: $0.failed) }))
        let app = LoanApplication(
            id: id, request: request, saga: WaterfallSaga(policy: services.policy), seq: 0, epoch: epoch,
            services: services)
        live[id] = app
        liveByCustomer[customerKey] = id
        customerOf[id] = customerKey
        func forgetApp() {
            live.removeValue(forKey: id)
            if liveByCustomer[customerKey] == id { liveByCustomer.removeValue(forKey: customerKey) }
            customerOf.removeValue(forKey: id)
        }
        // The key's claim and the application's first events go to the journal together: one
        // durability wait for the 201 instead of two (Docs/api.md, "The key is claimed"). The
        // claim is refused when the key was claimed before; the application's events are refused
        // when the application exists already.
        let begun: LoanApplication.Beginning
        do {
            begun = try await app.begin(
                events: [received, ranked],
                claim: Self.claimEvent(claimStream, for: id, shard: shard, epoch: epoch, at: now))
        } catch {
            forgetApp()
            throw .journalUnavailable("\(error)")
        }
        switch (begun.claimed, begun.stored) {
        case (true, true):
            break
        case (false, true):
            // The key was claimed before. By this application (an earlier attempt whose first
            // events were not stored), it goes on; by another, this one never was: it is voided.
            // Should the answer fail, it is forgotten unstarted: its next load checks again.
            let holder: String?
            do { holder = try await claimHolder(claimStream) } catch {
                forgetApp()
                throw error
            }
            if holder != id {
                forgetApp()
                try await void(id, afterSeq: begun.lastSeq, shard: shard, epoch: epoch, holder: holder)
                throw .idempotencyConflict(existingID: holder ?? id)
            }
        case (_, false):
            // The application exists: a replay (or a request whose key another one holds).
            forgetApp()
            do { try await services.journal.clearRefusal(stream: LoanApplication.streamName(id)) } catch {
                throw .journalUnavailable("\(error)")
            }
            if let holder = try await claimHolder(claimStream), holder != id {
                throw .idempotencyConflict(existingID: holder)
            }
            guard let existing = try await find(id) else {
                throw .journalUnavailable("the application \(id) is not readable yet; retry")
            }
            guard await existing.requestHash == hash else { throw .idempotencyConflict(existingID: id) }
            return (existing, false)
        }
        await app.run(recovered: false)
        return (app, true)
    }

    /// The `IdempotencyKeyClaimed` event that claims `stream` for application `id` (seq 1).
    static func claimEvent(_ stream: String, for id: String, shard: Int, epoch: Int64, at: Date) -> JournalEvent {
        JournalEvent(
            shard: shard, stream: stream, seq: 1, type: claimType,
            data: JSONValue.object(["application_id": .string(id)]).jsonString(), writerEpoch: epoch,
            at: at, closesStream: true)
    }
    static let claimType = "IdempotencyKeyClaimed"
    /// Closes an application whose key another application holds: it was never acknowledged,
    /// and reads treat it as absent.
    static let voidedType = "ApplicationVoided"

    /// The application that holds the key claimed by `stream`, nil when nobody claimed it. Clears
    /// a refusal of the stream first (a claim that was just refused).
    private func claimHolder(_ stream: String) async throws(SwitchboardError) -> String? {
        do {
            try await services.journal.clearRefusal(stream: stream)
            guard let first = try await services.journal.read(stream: stream).first else { return nil }
            guard let data = try? JSONValue.parse(Data(first.data.utf8)),
                let holder = data["application_id"]?.stringValue
            else { throw SwitchboardError.corrupt("\(stream): unreadable Idempotency-Key claim") }
            return holder
        } catch let error as SwitchboardError {
            throw error
        } catch {
            throw .journalUnavailable("\(error)")
        }
    }

    /// Appends `ApplicationVoided` (closing the stream) after `afterSeq` and waits until it is
    /// durable.
    private func void(
        _ id: String, afterSeq: Int64, shard: Int, epoch: Int64, holder: String?
    ) async throws(SwitchboardError) {
        let stream = LoanApplication.streamName(id)
        var data: [String: JSONValue] = ["reason": .string("the Idempotency-Key is held by another application")]
        if let holder { data["holder"] = .string(holder) }
        let event = JournalEvent(
            shard: shard, stream: stream, seq: afterSeq + 1, type: Self.voidedType,
            data: JSONValue.object(data).jsonString(), writerEpoch: epoch, at: services.now(), closesStream: true)
        do {
            try await services.journal.append([event])
            try await services.journal.awaitDurable(stream: stream, upTo: event.seq)
        } catch {
            throw .journalUnavailable("\(error)")
        }
    }

    // MARK: - Shards moving away

    /// Stops acting for `shards` (they are being handed to another node): every live application
    /// of them finishes the lender call it is in, journals what it decided and stops; cached ones
    /// are forgotten. The caller flushes the journal afterwards.
    public func release(shards: Set<Int>) async {
        let leaving = live.filter { shards.contains($0.value.shard) }
        await withTaskGroup(of: Void.self) { group in
            for (_, app) in leaving { group.addTask { await app.suspend() } }
        }
        for (id, _) in leaving {
            live.removeValue(forKey: id)
            if let key = customerOf.removeValue(forKey: id), liveByCustomer[key] == id {
                liveByCustomer.removeValue(forKey: key)
            }
        }
        terminalCache.removeAll { _, app in shards.contains(app.shard) }
    }

    // MARK: - Find

    /// The application with this id: live in memory, recently finished, or reloaded from the journal.
    public func find(_ id: String) async throws(SwitchboardError) -> LoanApplication? {
        if let app = live[id] ?? terminalCache[id] { return app }
        if let task = loading[id] {
            do { return try await task.value } catch { throw error as? SwitchboardError ?? .corrupt("\(error)") }
        }
        let task = Task { () async throws -> LoanApplication? in try await self.load(id) }
        loading[id] = task
        defer { loading.removeValue(forKey: id) }
        do {
            return try await task.value
        } catch {
            throw error as? SwitchboardError ?? .corrupt("\(error)")
        }
    }

    private func load(_ id: String) async throws(SwitchboardError) -> LoanApplication? {
        let events: [JournalEvent]
        do {
            events = try await services.journal.read(stream: LoanApplication.streamName(id))
        } catch {
            throw .journalUnavailable("\(error)")
        }
        guard !events.isEmpty else { return nil }
        // Voided: its key belongs to another application; it was never acknowledged.
        if events.contains(where: { $0.type == Self.voidedType }) { return nil }
        var saga = WaterfallSaga(policy: services.policy)
        for e in events {
            do { saga.apply(try ApplicationEvent.decode(type: e.type, data: e.data)) } catch {
                throw .corrupt("\(id) seq \(e.seq): \(error.message)")
            }
        }
        guard let received = saga.received else { throw .corrupt("\(id) has no ApplicationReceived event") }
        let request: CheckoutRequest
        do { request = try CheckoutRequest(json: received.request) } catch {
            throw .corrupt("\(id): stored request no longer valid: \(error.message)")
        }
        guard let epoch = services.epoch(services.shards.shard(for: id)) else {
            // Not this node's shard (a request that raced a hand-over): a read-only view that
            // never runs and is not kept; anything it would append is fenced by the journal.
            return LoanApplication(
                id: id, request: request, saga: saga, seq: events.last!.seq, epoch: 0, services: services)
        }
        if !saga.status.isTerminal {
            // Its first events and its key's claim were written together: before it runs again,
            // the claim must name it (a node that stopped between a refused claim and the void
            // left it unfinished). A key nobody claimed yet is claimed now.
            let claimStream = Self.idempotencyStream(
                merchantID: received.merchantID, idempotencyKey: received.idempotencyKey)
            var holder = try await claimHolder(claimStream)
            if holder == nil {
                let claim = Self.claimEvent(
                    claimStream, for: id, shard: services.shards.shard(for: id), epoch: epoch, at: services.now())
                do {
                    try await services.journal.append([claim])
                    try await services.journal.awaitDurable(stream: claimStream, upTo: 1)
                    holder = id
                } catch .refused(_, .sequenceConflict) {
                    holder = try await claimHolder(claimStream)
                } catch {
                    throw .journalUnavailable("\(error)")
                }
            }
            if holder != id {
                try await void(
                    id, afterSeq: events.last!.seq, shard: services.shards.shard(for: id), epoch: epoch, holder: holder)
                return nil
            }
        }
        let app = LoanApplication(
            id: id, request: request, saga: saga, seq: events.last!.seq, epoch: epoch, services: services)
        if saga.status.isTerminal {
            terminalCache.insert(app, for: id)
        } else {
            live[id] = app
            let key = "\(request.merchantID)\u{0}\(request.customerID)"
            liveByCustomer[key] = id
            customerOf[id] = key
            await app.run(recovered: true)
        }
        return app
    }

    // MARK: - Recovery

    /// Brings back every unfinished application of the given shards and carries it on.
    /// Returns how many were resumed.
    @discardableResult
    public func recover(shards: [Int]) async throws(SwitchboardError) -> Int {
        let ids: [String]
        do {
            ids = try await services.journal.openStreams(shards: shards, prefix: "app/")
        } catch {
            throw .journalUnavailable("\(error)")
        }
        var resumed = 0
        for stream in ids {
            let id = String(stream.dropFirst("app/".count))
            do {
                if try await find(id) != nil { resumed += 1 }
            } catch {
                services.logger.error(
                    "cannot recover application", metadata: ["application": "\(id)", "error": "\(error)"])
            }
        }
        return resumed
    }
}
