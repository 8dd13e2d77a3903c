import AsyncHTTPClient
import FluxActors
import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#endif

/// Runs the real `flux-node` binary: the simulated lenders and one node, on free ports, in a
/// temporary folder that `stop()` removes.
final class NodeHarness: StoppableHarness, @unchecked Sendable {
    // @unchecked: the harness is driven by one test at a time (each test owns its harness);
    // `node` is replaced only by `restartNode`, which the test awaits before using it again.
    let dir: URL
    let simulator: Process
    var node: Process
    let httpPort: Int
    let adminPort: Int
    let controlURL: String
    let nodeConfig: URL
    var baseURL: String { "http://127.0.0.1:\(httpPort)" }

    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static var binary: String {
        ProcessInfo.processInfo.environment["FLUX_NODE_BIN"]
            ?? repoRoot.appendingPathComponent(".build/debug/flux-node").path
    }

    /// `lenderOverrides` changes simulated lenders' behaviour by id (e.g. `["hero": ["outage": "refuse"]]`);
    /// `extraConfig` is appended to the node's TOML.
    init(
        lenderOverrides: [String: [String: JSONValue]] = [:], extraConfig: String = "",
        rules: JSONValue? = nil, descriptorOverrides: [String: [String: JSONValue]] = [:],
        journal: String = "sqlite:journal.db"
    ) async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("flux-it-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("lenders"), withIntermediateDirectories: true)
        controlURL = try Self.prepareLenders(
            in: dir, lenderOverrides: lenderOverrides, descriptorOverrides: descriptorOverrides, rules: rules)
        httpPort = freePort()
        adminPort = freePort()
        nodeConfig = dir.appendingPathComponent("cluster.conf")
        try """
        node_id = "it-node"
        http = "127.0.0.1:\(httpPort)"
        admin = "127.0.0.1:\(adminPort)"
        wire = "127.0.0.1:\(freePort())"
        journal = "\(journal)"
        lenders_dir = "lenders"
        rules = "rules.json"
        \(extraConfig)
        """.write(to: nodeConfig, atomically: true, encoding: .utf8)

        simulator = try Self.spawn(
            ["simulate-lenders", "--config", dir.appendingPathComponent("simulator.json").path],
            log: dir.appendingPathComponent("sim.log"))
        node = try Self.spawn(["run", "--config", nodeConfig.path], log: dir.appendingPathComponent("node.log"))
        try await waitReady("\(controlURL)/control", process: simulator)
        try await waitReady("\(baseURL)/health/ready", process: node)
    }

