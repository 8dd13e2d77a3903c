/// SWIM membership with the Lifeguard refinements, as a pure state machine.
///
/// Inputs are `mutating func`s (`tick`, `receive`, the three timer callbacks, `join`, `leave`);
/// each returns `[SWIMDirective]` for a thin shell to carry out (send over FluxWire, run a timer,
/// publish a membership change). No clock, no socket, no global randomness: time comes in as
/// `now` (a monotonic `Duration` since any fixed origin) and randomness from a seeded generator,
/// so a whole cluster can be replayed from one seed.
///
/// Protocol (see Docs/membership.md): every probe interval a node pings the next member of a
/// shuffled round-robin list. Without an ack within the ping timeout it asks `indirectProbes`
/// other members to ping the target (`pingReq`); without any ack by the end of the indirect
/// timeout the target becomes `suspect`. A suspect that does not refute (by announcing a higher
/// incarnation) within the Lifeguard suspicion timeout becomes `dead`. All news travels
/// piggybacked on pings and acks.
public struct SWIMStateMachine: Sendable {
    public let settings: SWIMSettings
    public let myself: NodeID

    private struct Record: Sendable {
        var update: MemberUpdate
        var since: Duration
        var suspicionStart: Duration = .zero
        var suspicionDeadline: Duration = .zero
    }

    private struct Probe: Sendable {
        var target: NodeID
        var sequence: UInt64
        var indirect: Bool
        /// Helpers asked in the indirect phase, and how many answered that they cannot reach it.
        var helpers = 0
        var nacks = 0
        /// The direct ping could not even be sent (connection refused or reset).
        var unreachable = false
    }
    /// A member to probe out of turn at the next opportunity (its connection was lost).
    private var urgent: NodeID?

    private struct Relay: Sendable {
        var origin: NodeID
        var originSequence: UInt64
        var target: NodeID
    }

    /// This node's own record: always `alive` (at its current incarnation) or `left`.
    private var me: MemberUpdate
    private var meSince: Duration = .zero
    private var records: [NodeID: Record] = [:]
    // Indexes over `records`, kept by `set` and `purge`, so a tick does not scan every member.
    private var othersInCluster = 0
    private var suspects: Set<NodeID> = []
    private var departed: Set<NodeID> = []
    /// Pending news: member → transmissions left. The content is always the current record.
    private var gossip: [NodeID: Int] = [:]
    private var probeOrder: [NodeID] = []
    private var probeIndex = 0
    private var probe: Probe?
    private var relays: [UInt64: Relay] = [:]
    /// 0 is reserved for join pings, whose ack carries the full member list.
    private var lastSequence: UInt64 = 0
    private var seeds: [String] = []
    private var ticks: UInt64 = 0
    /// Every this many ticks a dead member is pinged (a healed partition or a node that came back
    /// under the same incarnation finds its way back; Serf's reconnect).
    static let reconnectTicks: UInt64 = 5
    private var rng: SWIMRandom
    private var now: Duration = .zero

    /// Most `pingReq`s this node relays at once; more are dropped (their origin sees no ack).
    static let maxRelays = 256

    /// - Parameters:
    ///   - incarnation: start above any incarnation an earlier process with this id could have
    ///     used (the shell passes e.g. the start time in milliseconds), so a restarted node is
    ///     not mistaken for its dead predecessor.
    ///   - seed: seeds the generator that shuffles probe order and picks indirect helpers.
    public init(
        node: NodeID, wire: String, http: String, incarnation: UInt64 = 0,
        settings: SWIMSettings = SWIMSettings(), seed: UInt64
    ) {
        self.settings = settings
        self.myself = node
        self.me = MemberUpdate(node: node, wire: wire, http: http, incarnation: incarnation, status: .alive)
        self.rng = SWIMRandom(seed: seed)
    }

    // MARK: - Queries

    /// This node's incarnation (grows each time it refutes a suspicion or death).
    public var incarnation: UInt64 { me.incarnation }
    /// This node's own status: `alive`, or `left` after `leave()`.
    public var status: SWIMStatus { me.status }

