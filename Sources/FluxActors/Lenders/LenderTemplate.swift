import Crypto
import Foundation

/// What a template can read when a request is rendered. Built once per call from the
/// `LenderCallContext`; the compiled templates read from it directly.
public struct TemplateScope: Sendable {
    public var applicationID: String
    public var createdAt: Date
    /// nil in auth-workflow steps (they run once per lender, not per application; templates
    /// there cannot name the application, which the compiler checks).
    public var request: CheckoutRequest?
    public var lenderReference: String?
    public var idempotencyKey: String
    public var secrets: [String: JSONValue]
    public var token: String?
    /// Values extracted by the auth workflow's steps: `steps.STEP.VARIABLE`.
    public var steps: [String: [String: JSONValue]] = [:]
    public var now: Date

    /// The scope of an auth-workflow template: secrets, earlier steps' values, the token, `now`.
    init(authSecrets secrets: [String: JSONValue], steps: [String: [String: JSONValue]], token: String?, now: Date) {
        applicationID = ""
        createdAt = now
        request = nil
        lenderReference = nil
        idempotencyKey = ""
        self.secrets = secrets
        self.token = token
        self.steps = steps
        self.now = now
    }

    public init(
        context: LenderCallContext, secrets: [String: JSONValue], token: String?, now: Date
    ) {
        applicationID = context.applicationID
        createdAt = context.createdAt
        request = context.request
        lenderReference = context.lenderReference
        idempotencyKey = context.idempotencyKey
        self.secrets = secrets
        self.token = token
        self.now = now
    }
}

/// A template that could not be rendered for this call (a missing path, a filter that does not
/// apply). The attempt becomes an `error` with this reason; nothing is sent.
public struct TemplateRenderError: Error, Sendable, Equatable {
    public var message: String
}

/// Resolves `${env:NAME}` and `${file:PATH}` references at descriptor load.
public struct ReferenceResolver: Sendable {
    public var environment: [String: String]
    /// Reads a file named by `${file:PATH}`; throws when it cannot.
    public var readFile: @Sendable (String) throws -> String

    public init(environment: [String: String], readFile: @escaping @Sendable (String) throws -> String) {
        self.environment = environment
        self.readFile = readFile
    }

    /// Reads files relative to `directory` (absolute paths as they are), at most 64 KiB, with one
    /// trailing newline removed (secret files usually end in one).
    public static func files(environment: [String: String], relativeTo directory: URL?) -> ReferenceResolver {
        ReferenceResolver(environment: environment) { path in
            let url =
                path.hasPrefix("/") || directory == nil
                ? URL(fileURLWithPath: path) : directory!.appendingPathComponent(path)
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            let data = try handle.read(upToCount: 64 * 1024 + 1) ?? Data()
            guard data.count <= 64 * 1024 else {
                throw TemplateRenderError(message: "file is larger than 64 KiB")
            }
            var text = String(decoding: data, as: UTF8.self)
            if text.hasSuffix("\r\n") {
                text.removeLast(2)
            } else if text.hasSuffix("\n") {
                text.removeLast()
            }
            return text
        }
    }

    /// The value of one reference body such as `env:NAME` or `file:/run/secrets/key`.
    func resolve(_ reference: Substring) throws(TemplateCompileError) -> String {
        if reference.hasPrefix("env:") {
            let name = String(reference.dropFirst(4))
            guard !name.isEmpty else { throw TemplateCompileError("${env:} needs a variable name") }
            guard let v = environment[name] else {
                throw TemplateCompileError("environment variable \(name) is not set")
            }
            return v
        }
        if reference.hasPrefix("file:") {
            let path = String(reference.dropFirst(5))
            guard !path.isEmpty else { throw TemplateCompileError("${file:} needs a path") }
            do {
                return try readFile(path)
            } catch {
                throw TemplateCompileError("file \(path) cannot be read")
            }
        }
        throw TemplateCompileError("unknown reference ${\(reference)}: use ${env:NAME} or ${file:PATH}")
    }

