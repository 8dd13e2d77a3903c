import FluxWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// How a node takes part in membership.
public struct ClusterMembershipConfiguration: Sendable {
    public var node: NodeID
    /// FluxWire address (`host:port`) other nodes reach this node at.
    public var wire: String
    /// Public HTTP address (`host:port`), announced to the others for forwarding.
    public var http: String
    /// `cluster_secret`; nil runs without any transport (a single node that lists only itself).
    public var secret: [UInt8]?
    /// FluxWire addresses to join through (its own address is skipped).
    public var seeds: [String]
    public var settings: SWIMSettings
    /// Start above anything an earlier process with this id announced: the start time in ms.
    public var incarnation: UInt64
    /// Connections to peers: short connect timeout and backoff, so a dead member costs little.
    public var wireConfiguration: WireConfiguration
    /// Seeds the probe order and helper choice.
    public var randomSeed: UInt64

    public init(
        node: NodeID, wire: String, http: String, secret: [UInt8]?, seeds: [String] = [],
        settings: SWIMSettings = SWIMSettings(),
        incarnation: UInt64 = UInt64(max(0, Date().timeIntervalSince1970 * 1000)),
        wireConfiguration: WireConfiguration = WireConfiguration(
            handshakeTimeout: .seconds(2), connectTimeout: .seconds(1),
            backoff: .init(base: .milliseconds(100), cap: .seconds(1))),
        randomSeed: UInt64 = UInt64.random(in: .min ... .max)
    ) {
        self.node = node
        self.wire = wire
        self.http = http
        self.secret = secret
        self.seeds = seeds
        self.settings = settings
        self.incarnation = incarnation
        self.wireConfiguration = wireConfiguration
        self.randomSeed = randomSeed
    }
}

/// A change in the member list, as published by `ClusterMembership.changes()`.
public enum MembershipChange: Sendable, Hashable {
    /// A member appeared (`previous` nil), changed status, addresses or (for this node) incarnation.
    case changed(SWIMMember, previous: SWIMStatus?)
    /// A member dead or left for `deadRetention` was forgotten.
    case removed(NodeID)
}

