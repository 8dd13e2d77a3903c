import Foundation

/// The lender simulator's configuration (`simulator.json`). Every field has a default: `{}` serves
/// the four demo lenders on ports 9101–9104 with a control port on 9100.
public struct SimulatorConfig: Codable, Sendable, Equatable {
    /// Address every simulated lender binds to. Loopback by default (TLS only for lenders with `tls`).
    public var host: String
    /// A port that serves only `/_sim/*` (so a lender in a connection-refused outage can still be
    /// switched back on). `0` picks a free port.
    public var controlPort: Int
    /// Largest request body any lender accepts; larger is `413`.
    public var maxBodyBytes: Int
    /// Seed for latency jitter, error injection and ids; `nil` seeds from the clock.
    public var seed: UInt64?
    public var lenders: [SimulatedLenderConfig]

    enum CodingKeys: String, CodingKey {
        case host
        case controlPort = "control_port"
        case maxBodyBytes = "max_body_bytes"
        case seed, lenders
    }

    public init(
        host: String = "127.0.0.1", controlPort: Int = 9100, maxBodyBytes: Int = 64 * 1024, seed: UInt64? = nil,
        lenders: [SimulatedLenderConfig] = SimulatorConfig.demoLenders
    ) {
        self.host = host
        self.controlPort = controlPort
        self.maxBodyBytes = maxBodyBytes
        self.seed = seed
        self.lenders = lenders
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SimulatorConfig()
        host = try c.decodeIfPresent(String.self, forKey: .host) ?? d.host
        controlPort = try c.decodeIfPresent(Int.self, forKey: .controlPort) ?? d.controlPort
        maxBodyBytes = try c.decodeIfPresent(Int.self, forKey: .maxBodyBytes) ?? d.maxBodyBytes
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        lenders = try c.decodeIfPresent([SimulatedLenderConfig].self, forKey: .lenders) ?? d.lenders
    }

