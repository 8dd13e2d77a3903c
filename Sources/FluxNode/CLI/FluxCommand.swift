import ArgumentParser
import FluxActors
import Foundation
import Logging
import Metrics
import Prometheus

@main
struct FluxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flux-node",
        abstract: "Flux, the lending switchboard: one cluster node and its tools.",
        subcommands: [
            RunCommand.self, SimulateLendersCommand.self, LoadGenCommand.self, DemoCommand.self, MembersCommand.self,
            BenchCommand.self, LendersCommand.self,
        ])

    /// Every subcommand (the node, the simulator, the load generator) runs with the server malloc
    /// settings of `MemoryTuning`.
    static func main() async {
        MemoryTuning.apply()
        await main(nil)
    }
}

enum Logs {
    /// Logging to stderr at `LOG_LEVEL` (default info).
    static func bootstrap(label: String) -> Logger {
        let level = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run one cluster node.")

    @Option(help: "Path of the TOML configuration (cluster.conf).") var config: String?
    @Option(name: .customLong("node-id"), help: "Overrides node_id.") var nodeID: String?
    @Option(help: "Overrides http (HOST:PORT).") var http: String?
    @Option(help: "Overrides admin (HOST:PORT).") var admin: String?
    @Option(help: "Overrides wire (HOST:PORT).") var wire: String?

    func run() async throws {
        var cfg: NodeConfig
        do {
            if let config {
                cfg = try NodeConfig.load(path: config)
            } else {
                cfg = try NodeConfig.parse(
                    toml: "", baseDirectory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
            }
            if let nodeID { cfg.nodeID = nodeID }
            for (key, value, path) in [
                ("http", http, \NodeConfig.http), ("admin", admin, \.admin), ("wire", wire, \.wire),
            ] {
                guard let value else { continue }
                guard let hp = HostPort(value) else {
                    throw ConfigError(key: "--\(key)", message: "must be HOST:PORT")
                }
                cfg[keyPath: path] = hp
            }
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("flux-node: configuration error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let logger = Logs.bootstrap(label: "flux.\(cfg.nodeID)")
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        do {
            try await NodeBootstrap.run(config: cfg, logger: logger, registry: registry)
        } catch let error as ConfigError {
            logger.critical("configuration error: \(error)")
            throw ExitCode(2)
        }
    }
}

struct MembersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members", abstract: "Print cluster membership from a node's admin port.")

    @Option(help: "Admin address HOST:PORT.") var admin: String = "127.0.0.1:8081"
    @Option(help: "Admin token (or FLUX_ADMIN_TOKEN).") var token: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let token = token ?? ProcessInfo.processInfo.environment["FLUX_ADMIN_TOKEN"]
        let (status, body) = try await SimpleHTTP.get("http://\(admin)/cluster/members", bearer: token)
        guard status == 200, let members = try? JSONValue.parse(body), case .array(let list) = members else {
            FileHandle.standardError.write(Data("flux-node: admin API answered \(status)\n".utf8))
            throw ExitCode(1)
        }
        if json {
            print(String(decoding: body, as: UTF8.self))
            return
        }
        let header = ["NODE", "STATUS", "INCARNATION", "SHARDS", "WIRE", "HTTP"]
        let rows = list.map { m in
            [
                m["node_id"]?.stringValue ?? "?", m["status"]?.stringValue ?? "?",
                m["incarnation"]?.intValue.map(String.init) ?? "?", m["shards"]?.intValue.map(String.init) ?? "?",
                m["wire"]?.stringValue ?? "?", m["http"]?.stringValue ?? "?",
            ]
        }
        print(TextTable.render(header: header, rows: rows))
    }
}

enum TextTable {
    static func render(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(
                separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}
