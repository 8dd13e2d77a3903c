/// A FluxWire message: a frame type code, a payload version, and a codec.
///
/// The payload of every message is `u8 version ‖ fields`. `encode(into:)`
/// writes the fields of `currentVersion`; `init(from:)` reads the fields of
/// `reader.messageVersion`, which `decode(_:)` has checked is in
/// `supportedVersions`.
public protocol WireMessage: Sendable {
    static var type: UInt16 { get }
    static var currentVersion: UInt8 { get }
    static var supportedVersions: ClosedRange<UInt8> { get }
    func encode(into writer: inout WireWriter)
    init(from reader: inout WireReader) throws(WireError)
}

extension WireMessage {
    public static var currentVersion: UInt8 { 1 }
    public static var supportedVersions: ClosedRange<UInt8> { 1...currentVersion }

    /// `u8 version ‖ fields`.
    public func encodedPayload() -> [UInt8] {
        var writer = WireWriter()
        writer.writeU8(Self.currentVersion)
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes a whole payload; trailing bytes are an error.
    public static func decode(_ payload: [UInt8]) throws(WireError) -> Self {
        var reader = WireReader(payload)
        let version = try reader.readU8("message version")
        guard supportedVersions.contains(version) else {
            throw .unsupportedMessageVersion(type: type, version: version)
        }
        reader.messageVersion = version
        let message = try Self(from: &reader)
        try reader.finish()
        return message
    }
}

/// Type codes of every FluxWire message. A frame with any other type is refused.
public enum WireMessageType {
    public static let hello: UInt16 = 0x0001
    public static let challenge: UInt16 = 0x0002
    public static let proof: UInt16 = 0x0003
    public static let ping: UInt16 = 0x0010
    public static let ack: UInt16 = 0x0011
    public static let pingReq: UInt16 = 0x0012
    public static let indirectAck: UInt16 = 0x0013
    public static let forward: UInt16 = 0x0020
    public static let forwardReply: UInt16 = 0x0021
    public static let configPublish: UInt16 = 0x0030
    public static let configPull: UInt16 = 0x0031
    public static let configState: UInt16 = 0x0032
    public static let shardHandover: UInt16 = 0x0040
    public static let shardHandoverAck: UInt16 = 0x0041
    public static let errorReply: UInt16 = 0x00FF

    public static let handshakeTypes: Set<UInt16> = [hello, challenge, proof]

    public static func isKnown(_ type: UInt16) -> Bool {
        switch type {
        case hello, challenge, proof, ping, ack, pingReq, indirectAck, forward, forwardReply,
            configPublish, configPull, configState, shardHandover, shardHandoverAck, errorReply:
            return true
        default:
            return false
        }
    }

    /// Decodes a payload as the message its type names (used by the fuzzer and
    /// by diagnostics; the node decodes the type it expects).
    public static func decodeAny(type: UInt16, payload: [UInt8]) throws(WireError) -> any WireMessage {
        switch type {
        case hello: return try WireHello.decode(payload)
        case challenge: return try WireChallenge.decode(payload)
        case proof: return try WireProof.decode(payload)
        case ping: return try WirePing.decode(payload)
        case ack: return try WireAck.decode(payload)
        case pingReq: return try WirePingReq.decode(payload)
        case indirectAck: return try WireIndirectAck.decode(payload)
        case forward: return try WireForward.decode(payload)
        case forwardReply: return try WireForwardReply.decode(payload)
        case configPublish: return try WireConfigPublish.decode(payload)
        case configPull: return try WireConfigPull.decode(payload)
        case configState: return try WireConfigState.decode(payload)
        case shardHandover: return try WireShardHandover.decode(payload)
        case shardHandoverAck: return try WireShardHandoverAck.decode(payload)
        case errorReply: return try WireErrorReply.decode(payload)
        default: throw .unknownType(type)
        }
    }
}

/// Bounds on fields; a payload that claims more is refused with `WireError`.
public enum WireBounds {
    public static let nodeID = 256
    public static let address = 256
    public static let nonce = 32
    public static let mac = 32
    public static let updates = 256
    /// Names in one update's `suspected_by` (SWIM's indirect probes, at most 16, plus one).
    public static let suspecters = 17
    public static let method = 16
    public static let path = 8 * 1024
    public static let headers = 128
    public static let headerName = 256
    public static let headerValue = 8 * 1024
    /// Bodies, JSON and snapshots are bounded by the frame itself.
    public static let blob = 1 << 30
    public static let kind = 64
    public static let configEntries = 64
    public static let errorText = 4 * 1024
}

// MARK: - Handshake

/// Client → server, first frame: who the client is and its challenge for the server.
public struct WireHello: WireMessage, Hashable {
    public static let type = WireMessageType.hello
    public var nodeID: String
    public var challenge: [UInt8]

