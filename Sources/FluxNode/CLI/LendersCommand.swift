import ArgumentParser
import FluxActors
import Foundation
import Synchronization

/// `flux-node lenders …`: descriptor tooling.
struct LendersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lenders", abstract: "Lender connector descriptor tools.", subcommands: [LendersCheckCommand.self])
}

/// `flux-node lenders check FILE [--dry-run]`: validates a descriptor (OK, or the JSON path of
/// the first bad field and exit 1); with `--dry-run` runs its auth handshake and a `status`
/// call for a made-up reference against the real endpoint, printing each step, secrets masked.
struct LendersCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Validate a connector descriptor; --dry-run calls the lender.")

    @Argument(help: "The descriptor file (JSON).") var file: String
    @Flag(name: .customLong("dry-run"), help: "Run the auth handshake and a status call against the lender.")
    var dryRun = false
    @Option(help: "Reference for the status call (default: a made-up one that the lender should not know).")
    var reference: String?

    func run() async throws {
        let url = URL(fileURLWithPath: file)
        let descriptor: ConnectorDescriptor
        do {
            descriptor = try loadDescriptor(file: url, environment: ProcessInfo.processInfo.environment)
            for (i, text) in descriptor.validate.enumerated() {
                do { _ = try Condition.compile(text) } catch {
                    throw DescriptorError(path: "\(url.lastPathComponent): $.validate[\(i)]", message: "\(error)")
                }
            }
        } catch let e as DescriptorError {
            print("INVALID \(e.path): \(e.message)")
            throw ExitCode(1)
        } catch {
            print("INVALID \(url.lastPathComponent): cannot be read: \(error.localizedDescription)")
            throw ExitCode(1)
        }
        let ops = LenderOperation.allCases.filter { descriptor.operations[$0] != nil }.map(\.rawValue)
        print(
            "OK \(descriptor.id) (\(descriptor.name)): auth \(Self.authText(descriptor.auth)), operations \(ops.joined(separator: ", ")), base_url \(descriptor.baseURL)"
        )
        guard dryRun else { return }
        guard try await Self.dryRun(descriptor, reference: reference, print: { print($0) }) else { throw ExitCode(1) }
    }

    static func authText(_ auth: LenderAuth) -> String {
        switch auth {
        case .none: "none"
        case .apiKey(let header, _): "api_key (\(header))"
        case .oauth2ClientCredentials: "oauth2_client_credentials"
        case .workflow(let w): "workflow (\(w.steps.map(\.name).joined(separator: " → ")))"
        case .mtls(let id, let then): "mtls (\(id.certFile)) then \(authText(then))"
        }
    }

    /// Returns whether every step worked. `print` receives one line per step.
    static func dryRun(
        _ descriptor: ConnectorDescriptor, reference: String?, print: @escaping @Sendable (String) -> Void
    ) async throws -> Bool {
        let base: AsyncHTTPClientTransport
        if let identity = descriptor.auth.identity {
            base = try AsyncHTTPClientTransport(identity: identity, connectionsPerHost: 2)
            print(
                "tls: client certificate \(identity.certFile)\(identity.caFile.map { ", CA \($0)" } ?? ", system CAs")")
        } else {
            base = AsyncHTTPClientTransport(connectionsPerHost: 2)
        }
        let transport = TracingTransport(base: base, print: print)
        defer { Task { await base.shutdown() } }
        var options = LenderConnectionOptions()
        options.bulkheadWaitMs = 0
        let connection = LenderConnection(descriptor: descriptor, transport: transport, options: options)
        var ok = true
        if descriptor.auth.usesToken {
            print("auth: \(descriptor.auth.headerAuth.typeName) handshake")
            if let why = await connection.authenticate() {
                print("auth FAILED: \(why)")
                return false
            }
            print("auth OK: token cached, renewed in \(await connection.tokenRenewsInSeconds ?? 0) s")
        }
        let ref = reference ?? "flux-dry-run-\(UInt32.random(in: 0...UInt32.max))"
        let checkout = try CheckoutRequest(json: Self.sampleCheckout)
        let context = LenderCallContext(
            applicationID: ref, request: checkout, createdAt: Date(), idempotencyKey: "\(ref).\(descriptor.id)",
            lenderReference: ref)
        print("status: asking about reference \(ref)")
        let call = await connection.status(context)
        switch call.outcome {
        case .notFound:
            print("status OK: not_found (as expected for a made-up reference), \(call.latencyMs) ms")
        case .unknown(let reason):
            print("status FAILED: \(reason)")
            ok = false
        default:
            print("status OK: \(call.outcome), \(call.latencyMs) ms")
        }
        await base.shutdown()
        return ok
    }

    static let sampleCheckout: JSONValue = [
        "merchant_id": "flux-dry-run", "store_id": "flux-dry-run",
        "customer": [
            "id": "dry-run", "name": "Dry Run", "phone": "+919800000000", "email": "dry-run@example.in",
            "pan": "ABCDE1234F", "date_of_birth": "1990-01-01", "pincode": "560001", "bureau_score": 750,
        ],
        "product": ["sku": "dry-run", "category": "mobile", "price_paise": 1_000_000],
        "loan": ["amount_paise": 1_000_000, "tenure_months": 12],
        "mode": "waterfall",
    ]
}