    /// Every known member, this node included, sorted by id; dead and left members stay listed
    /// for `settings.deadRetention`.
    public var members: [SWIMMember] {
        var all = records.values.map { member($0) }
        all.append(
            SWIMMember(
                node: me.node, wire: me.wire, http: me.http, incarnation: me.incarnation, status: me.status,
                since: meSince))
        return all.sorted { $0.node < $1.node }
    }

    public func member(_ node: NodeID) -> SWIMMember? {
        if node == myself {
            return SWIMMember(
                node: me.node, wire: me.wire, http: me.http, incarnation: me.incarnation, status: me.status,
                since: meSince)
        }
        return records[node].map { member($0) }
    }

    /// What this node believes about `node` (nil: never heard of it, or forgotten).
    public func status(of node: NodeID) -> SWIMStatus? {
        node == myself ? me.status : records[node]?.update.status
    }

    /// Members that own shards: alive and suspect ones, this node included unless it left.
    public var clusterMembers: [NodeID] {
        var ids = records.values.filter { $0.update.status.isInCluster }.map(\.update.node)
        if me.status.isInCluster { ids.append(myself) }
        return ids.sorted()
    }

    /// N in the Lifeguard formulas: alive and suspect members, this node included.
    public var clusterSize: Int { othersInCluster + 1 }

    private func member(_ r: Record) -> SWIMMember {
        SWIMMember(
            node: r.update.node, wire: r.update.wire, http: r.update.http,
            incarnation: r.update.incarnation, status: r.update.status, since: r.since)
    }

    // MARK: - Inputs

    /// Contact `seeds` (FluxWire addresses). Each answers with its full member list. While this
    /// node knows no other member, every tick tries the seeds again.
    public mutating func join(seeds: [String]) -> [SWIMDirective] {
        self.seeds = seeds.filter { $0 != me.wire }
        return joinPings()
    }

    /// Leave gracefully: announce `left` to the members this node knows, stop probing.
    public mutating func leave() -> [SWIMDirective] {
        guard me.status != .left else { return [] }
        me.status = .left
        meSince = now
        probe = nil
        relays.removeAll()
        var targets = records.values.filter { $0.update.status.isInCluster }.map(\.update).sorted {
            $0.node < $1.node
        }
        targets.shuffle(using: &rng)
        var out: [SWIMDirective] = []
        for t in targets.prefix(64) {
            let seq = nextSequence()
            out.append(.send(.ping(sequence: seq, updates: piggyback(to: t.node)), to: t.node, wire: t.wire))
        }
        return out
    }

    /// A probe interval elapsed: settle the previous probe, expire suspicions, forget long-dead
    /// members and ping the next member.
    public mutating func tick(now: Duration) -> [SWIMDirective] {
        advance(to: now)
        var out: [SWIMDirective] = []
        expireSuspicions(&out)
        purge(&out)
        guard me.status != .left else { return out }
        if let p = probe {
            // The previous period ended without an ack. If its indirect phase ran, that is a
            // failed probe even if the shell's timer has not fired yet.
            probe = nil
            if p.indirect { suspect(p.target, &out) }
        }
        if clusterSize == 1, !seeds.isEmpty { out += joinPings() }
        ticks &+= 1
        if ticks % Self.reconnectTicks == 0 { out += reconnectPing() }
        guard let target = nextTarget(), let wire = records[target]?.update.wire else { return out }
        let seq = nextSequence()
        probe = Probe(target: target, sequence: seq, indirect: false)
        out.append(.send(.ping(sequence: seq, updates: piggyback(to: target)), to: target, wire: wire))
        out.append(.schedule(.pingTimeout(sequence: seq), after: settings.pingTimeout))
        return out
    }

