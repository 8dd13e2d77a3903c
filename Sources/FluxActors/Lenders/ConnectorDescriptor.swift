import Foundation

/// A descriptor that does not validate: `path` is the JSON path of the first bad field
/// (`$.operations.apply.response.decision.from`), `message` says what is wrong with it.
/// Maps to `422 invalid_descriptor`.
public struct DescriptorError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

public enum LenderOperation: String, Sendable, Hashable, CaseIterable {
    case apply, status, disburse, cancel
}

/// How Flux proves itself to a lender (CONTRACT §5 `auth`).
public enum LenderAuth: Sendable {
    case none
    case apiKey(header: String, value: TextTemplate)
    case oauth2ClientCredentials(OAuth2ClientCredentials)
    /// Ordered steps that end in a token, cached per lender and renewed at 80 % of its ttl.
    case workflow(AuthWorkflow)
    /// A client certificate on the connection, and optionally another auth on top (`then`).
    indirect case mtls(MTLSIdentity, then: LenderAuth)

    public var typeName: String {
        switch self {
        case .none: "none"
        case .apiKey: "api_key"
        case .oauth2ClientCredentials: "oauth2_client_credentials"
        case .workflow: "workflow"
        case .mtls: "mtls"
        }
    }

    /// The auth that puts headers on requests (the one inside `mtls`).
    public var headerAuth: LenderAuth {
        if case .mtls(_, let then) = self { return then.headerAuth }
        return self
    }

    /// The client certificate, for an `mtls` lender.
    public var identity: MTLSIdentity? {
        if case .mtls(let id, _) = self { return id }
        return nil
    }

    /// A token is fetched and cached (oauth2, workflow).
    public var usesToken: Bool {
        switch headerAuth {
        case .oauth2ClientCredentials, .workflow: true
        default: false
        }
    }
}

public struct OAuth2ClientCredentials: Sendable, Equatable {
    public enum ClientAuth: String, Sendable { case body, basic }
    /// Absolute URL (a relative `token_url` is resolved against `base_url` at load).
    public var tokenURL: String
    public var clientID: String
    public var clientSecret: String
    public var scope: String?
    public var clientAuth: ClientAuth
}

/// Where a mapped reply field comes from: a JSONPath into the reply, or a literal.
public enum ReplyValue: Sendable, Equatable {
    case path(JSONPath)
    case literal(JSONValue)

    func evaluate(_ reply: JSONValue) -> JSONValue? {
        switch self {
        case .path(let p): p.evaluate(reply)
        case .literal(let v): v
        }
    }

    var text: String {
        switch self {
        case .path(let p): p.description
        case .literal(let v): JSONWriter.string(v)
        }
    }
}

/// The `response` block of one operation.
public struct ResponseMapping: Sendable, Equatable {
    public var decisionPath: JSONPath?
    /// Lender word → Flux word (`approved`, `rejected`, `pending`, `not_found`, `disbursed`, `failed`, `cancelled`).
    public var decisionMap: [String: String]
    public var lenderReference: ReplyValue?
    public var reason: ReplyValue?
    public var annualRateBps: ReplyValue?
}

/// One operation (`apply`, `status`, `disburse`, `cancel`), its templates compiled.
public struct OperationSpec: Sendable {
    public var method: String
    /// `path` (with any `?query`): rendered values are percent-encoded.
    var path: TextTemplate
    var headers: [(name: String, value: TextTemplate)]
    var body: JSONTemplate?
    public var timeoutMs: Int
    public var response: ResponseMapping
}

/// A lender connector descriptor (CONTRACT §5), validated and compiled.
public struct ConnectorDescriptor: Sendable {
    public var id: String
    public var name: String
    /// Without a trailing `/`.
    public var baseURL: String
    public var timeoutMs: Int
    public var auth: LenderAuth
    public var retry: RetryPolicy
    public var circuitBreaker: CircuitBreakerConfig
    public var operations: [LenderOperation: OperationSpec]
    /// Conditions in rules-expression syntax, as text: the rules engine compiles them.
    public var validate: [String]
    /// The descriptor's `secrets` block, references resolved.
    public var secrets: [String: JSONValue]
    /// The descriptor as given (references unresolved): what `PUT /v1/lenders/{id}` sends to other nodes.
    public var source: JSONValue
    /// The descriptor with every secret `"***"`: all of `auth` except `type` and URLs, all of
    /// `secrets`, every value that holds a `${env:…}` / `${file:…}` reference.
    public var redacted: JSONValue