    /// Reads and validates a config file. Errors name the file and the first bad field.
    public static func load(path: String) throws -> SimulatorConfig {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SimulatorConfigError(message: "cannot read \(path): \(error.localizedDescription)")
        }
        var config = try parse(data, source: path)
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
        for i in config.lenders.indices {
            config.lenders[i].tls = config.lenders[i].tls?.resolved(relativeTo: dir)
        }
        return config
    }

    static func parse(_ data: Data, source: String = "config") throws -> SimulatorConfig {
        guard data.count <= 1 << 20 else {
            throw SimulatorConfigError(message: "\(source) is larger than 1 MiB")
        }
        let config: SimulatorConfig
        do {
            config = try JSONDecoder().decode(SimulatorConfig.self, from: data)
        } catch let error as DecodingError {
            throw SimulatorConfigError(message: "\(source): \(Self.describe(error))")
        }
        try config.validate()
        return config
    }

    /// Refuses configurations that could not run: duplicate ids or ports, unknown API shapes,
    /// probabilities outside 0…1, negative times.
    public func validate() throws {
        func fail(_ field: String, _ message: String) -> SimulatorConfigError {
            SimulatorConfigError(message: "\(field): \(message)")
        }
        guard (0...65535).contains(controlPort) else { throw fail("control_port", "must be 0…65535") }
        guard (1024...(16 << 20)).contains(maxBodyBytes) else {
            throw fail("max_body_bytes", "must be between 1024 and 16777216")
        }
        guard !lenders.isEmpty else { throw fail("lenders", "at least one lender is required") }
        var ids = Set<String>()
        var ports = Set<Int>()
        for (i, l) in lenders.enumerated() {
            let at = "lenders[\(i)]"
            guard !l.id.isEmpty, l.id.utf8.count <= 64,
                l.id.utf8.allSatisfy({
                    ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F
                })
            else { throw fail("\(at).id", "must be 1–64 of a-z, 0-9, '-', '_'") }
            guard ids.insert(l.id).inserted else { throw fail("\(at).id", "duplicate lender id \(l.id)") }
            guard (0...65535).contains(l.port) else { throw fail("\(at).port", "must be 0…65535") }
            if l.port != 0 {
                guard ports.insert(l.port).inserted, l.port != controlPort else {
                    throw fail("\(at).port", "port \(l.port) is used twice")
                }
            }
            guard LenderAPIShape.named(l.api) != nil else {
                throw fail(
                    "\(at).api",
                    "unknown API shape \"\(l.api)\"; known: \(LenderAPIShape.all.map(\.name).joined(separator: ", "))")
            }
            guard (0...100_000).contains(l.rateBps) else { throw fail("\(at).rate_bps", "must be 0…100000") }
            try l.auth.validate(at: "\(at).auth")
            try l.rules.validate(at: "\(at).rules")
            try l.behaviour.validate(at: at)
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ p: [any CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(
                in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .typeMismatch(_, let c), .valueNotFound(_, let c):
            return "\(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let key, let c):
            return "\(path(c.codingPath + [key])) is required"
        case .dataCorrupted(let c):
            return c.codingPath.isEmpty ? "not valid JSON" : "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

public struct SimulatorConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// One simulated NBFC: where it listens, which API shape it speaks, how it authenticates, whom
/// it lends to and how badly it behaves.
public struct SimulatedLenderConfig: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// `0` picks a free port (tests).
    public var port: Int
    /// Which invented API the lender speaks: `abfl`, `piramal`, `hero` or `tata` (see Docs/simulator.md).
    public var api: String
    public var auth: SimulatedAuthConfig
    public var rules: SimulatedLendingRules
    /// The annual rate quoted on approval, in basis points (1499 = 14.99 %).
    public var rateBps: Int
    public var behaviour: SimulatedBehaviour
    /// Serve HTTPS and require a client certificate signed by `client_ca_file` (mTLS).
    public var tls: SimulatedTLSConfig?

    enum CodingKeys: String, CodingKey {
        case id, name, port, api, auth, rules, tls
        case rateBps = "rate_bps"
    }

    public init(
        id: String, name: String? = nil, port: Int = 0, api: String? = nil, auth: SimulatedAuthConfig? = nil,
        rules: SimulatedLendingRules = SimulatedLendingRules(), rateBps: Int = 1500,
        behaviour: SimulatedBehaviour = SimulatedBehaviour(), tls: SimulatedTLSConfig? = nil
    ) {
        self.tls = tls
        self.id = id
        self.name = name ?? id
        self.port = port
        self.api = api ?? id
        self.auth = auth ?? .apiKey(header: "X-Api-Key", value: "sim-\(id)-key")
        self.rules = rules
        self.rateBps = rateBps
        self.behaviour = behaviour
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let id = try c.decode(String.self, forKey: .id)
        self.init(
            id: id,
            name: try c.decodeIfPresent(String.self, forKey: .name),
            port: try c.decodeIfPresent(Int.self, forKey: .port) ?? 0,
            api: try c.decodeIfPresent(String.self, forKey: .api),
            auth: try c.decodeIfPresent(SimulatedAuthConfig.self, forKey: .auth),
            rules: try c.decodeIfPresent(SimulatedLendingRules.self, forKey: .rules) ?? SimulatedLendingRules(),
            rateBps: try c.decodeIfPresent(Int.self, forKey: .rateBps) ?? 1500,
            // Behaviour fields sit flat in the lender object (latency_ms, outage, ghost_mode …).
            behaviour: try SimulatedBehaviour(from: decoder),
            tls: try c.decodeIfPresent(SimulatedTLSConfig.self, forKey: .tls)
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(port, forKey: .port)
        try c.encode(api, forKey: .api)
        try c.encode(auth, forKey: .auth)
        try c.encode(rules, forKey: .rules)
        try c.encode(rateBps, forKey: .rateBps)
        try c.encodeIfPresent(tls, forKey: .tls)
        try behaviour.encode(to: encoder)
    }
}

/// HTTPS with client-certificate verification for one simulated lender. Relative paths are
/// relative to the configuration file's folder.
public struct SimulatedTLSConfig: Codable, Sendable, Equatable {
    public var certFile: String
    public var keyFile: String
    /// Clients must present a certificate signed by this CA.
    public var clientCAFile: String

    enum CodingKeys: String, CodingKey {
        case certFile = "cert_file"
        case keyFile = "key_file"
        case clientCAFile = "client_ca_file"
    }

    public init(certFile: String, keyFile: String, clientCAFile: String) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }

    func resolved(relativeTo dir: URL) -> SimulatedTLSConfig {
        func r(_ p: String) -> String { p.hasPrefix("/") ? p : dir.appendingPathComponent(p).path }
        return SimulatedTLSConfig(certFile: r(certFile), keyFile: r(keyFile), clientCAFile: r(clientCAFile))
    }
}

/// How a lender checks its callers.
public struct SimulatedAuthConfig: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case apiKey = "api_key"
        case oauth2 = "oauth2_client_credentials"
        /// Four steps under `token_path` (default `/auth/v1`): nonce → signed challenge →
        /// session → token (see Docs/simulator.md); `client_secret` is the HMAC key.
        case hmacHandshake = "hmac_handshake"
    }
    public enum ClientAuth: String, Codable, Sendable { case body, basic }

    public var type: Kind
    /// `api_key`: the header that carries the key, and the key.
    public var header: String
    public var value: String
    /// `oauth2_client_credentials`: token endpoint path, client, secret, how the client proves
    /// itself (`body`: form fields; `basic`: HTTP Basic), token lifetime, optional scope required.
    public var tokenPath: String
    public var clientID: String
    public var clientSecret: String
    public var clientAuth: ClientAuth
    public var expiresInS: Int
    public var scope: String?

    enum CodingKeys: String, CodingKey {
        case type, header, value
        case tokenPath = "token_path"
        case clientID = "client_id"
        case clientSecret = "client_secret"
        case clientAuth = "client_auth"
        case expiresInS = "expires_in_s"
        case scope
    }

    public static func apiKey(header: String, value: String) -> SimulatedAuthConfig {
        SimulatedAuthConfig(
            type: .apiKey, header: header, value: value, tokenPath: "/oauth/token", clientID: "", clientSecret: "",
            clientAuth: .body, expiresInS: 3600, scope: nil)
    }

    public static func hmacHandshake(
        basePath: String = "/auth/v1", clientID: String, signingKey: String, expiresInS: Int = 900
    ) -> SimulatedAuthConfig {
        SimulatedAuthConfig(
            type: .hmacHandshake, header: "X-Api-Key", value: "", tokenPath: basePath, clientID: clientID,
            clientSecret: signingKey, clientAuth: .body, expiresInS: expiresInS, scope: nil)
    }

    public static func oauth2(
        tokenPath: String = "/oauth/token", clientID: String, clientSecret: String, clientAuth: ClientAuth = .body,
        expiresInS: Int = 3600, scope: String? = nil
    ) -> SimulatedAuthConfig {
        SimulatedAuthConfig(
            type: .oauth2, header: "X-Api-Key", value: "", tokenPath: tokenPath, clientID: clientID,
            clientSecret: clientSecret, clientAuth: clientAuth, expiresInS: expiresInS, scope: scope)
    }

    init(
        type: Kind, header: String, value: String, tokenPath: String, clientID: String, clientSecret: String,
        clientAuth: ClientAuth, expiresInS: Int, scope: String?
    ) {
        self.type = type
        self.header = header
        self.value = value
        self.tokenPath = tokenPath
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.clientAuth = clientAuth
        self.expiresInS = expiresInS
        self.scope = scope
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decodeIfPresent(Kind.self, forKey: .type) ?? .apiKey
        header = try c.decodeIfPresent(String.self, forKey: .header) ?? "X-Api-Key"
        value = try c.decodeIfPresent(String.self, forKey: .value) ?? ""
        let handshake = type == .hmacHandshake
        tokenPath = try c.decodeIfPresent(String.self, forKey: .tokenPath) ?? (handshake ? "/auth/v1" : "/oauth/token")
        clientID = try c.decodeIfPresent(String.self, forKey: .clientID) ?? ""
        clientSecret = try c.decodeIfPresent(String.self, forKey: .clientSecret) ?? ""
        clientAuth = try c.decodeIfPresent(ClientAuth.self, forKey: .clientAuth) ?? .body
        expiresInS = try c.decodeIfPresent(Int.self, forKey: .expiresInS) ?? (handshake ? 900 : 3600)
        scope = try c.decodeIfPresent(String.self, forKey: .scope)
    }

    func validate(at path: String) throws {
        switch type {
        case .apiKey:
            guard !header.isEmpty, header.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x3A }) else {
                throw SimulatorConfigError(message: "\(path).header: must be a header name")
            }
            guard !value.isEmpty else { throw SimulatorConfigError(message: "\(path).value: must not be empty") }
        case .oauth2, .hmacHandshake:
            guard tokenPath.hasPrefix("/") else {
                throw SimulatorConfigError(message: "\(path).token_path: must start with '/'")
            }
            guard !clientID.isEmpty, !clientSecret.isEmpty else {
                throw SimulatorConfigError(
                    message: "\(path): client_id and client_secret are required for \(type.rawValue)")
            }
            guard (1...86_400).contains(expiresInS) else {
                throw SimulatorConfigError(message: "\(path).expires_in_s: must be 1…86400")
            }
        }
    }
}

