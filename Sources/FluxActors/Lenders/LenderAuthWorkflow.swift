import Foundation

/// `auth.type = "workflow"` (CONTRACT §5): ordered HTTP steps, each extracting values from its
/// reply with JSONPaths, that end in a token. Compiled at load; run by `LenderConnection`, which
/// caches the token per lender and renews it at 80 % of its ttl (or after a 401, once).
///
/// ```json
/// {"type": "workflow",
///  "steps": [{"name": "nonce", "request": {"method": "POST", "path": "/auth/nonce",
///                                          "form": {"client_id": "{{secrets.client_id}}"}},
///             "extract": {"nonce": "$.nonce"}}, …],
///  "token": "{{steps.token.access_token}}", "ttl_s": "{{steps.token.expires_in}}",
///  "apply": {"header": "Authorization", "value": "Bearer {{token}}"}}
/// ```
public struct AuthWorkflow: Sendable {
    public struct Step: Sendable {
        public var name: String
        public var method: String
        /// Appended to `base_url`, unless `absolute` (the template starts with `http://` or `https://`).
        var url: TextTemplate
        var absolute: Bool
        var headers: [(name: String, value: TextTemplate)]
        /// Sent as JSON.
        var body: JSONTemplate?
        /// Sent as `application/x-www-form-urlencoded` (names sorted).
        var form: [(name: String, value: TextTemplate)]?
        var extract: [(name: String, path: JSONPath)]
    }

    public enum TTL: Sendable {
        case seconds(Int)
        /// Rendered after the steps (`"{{steps.token.expires_in}}"`); must give whole seconds.
        case template(TextTemplate)
    }

    public var steps: [Step]
    var token: TextTemplate
    public var ttl: TTL
    /// The header every operation carries, e.g. `Authorization`.
    public var header: String
    var value: TextTemplate

    static let maxSteps = 8
    static let maxExtracts = 16
    static let maxTTL = 7 * 86_400

    /// `steps.STEP.VARIABLE` names the operations' templates may read.
    var stepVariables: [String: Set<String>] {
        var out: [String: Set<String>] = [:]
        for s in steps { out[s.name] = Set(s.extract.map(\.name)) }
        return out
    }
}

/// What a finished workflow (or oauth2 token request) leaves in the cache.
struct AuthCredential: Sendable {
    var token: String
    var steps: [String: [String: JSONValue]]
    /// Seconds; nil: the lender did not say (the connection's default applies).
    var lifetimeS: Int?
}

/// Why a workflow run failed, and how the retry policy should see it.
struct AuthFailure: Error, Sendable {
    var reason: String
    var retry: RetryPolicy.Failure
}

extension AuthWorkflow {
    /// Renders one step's request from the values extracted so far. Pure.
    func request(_ step: Step, baseURL: String, scope: TemplateScope) throws(TemplateRenderError) -> LenderHTTPRequest {
        let rendered = try step.url.render(scope, encode: .component)
        let url = step.absolute ? rendered : baseURL + rendered
        var headers: [LenderHTTPHeader] = []
        for h in step.headers {
            headers.append(
                LenderHTTPHeader(h.name, try ConnectorDescriptor.headerValue(h.value.render(scope), name: h.name)))
        }
        func has(_ name: String) -> Bool { step.headers.contains { $0.name.lowercased() == name } }
        var body: [UInt8]? = nil
        if let b = step.body {
            var bytes: [UInt8] = []
            try b.write(scope, into: &bytes)
            body = bytes
            if !has("content-type") { headers.append(LenderHTTPHeader("Content-Type", "application/json")) }
        } else if let form = step.form {
            let enc = PercentEncoding.component
            var pairs: [String] = []
            for f in form { pairs.append(enc.encode(f.name) + "=" + enc.encode(try f.value.render(scope))) }
            body = Array(pairs.joined(separator: "&").utf8)
            if !has("content-type") {
                headers.append(LenderHTTPHeader("Content-Type", "application/x-www-form-urlencoded"))
            }
        }
        if !has("accept") { headers.append(LenderHTTPHeader("Accept", "application/json")) }
        return LenderHTTPRequest(method: step.method, url: url, headers: headers, body: body)
    }

