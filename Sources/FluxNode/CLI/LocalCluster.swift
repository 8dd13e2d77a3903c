import FluxActors
import Foundation

/// Simulated lenders and `flux-node` processes on loopback, for the demo and the benchmarks:
/// started from the examples folder into a work folder, stopped (and the folder removed) by
/// `stop()`.
final class LocalCluster: @unchecked Sendable {
    // @unchecked: `children` and `nodes` are appended only while the cluster is being started,
    // by the one task that starts it, before any other task sees the cluster.

    struct Node: Sendable {
        var id: String
        var http: Int
        var admin: Int
        var wire: Int
        var child: ChildProcess
        var url: String { "http://127.0.0.1:\(http)" }
        var adminURL: String { "http://127.0.0.1:\(admin)" }
    }

    let base: URL
    let work: URL
    private(set) var children: [ChildProcess] = []
    private(set) var nodes: [Node] = []
    private(set) var simulator: SimulatorConfig?

    /// `examples`: the folder with simulator.json, rules.json and lenders/; `name` names the work
    /// folder under `.flux/`.
    init(examples: String, name: String) throws {
        base = URL(fileURLWithPath: examples).standardizedFileURL
        for needed in ["simulator.json", "rules.json", "lenders"] {
            guard FileManager.default.fileExists(atPath: base.appendingPathComponent(needed).path) else {
                throw DemoError("\(needed) not found in \(base.path); run from the repository root")
            }
        }
        work = base.appendingPathComponent(".flux/\(name)-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    /// Starts the simulated lenders. With `latencyMs`, every lender answers in that time and is
    /// well-behaved (no errors, outages or ghost mode); without, the example file as it is.
    func startLenders(latencyMs: Int? = nil) async throws {
        var path = base.appendingPathComponent("simulator.json")
        if let latencyMs {
            guard let data = FileManager.default.contents(atPath: path.path),
                case .object(var sim) = try JSONValue.parse(data), case .array(let lenders) = sim["lenders"] ?? .null
            else { throw DemoError("simulator.json is not an object with lenders in \(base.path)") }
            sim["lenders"] = .array(
                lenders.map { l in
                    guard case .object(var o) = l else { return l }
                    o["latency_ms"] = .int(Int64(latencyMs))
                    o["jitter_ms"] = 0
                    o["error_rate"] = 0
                    o["ghost_mode"] = false
                    o["outage"] = "none"
                    return .object(o)
                })
            path = work.appendingPathComponent("simulator.json")
            try JSONValue.object(sim).jsonData().write(to: path)
        }
        let config = try SimulatorConfig.load(path: path.path)
        let child = try ChildProcess(
            name: "simulated lenders", arguments: ["simulate-lenders", "--config", path.path],
            logURL: work.appendingPathComponent("simulator.log"))
        children.append(child)
        simulator = config
        try await waitUntilReady("http://\(config.host):\(config.controlPort)/_sim/control", child: child)
    }

    /// Starts `count` nodes named `prefix1…` sharing one SQLite journal. With more than one, they
    /// form a cluster (a shared secret, the first node as everyone's seed) and this returns once
    /// the first sees them all alive.
    func startNodes(_ count: Int, prefix: String, logLevel: String) async throws {
        let firstWire = Ports.free()
        let secret = "local-cluster-secret-\(UInt64.random(in: 0..<UInt64.max))"
        for i in 1...max(1, count) {
            let id = "\(prefix)\(i)"
            let (http, admin, wire) = (Ports.free(), Ports.free(), i == 1 ? firstWire : Ports.free())
            let cluster =
                count > 1
                ? """
                seeds = ["127.0.0.1:\(firstWire)"]
                cluster_secret = "\(secret)"
                """ : ""
            let conf = work.appendingPathComponent("\(id).conf")
            try """
            node_id = "\(id)"
            http = "127.0.0.1:\(http)"
            admin = "127.0.0.1:\(admin)"
            wire = "127.0.0.1:\(wire)"
            \(cluster)
            journal = "sqlite:\(work.appendingPathComponent("journal.db").path)"
            lenders_dir = "\(base.appendingPathComponent("lenders").path)"
            rules = "\(base.appendingPathComponent("rules.json").path)"
            """.write(to: conf, atomically: true, encoding: .utf8)
            let child = try ChildProcess(
                name: "flux node \(id)", arguments: ["run", "--config", conf.path],
                logURL: work.appendingPathComponent("\(id).log"), environment: ["LOG_LEVEL": logLevel])
            children.append(child)
            try await waitUntilReady("http://127.0.0.1:\(http)/health/ready", child: child)
            nodes.append(Node(id: id, http: http, admin: admin, wire: wire, child: child))
        }
        if nodes.count > 1 { try await waitAllAlive() }
    }

    /// Waits until the first node sees every node alive.
    func waitAllAlive() async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let (status, body) = try? await SimpleHTTP.get("\(nodes[0].adminURL)/cluster/members"), status == 200,
                let list = try? JSONValue.parse(body).arrayValue,
                list.filter({ $0["status"]?.stringValue == "alive" }).count == nodes.count
            {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DemoError("the nodes did not form one cluster within 30 s")
    }

    /// Waits until the nodes together hold every shard (each node's `flux_shards_held` gauge), so
    /// nothing starts while shards are still moving after the joins.
    func waitForShards(_ shards: Int = 256) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            var held = 0
            for node in nodes {
                guard let (status, body) = try? await SimpleHTTP.get("\(node.url)/metrics"), status == 200 else {
                    continue
                }
                for line in String(decoding: body, as: UTF8.self).split(separator: "\n")
                where line.hasPrefix("flux_shards_held ") {
                    held += Int(Double(line.split(separator: " ").last ?? "") ?? 0)
                }
            }
            if held == shards { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DemoError("the nodes did not take all \(shards) shards within 30 s")
    }

    /// Stops every process (newest first) and removes the work folder.
    func stop() async {
        for c in children.reversed() { _ = await c.stop() }
        try? FileManager.default.removeItem(at: work)
    }
}
