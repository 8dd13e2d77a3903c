import Foundation

/// All lenders of this node, by id: the `LenderGateway` the waterfall uses. Descriptors can be
/// replaced at runtime; a call already running finishes on the connection it started on.
///
/// `@unchecked Sendable`: the only mutable state, `entries`, is read and written under `lock`,
/// and every value stored in it is itself `Sendable`.
public final class LenderDirectory: LenderGateway, @unchecked Sendable {
    /// Compiles one `validate` condition (rules-expression text) into a check. Throws with a
    /// message when the text does not compile. The lead wires the rules engine's `Condition` in.
    public typealias ConditionCompiler =
        @Sendable (String) throws -> @Sendable (CheckoutRequest, Date) -> Bool

    struct Entry: Sendable {
        var connection: LenderConnection
        var conditions: [(text: String, holds: @Sendable (CheckoutRequest, Date) -> Bool)]
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private let transport: any HTTPTransport
    private let compileCondition: ConditionCompiler
    private let clock: LenderClock
    private let options: LenderConnectionOptions

    public init(
        descriptors: [ConnectorDescriptor], transport: any HTTPTransport, compileCondition: @escaping ConditionCompiler,
        clock: LenderClock = .system, options: LenderConnectionOptions = LenderConnectionOptions()
    ) throws(DescriptorError) {
        self.transport = transport
        self.compileCondition = compileCondition
        self.clock = clock
        self.options = options
        for d in descriptors { try replace(d) }
    }

    /// Adds or hot-swaps a lender. Its `validate` conditions are compiled first: one that does not
    /// compile is a `DescriptorError` at `$.validate[i]` and the old descriptor stays in force.
    /// The new connection starts with a closed circuit, fresh stats and no cached token.
    public func replace(_ descriptor: ConnectorDescriptor) throws(DescriptorError) {
        var conditions: [(text: String, holds: @Sendable (CheckoutRequest, Date) -> Bool)] = []
        for (i, text) in descriptor.validate.enumerated() {
            do {
                conditions.append((text, try compileCondition(text)))
            } catch {
                throw DescriptorError(path: "$.validate[\(i)]", message: "\(error)")
            }
        }
        let connection = LenderConnection(descriptor: descriptor, transport: transport, clock: clock, options: options)
        lock.withLock { entries[descriptor.id] = Entry(connection: connection, conditions: conditions) }
    }

    public func remove(lenderID: String) {
        _ = lock.withLock { entries.removeValue(forKey: lenderID) }
    }

    public func connection(_ lenderID: String) -> LenderConnection? { lock.withLock { entries[lenderID]?.connection } }

    public var lenderIDs: [String] { lock.withLock { entries.keys.sorted() } }

    private func entry(_ id: String) -> Entry? { lock.withLock { entries[id] } }

    // MARK: LenderGateway

    public func admit(lenderID: String, context: LenderCallContext) async -> Admission {
        guard let e = entry(lenderID) else { return .unknownLender }
        let now = clock.wallNow()
        for c in e.conditions where !c.holds(context.request, now) { return .validationFailed(c.text) }
        return await e.connection.admit(context) ? .permitted : .circuitOpen
    }

    public func apply(lenderID: String, context: LenderCallContext) async -> LenderCall<ApplyOutcome> {
        guard let e = entry(lenderID) else {
            return LenderCall(outcome: .failed(reason: "no connector descriptor"), tries: 0, latencyMs: 0)
        }
        return await e.connection.apply(context)
    }

    public func status(lenderID: String, context: LenderCallContext) async -> LenderCall<StatusOutcome> {
        guard let e = entry(lenderID) else {
            return LenderCall(outcome: .unknown(reason: "no connector descriptor"), tries: 0, latencyMs: 0)
        }
        return await e.connection.status(context)
    }

    public func disburse(lenderID: String, context: LenderCallContext) async -> LenderCall<DisburseOutcome> {
        guard let e = entry(lenderID) else {
            return LenderCall(outcome: .unknown(reason: "no connector descriptor"), tries: 0, latencyMs: 0)
        }
        return await e.connection.disburse(context)
    }

    public func cancel(lenderID: String, context: LenderCallContext) async -> LenderCall<CancelOutcome>? {
        guard let e = entry(lenderID) else { return nil }
        return await e.connection.cancel(context)
    }

    // MARK: GET /v1/lenders

    /// One object per lender, sorted by id, in the CONTRACT §2 shape:
    /// `{"id", "name", "base_url", "circuit", "stats": {…}, "descriptor": {redacted}}`.
    public func list() async -> [JSONValue] {
        let all = lock.withLock { entries.values.map(\.connection) }.sorted { $0.descriptor.id < $1.descriptor.id }
        var out: [JSONValue] = []
        for c in all {
            let d = c.descriptor
            let s = await c.currentStats()
            let state = await c.breaker.state
            let circuit: String = state == .disabled ? "closed" : state.rawValue
            out.append([
                "id": .string(d.id), "name": .string(d.name), "base_url": .string(d.baseURL),
                "circuit": .string(circuit),
                "stats": [
                    "calls": .int(Int64(s.calls)), "approved": .int(Int64(s.approved)),
                    "rejected": .int(Int64(s.rejected)), "errors": .int(Int64(s.errors)),
                    "timeouts": .int(Int64(s.timeouts)),
                    "approval_rate": .double((s.approvalRate * 10000).rounded() / 10000),
                    "p50_ms": .int(Int64(s.p50Ms)), "p99_ms": .int(Int64(s.p99Ms)),
                ],
                "descriptor": d.redacted,
            ])
        }
        return out
    }
}
