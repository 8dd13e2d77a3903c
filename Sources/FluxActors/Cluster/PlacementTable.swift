/// Which node owns which shard: rendezvous (highest-random-weight) hashing of each shard over the
/// cluster's members. Every node computes the same table from the same member set, and when a
/// member comes or goes only the shards it gains or loses change owner (about 1/N of them).
///
/// Weights use FNV-1a 64 (`ShardMap.fnv1a`) of `"<shard>/<node id>"` passed through the SplitMix64
/// finalizer, so they are the same on every node, every run and every platform.
public struct PlacementTable: Sendable, Equatable {
    public let shards: Int
    /// The members shards are spread over (alive and suspect ones), sorted, without repeats.
    public let members: [NodeID]
    /// Owner of each shard, indexed by shard; nil only when there are no members.
    public let owners: [NodeID?]

    public init(shards: Int, members: some Sequence<NodeID>) {
        precondition(shards > 0, "a cluster has at least one shard")
        self.shards = shards
        self.members = Array(Set(members)).sorted()
        self.owners = Self.owners(shards: shards, sortedMembers: self.members)
    }

    public func owner(of shard: Int) -> NodeID? {
        owners.indices.contains(shard) ? owners[shard] : nil
    }

    /// The shards `node` owns, ascending.
    public func shards(of node: NodeID) -> [Int] {
        owners.indices.filter { owners[$0] == node }
    }

    /// Shard count per member (members that own none included).
    public var shardCounts: [NodeID: Int] {
        var counts = Dictionary(uniqueKeysWithValues: members.map { ($0, 0) })
        for case let o? in owners { counts[o, default: 0] += 1 }
        return counts
    }

    /// Shards whose owner differs between this table and `new`, ascending by shard.
    public func moves(to new: PlacementTable) -> [ShardMove] {
        precondition(new.shards == shards, "the shard count is fixed for the life of a cluster")
        return (0..<shards).compactMap { s in
            owners[s] == new.owners[s] ? nil : ShardMove(shard: s, from: owners[s], to: new.owners[s])
        }
    }

    // MARK: - Static forms

    public static func owners(shards: Int, members: some Sequence<NodeID>) -> [NodeID?] {
        PlacementTable(shards: shards, members: members).owners
    }

    /// The shards that change owner when the member set goes from `old` to `new`.
    public static func moves(
        shards: Int, from old: some Sequence<NodeID>, to new: some Sequence<NodeID>
    ) -> [ShardMove] {
        PlacementTable(shards: shards, members: old).moves(to: PlacementTable(shards: shards, members: new))
    }

    /// The rendezvous weight of `node` for `shard`; the member with the highest weight owns it.
    public static func weight(shard: Int, node: NodeID) -> UInt64 {
        var z = ShardMap.fnv1a("\(shard)/\(node.rawValue)")
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private static func owners(shards: Int, sortedMembers: [NodeID]) -> [NodeID?] {
        (0..<shards).map { s in
            var best: NodeID?
            var bestWeight: UInt64 = 0
            for m in sortedMembers {
                let w = weight(shard: s, node: m)
                // Members are sorted, so an exact tie goes to the smaller id on every node.
                if best == nil || w > bestWeight {
                    best = m
                    bestWeight = w
                }
            }
            return best
        }
    }
}

/// One shard changing hands (`from` or `to` is nil only when the cluster was or became empty).
public struct ShardMove: Sendable, Hashable, CustomStringConvertible {
    public var shard: Int
    public var from: NodeID?
    public var to: NodeID?

    public init(shard: Int, from: NodeID?, to: NodeID?) {
        self.shard = shard
        self.from = from
        self.to = to
    }

    public var description: String {
        "shard \(shard): \(from?.rawValue ?? "-") → \(to?.rawValue ?? "-")"
    }
}