    /// Replaces every `${env:…}` / `${file:…}` in a plain (non-template) string. Returns whether
    /// the string held any reference (such values are secrets for redaction).
    func resolveAll(in text: String) throws(TemplateCompileError) -> (String, Bool) {
        guard text.contains("${") else { return (text, false) }
        var out = ""
        var rest = Substring(text)
        var found = false
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw TemplateCompileError("unclosed '${'")
            }
            out += try resolve(rest[start.upperBound..<end])
            found = true
            rest = rest[rest.index(after: end)...]
        }
        out += rest
        return (out, found)
    }
}

public struct TemplateCompileError: Error, Sendable, Equatable {
    public var message: String
    init(_ message: String) { self.message = message }
}

/// What a template is allowed to name, decided by the descriptor (its secrets, its auth type).
struct TemplateEnvironment: Sendable {
    var secretNames: Set<String>
    /// The descriptor's resolved secrets, so constant filter keys are prepared once.
    var secretValues: [String: JSONValue] = [:]
    var tokenAvailable: Bool
    var resolver: ReferenceResolver
    /// Variables of the auth workflow's steps that templates may read (`steps.STEP.VARIABLE`):
    /// for a step, those of the steps before it; for operations, all. nil: no workflow.
    var stepVariables: [String: Set<String>]? = nil
    /// False in auth templates (workflow steps, token, ttl, the applied header): they run once
    /// per lender, so application, customer, product, loan and attempt do not exist there.
    var applicationAvailable = true
}

/// One `{{path | filter…}}` expression, compiled.
struct TemplateExpression: Sendable {
    enum Root: Sendable {
        case applicationID, applicationMerchantID, applicationStoreID, applicationMode, applicationCreatedAt
        case request(String)  // customer, product, loan: read from the checkout body
        case attemptLenderReference, attemptIdempotencyKey
        case secret(String)
        case step(String, String)
        case token
        case now, nowEpochSeconds, nowEpochMillis
    }

    enum Filter: Sendable {
        case sha256, base64, base64url, upper, lower, iso8601
        case hmacSHA256(key: Argument)
        /// The key is a constant (a literal, a reference or a descriptor secret): the keyed
        /// state is computed once at compile time and copied per render.
        case hmacSHA256Keyed(HMAC<SHA256>)
    }

    indirect enum Argument: Sendable {
        case literal(String)
        case path(TemplateExpression)
    }

    var root: Root
    /// Further steps below the root (`customer.address.city` → root customer, ["address", "city"]).
    var steps: [JSONPath.Step]
    var filters: [Filter]
    var text: String

    static let maxLength = 512

    init(compiling source: Substring, environment env: TemplateEnvironment) throws(TemplateCompileError) {
        text = String(source)
        guard source.utf8.count <= Self.maxLength else {
            throw TemplateCompileError("template expression is longer than \(Self.maxLength) bytes")
        }
        var pieces = try Self.splitFilters(source)
        let pathText = pieces.removeFirst().trimmingCharacters(in: .whitespaces)
        (root, steps) = try Self.compilePath(pathText, env: env)
        var filters: [Filter] = []
        for piece in pieces {
            let p = piece.trimmingCharacters(in: .whitespaces)
            let name: Substring
            let arg: Substring?
            if let colon = p.firstIndex(of: ":") {
                name = p[..<colon]
                arg = p[p.index(after: colon)...]
            } else {
                name = p[...]
                arg = nil
            }
            let simple: Filter?
            switch name.trimmingCharacters(in: .whitespaces) {
            case "sha256": simple = .sha256
            case "base64": simple = .base64
            case "base64url": simple = .base64url
            case "upper": simple = .upper
            case "lower": simple = .lower
            case "iso8601": simple = .iso8601
            case "hmac_sha256":
                guard let arg else { throw TemplateCompileError("filter hmac_sha256 needs a key: hmac_sha256:KEY") }
                let key = try Self.compileArgument(arg, env: env)
                if case .literal(let k) = key {
                    filters.append(.hmacSHA256Keyed(HMAC<SHA256>(key: SymmetricKey(data: Array(k.utf8)))))
                } else if case .path(let e) = key, case .secret(let name) = e.root, e.steps.isEmpty,
                    let v = env.secretValues[name], let k = try? Self.text(of: v, for: e)
                {
                    filters.append(.hmacSHA256Keyed(HMAC<SHA256>(key: SymmetricKey(data: Array(k.utf8)))))
                } else {
                    filters.append(.hmacSHA256(key: key))
                }
                continue
            default:
                throw TemplateCompileError(
                    "unknown filter '\(name)' (sha256, hmac_sha256:KEY, base64, base64url, upper, lower, iso8601)")
            }
            guard arg == nil else { throw TemplateCompileError("filter \(name) takes no argument") }
            filters.append(simple!)
        }
        self.filters = filters
    }