    public init(nodeID: String, challenge: [UInt8]) {
        self.nodeID = nodeID
        self.challenge = challenge
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(nodeID)
        writer.writeBytes(challenge)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        nodeID = try reader.readNodeID("hello.node_id")
        challenge = try reader.readFixedBytes("hello.challenge", count: WireBounds.nonce)
    }
}

/// Server → client: who the server is and its 32-byte challenge.
public struct WireChallenge: WireMessage, Hashable {
    public static let type = WireMessageType.challenge
    public var nodeID: String
    public var challenge: [UInt8]

    public init(nodeID: String, challenge: [UInt8]) {
        self.nodeID = nodeID
        self.challenge = challenge
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(nodeID)
        writer.writeBytes(challenge)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        nodeID = try reader.readNodeID("challenge.node_id")
        challenge = try reader.readFixedBytes("challenge.challenge", count: WireBounds.nonce)
    }
}

/// Either direction: HMAC-SHA256(secret, peer's challenge ‖ prover id ‖ verifier id).
public struct WireProof: WireMessage, Hashable {
    public static let type = WireMessageType.proof
    public var mac: [UInt8]

    public init(mac: [UInt8]) { self.mac = mac }

    public func encode(into writer: inout WireWriter) { writer.writeBytes(mac) }

    public init(from reader: inout WireReader) throws(WireError) {
        mac = try reader.readFixedBytes("proof.mac", count: WireBounds.mac)
    }
}

// MARK: - Membership (SWIM)

public enum WireMemberStatus: UInt8, Hashable, Sendable, CaseIterable {
    case alive = 0
    case suspect = 1
    case dead = 2
    case left = 3
}

/// One piggybacked membership update.
///
/// Version 1 (the SWIM messages' payload version) carries id, address, incarnation and status;
/// version 2 adds the member's public HTTP address and, for a suspicion, the members that
/// independently suspect it (Lifeguard's confirmations, at most `WireBounds.suspecters`).
public struct WireMemberUpdate: Hashable, Sendable {
    public var memberID: String
    /// FluxWire address (`host:port`).
    public var address: String
    public var incarnation: UInt64
    public var status: WireMemberStatus
    /// Public HTTP address (`host:port`); empty when decoded from a version-1 payload.
    public var http: String
    /// Members that suspect this one (for `suspect`); empty otherwise or in version 1.
    public var suspectedBy: [String]

    public init(
        memberID: String, address: String, incarnation: UInt64, status: WireMemberStatus, http: String = "",
        suspectedBy: [String] = []
    ) {
        self.memberID = memberID
        self.address = address
        self.incarnation = incarnation
        self.status = status
        self.http = http
        self.suspectedBy = suspectedBy
    }

    /// Writes the layout of the current SWIM message version (2).
    func encode(into writer: inout WireWriter) {
        writer.writeString(memberID)
        writer.writeString(address)
        writer.writeVarint(incarnation)
        writer.writeU8(status.rawValue)
        writer.writeString(http)
        writer.writeCount(suspectedBy.count)
        for id in suspectedBy { writer.writeString(id) }
    }

    init(from reader: inout WireReader) throws(WireError) {
        memberID = try reader.readNodeID("update.member_id")
        address = try reader.readString("update.address", max: WireBounds.address)
        incarnation = try reader.readVarint("update.incarnation")
        let raw = try reader.readU8("update.status")
        guard let status = WireMemberStatus(rawValue: raw) else {
            throw .invalidValue(field: "update.status", reason: "unknown status \(raw)")
        }
        self.status = status
        guard reader.messageVersion >= 2 else {
            http = ""
            suspectedBy = []
            return
        }
        http = try reader.readString("update.http", max: WireBounds.address)
        // A node id is at least 2 bytes: a length and one byte.
        let count = try reader.readCount("update.suspected_by", max: WireBounds.suspecters, minElementSize: 2)
        var ids: [String] = []
        ids.reserveCapacity(count)
        for _ in 0..<count { ids.append(try reader.readNodeID("update.suspected_by")) }
        suspectedBy = ids
    }
}

extension WireWriter {
    mutating func writeUpdates(_ updates: [WireMemberUpdate]) {
        writeCount(updates.count)
        for update in updates { update.encode(into: &self) }
    }
}

extension WireReader {
    mutating func readUpdates() throws(WireError) -> [WireMemberUpdate] {
        // An update is at least 4 bytes: two empty strings, a varint, a status (6 in version 2).
        let count = try readCount("updates", max: WireBounds.updates, minElementSize: 4)
        var updates: [WireMemberUpdate] = []
        updates.reserveCapacity(count)
        for _ in 0..<count { updates.append(try WireMemberUpdate(from: &self)) }
        return updates
    }

