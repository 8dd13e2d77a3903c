import FluxActors
import FluxWire
import Foundation
import Logging
import Synchronization

/// This node's part in the cluster: the FluxWire server on `wire` and SWIM membership over it.
///
/// - With `cluster_secret`: binds the WireServer (every connection must prove the secret) and
///   joins through `seeds`.
/// - Without it: a single node, no wire server; membership lists only this node. Seeds without a
///   secret are a configuration error naming `cluster_secret`.
///
/// Besides SWIM, the wire carries forwarded public API requests (`WireForward`), shard
/// hand-over asks (`WireShardHandover`) and configuration news (`WireConfigPublish`); the node
/// registers what to do with them (`Handlers`) before `start()`.
final class ClusterRuntime: Sendable {
    struct Handlers: Sendable {
        var forward: @Sendable (WireForward, _ from: String) async -> WireForwardReply
        var handOver: @Sendable (_ shards: [Int], _ to: NodeID) async -> Bool
        var configChanged: @Sendable (WireConfigPublish) async -> Void
    }
    private let handlers = Mutex<Handlers?>(nil)
    /// Connections for forwarding, by member, without a hop into membership on every request; an
    /// entry is dropped when a request on it fails (the member died, or its peer was closed).
    private let forwardPeers = Mutex<[NodeID: WirePeer]>([:])

    let config: NodeConfig
    let membership: ClusterMembership
    private let secret: [UInt8]?
    private let server = Mutex<WireServer?>(nil)
    private let logger: Logger

    init(config: NodeConfig, logger: Logger) throws(ConfigError) {
        if !config.seeds.isEmpty, config.clusterSecret == nil {
            throw ConfigError(
                key: "cluster_secret",
                message: "is required when seeds are set: nodes prove it to each other on every FluxWire connection")
        }
        let settings: SWIMSettings
        do {
            settings = try SWIMSettings.fromConfig(
                probeIntervalMS: config.swim.probeIntervalMs, pingTimeoutMS: config.swim.pingTimeoutMs,
                indirectProbes: config.swim.indirectProbes, suspicionMult: config.swim.suspicionMult,
                suspicionMaxMult: config.swim.suspicionMaxMult)
        } catch {
            throw ConfigError(key: "swim.\(error.key)", message: error.message)
        }
        if config.clusterSecret != nil, ["0.0.0.0", "::", "*"].contains(config.wire.host) {
            throw ConfigError(
                key: "wire",
                message: "must be an address other nodes can reach (it is announced to them), not \(config.wire.host)")
        }
        self.config = config
        self.logger = logger
        self.secret = config.clusterSecret.map { Array($0.utf8) }
        self.membership = ClusterMembership(
            configuration: ClusterMembershipConfiguration(
                node: NodeID(config.nodeID), wire: config.wire.description, http: config.http.description,
                secret: secret, seeds: config.seeds.map(\.description), settings: settings),
            logger: logger)
    }

    /// Whether this node talks to others (a cluster secret is configured).
    var isClustered: Bool { secret != nil }

    /// Binds the wire server (when clustered) and starts membership.
    func start() async throws {
        if let secret {
            let membership = self.membership
            let bound = try await WireServer.bind(
                host: config.wire.host, port: config.wire.port, localNodeID: config.nodeID, secret: secret,
                logger: logger,
                peerHandler: { [weak self] request, peer in
                    if SWIMWireCodec.messageTypes.contains(request.type) {
                        await membership.receive(request, from: peer)
                        return nil
                    }
                    if membership.isPartitioned(from: NodeID(peer)) {
                        return .errorReply(code: "partitioned", message: "fault injection drops this peer's frames")
                    }
                    guard let h = self?.handlers.withLock({ $0 }) else {
                        return .errorReply(code: "starting", message: "this node is starting")
                    }
                    return await Self.handle(request, from: peer, handlers: h)
                })
            server.withLock { $0 = bound }
            logger.info("FluxWire listening", metadata: ["address": "\(bound.localAddress)"])
        }
        await membership.start()
    }

    /// Graceful leave: tell the members, then give them a moment (at most one probe interval,
    /// capped at 500 ms) in which this node still answers their pings as `left`.
    func leave() async {
        guard isClustered else { return }
        await membership.leave()
        let linger = min(membership.configuration.settings.probeInterval, .milliseconds(500))
        try? await Task.sleep(for: linger)
    }

    func stop() async {
        await membership.stop()
        let s = server.withLock { s -> WireServer? in
            defer { s = nil }
            return s
        }
        await s?.close()
    }

    func members() async -> [SWIMMember] { await membership.members() }

    func register(_ h: Handlers) { handlers.withLock { $0 = h } }