    // Bounds: descriptors are operator input, but an API (PUT /v1/lenders) accepts them.
    static let maxNodes = 5_000
    static let maxString = 8 * 1024
    static let maxHeaders = 32
    static let maxValidate = 64
    static let maxSecrets = 64
    static let maxBodyDepth = 16

    public init(json: JSONValue, resolver: ReferenceResolver) throws(DescriptorError) {
        var p = DescriptorParser(resolver: resolver)
        self = try p.parse(json)
    }

    /// Resolves `${file:…}` relative to the working directory.
    public init(json: JSONValue, environment: [String: String]) throws(DescriptorError) {
        try self.init(json: json, resolver: .files(environment: environment, relativeTo: nil))
    }

    fileprivate init(
        id: String, name: String, baseURL: String, timeoutMs: Int, auth: LenderAuth, retry: RetryPolicy,
        circuitBreaker: CircuitBreakerConfig, operations: [LenderOperation: OperationSpec], validate: [String],
        secrets: [String: JSONValue], source: JSONValue
    ) {
        self.id = id
        self.name = name
        self.baseURL = baseURL
        self.timeoutMs = timeoutMs
        self.auth = auth
        self.retry = retry
        self.circuitBreaker = circuitBreaker
        self.operations = operations
        self.validate = validate
        self.secrets = secrets
        self.source = source
        self.redacted = Redaction.redact(source)
    }
}

/// Reads every `*.json` in `directory` (sorted by name) as a descriptor. `${file:…}` paths are
/// relative to that directory. An error names the file and the JSON path. Two files with one
/// `id` are refused.
public func loadDescriptors(directory: URL, environment: [String: String]) throws -> [ConnectorDescriptor] {
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        .filter { $0.hasSuffix(".json") }.sorted()
    var out: [ConnectorDescriptor] = []
    var seen: [String: String] = [:]
    for name in names {
        let d = try loadDescriptor(file: directory.appendingPathComponent(name), environment: environment)
        if let other = seen[d.id] {
            throw DescriptorError(path: "\(name): $.id", message: "lender id \(d.id) is also defined in \(other)")
        }
        seen[d.id] = name
        out.append(d)
    }
    return out
}

/// Reads one descriptor file (at most 256 KiB); `${file:…}` and `cert_file`-like paths are
/// relative to its folder. An error's path starts with the file's name (`hero.json: $.auth`).
public func loadDescriptor(file url: URL, environment: [String: String]) throws -> ConnectorDescriptor {
    let name = url.lastPathComponent
    let data = try Data(contentsOf: url)
    guard data.count <= 256 * 1024 else {
        throw DescriptorError(path: "\(name): $", message: "descriptor file is larger than 256 KiB")
    }
    guard let json = JSONReader.parse(Array(data)) else {
        throw DescriptorError(path: "\(name): $", message: "not valid JSON")
    }
    do {
        return try ConnectorDescriptor(
            json: json, resolver: .files(environment: environment, relativeTo: url.deletingLastPathComponent()))
    } catch {
        throw error.path.contains(": ")
            ? error : DescriptorError(path: "\(name): \(error.path)", message: error.message)
    }
}

// MARK: - parsing

func child(_ path: String, _ key: String) -> String {
    let plain =
        !key.isEmpty
        && key.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
        }
    return plain ? "\(path).\(key)" : "\(path)['\(key)']"
}

struct DescriptorParser {
    let resolver: ReferenceResolver

    init(resolver: ReferenceResolver) { self.resolver = resolver }

    func fail(_ path: String, _ message: String) -> DescriptorError { DescriptorError(path: path, message: message) }

    func object(_ v: JSONValue?, _ path: String, allowed: [String]) throws(DescriptorError) -> [String: JSONValue] {
        guard let v else { throw fail(path, "is required") }
        guard case .object(let o) = v else { throw fail(path, "must be an object, not \(v.typeName)") }
        for k in o.keys.sorted() where !allowed.contains(k) {
            throw fail(child(path, k), "unknown key (allowed: \(allowed.joined(separator: ", ")))")
        }
        return o
    }