    mutating func readNodeID(_ field: String) throws(WireError) -> String {
        let id = try readString(field, max: WireBounds.nodeID)
        guard !id.isEmpty else { throw .invalidValue(field: field, reason: "empty node id") }
        return id
    }

    mutating func readFixedBytes(_ field: String, count: Int) throws(WireError) -> [UInt8] {
        let bytes = try readBytes(field, max: count)
        guard bytes.count == count else {
            throw .invalidValue(field: field, reason: "\(bytes.count) bytes, expected \(count)")
        }
        return bytes
    }
}

/// SWIM direct probe, sent as a tell; the target answers with a `WireAck` tell carrying the
/// same `sequence` (version 2; 0 in version 1 and for join pings).
public struct WirePing: WireMessage, Hashable {
    public static let type = WireMessageType.ping
    public static let currentVersion: UInt8 = 2
    public var from: String
    public var incarnation: UInt64
    public var updates: [WireMemberUpdate]
    public var sequence: UInt64

    public init(from: String, incarnation: UInt64, updates: [WireMemberUpdate] = [], sequence: UInt64 = 0) {
        self.from = from
        self.incarnation = incarnation
        self.updates = updates
        self.sequence = sequence
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(from)
        writer.writeVarint(incarnation)
        writer.writeUpdates(updates)
        writer.writeVarint(sequence)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        from = try reader.readNodeID("ping.from")
        incarnation = try reader.readVarint("ping.incarnation")
        updates = try reader.readUpdates()
        sequence = reader.messageVersion >= 2 ? try reader.readVarint("ping.sequence") : 0
    }
}

/// Answer to `WirePing` (or, relayed by a helper, to a `WirePingReq`): `target` answered the
/// probe with this `sequence`. Version 2 adds `sequence` and `target` (version 1: 0 and `from`).
public struct WireAck: WireMessage, Hashable {
    public static let type = WireMessageType.ack
    public static let currentVersion: UInt8 = 2
    public var from: String
    public var incarnation: UInt64
    public var updates: [WireMemberUpdate]
    public var sequence: UInt64
    /// The member that was probed: `from` for a direct ack, another member for a relayed one.
    public var target: String

    public init(
        from: String, incarnation: UInt64, updates: [WireMemberUpdate] = [], sequence: UInt64 = 0,
        target: String? = nil
    ) {
        self.from = from
        self.incarnation = incarnation
        self.updates = updates
        self.sequence = sequence
        self.target = target ?? from
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(from)
        writer.writeVarint(incarnation)
        writer.writeUpdates(updates)
        writer.writeVarint(sequence)
        writer.writeString(target)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        from = try reader.readNodeID("ack.from")
        incarnation = try reader.readVarint("ack.incarnation")
        updates = try reader.readUpdates()
        if reader.messageVersion >= 2 {
            sequence = try reader.readVarint("ack.sequence")
            target = try reader.readNodeID("ack.target")
        } else {
            sequence = 0
            target = from
        }
    }
}

/// Ask a member to probe `target` for us. The reply is `WireIndirectAck`.
/// (Version 2 adds the requester's probe `sequence`, which the helper's answer carries.)
public struct WirePingReq: WireMessage, Hashable {
    public static let type = WireMessageType.pingReq
    public static let currentVersion: UInt8 = 2
    public var from: String
    public var target: String
    public var targetAddress: String
    public var updates: [WireMemberUpdate]
    public var sequence: UInt64

    public init(
        from: String, target: String, targetAddress: String, updates: [WireMemberUpdate] = [], sequence: UInt64 = 0
    ) {
        self.from = from
        self.target = target
        self.targetAddress = targetAddress
        self.updates = updates
        self.sequence = sequence
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(from)
        writer.writeString(target)
        writer.writeString(targetAddress)
        writer.writeUpdates(updates)
        writer.writeVarint(sequence)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        from = try reader.readNodeID("ping_req.from")
        target = try reader.readNodeID("ping_req.target")
        targetAddress = try reader.readString("ping_req.target_address", max: WireBounds.address)
        updates = try reader.readUpdates()
        sequence = reader.messageVersion >= 2 ? try reader.readVarint("ping_req.sequence") : 0
    }
}

/// Answer to `WirePingReq`: whether `target` acked the indirect probe (SWIM sends
/// `reachable: false` as Lifeguard's nack). Version 2 adds the requester's `sequence` and the
/// helper's id `from` (version 1: 0 and "").
public struct WireIndirectAck: WireMessage, Hashable {
    public static let type = WireMessageType.indirectAck
    public static let currentVersion: UInt8 = 2
    public var target: String
    public var reachable: Bool
    public var updates: [WireMemberUpdate]
    public var sequence: UInt64
    public var from: String

