import AsyncHTTPClient
import FluxActors
import Foundation
import Testing

@testable import FluxNode

/// Every auth scheme end to end: the repository's descriptors (`lenders/*.json`,
/// `lenders/extra/*.json`) compiled by `ConnectorDescriptor`, called through
/// `LenderConnection` over AsyncHTTPClient, against the simulator in this process.
@Suite("auth schemes against the simulator", .serialized)
struct SimulatorAuthSchemesTests {
    static let repo = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The descriptor at `path` (relative to the repository) with its base URL moved to `url`.
    static func descriptor(
        _ path: String, baseURL url: String, folder: URL? = nil, edit: (inout JSONValue) -> Void = { _ in }
    )
        throws -> ConnectorDescriptor
    {
        let file = repo.appendingPathComponent(path)
        var json = try JSONValue.parse(Data(contentsOf: file))
        let old = json["base_url"]!.stringValue!
        json = try JSONValue.parse(Data(json.jsonString().replacingOccurrences(of: old, with: url).utf8))
        edit(&json)
        return try ConnectorDescriptor(
            json: json, resolver: .files(environment: [:], relativeTo: folder ?? file.deletingLastPathComponent()))
    }

    static func context(_ app: String, score: Int = 790) -> LenderCallContext {
        let checkout: JSONValue = [
            "merchant_id": "croma", "store_id": "croma-blr-12",
            "customer": [
                "id": "c-1", "name": "Asha Rao", "phone": "+919800000001", "pan": "ABCDE1234F",
                "date_of_birth": "1992-04-01", "pincode": "560001", "bureau_score": .int(Int64(score)),
            ],
            "product": ["sku": "iphone-16-128", "category": "mobile", "price_paise": 7_990_000],
            "loan": ["amount_paise": 5_000_000, "tenure_months": 12],
            "mode": "waterfall",
        ]
        return LenderCallContext(
            applicationID: app, request: try! CheckoutRequest(json: checkout), createdAt: Date(),
            idempotencyKey: "\(app).x")
    }

    func connection(_ d: ConnectorDescriptor, transport: any HTTPTransport) -> LenderConnection {
        var o = LenderConnectionOptions()
        o.jitterSeed = 1
        return LenderConnection(descriptor: d, transport: transport, options: o)
    }

    func control(_ sim: RunningSimulator, _ body: SimJSON) async throws {
        let r = try await simCall(.POST, "\(sim.control)/_sim/control", json: body)
        #expect(r.status == 200)
    }

    func tokensIssued(_ sim: RunningSimulator, _ id: String) async throws -> Int64? {
        let r = try await simCall(.GET, "\(sim.control)/_sim/control")
        if case .int(let n)? = r.json?.value(at: "lenders.\(id).tokens_issued") { return n }
        return nil
    }

    @Test func apiKeyAndBothOAuth2FlavoursApprove() async throws {
        let sim = try await RunningSimulator.start()
        defer { Task { await sim.stop() } }
        let transport = AsyncHTTPClientTransport(connectionsPerHost: 4)
        defer { Task { await transport.shutdown() } }
        for id in ["abfl", "piramal", "hero", "tata"] {
            let c = connection(try Self.descriptor("lenders/\(id).json", baseURL: sim.urls[id]!), transport: transport)
            let call = await c.apply(Self.context("auth-\(id)"))
            guard case .approved = call.outcome else {
                Issue.record("\(id): \(call.outcome)")
                continue
            }
            #expect(await c.status(Self.context("auth-\(id)")).outcome != .notFound)
        }
    }