    private init(root: Root, steps: [JSONPath.Step], text: String) {
        self.root = root
        self.steps = steps
        self.filters = []
        self.text = text
    }

    /// Splits on `|` outside quotes and `${…}`.
    private static func splitFilters(_ s: Substring) throws(TemplateCompileError) -> [Substring] {
        var parts: [Substring] = []
        var start = s.startIndex
        var quote: Character? = nil
        var inRef = false
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if let q = quote {
                if c == q { quote = nil }
            } else if inRef {
                if c == "}" { inRef = false }
            } else if c == "'" || c == "\"" {
                quote = c
            } else if c == "$", s[s.index(after: i)...].hasPrefix("{") {
                inRef = true
            } else if c == "|" {
                parts.append(s[start..<i])
                start = s.index(after: i)
            }
            i = s.index(after: i)
        }
        guard quote == nil else { throw TemplateCompileError("unclosed quote in template") }
        guard !inRef else { throw TemplateCompileError("unclosed '${' in template") }
        parts.append(s[start...])
        return parts
    }

    private static func compileArgument(_ raw: Substring, env: TemplateEnvironment) throws(TemplateCompileError)
        -> Argument
    {
        let a = raw.trimmingCharacters(in: .whitespaces)
        guard !a.isEmpty else { throw TemplateCompileError("empty filter argument") }
        if let q = a.first, q == "'" || q == "\"" {
            guard a.count >= 2, a.last == q else { throw TemplateCompileError("unclosed quote in filter argument") }
            return .literal(String(a.dropFirst().dropLast()))
        }
        if a.hasPrefix("${") {
            guard a.hasSuffix("}") else { throw TemplateCompileError("unclosed '${' in filter argument") }
            // Resolved as a whole value: never re-parsed as a template.
            return .literal(try env.resolver.resolve(a.dropFirst(2).dropLast()))
        }
        let (root, steps) = try compilePath(a, env: env)
        return .path(TemplateExpression(root: root, steps: steps, text: a))
    }

    private static func compilePath(_ text: String, env: TemplateEnvironment) throws(TemplateCompileError)
        -> (Root, [JSONPath.Step])
    {
        guard !text.isEmpty else { throw TemplateCompileError("empty template {{}}") }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= JSONPath.maxSteps, parts.allSatisfy({ !$0.isEmpty }) else {
            throw TemplateCompileError("'\(text)' is not a path like customer.pan")
        }
        for p in parts {
            guard
                p.utf8.allSatisfy({ c in
                    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
                        || c == 0x2D
                })
            else { throw TemplateCompileError("'\(text)' is not a path like customer.pan") }
        }
        let head = String(parts[0])
        let tail = parts.dropFirst().map { p -> JSONPath.Step in
            if let n = Int(p), n >= 0, p.first != "-" { return .index(n) }
            return .key(String(p))
        }
        func exactlyOne(_ field: Substring?) -> String? {
            parts.count == 2 ? field.map(String.init) : nil
        }
        if !env.applicationAvailable, ["application", "customer", "product", "loan", "attempt"].contains(head) {
            throw TemplateCompileError(
                "'\(text)': auth templates run once per lender, not per application, and cannot read \(head)")
        }
        switch head {
        case "application":
            let known = ["id", "merchant_id", "store_id", "mode", "created_at"]
            guard let f = exactlyOne(parts.dropFirst().first), known.contains(f) else {
                throw TemplateCompileError("'\(text)': application has \(known.joined(separator: ", "))")
            }
            switch f {
            case "id": return (.applicationID, [])
            case "merchant_id": return (.applicationMerchantID, [])
            case "store_id": return (.applicationStoreID, [])
            case "mode": return (.applicationMode, [])
            default: return (.applicationCreatedAt, [])
            }
        case "customer", "product", "loan":
            return (.request(head), tail)
        case "attempt":
            switch exactlyOne(parts.dropFirst().first) {
            case "lender_reference": return (.attemptLenderReference, [])
            case "idempotency_key": return (.attemptIdempotencyKey, [])
            default: throw TemplateCompileError("'\(text)': attempt has lender_reference, idempotency_key")
            }
        case "secrets":
            guard parts.count >= 2 else { throw TemplateCompileError("'secrets' needs a name: secrets.NAME") }
            let name = String(parts[1])
            guard env.secretNames.contains(name) else {
                throw TemplateCompileError("'\(text)': the descriptor's secrets have no '\(name)'")
            }
            return (.secret(name), Array(tail.dropFirst()))
        case "token":
            guard parts.count == 1 else { throw TemplateCompileError("'token' has no fields") }
            guard env.tokenAvailable else {
                throw TemplateCompileError(
                    "'token' needs auth type oauth2_client_credentials or workflow (and is not available in workflow steps)"
                )
            }
            return (.token, [])
        case "now":
            if parts.count == 1 { return (.now, []) }
            switch exactlyOne(parts.dropFirst().first) {
            case "epoch_s": return (.nowEpochSeconds, [])
            case "epoch_ms": return (.nowEpochMillis, [])
            default: throw TemplateCompileError("'\(text)': now has epoch_s, epoch_ms")
            }
        case "steps":
            guard let vars = env.stepVariables else { throw TemplateCompileError("'steps' needs auth type workflow") }
            guard parts.count >= 3 else { throw TemplateCompileError("'\(text)': use steps.STEP.VARIABLE") }
            let step = String(parts[1])
            let name = String(parts[2])
            guard let known = vars[step] else {
                throw TemplateCompileError("'\(text)': no earlier workflow step is named '\(step)'")
            }
            guard known.contains(name) else {
                throw TemplateCompileError("'\(text)': step \(step) extracts no '\(name)'")
            }
            return (.step(step, name), Array(tail.dropFirst(2)))
        default:
            throw TemplateCompileError(
                "'\(text)': unknown root '\(head)' (application, customer, product, loan, attempt, secrets, steps, token, now)"
            )
        }
    }

    // MARK: rendering

    func rawValue(_ scope: TemplateScope) throws(TemplateRenderError) -> JSONValue {
        let base: JSONValue
        switch root {
        case .applicationID: base = .string(scope.applicationID)
        case .applicationMerchantID:
            guard let r = scope.request else { throw missing() }
            base = .string(r.merchantID)
        case .applicationStoreID:
            guard let s = scope.request?.storeID else { throw missing() }
            base = .string(s)
        case .applicationMode:
            guard let r = scope.request else { throw missing() }
            base = .string(r.mode.rawValue)
        case .applicationCreatedAt: base = .string(TimeText.iso8601(scope.createdAt))
        case .request(let key):
            guard let v = scope.request?.raw[key] else { throw missing() }
            base = v
        case .attemptLenderReference:
            guard let r = scope.lenderReference else { throw missing() }
            base = .string(r)
        case .attemptIdempotencyKey: base = .string(scope.idempotencyKey)
        case .secret(let name):
            guard let v = scope.secrets[name] else { throw missing() }
            base = v
        case .step(let step, let name):
            guard let v = scope.steps[step]?[name] else { throw missing() }
            base = v
        case .token:
            guard let t = scope.token else { throw missing() }
            base = .string(t)
        case .now: base = .string(TimeText.iso8601(scope.now))
        case .nowEpochSeconds: base = .int(Int64(scope.now.timeIntervalSince1970.rounded(.down)))
        case .nowEpochMillis: base = .int(Int64((scope.now.timeIntervalSince1970 * 1000).rounded(.down)))
        }
        if steps.isEmpty { return base }
        guard let v = JSONPath(steps: steps).evaluate(base) else { throw missing() }
        return v
    }

    private func missing() -> TemplateRenderError {
        TemplateRenderError(message: "template {{\(text)}}: no value at \(pathText)")
    }

    private var pathText: String {
        text.split(separator: "|", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? text
    }

    /// The typed value (a template that is a whole JSON string). Filters turn it into a string.
    func typedValue(_ scope: TemplateScope) throws(TemplateRenderError) -> JSONValue {
        let v = try rawValue(scope)
        if filters.isEmpty { return v }
        return .string(try applyFilters(to: try Self.text(of: v, for: self), scope: scope))
    }

    /// The value as text, for interpolation into a longer string, a path or a header.
    func textValue(_ scope: TemplateScope) throws(TemplateRenderError) -> String {
        let t = try Self.text(of: try rawValue(scope), for: self)
        return filters.isEmpty ? t : try applyFilters(to: t, scope: scope)
    }

    static func text(of v: JSONValue, for e: TemplateExpression) throws(TemplateRenderError) -> String {
        switch v {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return JSONWriter.number(d)
        case .bool(let b): return b ? "true" : "false"
        case .null: throw TemplateRenderError(message: "template {{\(e.text)}}: \(e.pathText) is null")
        case .array, .object: return JSONWriter.string(v)
        }
    }

    private func applyFilters(to input: String, scope: TemplateScope) throws(TemplateRenderError) -> String {
        var s = input
        for f in filters {
            switch f {
            case .sha256: s = Hex.lower(SHA256.hash(data: Array(s.utf8)))
            case .hmacSHA256(let arg):
                let key: String
                switch arg {
                case .literal(let k): key = k
                case .path(let e): key = try Self.text(of: try e.rawValue(scope), for: e)
                }
                let mac = HMAC<SHA256>.authenticationCode(
                    for: Array(s.utf8), using: SymmetricKey(data: Array(key.utf8)))
                s = Hex.lower(mac)
            case .hmacSHA256Keyed(let keyed):
                var h = keyed
                h.update(data: Array(s.utf8))
                s = Hex.lower(h.finalize())
            case .base64: s = Data(s.utf8).base64EncodedString()
            case .base64url:
                var b = Data(s.utf8).base64EncodedString()
                b = b.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                while b.hasSuffix("=") { b.removeLast() }
                s = b
            case .upper: s = s.uppercased()
            case .lower: s = s.lowercased()
            case .iso8601:
                guard let d = TimeText.parse(s) else {
                    throw TemplateRenderError(message: "template {{\(text)}}: '\(s)' is not a date or time")
                }
                s = TimeText.iso8601(d)
            }
        }
        return s
    }
}

