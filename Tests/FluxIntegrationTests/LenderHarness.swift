import AsyncHTTPClient
import FluxActors
import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#endif

/// Like `NodeHarness` (whose process and HTTP helpers it reuses), but with the two lenders
/// outside the demo available: `idfc` (workflow auth, four-step HMAC handshake) and `kotak`
/// (mTLS + API key, with certificates made by `openssl` for the test), and edits of any
/// simulated lender or descriptor.
final class LenderHarness: StoppableHarness, @unchecked Sendable {
    // @unchecked: driven by one test at a time; nothing mutable is shared across tasks.
    let dir: URL
    let lendersDir: URL
    let simulator: Process
    private(set) var node: Process
    private(set) var httpPort: Int
    let controlURL: String
    /// Base URL of every simulated lender, by id.
    let lenderURLs: [String: String]
    let certs: URL?
    var baseURL: String { "http://127.0.0.1:\(httpPort)" }

    static var repoRoot: URL { NodeHarness.repoRoot }

    /// The simulator entries of the two extra lenders (as `SimulatorConfig.idfcLender` and
    /// `kotakLender(tls:)` define them; Docs/simulator.md).
    static func extraSimulated(_ id: String, certs: URL?) -> JSONValue? {
        switch id {
        case "idfc":
            return [
                "id": "idfc", "api": "hero",
                "auth": [
                    "type": "hmac_handshake", "client_id": "flux-sim", "client_secret": "sim-idfc-4a9c12",
                    "expires_in_s": 900,
                ],
                "rules": [
                    "min_bureau_score": 700, "min_amount_paise": 300_000, "max_amount_paise": 20_000_000,
                    "allowed_tenure_months": [3, 6, 9, 12, 18, 24],
                ],
                "rate_bps": 1650,
            ]
        case "kotak":
            guard let certs else { return nil }
            return [
                "id": "kotak", "api": "piramal",
                "auth": ["type": "api_key", "header": "X-Kotak-Key", "value": "sim-kotak-81d3f7"],
                "rules": [
                    "min_bureau_score": 700, "min_amount_paise": 300_000, "max_amount_paise": 20_000_000,
                    "allowed_tenure_months": [3, 6, 9, 12], "min_age": 21, "max_age": 60,
                ],
                "rate_bps": 1550,
                "tls": [
                    "cert_file": .string(certs.appendingPathComponent("server.pem").path),
                    "key_file": .string(certs.appendingPathComponent("server.key").path),
                    "client_ca_file": .string(certs.appendingPathComponent("ca.pem").path),
                ],
            ]
        default: return nil
        }
    }

    /// `extra`: which of idfc, kotak to add. `lenderOverrides`: simulator fields by lender id.
    /// `descriptorOverrides`: top-level descriptor fields by lender id. `only`: the lenders whose
    /// descriptors the node gets (nil: all).
    init(
        extra: [String] = [], lenderOverrides: [String: [String: JSONValue]] = [:],
        descriptorOverrides: [String: [String: JSONValue]] = [:], only: Set<String>? = nil, rules: JSONValue? = nil
    ) async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flux-lenders-\(UUID().uuidString.prefix(8))")
        lendersDir = dir.appendingPathComponent("lenders")
        try FileManager.default.createDirectory(at: lendersDir, withIntermediateDirectories: true)
        let root = Self.repoRoot
        certs =
            extra.contains("kotak") ? try TestCertificates.make(in: lendersDir.appendingPathComponent("certs")) : nil

        guard
            case .object(var simObject) = try JSONValue.parse(
                Data(contentsOf: root.appendingPathComponent("simulator.json"))),
            case .array(var lenders) = simObject["lenders"] ?? .null
        else { throw HarnessError("simulator.json is not an object with lenders") }
        for id in extra { if let l = Self.extraSimulated(id, certs: certs) { lenders.append(l) } }
        var ports: [String: Int] = [:]
        var urls: [String: String] = [:]
        simObject["lenders"] = .array(
            lenders.map { l in
                guard case .object(var o) = l, let id = o["id"]?.stringValue else { return l }
                let port = freePort()
                ports[id] = port
                urls[id] = "\(o["tls"] == nil ? "http" : "https")://127.0.0.1:\(port)"
                o["port"] = .int(Int64(port))
                o["latency_ms"] = 5
                o["jitter_ms"] = 5
                o["error_rate"] = 0
                for (k, v) in lenderOverrides[id] ?? [:] { o[k] = v }
                return .object(o)
            })
        lenderURLs = urls
        let control = freePort()
        simObject["control_port"] = .int(Int64(control))
        simObject["seed"] = 42
        controlURL = "http://127.0.0.1:\(control)/_sim"
        try JSONValue.object(simObject).jsonData().write(to: dir.appendingPathComponent("simulator.json"))

