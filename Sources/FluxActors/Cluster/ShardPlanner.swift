/// Which shards this node must take or give up, decided from membership alone (pure: the node's
/// `ShardOwner` shell carries the decisions to the journal and the actors).
///
/// - Placement is the rendezvous hash of each shard over the alive and suspect members.
/// - A node acts only with a quorum of the members it knows that have not left (alive + suspect +
///   dead): it keeps its shards while more than half are alive or suspect, and takes new ones only
///   while more than half are alive (a suspect may be on the other side of a partition). The
///   minority side of a partition sees the others suspect, then dead: it takes nothing, then gives
///   up everything, so it never fights the majority over epochs; the majority takes the
///   minority's shards once it sees them dead.
/// - A shard this node handed to a member at that member's request is not taken back while that
///   member is alive or suspect (views converge a little apart; this prevents ping-pong).
public struct ShardPlanner: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case acquiring
        case held(epoch: Int64)
        case releasing
    }

    public enum Action: Sendable, Equatable {
        case acquire(shard: Int)
        case release(shard: Int)
    }

    public let me: NodeID
    public let shards: Int
    /// The shards this node holds or is moving; absent: not ours.
    public private(set) var states: [Int: State] = [:]
    /// Shards handed to another node at its request.
    public private(set) var handedTo: [Int: NodeID] = [:]

    public init(me: NodeID, shards: Int) {
        precondition(shards > 0)
        self.me = me
        self.shards = shards
    }

    /// Strict majority of the known, not-left members are alive or suspect (enough to keep shards).
    public static func hasQuorum(_ members: [SWIMMember]) -> Bool {
        let known = members.filter { $0.status != .left }
        let up = known.filter { $0.status.isInCluster }.count
        return up * 2 > known.count
    }

    /// Strict majority of the known, not-left members are alive (enough to take shards).
    public static func hasAliveQuorum(_ members: [SWIMMember]) -> Bool {
        let known = members.filter { $0.status != .left }
        return known.filter { $0.status == .alive }.count * 2 > known.count
    }

    /// The owners this node would act on (nobody without a quorum).
    public static func owners(shards: Int, members: [SWIMMember]) -> [NodeID?] {
        guard hasQuorum(members) else { return Array(repeating: nil, count: shards) }
        return PlacementTable.owners(shards: shards, members: members.filter { $0.status.isInCluster }.map(\.node))
    }

    /// What to start now. Shards in flight (acquiring, releasing) are left alone; the next plan
    /// after they complete looks at them again.
    public mutating func plan(members: [SWIMMember]) -> [Action] {
        let owners = Self.owners(shards: shards, members: members)
        let mayTake = Self.hasAliveQuorum(members)
        let inCluster = Set(members.filter { $0.status.isInCluster }.map(\.node))
        handedTo = handedTo.filter { inCluster.contains($0.value) && owners[$0.key] == me }
        var actions: [Action] = []
        for shard in 0..<shards {
            let mine = owners[shard] == me && handedTo[shard] == nil
            switch (states[shard], mine) {
            case (nil, true) where mayTake:
                states[shard] = .acquiring
                actions.append(.acquire(shard: shard))
            case (.held, false):
                states[shard] = .releasing
                actions.append(.release(shard: shard))
            default:
                break
            }
        }
        return actions
    }

    /// Everything held is to be given up (graceful leave, shutdown).
    public mutating func releaseAll() -> [Action] {
        var actions: [Action] = []
        for (shard, state) in states.sorted(by: { $0.key < $1.key }) where state != .releasing {
            if case .held = state {
                states[shard] = .releasing
                actions.append(.release(shard: shard))
            }
        }
        return actions
    }

    /// A member asks for `shard` (it is the owner in its view). Returns whether this node gives
    /// it: yes unless the member is unknown here or this node is still taking the shard.
    public mutating func handOverRequested(shard: Int, by node: NodeID, members: [SWIMMember]) -> Action? {
        guard (0..<shards).contains(shard), node != me,
            members.contains(where: { $0.node == node && $0.status.isInCluster })
        else { return nil }
        handedTo[shard] = node
        if case .held = states[shard] {
            states[shard] = .releasing
            return .release(shard: shard)
        }
        return nil
    }

    public mutating func acquired(shard: Int, epoch: Int64) {
        if states[shard] == .acquiring { states[shard] = .held(epoch: epoch) }
    }

    public mutating func acquireFailed(shard: Int) {
        if states[shard] == .acquiring { states[shard] = nil }
    }

    /// The journal shows that another node took `shard` (a newer epoch): this node no longer
    /// holds it; the next plan takes it again (a newer epoch still) if it is still ours.
    public mutating func lost(shard: Int) {
        if case .held = states[shard] { states[shard] = nil }
    }

    public mutating func released(shard: Int) {
        if states[shard] == .releasing { states[shard] = nil }
    }

    public func epoch(_ shard: Int) -> Int64? {
        if case .held(let epoch) = states[shard] { return epoch }
        return nil
    }

    public func isHandedOver(_ shard: Int) -> Bool { handedTo[shard] != nil }
}
