import FluxActors
import Foundation
import TOMLKit

/// `host:port`, as the configuration and the command-line flags write it.
struct HostPort: Sendable, Equatable, CustomStringConvertible {
    var host: String
    var port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, host.count <= 253, !host.contains(" "), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        self.host = host
        self.port = port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Thrown for a configuration that must not start a node; `key` names the offending key.
struct ConfigError: Error, CustomStringConvertible, Equatable {
    var key: String
    var message: String
    var description: String { key.isEmpty ? message : "\(key): \(message)" }
}

struct SwimSettings: Sendable, Equatable {
    var probeIntervalMs = 1000
    var pingTimeoutMs = 500
    var indirectProbes = 3
    var suspicionMult = 4
    var suspicionMaxMult = 6
}

/// `cluster.conf` (CONTRACT §1). Every key has a default, so an empty file runs a single node.
struct NodeConfig: Sendable, Equatable {
    var nodeID: String
    var http = HostPort(host: "0.0.0.0", port: 8080)
    var admin = HostPort(host: "127.0.0.1", port: 8081)
    var wire = HostPort(host: "127.0.0.1", port: 7400)
    var seeds: [HostPort] = []
    var clusterSecret: String?
    var shards = 256
    var journal = "sqlite:.flux/journal.db"
    var journalFlushMs = 2
    var journalBatch = 1024
    var lendersDir = "lenders/"
    var rules = "rules.json"
    var apiKeys: [String] = []
    var adminToken: String?
    var swim = SwimSettings()
    /// Relative paths in the file are relative to the file's own folder.
    var baseDirectory: URL

    static let knownKeys: Set<String> = [
        "node_id", "http", "admin", "wire", "seeds", "cluster_secret", "shards", "journal", "journal_flush_ms",
        "journal_batch", "lenders_dir", "rules", "api_keys", "admin_token", "swim",
    ]
    static let knownSwimKeys: Set<String> = [
        "probe_interval_ms", "ping_timeout_ms", "indirect_probes", "suspicion_mult", "suspicion_max_mult",
    ]

    static func defaultNodeID(wirePort: Int) -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "flux"
        return "\(host)-\(wirePort)"
    }

