import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging

/// Serves the simulated lenders of `config` until the task is cancelled, printing one line per
/// lender (`lender ID listening on http://127.0.0.1:PORT`) as each starts.
public func runLenderSimulator(config: SimulatorConfig, logger: Logger) async throws {
    let simulator = try LenderSimulator(config: config)
    try await simulator.run(logger: logger) { event in
        switch event {
        case .lender(let id, let url): print("lender \(id) listening on \(url)")
        case .control(let url): print("simulator control listening on \(url)/_sim")
        }
        // A parent process reads these lines through a pipe: do not leave them in a buffer.
        fflush(nil)
    }
}

/// The simulated NBFCs of one process: one HTTP server per lender, each on its own port, plus
/// a control server. Also usable in-process (tests, the demo) through `run(logger:onListening:)`.
public final class LenderSimulator: Sendable {
    public enum ListeningEvent: Sendable, Equatable {
        case lender(id: String, url: String)
        case control(url: String)
    }

    let config: SimulatorConfig
    let lenders: [SimulatedLender]

    public init(config: SimulatorConfig) throws {
        try config.validate()
        self.config = config
        let seed = config.seed ?? UInt64(UInt64(Date().timeIntervalSince1970 * 1000) & 0xFFFF_FFFF)
        var seeds = SplitMix64(seed: seed)
        lenders = config.lenders.map { SimulatedLender(config: $0, seed: seeds.next()) }
    }

    func lender(_ id: String) -> SimulatedLender? { lenders.first { $0.config.id == id } }

