import Testing

@testable import FluxActors

@Suite("ShardPlanner: which shards a node takes and gives up")
struct ShardPlannerTests {
    static func member(_ id: String, _ status: SWIMStatus = .alive) -> SWIMMember {
        SWIMMember(
            node: NodeID(id), wire: "127.0.0.1:1", http: "127.0.0.1:2", incarnation: 1, status: status, since: .zero)
    }

    static func acquired(_ actions: [ShardPlanner.Action]) -> [Int] {
        actions.compactMap { if case .acquire(let s) = $0 { s } else { nil } }
    }

    static func released(_ actions: [ShardPlanner.Action]) -> [Int] {
        actions.compactMap { if case .release(let s) = $0 { s } else { nil } }
    }

    /// Completes every action as the shell would.
    static func complete(_ planner: inout ShardPlanner, _ actions: [ShardPlanner.Action], epoch: Int64 = 1) {
        for a in actions {
            switch a {
            case .acquire(let s): planner.acquired(shard: s, epoch: epoch)
            case .release(let s): planner.released(shard: s)
            }
        }
    }

    @Test func aSingleNodeTakesEveryShard() {
        var p = ShardPlanner(me: "n1", shards: 16)
        let actions = p.plan(members: [Self.member("n1")])
        #expect(Self.acquired(actions) == Array(0..<16))
        #expect(p.epoch(3) == nil, "not acting before the journal gave the epoch")
        Self.complete(&p, actions, epoch: 7)
        #expect(p.epoch(3) == 7)
        #expect(p.plan(members: [Self.member("n1")]).isEmpty, "nothing more to do")
    }

    @Test func aJoiningMemberTakesOnlyItsShareAndTheOwnersAgree() {
        let members = [Self.member("n1"), Self.member("n2"), Self.member("n3")]
        var n1 = ShardPlanner(me: "n1", shards: 64)
        Self.complete(&n1, n1.plan(members: [Self.member("n1")]))
        let moves = n1.plan(members: members)
        #expect(Self.acquired(moves).isEmpty)
        let gone = Self.released(moves)
        let placement = PlacementTable(shards: 64, members: members.map(\.node))
        #expect(gone == (0..<64).filter { placement.owner(of: $0) != "n1" })
        #expect(gone.count > 20 && gone.count < 64)
        var n2 = ShardPlanner(me: "n2", shards: 64)
        #expect(Self.acquired(n2.plan(members: members)) == placement.shards(of: "n2"))
    }

    @Test func aDeadMembersShardsGoToTheSurvivorsOnly() {
        let all = [Self.member("n1"), Self.member("n2"), Self.member("n3")]
        var n1 = ShardPlanner(me: "n1", shards: 64)
        Self.complete(&n1, n1.plan(members: all))
        let before = Set(n1.states.keys)
        let actions = n1.plan(members: [Self.member("n1"), Self.member("n2"), Self.member("n3", .dead)])
        #expect(Self.released(actions).isEmpty, "a survivor keeps what it had")
        let after = PlacementTable(shards: 64, members: ["n1", "n2"])
        let old = PlacementTable(shards: 64, members: ["n1", "n2", "n3"])
        #expect(Set(Self.acquired(actions)) == Set(old.shards(of: "n3")).intersection(after.shards(of: "n1")))
        #expect(before.isDisjoint(with: Self.acquired(actions)))
    }

    @Test func aSuspectKeepsItsShards() {
        var n1 = ShardPlanner(me: "n1", shards: 32)
        Self.complete(&n1, n1.plan(members: [Self.member("n1"), Self.member("n2")]))
        #expect(n1.plan(members: [Self.member("n1"), Self.member("n2", .suspect)]).isEmpty)
    }

    @Test func theMinorityOfAPartitionGivesUpEverythingAndTakesNothing() {
        var n1 = ShardPlanner(me: "n1", shards: 32)
        Self.complete(&n1, n1.plan(members: [Self.member("n1"), Self.member("n2"), Self.member("n3")]))
        let held = n1.states.keys.sorted()
        #expect(!held.isEmpty)
        // n1 is cut off: it sees n2 and n3 dead. 1 of 3 is no quorum.
        let cut = [Self.member("n1"), Self.member("n2", .dead), Self.member("n3", .dead)]
        #expect(!ShardPlanner.hasQuorum(cut))
        let actions = n1.plan(members: cut)
        #expect(Self.acquired(actions).isEmpty)
        #expect(Self.released(actions) == held)
        Self.complete(&n1, actions)
        #expect(n1.states.isEmpty)
        // The partition heals: n1 takes its share again.
        let healed = n1.plan(members: [Self.member("n1"), Self.member("n2"), Self.member("n3")])
        #expect(Self.acquired(healed) == held)
    }