extension JSONPath {
    init(steps: [Step]) {
        self.steps = steps
        self.description = ""
    }
}

/// A string template: literal text and `{{…}}` expressions. `${env:…}` / `${file:…}` are
/// resolved at compile time into literal text (never re-parsed).
public struct TextTemplate: Sendable {
    enum Part: Sendable {
        case literal(String)
        case expression(TemplateExpression)
    }

    var parts: [Part]
    /// A `${env:}` / `${file:}` reference was resolved into this template (it is a secret).
    var containsReference: Bool

    static let maxExpressions = 64

    init(compiling text: String, environment env: TemplateEnvironment) throws(TemplateCompileError) {
        var parts: [Part] = []
        var literal = ""
        var rest = Substring(text)
        var containsReference = false
        while !rest.isEmpty {
            let open = rest.range(of: "{{")
            let ref = rest.range(of: "${")
            if let o = open, ref == nil || o.lowerBound < ref!.lowerBound {
                literal += rest[..<o.lowerBound]
                guard let close = Self.closingBraces(in: rest[o.upperBound...]) else {
                    throw TemplateCompileError("unclosed '{{' in template")
                }
                if !literal.isEmpty {
                    parts.append(.literal(literal))
                    literal = ""
                }
                parts.append(
                    .expression(
                        try TemplateExpression(compiling: rest[o.upperBound..<close.lowerBound], environment: env)))
                guard parts.count <= Self.maxExpressions * 2 else {
                    throw TemplateCompileError("more than \(Self.maxExpressions) expressions in one string")
                }
                rest = rest[close.upperBound...]
            } else if let r = ref {
                literal += rest[..<r.lowerBound]
                guard let close = rest[r.upperBound...].firstIndex(of: "}") else {
                    throw TemplateCompileError("unclosed '${'")
                }
                literal += try env.resolver.resolve(rest[r.upperBound..<close])
                containsReference = true
                rest = rest[rest.index(after: close)...]
            } else {
                literal += rest
                rest = rest[rest.endIndex...]
            }
        }
        if !literal.isEmpty || parts.isEmpty { parts.append(.literal(literal)) }
        self.parts = parts
        self.containsReference = containsReference
    }

