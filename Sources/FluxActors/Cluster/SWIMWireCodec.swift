import FluxWire

/// SWIM messages ⇄ FluxWire frames (message version 2 of Ping, Ack, PingReq, IndirectAck).
///
/// | SWIM | FluxWire |
/// |---|---|
/// | `ping(seq, updates)` | `WirePing { from, incarnation, updates, sequence }` |
/// | `ack(seq, target, updates)` | `WireAck { from, incarnation, updates, sequence, target }` |
/// | `pingReq(seq, target, targetWire, updates)` | `WirePingReq { from, target, target_address, updates, sequence }` |
/// | `nack(seq, target, updates)` | `WireIndirectAck { target, reachable: false, updates, sequence, from }` |
///
/// Every SWIM message travels as a tell (correlation id 0): SWIM matches acks to probes by its
/// own sequence numbers, and a lost message is something it copes with anyway. A received
/// `WireIndirectAck` with `reachable: true` (which Flux never sends) reads as an `ack`.
public enum SWIMWireCodec {
    /// The frame types that carry SWIM messages.
    public static let messageTypes: Set<UInt16> = [
        WireMessageType.ping, WireMessageType.ack, WireMessageType.pingReq, WireMessageType.indirectAck,
    ]

    /// `message` as a tell from `from` (whose current incarnation is `incarnation`). Updates past
    /// FluxWire's bounds (256 per message, 17 suspecters each) are left off rather than sent in a
    /// frame no node would accept.
    public static func encode(_ message: SWIMMessage, from: NodeID, incarnation: UInt64) -> WireEnvelope {
        let updates = message.updates.prefix(WireBounds.updates).map(wire)
        switch message {
        case .ping(let seq, _):
            return WireEnvelope(
                WirePing(from: from.rawValue, incarnation: incarnation, updates: updates, sequence: seq))
        case .ack(let seq, let target, _):
            return WireEnvelope(
                WireAck(
                    from: from.rawValue, incarnation: incarnation, updates: updates, sequence: seq,
                    target: target.rawValue))
        case .pingReq(let seq, let target, let targetWire, _):
            return WireEnvelope(
                WirePingReq(
                    from: from.rawValue, target: target.rawValue, targetAddress: targetWire, updates: updates,
                    sequence: seq))
        case .nack(let seq, let target, _):
            return WireEnvelope(
                WireIndirectAck(
                    target: target.rawValue, reachable: false, updates: updates, sequence: seq, from: from.rawValue))
        }
    }

    /// The SWIM message in `envelope` and the sender it names (nil when the frame does not say:
    /// a version-1 IndirectAck). Throws for a frame that is not a SWIM message or does not decode.
    public static func decode(_ envelope: WireEnvelope) throws(WireError) -> (message: SWIMMessage, from: NodeID?) {
        switch envelope.type {
        case WireMessageType.ping:
            let m = try envelope.decode(as: WirePing.self)
            return (.ping(sequence: m.sequence, updates: m.updates.map(update)), NodeID(m.from))
        case WireMessageType.ack:
            let m = try envelope.decode(as: WireAck.self)
            return (
                .ack(sequence: m.sequence, target: NodeID(m.target), updates: m.updates.map(update)), NodeID(m.from)
            )
        case WireMessageType.pingReq:
            let m = try envelope.decode(as: WirePingReq.self)
            return (
                .pingReq(
                    sequence: m.sequence, target: NodeID(m.target), targetWire: m.targetAddress,
                    updates: m.updates.map(update)),
                NodeID(m.from)
            )
        case WireMessageType.indirectAck:
            let m = try envelope.decode(as: WireIndirectAck.self)
            let updates = m.updates.map(update)
            let message: SWIMMessage =
                m.reachable
                ? .ack(sequence: m.sequence, target: NodeID(m.target), updates: updates)
                : .nack(sequence: m.sequence, target: NodeID(m.target), updates: updates)
            return (message, m.from.isEmpty ? nil : NodeID(m.from))
        default:
            throw .unexpectedMessage(expected: WireMessageType.ping, got: envelope.type)
        }
    }

    public static func wire(_ u: MemberUpdate) -> WireMemberUpdate {
        WireMemberUpdate(
            memberID: u.node.rawValue, address: u.wire, incarnation: u.incarnation, status: wire(u.status),
            http: u.http,
            suspectedBy: u.status == .suspect ? u.suspectedBy.prefix(WireBounds.suspecters).map(\.rawValue) : [])
    }

    public static func update(_ w: WireMemberUpdate) -> MemberUpdate {
        let status = status(w.status)
        return MemberUpdate(
            node: NodeID(w.memberID), wire: w.address, http: w.http, incarnation: w.incarnation, status: status,
            suspectedBy: status == .suspect ? w.suspectedBy.map { NodeID($0) } : [])
    }

    public static func wire(_ s: SWIMStatus) -> WireMemberStatus {
        switch s {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        }
    }

    public static func status(_ s: WireMemberStatus) -> SWIMStatus {
        switch s {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        }
    }
}
