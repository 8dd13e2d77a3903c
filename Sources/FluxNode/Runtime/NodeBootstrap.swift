import FluxActors
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization

/// Builds a node from its configuration and runs it until SIGTERM/SIGINT or `POST /cluster/leave`:
/// then it stops accepting requests, flushes the journal and returns (exit 0).
enum NodeBootstrap {
    static func run(config: NodeConfig, logger: Logger, registry: PrometheusCollectorRegistry) async throws {
        let clock: @Sendable () -> Date = { Date() }
        // Membership and FluxWire (Runtime/ClusterRuntime.swift); a configuration error fails fast.
        let cluster = try ClusterRuntime(config: config, logger: logger)
        let store = try makeJournalStore(config.journal, relativeTo: config.baseDirectory)
        try await store.prepare()
        let journal = EventJournal(
            store: store, batchSize: config.journalBatch, flushInterval: .milliseconds(config.journalFlushMs),
            capacity: 100_000, logger: logger)
        await journal.start()

        // A single node founds its cluster: it takes every shard, bumping each epoch so that an
        // older writer of the same journal is fenced off.
        let map = ShardMap(shards: config.shards)
        var epochs: [Int: Int64] = [:]
        for shard in 0..<config.shards {
            epochs[shard] = try await store.acquireShard(shard, owner: config.nodeID)
        }
        let shardTable = ShardTable(map: map, epochs: epochs)
        let epoch: @Sendable (Int) -> Int64? = { shardTable.epoch($0) }

        let lenders = try LenderAccess.load(
            config: config, logger: logger,
            journal: ReconcilerJournal(journal: journal, shard: { map.shard(for: $0) }, epoch: epoch, now: clock),
            ownedShards: shardTable.owned)
        let rules = try await RulesBook.load(journal: journal, shards: map, epoch: epoch, now: clock) {
            try Self.initialRules(config: config, logger: logger)
        }
        let loans = LoanBook(journal: journal, shards: map, epoch: epoch, now: clock)
        let metrics = NodeMetrics()
        let switchboardRef = Mutex<Switchboard?>(nil)
        let services = ApplicationServices(
            journal: journal, gateway: lenders.gateway, loans: loans, policy: SagaPolicy(), shards: map,
            epoch: epoch, now: clock, logger: logger,
            onSettled: { id, status in
                metrics.settled(status)
                if let sb = switchboardRef.withLock({ $0 }) { Task { await sb.settled(id, status) } }
            }, reconciler: lenders.reconciler)
        let switchboard = Switchboard(services: services)
        switchboardRef.withLock { $0 = switchboard }
        let node = NodeRuntime(
            config: config, journal: JournalAccess(events: journal, store: store), switchboard: switchboard,
            rules: rules, lenders: lenders, loans: loans, metrics: metrics, shardTable: shardTable, now: clock)

        let resumed = try await switchboard.recover(shards: shardTable.owned)
        logger.info("recovered unfinished applications", metadata: ["count": "\(resumed)"])

        let leave = LeaveSignal()
        let publicApp = Application(
            router: PublicAPI.router(node: node, registry: registry),
            configuration: .init(address: .hostname(config.http.host, port: config.http.port), serverName: "flux"),
            onServerRunning: { channel in
                node.isServing = true
                logger.info(
                    "public API listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            },
            logger: logger)
        let adminApp = Application(
            router: AdminAPI.router(node: node, cluster: cluster, onLeave: { leave.fire() }),
            configuration: .init(
                address: .hostname(config.admin.host, port: config.admin.port), serverName: "flux-admin"),
            onServerRunning: { channel in
                logger.info(
                    "admin API listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            },
            logger: logger)
        try await cluster.start()
        let lifecycle = NodeLifecycle(journal: journal, store: store, node: node, cluster: cluster, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: lifecycle),
                    .init(service: adminApp),
                    .init(service: publicApp),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        leave.onFire { Task { await group.triggerGracefulShutdown() } }
        try await group.run()
        logger.info("node stopped")
    }

    static func initialRules(config: NodeConfig, logger: Logger) throws -> JSONValue {
        let url = config.resolve(config.rules)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            logger.warning("no rules file; starting with an empty ruleset", metadata: ["path": "\(url.path)"])
            return .object(["version": 1, "dials": .object([:]), "lenders": .array([])])
        }
        guard data.count <= 4 << 20, let json = try? JSONValue.parse(data) else {
            throw ConfigError(key: "rules", message: "\(url.path) is not a JSON ruleset")
        }
        return json
    }
}

/// Stops the journal last: once the HTTP servers have stopped accepting and finished, everything
/// buffered is flushed.
struct NodeLifecycle: Service {
    let journal: EventJournal
    let store: any JournalStore
    let node: NodeRuntime
    let cluster: ClusterRuntime
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        node.isServing = false
        // Leave the cluster (members see `left`, not a death) before the journal is flushed.
        await cluster.leave()
        logger.info("shutting down: flushing the journal")
        await journal.shutdown()
        await store.close()
        await cluster.stop()
    }
}

/// `POST /cluster/leave` → graceful shutdown, wired after the service group exists.
final class LeaveSignal: Sendable {
    private let state = Mutex<(fired: Bool, action: (@Sendable () -> Void)?)>((false, nil))

    func fire() {
        let action = state.withLock { s -> (@Sendable () -> Void)? in
            s.fired = true
            return s.action
        }
        action?()
    }

    func onFire(_ action: @escaping @Sendable () -> Void) {
        let firedAlready = state.withLock { s -> Bool in
            s.action = action
            return s.fired
        }
        if firedAlready { action() }
    }
}