    /// The `}}` that closes an expression, skipping `${…}` references inside it.
    static func closingBraces(in s: Substring) -> Range<Substring.Index>? {
        var i = s.startIndex
        while i < s.endIndex {
            if s[i...].hasPrefix("${") {
                guard let end = s[i...].firstIndex(of: "}") else { return nil }
                i = s.index(after: end)
            } else if s[i...].hasPrefix("}}") {
                return i..<s.index(i, offsetBy: 2)
            } else {
                i = s.index(after: i)
            }
        }
        return nil
    }

    /// Exactly one `{{…}}` and nothing else: rendered as the typed value in JSON bodies.
    var singleExpression: TemplateExpression? {
        if parts.count == 1, case .expression(let e) = parts[0] { return e }
        return nil
    }

    var isLiteral: Bool { parts.allSatisfy { if case .literal = $0 { true } else { false } } }

    func render(_ scope: TemplateScope, encode: PercentEncoding? = nil) throws(TemplateRenderError) -> String {
        if parts.count == 1, case .literal(let s) = parts[0] { return s }
        var out = ""
        for p in parts {
            switch p {
            case .literal(let s): out += s
            case .expression(let e):
                let t = try e.textValue(scope)
                out += encode.map { $0.encode(t) } ?? t
            }
        }
        return out
    }
}