    /// A message arrived from `from` (the sender's id from the FluxWire handshake; its own record
    /// is also among the message's updates).
    public mutating func receive(_ message: SWIMMessage, from: NodeID, now: Duration) -> [SWIMDirective] {
        advance(to: now)
        guard from != myself else { return [] }
        var out: [SWIMDirective] = []
        let senderWasIn = records[from]?.update.status.isInCluster ?? false
        // No honest message carries more than a full member list plus two records.
        for u in message.updates.prefix(settings.maxFullSync + 2) { apply(u, &out) }
        let senderIsIn = records[from]?.update.status.isInCluster ?? false
        // A member that just (re)joined, or asks with a join ping, gets the whole list.
        let fullSync = senderIsIn && (!senderWasIn || message.sequence == 0)

        switch message {
        case .ping(let seq, _):
            guard let wire = records[from]?.update.wire else { return out }
            var updates = piggyback(to: from, fullSync: fullSync)
            // A member this node holds dead is told so, so that it refutes and comes back.
            if let r = records[from], r.update.status == .dead { updates.append(r.update) }
            out.append(.send(.ack(sequence: seq, target: myself, updates: updates), to: from, wire: wire))

        case .pingReq(let seq, let target, let targetWire, _):
            guard let originWire = records[from]?.update.wire else { return out }
            if target == myself {
                let updates = piggyback(to: from)
                out.append(.send(.ack(sequence: seq, target: myself, updates: updates), to: from, wire: originWire))
                return out
            }
            guard relays.count < Self.maxRelays else { return out }
            let relaySeq = nextSequence()
            relays[relaySeq] = Relay(origin: from, originSequence: seq, target: target)
            let wire = records[target]?.update.wire ?? targetWire
            out.append(.send(.ping(sequence: relaySeq, updates: piggyback(to: target)), to: target, wire: wire))
            // Lifeguard: answer with a nack before the requester gives up (80 % of its window).
            let nackAfter = min(settings.pingTimeout, settings.effectiveIndirectTimeout * 0.8)
            out.append(.schedule(.pingTimeout(sequence: relaySeq), after: nackAfter))

        case .ack(let seq, let target, _):
            if let p = probe, p.sequence == seq, p.target == target {
                probe = nil
            } else if let r = relays[seq], r.target == target, from == target {
                relays[seq] = nil
                if let wire = records[r.origin]?.update.wire {
                    let updates = piggyback(to: r.origin)
                    out.append(
                        .send(
                            .ack(sequence: r.originSequence, target: target, updates: updates), to: r.origin, wire: wire
                        ))
                }
            }

        case .nack(let seq, let target, _):
            // Proves the helper is alive (Lifeguard's local-health multiplier, not implemented,
            // would count missing nacks). When every helper says it cannot reach the target
            // either, the indirect probe has failed: no need to wait for its timeout.
            if var p = probe, p.sequence == seq, p.target == target, p.indirect {
                p.nacks += 1
                probe = p
                // Only when the direct ping failed hard too: a nack alone may precede a late ack.
                if p.unreachable, p.nacks >= p.helpers {
                    probe = nil
                    suspect(target, &out)
                }
            }
        }
        return out
    }

    /// The ping with this sequence number got no ack in time: start indirect probes (own
    /// probe) or tell the requester (relayed ping).
    public mutating func pingTimedOut(sequence: UInt64, now: Duration) -> [SWIMDirective] {
        advance(to: now)
        if let r = relays.removeValue(forKey: sequence) {
            guard let wire = records[r.origin]?.update.wire else { return [] }
            let updates = piggyback(to: r.origin)
            return [
                .send(.nack(sequence: r.originSequence, target: r.target, updates: updates), to: r.origin, wire: wire)
            ]
        }
        guard var p = probe, p.sequence == sequence, !p.indirect, let targetWire = records[p.target]?.update.wire
        else { return [] }
        p.indirect = true
        probe = p
        // probeOrder holds every member in a replayable order (a superset of those in the cluster).
        var helpers = probeOrder.compactMap { id -> MemberUpdate? in
            guard id != p.target, let u = records[id]?.update, u.status.isInCluster else { return nil }
            return u
        }
        var out: [SWIMDirective] = []
        probe?.helpers = min(settings.indirectProbes, helpers.count)
        if helpers.isEmpty, p.unreachable {
            // Nobody to ask and the target cannot be connected to: the direct failure stands.
            probe = nil
            suspect(p.target, &out)
            return out
        }
        for i in 0..<min(settings.indirectProbes, helpers.count) {
            helpers.swapAt(i, Int.random(in: i..<helpers.count, using: &rng))
            let h = helpers[i]
            let msg = SWIMMessage.pingReq(
                sequence: sequence, target: p.target, targetWire: targetWire, updates: piggyback(to: h.node))
            out.append(.send(msg, to: h.node, wire: h.wire))
        }
        out.append(.schedule(.indirectTimeout(sequence: sequence), after: settings.effectiveIndirectTimeout))
        return out
    }

