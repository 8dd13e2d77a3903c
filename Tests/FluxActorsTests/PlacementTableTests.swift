import Testing

@testable import FluxActors

@Suite struct PlacementTableTests {
    static func nodes(_ n: Int) -> [NodeID] { (1...n).map { NodeID("node-\($0)") } }

    @Test func everyShardHasOneOwnerAmongTheMembers() {
        let t = PlacementTable(shards: 256, members: Self.nodes(5))
        #expect(t.owners.count == 256)
        #expect(t.owners.allSatisfy { $0 != nil && Self.nodes(5).contains($0!) })
        #expect((0..<256).allSatisfy { s in t.shards(of: t.owner(of: s)!).contains(s) })
        #expect(t.owner(of: 256) == nil && t.owner(of: -1) == nil)
        #expect(t.shardCounts.values.reduce(0, +) == 256)
    }

    @Test func deterministicAndIndependentOfMemberOrder() {
        let a = PlacementTable(shards: 256, members: Self.nodes(7))
        let b = PlacementTable(shards: 256, members: Self.nodes(7).reversed() + [NodeID("node-3")])
        #expect(a == b)
        // Pinned values: the weights must never depend on the process (unlike Swift's Hasher),
        // or two nodes would disagree about owners.
        #expect(ShardMap.fnv1a("0/node-1") == 0xa360_d217_cbc7_a406)
        let pinned = (0..<8).map { a.owner(of: $0)!.rawValue }
        #expect(pinned == Self.pinnedOwners, "\(pinned)")
    }

    /// Computed by an independent implementation (Python) of the same weight function.
    static let pinnedOwners = ["node-6", "node-7", "node-1", "node-6", "node-3", "node-5", "node-6", "node-6"]

    @Test func spreadsShardsEvenly() {
        let t = PlacementTable(shards: 256, members: Self.nodes(4))
        for (_, count) in t.shardCounts {
            #expect((40...90).contains(count), "\(t.shardCounts)")
        }
    }

    @Test func aJoiningMemberTakesOnlyTheShardsItGains() {
        let old = Self.nodes(5)
        let new = old + [NodeID("node-6")]
        let moves = PlacementTable.moves(shards: 256, from: old, to: new)
        #expect(moves.allSatisfy { $0.to == "node-6" && $0.from != nil })
        // About 1/6 of 256 ≈ 43.
        #expect((25...65).contains(moves.count), "\(moves.count)")
        #expect(moves.count == PlacementTable(shards: 256, members: new).shards(of: "node-6").count)
    }

    @Test func aLeavingMemberGivesAwayOnlyItsShards() {
        let old = Self.nodes(6)
        let before = PlacementTable(shards: 256, members: old)
        let after = PlacementTable(shards: 256, members: old.filter { $0 != "node-2" })
        let moves = before.moves(to: after)
        #expect(moves.allSatisfy { $0.from == "node-2" && $0.to != nil && $0.to != "node-2" })
        #expect(moves.map(\.shard) == before.shards(of: "node-2"))
        #expect(after.shards(of: "node-2").isEmpty)
    }

    @Test func noMembersNoOwners() {
        let t = PlacementTable(shards: 8, members: [])
        #expect(t.owners == Array(repeating: nil, count: 8))
        let moves = PlacementTable.moves(shards: 8, from: [], to: ["only"])
        #expect(moves.count == 8 && moves.allSatisfy { $0.from == nil && $0.to == "only" })
        #expect(PlacementTable.owners(shards: 8, members: ["only"]).allSatisfy { $0 == "only" })
    }
}
