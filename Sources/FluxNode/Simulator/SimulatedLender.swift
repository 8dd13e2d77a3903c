import Crypto
import Foundation

/// The shell around one lender's book: authentication, injected faults and runtime behaviour.
/// HTTP routes call it; it never touches sockets or sleeps itself (the routes sleep).
actor SimulatedLender {
    enum Gate: Equatable {
        /// Reply `503` at once, record nothing.
        case unavailable
        /// Reply `500` after `delayMs`, record nothing.
        case fail(delayMs: Int)
        case proceed(delayMs: Int)
    }

    let config: SimulatedLenderConfig
    let shape: LenderAPIShape
    private(set) var behaviour: SimulatedBehaviour
    private var book: SimulatedLenderBook
    private var rng: SplitMix64
    /// Access tokens issued (OAuth2 or the HMAC handshake), with their expiry.
    private var tokens: [String: Date] = [:]
    static let maxTokens = 10_000
    /// Tokens issued since start (or reset): tests count renewals with it.
    private(set) var tokensIssued = 0
    /// Overrides `auth.expires_in_s` for tokens issued from now on (`token_ttl_s` control).
    private(set) var tokenTTLOverride: Int?
    // HMAC handshake state: single-use nonces, challenges and sessions, each with an expiry.
    private var nonces: [String: Date] = [:]
    private var challenges: [String: (challenge: String, expires: Date)] = [:]
    private var sessions: [String: Date] = [:]
    /// The port actually bound (differs from `config.port` when that is 0); kept across
    /// refuse-outage restarts so the lender comes back where it was.
    private(set) var boundPort: Int?

    init(config: SimulatedLenderConfig, seed: UInt64) {
        self.config = config
        // Config validation guarantees the shape exists; `hero` is only a fallback for a caller
        // that skipped validation.
        shape = LenderAPIShape.named(config.api) ?? .hero
        behaviour = config.behaviour
        book = SimulatedLenderBook(
            lenderID: config.id, loanIDPrefix: shape.loanIDPrefix, rules: config.rules, rateBps: config.rateBps)
        rng = SplitMix64(seed: seed)
    }

    var isRefusing: Bool { behaviour.outage == .refuse }

    func setBoundPort(_ port: Int) { boundPort = port }

    func setBehaviour(_ b: SimulatedBehaviour) { behaviour = b }

    /// Fault injection for one API call: outage, random 5xx, latency with jitter.
    func gate() -> Gate {
        if behaviour.outage != .none { return .unavailable }
        let delay = latencyMs()
        if rng.chance(behaviour.errorRate) { return .fail(delayMs: delay) }
        return .proceed(delayMs: delay)
    }

    private func latencyMs() -> Int {
        let jitter = behaviour.jitterMs > 0 ? Int(rng.next() % UInt64(behaviour.jitterMs + 1)) : 0
        return behaviour.latencyMs + jitter
    }

    /// The gate and the auth check in one actor hop (the hot path of every API call).
    func admit(apiKey: String?, authorization: String?, now: Date) -> (Gate, AuthFailure?) {
        let g = gate()
        guard case .proceed = g else { return (g, nil) }
        return (g, authorize(apiKey: apiKey, authorization: authorization, now: now))
    }

    // MARK: Auth

    enum AuthFailure: Error, Equatable {
        case unauthorized(String)
    }

    /// Checks the caller's API key (the value of the lender's key header) or bearer token (the
    /// `Authorization` header).
    func authorize(apiKey: String?, authorization: String?, now: Date) -> AuthFailure? {
        switch config.auth.type {
        case .apiKey:
            guard let key = apiKey else {
                return .unauthorized("missing \(config.auth.header) header")
            }
            return key == config.auth.value ? nil : .unauthorized("invalid API key")
        case .oauth2, .hmacHandshake:
            guard let value = authorization else { return .unauthorized("missing bearer token") }
            guard value.count > 7, value.prefix(7).lowercased() == "bearer " else {
                return .unauthorized("Authorization must be a Bearer token")
            }
            let token = String(value.dropFirst(7))
            guard let expiry = tokens[token] else { return .unauthorized("unknown token") }
            guard expiry > now else { return .unauthorized("token expired") }
            return nil
        }
    }

    enum TokenResult: Equatable {
        case issued(token: String, expiresIn: Int, scope: String?)
        /// An RFC 6749 §5.2 error: status, `error` code, description.
        case refused(status: Int, error: String, description: String)
    }

    /// The client-credentials grant. `basicAuthorization` is the decoded `id:secret` pair from an
    /// HTTP Basic header, when one was sent.
    func issueToken(form: [String: String], basic: (id: String, secret: String)?, now: Date) -> TokenResult {
        let auth = config.auth
        guard auth.type == .oauth2 else {
            return .refused(status: 400, error: "unsupported_grant_type", description: "this lender uses API keys")
        }
        guard form["grant_type"] == "client_credentials" else {
            return .refused(
                status: 400, error: "unsupported_grant_type", description: "grant_type must be client_credentials")
        }
        let id: String?
        let secret: String?
        switch auth.clientAuth {
        case .basic:
            guard form["client_secret"] == nil else {
                return .refused(
                    status: 401, error: "invalid_client", description: "this client authenticates with HTTP Basic")
            }
            (id, secret) = (basic?.id, basic?.secret)
        case .body:
            guard basic == nil else {
                return .refused(
                    status: 401, error: "invalid_client",
                    description: "this client sends client_secret in the form body")
            }
            (id, secret) = (form["client_id"], form["client_secret"])
        }
        guard id == auth.clientID, secret == auth.clientSecret else {
            return .refused(status: 401, error: "invalid_client", description: "client authentication failed")
        }
        if let requested = form["scope"], !requested.isEmpty {
            let allowed = Set((auth.scope ?? "").split(separator: " "))
            guard requested.split(separator: " ").allSatisfy(allowed.contains) else {
                return .refused(status: 400, error: "invalid_scope", description: "scope not granted to this client")
            }
        }
        let (token, life) = mintToken(now: now)
        return .issued(token: token, expiresIn: life, scope: auth.scope)
    }

    private func randomHex(_ words: Int) -> String {
        (0..<words).map { _ in String(rng.next(), radix: 16) }.joined()
    }

    private func mintToken(now: Date) -> (String, Int) {
        if tokens.count >= Self.maxTokens {
            tokens = tokens.filter { $0.value > now }
            if tokens.count >= Self.maxTokens, let oldest = tokens.min(by: { $0.value < $1.value }) {
                tokens[oldest.key] = nil
            }
        }
        let token = randomHex(4)
        let life = tokenTTLOverride ?? config.auth.expiresInS
        tokens[token] = now.addingTimeInterval(TimeInterval(life))
        tokensIssued += 1
        return (token, life)
    }

    func setTokenTTL(_ seconds: Int?) { tokenTTLOverride = seconds }

    /// Every token issued so far stops working now (the next call with one is `401`).
    func expireTokens() { tokens = [:] }

    // MARK: HMAC handshake (nonce → signed challenge → session → token)

    enum HandshakeResult: Equatable {
        case ok(SimJSON)
        case refused(status: Int, error: String, description: String)
    }

    static func hmacHex(_ message: String, key: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: SymmetricKey(data: Data(key.utf8)))
        return mac.map { String(format: "%02x", $0) }.joined()
    }

    private func pruneHandshake(now: Date) {
        if nonces.count + challenges.count + sessions.count > Self.maxTokens {
            nonces = nonces.filter { $0.value > now }
            challenges = challenges.filter { $0.value.expires > now }
            sessions = sessions.filter { $0.value > now }
        }
    }

    /// Step 1: a nonce for a known client (form `client_id`).
    func handshakeNonce(clientID: String?, now: Date) -> HandshakeResult {
        guard config.auth.type == .hmacHandshake else {
            return .refused(status: 404, error: "not_found", description: "no handshake here")
        }
        guard clientID == config.auth.clientID else {
            return .refused(status: 401, error: "invalid_client", description: "unknown client_id")
        }
        pruneHandshake(now: now)
        let nonce = randomHex(2)
        nonces[nonce] = now.addingTimeInterval(60)
        return .ok(.object(["nonce": .string(nonce), "expires_in": .int(60)]))
    }

    /// Step 2: the nonce signed with the shared key (`hex(hmac_sha256(key, nonce))`) buys a challenge.
    func handshakeChallenge(clientID: String?, nonce: String?, signature: String?, now: Date) -> HandshakeResult {
        guard clientID == config.auth.clientID else {
            return .refused(status: 401, error: "invalid_client", description: "unknown client_id")
        }
        guard let nonce, let expiry = nonces.removeValue(forKey: nonce), expiry > now else {
            return .refused(status: 401, error: "invalid_nonce", description: "nonce unknown, used or expired")
        }
        guard signature == Self.hmacHex(nonce, key: config.auth.clientSecret) else {
            return .refused(status: 401, error: "invalid_signature", description: "signature does not match")
        }
        let id = "ch-" + randomHex(1)
        let challenge = randomHex(2)
        challenges[id] = (challenge, now.addingTimeInterval(60))
        return .ok(.object(["challenge_id": .string(id), "challenge": .string(challenge)]))
    }

    /// Step 3: the challenge signed the same way opens a session.
    func handshakeSession(challengeID: String?, response: String?, now: Date) -> HandshakeResult {
        guard let challengeID, let c = challenges.removeValue(forKey: challengeID), c.expires > now else {
            return .refused(status: 401, error: "invalid_challenge", description: "challenge unknown, used or expired")
        }
        guard response == Self.hmacHex(c.challenge, key: config.auth.clientSecret) else {
            return .refused(status: 401, error: "invalid_response", description: "challenge response does not match")
        }
        let id = "sess-" + randomHex(2)
        sessions[id] = now.addingTimeInterval(60)
        return .ok(.object(["session": .object(["id": .string(id), "expires_in": .int(60)])]))
    }

    /// Step 4: a session (header `X-Session-Id`, single use) is exchanged for the access token.
    func handshakeToken(sessionID: String?, now: Date) -> HandshakeResult {
        guard let sessionID, let expiry = sessions.removeValue(forKey: sessionID), expiry > now else {
            return .refused(status: 401, error: "invalid_session", description: "session unknown, used or expired")
        }
        let (token, life) = mintToken(now: now)
        return .ok(
            .object([
                "data": .object([
                    "access_token": .string(token), "token_type": .string("Bearer"), "expires_in": .int(Int64(life)),
                ])
            ]))
    }

    // MARK: Lending

    enum ApplyResult: Equatable {
        case decided(SimulatedLoan, ghostDelayMs: Int?)
        case full
    }

    func apply(_ input: LoanApplicationInput, now: Date) -> ApplyResult {
        if book.status(reference: input.reference) == nil, book.isFull { return .full }
        let (loan, _) = book.apply(input, now: now)
        let ghost = behaviour.ghostMode && rng.chance(behaviour.ghostRate)
        return .decided(loan, ghostDelayMs: ghost ? behaviour.ghostDelayMs : nil)
    }

    /// A `status` inquiry: counted on the loan; `nil` (404) also while `status_not_found_first`
    /// hides it.
    func status(reference: String) -> SimulatedLoan? {
        book.inquire(reference: reference, hidingFirst: behaviour.statusNotFoundFirst)
    }

    func disburse(loanID: String) -> SimulatedLenderBook.DisburseResult { book.disburse(loanID: loanID) }

    func cancel(loanID: String) -> SimulatedLenderBook.CancelResult { book.cancel(loanID: loanID) }

    func loans() -> [SimulatedLoan] { book.loans }

    func reset() {
        book.reset()
        tokens = [:]
        tokensIssued = 0
        nonces = [:]
        challenges = [:]
        sessions = [:]
    }
}