    /// Reads and validates a configuration file. An unknown key or a bad value is an error that
    /// names the key.
    static func load(path: String) throws(ConfigError) -> NodeConfig {
        let url = URL(fileURLWithPath: path)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError(key: "", message: "cannot read configuration file \(path)")
        }
        guard data.count <= 1 << 20 else { throw ConfigError(key: "", message: "\(path) is larger than 1 MiB") }
        return try parse(toml: String(decoding: data, as: UTF8.self), baseDirectory: url.deletingLastPathComponent())
    }

    static func parse(toml: String, baseDirectory: URL) throws(ConfigError) -> NodeConfig {
        let json: JSONValue
        do {
            let table = try TOMLTable(string: toml)
            json = try JSONValue.parse(Data(table.convert(to: .json).utf8))
        } catch let error as TOMLParseError {
            throw ConfigError(
                key: "",
                message: "not valid TOML at line \(error.source.begin.line), column \(error.source.begin.column)")
        } catch {
            throw ConfigError(key: "", message: "not valid TOML: \(error)")
        }
        return try parse(json, baseDirectory: baseDirectory)
    }

    static func parse(_ json: JSONValue, baseDirectory: URL) throws(ConfigError) -> NodeConfig {
        guard case .object(let o) = json else { throw ConfigError(key: "", message: "not a TOML table") }
        for key in o.keys.sorted() where !knownKeys.contains(key) {
            throw ConfigError(
                key: key, message: "unknown key (known keys: \(knownKeys.sorted().joined(separator: ", ")))")
        }
        var c = NodeConfig(nodeID: "", baseDirectory: baseDirectory)
        if let v = o["http"] { c.http = try hostPort(v, "http") }
        if let v = o["admin"] { c.admin = try hostPort(v, "admin") }
        if let v = o["wire"] { c.wire = try hostPort(v, "wire") }
        if let v = o["seeds"] {
            guard case .array(let a) = v, a.count <= 64 else {
                throw ConfigError(key: "seeds", message: "must be an array of at most 64 \"host:port\" strings")
            }
            c.seeds = try a.enumerated().map { (i, s) throws(ConfigError) in try hostPort(s, "seeds[\(i)]") }
        }
        if let v = o["cluster_secret"] {
            let s = try string(v, "cluster_secret")
            guard s.utf8.count >= 16 else {
                throw ConfigError(key: "cluster_secret", message: "must be at least 16 bytes long")
            }
            c.clusterSecret = s
        }
        if let v = o["shards"] { c.shards = try int(v, "shards", 1...65536) }
        if let v = o["journal"] {
            let s = try string(v, "journal")
            guard
                s.hasPrefix("sqlite:") || s.hasPrefix("postgres://") || s.hasPrefix("postgresql://") || s.contains("=")
            else {
                throw ConfigError(
                    key: "journal", message: "must be sqlite:PATH, postgres://… or a libpq conninfo string")
            }
            c.journal = s
        }
        if let v = o["journal_flush_ms"] { c.journalFlushMs = try int(v, "journal_flush_ms", 1...10_000) }
        if let v = o["journal_batch"] { c.journalBatch = try int(v, "journal_batch", 1...100_000) }
        if let v = o["lenders_dir"] { c.lendersDir = try string(v, "lenders_dir") }
        if let v = o["rules"] { c.rules = try string(v, "rules") }
        if let v = o["api_keys"] {
            guard case .array(let a) = v, a.count <= 10_000 else {
                throw ConfigError(key: "api_keys", message: "must be an array of strings")
            }
            c.apiKeys = try a.enumerated().map { (i, s) throws(ConfigError) in
                let k = try string(s, "api_keys[\(i)]")
                guard k.utf8.count >= 8 else {
                    throw ConfigError(key: "api_keys[\(i)]", message: "must be at least 8 bytes")
                }
                return k
            }
        }
        if let v = o["admin_token"] { c.adminToken = try string(v, "admin_token") }
        if let v = o["swim"] {
            guard case .object(let s) = v else { throw ConfigError(key: "swim", message: "must be a table") }
            for key in s.keys.sorted() where !knownSwimKeys.contains(key) {
                throw ConfigError(key: "swim.\(key)", message: "unknown key")
            }
            if let x = s["probe_interval_ms"] {
                c.swim.probeIntervalMs = try int(x, "swim.probe_interval_ms", 10...60_000)
            }
            if let x = s["ping_timeout_ms"] { c.swim.pingTimeoutMs = try int(x, "swim.ping_timeout_ms", 1...60_000) }
            if let x = s["indirect_probes"] { c.swim.indirectProbes = try int(x, "swim.indirect_probes", 0...16) }
            if let x = s["suspicion_mult"] { c.swim.suspicionMult = try int(x, "swim.suspicion_mult", 1...100) }
            if let x = s["suspicion_max_mult"] {
                c.swim.suspicionMaxMult = try int(x, "swim.suspicion_max_mult", 1...1000)
            }
            guard c.swim.pingTimeoutMs < c.swim.probeIntervalMs else {
                throw ConfigError(key: "swim.ping_timeout_ms", message: "must be shorter than swim.probe_interval_ms")
            }
            guard c.swim.suspicionMaxMult >= c.swim.suspicionMult else {
                throw ConfigError(key: "swim.suspicion_max_mult", message: "must be at least swim.suspicion_mult")
            }
        }
        if let v = o["node_id"] {
            let s = try string(v, "node_id")
            guard s.utf8.count <= 64, s.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2F }) else {
                throw ConfigError(
                    key: "node_id", message: "must be at most 64 printable characters without spaces or '/'")
            }
            c.nodeID = s
        } else {
            c.nodeID = defaultNodeID(wirePort: c.wire.port)
        }
        return c
    }

    private static func hostPort(_ v: JSONValue, _ key: String) throws(ConfigError) -> HostPort {
        guard case .string(let s) = v, let hp = HostPort(s) else {
            throw ConfigError(key: key, message: "must be a \"host:port\" string")
        }
        return hp
    }

    private static func string(_ v: JSONValue, _ key: String) throws(ConfigError) -> String {
        guard case .string(let s) = v, !s.isEmpty, s.utf8.count <= 4096 else {
            throw ConfigError(key: key, message: "must be a non-empty string")
        }
        return s
    }

    private static func int(_ v: JSONValue, _ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard case .int(let i) = v else { throw ConfigError(key: key, message: "must be an integer") }
        guard range.contains(Int(i)) else {
            throw ConfigError(key: key, message: "must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return Int(i)
    }

    /// A path from the file, resolved against the file's folder.
    func resolve(_ path: String) -> URL {
        path.hasPrefix("/") ? URL(fileURLWithPath: path) : baseDirectory.appendingPathComponent(path)
    }
}