/// Prints every request and reply of a dry run, with every header value (but `Content-Type`
/// and `Accept`), every string in a body, and every query value masked as `***`.
final class TracingTransport: HTTPTransport {
    let base: any HTTPTransport
    let print: @Sendable (String) -> Void
    private let count = Mutex(0)

    init(base: any HTTPTransport, print: @escaping @Sendable (String) -> Void) {
        self.base = base
        self.print = print
    }

    func send(_ request: LenderHTTPRequest, timeout: Duration) async throws(TransportError) -> LenderHTTPResponse {
        let n = count.withLock {
            $0 += 1
            return $0
        }
        print("  [\(n)] → \(request.method) \(Self.maskQuery(request.url))")
        for h in request.headers {
            let shown = ["content-type", "accept"].contains(h.name.lowercased()) ? h.value : "***"
            print("        \(h.name): \(shown)")
        }
        if let body = request.body, !body.isEmpty { print("        body: \(Self.maskBody(body))") }
        let start = ContinuousClock.now
        do {
            let r = try await base.send(request, timeout: timeout)
            let ms =
                (ContinuousClock.now - start).components.attoseconds / 1_000_000_000_000_000
                + (ContinuousClock.now - start).components.seconds * 1000
            print("  [\(n)] ← HTTP \(r.status) in \(ms) ms: \(Self.maskBody(r.body))")
            return r
        } catch {
            print("  [\(n)] ✗ \(error)")
            throw error
        }
    }

    func shutdown() async { await base.shutdown() }

    static func maskQuery(_ url: String) -> String {
        guard let q = url.firstIndex(of: "?") else { return url }
        let pairs = url[url.index(after: q)...].split(separator: "&").map { p in
            p.split(separator: "=", maxSplits: 1).first.map { "\($0)=***" } ?? "***"
        }
        return url[..<q] + "?" + pairs.joined(separator: "&")
    }

    static func maskBody(_ bytes: [UInt8]) -> String {
        if bytes.isEmpty { return "(empty)" }
        if let json = try? JSONValue.parse(bytes) { return mask(json).jsonString() }
        let text = String(decoding: bytes.prefix(2048), as: UTF8.self)
        if text.contains("=") {
            return text.split(separator: "&").map { p in
                p.split(separator: "=", maxSplits: 1).first.map { "\($0)=***" } ?? "***"
            }.joined(separator: "&")
        }
        return "(\(bytes.count) bytes, not shown)"
    }

    static func mask(_ v: JSONValue) -> JSONValue {
        switch v {
        case .string: return "***"
        case .array(let a): return .array(a.map(mask))
        case .object(let o): return .object(o.mapValues(mask))
        default: return v
        }
    }
}