    /// No ack, direct or relayed, for this probe: its target becomes suspect.
    public mutating func indirectTimedOut(sequence: UInt64, now: Duration) -> [SWIMDirective] {
        advance(to: now)
        guard let p = probe, p.sequence == sequence, p.indirect else { return [] }
        probe = nil
        var out: [SWIMDirective] = []
        suspect(p.target, &out)
        return out
    }

    /// The connection to `node` was lost (its process died, or the network broke): probe it now
    /// rather than at its turn in the round robin. The usual SWIM rules still decide (direct,
    /// then indirect probe, then suspicion), only sooner.
    public mutating func connectionLost(to node: NodeID, now: Duration) -> [SWIMDirective] {
        advance(to: now)
        guard node != myself, me.status != .left, records[node]?.update.status == .alive,
            let wire = records[node]?.update.wire
        else { return [] }
        if let p = probe {
            if p.target != node { urgent = node }
            return []
        }
        let seq = nextSequence()
        probe = Probe(target: node, sequence: seq, indirect: false)
        return [
            .send(.ping(sequence: seq, updates: piggyback(to: node)), to: node, wire: wire),
            .schedule(.pingTimeout(sequence: seq), after: settings.pingTimeout),
        ]
    }

    /// A message could not even be sent (connection refused or reset): for a ping, that is the
    /// ping's failure, known now instead of at its timeout. As a relay for another node's
    /// indirect probe, this node then answers with a nack at once.
    public mutating func sendFailed(_ message: SWIMMessage, to node: NodeID?, now: Duration) -> [SWIMDirective] {
        advance(to: now)
        guard case .ping(let seq, _) = message else { return [] }
        if var p = probe, p.sequence == seq, !p.indirect {
            p.unreachable = true
            probe = p
            return pingTimedOut(sequence: seq, now: now)
        }
        if relays[seq] != nil { return pingTimedOut(sequence: seq, now: now) }
        return []
    }

    /// A suspicion timer fired; the member is declared dead if its (possibly shortened)
    /// suspicion timeout has really run out and it has not refuted.
    public mutating func suspicionTimedOut(_ node: NodeID, now: Duration) -> [SWIMDirective] {
        advance(to: now)
        var out: [SWIMDirective] = []
        expireSuspicions(&out)
        return out
    }

    // MARK: - Membership rules

    private mutating func advance(to t: Duration) {
        if t > now { now = t }
    }

    private mutating func nextSequence() -> UInt64 {
        lastSequence &+= 1
        if lastSequence == 0 { lastSequence = 1 }
        return lastSequence
    }

    /// A join ping to one dead member, carrying its dead record: if it is in fact up (the
    /// partition healed), it refutes with a higher incarnation and its ack brings it back.
    private mutating func reconnectPing() -> [SWIMDirective] {
        guard me.status != .left else { return [] }
        let dead = records.values.filter { $0.update.status == .dead }.map(\.update).sorted { $0.node < $1.node }
        guard !dead.isEmpty else { return [] }
        let target = dead[Int.random(in: 0..<dead.count, using: &rng)]
        return [.send(.ping(sequence: 0, updates: [me, target]), to: target.node, wire: target.wire)]
    }