/// A lender's own credit policy, applied to the fields its API receives.
public struct SimulatedLendingRules: Codable, Sendable, Equatable {
    public var minBureauScore: Int
    public var minAmountPaise: Int64
    public var maxAmountPaise: Int64
    /// Empty: any tenure from 1 to 120 months.
    public var allowedTenureMonths: [Int]
    /// Age limits apply only to lenders whose API receives a date of birth.
    public var minAge: Int?
    public var maxAge: Int?

    enum CodingKeys: String, CodingKey {
        case minBureauScore = "min_bureau_score"
        case minAmountPaise = "min_amount_paise"
        case maxAmountPaise = "max_amount_paise"
        case allowedTenureMonths = "allowed_tenure_months"
        case minAge = "min_age"
        case maxAge = "max_age"
    }

    public init(
        minBureauScore: Int = 300, minAmountPaise: Int64 = 100_000, maxAmountPaise: Int64 = 50_000_000,
        allowedTenureMonths: [Int] = [], minAge: Int? = nil, maxAge: Int? = nil
    ) {
        self.minBureauScore = minBureauScore
        self.minAmountPaise = minAmountPaise
        self.maxAmountPaise = maxAmountPaise
        self.allowedTenureMonths = allowedTenureMonths
        self.minAge = minAge
        self.maxAge = maxAge
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SimulatedLendingRules()
        minBureauScore = try c.decodeIfPresent(Int.self, forKey: .minBureauScore) ?? d.minBureauScore
        minAmountPaise = try c.decodeIfPresent(Int64.self, forKey: .minAmountPaise) ?? d.minAmountPaise
        maxAmountPaise = try c.decodeIfPresent(Int64.self, forKey: .maxAmountPaise) ?? d.maxAmountPaise
        allowedTenureMonths = try c.decodeIfPresent([Int].self, forKey: .allowedTenureMonths) ?? d.allowedTenureMonths
        minAge = try c.decodeIfPresent(Int.self, forKey: .minAge)
        maxAge = try c.decodeIfPresent(Int.self, forKey: .maxAge)
    }