    /// Runs every step once, in order. A step must answer 2xx with JSON holding every value it
    /// extracts. Any failure ends the run (a retry starts again from the first step: a nonce or
    /// challenge is usually single-use).
    func run(
        baseURL: String, secrets: [String: JSONValue], transport: any HTTPTransport, timeout: Duration, now: Date
    ) async -> Result<AuthCredential, AuthFailure> {
        var values: [String: [String: JSONValue]] = [:]
        for step in steps {
            let scope = TemplateScope(authSecrets: secrets, steps: values, token: nil, now: now)
            let request: LenderHTTPRequest
            do {
                request = try self.request(step, baseURL: baseURL, scope: scope)
            } catch {
                return .failure(AuthFailure(reason: "step \(step.name): \(error.message)", retry: .http(400)))
            }
            let resp: LenderHTTPResponse
            do {
                resp = try await transport.send(request, timeout: timeout)
            } catch {
                return .failure(AuthFailure(reason: "step \(step.name): \(error.reason)", retry: error.retryFailure))
            }
            guard (200..<300).contains(resp.status) else {
                return .failure(
                    AuthFailure(
                        reason: "step \(step.name) answered HTTP \(resp.status)", retry: .http(resp.status)))
            }
            guard let json = JSONReader.parse(resp.body) else {
                return .failure(AuthFailure(reason: "step \(step.name): reply is not JSON", retry: .http(502)))
            }
            var extracted: [String: JSONValue] = [:]
            for e in step.extract {
                guard let v = e.path.evaluate(json), !v.isNull else {
                    return .failure(
                        AuthFailure(reason: "step \(step.name): no value at \(e.path) in the reply", retry: .http(502)))
                }
                extracted[e.name] = v
            }
            values[step.name] = extracted
        }
        let scope = TemplateScope(authSecrets: secrets, steps: values, token: nil, now: now)
        let token: String
        do {
            token = try self.token.render(scope)
        } catch {
            return .failure(AuthFailure(reason: "token: \(error.message)", retry: .http(502)))
        }
        guard !token.isEmpty, token.utf8.count <= 8192 else {
            return .failure(AuthFailure(reason: "token is empty or longer than 8 KiB", retry: .http(502)))
        }
        let life: Int
        switch ttl {
        case .seconds(let s): life = s
        case .template(let t):
            let text: String
            do { text = try t.render(scope) } catch {
                return .failure(AuthFailure(reason: "ttl_s: \(error.message)", retry: .http(502)))
            }
            guard let s = Int(text.trimmingCharacters(in: .whitespaces)), s >= 1, s <= Self.maxTTL else {
                return .failure(
                    AuthFailure(
                        reason: "ttl_s rendered to '\(ReplyMapping.clip(text))', not 1…\(Self.maxTTL) seconds",
                        retry: .http(502)))
            }
            life = s
        }
        return .success(AuthCredential(token: token, steps: values, lifetimeS: life))
    }
}

// MARK: - parsing