        var files: [(URL, String)] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("lenders").path)
        where file.hasSuffix(".json") {
            files.append((root.appendingPathComponent("lenders/\(file)"), file))
        }
        for id in extra { files.append((root.appendingPathComponent("lenders/extra/\(id).json"), "\(id).json")) }
        for (source, name) in files {
            let d = try Self.movedDescriptor(source, urls: urls, overrides: descriptorOverrides)
            guard let id = d["id"]?.stringValue, only?.contains(id) ?? true else { continue }
            try d.jsonData().write(to: lendersDir.appendingPathComponent(name))
        }
        try (rules ?? JSONValue.parse(Data(contentsOf: root.appendingPathComponent("rules.json")))).jsonData()
            .write(to: dir.appendingPathComponent("rules.json"))

        httpPort = freePort()
        simulator = try NodeHarness.spawn(
            ["simulate-lenders", "--config", dir.appendingPathComponent("simulator.json").path],
            log: dir.appendingPathComponent("sim.log"))
        node = try Self.startNode(in: dir, httpPort: httpPort)
        try await waitReady("\(controlURL)/control", process: simulator)
        // On a busy machine another process may take a free port between the test picking it and
        // the node binding it: the node exits at once saying so, and starts again on new ports.
        for attempt in 0..<3 {
            do {
                try await waitReady("\(baseURL)/health/ready", process: node)
                break
            } catch {
                let log = (try? String(contentsOf: dir.appendingPathComponent("node.log"), encoding: .utf8)) ?? ""
                guard attempt < 2, !node.isRunning, log.contains("in use") else { throw error }
                httpPort = freePort()
                node = try Self.startNode(in: dir, httpPort: httpPort)
            }
        }
    }

    /// Writes the node's configuration (the given HTTP port, fresh admin and wire ports) and
    /// starts it.
    static func startNode(in dir: URL, httpPort: Int) throws -> Process {
        try """
        node_id = "lenders-node"
        http = "127.0.0.1:\(httpPort)"
        admin = "127.0.0.1:\(freePort())"
        wire = "127.0.0.1:\(freePort())"
        journal = "sqlite:journal.db"
        lenders_dir = "lenders"
        rules = "rules.json"
        """.write(to: dir.appendingPathComponent("cluster.conf"), atomically: true, encoding: .utf8)
        return try NodeHarness.spawn(
            ["run", "--config", dir.appendingPathComponent("cluster.conf").path],
            log: dir.appendingPathComponent("node.log"))
    }

    /// A repository descriptor with its base URL on the test's port and top-level overrides.
    static func movedDescriptor(_ source: URL, urls: [String: String], overrides: [String: [String: JSONValue]]) throws
        -> JSONValue
    {
        let original = try JSONValue.parse(Data(contentsOf: source))
        guard let id = original["id"]?.stringValue, let oldBase = original["base_url"]?.stringValue else {
            return original
        }
        var text = original.jsonString()
        if let url = urls[id] { text = text.replacingOccurrences(of: oldBase, with: url) }
        guard case .object(var o) = try JSONValue.parse(Data(text.utf8)) else { return original }
        for (k, v) in overrides[id] ?? [:] { o[k] = v }
        return .object(o)
    }

    /// Kills the node (SIGKILL: nothing is flushed on the way out) and starts it again on the same
    /// configuration and journal; returns when it is ready.
    func restartNode() async throws {
        kill(node.processIdentifier, SIGKILL)
        node.waitUntilExit()
        node = try NodeHarness.spawn(
            ["run", "--config", dir.appendingPathComponent("cluster.conf").path],
            log: dir.appendingPathComponent("node-2.log"))
        try await waitReady("\(baseURL)/health/ready", process: node)
    }

    func waitReady(_ url: String, process: Process, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw HarnessError("process exited early:\n\(logs())") }
            if let r = try? await request("GET", url, timeout: .seconds(1)), r.status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("not ready at \(url):\n\(logs())")
    }

    func logs() -> String {
        let node = ["node.log", "node-2.log"].map {
            (try? String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8)) ?? ""
        }.joined(separator: "\n--- restarted ---\n")
        let sim = (try? String(contentsOf: dir.appendingPathComponent("sim.log"), encoding: .utf8)) ?? ""
        return "node:\n" + String(node.suffix(3000)) + "\nsimulator:\n" + String(sim.suffix(1000))
    }

    func stop() async {
        for p in [node, simulator] where p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(10)
            while p.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dir)
    }

    func request(
        _ method: String, _ url: String, body: [UInt8]? = nil, headers: [(String, String)] = [],
        timeout: Duration = .seconds(40)
    ) async throws -> NodeHarness.Reply {
        try await NodeHarness.send(
            method, url.hasPrefix("http") ? url : baseURL + url, body: body, headers: headers, timeout: timeout)
    }

    func get(_ path: String) async throws -> NodeHarness.Reply { try await request("GET", path) }

    func send(_ method: String, _ path: String, _ json: JSONValue, headers: [(String, String)] = []) async throws
        -> NodeHarness.Reply
    {
        try await request(method, path, body: Array(json.jsonData()), headers: headers)
    }

    /// Posts a checkout and waits (up to 25 s) for it to settle.
    func checkout(_ key: String, customer: String, score: Int = 790, amount: Int64 = 5_000_000, tenure: Int = 12)
        async throws -> JSONValue
    {
        let r = try await send(
            "POST", "/v1/applications",
            NodeHarness.checkout(customer: customer, score: score, amount: amount, tenure: tenure),
            headers: [("Idempotency-Key", key), ("Prefer", "wait=25")])
        guard let view = r.json else { throw HarnessError("no view for \(key): HTTP \(r.status)\n\(logs())") }
        return view
    }

    func lender(_ id: String) async throws -> JSONValue? {
        try await get("/v1/lenders").json?["lenders"]?.arrayValue?.first { $0["id"] == .string(id) }
    }

    func simControl(_ change: JSONValue) async throws {
        let r = try await request("POST", "\(controlURL)/control", body: Array(change.jsonData()))
        guard r.status == 200 else { throw HarnessError("simulator control answered \(r.status)") }
    }

    /// Runs `flux-node ARGS…` to completion: exit status and standard output.
    static func runTool(_ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: NodeHarness.binary)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

