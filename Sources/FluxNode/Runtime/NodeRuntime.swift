import FluxActors
import Foundation
import Logging
import Metrics
import Synchronization

/// Everything the HTTP layer reaches: built once at start-up by `NodeBootstrap`.
final class NodeRuntime: Sendable {
    let config: NodeConfig
    let journal: JournalAccess
    let switchboard: Switchboard
    let rules: RulesBook
    let lenders: LenderAccess
    let lenderConfig: LenderConfigBook
    let loans: LoanBook
    let metrics: NodeMetrics
    let shardTable: ShardTable
    let cluster: ClusterRuntime
    /// Set once the cluster layer exists (forwarding, shard ownership).
    let owner = Mutex<ShardOwner?>(nil)
    /// New checkouts in progress, bounded (`POST /v1/applications` beyond it: 503).
    let admission = AdmissionGate()
    let now: @Sendable () -> Date
    private let readiness = Mutex(false)
    let startedAt: Date

    init(
        config: NodeConfig, journal: JournalAccess, switchboard: Switchboard, rules: RulesBook, lenders: LenderAccess,
        lenderConfig: LenderConfigBook,
        loans: LoanBook, metrics: NodeMetrics, shardTable: ShardTable, cluster: ClusterRuntime,
        now: @escaping @Sendable () -> Date
    ) {
        self.cluster = cluster
        self.config = config
        self.journal = journal
        self.switchboard = switchboard
        self.rules = rules
        self.lenders = lenders
        self.lenderConfig = lenderConfig
        self.loans = loans
        self.metrics = metrics
        self.shardTable = shardTable
        self.now = now
        self.startedAt = now()
    }

    var isServing: Bool {
        get { readiness.withLock { $0 } }
        set { readiness.withLock { $0 = newValue } }
    }

    /// 200 once the node serves HTTP, reaches its journal and has founded (or joined) its cluster.
    func isReady() async -> Bool {
        guard isServing, owner.withLock({ $0?.hasFounded ?? false }) else { return false }
        return await journal.events.isAvailable
    }
}

/// The journal as the HTTP layer uses it.
struct JournalAccess: Sendable {
    let events: EventJournal
    let store: any JournalStore
}

/// The shards this node holds and the epoch it holds each at (what the actors write with).
/// Filled by `ShardOwner` as shards are taken and given up.
final class ShardTable: Sendable {
    let map: ShardMap
    private let epochs: Mutex<[Int: Int64]>

    init(map: ShardMap, epochs: [Int: Int64] = [:]) {
        self.map = map
        self.epochs = Mutex(epochs)
    }

    func epoch(_ shard: Int) -> Int64? { epochs.withLock { $0[shard] } }
    var owned: [Int] { epochs.withLock { $0.keys.sorted() } }
    var snapshot: [Int: Int64] { epochs.withLock { $0 } }
    var count: Int { epochs.withLock { $0.count } }

    func hold(_ shard: Int, epoch: Int64) { epochs.withLock { $0[shard] = epoch } }
    func drop(_ shard: Int) { epochs.withLock { _ = $0.removeValue(forKey: shard) } }
}

/// Application counters on `/metrics`.
struct NodeMetrics: Sendable {
    let created = Counter(label: "flux_applications_created_total")
    let replayed = Counter(label: "flux_applications_idempotent_replays_total")

    let turnedAway = Counter(label: "flux_applications_turned_away_total")

    func applicationCreated(created: Bool) {
        if created { self.created.increment() } else { replayed.increment() }
    }

    /// A checkout answered 503 at the admission limit.
    func checkoutTurnedAway() { turnedAway.increment() }

    func settled(_ status: ApplicationStatus) {
        Counter(label: "flux_applications_settled_total", dimensions: [("status", status.rawValue)]).increment()
    }
}