    /// Non-SWIM frames from an authenticated peer. A frame that does not decode gets an error
    /// reply (the connection stays: the frame itself was well-formed).
    static func handle(_ request: WireEnvelope, from peer: String, handlers h: Handlers) async -> WireEnvelope? {
        do throws(WireError) {
            switch request.type {
            case WireForward.type:
                return WireEnvelope(await h.forward(try request.decode(as: WireForward.self), peer))
            case WireShardHandover.type:
                let ask = try request.decode(as: WireShardHandover.self)
                let done = await h.handOver([Int(ask.shard)], NodeID(peer))
                return WireEnvelope(WireShardHandoverAck(shard: ask.shard, epoch: ask.epoch, accepted: done))
            case WireConfigPublish.type:
                await h.configChanged(try request.decode(as: WireConfigPublish.self))
                return nil
            default:
                return .errorReply(
                    code: "unsupported", message: "this node does not handle message type \(request.type)")
            }
        } catch {
            return .errorReply(code: "bad_message", message: error.reason)
        }
    }

    /// Asks `node` to give up `shards` (its applications finish their lender calls and flush).
    /// Bounded: whatever happens, the caller takes the shards afterwards and fences `node`.
    func askHandover(_ shards: [Int], from node: NodeID) async {
        guard let peer = await membership.peer(to: node) else { return }
        let me = config.nodeID
        await withTaskGroup(of: Void.self) { group in
            for s in shards {
                group.addTask {
                    _ = try? await peer.ask(
                        WireShardHandover(shard: UInt32(s), epoch: 0, fromNode: node.rawValue, toNode: me),
                        expecting: WireShardHandoverAck.self, timeout: .seconds(10))
                }
            }
        }
    }

    /// Tells every other member about a configuration change (one-way; a member that misses it
    /// catches up from the journal on its periodic check).
    func broadcast(_ news: WireConfigPublish) async {
        let others = await membership.members().filter { $0.status.isInCluster && $0.node.rawValue != config.nodeID }
        await withTaskGroup(of: Void.self) { group in
            for m in others {
                guard let peer = await membership.peer(to: m.node) else { continue }
                group.addTask { try? await peer.tell(news) }
            }
        }
    }

    /// Sends a public API request to the node that owns its entity.
    func forward(_ request: WireForward, to node: NodeID, timeout: Duration) async throws(WireError) -> WireForwardReply
    {
        guard let peer = await membership.peer(to: node) else {
            throw .peerUnavailable("\(node) is not a reachable member")
        }
        return try await peer.ask(request, expecting: WireForwardReply.self, timeout: timeout)
    }

    func placement() async -> PlacementTable { await membership.placement(shards: config.shards) }
}

/// The JSON of `GET /cluster/members` and `GET /cluster/shards` (CONTRACT §4).
enum ClusterAdmin {
    /// `[{"node_id","wire","http","status","incarnation","shards"}]`, sorted by node id; dead and
    /// left members (listed for an hour) own 0 shards.
    static func members(_ cluster: ClusterRuntime) async -> JSONValue {
        let members = await cluster.members()
        let counts = await cluster.placement().shardCounts
        return .array(
            members.map { m in
                .object([
                    "node_id": .string(m.node.rawValue), "wire": .string(m.wire), "http": .string(m.http),
                    "status": .string(m.status.rawValue), "incarnation": .int(Int64(clamping: m.incarnation)),
                    "shards": .int(Int64(m.status.isInCluster ? counts[m.node] ?? 0 : 0)),
                ])
            })
    }

    /// `[{"shard","owner","epoch"}]`: the owner by placement over the alive and suspect members;
    /// the epoch this node holds for a shard it holds, else the journal's shard table's.
    static func shards(_ cluster: ClusterRuntime, node: NodeRuntime) async throws -> JSONValue {
        let placement = await cluster.placement()
        let me = NodeID(node.config.nodeID)
        let held = node.shardTable.snapshot
        var journal: [Int: Int64] = [:]
        if (0..<placement.shards).contains(where: { placement.owner(of: $0) != me || held[$0] == nil }) {
            do {
                for o in try await node.journal.store.shardOwnerships() { journal[o.shard] = o.epoch }
            } catch {
                throw APIError.journalUnavailable("\(error)")
            }
        }
        return .array(
            (0..<placement.shards).map { s in
                let owner = placement.owner(of: s)
                let epoch = owner == me ? held[s] ?? journal[s] : journal[s]
                return .object([
                    "shard": .int(Int64(s)), "owner": owner.map { .string($0.rawValue) } ?? .null,
                    "epoch": epoch.map { .int($0) } ?? .null,
                ])
            })
    }
}
