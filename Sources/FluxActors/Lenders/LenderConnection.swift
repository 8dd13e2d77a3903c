import DequeModule
import Foundation
import Metrics

/// Time for a lender connection: a monotonic nanosecond count (breaker, token expiry, latency),
/// the wall clock (templates' `now`) and a sleep (retry backoff, bulkhead wait). Tests inject all three.
public struct LenderClock: Sendable {
    public var nowNanos: @Sendable () -> UInt64
    public var wallNow: @Sendable () -> Date
    public var sleep: @Sendable (Duration) async -> Void

    public init(
        nowNanos: @escaping @Sendable () -> UInt64, wallNow: @escaping @Sendable () -> Date,
        sleep: @escaping @Sendable (Duration) async -> Void
    ) {
        self.nowNanos = nowNanos
        self.wallNow = wallNow
        self.sleep = sleep
    }

    public static let system: LenderClock = {
        let origin = ContinuousClock.now
        return LenderClock(
            nowNanos: {
                let d = ContinuousClock.now - origin
                return UInt64(d.components.seconds) * 1_000_000_000 + UInt64(d.components.attoseconds / 1_000_000_000)
            },
            wallNow: { Date() },
            sleep: { d in try? await Task.sleep(for: d) })
    }()
}

public struct LenderConnectionOptions: Sendable {
    /// Bulkhead: calls in flight at once to this lender.
    public var maxConcurrentCalls = 64
    /// How long an excess call waits for a slot before it fails as "bulkhead full".
    public var bulkheadWaitMs = 50
    /// Calls kept for p50/p99.
    public var latencyWindow = 1000
    /// A permission taken by `admit` and never used by `apply` is given back after this long.
    public var heldPermissionTTLms = 60_000
    /// Seed for the retry jitter (nil: random).
    public var jitterSeed: UInt64? = nil
    /// A token without `expires_in` is kept this long.
    public var defaultTokenLifetimeS = 300

    public init() {}
}