/// The thin shell around `SWIMStateMachine` (Docs/membership.md, "What the shell does"): it runs
/// the probe tick, the timers the machine asks for, sends SWIM messages as FluxWire tells over one
/// `WirePeer` per address (opened lazily, closed when the member is dead or left), and feeds it
/// the messages the node's `WireServer` receives (`receive(_:from:)`).
public actor ClusterMembership {
    public nonisolated let configuration: ClusterMembershipConfiguration
    public nonisolated var myself: NodeID { configuration.node }
    private var machine: SWIMStateMachine
    private let origin = ContinuousClock.now
    private let group: any EventLoopGroup
    private let logger: Logger
    private var peers: [String: WirePeer] = [:]
    private var tickTask: Task<Void, Never>?
    private var timers: [SWIMTimer: Task<Void, Never>] = [:]
    private var subscribers: [Int: AsyncStream<MembershipChange>.Continuation] = [:]
    private var nextSubscriber = 0
    private var started = false
    private var stopped = false
    /// Fault injection (tests of partitions): frames to and from these members are dropped.
    /// Read without a hop by the node's frame handler (`isPartitioned(from:)`).
    private let partitionedNodes = Mutex<Set<NodeID>>([])
    private var partitioned: Set<NodeID> { partitionedNodes.withLock { $0 } }

    public init(
        configuration: ClusterMembershipConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "flux.membership")
    ) {
        self.configuration = configuration
        self.group = group
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.node)"
        self.logger = logger
        self.machine = SWIMStateMachine(
            node: configuration.node, wire: configuration.wire, http: configuration.http,
            incarnation: configuration.incarnation, settings: configuration.settings, seed: configuration.randomSeed)
    }

    // MARK: - Queries

    /// Every known member, this node included, sorted by id (dead and left ones for
    /// `deadRetention` after they got that status).
    public func members() -> [SWIMMember] { machine.members }

    public func member(_ node: NodeID) -> SWIMMember? { machine.member(node) }

    /// Alive and suspect members (this node too unless it left): the ones that own shards.
    public func clusterMembers() -> [NodeID] { machine.clusterMembers }

    /// Owners of `shards` shards over the alive and suspect members.
    public func placement(shards: Int) -> PlacementTable {
        PlacementTable(shards: max(1, shards), members: machine.clusterMembers)
    }

    public func incarnation() -> UInt64 { machine.incarnation }

    /// The connection to a member (the same one SWIM uses: one connection per peer), or nil when
    /// the member is unknown, not in the cluster, this node, or there is no cluster secret.
    public func peer(to node: NodeID) -> WirePeer? {
        guard node != myself, !stopped, !partitioned.contains(node), let secret = configuration.secret,
            let m = machine.member(node), m.status.isInCluster
        else { return nil }
        return peer(for: m.wire, secret: secret)
    }

    /// Membership changes from now on. Each call is its own subscription; a slow reader loses
    /// the oldest changes beyond 1024 (`members()` always has the current state).
    public func changes() -> AsyncStream<MembershipChange> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: MembershipChange.self, bufferingPolicy: .bufferingNewest(1024))
        guard !stopped else {
            continuation.finish()
            return stream
        }
        let id = nextSubscriber
        nextSubscriber += 1
        subscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            Task { await self.unsubscribe(id) }
        }
        return stream
    }

    private func unsubscribe(_ id: Int) { subscribers[id] = nil }

    /// Drops every SWIM frame to and from `nodes` from now on (empty: heal). For partition tests
    /// only; the node exposes it when started with `FLUX_FAULT_INJECTION=1`.
    public func partition(from nodes: Set<NodeID>) {
        partitionedNodes.withLock { $0 = nodes }
        logger.notice("fault injection: dropping frames", metadata: ["nodes": "\(nodes.map(\.rawValue).sorted())"])
    }

    public nonisolated func isPartitioned(from node: NodeID) -> Bool {
        partitionedNodes.withLock { $0.contains(node) }
    }

    // MARK: - Lifecycle

    /// Contacts the seeds and starts probing (one tick per `probe_interval`).
    public func start() {
        guard !started, !stopped else { return }
        started = true
        logger.info(
            "membership started",
            metadata: [
                "wire": "\(configuration.wire)", "incarnation": "\(machine.incarnation)",
                "seeds": "\(configuration.seeds.joined(separator: ","))",
            ])
        if !configuration.seeds.isEmpty { _ = perform(machine.join(seeds: configuration.seeds)) }
        let interval = configuration.settings.probeInterval
        tickTask = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, !Task.isCancelled else { return }
                await self.tick()
            }
        }
    }

    /// Leaves gracefully: announces `left` to the members this node knows and waits until those
    /// messages are written (each bounded by the connect timeout). The node still answers pings
    /// until `stop()`.
    public func leave() async {
        guard started, !stopped, machine.status != .left else { return }
        let sends = perform(machine.leave())
        if let me = machine.member(myself) { publish(.changed(me, previous: .alive)) }
        logger.info("leaving the cluster", metadata: ["told": "\(sends.count)"])
        for send in sends { await send.value }
    }

    /// Stops probing and timers, closes every connection and ends the change streams.
    public func stop() async {
        guard !stopped else { return }
        stopped = true
        tickTask?.cancel()
        tickTask = nil
        for t in timers.values { t.cancel() }
        timers.removeAll()
        let open = Array(peers.values)
        peers.removeAll()
        for p in open { await p.close() }
        for c in subscribers.values { c.finish() }
        subscribers.removeAll()
    }

    // MARK: - Inputs

    /// A SWIM frame the node's `WireServer` received on a connection authenticated as `peer`.
    /// Frames that do not decode, or that name another sender than the handshake proved, are
    /// dropped with a log line (SWIM treats them as lost).
    public func receive(_ envelope: WireEnvelope, from peer: String) {
        guard !stopped, !peer.isEmpty, !partitioned.contains(NodeID(peer)) else { return }
        let decoded: (message: SWIMMessage, from: NodeID?)
        do {
            decoded = try SWIMWireCodec.decode(envelope)
        } catch {
            logger.warning("dropped a SWIM frame", metadata: ["peer": "\(peer)", "reason": "\(error.reason)"])
            return
        }
        if let claimed = decoded.from, claimed.rawValue != peer {
            logger.warning(
                "dropped a SWIM frame whose sender differs from the connection's",
                metadata: ["peer": "\(peer)", "claimed": "\(claimed)"])
            return
        }
        _ = perform(machine.receive(decoded.message, from: NodeID(peer), now: now()))
    }

    private func tick() {
        guard !stopped else { return }
        _ = perform(machine.tick(now: now()))
    }

    private func fire(_ timer: SWIMTimer) {
        guard !stopped else { return }
        timers[timer] = nil
        let directives: [SWIMDirective]
        switch timer {
        case .pingTimeout(let seq): directives = machine.pingTimedOut(sequence: seq, now: now())
        case .indirectTimeout(let seq): directives = machine.indirectTimedOut(sequence: seq, now: now())
        case .suspicion(let node): directives = machine.suspicionTimedOut(node, now: now())
        }
        _ = perform(directives)
    }

    private func now() -> Duration { ContinuousClock.now - origin }

    // MARK: - Directives

    /// Carries out the machine's directives; returns the send tasks (for `leave`).
    private func perform(_ directives: [SWIMDirective]) -> [Task<Void, Never>] {
        var sends: [Task<Void, Never>] = []
        for d in directives {
            switch d {
            case .send(let message, let node, let wire):
                if let node, partitioned.contains(node) { continue }
                if !partitioned.isEmpty,
                    machine.members.contains(where: { $0.wire == wire && partitioned.contains($0.node) })
                {
                    continue
                }
                if let task = send(message, to: node, wire: wire) { sends.append(task) }
            case .schedule(let timer, let after):
                timers[timer]?.cancel()
                timers[timer] = Task { [weak self] in
                    try? await Task.sleep(for: after)
                    guard let self, !Task.isCancelled else { return }
                    await self.fire(timer)
                }
            case .memberChanged(let member, let previous):
                logger.info(
                    "member \(member.status.rawValue)",
                    metadata: [
                        "member": "\(member.node)", "previous": "\(previous?.rawValue ?? "-")",
                        "incarnation": "\(member.incarnation)", "wire": "\(member.wire)",
                    ])
                if !member.status.isInCluster { closePeer(member.wire) }
                publish(.changed(member, previous: previous))
            case .suspicionTimeout(let node, let timeout):
                logger.debug("suspicion timeout", metadata: ["member": "\(node)", "timeout": "\(timeout)"])
            case .refuted(let previous, let incarnation):
                logger.notice(
                    "refuted a \(previous.rawValue) report about this node",
                    metadata: ["incarnation": "\(incarnation)"])
                if let me = machine.member(myself) { publish(.changed(me, previous: me.status)) }
            case .memberRemoved(let node):
                publish(.removed(node))
            }
        }
        return sends
    }

    private func send(_ message: SWIMMessage, to node: NodeID?, wire: String) -> Task<Void, Never>? {
        guard let secret = configuration.secret, let peer = peer(for: wire, secret: secret) else { return nil }
        let envelope = SWIMWireCodec.encode(message, from: myself, incarnation: machine.incarnation)
        let logger = self.logger
        return Task { [weak self] in
            do throws(WireError) {
                try await peer.tell(envelope)
            } catch {
                // SWIM copes with loss; a dead peer fails fast while its connection backs off, and
                // a ping that could not be sent has failed now, not at its timeout.
                logger.trace("SWIM send failed", metadata: ["wire": "\(wire)", "reason": "\(error.reason)"])
                await self?.sendFailed(message, to: node)
            }
        }
    }

    private func sendFailed(_ message: SWIMMessage, to node: NodeID?) {
        guard !stopped else { return }
        _ = perform(machine.sendFailed(message, to: node, now: now()))
    }

    private func connectionLost(_ wire: String) {
        guard !stopped, let m = machine.members.first(where: { $0.wire == wire && $0.node != myself }) else { return }
        _ = perform(machine.connectionLost(to: m.node, now: now()))
    }

    private func peer(for wire: String, secret: [UInt8]) -> WirePeer? {
        if let p = peers[wire] { return p }
        guard let (host, port) = Self.hostPort(wire) else {
            logger.warning("cannot send to a malformed wire address", metadata: ["wire": "\(wire)"])
            return nil
        }
        // Bounded: one peer per known member or seed address; dead and left ones are closed.
        let p = WirePeer(
            host: host, port: port, localNodeID: myself.rawValue, secret: secret,
            configuration: configuration.wireConfiguration, group: group, logger: logger,
            onDisconnect: { [weak self] in
                guard let self else { return }
                Task { await self.connectionLost(wire) }
            })
        peers[wire] = p
        return p
    }

    private func closePeer(_ wire: String) {
        guard let p = peers.removeValue(forKey: wire) else { return }
        Task { await p.close() }
    }

    private func publish(_ change: MembershipChange) {
        for c in subscribers.values { c.yield(change) }
    }

    /// `host:port` or `[v6]:port`.
    static func hostPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }
}