    private mutating func joinPings() -> [SWIMDirective] {
        guard me.status != .left else { return [] }
        return seeds.map { .send(.ping(sequence: 0, updates: [me]), to: nil, wire: $0) }
    }

    /// Merge one piece of news into the local view.
    private mutating func apply(_ u: MemberUpdate, _ out: inout [SWIMDirective]) {
        if u.node == myself {
            applyAboutMyself(u, &out)
            return
        }
        guard let current = records[u.node] else {
            set(u, previous: nil, &out)
            return
        }
        let known = current.update
        if u.incarnation == known.incarnation, u.status == known.status {
            if u.status == .suspect { confirm(u.node, by: u.suspectedBy, &out) }
            return
        }
        guard u.supersedes(known) else {
            // The sender holds older news (say "suspect" about a member we know left): our newer
            // record goes out again, so the sender learns it even after its gossip budget was spent.
            if known.supersedes(u) {
                gossip[u.node] = max(gossip[u.node] ?? 0, settings.gossipTransmissions(members: clusterSize))
            }
            return
        }
        set(u, previous: current, &out)
    }

    /// Someone says this node is suspect or dead (or has seen a newer incarnation of it):
    /// answer with a higher incarnation. A node that left stays left.
    private mutating func applyAboutMyself(_ u: MemberUpdate, _ out: inout [SWIMDirective]) {
        guard me.status == .alive, u.supersedes(me) else { return }
        // Our own record rides on every message we send, so it needs no gossip entry.
        me.incarnation = u.incarnation + 1
        out.append(.refuted(previous: u.status, incarnation: me.incarnation))
    }

    /// Store `u` as the member's record, start or stop its suspicion, queue it for gossip.
    private mutating func set(_ u: MemberUpdate, previous: Record?, _ out: inout [SWIMDirective]) {
        var u = u
        if u.status != .suspect { u.suspectedBy = [] }
        let previousStatus = previous?.update.status
        var r = Record(update: u, since: previousStatus == u.status ? previous!.since : now)
        if u.status == .suspect {
            r.update.suspectedBy = Self.capped(u.suspectedBy, to: settings.indirectProbes + 1)
            r.suspicionStart = now
        }
        records[u.node] = r
        if previous?.update.status.isInCluster == true { othersInCluster -= 1 }
        if u.status.isInCluster { othersInCluster += 1 }
        if u.status == .suspect { suspects.insert(u.node) } else { suspects.remove(u.node) }
        if u.status.isInCluster { departed.remove(u.node) } else { departed.insert(u.node) }
        if u.status == .suspect { armSuspicion(u.node, &out) }
        if u.status.isInCluster, !probeOrder.contains(u.node) {
            // SWIM 4.3: a new member goes to a random place in the round-robin list.
            let i = Int.random(in: 0...probeOrder.count, using: &rng)
            probeOrder.insert(u.node, at: i)
            if i < probeIndex { probeIndex += 1 }
        }
        gossip[u.node] = settings.gossipTransmissions(members: clusterSize)
        let addressChanged = previous.map { $0.update.wire != u.wire || $0.update.http != u.http } ?? false
        if previousStatus != u.status || addressChanged {
            out.append(.memberChanged(member(r), previous: previousStatus))
        }
    }

    /// This node failed to reach `node` (direct and indirect): suspect it, or confirm an
    /// existing suspicion.
    private mutating func suspect(_ node: NodeID, _ out: inout [SWIMDirective]) {
        guard let r = records[node] else { return }
        switch r.update.status {
        case .alive:
            var u = r.update
            u.status = .suspect
            u.suspectedBy = [myself]
            set(u, previous: r, &out)
        case .suspect:
            confirm(node, by: [myself], &out)
        case .dead, .left:
            break
        }
    }

