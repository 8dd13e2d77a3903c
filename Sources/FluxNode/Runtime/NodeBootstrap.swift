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

        // Shards are taken by `ShardOwner` (below) as placement gives them to this node; the
        // actors write with the epoch the journal gave for their shard.
        let map = ShardMap(shards: config.shards)
        let shardTable = ShardTable(map: map)
        let epoch: @Sendable (Int) -> Int64? = { shardTable.epoch($0) }

        let lenders = try LenderAccess.load(
            config: config, logger: logger,
            journal: ReconcilerJournal(journal: journal, shard: { map.shard(for: $0) }, epoch: epoch, now: clock),
            ownedShards: [])  // the reconciler's watches come back as ShardOwner takes shards
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
        let lenderConfig = LenderConfigBook(
            journal: journal, shards: map, epoch: epoch, now: clock, lenders: lenders, logger: logger)
        do { try await lenderConfig.refresh() } catch {
            logger.warning("cannot read published lender descriptors yet", metadata: ["error": "\(error)"])
        }
        let node = NodeRuntime(
            config: config, journal: JournalAccess(events: journal, store: store), switchboard: switchboard,
            rules: rules, lenders: lenders, lenderConfig: lenderConfig, loans: loans, metrics: metrics,
            shardTable: shardTable, cluster: cluster,
            now: clock)
        let owner = ShardOwner(
            cluster: cluster, table: shardTable, journal: journal, switchboard: switchboard, logger: logger,
            onAcquired: { shards in await lenders.recoverWatches(shards: shards) },
            onReleased: { shards in
                await lenders.reconciler.release(shards: shards)
                await loans.release(shards: Set(shards))
            })
        node.owner.withLock { $0 = owner }

        let leave = LeaveSignal()
        let publicResponder = PublicAPI.router(node: node, registry: registry).buildResponder()
        let forwarded = ForwardedRequestServer(responder: publicResponder, logger: logger)
        cluster.register(
            .init(
                forward: { request, _ in await forwarded.serve(request) },
                handOver: { shards, to in await owner.handOver(shards, to: to) },
                configChanged: { news in
                    switch news.kind {
                    case "rules": _ = try? await rules.refresh()
                    case "lenders": try? await lenderConfig.refresh()
                    default: break
                    }
                }))
        let publicApp = Application(
            responder: publicResponder,
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
        // A single node takes every shard before it serves (as before: recovery first); a
        // clustered one joins first and takes its share as placement gives it.
        if cluster.isClustered {
            Task { await owner.start(joinGrace: Self.joinGrace(config)) }
        } else {
            await owner.start(joinGrace: .zero)
        }
        let refresher = Task {
            // The pull half of configuration broadcast: a missed broadcast is caught up here.
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                _ = try? await rules.refresh()
                try? await lenderConfig.refresh()
            }
        }
        defer { refresher.cancel() }
        let lifecycle = NodeLifecycle(
            journal: journal, store: store, node: node, cluster: cluster, owner: owner, logger: logger)
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

    /// How long a starting node with seeds waits to hear from a member before it founds a
    /// cluster of its own: a few probe periods.
    static func joinGrace(_ config: NodeConfig) -> Duration {
        .milliseconds(max(1500, 3 * config.swim.probeIntervalMs))
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
    let owner: ShardOwner
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        node.isServing = false
        // Hand the shards over first (applications finish their lender calls, the journal is
        // flushed), then leave: the members that take them find everything in the journal.
        await owner.leave()
        await cluster.leave()
        await owner.stop()
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
