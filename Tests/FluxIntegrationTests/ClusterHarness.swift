import AsyncHTTPClient
import FluxActors
import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#endif

/// Runs several real `flux-node` processes as one cluster: seeds, a shared `cluster_secret`, one
/// shared SQLite journal file and fast SWIM settings, in a temporary folder `stop()` removes.
/// No lenders are configured: these tests are about membership.
final class ClusterHarness: StoppableHarness, @unchecked Sendable {
    // @unchecked: each test owns its harness and drives it from one task; `processes` changes
    // only in `start`/`kill`/`terminate`, which the test awaits before the next call.
    struct Node: Sendable {
        var id: String
        var http: Int
        var admin: Int
        var wire: Int
        var config: URL
        var log: URL
        var seeds: [String]
        var secret: String?
    }

    static let adminToken = "cluster-admin-token"
    let dir: URL
    let secret: String
    let swim: String
    /// `journal` of every node: one SQLite file in the harness folder, or a PostgreSQL conninfo.
    let journal: String
    private(set) var nodes: [String: Node] = [:]
    private var processes: [String: Process] = [:]
    private(set) var seeds: [String] = []
    private var simulator: Process?
    /// The simulator's control URL once `startLenders` ran.
    private(set) var controlURL: String?

    /// `swim` is the `[swim]` table's body.
    init(
        secret: String = "a-shared-cluster-secret",
        swim: String = "probe_interval_ms = 200\nping_timeout_ms = 100", journal: String = "sqlite:journal.db"
    ) throws {
        self.journal = journal
        dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flux-cluster-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("lenders"), withIntermediateDirectories: true)
        self.secret = secret
        self.swim = swim
    }

    /// Writes a node's configuration. The first node added is every node's seed. `secret`
    /// replaces the shared secret; `noSecret` leaves `cluster_secret` out.
    @discardableResult
    func add(_ id: String, secret: String? = nil, noSecret: Bool = false, seeds: [String]? = nil) throws -> Node {
        if seeds == nil, self.seeds.isEmpty { self.seeds = ["127.0.0.1:\(wireOfFirst)"] }
        let node = Node(
            id: id, http: uniquePort(), admin: uniquePort(),
            wire: seeds == nil && !nodes.values.contains { $0.wire == wireOfFirst } ? wireOfFirst : uniquePort(),
            config: dir.appendingPathComponent("\(id).conf"), log: dir.appendingPathComponent("\(id).log"),
            seeds: seeds ?? self.seeds, secret: noSecret ? nil : secret ?? self.secret)
        try write(node)
        nodes[id] = node
        return node
    }

    private lazy var wireOfFirst = uniquePort()

    private func write(_ node: Node) throws {
        try """
        node_id = "\(node.id)"
        http = "127.0.0.1:\(node.http)"
        admin = "127.0.0.1:\(node.admin)"
        wire = "127.0.0.1:\(node.wire)"
        seeds = [\(node.seeds.map { "\"\($0)\"" }.joined(separator: ", "))]
        \(node.secret.map { "cluster_secret = \"\($0)\"" } ?? "")
        admin_token = "\(Self.adminToken)"
        shards = 64
        journal = "\(journal)"
        lenders_dir = "lenders"
        rules = "rules.json"

        [swim]
        \(swim)
        """.write(to: node.config, atomically: true, encoding: .utf8)
    }

    private var usedPorts: Set<Int> = []

    /// A free port no node of this harness uses yet.
    private func uniquePort() -> Int {
        while true {
            let p = freePort()
            if usedPorts.insert(p).inserted { return p }
        }
    }

    /// Starts a node and waits until it is ready. When it exits at once because another process
    /// on this busy machine took one of its free ports, it gets new HTTP and admin ports (and a
    /// new wire port unless it is a seed) and starts again, at most twice.
    func start(_ id: String) async throws {
        for attempt in 0..<3 {
            guard var node = nodes[id] else { throw HarnessError("no node \(id)") }
            let p = try NodeHarness.spawn(["run", "--config", node.config.path], log: node.log)
            processes[id] = p
            do {
                try await waitReady(id, process: p)
                return
            } catch {
                guard attempt < 2, !p.isRunning, log(id).contains("in use") || log(id).contains("Already closed")
                else { throw error }
                node.http = uniquePort()
                node.admin = uniquePort()
                if !seeds.contains("127.0.0.1:\(node.wire)") { node.wire = uniquePort() }
                try write(node)
                nodes[id] = node
            }
        }
    }

    /// Starts a node and waits for it to exit (for configurations that must not start).
    func runToExit(_ id: String, timeout: Duration = .seconds(30)) async throws -> Int32 {
        guard let node = nodes[id] else { throw HarnessError("no node \(id)") }
        let p = try NodeHarness.spawn(["run", "--config", node.config.path], log: node.log)
        let deadline = ContinuousClock.now + timeout
        while p.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            throw HarnessError("\(id) did not exit")
        }
        return p.terminationStatus
    }

    private func waitReady(_ id: String, process: Process, timeout: Duration = .seconds(60)) async throws {
        let node = nodes[id]!
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw HarnessError("\(id) exited early:\n\(log(id))") }
            if let r = try? await Self.get("http://127.0.0.1:\(node.http)/health/ready", timeout: .seconds(1)),
                r.status == 200
            {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessError("\(id) not ready:\n\(log(id))")
    }

    /// kill -9.
    func kill9(_ id: String) {
        guard let p = processes[id], p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    /// SIGTERM; returns the exit status.
    func terminate(_ id: String, timeout: Duration = .seconds(20)) async -> Int32 {
        guard let p = processes[id] else { return -1 }
        if p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + timeout
            while p.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
        }
        return p.terminationStatus
    }

    /// Starts simulated lenders and writes descriptors and rules for every node (call before
    /// `start`).
    func startLenders(_ overrides: [String: [String: JSONValue]] = [:]) async throws {
        let control = try NodeHarness.prepareLenders(in: dir, lenderOverrides: overrides)
        let p = try NodeHarness.spawn(
            ["simulate-lenders", "--config", dir.appendingPathComponent("simulator.json").path],
            log: dir.appendingPathComponent("sim.log"))
        simulator = p
        controlURL = control
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            guard p.isRunning else { throw HarnessError("the simulator exited early") }
            if let r = try? await Self.get("\(control)/control", timeout: .seconds(1)), r.status == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessError("the simulator is not ready")
    }

    /// `METHOD path` at node `id`'s public port.
    func request(
        _ id: String, _ method: String, _ path: String, body: JSONValue? = nil, headers: [(String, String)] = [],
        admin: Bool = false, timeout: Duration = .seconds(40)
    ) async throws -> NodeHarness.Reply {
        guard let node = nodes[id] else { throw HarnessError("no node \(id)") }
        var r = HTTPClientRequest(url: "http://127.0.0.1:\(admin ? node.admin : node.http)\(path)")
        r.method = HTTPMethod(rawValue: method)
        if admin { r.headers.add(name: "Authorization", value: "Bearer \(Self.adminToken)") }
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        if let body { r.body = .bytes(ByteBuffer(bytes: Array(body.jsonData()))) }
        let response = try await HTTPClient.shared.execute(r, timeout: .init(timeout))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return NodeHarness.Reply(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: Array(bytes.readableBytesView))
    }

    func isRunning(_ id: String) -> Bool { processes[id]?.isRunning ?? false }

    func stop() async {
        for id in processes.keys.sorted() { _ = await terminate(id, timeout: .seconds(5)) }
        if let simulator, simulator.isRunning {
            kill(simulator.processIdentifier, SIGTERM)
            simulator.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dir)
    }

    func log(_ id: String) -> String {
        let text = (try? String(contentsOf: dir.appendingPathComponent("\(id).log"), encoding: .utf8)) ?? ""
        return String(text.suffix(4000))
    }

    // MARK: - Admin API

    struct Member: Sendable, Equatable {
        var id: String
        var status: String
        var incarnation: Int64
        var shards: Int64
        var wire: String
        var http: String
    }

    /// `GET /cluster/members` at `id`'s admin port.
    func members(at id: String) async throws -> [Member] {
        let r = try await adminGet(id, "/cluster/members")
        guard r.status == 200, case .array(let list)? = r.json else {
            throw HarnessError("members at \(id): \(r.status) \(String(decoding: r.body, as: UTF8.self))")
        }
        return list.map(Self.member)
    }

    static func member(_ m: JSONValue) -> Member {
        let id: String = m["node_id"]?.stringValue ?? "?"
        let status: String = m["status"]?.stringValue ?? "?"
        let incarnation: Int64 = m["incarnation"]?.intValue ?? -1
        let shards: Int64 = m["shards"]?.intValue ?? -1
        let wire: String = m["wire"]?.stringValue ?? ""
        let http: String = m["http"]?.stringValue ?? ""
        return Member(id: id, status: status, incarnation: incarnation, shards: shards, wire: wire, http: http)
    }

    /// Status of each member as `id` sees it (empty if `id` does not answer).
    func statuses(at id: String) async -> [String: String] {
        guard let list = try? await members(at: id) else { return [:] }
        return Dictionary(list.map { ($0.id, $0.status) }, uniquingKeysWith: { a, _ in a })
    }

    func adminGet(_ id: String, _ path: String, token: String? = adminToken) async throws -> NodeHarness.Reply {
        guard let node = nodes[id] else { throw HarnessError("no node \(id)") }
        return try await Self.get(
            "http://127.0.0.1:\(node.admin)\(path)", headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [])
    }

    /// Runs `flux-node ARGS` to completion; returns its exit status and standard output.
    func cli(_ args: [String]) async throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: NodeHarness.binary)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func get(
        _ url: String, headers: [(String, String)] = [], timeout: Duration = .seconds(10)
    ) async throws -> NodeHarness.Reply {
        var r = HTTPClientRequest(url: url)
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        let response = try await HTTPClient.shared.execute(r, timeout: .init(timeout))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return NodeHarness.Reply(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: Array(bytes.readableBytesView))
    }

    /// Polls `condition` until it holds or `timeout` passes; returns how long it took (nil: never).
    static func timeUntil(
        _ timeout: Duration, poll: Duration = .milliseconds(25), _ condition: () async -> Bool
    ) async -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if await condition() { return ContinuousClock.now - start }
            try? await Task.sleep(for: poll)
        }
        return await condition() ? ContinuousClock.now - start : nil
    }
}