extension NodeHarness {
    /// One HTTP exchange (the harness's own `request`, without an instance).
    static func send(
        _ method: String, _ url: String, body: [UInt8]?, headers: [(String, String)], timeout: Duration
    ) async throws -> Reply {
        var r = HTTPClientRequest(url: url)
        r.method = HTTPMethod(rawValue: method)
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        if let body { r.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(r, timeout: .init(timeout))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return Reply(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: Array(bytes.readableBytesView))
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and a
/// self-signed "rogue" client, made with the `openssl` command line.
enum TestCertificates {
    static func make(in dir: URL) throws -> URL {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(
            to: dir.appendingPathComponent("san.ext"), atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let steps: [[String]] = [
            ["req", "-x509"] + ec + [
                "-keyout", "ca.pem.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Flux Test CA",
            ],
            ["req"] + ec + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.pem.key", "-CAcreateserial", "-out",
                "server.pem", "-days", "2", "-extfile", "san.ext",
            ],
            ["req"] + ec + ["-keyout", "flux-client.key", "-out", "client.csr", "-subj", "/CN=flux-client"],
            [
                "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.pem.key", "-CAcreateserial",
                "-out", "flux-client.pem", "-days", "2",
            ],
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
            guard p.terminationStatus == 0 else { throw HarnessError("openssl \(args.joined(separator: " ")) failed") }
        }
        return dir
    }
}