/// SplitMix64: a small, seedable generator for retry jitter.
struct JitterRandom: RandomNumberGenerator, Sendable {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One lender: its compiled descriptor, token cache, bulkhead, circuit breaker, retries,
/// timeouts and stats. The waterfall calls it through `LenderDirectory`.
public actor LenderConnection {
    public nonisolated let descriptor: ConnectorDescriptor
    public nonisolated let breaker: CircuitBreaker
    let transport: any HTTPTransport
    let clock: LenderClock
    let options: LenderConnectionOptions
    var rng: JitterRandom

    // Token cache, oauth2 or workflow (single flight).
    struct CachedToken {
        var value: String
        var renewAt: UInt64
        var expiresAt: UInt64
        /// The workflow's extracted values (`steps.STEP.VARIABLE` in operation templates).
        var steps: [String: [String: JSONValue]] = [:]
    }
    struct TokenUse: Sendable {
        var value: String
        var steps: [String: [String: JSONValue]]
    }
    var token: CachedToken?
    var tokenFetch: Task<Result<TokenUse, CallFailure>, Never>?
    /// Token requests sent (for tests and stats).
    public private(set) var tokenFetches = 0

    // Bulkhead.
    var inFlight = 0
    var waiters: Deque<(id: UInt64, continuation: CheckedContinuation<Bool, Never>)> = []
    var nextWaiterID: UInt64 = 0

    // Permissions taken by `admit`, by idempotency key.
    var held: [String: (permission: CircuitBreaker.Permission, at: UInt64)] = [:]

    // Stats.
    public struct Stats: Sendable, Equatable {
        public var calls = 0
        public var approved = 0
        public var rejected = 0
        public var errors = 0
        public var timeouts = 0
        public var approvalRate: Double {
            approved + rejected == 0 ? 0 : Double(approved) / Double(approved + rejected)
        }
        public var p50Ms = 0
        public var p99Ms = 0
    }
    var stats = Stats()
    var latencies: [Int] = []
    var latencyNext = 0

    // Metrics handles, made once.
    var callCounters: [String: Counter] = [:]
    var timers: [LenderOperation: Metrics.Timer] = [:]

    public init(
        descriptor: ConnectorDescriptor, transport: any HTTPTransport, clock: LenderClock = .system,
        options: LenderConnectionOptions = LenderConnectionOptions()
    ) {
        self.descriptor = descriptor
        self.transport = transport
        self.clock = clock
        self.options = options
        self.breaker = CircuitBreaker(
            lenderID: descriptor.id, config: descriptor.circuitBreaker, nowNanos: clock.nowNanos)
        var seed = options.jitterSeed ?? 0
        if options.jitterSeed == nil {
            var g = SystemRandomNumberGenerator()
            seed = g.next()
        }
        self.rng = JitterRandom(state: seed)
    }

    // MARK: - admission and the circuit

    /// Takes a circuit permission for the next `apply` with this context's idempotency key.
    public func admit(_ context: LenderCallContext) async -> Bool {
        purgeHeld()
        if let old = held.removeValue(forKey: context.idempotencyKey) {
            await breaker.releasePermission(old.permission)
        }
        guard let p = await breaker.tryAcquirePermission() else { return false }
        held[context.idempotencyKey] = (p, clock.nowNanos())
        return true
    }

    private func purgeHeld() {
        let now = clock.nowNanos()
        let ttl = UInt64(options.heldPermissionTTLms) * 1_000_000
        for (k, v) in held where now >= v.at && now - v.at > ttl {
            held[k] = nil
            let b = breaker
            let p = v.permission
            Task { await b.releasePermission(p) }
        }
    }

    // MARK: - operations

    public func apply(_ context: LenderCallContext) async -> LenderCall<ApplyOutcome> {
        purgeHeld()
        let permission: CircuitBreaker.Permission
        if let h = held.removeValue(forKey: context.idempotencyKey) {
            permission = h.permission
        } else if let p = await breaker.tryAcquirePermission() {
            permission = p
        } else {
            return await finish(
                .apply, .failed(reason: "circuit open"), failed: nil, tries: 0, nanos: 0, permission: nil)
        }
        let r = await perform(.apply, context)
        let outcome: ApplyOutcome
        let failed: Bool?
        switch r.result {
        case .notSent(let reason, let countsAsFailure):
            outcome = .failed(reason: reason)
            failed = countsAsFailure ? true : nil
        case .transport(let e):
            failed = true
            switch e {
            case .couldNotConnect: outcome = .failed(reason: e.reason)
            case .timedOut: outcome = .unknown(reason: e.reason, timedOut: true)
            case .connectionLost, .other: outcome = .unknown(reason: e.reason, timedOut: false)
            }
        case .reply(let resp):
            switch resp.status {
            case 200..<300:
                if let json = JSONReader.parse(resp.body) {
                    outcome = ReplyMapping.apply(
                        descriptor.operations[.apply]!.response, reply: json, applicationID: context.applicationID)
                } else {
                    outcome = .unknown(reason: "unreadable reply: not JSON", timedOut: false)
                }
                if case .unknown = outcome { failed = true } else { failed = false }
            case 429, 503:
                outcome = .failed(reason: "HTTP \(resp.status) after \(r.tries) tries")
                failed = true
            case 500..<600:
                outcome = .unknown(reason: "HTTP \(resp.status)", timedOut: false)
                failed = true
            case 400..<500:
                outcome = .failed(reason: "HTTP \(resp.status)" + Self.bodyHint(resp))
                failed = false
            default:
                outcome = .unknown(reason: "unexpected HTTP \(resp.status)", timedOut: false)
                failed = true
            }
        }
        return await finish(.apply, outcome, failed: failed, tries: r.tries, nanos: r.nanos, permission: permission)
    }

    public func status(_ context: LenderCallContext) async -> LenderCall<StatusOutcome> {
        let r = await perform(.status, context)
        let outcome: StatusOutcome
        var failed: Bool? = true
        switch r.result {
        case .notSent(let reason, let counts):
            outcome = .unknown(reason: reason)
            if !counts { failed = nil }
        case .transport(let e): outcome = .unknown(reason: e.reason)
        case .reply(let resp):
            switch resp.status {
            case 404:
                outcome = .notFound
                failed = false
            case 200..<300:
                if let json = JSONReader.parse(resp.body) {
                    outcome = ReplyMapping.status(
                        descriptor.operations[.status]!.response, reply: json,
                        knownReference: context.lenderReference ?? context.applicationID)
                } else {
                    outcome = .unknown(reason: "unreadable reply: not JSON")
                }
                if case .unknown = outcome {} else { failed = false }
            default:
                outcome = .unknown(reason: "HTTP \(resp.status)")
                failed = resp.status >= 500 || resp.status == 429
            }
        }
        return await finish(.status, outcome, failed: failed, tries: r.tries, nanos: r.nanos, permission: nil)
    }

    public func disburse(_ context: LenderCallContext) async -> LenderCall<DisburseOutcome> {
        guard let spec = descriptor.operations[.disburse] else {
            // CONTRACT §5: a lender without `disburse` disburses on approval.
            return LenderCall(outcome: .disbursed, tries: 0, latencyMs: 0)
        }
        let r = await perform(.disburse, context)
        let outcome: DisburseOutcome
        var failed: Bool? = true
        switch r.result {
        case .notSent(let reason, let counts):
            // Only a template that cannot render is final; auth and bulkhead failures are
            // passing, and disburse is idempotent by reference: ask again.
            outcome = r.renderFailed ? .failed(reason: reason) : .unknown(reason: reason)
            if !counts { failed = nil }
        case .transport(let e): outcome = .unknown(reason: e.reason)
        case .reply(let resp):
            switch resp.status {
            case 200..<300:
                if let json = JSONReader.parse(resp.body) {
                    outcome = ReplyMapping.disburse(spec.response, reply: json)
                } else {
                    outcome = .unknown(reason: "unreadable reply: not JSON")
                }
                if case .unknown = outcome {} else { failed = false }
            case 429, 500..<600:
                outcome = .unknown(reason: "HTTP \(resp.status)")
            default:
                outcome = .failed(reason: "HTTP \(resp.status)" + Self.bodyHint(resp))
                failed = false
            }
        }
        return await finish(.disburse, outcome, failed: failed, tries: r.tries, nanos: r.nanos, permission: nil)
    }

    public func cancel(_ context: LenderCallContext) async -> LenderCall<CancelOutcome>? {
        guard let spec = descriptor.operations[.cancel] else { return nil }
        let r = await perform(.cancel, context)
        let outcome: CancelOutcome
        var failed: Bool? = true
        switch r.result {
        case .notSent(let reason, let counts):
            outcome = .failed(reason: reason)
            if !counts { failed = nil }
        case .transport(let e): outcome = .failed(reason: e.reason)
        case .reply(let resp):
            switch resp.status {
            case 200..<300:
                outcome = ReplyMapping.cancel(spec.response, reply: JSONReader.parse(resp.body))
                failed = false
            case 429, 500..<600:
                outcome = .failed(reason: "HTTP \(resp.status) after \(r.tries) tries")
            default:
                outcome = .failed(reason: "HTTP \(resp.status)" + Self.bodyHint(resp))
                failed = false
            }
        }
        return await finish(.cancel, outcome, failed: failed, tries: r.tries, nanos: r.nanos, permission: nil)
    }

    static func bodyHint(_ resp: LenderHTTPResponse) -> String {
        guard !resp.body.isEmpty, resp.body.count <= 4096, let j = JSONReader.parse(resp.body) else { return "" }
        for k in ["message", "error", "reason", "remarks"] {
            if let v = j[k], let t = ReplyMapping.text(v) { return ": " + t }
        }
        return ""
    }

    // MARK: - one operation call (tries, auth, bulkhead)

    enum CallFailure: Error, Sendable {
        case notSent(String, countsAsFailure: Bool)
    }

    enum CallResult: Sendable {
        case reply(LenderHTTPResponse)
        case transport(TransportError)
        /// Nothing reached the lender: render error (not the lender's fault), auth failure, bulkhead full.
        case notSent(String, countsAsFailure: Bool)
    }

    func perform(_ op: LenderOperation, _ context: LenderCallContext) async -> (
        result: CallResult, tries: Int, nanos: UInt64, renderFailed: Bool
    ) {
        let start = clock.nowNanos()
        guard await enterBulkhead() else {
            return (.notSent("bulkhead full", countsAsFailure: false), 0, 0, false)
        }
        defer { leaveBulkhead() }
        let spec = descriptor.operations[op]!
        let timeout = Duration.milliseconds(spec.timeoutMs)
        var tries = 0
        var retryTries = 0
        var renewedAfter401 = false
        while true {
            var tokenValue: String? = nil
            var stepValues: [String: [String: JSONValue]] = [:]
            if descriptor.auth.usesToken {
                switch await currentToken() {
                case .success(let t):
                    tokenValue = t.value
                    stepValues = t.steps
                case .failure(.notSent(let reason, let counts)):
                    return (
                        .notSent("auth: " + reason, countsAsFailure: counts), tries, clock.nowNanos() &- start, false
                    )
                }
            }
            var scope = TemplateScope(
                context: context, secrets: descriptor.secrets, token: tokenValue, now: clock.wallNow())
            scope.steps = stepValues
            let request: LenderHTTPRequest
            do {
                request = try descriptor.request(for: op, scope: scope)
            } catch {
                return (.notSent(error.message, countsAsFailure: false), tries, clock.nowNanos() &- start, true)
            }
            tries += 1
            retryTries += 1
            let failure: RetryPolicy.Failure
            let result: CallResult
            do {
                let resp = try await transport.send(request, timeout: timeout)
                if resp.status == 401, let tokenValue, !renewedAfter401 {
                    // 401: the lender refused the request before processing it (even for
                    // `apply`), so renewing the token and sending once more is safe.
                    renewedAfter401 = true
                    invalidateToken(ifStill: tokenValue)
                    retryTries -= 1
                    continue
                }
                guard !(200..<300).contains(resp.status) else {
                    return (.reply(resp), tries, clock.nowNanos() &- start, false)
                }
                failure = .http(resp.status)
                result = .reply(resp)
            } catch {
                failure = error.retryFailure
                result = .transport(error)
            }
            switch descriptor.retry.decide(after: failure, operation: op, triesSoFar: retryTries, using: &rng) {
            case .giveUp:
                return (result, tries, clock.nowNanos() &- start, false)
            case .retry(let ms):
                if ms > 0 { await clock.sleep(.milliseconds(ms)) }
            }
        }
    }

    // MARK: - Token (oauth2 or workflow: cached, renewed at 80 % of its life, single flight)

    func currentToken() async -> Result<TokenUse, CallFailure> {
        let now = clock.nowNanos()
        if let t = token, now < t.renewAt { return .success(TokenUse(value: t.value, steps: t.steps)) }
        if let f = tokenFetch { return await f.value }
        let task = Task { await self.fetchToken() }
        tokenFetch = task
        return await task.value
    }

    func invalidateToken(ifStill value: String) {
        if token?.value == value { token = nil }
    }

    /// Drops the cached token (ops, tests): the next call fetches a new one.
    public func dropToken() { token = nil }

    /// Runs the auth handshake now (oauth2 token request or every workflow step) and caches
    /// the token. nil on success (or when the lender's auth has no token); else the reason.
    /// `flux-node lenders check --dry-run` uses it to show the handshake on its own.
    public func authenticate() async -> String? {
        guard descriptor.auth.usesToken else { return nil }
        token = nil
        switch await currentToken() {
        case .success: return nil
        case .failure(.notSent(let reason, _)): return reason
        }
    }

    /// Seconds until the cached token is renewed (nil: none cached).
    public var tokenRenewsInSeconds: Int? {
        guard let t = token else { return nil }
        let now = clock.nowNanos()
        return t.renewAt > now ? Int((t.renewAt - now) / 1_000_000_000) : 0
    }

    /// One attempt at a token: the oauth2 token request, or every workflow step in order.
    private func obtainToken() async -> Result<AuthCredential, AuthFailure> {
        let timeout = Duration.milliseconds(descriptor.timeoutMs)
        switch descriptor.auth.headerAuth {
        case .oauth2ClientCredentials(let cfg):
            tokenFetches += 1
            do {
                let resp = try await transport.send(cfg.tokenRequest(), timeout: timeout)
                if (200..<300).contains(resp.status),
                    let (value, expiresIn) = OAuth2ClientCredentials.parseToken(resp.body)
                {
                    return .success(AuthCredential(token: value, steps: [:], lifetimeS: expiresIn))
                }
                return (200..<300).contains(resp.status)
                    ? .failure(AuthFailure(reason: "token reply has no access_token", retry: .http(502)))
                    : .failure(
                        AuthFailure(reason: "token endpoint answered HTTP \(resp.status)", retry: .http(resp.status)))
            } catch {
                return .failure(AuthFailure(reason: "token endpoint: " + error.reason, retry: error.retryFailure))
            }
        case .workflow(let w):
            tokenFetches += 1
            return await w.run(
                baseURL: descriptor.baseURL, secrets: descriptor.secrets, transport: transport, timeout: timeout,
                now: clock.wallNow())
        default:
            return .failure(AuthFailure(reason: "this lender's auth has no token", retry: .http(400)))
        }
    }

    private func fetchToken() async -> Result<TokenUse, CallFailure> {
        var tries = 0
        while true {
            tries += 1
            let failure: AuthFailure
            switch await obtainToken() {
            case .success(let credential):
                let now = clock.nowNanos()
                let life = UInt64(max(1, credential.lifetimeS ?? options.defaultTokenLifetimeS)) * 1_000_000_000
                token = CachedToken(
                    value: credential.token, renewAt: now + life / 10 * 8, expiresAt: now + life,
                    steps: credential.steps)
                tokenFetch = nil
                return .success(TokenUse(value: credential.token, steps: credential.steps))
            case .failure(let f):
                failure = f
            }
            switch descriptor.retry.decide(after: failure.retry, operation: nil, triesSoFar: tries, using: &rng) {
            case .giveUp:
                tokenFetch = nil
                // A renewal that fails while the old token is still valid keeps the old one.
                if let t = token, clock.nowNanos() < t.expiresAt {
                    return .success(TokenUse(value: t.value, steps: t.steps))
                }
                return .failure(.notSent(failure.reason, countsAsFailure: true))
            case .retry(let ms):
                if ms > 0 { await clock.sleep(.milliseconds(ms)) }
            }
        }
    }

    // MARK: - bulkhead

    private func enterBulkhead() async -> Bool {
        if inFlight < options.maxConcurrentCalls {
            inFlight += 1
            return true
        }
        guard options.bulkheadWaitMs > 0 else { return false }
        nextWaiterID += 1
        let id = nextWaiterID
        let wait = Duration.milliseconds(options.bulkheadWaitMs)
        let sleep = clock.sleep
        return await withCheckedContinuation { c in
            waiters.append((id, c))
            Task {
                await sleep(wait)
                self.expireWaiter(id)
            }
        }
    }

    private func expireWaiter(_ id: UInt64) {
        if let i = waiters.firstIndex(where: { $0.id == id }) {
            waiters.remove(at: i).continuation.resume(returning: false)
        }
    }

    private func leaveBulkhead() {
        if waiters.isEmpty {
            inFlight -= 1
        } else {
            // The slot passes straight to the oldest waiter.
            waiters.removeFirst().continuation.resume(returning: true)
        }
    }

    // MARK: - accounting

    private func finish<O: Sendable & Equatable>(
        _ op: LenderOperation, _ outcome: O, failed: Bool?, tries: Int, nanos: UInt64,
        permission: CircuitBreaker.Permission?
    ) async -> LenderCall<O> {
        let label = Self.label(outcome)
        if let failed {
            await breaker.record(failed: failed, durationNanos: nanos, permission: permission)
        } else if let permission {
            await breaker.releasePermission(permission)
        }
        let ms = Int(nanos / 1_000_000)
        if tries > 0 {
            stats.calls += 1
            switch label {
            case "approved": stats.approved += 1
            case "rejected": stats.rejected += 1
            case "timeout": stats.timeouts += 1
            case "unknown", "failed", "error": stats.errors += 1
            default: break
            }
            if latencies.count < options.latencyWindow {
                latencies.append(ms)
            } else if !latencies.isEmpty {
                latencies[latencyNext] = ms
                latencyNext = (latencyNext + 1) % latencies.count
            }
            timer(op).recordNanoseconds(Int64(clamping: nanos))
        }
        counter(op, label).increment()
        return LenderCall(outcome: outcome, tries: tries, latencyMs: ms)
    }

    /// The outcome word for `flux_lender_calls_total{outcome}` and stats.
    static func label(_ outcome: some Sendable) -> String {
        switch outcome {
        case let o as ApplyOutcome:
            switch o {
            case .approved: return "approved"
            case .rejected: return "rejected"
            case .pending: return "pending"
            case .unknown(_, let timedOut): return timedOut ? "timeout" : "unknown"
            case .failed: return "failed"
            }
        case let o as StatusOutcome:
            switch o {
            case .approved: return "approved"
            case .rejected: return "rejected"
            case .pending: return "pending"
            case .notFound: return "not_found"
            case .unknown(let r): return r == TransportError.timedOut.reason ? "timeout" : "unknown"
            }
        case let o as DisburseOutcome:
            switch o {
            case .disbursed: return "disbursed"
            case .failed: return "failed"
            case .pending: return "pending"
            case .unknown(let r): return r == TransportError.timedOut.reason ? "timeout" : "unknown"
            }
        case let o as CancelOutcome:
            switch o {
            case .cancelled: return "cancelled"
            case .failed(let r): return r == TransportError.timedOut.reason ? "timeout" : "failed"
            }
        default: return "other"
        }
    }

    private func counter(_ op: LenderOperation, _ outcome: String) -> Counter {
        let key = op.rawValue + "/" + outcome
        if let c = callCounters[key] { return c }
        let c = Counter(
            label: "flux_lender_calls_total",
            dimensions: [("lender", descriptor.id), ("op", op.rawValue), ("outcome", outcome)])
        callCounters[key] = c
        return c
    }

    private func timer(_ op: LenderOperation) -> Metrics.Timer {
        if let t = timers[op] { return t }
        let t = Metrics.Timer(
            label: "flux_lender_call_seconds", dimensions: [("lender", descriptor.id), ("op", op.rawValue)])
        timers[op] = t
        return t
    }

    public func currentStats() -> Stats {
        var s = stats
        if !latencies.isEmpty {
            let sorted = latencies.sorted()
            s.p50Ms = sorted[min(sorted.count - 1, (sorted.count * 50 + 99) / 100 - 1)]
            s.p99Ms = sorted[min(sorted.count - 1, max(0, (sorted.count * 99 + 99) / 100 - 1))]
        }
        return s
    }
}