    /// A plain string value with `${env:}` / `${file:}` resolved.
    func string(_ o: [String: JSONValue], _ key: String, _ path: String) throws(DescriptorError) -> String? {
        let p = child(path, key)
        guard let v = o[key], !v.isNull else { return nil }
        guard case .string(let s) = v else { throw fail(p, "must be a string, not \(v.typeName)") }
        guard !s.isEmpty else { throw fail(p, "must not be empty") }
        guard s.utf8.count <= ConnectorDescriptor.maxString else {
            throw fail(p, "is longer than \(ConnectorDescriptor.maxString) bytes")
        }
        let resolved: String
        do throws(TemplateCompileError) {
            (resolved, _) = try resolver.resolveAll(in: s)
        } catch {
            throw fail(p, error.message)
        }
        guard !resolved.isEmpty else { throw fail(p, "resolves to an empty string") }
        return resolved
    }

    func required(_ o: [String: JSONValue], _ key: String, _ path: String) throws(DescriptorError) -> String {
        guard let s = try string(o, key, path) else { throw fail(child(path, key), "is required") }
        return s
    }

    func int(_ o: [String: JSONValue], _ key: String, _ path: String, range: ClosedRange<Int>, default d: Int)
        throws(DescriptorError) -> Int
    {
        let p = child(path, key)
        guard let v = o[key], !v.isNull else { return d }
        guard let i = v.intValue else { throw fail(p, "must be an integer, not \(v.typeName)") }
        guard i >= range.lowerBound, i <= range.upperBound else {
            throw fail(p, "must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return Int(i)
    }

    func text(_ s: String, _ path: String, _ env: TemplateEnvironment) throws(DescriptorError) -> TextTemplate {
        guard s.utf8.count <= ConnectorDescriptor.maxString else {
            throw fail(path, "is longer than \(ConnectorDescriptor.maxString) bytes")
        }
        do {
            return try TextTemplate(compiling: s, environment: env)
        } catch {
            throw fail(path, error.message)
        }
    }

    mutating func parse(_ json: JSONValue) throws(DescriptorError) -> ConnectorDescriptor {
        guard Self.countNodes(json, limit: ConnectorDescriptor.maxNodes) <= ConnectorDescriptor.maxNodes else {
            throw fail("$", "descriptor has more than \(ConnectorDescriptor.maxNodes) values")
        }
        let top = try object(
            json, "$",
            allowed: [
                "id", "name", "base_url", "timeout_ms", "auth", "retry", "circuit_breaker", "operations", "validate",
                "secrets",
            ])
        let id = try required(top, "id", "$")
        guard id.utf8.count <= 64,
            id.utf8.allSatisfy({ c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D
                    || c == 0x5F
            })
        else { throw fail("$.id", "must be an identifier of at most 64 letters, digits, '-' and '_'") }
        let name = try required(top, "name", "$")
        guard name.utf8.count <= 256 else { throw fail("$.name", "is longer than 256 bytes") }
        var baseURL = try required(top, "base_url", "$")
        guard let url = URL(string: baseURL), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil
        else { throw fail("$.base_url", "must be an absolute http:// or https:// URL without query or fragment") }
        while baseURL.hasSuffix("/") { baseURL.removeLast() }
        let timeoutMs = try int(top, "timeout_ms", "$", range: 1...120_000, default: 2000)

        // secrets
        var secrets: [String: JSONValue] = [:]
        if let s = top["secrets"], !s.isNull {
            let o = try object(s, "$.secrets", allowed: Array((s.objectValue ?? [:]).keys))
            guard o.count <= ConnectorDescriptor.maxSecrets else {
                throw fail("$.secrets", "has more than \(ConnectorDescriptor.maxSecrets) entries")
            }
            for k in o.keys.sorted() {
                let p = child("$.secrets", k)
                switch o[k]! {
                case .string:
                    secrets[k] = .string(try required(o, k, "$.secrets"))
                case .int, .double, .bool:
                    secrets[k] = o[k]!
                default:
                    throw fail(p, "must be a string, number or boolean")
                }
            }
        }

        let base = TemplateEnvironment(
            secretNames: Set(secrets.keys), secretValues: secrets, tokenAvailable: false, resolver: resolver)
        let authTemplates = try parseAuth(top["auth"], path: "$.auth", baseURL: baseURL, env: base, nested: false)
        var env = base
        env.tokenAvailable = authTemplates.usesToken
        if case .workflow(let w) = authTemplates.headerAuth { env.stepVariables = w.stepVariables }

        let retry = try parseRetry(top["retry"])
        let breaker = try parseBreaker(top["circuit_breaker"], timeoutMs: timeoutMs)

        let opsObject = try object(top["operations"], "$.operations", allowed: LenderOperation.allCases.map(\.rawValue))
        var operations: [LenderOperation: OperationSpec] = [:]
        for op in LenderOperation.allCases {
            let p = child("$.operations", op.rawValue)
            guard let v = opsObject[op.rawValue], !v.isNull else {
                if op == .apply || op == .status {
                    throw fail(p, op == .apply ? "is required" : "is required: Flux asks it after a lost reply")
                }
                continue
            }
            operations[op] = try parseOperation(v, op: op, path: p, timeoutMs: timeoutMs, env: env)
        }

        var validate: [String] = []
        if let v = top["validate"], !v.isNull {
            guard case .array(let items) = v else { throw fail("$.validate", "must be an array of condition strings") }
            guard items.count <= ConnectorDescriptor.maxValidate else {
                throw fail("$.validate", "has more than \(ConnectorDescriptor.maxValidate) conditions")
            }
            for (n, item) in items.enumerated() {
                let p = "$.validate[\(n)]"
                guard case .string(let s) = item else { throw fail(p, "must be a string, not \(item.typeName)") }
                guard !s.trimmingCharacters(in: .whitespaces).isEmpty else { throw fail(p, "must not be empty") }
                guard s.utf8.count <= 1024 else { throw fail(p, "is longer than 1024 bytes") }
                validate.append(s)
            }
        }

        return ConnectorDescriptor(
            id: id, name: name, baseURL: baseURL, timeoutMs: timeoutMs, auth: authTemplates, retry: retry,
            circuitBreaker: breaker, operations: operations, validate: validate, secrets: secrets, source: json)
    }

    static func countNodes(_ v: JSONValue, limit: Int) -> Int {
        var n = 0
        var stack = [v]
        while let x = stack.popLast() {
            n += 1
            if n > limit { return n }
            switch x {
            case .array(let a): stack.append(contentsOf: a)
            case .object(let o): stack.append(contentsOf: o.values)
            default: break
            }
        }
        return n
    }

    func parseAuth(_ v: JSONValue?, path: String, baseURL: String, env: TemplateEnvironment, nested: Bool)
        throws(DescriptorError) -> LenderAuth
    {
        guard let v, !v.isNull else {
            if nested { throw fail(path, "is required") }
            return .none
        }
        guard case .object(let raw) = v else { throw fail(path, "must be an object, not \(v.typeName)") }
        guard let type = raw["type"]?.stringValue else { throw fail(child(path, "type"), "is required") }
        switch type {
        case "api_key":
            let o = try object(v, path, allowed: ["type", "header", "value"])
            let header = try required(o, "header", path)
            guard HTTPHeaderName.isValid(header) else {
                throw fail(child(path, "header"), "is not a valid HTTP header name")
            }
            guard case .string(let rawValue)? = o["value"], !rawValue.isEmpty else {
                throw fail(child(path, "value"), o["value"] == nil ? "is required" : "must be a non-empty string")
            }
            // The value may name secrets: compiled with the template environment.
            return .apiKey(header: header, value: try text(rawValue, child(path, "value"), env))
        case "oauth2_client_credentials":
            let o = try object(
                v, path, allowed: ["type", "token_url", "client_id", "client_secret", "scope", "client_auth"])
            var tokenURL = try required(o, "token_url", path)
            if tokenURL.hasPrefix("/") {
                tokenURL = baseURL + tokenURL
            } else {
                guard let u = URL(string: tokenURL), let s = u.scheme?.lowercased(), s == "http" || s == "https",
                    u.host?.isEmpty == false
                else { throw fail(child(path, "token_url"), "must be an http(s) URL or a path starting with '/'") }
            }
            let clientAuthText = try string(o, "client_auth", path) ?? "body"
            guard let clientAuth = OAuth2ClientCredentials.ClientAuth(rawValue: clientAuthText) else {
                throw fail(child(path, "client_auth"), "must be \"body\" or \"basic\"")
            }
            return .oauth2ClientCredentials(
                OAuth2ClientCredentials(
                    tokenURL: tokenURL, clientID: try required(o, "client_id", path),
                    clientSecret: try required(o, "client_secret", path), scope: try string(o, "scope", path),
                    clientAuth: clientAuth))
        case "workflow":
            return .workflow(try parseWorkflow(v, path: path, env: env))
        case "mtls":
            guard !nested else { throw fail(child(path, "type"), "mtls cannot be nested inside mtls") }
            let o = try object(v, path, allowed: ["type", "cert_file", "key_file", "ca_file", "then"])
            func read(_ key: String, required isRequired: Bool) throws(DescriptorError) -> (String, [UInt8])? {
                let file: String?
                if isRequired { file = try required(o, key, path) } else { file = try string(o, key, path) }
                guard let file else { return nil }
                do {
                    return (file, Array(try resolver.readFile(file).utf8))
                } catch {
                    throw fail(child(path, key), "file \(file) cannot be read")
                }
            }
            let (certFile, cert) = try read("cert_file", required: true)!
            let (keyFile, key) = try read("key_file", required: true)!
            let ca = try read("ca_file", required: false)
            let identity = MTLSIdentity(
                certFile: certFile, keyFile: keyFile, caFile: ca?.0, certificatePEM: cert, keyPEM: key, caPEM: ca?.1)
            if let (field, message) = identity.problem() { throw fail(child(path, field), message) }
            guard baseURL.lowercased().hasPrefix("https://") else {
                throw fail("$.base_url", "must be an https:// URL for auth type mtls")
            }
            var then = LenderAuth.none
            if let t = o["then"], !t.isNull {
                then = try parseAuth(t, path: child(path, "then"), baseURL: baseURL, env: env, nested: true)
            }
            return .mtls(identity, then: then)
        default:
            throw fail(
                child(path, "type"), "must be api_key, oauth2_client_credentials, workflow or mtls")
        }
    }

    func parseRetry(_ v: JSONValue?) throws(DescriptorError) -> RetryPolicy {
        guard let v, !v.isNull else { return RetryPolicy() }
        let o = try object(
            v, "$.retry", allowed: ["max_attempts", "initial_backoff_ms", "multiplier", "max_backoff_ms", "jitter"])
        var r = RetryPolicy()
        r.maxAttempts = try int(o, "max_attempts", "$.retry", range: 1...10, default: r.maxAttempts)
        r.initialBackoffMs = try int(o, "initial_backoff_ms", "$.retry", range: 0...60_000, default: r.initialBackoffMs)
        r.maxBackoffMs = try int(
            o, "max_backoff_ms", "$.retry", range: 0...300_000, default: max(r.maxBackoffMs, r.initialBackoffMs))
        guard r.maxBackoffMs >= r.initialBackoffMs else {
            throw fail("$.retry.max_backoff_ms", "must be at least initial_backoff_ms")
        }
        if let m = o["multiplier"], !m.isNull {
            let d: Double
            switch m {
            case .int(let i): d = Double(i)
            case .double(let x): d = x
            default: throw fail("$.retry.multiplier", "must be a number, not \(m.typeName)")
            }
            guard d >= 1, d <= 10 else { throw fail("$.retry.multiplier", "must be between 1 and 10") }
            r.multiplier = d
        }
        if let j = try string(o, "jitter", "$.retry") {
            guard let jitter = RetryPolicy.Jitter(rawValue: j) else {
                throw fail("$.retry.jitter", "must be \"full\" or \"none\"")
            }
            r.jitter = jitter
        }
        return r
    }

    func parseBreaker(_ v: JSONValue?, timeoutMs: Int) throws(DescriptorError) -> CircuitBreakerConfig {
        var c = CircuitBreakerConfig()
        c.slowCallMs = timeoutMs
        guard let v, !v.isNull else { return c }
        let p = "$.circuit_breaker"
        let o = try object(
            v, p,
            allowed: [
                "failure_rate_threshold", "slow_call_rate_threshold", "sliding_window_size", "minimum_calls",
                "wait_open_ms", "half_open_calls", "slow_call_ms",
            ])
        c.failureRateThreshold = try int(
            o, "failure_rate_threshold", p, range: 1...100, default: c.failureRateThreshold)
        c.slowCallRateThreshold = try int(
            o, "slow_call_rate_threshold", p, range: 1...100, default: c.slowCallRateThreshold)
        c.slidingWindowSize = try int(o, "sliding_window_size", p, range: 1...1000, default: c.slidingWindowSize)
        c.minimumCalls = try int(
            o, "minimum_calls", p, range: 1...1000, default: min(c.minimumCalls, c.slidingWindowSize))
        c.waitOpenMs = try int(o, "wait_open_ms", p, range: 1...3_600_000, default: c.waitOpenMs)
        c.halfOpenCalls = try int(o, "half_open_calls", p, range: 1...100, default: c.halfOpenCalls)
        c.slowCallMs = try int(o, "slow_call_ms", p, range: 1...600_000, default: c.slowCallMs)
        return c
    }

    func parseOperation(_ v: JSONValue, op: LenderOperation, path: String, timeoutMs: Int, env: TemplateEnvironment)
        throws(DescriptorError) -> OperationSpec
    {
        let o = try object(v, path, allowed: ["method", "path", "headers", "body", "timeout_ms", "response"])
        let method = (try string(o, "method", path) ?? (op == .status ? "GET" : "POST")).uppercased()
        guard ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method) else {
            throw fail(child(path, "method"), "must be GET, POST, PUT, PATCH or DELETE")
        }
        guard case .string(let pathText)? = o["path"] else {
            throw fail(child(path, "path"), o["path"] == nil ? "is required" : "must be a string")
        }
        guard pathText.hasPrefix("/") else { throw fail(child(path, "path"), "must start with '/'") }
        guard !pathText.contains("#"), !pathText.utf8.contains(where: { $0 <= 0x20 }) else {
            throw fail(child(path, "path"), "must not contain spaces, control characters or '#'")
        }
        let pathTemplate = try text(pathText, child(path, "path"), env)

        let headers = try headerTemplates(o["headers"], child(path, "headers"), env)

        var body: JSONTemplate? = nil
        if let b = o["body"], !b.isNull {
            guard method != "GET" else { throw fail(child(path, "body"), "a GET request has no body") }
            body = try compileBody(b, child(path, "body"), env, depth: 0)
        }
        let opTimeout = try int(o, "timeout_ms", path, range: 1...120_000, default: timeoutMs)
        let response = try parseResponse(o["response"], op: op, path: child(path, "response"))
        return OperationSpec(
            method: method, path: pathTemplate, headers: headers, body: body, timeoutMs: opTimeout, response: response)
    }

    /// A request's `headers` object (optional): valid names, string values without line breaks,
    /// at most `ConnectorDescriptor.maxHeaders`, in name order.
    func headerTemplates(_ h: JSONValue?, _ hp: String, _ env: TemplateEnvironment) throws(DescriptorError)
        -> [(name: String, value: TextTemplate)]
    {
        guard let h, !h.isNull else { return [] }
        let ho = try object(h, hp, allowed: Array((h.objectValue ?? [:]).keys))
        guard ho.count <= ConnectorDescriptor.maxHeaders else {
            throw fail(hp, "has more than \(ConnectorDescriptor.maxHeaders) headers")
        }
        var headers: [(name: String, value: TextTemplate)] = []
        for k in ho.keys.sorted() {
            let kp = child(hp, k)
            guard HTTPHeaderName.isValid(k) else { throw fail(kp, "is not a valid HTTP header name") }
            guard case .string(let s) = ho[k]! else { throw fail(kp, "must be a string") }
            guard !s.contains("\r"), !s.contains("\n") else { throw fail(kp, "must not contain line breaks") }
            headers.append((k, try text(s, kp, env)))
        }
        return headers
    }

    func compileBody(_ v: JSONValue, _ path: String, _ env: TemplateEnvironment, depth: Int) throws(DescriptorError)
        -> JSONTemplate
    {
        guard depth < ConnectorDescriptor.maxBodyDepth else {
            throw fail(path, "is nested deeper than \(ConnectorDescriptor.maxBodyDepth) levels")
        }
        switch v {
        case .string(let s):
            let t = try text(s, path, env)
            if let e = t.singleExpression { return .typed(e) }
            if t.isLiteral && !t.containsReference { return .literal(v) }
            return .text(t)
        case .array(let a):
            var items: [JSONTemplate] = []
            for (n, x) in a.enumerated() { items.append(try compileBody(x, "\(path)[\(n)]", env, depth: depth + 1)) }
            return .array(items)
        case .object(let o):
            var fields: [(String, JSONTemplate)] = []
            for k in o.keys.sorted() {
                fields.append((k, try compileBody(o[k]!, child(path, k), env, depth: depth + 1)))
            }
            return .object(fields)
        default:
            return .literal(v)
        }
    }

    func replyValue(_ v: JSONValue?, _ path: String) throws(DescriptorError) -> ReplyValue? {
        guard let v, !v.isNull else { return nil }
        if case .string(let s) = v, s.hasPrefix("$") {
            do {
                return .path(try JSONPath(s))
            } catch {
                throw fail(path, error.message)
            }
        }
        guard case .object = v else { return .literal(v) }
        throw fail(path, "must be a JSONPath string starting with '$' or a literal value")
    }

    func parseResponse(_ v: JSONValue?, op: LenderOperation, path: String) throws(DescriptorError) -> ResponseMapping {
        let words: [String]
        switch op {
        case .apply: words = ["approved", "rejected", "pending"]
        case .status: words = ["approved", "rejected", "pending", "not_found"]
        case .disburse: words = ["disbursed", "failed", "pending"]
        case .cancel: words = ["cancelled", "failed"]
        }
        var m = ResponseMapping(
            decisionPath: nil, decisionMap: [:], lenderReference: nil, reason: nil, annualRateBps: nil)
        guard let v, !v.isNull else {
            if op == .cancel { return m }
            throw fail(path, "is required: it says how to read the lender's decision")
        }
        let o = try object(v, path, allowed: ["decision", "lender_reference", "reason", "annual_rate_bps"])
        if let d = o["decision"], !d.isNull {
            let dp = child(path, "decision")
            let dobj = try object(d, dp, allowed: ["from", "map"])
            guard case .string(let from)? = dobj["from"] else {
                throw fail(child(dp, "from"), "is required: a JSONPath like $.status")
            }
            do {
                m.decisionPath = try JSONPath(from)
            } catch {
                throw fail(child(dp, "from"), error.message)
            }
            let mp = child(dp, "map")
            let mapObj = try object(dobj["map"], mp, allowed: Array((dobj["map"]?.objectValue ?? [:]).keys))
            guard !mapObj.isEmpty, mapObj.count <= 64 else { throw fail(mp, "must map 1 to 64 lender words") }
            for k in mapObj.keys.sorted() {
                guard case .string(let w) = mapObj[k]!, words.contains(w) else {
                    throw fail(child(mp, k), "must be one of \(words.joined(separator: ", "))")
                }
                m.decisionMap[k] = w
            }
        } else if op != .cancel {
            throw fail(child(path, "decision"), "is required")
        }
        m.lenderReference = try replyValue(o["lender_reference"], child(path, "lender_reference"))
        m.reason = try replyValue(o["reason"], child(path, "reason"))
        m.annualRateBps = try replyValue(o["annual_rate_bps"], child(path, "annual_rate_bps"))
        if case .literal(let l)? = m.annualRateBps, l.intValue == nil {
            throw fail(child(path, "annual_rate_bps"), "a literal rate must be an integer number of basis points")
        }
        if op == .apply, m.decisionMap.values.contains("approved"), m.annualRateBps == nil {
            throw fail(child(path, "annual_rate_bps"), "is required when the map has an approved word")
        }
        return m
    }
}

enum HTTPHeaderName {
    /// RFC 9110 token characters, 1 to 128 of them.
    static func isValid(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 128
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || "!#$%&'*+-.^_`|~".utf8.contains(c)
            }
    }
}

