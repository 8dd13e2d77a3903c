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
    private let maxCachedTerminal = 10_000
    private var terminalCache: [String: LoanApplication] = [:]
    private var terminalOrder: [String] = []

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
            terminalCache[id] = app
            terminalOrder.append(id)
            while terminalOrder.count > maxCachedTerminal {
                terminalCache.removeValue(forKey: terminalOrder.removeFirst())
            }
        }
    }

    public var liveCount: Int { live.count }

    // MARK: - Identity

    /// Deterministic: the same merchant and Idempotency-Key always name the same application, on
    /// any node, so a retried POST finds the first one.
    public static func applicationID(merchantID: String, idempotencyKey: String) -> String {
        let digest = SHA256.hash(data: Data("\(merchantID)\u{0}\(idempotencyKey)".utf8))
        return "app_" + digest.prefix(12).map { String(format: "%02x", $0) }.joined()
    }

    public static func requestHash(_ body: JSONValue) -> String {
        SHA256.hash(data: body.jsonData()).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: - Create

    /// Creates the application or, for a replayed Idempotency-Key with the same body, returns the
    /// existing one (`created == false`).
    public func create(
        request: CheckoutRequest, idempotencyKey: String, decision: RuleDecision
    ) async throws(SwitchboardError) -> (application: LoanApplication, created: Bool) {
        let id = Self.applicationID(merchantID: request.merchantID, idempotencyKey: idempotencyKey)
        let hash = Self.requestHash(request.raw)
        if let existing = try await find(id) {
            guard await existing.requestHash == hash else { throw .idempotencyConflict(existingID: id) }
            return (existing, false)
        }
        let customerKey = "\(request.merchantID)\u{0}\(request.customerID)"
        if let other = liveByCustomer[customerKey], other != id {
            // The settled notice may still be on its way: ask the application itself.
            if let app = live[other], await !app.status.isTerminal { throw .liveApplicationExists(id: other) }
        }
        // Re-check after the awaits above: another call may have created it meanwhile.
        if let existing = live[id] {
            guard await existing.requestHash == hash else { throw .idempotencyConflict(existingID: id) }
            return (existing, false)
        }
        guard let epoch = services.epoch(services.shards.shard(for: id)) else {
            throw .journalUnavailable("this node does not own the application's shard")
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
        do {
            try await app.begin(events: [received, ranked])
        } catch {
            live.removeValue(forKey: id)
            if liveByCustomer[customerKey] == id { liveByCustomer.removeValue(forKey: customerKey) }
            customerOf.removeValue(forKey: id)
            throw .journalUnavailable("\(error)")
        }
        await app.run(recovered: false)
        return (app, true)
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
        let epoch = services.epoch(services.shards.shard(for: id)) ?? 0
        let app = LoanApplication(
            id: id, request: request, saga: saga, seq: events.last!.seq, epoch: epoch, services: services)
        if saga.status.isTerminal {
            terminalCache[id] = app
            terminalOrder.append(id)
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
