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

    /// Makes the transport of a lender that needs one of its own (an mTLS lender's client
    /// certificate); nil: the shared transport. Throws when it cannot be made.
    public typealias TransportMaker = @Sendable (ConnectorDescriptor) throws -> (any HTTPTransport)?

    struct Entry: Sendable {
        var connection: LenderConnection
        var conditions: [(text: String, holds: @Sendable (CheckoutRequest, Date) -> Bool)]
        /// The lender's own transport (mTLS), shut down some time after the entry is replaced.
        var ownTransport: (any HTTPTransport)?
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private let transport: any HTTPTransport
    private let makeTransport: TransportMaker
    private let compileCondition: ConditionCompiler
    private let clock: LenderClock
    private let options: LenderConnectionOptions
    /// How long a replaced lender's own transport stays up for the calls still running on it.
    public var retiredTransportGrace: Duration = .seconds(120)

    public init(
        descriptors: [ConnectorDescriptor], transport: any HTTPTransport, compileCondition: @escaping ConditionCompiler,
        clock: LenderClock = .system, options: LenderConnectionOptions = LenderConnectionOptions(),
        makeTransport: @escaping TransportMaker = { _ in nil }
    ) throws(DescriptorError) {
        self.transport = transport
        self.makeTransport = makeTransport
        self.compileCondition = compileCondition
        self.clock = clock
        self.options = options
        for d in descriptors { try install(d) }
    }

    /// Adds or hot-swaps a lender. Its `validate` conditions are compiled first: one that does not
    /// compile is a `DescriptorError` at `$.validate[i]` and the old descriptor stays in force.
    /// The new connection starts with a closed circuit, fresh stats and no cached token — except
    /// that an operator's `forced_open` carries over (a reload must not silently reopen traffic).
    public func replace(_ descriptor: ConnectorDescriptor) async throws(DescriptorError) {
        let (entry, old) = try install(descriptor)
        if let old, await old.connection.breaker.state == .forcedOpen {
            await entry.connection.breaker.forceOpen()
        }
    }

    /// The synchronous part of `replace` (start-up uses it before any call runs).
    @discardableResult
    private func install(_ descriptor: ConnectorDescriptor) throws(DescriptorError) -> (Entry, Entry?) {
        var conditions: [(text: String, holds: @Sendable (CheckoutRequest, Date) -> Bool)] = []
        for (i, text) in descriptor.validate.enumerated() {
            do {
                conditions.append((text, try compileCondition(text)))
            } catch {
                throw DescriptorError(path: "$.validate[\(i)]", message: "\(error)")
            }
        }
        let own: (any HTTPTransport)?
        do {
            own = try makeTransport(descriptor)
        } catch {
            throw DescriptorError(path: "$.auth", message: "the lender's TLS client cannot be made: \(error)")
        }
        let connection = LenderConnection(
            descriptor: descriptor, transport: own ?? transport, clock: clock, options: options)
        let entry = Entry(connection: connection, conditions: conditions, ownTransport: own)
        let old = lock.withLock { entries.updateValue(entry, forKey: descriptor.id) }
        retire(old)
        return (entry, old)
    }

    public func remove(lenderID: String) {
        retire(lock.withLock { entries.removeValue(forKey: lenderID) })
    }

    private func retire(_ old: Entry?) {
        guard let t = old?.ownTransport else { return }
        let grace = retiredTransportGrace
        Task {
            try? await Task.sleep(for: grace)
            await t.shutdown()
        }
    }

    /// Shuts down every lender's own transport (the shared one belongs to the caller).
    public func shutdown() async {
        let all = lock.withLock { entries.values.compactMap(\.ownTransport) }
        for t in all { await t.shutdown() }
    }

    /// Whether a lender has a descriptor now (the rules' `hasConnector`).
    public func contains(_ lenderID: String) -> Bool { lock.withLock { entries[lenderID] != nil } }

    /// The ops override: `forced_open` refuses every `apply`; `closed` resets to CLOSED with an
    /// empty window. Returns false for an unknown lender.
    public func setCircuit(lenderID: String, forcedOpen: Bool) async -> Bool {
        guard let c = connection(lenderID) else { return false }
        if forcedOpen { await c.breaker.forceOpen() } else { await c.breaker.reset() }
        return true
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
        for c in all { out.append(await Self.describe(c)) }
        return out
    }

    /// One lender's `GET /v1/lenders` object; nil for an unknown lender.
    public func describe(lenderID: String) async -> JSONValue? {
        guard let c = connection(lenderID) else { return nil }
        return await Self.describe(c)
    }

    static func describe(_ c: LenderConnection) async -> JSONValue {
        let d = c.descriptor
        let s = await c.currentStats()
        let state = await c.breaker.state
        let circuit: String = state == .disabled ? "closed" : state.rawValue
        return [
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
        ]
    }
}