    func validate(at path: String) throws {
        guard (300...900).contains(minBureauScore) else {
            throw SimulatorConfigError(message: "\(path).min_bureau_score: must be 300…900")
        }
        guard minAmountPaise >= 0, maxAmountPaise >= minAmountPaise else {
            throw SimulatorConfigError(message: "\(path): need 0 <= min_amount_paise <= max_amount_paise")
        }
        guard allowedTenureMonths.allSatisfy({ (1...120).contains($0) }) else {
            throw SimulatorConfigError(message: "\(path).allowed_tenure_months: each must be 1…120")
        }
    }
}

/// How a lender misbehaves. Everything here can also be switched at runtime through
/// `POST /_sim/control`.
public struct SimulatedBehaviour: Codable, Sendable, Equatable {
    public enum Outage: String, Codable, Sendable {
        case none
        /// The lender's port is closed: connections are refused.
        case refuse
        /// The lender answers every API call with `503` and records nothing.
        case unavailable = "503"
    }

    /// Added to every API reply (token endpoint included): fixed part plus uniform jitter 0…jitter.
    public var latencyMs: Int
    public var jitterMs: Int
    /// Fraction (0…1) of API calls answered `500` before anything is recorded.
    public var errorRate: Double
    public var outage: Outage
    /// Ghost mode: `apply` records its decision at once but replies only after `ghost_delay_ms`
    /// (longer than the caller's timeout), for a fraction `ghost_rate` of applies.
    public var ghostMode: Bool
    public var ghostDelayMs: Int
    public var ghostRate: Double
    /// Late approval: `status` answers `404` to the first N inquiries about each reference,
    /// whatever was recorded. With ghost mode, the caller gives up on the lender (`not_found`
    /// twice) although it lent; a later inquiry finds the approval.
    public var statusNotFoundFirst: Int