    @Test func workflowHandshakeAndRenewalWithATwoSecondTTL() async throws {
        let sim = try await RunningSimulator.start { $0.lenders.append(Self.idfc(expiresIn: 2)) }
        defer { Task { await sim.stop() } }
        let transport = AsyncHTTPClientTransport(connectionsPerHost: 4)
        defer { Task { await transport.shutdown() } }
        let d = try Self.descriptor("lenders/extra/idfc.json", baseURL: sim.urls["idfc"]!)
        let c = connection(d, transport: transport)
        let first = await c.apply(Self.context("wf-1"))
        guard case .approved = first.outcome else {
            Issue.record("\(first.outcome)")
            return
        }
        #expect(try await tokensIssued(sim, "idfc") == 1)
        #expect(await c.tokenRenewsInSeconds ?? 99 <= 2)
        _ = await c.status(Self.context("wf-1"))
        #expect(try await tokensIssued(sim, "idfc") == 1)  // cached
        try await Task.sleep(for: .milliseconds(1_700))  // past 80 % of 2 s
        let after = await c.status(Self.context("wf-1"))
        #expect(after.outcome.reference != nil)
        #expect(try await tokensIssued(sim, "idfc") == 2)
        try await Task.sleep(for: .milliseconds(2_200))  // the old token has expired at the lender too
        #expect(await c.status(Self.context("wf-1")).outcome != .notFound)
        #expect(try await tokensIssued(sim, "idfc") == 3)
    }

    @Test func workflowRenewsOnceOnA401() async throws {
        let sim = try await RunningSimulator.start { $0.lenders.append(Self.idfc(expiresIn: 900)) }
        defer { Task { await sim.stop() } }
        let transport = AsyncHTTPClientTransport(connectionsPerHost: 4)
        defer { Task { await transport.shutdown() } }
        let c = connection(
            try Self.descriptor("lenders/extra/idfc.json", baseURL: sim.urls["idfc"]!), transport: transport)
        _ = await c.apply(Self.context("wf-401"))
        #expect(try await tokensIssued(sim, "idfc") == 1)
        // The lender forgets every token: the next call gets 401, renews once and succeeds.
        try await control(sim, .object(["lender": .string("idfc"), "expire_tokens": .bool(true)]))
        let call = await c.status(Self.context("wf-401"))
        guard case .approved = call.outcome else {
            Issue.record("\(call.outcome)")
            return
        }
        #expect(call.tries == 2)
        #expect(try await tokensIssued(sim, "idfc") == 2)
    }

    @Test func workflowWithAWrongKeyFailsAtTheSignedStep() async throws {
        let sim = try await RunningSimulator.start { $0.lenders.append(Self.idfc(expiresIn: 900)) }
        defer { Task { await sim.stop() } }
        let transport = AsyncHTTPClientTransport(connectionsPerHost: 4)
        defer { Task { await transport.shutdown() } }
        let d = try Self.descriptor("lenders/extra/idfc.json", baseURL: sim.urls["idfc"]!) {
            $0 = $0.replacing(at: ["secrets", "signing_key"], with: "wrong")
        }
        let c = connection(d, transport: transport)
        let why = await c.authenticate()
        #expect(why == "step challenge answered HTTP 401")
        #expect(try await tokensIssued(sim, "idfc") == 0)
    }