    public init(
        target: String, reachable: Bool, updates: [WireMemberUpdate] = [], sequence: UInt64 = 0, from: String = ""
    ) {
        self.target = target
        self.reachable = reachable
        self.updates = updates
        self.sequence = sequence
        self.from = from
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(target)
        writer.writeBool(reachable)
        writer.writeUpdates(updates)
        writer.writeVarint(sequence)
        writer.writeString(from)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        target = try reader.readNodeID("indirect_ack.target")
        reachable = try reader.readBool("indirect_ack.reachable")
        updates = try reader.readUpdates()
        if reader.messageVersion >= 2 {
            sequence = try reader.readVarint("indirect_ack.sequence")
            from = try reader.readString("indirect_ack.from", max: WireBounds.nodeID)
        } else {
            sequence = 0
            from = ""
        }
    }
}

// MARK: - Forwarding

public struct WireHeader: Hashable, Sendable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

extension WireWriter {
    mutating func writeHeaders(_ headers: [WireHeader]) {
        writeCount(headers.count)
        for header in headers {
            writeString(header.name)
            writeString(header.value)
        }
    }
}

extension WireReader {
    mutating func readHeaders(_ field: String) throws(WireError) -> [WireHeader] {
        let count = try readCount(field, max: WireBounds.headers, minElementSize: 2)
        var headers: [WireHeader] = []
        headers.reserveCapacity(count)
        for _ in 0..<count {
            let name = try readString("\(field).name", max: WireBounds.headerName)
            guard !name.isEmpty else { throw .invalidValue(field: "\(field).name", reason: "empty header name") }
            let value = try readString("\(field).value", max: WireBounds.headerValue)
            headers.append(WireHeader(name: name, value: value))
        }
        return headers
    }
}

/// An HTTP request forwarded to the node that owns the entity.
public struct WireForward: WireMessage, Hashable {
    public static let type = WireMessageType.forward
    public var method: String
    public var path: String
    public var headers: [WireHeader]
    public var body: [UInt8]

    public init(method: String, path: String, headers: [WireHeader] = [], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(method)
        writer.writeString(path)
        writer.writeHeaders(headers)
        writer.writeBytes(body)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        method = try reader.readString("forward.method", max: WireBounds.method)
        guard !method.isEmpty, method.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else {
            throw .invalidValue(field: "forward.method", reason: "not an upper-case HTTP method")
        }
        path = try reader.readString("forward.path", max: WireBounds.path)
        guard path.hasPrefix("/") else { throw .invalidValue(field: "forward.path", reason: "must start with /") }
        headers = try reader.readHeaders("forward.headers")
        body = try reader.readBytes("forward.body", max: WireBounds.blob)
    }
}

/// The owner's HTTP response to a `WireForward`.
public struct WireForwardReply: WireMessage, Hashable {
    public static let type = WireMessageType.forwardReply
    public var status: UInt16
    public var headers: [WireHeader]
    public var body: [UInt8]

    public init(status: UInt16, headers: [WireHeader] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeU16(status)
        writer.writeHeaders(headers)
        writer.writeBytes(body)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        status = try reader.readU16("forward_reply.status")
        guard (100...599).contains(status) else {
            throw .invalidValue(field: "forward_reply.status", reason: "HTTP status \(status) out of 100...599")
        }
        headers = try reader.readHeaders("forward_reply.headers")
        body = try reader.readBytes("forward_reply.body", max: WireBounds.blob)
    }
}

// MARK: - Configuration

/// A new version of one configuration document (rules, lenders, …) as JSON.
public struct WireConfigPublish: WireMessage, Hashable {
    public static let type = WireMessageType.configPublish
    public var kind: String
    public var version: UInt64
    public var json: [UInt8]

    public init(kind: String, version: UInt64, json: [UInt8]) {
        self.kind = kind
        self.version = version
        self.json = json
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(kind)
        writer.writeVarint(version)
        writer.writeBytes(json)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        kind = try reader.readKind("config_publish.kind")
        version = try reader.readVarint("config_publish.version")
        json = try reader.readBytes("config_publish.json", max: WireBounds.blob)
    }
}

/// Versions a node already has; the reply `WireConfigState` carries newer ones.
public struct WireConfigPull: WireMessage, Hashable {
    public static let type = WireMessageType.configPull
    public struct Known: Hashable, Sendable {
        public var kind: String
        public var version: UInt64
        public init(kind: String, version: UInt64) {
            self.kind = kind
            self.version = version
        }
    }
    public var known: [Known]