extension DescriptorParser {
    func parseWorkflow(_ v: JSONValue, path: String, env base: TemplateEnvironment) throws(DescriptorError)
        -> AuthWorkflow
    {
        let o = try object(v, path, allowed: ["type", "steps", "token", "ttl_s", "apply"])
        var env = base
        env.applicationAvailable = false
        env.tokenAvailable = false
        env.stepVariables = [:]

        let stepsPath = child(path, "steps")
        guard case .array(let rawSteps)? = o["steps"] else {
            throw fail(stepsPath, o["steps"] == nil ? "is required" : "must be an array of steps")
        }
        guard !rawSteps.isEmpty, rawSteps.count <= AuthWorkflow.maxSteps else {
            throw fail(stepsPath, "must hold 1 to \(AuthWorkflow.maxSteps) steps")
        }
        var steps: [AuthWorkflow.Step] = []
        for (n, raw) in rawSteps.enumerated() {
            let sp = "\(stepsPath)[\(n)]"
            let so = try object(raw, sp, allowed: ["name", "request", "extract"])
            let name = try required(so, "name", sp)
            guard name.utf8.count <= 64,
                name.utf8.allSatisfy({ c in
                    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
                        || c == 0x2D
                })
            else { throw fail(child(sp, "name"), "must be 1–64 letters, digits, '-' or '_'") }
            guard env.stepVariables?[name] == nil else {
                throw fail(child(sp, "name"), "step name \(name) is used twice")
            }
            let rp = child(sp, "request")
            let ro = try object(so["request"], rp, allowed: ["method", "path", "headers", "body", "form"])
            let method = (try string(ro, "method", rp) ?? "POST").uppercased()
            guard ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method) else {
                throw fail(child(rp, "method"), "must be GET, POST, PUT, PATCH or DELETE")
            }
            guard case .string(let pathText)? = ro["path"], !pathText.isEmpty else {
                throw fail(child(rp, "path"), ro["path"] == nil ? "is required" : "must be a non-empty string")
            }
            let absolute = pathText.lowercased().hasPrefix("http://") || pathText.lowercased().hasPrefix("https://")
            guard absolute || pathText.hasPrefix("/") else {
                throw fail(child(rp, "path"), "must start with '/' or be an absolute http(s) URL")
            }
            guard !pathText.contains("#"), !pathText.utf8.contains(where: { $0 <= 0x20 }) else {
                throw fail(child(rp, "path"), "must not contain spaces, control characters or '#'")
            }
            let url = try text(pathText, child(rp, "path"), env)
            let headers = try headerTemplates(ro["headers"], child(rp, "headers"), env)
            var body: JSONTemplate? = nil
            var form: [(name: String, value: TextTemplate)]? = nil
            if let b = ro["body"], !b.isNull {
                guard method != "GET" else { throw fail(child(rp, "body"), "a GET request has no body") }
                body = try compileBody(b, child(rp, "body"), env, depth: 0)
            }
            if let f = ro["form"], !f.isNull {
                let fp = child(rp, "form")
                guard body == nil else { throw fail(fp, "a step sends either body (JSON) or form, not both") }
                guard method != "GET" else { throw fail(fp, "a GET request has no body") }
                let fo = try object(f, fp, allowed: Array((f.objectValue ?? [:]).keys))
                guard fo.count <= 64 else { throw fail(fp, "has more than 64 fields") }
                var fields: [(name: String, value: TextTemplate)] = []
                for k in fo.keys.sorted() {
                    let kp = child(fp, k)
                    switch fo[k]! {
                    case .string(let s): fields.append((k, try text(s, kp, env)))
                    case .int(let i): fields.append((k, TextTemplate(literal: String(i))))
                    case .bool(let x): fields.append((k, TextTemplate(literal: x ? "true" : "false")))
                    default: throw fail(kp, "must be a string, integer or boolean")
                    }
                }
                form = fields
            }
            var extract: [(name: String, path: JSONPath)] = []
            if let e = so["extract"], !e.isNull {
                let ep = child(sp, "extract")
                let eo = try object(e, ep, allowed: Array((e.objectValue ?? [:]).keys))
                guard eo.count <= AuthWorkflow.maxExtracts else {
                    throw fail(ep, "has more than \(AuthWorkflow.maxExtracts) values")
                }
                for k in eo.keys.sorted() {
                    let kp = child(ep, k)
                    guard
                        k.utf8.allSatisfy({ c in
                            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                                || c == 0x5F || c == 0x2D
                        }), !k.isEmpty
                    else { throw fail(kp, "must be a name of letters, digits, '-' or '_'") }
                    guard case .string(let p) = eo[k]! else { throw fail(kp, "must be a JSONPath like $.token") }
                    do {
                        extract.append((k, try JSONPath(p)))
                    } catch {
                        throw fail(kp, error.message)
                    }
                }
            }
            env.stepVariables?[name] = Set(extract.map(\.name))
            steps.append(
                AuthWorkflow.Step(
                    name: name, method: method, url: url, absolute: absolute, headers: headers, body: body, form: form,
                    extract: extract))
        }

        guard case .string(let tokenText)? = o["token"], !tokenText.isEmpty else {
            throw fail(
                child(path, "token"), o["token"] == nil ? "is required: e.g. {{steps.NAME.token}}" : "must be a string")
        }
        let token = try text(tokenText, child(path, "token"), env)

        let ttl: AuthWorkflow.TTL
        let tp = child(path, "ttl_s")
        switch o["ttl_s"] {
        case nil, .null?: throw fail(tp, "is required: seconds, or a template like {{steps.NAME.expires_in}}")
        case .int(let i)?:
            guard i >= 1, i <= Int64(AuthWorkflow.maxTTL) else {
                throw fail(tp, "must be between 1 and \(AuthWorkflow.maxTTL)")
            }
            ttl = .seconds(Int(i))
        case .string(let s)?:
            let t = try text(s, tp, env)
            guard !t.isLiteral else { throw fail(tp, "a literal ttl must be a JSON integer") }
            ttl = .template(t)
        case let other?:
            throw fail(tp, "must be an integer or a template string, not \(other.typeName)")
        }

        let ap = child(path, "apply")
        let ao = try object(o["apply"], ap, allowed: ["header", "value"])
        let header = try required(ao, "header", ap)
        guard HTTPHeaderName.isValid(header) else { throw fail(child(ap, "header"), "is not a valid HTTP header name") }
        guard case .string(let valueText)? = ao["value"], !valueText.isEmpty else {
            throw fail(child(ap, "value"), "is required: e.g. Bearer {{token}}")
        }
        var applyEnv = env
        applyEnv.tokenAvailable = true
        let value = try text(valueText, child(ap, "value"), applyEnv)
        return AuthWorkflow(steps: steps, token: token, ttl: ttl, header: header, value: value)
    }
}