    /// Writes into `dir` a simulator configuration on free ports (`simulator.json`), the repo's
    /// descriptors pointed at it (`lenders/`) and `rules.json`; returns the simulator's control URL.
    static func prepareLenders(
        in dir: URL, lenderOverrides: [String: [String: JSONValue]] = [:],
        descriptorOverrides: [String: [String: JSONValue]] = [:], rules: JSONValue? = nil
    ) throws -> String {
        let root = repoRoot
        // Simulator on free ports, descriptors pointed at them.
        var sim = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("simulator.json")))
        guard case .object(var simObject) = sim, case .array(let lenders) = simObject["lenders"] ?? .null else {
            throw HarnessError("simulator.json is not an object with lenders")
        }
        var ports: [String: Int] = [:]
        simObject["lenders"] = .array(
            lenders.map { l in
                guard case .object(var o) = l, let id = o["id"]?.stringValue else { return l }
                let port = freePort()
                ports[id] = port
                o["port"] = .int(Int64(port))
                o["latency_ms"] = 5
                o["jitter_ms"] = 5
                for (k, v) in lenderOverrides[id] ?? [:] { o[k] = v }
                return .object(o)
            })
        let control = freePort()
        simObject["control_port"] = .int(Int64(control))
        simObject["seed"] = 42
        sim = .object(simObject)
        try sim.jsonData().write(to: dir.appendingPathComponent("simulator.json"))
        for file in try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("lenders").path)
        where file.hasSuffix(".json") {
            let original = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("lenders/\(file)")))
            guard let id = original["id"]?.stringValue, let port = ports[id],
                let oldBase = original["base_url"]?.stringValue
            else { continue }
            // Every URL of the lender (base_url, an absolute token_url) moves to the free port.
            let moved = original.jsonString().replacingOccurrences(of: oldBase, with: "http://127.0.0.1:\(port)")
            var d = try JSONValue.parse(Data(moved.utf8))
            guard case .object(var o) = d else { continue }
            for (k, v) in descriptorOverrides[id] ?? [:] { o[k] = v }
            d = .object(o)
            try d.jsonData().write(to: dir.appendingPathComponent("lenders/\(file)"))
        }
        if let rules {
            try rules.jsonData().write(to: dir.appendingPathComponent("rules.json"))
        } else {
            try FileManager.default.copyItem(
                at: root.appendingPathComponent("rules.json"), to: dir.appendingPathComponent("rules.json"))
        }
        return "http://127.0.0.1:\(control)/_sim"
    }

    static func spawn(_ args: [String], log: URL) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        if !FileManager.default.fileExists(atPath: log.path) {
            FileManager.default.createFile(atPath: log.path, contents: nil)
        }
        let h = try FileHandle(forWritingTo: log)
        h.seekToEndOfFile()
        p.standardOutput = h
        p.standardError = h
        var env = ProcessInfo.processInfo.environment
        env["LOG_LEVEL"] = env["LOG_LEVEL"] ?? "notice"
        p.environment = env
        try p.run()
        return p
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
        let node = (try? String(contentsOf: dir.appendingPathComponent("node.log"), encoding: .utf8)) ?? ""
        return String(node.suffix(4000))
    }

    /// Stops the node (SIGKILL when `kill9`, else SIGTERM) and returns its exit status.
    @discardableResult
    func stopNode(kill9: Bool = false) async -> Int32 {
        if node.isRunning {
            kill(node.processIdentifier, kill9 ? SIGKILL : SIGTERM)
            let deadline = ContinuousClock.now + .seconds(15)
            while node.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            if node.isRunning { kill(node.processIdentifier, SIGKILL) }
            node.waitUntilExit()
        }
        return node.terminationStatus
    }

    func startNode() async throws {
        node = try Self.spawn(["run", "--config", nodeConfig.path], log: dir.appendingPathComponent("node.log"))
        try await waitReady("\(baseURL)/health/ready", process: node)
    }

    func stop() async {
        await stopNode()
        if simulator.isRunning {
            kill(simulator.processIdentifier, SIGTERM)
            simulator.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dir)
    }

    struct Reply: Sendable {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        var json: JSONValue? { try? JSONValue.parse(body) }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        var errorCode: String? { json?["error"]?["code"]?.stringValue }
    }

    func request(
        _ method: String, _ url: String, body: [UInt8]? = nil, headers: [(String, String)] = [],
        timeout: Duration = .seconds(40)
    ) async throws -> Reply {
        var r = HTTPClientRequest(url: url.hasPrefix("http") ? url : baseURL + url)
        r.method = HTTPMethod(rawValue: method)
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        if let body { r.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(r, timeout: .init(timeout))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return Reply(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: Array(bytes.readableBytesView))
    }

    func post(_ path: String, _ json: JSONValue, headers: [(String, String)] = []) async throws -> Reply {
        try await request("POST", path, body: Array(json.jsonData()), headers: headers)
    }

    func get(_ path: String, headers: [(String, String)] = []) async throws -> Reply {
        try await request("GET", path, headers: headers)
    }

    /// A valid checkout body for customer `customer`.
    static func checkout(
        customer: String, score: Int = 790, amount: Int64 = 7_990_000, tenure: Int = 12, merchant: String = "croma"
    ) -> JSONValue {
        [
            "merchant_id": .string(merchant), "store_id": "croma-blr-12",
            "customer": [
                "id": .string(customer), "name": "Asha Rao", "phone": "+919800000001", "email": "asha@example.in",
                "pan": "ABCDE1234F", "date_of_birth": "1992-04-01", "pincode": "560001",
                "monthly_income_paise": 9_000_000, "bureau_score": .int(Int64(score)),
            ],
            "product": ["sku": "iphone-16-128", "category": "mobile", "price_paise": 7_990_000],
            "loan": ["amount_paise": .int(amount), "tenure_months": .int(Int64(tenure))],
            "mode": "waterfall",
        ]
    }
}

/// A new, empty PostgreSQL database on the test instance (`FLUX_TEST_POSTGRES`), as a conninfo.
func freshPostgresDatabase() throws -> String {
    guard let base = ProcessInfo.processInfo.environment["FLUX_TEST_POSTGRES"] else {
        throw HarnessError("FLUX_TEST_POSTGRES is not set")
    }
    let name = "flux_it_\(UUID().uuidString.prefix(8).lowercased())"
    // CREATE DATABASE fails while another session uses template1 (tests running in parallel
    // create theirs at the same moment): try again a few times.
    for attempt in 0..<10 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["psql", base, "-q", "-c", "CREATE DATABASE \(name)"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        if p.terminationStatus == 0 { break }
        if attempt == 9 { throw HarnessError("psql CREATE DATABASE failed") }
        Thread.sleep(forTimeInterval: 0.2 + Double.random(in: 0..<0.3))
    }
    return base.split(separator: " ").map { $0.hasPrefix("dbname=") ? "dbname=\(name)" : String($0) }.joined(
        separator: " ")
}

/// A test's processes, stopped whatever the test did.
protocol StoppableHarness: AnyObject, Sendable {
    func stop() async
}

extension StoppableHarness {
    /// Runs `body`, then stops the harness whether it passed, failed or threw (a detached stop in
    /// a `defer` might never run before the test process exits).
    func run(_ body: (Self) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            await stop()
            throw error
        }
        await stop()
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}