    /// Lifeguard: more independent suspecters shorten the suspicion.
    private mutating func confirm(_ node: NodeID, by suspecters: [NodeID], _ out: inout [SWIMDirective]) {
        guard var r = records[node], r.update.status == .suspect else { return }
        let before = r.update.suspectedBy.count
        r.update.suspectedBy = Self.capped(r.update.suspectedBy + suspecters, to: settings.indirectProbes + 1)
        guard r.update.suspectedBy.count > before else { return }
        records[node] = r
        gossip[node] = settings.gossipTransmissions(members: clusterSize)
        armSuspicion(node, &out)
    }

    private mutating func armSuspicion(_ node: NodeID, _ out: inout [SWIMDirective]) {
        guard var r = records[node] else { return }
        let timeout = settings.suspicionTimeout(
            members: clusterSize, confirmations: r.update.suspectedBy.count - 1)
        r.suspicionDeadline = r.suspicionStart + timeout
        records[node] = r
        out.append(.suspicionTimeout(node, timeout: timeout))
        let left = r.suspicionDeadline - now
        out.append(.schedule(.suspicion(node), after: left > .zero ? left : .zero))
    }

    private mutating func expireSuspicions(_ out: inout [SWIMDirective]) {
        guard !suspects.isEmpty else { return }
        let due = suspects.filter { records[$0].map { $0.suspicionDeadline <= now } ?? false }.sorted()
        for node in due {
            guard let r = records[node] else { continue }
            var u = r.update
            u.status = .dead
            set(u, previous: r, &out)
        }
    }

    private mutating func purge(_ out: inout [SWIMDirective]) {
        guard !departed.isEmpty else { return }
        let old = departed.filter { records[$0].map { now - $0.since >= settings.deadRetention } ?? true }.sorted()
        for node in old {
            records[node] = nil
            departed.remove(node)
            gossip[node] = nil
            if let i = probeOrder.firstIndex(of: node) {
                probeOrder.remove(at: i)
                if i < probeIndex { probeIndex -= 1 }
            }
            out.append(.memberRemoved(node))
        }
    }

    /// SWIM 4.3: round-robin over a list reshuffled after each full pass.
    private mutating func nextTarget() -> NodeID? {
        if let u = urgent {
            urgent = nil
            if records[u]?.update.status.isInCluster == true { return u }
        }
        var skipped = 0
        while skipped <= probeOrder.count {
            if probeIndex >= probeOrder.count {
                probeOrder.removeAll { records[$0]?.update.status.isInCluster != true }
                probeOrder.shuffle(using: &rng)
                probeIndex = 0
                if probeOrder.isEmpty { return nil }
            }
            let node = probeOrder[probeIndex]
            probeIndex += 1
            if records[node]?.update.status.isInCluster == true { return node }
            skipped += 1
        }
        return nil
    }

    /// The news to piggyback on a message to `target`: this node's own record, the target's
    /// own suspicion or death if we hold one (Lifeguard's buddy system: it can refute at once),
    /// then the least-gossiped news (or, for a joiner, every member).
    private mutating func piggyback(to target: NodeID?, fullSync: Bool = false) -> [MemberUpdate] {
        var updates = [me]
        var included: Set<NodeID> = [myself]
        if let target, let r = records[target], r.update.status != .alive {
            updates.append(r.update)
            included.insert(target)
        }
        if fullSync {
            for r in records.values.sorted(by: { $0.update.node < $1.update.node })
            where !included.contains(r.update.node) {
                guard updates.count < settings.maxFullSync else { break }
                updates.append(r.update)
            }
            return updates
        }
        let picks = gossip.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .prefix(settings.maxPiggyback)
        for (node, remaining) in picks {
            if remaining <= 1 { gossip[node] = nil } else { gossip[node] = remaining - 1 }
            guard !included.contains(node), let r = records[node] else { continue }
            updates.append(r.update)
            included.insert(node)
        }
        return updates
    }

    private static func capped(_ ids: [NodeID], to limit: Int) -> [NodeID] {
        var seen: Set<NodeID> = []
        var out: [NodeID] = []
        for id in ids where !seen.contains(id) {
            guard out.count < max(1, limit) else { break }
            seen.insert(id)
            out.append(id)
        }
        return out
    }
}