    enum CodingKeys: String, CodingKey {
        case latencyMs = "latency_ms"
        case jitterMs = "jitter_ms"
        case errorRate = "error_rate"
        case outage
        case ghostMode = "ghost_mode"
        case ghostDelayMs = "ghost_delay_ms"
        case ghostRate = "ghost_rate"
        case statusNotFoundFirst = "status_not_found_first"
    }

    public init(
        latencyMs: Int = 0, jitterMs: Int = 0, errorRate: Double = 0, outage: Outage = .none, ghostMode: Bool = false,
        ghostDelayMs: Int = 5000, ghostRate: Double = 1, statusNotFoundFirst: Int = 0
    ) {
        self.latencyMs = latencyMs
        self.jitterMs = jitterMs
        self.errorRate = errorRate
        self.outage = outage
        self.ghostMode = ghostMode
        self.ghostDelayMs = ghostDelayMs
        self.ghostRate = ghostRate
        self.statusNotFoundFirst = statusNotFoundFirst
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        try update(from: c)
    }

    /// Overwrites only the fields present (the control endpoint's partial update).
    mutating func update(from c: KeyedDecodingContainer<CodingKeys>) throws {
        latencyMs = try c.decodeIfPresent(Int.self, forKey: .latencyMs) ?? latencyMs
        jitterMs = try c.decodeIfPresent(Int.self, forKey: .jitterMs) ?? jitterMs
        errorRate = try c.decodeIfPresent(Double.self, forKey: .errorRate) ?? errorRate
        outage = try c.decodeIfPresent(Outage.self, forKey: .outage) ?? outage
        ghostMode = try c.decodeIfPresent(Bool.self, forKey: .ghostMode) ?? ghostMode
        ghostDelayMs = try c.decodeIfPresent(Int.self, forKey: .ghostDelayMs) ?? ghostDelayMs
        ghostRate = try c.decodeIfPresent(Double.self, forKey: .ghostRate) ?? ghostRate
        statusNotFoundFirst =
            try c.decodeIfPresent(Int.self, forKey: .statusNotFoundFirst) ?? statusNotFoundFirst
    }

    func validate(at path: String) throws {
        let day = 86_400_000
        guard (0...day).contains(latencyMs) else {
            throw SimulatorConfigError(message: "\(path).latency_ms: must be 0…86400000")
        }
        guard (0...day).contains(jitterMs) else {
            throw SimulatorConfigError(message: "\(path).jitter_ms: must be 0…86400000")
        }
        guard (0...day).contains(ghostDelayMs) else {
            throw SimulatorConfigError(message: "\(path).ghost_delay_ms: must be 0…86400000")
        }
        guard (0...1).contains(errorRate) else {
            throw SimulatorConfigError(message: "\(path).error_rate: must be 0…1")
        }
        guard (0...1).contains(ghostRate) else {
            throw SimulatorConfigError(message: "\(path).ghost_rate: must be 0…1")
        }
        guard (0...1_000_000).contains(statusNotFoundFirst) else {
            throw SimulatorConfigError(message: "\(path).status_not_found_first: must be 0…1000000")
        }
    }
}

