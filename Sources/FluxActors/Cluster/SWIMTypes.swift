/// The unique, stable name of a cluster node (`node_id` in cluster.conf).
public struct NodeID: Hashable, Comparable, Sendable, Codable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(String.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }

    public var description: String { rawValue }
    public static func < (a: NodeID, b: NodeID) -> Bool { a.rawValue < b.rawValue }
}

/// What a node believes about a member. For one incarnation the order is
/// `alive < suspect < dead < left`: a later status wins over an earlier one, and any status with a
/// higher incarnation wins over every status with a lower one.
public enum SWIMStatus: String, Sendable, Codable, CaseIterable {
    /// Answers probes (directly or through others).
    case alive
    /// Missed a direct and an indirect probe; it has until its suspicion timeout to refute.
    case suspect
    /// Its suspicion timed out. It owns no shards; it must come back with a higher incarnation.
    case dead
    /// Left on purpose (`POST /cluster/leave`). It owns no shards and is no longer probed.
    case left

    var rank: Int {
        switch self {
        case .alive: 0
        case .suspect: 1
        case .dead: 2
        case .left: 3
        }
    }

    /// Alive and suspect members are in the cluster (they are probed and own shards).
    public var isInCluster: Bool {
        switch self {
        case .alive, .suspect: true
        case .dead, .left: false
        }
    }
}

/// One piece of membership news, piggybacked on every SWIM message.
public struct MemberUpdate: Sendable, Hashable, Codable {
    public var node: NodeID
    /// FluxWire address (`host:port`) other nodes reach it at.
    public var wire: String
    /// Public HTTP address (`host:port`) requests are forwarded to.
    public var http: String
    public var incarnation: UInt64
    public var status: SWIMStatus
    /// For `suspect`: the nodes that independently suspect it at this incarnation (Lifeguard's
    /// confirmations; at most `indirectProbes + 1` names). Empty for other statuses.
    public var suspectedBy: [NodeID]

    public init(
        node: NodeID, wire: String, http: String, incarnation: UInt64, status: SWIMStatus,
        suspectedBy: [NodeID] = []
    ) {
        self.node = node
        self.wire = wire
        self.http = http
        self.incarnation = incarnation
        self.status = status
        self.suspectedBy = suspectedBy
    }

    /// Whether this news replaces `other` (about the same node): a higher incarnation always does;
    /// at the same incarnation only a later status does.
    public func supersedes(_ other: MemberUpdate) -> Bool {
        if incarnation != other.incarnation { return incarnation > other.incarnation }
        return status.rank > other.status.rank
    }
}

/// The messages SWIM nodes exchange. Every message carries piggybacked membership news; the
/// sender's own record is always among them.
public enum SWIMMessage: Sendable, Hashable {
    /// "Are you there?" — answered with `ack` carrying the same sequence number.
    case ping(sequence: UInt64, updates: [MemberUpdate])
    /// "Please ping `target` for me" — answered with `ack` (target answered) or `nack`
    /// (target did not answer the helper in time), with the requester's sequence number.
    case pingReq(sequence: UInt64, target: NodeID, targetWire: String, updates: [MemberUpdate])
    /// `target` is alive: it answered a ping (directly, or a helper's ping for a `pingReq`).
    case ack(sequence: UInt64, target: NodeID, updates: [MemberUpdate])
    /// A helper could not reach `target` for a `pingReq` (Lifeguard: proves the helper is alive).
    case nack(sequence: UInt64, target: NodeID, updates: [MemberUpdate])

    public var sequence: UInt64 {
        switch self {
        case .ping(let s, _), .pingReq(let s, _, _, _), .ack(let s, _, _), .nack(let s, _, _): s
        }
    }

    public var updates: [MemberUpdate] {
        switch self {
        case .ping(_, let u), .pingReq(_, _, _, let u), .ack(_, _, let u), .nack(_, _, let u): u
        }
    }
}

/// A member as one node sees it (for `GET /cluster/members` and placement).
public struct SWIMMember: Sendable, Hashable {
    public var node: NodeID
    public var wire: String
    public var http: String
    public var incarnation: UInt64
    public var status: SWIMStatus
    /// When (on the local monotonic clock given to the state machine) it got this status.
    public var since: Duration

    public var update: MemberUpdate {
        MemberUpdate(node: node, wire: wire, http: http, incarnation: incarnation, status: status)
    }
}

/// Timers the shell runs for the state machine; when one fires the shell calls the matching input
/// (`pingTimedOut`, `indirectTimedOut`, `suspicionTimedOut`). Stale timers are harmless.
public enum SWIMTimer: Sendable, Hashable {
    /// No ack for the ping with this sequence number (own probe or one relayed for a `pingReq`).
    case pingTimeout(sequence: UInt64)
    /// No ack, direct or relayed, for the probe with this sequence number.
    case indirectTimeout(sequence: UInt64)
    /// The suspicion of this member may have run out.
    case suspicion(NodeID)
}

/// What the state machine asks its shell to do, or tells it happened.
public enum SWIMDirective: Sendable, Hashable {
    /// Send `message` to the node at FluxWire address `wire` (`node` is nil for a seed whose id is
    /// not known yet). Delivery may fail silently: SWIM copes with loss.
    case send(SWIMMessage, to: NodeID?, wire: String)
    /// Call the matching input after `after`.
    case schedule(SWIMTimer, after: Duration)
    /// A member appeared, changed status or addresses (`previous` is nil for a new member).
    /// Placement should be recomputed when `isInCluster` changes.
    case memberChanged(SWIMMember, previous: SWIMStatus?)
    /// A member became suspect; unless refuted it is declared dead after `timeout` (which
    /// shrinks as independent confirmations arrive; the latest value counts).
    case suspicionTimeout(NodeID, timeout: Duration)
    /// This node was suspected or declared dead and answered with a higher incarnation.
    case refuted(previous: SWIMStatus, incarnation: UInt64)
    /// A member was forgotten after being dead or left for `deadRetention`.
    case memberRemoved(NodeID)
}

/// SplitMix64: a small seeded generator, so a state machine (and a whole simulated cluster)
/// replays exactly from its seed.
public struct SWIMRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