    /// Runs every server until cancelled. `onListening` is called once per server, after it binds.
    public func run(
        logger: Logger, onListening: @escaping @Sendable (ListeningEvent) -> Void = { _ in }
    ) async throws {
        var serverLogger = logger
        // Hummingbird's own start/stop lines (and its complaints about connections cut at
        // cancellation or in a refuse outage) would drown the one line per lender.
        if serverLogger.logLevel > .debug { serverLogger.logLevel = .critical }
        let quiet = serverLogger
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lender in lenders {
                group.addTask { try await self.serveLender(lender, logger: quiet, onListening: onListening) }
            }
            group.addTask {
                let router = Router(context: BasicRequestContext.self)
                self.addControlRoutes(to: router)
                let app = Application(
                    router: router,
                    configuration: .init(address: .hostname(self.config.host, port: self.config.controlPort)),
                    onServerRunning: { channel in
                        let port = channel.localAddress?.port ?? self.config.controlPort
                        onListening(.control(url: "http://\(self.config.host):\(port)"))
                    },
                    logger: quiet)
                try await app.run()
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Serves one lender; while its outage is `refuse` the listening socket is closed (callers
    /// get "connection refused") and it is opened again on the same port afterwards.
    private func serveLender(
        _ lender: SimulatedLender, logger: Logger, onListening: @escaping @Sendable (ListeningEvent) -> Void
    ) async throws {
        let router = Router(context: BasicRequestContext.self)
        addLenderRoutes(lender, to: router)
        addControlRoutes(to: router)
        let responder = router.buildResponder()
        var announced = false
        while !Task.isCancelled {
            if await lender.isRefusing {
                try await Task.sleep(for: .milliseconds(20))
                continue
            }
            let port = await lender.boundPort ?? lender.config.port
            let firstStart = !announced
            announced = true
            let server: HTTPServerBuilder
            if let tls = lender.config.tls {
                server = try SimulatedTLS.server(tls)
            } else {
                server = .http1()
            }
            let app = Application(
                responder: responder,
                server: server,
                configuration: .init(address: .hostname(config.host, port: port)),
                onServerRunning: { channel in
                    let bound = channel.localAddress?.port ?? port
                    await lender.setBoundPort(bound)
                    if firstStart {
                        let scheme = lender.config.tls == nil ? "http" : "https"
                        onListening(.lender(id: lender.config.id, url: "\(scheme)://\(self.config.host):\(bound)"))
                    }
                },
                logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await app.run() }
                group.addTask {
                    while await !lender.isRefusing { try await Task.sleep(for: .milliseconds(20)) }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    // MARK: Lender API

    private func addLenderRoutes(_ lender: SimulatedLender, to router: Router<BasicRequestContext>) {
        let shape = lender.shape
        let auth = lender.config.auth
        let maxBody = config.maxBodyBytes

        if auth.type == .oauth2 {
            router.post(RouterPath(auth.tokenPath)) { request, _ -> Response in
                var request = request
                let gate = await lender.gate()
                switch gate {
                case .unavailable: return Self.unavailable()
                case .fail(let delay):
                    try await Self.pause(delay)
                    return Self.error(.internalServerError, "server_error", "injected failure")
                case .proceed(let delay):
                    let body: ByteBuffer
                    do { body = try await request.collectBody(upTo: 8 * 1024) } catch { return Self.tooLarge() }
                    let form = Self.parseForm(String(buffer: body))
                    let basic = request.headers[.authorization].flatMap(Self.parseBasic)
                    let result = await lender.issueToken(form: form, basic: basic, now: Date())
                    try await Self.pause(delay)
                    switch result {
                    case .issued(let token, let expiresIn, let scope):
                        var j: [String: SimJSON] = [
                            "access_token": .string(token), "token_type": .string("Bearer"),
                            "expires_in": .int(Int64(expiresIn)),
                        ]
                        if let scope { j["scope"] = .string(scope) }
                        return Self.json(.ok, .object(j), headers: [.cacheControl: "no-store"])
                    case .refused(let status, let error, let description):
                        var headers = HTTPFields()
                        if status == 401 { headers[.wwwAuthenticate] = "Basic realm=\"\(lender.config.id)\"" }
                        return Self.json(
                            .init(code: status),
                            .object(["error": .string(error), "error_description": .string(description)]),
                            headers: headers)
                    }
                }
            }
        }

        if auth.type == .hmacHandshake {
            addHandshakeRoutes(lender, base: auth.tokenPath, to: router)
        }

        /// Auth and fault gate shared by the four operations; nil means go on after `delay`.
        let keyHeader = HTTPField.Name(auth.header)
        @Sendable func admit(_ request: Request) async -> (Response?, Int) {
            let apiKey = keyHeader.flatMap { request.headers[$0] }
            let (gate, authFailure) = await lender.admit(
                apiKey: apiKey, authorization: request.headers[.authorization], now: Date())
            switch gate {
            case .unavailable: return (Self.unavailable(), 0)
            case .fail(let delay):
                try? await Self.pause(delay)
                return (Self.error(.internalServerError, "server_error", "injected failure"), 0)
            case .proceed(let delay):
                if let failure = authFailure {
                    guard case .unauthorized(let why) = failure else { return (nil, delay) }
                    try? await Self.pause(delay)
                    var headers = HTTPFields()
                    headers[.wwwAuthenticate] =
                        auth.type == .apiKey ? "ApiKey header=\"\(auth.header)\"" : "Bearer error=\"invalid_token\""
                    return (Self.error(.unauthorized, "unauthorized", why, headers: headers), 0)
                }
                return (nil, delay)
            }
        }

        router.post(RouterPath(shape.applyPath)) { request, _ -> Response in
            var request = request
            let (early, delay) = await admit(request)
            if let early { return early }
            let bytes: ByteBuffer
            do { bytes = try await request.collectBody(upTo: maxBody) } catch { return Self.tooLarge() }
            let body: SimJSON
            do { body = try SimJSON.decode(bytes.readableBytesView) } catch {
                return Self.error(.badRequest, "invalid_json", "body is not JSON")
            }
            let input: LoanApplicationInput
            do throws(SimulatorFieldError) { input = try shape.decodeApply(body) } catch {
                return Self.error(.unprocessableContent, "invalid_field", error.message, field: error.field)
            }
            switch await lender.apply(input, now: Date()) {
            case .full:
                return Self.error(.serviceUnavailable, "book_full", "this simulated lender holds too many applications")
            case .decided(let loan, let ghostDelay):
                try await Self.pause(delay + (ghostDelay ?? 0))
                return Self.json(.ok, shape.loanView(loan))
            }
        }

        @Sendable func statusReply(_ reference: String?, delay: Int) async throws -> Response {
            guard let reference, !reference.isEmpty, reference.utf8.count <= 128 else {
                return Self.error(.badRequest, "invalid_reference", "a reference of 1…128 bytes is required")
            }
            let loan = await lender.status(reference: reference)
            try await Self.pause(delay)
            guard let loan else { return Self.error(.notFound, "not_found", "no application with this reference") }
            return Self.json(.ok, shape.loanView(loan))
        }

        switch shape.status {
        case .path(let path):
            router.get(RouterPath(path)) { request, context -> Response in
                let (early, delay) = await admit(request)
                if let early { return early }
                return try await statusReply(Self.parameter(context.parameters.get("ref")), delay: delay)
            }
        case .query(let path, let param):
            router.get(RouterPath(path)) { request, _ -> Response in
                let (early, delay) = await admit(request)
                if let early { return early }
                return try await statusReply(request.uri.queryParameters.get(param), delay: delay)
            }
        }

        router.post(RouterPath(shape.disbursePath)) { request, context -> Response in
            let (early, delay) = await admit(request)
            if let early { return early }
            let id = Self.parameter(context.parameters.get("id"))
            let result = await lender.disburse(loanID: id)
            try await Self.pause(delay)
            switch result {
            case .notFound: return Self.error(.notFound, "not_found", "no loan with this id")
            case .disbursed(let loan): return Self.json(.ok, shape.stateView(loan))
            case .notDisbursable(let loan):
                return Self.json(.conflict, shape.stateView(loan, word: shape.failedWord))
            }
        }

        router.post(RouterPath(shape.cancelPath)) { request, context -> Response in
            let (early, delay) = await admit(request)
            if let early { return early }
            let id = Self.parameter(context.parameters.get("id"))
            let result = await lender.cancel(loanID: id)
            try await Self.pause(delay)
            switch result {
            case .notFound: return Self.error(.notFound, "not_found", "no loan with this id")
            case .cancelled(let loan): return Self.json(.ok, shape.stateView(loan))
            case .alreadyDisbursed(let loan): return Self.json(.conflict, shape.stateView(loan))
            }
        }
    }

    // MARK: Control API

    private func addControlRoutes(to router: Router<BasicRequestContext>) {
        router.get("/_sim/loans") { request, _ -> Response in
            let only = request.uri.queryParameters.get("lender")
            let summary = request.uri.queryParameters.get("summary") == "true"
            return Self.json(.ok, await self.loansReport(only: only, summary: summary))
        }
        router.get("/_sim/control") { _, _ -> Response in
            Self.json(.ok, await self.behaviourReport())
        }
        router.post("/_sim/control") { request, _ -> Response in
            var request = request
            let bytes: ByteBuffer
            do { bytes = try await request.collectBody(upTo: 16 * 1024) } catch { return Self.tooLarge() }
            let change: SimulatorControlChange
            do {
                change = try JSONDecoder().decode(SimulatorControlChange.self, from: Data(bytes.readableBytesView))
            } catch let error as DecodingError {
                return Self.error(.unprocessableContent, "invalid_field", SimulatorConfig.describe(error))
            } catch {
                return Self.error(.badRequest, "invalid_json", "body is not JSON")
            }
            let targets =
                change.lenders.map { ids in self.lenders.filter { ids.contains($0.config.id) } } ?? self.lenders
            if let ids = change.lenders, let unknown = ids.first(where: { self.lender($0) == nil }) {
                return Self.error(.notFound, "not_found", "no simulated lender \(unknown)", field: "lenders")
            }
            if let ttl = change.tokenTTLS, !(1...86_400).contains(ttl) {
                return Self.error(
                    .unprocessableContent, "invalid_field", "token_ttl_s must be 1…86400", field: "token_ttl_s")
            }
            for lender in targets {
                var b = await lender.behaviour
                change.apply(to: &b)
                do { try b.validate(at: lender.config.id) } catch {
                    return Self.error(.unprocessableContent, "invalid_field", "\(error)")
                }
                await lender.setBehaviour(b)
                if let ttl = change.tokenTTLS { await lender.setTokenTTL(ttl) }
                if change.expireTokens == true { await lender.expireTokens() }
            }
            return Self.json(.ok, await self.behaviourReport())
        }
        router.post("/_sim/reset") { _, _ -> Response in
            for lender in self.lenders { await lender.reset() }
            return Self.json(.ok, await self.loansReport(only: nil, summary: true))
        }
    }

    /// `GET /_sim/loans`: every application each lender holds, a count per reference, and the
    /// references that hold a live loan at more than one lender (which must stay empty).
    /// `summary` leaves out the per-loan rows and per-reference counts (large after a load run)
    /// and gives the highest count per reference instead.
    func loansReport(only: String?, summary: Bool = false) async -> SimJSON {
        var lenderViews: [SimJSON] = []
        var liveAt: [String: [String]] = [:]
        for lender in lenders {
            let loans = await lender.loans()
            var counts: [String: SimJSON] = [:]
            var approved = 0
            var disbursed = 0
            var cancelled = 0
            var rows: [SimJSON] = []
            for loan in loans {
                if case .int(let n) = counts[loan.reference] {
                    counts[loan.reference] = .int(n + 1)
                } else {
                    counts[loan.reference] = .int(1)
                }
                switch loan.state {
                case .approved: approved += 1
                case .disbursed: disbursed += 1
                case .cancelled: cancelled += 1
                case .rejected: break
                }
                if loan.state == .approved || loan.state == .disbursed {
                    liveAt[loan.reference, default: []].append(lender.config.id)
                }
                if summary || (only != nil && only != lender.config.id) { continue }
                rows.append(
                    .object([
                        "reference": .string(loan.reference), "loan_id": .string(loan.loanID),
                        "decision": .string(loan.decision.rawValue), "state": .string(loan.state.rawValue),
                        "reason": loan.reason.map(SimJSON.string) ?? .null,
                        "amount_paise": .int(loan.amountPaise), "tenure_months": .int(Int64(loan.tenureMonths)),
                        "rate_bps": .int(Int64(loan.rateBps)), "apply_calls": .int(Int64(loan.applyCalls)),
                        "disburse_calls": .int(Int64(loan.disburseCalls)),
                        "status_calls": .int(Int64(loan.statusCalls)), "cancel_calls": .int(Int64(loan.cancelCalls)),
                        "created_at": .string(loan.createdAt.formatted(.iso8601)),
                    ]))
            }
            if only != nil && only != lender.config.id { continue }
            var view: [String: SimJSON] = [
                "id": .string(lender.config.id), "applications": .int(Int64(loans.count)),
                "approved": .int(Int64(approved)), "disbursed": .int(Int64(disbursed)),
                "cancelled": .int(Int64(cancelled)),
            ]
            if summary {
                let highest = counts.values.reduce(Int64(0)) { m, v in
                    if case .int(let n) = v { return max(m, n) }
                    return m
                }
                view["max_count_per_reference"] = .int(highest)
            } else {
                view["count_by_reference"] = .object(counts)
                view["loans"] = .array(rows)
            }
            lenderViews.append(.object(view))
        }
        let several = liveAt.filter { $0.value.count > 1 }.keys.sorted().map(SimJSON.string)
        return .object(["lenders": .array(lenderViews), "live_at_several_lenders": .array(several)])
    }

    func behaviourReport() async -> SimJSON {
        var out: [String: SimJSON] = [:]
        for lender in lenders {
            let b = await lender.behaviour
            out[lender.config.id] = .object([
                "latency_ms": .int(Int64(b.latencyMs)), "jitter_ms": .int(Int64(b.jitterMs)),
                "error_rate": .double(b.errorRate), "outage": .string(b.outage.rawValue),
                "ghost_mode": .bool(b.ghostMode), "ghost_delay_ms": .int(Int64(b.ghostDelayMs)),
                "ghost_rate": .double(b.ghostRate), "status_not_found_first": .int(Int64(b.statusNotFoundFirst)),
                "port": await lender.boundPort.map { .int(Int64($0)) } ?? .null,
                "tokens_issued": .int(Int64(await lender.tokensIssued)),
                "token_ttl_s": await lender.tokenTTLOverride.map { .int(Int64($0)) } ?? .null,
            ])
        }
        return .object(["lenders": .object(out)])
    }

    // MARK: Helpers

    /// A path parameter, percent-decoded (callers encode references that hold reserved characters).
    static func parameter(_ raw: String?) -> String {
        guard let raw else { return "" }
        return raw.removingPercentEncoding ?? raw
    }

    static func pause(_ ms: Int) async throws {
        if ms > 0 { try await Task.sleep(for: .milliseconds(ms)) }
    }

    static func json(_ status: HTTPResponse.Status, _ body: SimJSON, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body.encoded())))
    }

    static func error(
        _ status: HTTPResponse.Status, _ code: String, _ message: String, field: String? = nil,
        headers: HTTPFields = [:]
    ) -> Response {
        var e: [String: SimJSON] = ["code": .string(code), "message": .string(message)]
        if let field { e["field"] = .string(field) }
        return json(status, .object(["error": .object(e)]), headers: headers)
    }

    static func unavailable() -> Response {
        error(.serviceUnavailable, "unavailable", "lender is down for maintenance", headers: [.retryAfter: "1"])
    }

    static func tooLarge() -> Response { error(.contentTooLarge, "body_too_large", "request body too large") }

    /// `application/x-www-form-urlencoded` → fields (the last of a repeated name wins).
    static func parseForm(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
            }
            out[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return out
    }

    /// `Basic base64(id:secret)` → the pair (RFC 6749 §2.3.1 form-encodes both before base64).
    static func parseBasic(_ header: String) -> (id: String, secret: String)? {
        guard header.count > 6, header.prefix(6).lowercased() == "basic " else { return nil }
        guard let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        func decode(_ s: Substring) -> String {
            s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
        }
        return (decode(text[..<colon]), decode(text[text.index(after: colon)...]))
    }
}

/// Body of `POST /_sim/control`: which lenders (all when absent) and the behaviour fields to
/// change; absent fields keep their value.
struct SimulatorControlChange: Decodable {
    var lenders: [String]?
    var latencyMs: Int?
    var jitterMs: Int?
    var errorRate: Double?
    var outage: SimulatedBehaviour.Outage?
    var ghostMode: Bool?
    var ghostDelayMs: Int?
    var ghostRate: Double?
    var statusNotFoundFirst: Int?
    /// Lifetime of tokens issued from now on (OAuth2 and the HMAC handshake).
    var tokenTTLS: Int?
    /// `true`: every token issued so far stops working now.
    var expireTokens: Bool?

    enum CodingKeys: String, CodingKey {
        case lenders
        case lender
        case latencyMs = "latency_ms"
        case jitterMs = "jitter_ms"
        case errorRate = "error_rate"
        case outage
        case ghostMode = "ghost_mode"
        case ghostDelayMs = "ghost_delay_ms"
        case ghostRate = "ghost_rate"
        case statusNotFoundFirst = "status_not_found_first"
        case tokenTTLS = "token_ttl_s"
        case expireTokens = "expire_tokens"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let one = try c.decodeIfPresent(String.self, forKey: .lender) {
            lenders = [one]
        } else {
            lenders = try c.decodeIfPresent([String].self, forKey: .lenders)
        }
        latencyMs = try c.decodeIfPresent(Int.self, forKey: .latencyMs)
        jitterMs = try c.decodeIfPresent(Int.self, forKey: .jitterMs)
        errorRate = try c.decodeIfPresent(Double.self, forKey: .errorRate)
        outage = try c.decodeIfPresent(SimulatedBehaviour.Outage.self, forKey: .outage)
        ghostMode = try c.decodeIfPresent(Bool.self, forKey: .ghostMode)
        ghostDelayMs = try c.decodeIfPresent(Int.self, forKey: .ghostDelayMs)
        ghostRate = try c.decodeIfPresent(Double.self, forKey: .ghostRate)
        statusNotFoundFirst = try c.decodeIfPresent(Int.self, forKey: .statusNotFoundFirst)
        tokenTTLS = try c.decodeIfPresent(Int.self, forKey: .tokenTTLS)
        expireTokens = try c.decodeIfPresent(Bool.self, forKey: .expireTokens)
    }

    func apply(to b: inout SimulatedBehaviour) {
        if let latencyMs { b.latencyMs = latencyMs }
        if let jitterMs { b.jitterMs = jitterMs }
        if let errorRate { b.errorRate = errorRate }
        if let outage { b.outage = outage }
        if let ghostMode { b.ghostMode = ghostMode }
        if let ghostDelayMs { b.ghostDelayMs = ghostDelayMs }
        if let ghostRate { b.ghostRate = ghostRate }
        if let statusNotFoundFirst { b.statusNotFoundFirst = statusNotFoundFirst }
    }
}

extension LenderSimulator {
    /// The four-step HMAC handshake of a `hmac_handshake` lender, under `base` (`/auth/v1`).
    func addHandshakeRoutes(_ lender: SimulatedLender, base: String, to router: Router<BasicRequestContext>) {
        @Sendable func reply(_ r: SimulatedLender.HandshakeResult, delay: Int) async throws -> Response {
            try await Self.pause(delay)
            switch r {
            case .ok(let body): return Self.json(.ok, body, headers: [.cacheControl: "no-store"])
            case .refused(let status, let error, let description):
                return Self.json(
                    .init(code: status),
                    .object(["error": .string(error), "error_description": .string(description)]))
            }
        }
        /// Fault gate and body; nil body when it is not JSON.
        @Sendable func gated(_ request: inout Request) async throws -> (Response?, SimJSON?, String, Int) {
            switch await lender.gate() {
            case .unavailable: return (Self.unavailable(), nil, "", 0)
            case .fail(let delay):
                try await Self.pause(delay)
                return (Self.error(.internalServerError, "server_error", "injected failure"), nil, "", 0)
            case .proceed(let delay):
                let bytes: ByteBuffer
                do { bytes = try await request.collectBody(upTo: 8 * 1024) } catch {
                    return (Self.tooLarge(), nil, "", 0)
                }
                let text = String(buffer: bytes)
                return (nil, try? SimJSON.decode(bytes.readableBytesView), text, delay)
            }
        }
        @Sendable func field(_ j: SimJSON?, _ name: String) -> String? {
            if case .string(let s)? = j?.value(at: name) { return s }
            return nil
        }
        router.post(RouterPath(base + "/nonce")) { request, _ -> Response in
            var request = request
            let (early, _, text, delay) = try await gated(&request)
            if let early { return early }
            let form = Self.parseForm(text)
            return try await reply(await lender.handshakeNonce(clientID: form["client_id"], now: Date()), delay: delay)
        }
        router.post(RouterPath(base + "/challenge")) { request, _ -> Response in
            var request = request
            let (early, body, _, delay) = try await gated(&request)
            if let early { return early }
            let r = await lender.handshakeChallenge(
                clientID: field(body, "client_id"), nonce: field(body, "nonce"), signature: field(body, "signature"),
                now: Date())
            return try await reply(r, delay: delay)
        }
        router.post(RouterPath(base + "/session")) { request, _ -> Response in
            var request = request
            let (early, body, _, delay) = try await gated(&request)
            if let early { return early }
            let r = await lender.handshakeSession(
                challengeID: field(body, "challenge_id"), response: field(body, "response"), now: Date())
            return try await reply(r, delay: delay)
        }
        router.post(RouterPath(base + "/token")) { request, _ -> Response in
            var request = request
            let (early, _, _, delay) = try await gated(&request)
            if let early { return early }
            let session = HTTPField.Name("X-Session-Id").flatMap { request.headers[$0] }
            return try await reply(await lender.handshakeToken(sessionID: session, now: Date()), delay: delay)
        }
    }
}