extension SimulatorConfig {
    /// The four demo NBFCs. Kept in step with `simulator.json`, `lenders/*.json` and `rules.json`.
    public static let demoLenders: [SimulatedLenderConfig] = [
        SimulatedLenderConfig(
            id: "abfl", name: "Aditya Birla Finance (simulated)", port: 9101, api: "abfl",
            auth: .apiKey(header: "X-ABFL-Api-Key", value: "sim-abfl-7c1e9a"),
            rules: SimulatedLendingRules(
                minBureauScore: 750, minAmountPaise: 500_000, maxAmountPaise: 20_000_000,
                allowedTenureMonths: [3, 6, 9, 12]),
            rateBps: 1499, behaviour: SimulatedBehaviour(latencyMs: 40, jitterMs: 60)),
        SimulatedLenderConfig(
            id: "tata", name: "Tata Capital (simulated)", port: 9104, api: "tata",
            auth: .oauth2(
                tokenPath: "/connect/token", clientID: "flux-sim", clientSecret: "sim-tata-2f8d41", clientAuth: .basic,
                expiresInS: 1800, scope: "proposals.write"),
            rules: SimulatedLendingRules(
                minBureauScore: 720, minAmountPaise: 1_000_000, maxAmountPaise: 30_000_000,
                allowedTenureMonths: [6, 9, 12, 18, 24]),
            rateBps: 1350, behaviour: SimulatedBehaviour(latencyMs: 60, jitterMs: 80)),
        SimulatedLenderConfig(
            id: "hero", name: "Hero FinCorp (simulated)", port: 9103, api: "hero",
            auth: .oauth2(
                tokenPath: "/oauth/token", clientID: "flux-sim", clientSecret: "sim-hero-93b0c5", clientAuth: .body,
                expiresInS: 3600),
            rules: SimulatedLendingRules(
                minBureauScore: 680, minAmountPaise: 300_000, maxAmountPaise: 15_000_000,
                allowedTenureMonths: [3, 6, 9, 12, 18, 24]),
            rateBps: 1800, behaviour: SimulatedBehaviour(latencyMs: 30, jitterMs: 50, errorRate: 0.02)),
        SimulatedLenderConfig(
            id: "piramal", name: "Piramal Finance (simulated)", port: 9102, api: "piramal",
            auth: .apiKey(header: "Ocp-Apim-Subscription-Key", value: "sim-piramal-5d27e0"),
            rules: SimulatedLendingRules(
                minBureauScore: 650, minAmountPaise: 300_000, maxAmountPaise: 10_000_000,
                allowedTenureMonths: [3, 6, 9, 12], minAge: 21, maxAge: 60),
            rateBps: 2100, behaviour: SimulatedBehaviour(latencyMs: 80, jitterMs: 120)),
    ]
}

extension SimulatorConfig {
    /// A fifth lender, outside the demo: a four-step HMAC handshake whose token lives 15
    /// minutes (descriptor `lenders/extra/idfc.json`). Speaks the `hero` API shape.
    public static let idfcLender = SimulatedLenderConfig(
        id: "idfc", name: "IDFC First Bank (simulated)", port: 9105, api: "hero",
        auth: .hmacHandshake(clientID: "flux-sim", signingKey: "sim-idfc-4a9c12", expiresInS: 900),
        rules: SimulatedLendingRules(
            minBureauScore: 700, minAmountPaise: 300_000, maxAmountPaise: 20_000_000,
            allowedTenureMonths: [3, 6, 9, 12, 18, 24]),
        rateBps: 1650, behaviour: SimulatedBehaviour(latencyMs: 30, jitterMs: 40))

    /// A sixth lender, outside the demo: HTTPS that requires a client certificate signed by the
    /// CA in `tls.client_ca_file`, and an API key on top (descriptor `lenders/extra/kotak.json`).
    /// Speaks the `piramal` API shape.
    public static func kotakLender(tls: SimulatedTLSConfig) -> SimulatedLenderConfig {
        SimulatedLenderConfig(
            id: "kotak", name: "Kotak Mahindra Prime (simulated)", port: 9106, api: "piramal",
            auth: .apiKey(header: "X-Kotak-Key", value: "sim-kotak-81d3f7"),
            rules: SimulatedLendingRules(
                minBureauScore: 700, minAmountPaise: 300_000, maxAmountPaise: 20_000_000,
                allowedTenureMonths: [3, 6, 9, 12], minAge: 21, maxAge: 60),
            rateBps: 1550, behaviour: SimulatedBehaviour(latencyMs: 30, jitterMs: 40), tls: tls)
    }
}