extension TextTemplate {
    init(literal: String) {
        self.parts = [.literal(literal)]
        self.containsReference = false
    }
}

enum Redaction {
    static let mask: JSONValue = "***"

    static func redact(_ source: JSONValue) -> JSONValue {
        guard case .object(var o) = source else { return source }
        for (k, v) in o {
            switch k {
            case "auth": o[k] = redactAuth(v)
            case "secrets":
                if case .object(let s) = v { o[k] = .object(s.mapValues { _ in mask }) } else { o[k] = mask }
            default: o[k] = redactReferences(v)
            }
        }
        return .object(o)
    }

    static func redactAuth(_ v: JSONValue) -> JSONValue {
        guard case .object(var o) = v else { return mask }
        for (k, x) in o {
            if k == "type" || k.hasSuffix("url") {
                o[k] = redactReferences(x)
            } else if k == "then" {
                o[k] = redactAuth(x)
            } else {
                o[k] = mask
            }
        }
        return .object(o)
    }

    static func redactReferences(_ v: JSONValue) -> JSONValue {
        switch v {
        case .string(let s): return s.contains("${env:") || s.contains("${file:") ? mask : v
        case .array(let a): return .array(a.map(redactReferences))
        case .object(let o): return .object(o.mapValues(redactReferences))
        default: return v
        }
    }
}
