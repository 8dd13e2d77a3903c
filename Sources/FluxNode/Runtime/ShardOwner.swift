import FluxActors
import FluxWire
import Foundation
import Logging
import Metrics
import Synchronization

/// The shell around `ShardPlanner`: takes the shards placement gives this node (journal epoch
/// first, then the in-flight applications of the shard are reloaded and resumed), gives up the
/// ones it loses (actors finish their lender call and stop, the journal is flushed), and answers
/// where a request for a shard is served. Docs/cluster.md, "Shards".
actor ShardOwner {
    enum Route: Sendable, Equatable {
        case local
        case forward(NodeID)
        case unavailable(String)
    }

    nonisolated let me: NodeID
    private var planner: ShardPlanner
    private let table: ShardTable
    private let journal: EventJournal
    private let switchboard: Switchboard
    private let cluster: ClusterRuntime
    private let logger: Logger
    /// Called with the shards just taken, after their epochs are held (applications are resumed
    /// by the owner itself; this is for the other entity kinds, e.g. the lender reconciler).
    private let onAcquired: @Sendable ([Int]) async -> Void
    /// Called with the shards just given up (after their applications stopped).
    private let onReleased: @Sendable ([Int]) async -> Void
    private var planning = false
    private var planAgain = false
    private var leaving = false
    private var watchers: [Task<Void, Never>] = []
    /// Placement as last computed (for routing), shared without a hop.
    private nonisolated let owners: Mutex<[NodeID?]>
    private nonisolated let handed = Mutex<[Int: NodeID]>([:])
    private nonisolated let founded = Mutex(false)

    private let acquisitions = Counter(label: "flux_shards_acquired_total")
    private let releases = Counter(label: "flux_shards_released_total")
    private let heldGauge = Gauge(label: "flux_shards_held")

    init(
        cluster: ClusterRuntime, table: ShardTable, journal: EventJournal, switchboard: Switchboard, logger: Logger,
        onAcquired: @escaping @Sendable ([Int]) async -> Void = { _ in },
        onReleased: @escaping @Sendable ([Int]) async -> Void = { _ in }
    ) {
        self.onReleased = onReleased
        self.me = NodeID(cluster.config.nodeID)
        self.planner = ShardPlanner(me: NodeID(cluster.config.nodeID), shards: table.map.shards)
        self.table = table
        self.journal = journal
        self.switchboard = switchboard
        self.cluster = cluster
        self.logger = logger
        self.onAcquired = onAcquired
        self.owners = Mutex(Array(repeating: nil, count: table.map.shards))
    }

    /// True once this node has joined (or founded) a cluster and taken its first shards.
    nonisolated var hasFounded: Bool { founded.withLock { $0 } }

    // MARK: - Lifecycle

    /// Takes this node's shards and follows membership from then on. A clustered node with seeds
    /// first waits (at most `joinGrace`) to hear from another member, so that a restarting node
    /// does not found a cluster of its own and take every shard for a moment.
    func start(joinGrace: Duration) async {
        if cluster.isClustered, !cluster.config.seeds.isEmpty {
            let deadline = ContinuousClock.now + joinGrace
            while ContinuousClock.now < deadline {
                let others = await cluster.members().filter { $0.node != me && $0.status.isInCluster }
                if !others.isEmpty { break }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        await replan()
        founded.withLock { $0 = true }
        guard cluster.isClustered else { return }
        let changes = await cluster.membership.changes()
        watchers.append(
            Task { [weak self] in
                for await _ in changes {
                    guard let self else { return }
                    await self.replan()
                }
            })
        // Retries failed acquisitions and expired hand-over marks even when membership is quiet.
        watchers.append(
            Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    guard let self else { return }
                    await self.checkFencing()
                    await self.replan()
                }
            })
    }

    /// Graceful leave: every shard is given up (actors finish their lender call, the journal is
    /// flushed) before the node tells the cluster it left, so the next owners find everything in
    /// the journal and nothing in flight here.
    func leave() async {
        leaving = true
        for w in watchers { w.cancel() }
        watchers.removeAll()
        while planning { try? await Task.sleep(for: .milliseconds(10)) }
        let actions = planner.releaseAll()
        await release(actions.compactMap { if case .release(let s) = $0 { s } else { nil } })
        owners.withLock { $0 = Array(repeating: nil, count: $0.count) }
    }

    func stop() {
        for w in watchers { w.cancel() }
        watchers.removeAll()
    }

    // MARK: - Planning

    func replan() async {
        guard !leaving else { return }
        if planning {
            planAgain = true
            return
        }
        planning = true
        defer { planning = false }
        repeat {
            planAgain = false
            let members = await cluster.members()
            let placement = ShardPlanner.owners(shards: planner.shards, members: members)
            owners.withLock { $0 = placement }
            let actions = planner.plan(members: members)
            handed.withLock { $0 = planner.handedTo }
            let gone = actions.compactMap { if case .release(let s) = $0 { s } else { nil } }
            let taken = actions.compactMap { if case .acquire(let s) = $0 { s } else { nil } }
            if !gone.isEmpty { await release(gone) }
            if !taken.isEmpty { await acquire(taken, members: members) }
        } while planAgain && !leaving
    }

    private func release(_ shards: [Int]) async {
        guard !shards.isEmpty else { return }
        let started = ContinuousClock.now
        for s in shards { table.drop(s) }
        await switchboard.release(shards: Set(shards))
        await onReleased(shards)
        do { try await journal.flush() } catch {
            // Whatever did not reach the journal is fenced by the next owner's epoch.
            logger.warning("journal flush failed while giving up shards", metadata: ["error": "\(error)"])
        }
        for s in shards { planner.released(shard: s) }
        releases.increment(by: shards.count)
        heldGauge.record(table.count)
        logger.info(
            "gave up shards",
            metadata: ["count": "\(shards.count)", "ms": "\((ContinuousClock.now - started).milliseconds)"])
    }

    private func acquire(_ shards: [Int], members: [SWIMMember]) async {
        let started = ContinuousClock.now
        // Who held them last: a member still in the cluster is asked to hand them over first, so
        // its applications finish their lender calls and flush (a dead one is fenced by the epoch).
        var recorded: [Int: String] = [:]
        if cluster.isClustered {
            do {
                for o in try await journal.shardOwnerships() where o.owner != me.rawValue {
                    recorded[o.shard] = o.owner
                }
            } catch {
                logger.warning("cannot read the shard table", metadata: ["error": "\(error)"])
            }
        }
        let inCluster = Set(members.filter { $0.status.isInCluster && $0.node != me }.map(\.node))
        var byPrevious: [NodeID: [Int]] = [:]
        for s in shards {
            if let prev = recorded[s].map({ NodeID($0) }), inCluster.contains(prev) {
                byPrevious[prev, default: []].append(s)
            }
        }
        if !byPrevious.isEmpty {
            await withTaskGroup(of: Void.self) { group in
                for (prev, list) in byPrevious {
                    group.addTask { await self.cluster.askHandover(list, from: prev) }
                }
            }
        }
        var taken: [Int] = []
        for s in shards {
            do {
                let epoch = try await journal.acquireShard(s, owner: me.rawValue)
                table.hold(s, epoch: epoch)
                planner.acquired(shard: s, epoch: epoch)
                taken.append(s)
            } catch {
                planner.acquireFailed(shard: s)
                logger.warning("cannot take shard", metadata: ["shard": "\(s)", "error": "\(error)"])
            }
        }
        acquisitions.increment(by: taken.count)
        heldGauge.record(table.count)
        guard !taken.isEmpty else { return }
        let resumed: Int
        do {
            resumed = try await switchboard.recover(shards: taken)
        } catch {
            resumed = 0
            logger.error("cannot resume the applications of taken shards", metadata: ["error": "\(error)"])
        }
        await onAcquired(taken)
        logger.info(
            "took shards",
            metadata: [
                "count": "\(taken.count)", "resumed": "\(resumed)",
                "handed_over_by": "\(byPrevious.keys.map(\.rawValue).sorted().joined(separator: ","))",
                "ms": "\((ContinuousClock.now - started).milliseconds)",
            ])
    }

    /// A shard whose journal epoch moved past ours was taken by another node (it saw this one
    /// dead, or a partition): this node stops acting for it at once. Its actors would be refused
    /// at their next append anyway; the next plan takes the shard again if it is still ours.
    private func checkFencing() async {
        guard !leaving, !planning, cluster.isClustered else { return }
        let held = table.snapshot
        guard !held.isEmpty, let rows = try? await journal.shardOwnerships() else { return }
        let lost = rows.filter { o in held[o.shard].map { o.epoch > $0 || o.owner != me.rawValue } ?? false }.map(
            \.shard)
        guard !lost.isEmpty, !planning, !leaving else { return }
        planning = true
        defer { planning = false }
        for s in lost { table.drop(s) }
        await switchboard.release(shards: Set(lost))
        await onReleased(lost)
        for s in lost { planner.lost(shard: s) }
        heldGauge.record(table.count)
        logger.warning(
            "shards taken by another node (newer epoch in the journal)", metadata: ["count": "\(lost.count)"])
    }

    /// Another member asks for `shards` (they are its in its view).
    func handOver(_ shards: [Int], to node: NodeID) async -> Bool {
        let members = await cluster.members()
        var gone: [Int] = []
        for s in shards {
            if case .release(let shard)? = planner.handOverRequested(shard: s, by: node, members: members) {
                gone.append(shard)
            }
        }
        handed.withLock { $0 = planner.handedTo }
        await release(gone)
        // Shards already on their way out finish first.
        let deadline = ContinuousClock.now + .seconds(10)
        while shards.contains(where: { planner.states[$0] == .releasing }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return shards.allSatisfy { planner.states[$0] == nil }
    }

    // MARK: - Routing

    /// Where a request for `shard` is served. A shard held here is served here; otherwise the
    /// request goes to the owner in this node's view, never back to a node it came through, and
    /// after `Forwarding.maxHops` hops it is not passed on again. While a shard is moving the answer waits (at most
    /// `wait`) for the move to finish.
    nonisolated func route(
        _ shard: Int, forwarded: Bool, avoiding: Set<String> = [], wait: Duration = .seconds(5)
    ) async -> Route {
        let deadline = ContinuousClock.now + wait
        while true {
            if table.epoch(shard) != nil { return .local }
            if !forwarded {
                if let to = handed.withLock({ $0[shard] }), !avoiding.contains(to.rawValue) { return .forward(to) }
                if let owner = owners.withLock({ $0.indices.contains(shard) ? $0[shard] : nil }), owner != me,
                    !avoiding.contains(owner.rawValue)
                {
                    return .forward(owner)
                }
            }
            if ContinuousClock.now >= deadline {
                return .unavailable("shard \(shard) is moving between nodes or has no owner with a quorum; retry")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}