    public init(known: [Known]) { self.known = known }

    public func encode(into writer: inout WireWriter) {
        writer.writeCount(known.count)
        for entry in known {
            writer.writeString(entry.kind)
            writer.writeVarint(entry.version)
        }
    }

    public init(from reader: inout WireReader) throws(WireError) {
        let count = try reader.readCount("config_pull.known", max: WireBounds.configEntries, minElementSize: 2)
        var known: [Known] = []
        known.reserveCapacity(count)
        for _ in 0..<count {
            let kind = try reader.readKind("config_pull.kind")
            let version = try reader.readVarint("config_pull.version")
            known.append(Known(kind: kind, version: version))
        }
        self.known = known
    }
}

/// Current configuration documents (all, or those newer than a pull's).
public struct WireConfigState: WireMessage, Hashable {
    public static let type = WireMessageType.configState
    public var entries: [WireConfigPublish]

    public init(entries: [WireConfigPublish]) { self.entries = entries }

    public func encode(into writer: inout WireWriter) {
        writer.writeCount(entries.count)
        for entry in entries { entry.encode(into: &writer) }
    }

    public init(from reader: inout WireReader) throws(WireError) {
        let count = try reader.readCount("config_state.entries", max: WireBounds.configEntries, minElementSize: 3)
        var entries: [WireConfigPublish] = []
        entries.reserveCapacity(count)
        for _ in 0..<count { entries.append(try WireConfigPublish(from: &reader)) }
        self.entries = entries
    }
}

extension WireReader {
    mutating func readKind(_ field: String) throws(WireError) -> String {
        let kind = try readString(field, max: WireBounds.kind)
        guard !kind.isEmpty else { throw .invalidValue(field: field, reason: "empty kind") }
        return kind
    }
}

// MARK: - Shards

/// Hands one shard from its old owner to its new one, with an opaque snapshot
/// of the shard's state (JSON or journal bytes, the cluster layer decides).
public struct WireShardHandover: WireMessage, Hashable {
    public static let type = WireMessageType.shardHandover
    public var shard: UInt32
    public var epoch: UInt64
    public var fromNode: String
    public var toNode: String
    public var snapshot: [UInt8]

    public init(shard: UInt32, epoch: UInt64, fromNode: String, toNode: String, snapshot: [UInt8] = []) {
        self.shard = shard
        self.epoch = epoch
        self.fromNode = fromNode
        self.toNode = toNode
        self.snapshot = snapshot
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeVarint(UInt64(shard))
        writer.writeVarint(epoch)
        writer.writeString(fromNode)
        writer.writeString(toNode)
        writer.writeBytes(snapshot)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        shard = UInt32(try reader.readVarint("shard_handover.shard", max: UInt64(UInt32.max)))
        epoch = try reader.readVarint("shard_handover.epoch")
        fromNode = try reader.readNodeID("shard_handover.from_node")
        toNode = try reader.readNodeID("shard_handover.to_node")
        snapshot = try reader.readBytes("shard_handover.snapshot", max: WireBounds.blob)
    }
}

/// The new owner's answer to `WireShardHandover`.
public struct WireShardHandoverAck: WireMessage, Hashable {
    public static let type = WireMessageType.shardHandoverAck
    public var shard: UInt32
    public var epoch: UInt64
    public var accepted: Bool

    public init(shard: UInt32, epoch: UInt64, accepted: Bool) {
        self.shard = shard
        self.epoch = epoch
        self.accepted = accepted
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeVarint(UInt64(shard))
        writer.writeVarint(epoch)
        writer.writeBool(accepted)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        shard = UInt32(try reader.readVarint("shard_handover_ack.shard", max: UInt64(UInt32.max)))
        epoch = try reader.readVarint("shard_handover_ack.epoch")
        accepted = try reader.readBool("shard_handover_ack.accepted")
    }
}

// MARK: - Errors

/// Payload of a reply with the error flag: a machine code and a message.
public struct WireErrorReply: WireMessage, Hashable {
    public static let type = WireMessageType.errorReply
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public func encode(into writer: inout WireWriter) {
        writer.writeString(code)
        writer.writeString(message)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        code = try reader.readString("error.code", max: WireBounds.kind)
        message = try reader.readString("error.message", max: WireBounds.errorText)
    }
}