    @Test func whileOthersAreOnlySuspectTheMinorityTakesNothing() {
        var n1 = ShardPlanner(me: "n1", shards: 32)
        Self.complete(&n1, n1.plan(members: [Self.member("n1"), Self.member("n2"), Self.member("n3")]))
        let held = n1.states.keys.sorted()
        // Cut off: n2 is already dead, n3 only suspect. n1 keeps what it has but takes none of n2's.
        let actions = n1.plan(members: [Self.member("n1"), Self.member("n2", .dead), Self.member("n3", .suspect)])
        #expect(actions.isEmpty)
        #expect(n1.states.keys.sorted() == held)
    }

    @Test func aShardLostToANewerEpochIsTakenAgainIfStillOurs() {
        var n1 = ShardPlanner(me: "n1", shards: 4)
        Self.complete(&n1, n1.plan(members: [Self.member("n1")]), epoch: 3)
        n1.lost(shard: 2)
        #expect(n1.epoch(2) == nil)
        #expect(n1.plan(members: [Self.member("n1")]) == [.acquire(shard: 2)])
    }

    @Test func theMajorityKeepsAQuorumAndLeftMembersDoNotCount() {
        #expect(ShardPlanner.hasQuorum([Self.member("n1"), Self.member("n2"), Self.member("n3", .dead)]))
        #expect(!ShardPlanner.hasQuorum([Self.member("n1"), Self.member("n2", .dead)]))
        #expect(ShardPlanner.hasQuorum([Self.member("n1"), Self.member("n2", .left), Self.member("n3", .left)]))
    }

    @Test func aShardHandedOverOnRequestIsNotTakenBackWhileTheTakerLives() {
        var n1 = ShardPlanner(me: "n1", shards: 8)
        Self.complete(&n1, n1.plan(members: [Self.member("n1")]))
        // n2 joined and asks for a shard before n1's own view agrees that n2 owns it... n1 knows n2.
        let members = [Self.member("n1"), Self.member("n2"), Self.member("n3")]
        #expect(n1.handOverRequested(shard: 3, by: "n2", members: members) == .release(shard: 3))
        n1.released(shard: 3)
        // Whatever placement says, shard 3 stays with n2 while n2 is in the cluster.
        #expect(!Self.acquired(n1.plan(members: members)).contains(3))
        // n2 dies: shard 3 goes back to placement over n1 and n3 (a quorum of 2 of 3).
        let after = [Self.member("n1"), Self.member("n2", .dead), Self.member("n3")]
        let owner = PlacementTable(shards: 8, members: ["n1", "n3"]).owner(of: 3)
        #expect(Self.acquired(n1.plan(members: after)).contains(3) == (owner == "n1"))
        #expect(!n1.isHandedOver(3))
    }

    @Test func anUnknownRequesterGetsNothing() {
        var n1 = ShardPlanner(me: "n1", shards: 8)
        Self.complete(&n1, n1.plan(members: [Self.member("n1")]))
        #expect(n1.handOverRequested(shard: 3, by: "n9", members: [Self.member("n1")]) == nil)
        #expect(n1.epoch(3) != nil)
        #expect(n1.handOverRequested(shard: 99, by: "n9", members: [Self.member("n1"), Self.member("n9")]) == nil)
    }

    @Test func inFlightShardsAreLeftAloneUntilTheyComplete() {
        var n1 = ShardPlanner(me: "n1", shards: 4)
        let first = n1.plan(members: [Self.member("n1")])
        #expect(first.count == 4)
        #expect(n1.plan(members: [Self.member("n1")]).isEmpty, "acquisitions in flight are not started twice")
        n1.acquireFailed(shard: 2)
        #expect(n1.plan(members: [Self.member("n1")]) == [.acquire(shard: 2)], "a failed acquisition is retried")
    }

    @Test func releaseAllGivesUpWhatIsHeld() {
        var n1 = ShardPlanner(me: "n1", shards: 4)
        let actions = n1.plan(members: [Self.member("n1")])
        n1.acquired(shard: 0, epoch: 1)
        n1.acquired(shard: 1, epoch: 1)
        _ = actions
        #expect(n1.releaseAll() == [.release(shard: 0), .release(shard: 1)])
    }
}