enum PercentEncoding: Sendable {
    static let upperHex: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// RFC 3986 unreserved characters pass; everything else (including `/`, `?`, `&`, `=`) is encoded.
    case component

    func encode(_ s: String) -> String {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        let hex = Self.upperHex
        for c in s.utf8 {
            if (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D
                || c == 0x2E
                || c == 0x5F || c == 0x7E
            {
                out.append(c)
            } else {
                out.append(0x25)
                out.append(hex[Int(c >> 4)])
                out.append(hex[Int(c & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A JSON body template: the descriptor's JSON with each string compiled. A string that is
/// exactly one `{{path}}` becomes the typed value; other strings are interpolated text.
indirect enum JSONTemplate: Sendable {
    case literal(JSONValue)
    case typed(TemplateExpression)
    case text(TextTemplate)
    case object([(String, JSONTemplate)])
    case array([JSONTemplate])

    var containsReference: Bool {
        switch self {
        case .literal, .typed: false
        case .text(let t): t.containsReference
        case .object(let fields): fields.contains { $0.1.containsReference }
        case .array(let items): items.contains { $0.containsReference }
        }
    }

    /// Writes the rendered JSON text straight into `out` (keys in sorted order, fixed at compile
    /// time), without building an intermediate `JSONValue` tree.
    func write(_ scope: TemplateScope, into out: inout [UInt8]) throws(TemplateRenderError) {
        switch self {
        case .literal(let v): JSONWriter.write(v, into: &out)
        case .typed(let e): JSONWriter.write(try e.typedValue(scope), into: &out)
        case .text(let t): JSONWriter.writeString(try t.render(scope), into: &out)
        case .object(let fields):
            out.append(UInt8(ascii: "{"))
            var first = true
            for (k, v) in fields {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                try v.write(scope, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let items):
            out.append(UInt8(ascii: "["))
            var first = true
            for i in items {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                try i.write(scope, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
    }

    func render(_ scope: TemplateScope) throws(TemplateRenderError) -> JSONValue {
        switch self {
        case .literal(let v): return v
        case .typed(let e): return try e.typedValue(scope)
        case .text(let t): return .string(try t.render(scope))
        case .object(let fields):
            var o: [String: JSONValue] = [:]
            o.reserveCapacity(fields.count)
            for (k, v) in fields { o[k] = try v.render(scope) }
            return .object(o)
        case .array(let items):
            var a: [JSONValue] = []
            a.reserveCapacity(items.count)
            for i in items { a.append(try i.render(scope)) }
            return .array(a)
        }
    }
}

enum Hex {
    static func lower(_ bytes: some Sequence<UInt8>) -> String {
        let hex = JSONWriter.hexDigits
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// UTC date/time text without Foundation formatters (they are slow and not `Sendable`).
enum TimeText {
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    static func iso8601(_ date: Date) -> String {
        let secs = Int64(date.timeIntervalSince1970.rounded(.down))
        var days = secs / 86400
        var rem = secs % 86400
        if rem < 0 {
            rem += 86400
            days -= 1
        }
        let (y, m, d) = civil(fromDays: days)
        func p(_ n: Int64, _ w: Int) -> String {
            let s = String(n)
            return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
        }
        return "\(p(y, 4))-\(p(m, 2))-\(p(d, 2))T\(p(rem / 3600, 2)):\(p(rem % 3600 / 60, 2)):\(p(rem % 60, 2))Z"
    }

    /// Calendar arithmetic shared with the public timestamps (`Timestamp`).
    static func civil(fromDays z: Int64) -> (Int64, Int64, Int64) { Timestamp.civil(fromDays: z) }

    static func days(fromCivil y: Int64, _ m: Int64, _ d: Int64) -> Int64 { Timestamp.daysFromCivil(y, m, d) }

    /// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` or integer epoch seconds.
    static func parse(_ s: String) -> Date? {
        if let secs = Int64(s) { return Date(timeIntervalSince1970: TimeInterval(secs)) }
        let u = Array(s.utf8)
        func num(_ r: Range<Int>) -> Int64? {
            guard r.upperBound <= u.count else { return nil }
            var n: Int64 = 0
            for c in u[r] {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                n = n * 10 + Int64(c - 0x30)
            }
            return n
        }
        guard u.count >= 10, u[4] == 0x2D, u[7] == 0x2D, let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10),
            (1...12).contains(mo), d >= 1, d <= CalendarDate.daysIn(year: Int(y), month: Int(mo))
        else { return nil }
        var secs = days(fromCivil: y, mo, d) * 86400
        if u.count == 10 { return Date(timeIntervalSince1970: TimeInterval(secs)) }
        guard u.count >= 20, u[10] == 0x54 || u[10] == 0x74 || u[10] == 0x20, u[13] == 0x3A, u[16] == 0x3A,
            let h = num(11..<13), let mi = num(14..<16), let se = num(17..<19), h < 24, mi < 60, se < 61
        else { return nil }
        secs += h * 3600 + mi * 60 + se
        var i = 19
        if u[i] == 0x2E {
            i += 1
            while i < u.count, u[i] >= 0x30, u[i] <= 0x39 { i += 1 }
        }
        guard i < u.count else { return nil }
        if u[i] == 0x5A || u[i] == 0x7A {
            guard i + 1 == u.count else { return nil }
        } else if u[i] == 0x2B || u[i] == 0x2D {
            guard i + 6 == u.count, u[i + 3] == 0x3A, let oh = num((i + 1)..<(i + 3)), let om = num((i + 4)..<(i + 6))
            else { return nil }
            let off = oh * 3600 + om * 60
            secs += u[i] == 0x2B ? -off : off
        } else {
            return nil
        }
        return Date(timeIntervalSince1970: TimeInterval(secs))
    }
}