    @Test func mtlsWithCertificatesMadeHere() async throws {
        let certs = try TestCertificates.make()
        defer { try? FileManager.default.removeItem(at: certs.dir) }
        let tls = SimulatedTLSConfig(
            certFile: certs.path("server.pem"), keyFile: certs.path("server.key"), clientCAFile: certs.path("ca.pem"))
        var kotak = SimulatorConfig.kotakLender(tls: tls)
        kotak.port = 0
        kotak.behaviour = SimulatedBehaviour()
        let sim = try await RunningSimulator.start { $0.lenders.append(kotak) }
        defer { Task { await sim.stop() } }
        let url = sim.urls["kotak"]!
        #expect(url.hasPrefix("https://"))

        // The descriptor names its files relative to its folder: here the folder of the certificates.
        let d = try Self.descriptor("lenders/extra/kotak.json", baseURL: url, folder: certs.dir) {
            $0 = $0.replacing(at: ["auth", "cert_file"], with: "client.pem")
                .replacing(at: ["auth", "key_file"], with: "client.key")
                .replacing(at: ["auth", "ca_file"], with: "ca.pem")
        }
        let identity = try #require(d.auth.identity)
        let transport = try AsyncHTTPClientTransport(identity: identity, connectionsPerHost: 2)
        defer { Task { await transport.shutdown() } }
        let c = connection(d, transport: transport)
        let call = await c.apply(Self.context("mtls-1"))
        guard case .approved = call.outcome else {
            Issue.record("\(call.outcome)")
            return
        }

        // A certificate the lender's CA did not sign: the handshake fails, nothing is sent.
        let rogue = try Self.descriptor("lenders/extra/kotak.json", baseURL: url, folder: certs.dir) {
            $0 = $0.replacing(at: ["auth", "cert_file"], with: "rogue.pem")
                .replacing(at: ["auth", "key_file"], with: "rogue.key")
                .replacing(at: ["auth", "ca_file"], with: "ca.pem")
        }
        let rogueTransport = try AsyncHTTPClientTransport(identity: rogue.auth.identity!, connectionsPerHost: 2)
        defer { Task { await rogueTransport.shutdown() } }
        let refused = await connection(rogue, transport: rogueTransport).status(Self.context("mtls-1"))
        guard case .unknown(let reason) = refused.outcome else {
            Issue.record("a rogue certificate was accepted: \(refused.outcome)")
            return
        }
        #expect(reason.contains("could not connect") || reason.contains("connection lost") || reason.contains("TLS"))

        // The API key on top is still checked (`then`).
        let noKey = try Self.descriptor("lenders/extra/kotak.json", baseURL: url, folder: certs.dir) {
            $0 = $0.replacing(at: ["auth", "cert_file"], with: "client.pem")
                .replacing(at: ["auth", "key_file"], with: "client.key")
                .replacing(at: ["auth", "ca_file"], with: "ca.pem")
                .replacing(at: ["auth", "then", "value"], with: "wrong-key")
        }
        let denied = await connection(noKey, transport: transport).apply(Self.context("mtls-2"))
        guard case .failed(let why) = denied.outcome else {
            Issue.record("\(denied.outcome)")
            return
        }
        #expect(why.hasPrefix("HTTP 401"))
    }

    static func idfc(expiresIn: Int) -> SimulatedLenderConfig {
        var l = SimulatorConfig.idfcLender
        l.port = 0
        l.behaviour = SimulatedBehaviour()
        l.auth.expiresInS = expiresIn
        return l
    }
}

extension StatusOutcome {
    var reference: String? {
        if case .approved(let r, _) = self { return r }
        return nil
    }
}

extension JSONValue {
    /// A copy with `value` at a path of object keys.
    func replacing(at path: [String], with value: JSONValue) -> JSONValue {
        guard let k = path.first, case .object(var o) = self else { return self }
        o[k] = path.count == 1 ? value : (o[k] ?? [:]).replacing(at: Array(path.dropFirst()), with: value)
        return .object(o)
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and a
/// self-signed "rogue" client, made with the `openssl` command line in a temporary folder.
struct TestCertificates {
    let dir: URL
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    static func make() throws -> TestCertificates {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flux-certs-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(
            to: dir.appendingPathComponent("san.ext"), atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let steps: [[String]] = [
            ["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Flux Test CA"],
            ["req"] + ec + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
                "server.pem", "-days", "2", "-extfile", "san.ext",
            ],
            ["req"] + ec + ["-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=flux-client"],
            [
                "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
                "client.pem", "-days", "2",
            ],
            ["req", "-x509"] + ec + ["-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2", "-subj", "/CN=rogue"],
        ]
        for args in steps {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["openssl"] + args
            p.currentDirectoryURL = dir
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else {
                throw SimulatorConfigError(message: "openssl \(args.joined(separator: " ")) failed")
            }
        }
        return TestCertificates(dir: dir)
    }
}
