import FluxWire
import Testing

@testable import FluxActors

private let updates: [MemberUpdate] = [
    MemberUpdate(
        node: "n1", wire: "127.0.0.1:7401", http: "127.0.0.1:8001", incarnation: 1_700_000_000_123, status: .alive),
    MemberUpdate(
        node: "n2", wire: "[::1]:7402", http: "h:8002", incarnation: .max, status: .suspect, suspectedBy: ["n1", "n3"]),
    MemberUpdate(node: "n3", wire: "h:7403", http: "", incarnation: 0, status: .dead),
    MemberUpdate(node: "nöde-4", wire: "h:7404", http: "h:8004", incarnation: 7, status: .left),
]

/// Through the whole frame codec and back.
private func roundTrip(_ message: SWIMMessage, from: NodeID = "n1") throws -> (SWIMMessage, NodeID?) {
    let envelope = SWIMWireCodec.encode(message, from: from, incarnation: 9)
    #expect(envelope.correlationID == 0, "SWIM messages are tells")
    let bytes = try WireFrameCodec().encode(envelope)
    let decoded = try SWIMWireCodec.decode(try WireFrameCodec().decode(bytes))
    return (decoded.message, decoded.from)
}

@Suite struct SWIMWireCodecTests {
    @Test func everySWIMMessageRoundTrips() throws {
        let messages: [SWIMMessage] = [
            .ping(sequence: 0, updates: [updates[0]]),
            .ping(sequence: 42, updates: updates),
            .ack(sequence: 42, target: "n1", updates: updates),
            .ack(sequence: 7, target: "n3", updates: []),
            .pingReq(sequence: .max, target: "n2", targetWire: "[::1]:7402", updates: updates),
            .nack(sequence: 3, target: "n2", updates: updates),
        ]
        for m in messages {
            let (back, from) = try roundTrip(m)
            #expect(back == m)
            #expect(from == "n1")
        }
    }

    @Test func frameTypes() {
        let types = [
            SWIMMessage.ping(sequence: 1, updates: []), .ack(sequence: 1, target: "a", updates: []),
            .pingReq(sequence: 1, target: "a", targetWire: "h:1", updates: []),
            .nack(sequence: 1, target: "a", updates: []),
        ].map { SWIMWireCodec.encode($0, from: "n", incarnation: 0).type }
        #expect(
            types == [WireMessageType.ping, WireMessageType.ack, WireMessageType.pingReq, WireMessageType.indirectAck])
        #expect(Set(types) == SWIMWireCodec.messageTypes)
    }

    @Test func suspectersOnlyTravelWithSuspicions() throws {
        var alive = updates[0]
        alive.suspectedBy = ["x"]
        #expect(SWIMWireCodec.wire(alive).suspectedBy == [])
        let (back, _) = try roundTrip(.ping(sequence: 1, updates: [updates[1]]))
        #expect(back.updates.first?.suspectedBy == ["n1", "n3"])
    }

    @Test func encodingStaysWithinTheWireBounds() throws {
        let many = (0..<300).map {
            MemberUpdate(node: NodeID("n\($0)"), wire: "h:\($0 + 1)", http: "", incarnation: 1, status: .alive)
        }
        let (back, _) = try roundTrip(.ack(sequence: 0, target: "n1", updates: many))
        #expect(back.updates.count == WireBounds.updates)
        let suspecters = (0..<40).map { NodeID("s\($0)") }
        let suspect = MemberUpdate(
            node: "x", wire: "h:1", http: "", incarnation: 1, status: .suspect, suspectedBy: suspecters)
        let (one, _) = try roundTrip(.ping(sequence: 2, updates: [suspect]))
        #expect(one.updates.first?.suspectedBy == Array(suspecters.prefix(WireBounds.suspecters)))
    }

    @Test func version1PayloadsStillDecode() throws {
        // A version-1 Ping: from, incarnation, [id, address, incarnation, status].
        var w = WireWriter()
        w.writeU8(1)
        w.writeString("n2")
        w.writeVarint(5)
        w.writeCount(1)
        w.writeString("n2")
        w.writeString("h:7402")
        w.writeVarint(5)
        w.writeU8(1)
        let (message, from) = try SWIMWireCodec.decode(WireEnvelope(type: WireMessageType.ping, payload: w.bytes))
        #expect(from == "n2")
        #expect(
            message
                == .ping(
                    sequence: 0,
                    updates: [MemberUpdate(node: "n2", wire: "h:7402", http: "", incarnation: 5, status: .suspect)]))
        // A version-1 IndirectAck names no sender.
        let current = WireIndirectAck(target: "t", reachable: true).encodedPayload()
        var old = WireWriter()
        old.writeU8(1)
        old.writeString("t")
        old.writeBool(true)
        old.writeCount(0)
        #expect(current.first == 2 && old.bytes.first == 1)
        let decoded = try SWIMWireCodec.decode(WireEnvelope(type: WireMessageType.indirectAck, payload: old.bytes))
        #expect(decoded.from == nil)
        #expect(decoded.message == .ack(sequence: 0, target: "t", updates: []))
    }

    @Test func badVersion2UpdatesAreRefused() {
        func ping(_ build: (inout WireWriter) -> Void) -> WireError? {
            var w = WireWriter()
            w.writeU8(2)
            w.writeString("a")
            w.writeVarint(1)
            w.writeCount(1)
            w.writeString("b")
            w.writeString("h:1")
            w.writeVarint(1)
            w.writeU8(1)
            build(&w)
            do {
                _ = try SWIMWireCodec.decode(WireEnvelope(type: WireMessageType.ping, payload: w.bytes))
                return nil
            } catch { return error }
        }
        #expect(
            ping { w in
                w.writeString(String(repeating: "x", count: WireBounds.address + 1))
            } == .lengthOverBound(field: "update.http", length: UInt64(WireBounds.address + 1), max: WireBounds.address)
        )
        #expect(
            ping { w in
                w.writeString("")
                w.writeCount(WireBounds.suspecters + 1)
            }
                == .countOverBound(
                    field: "update.suspected_by", count: UInt64(WireBounds.suspecters + 1), max: WireBounds.suspecters))
        #expect(
            ping { w in
                w.writeString("")
                w.writeCount(1)
                w.writeString("")
                w.writeVarint(0)
            } == .invalidValue(field: "update.suspected_by", reason: "empty node id"))
        // A count larger than the bytes left is refused before anything is allocated.
        #expect(
            ping { w in
                w.writeString("")
                w.writeCount(10)
            } == .truncated(field: "update.suspected_by"))
        // Missing sequence number.
        #expect(
            ping { w in
                w.writeString("")
                w.writeCount(0)
            } == .truncated(field: "ping.sequence"))
        #expect(
            ping { w in
                w.writeString("")
                w.writeCount(0)
                w.writeVarint(1)
            } == nil)
    }

    @Test func everyTruncationFailsWithATypedError() {
        let payload = SWIMWireCodec.encode(
            .pingReq(sequence: 300, target: "n2", targetWire: "h:2", updates: updates), from: "n1", incarnation: 1
        ).payload
        for length in 0..<payload.count {
            #expect(throws: WireError.self) {
                try SWIMWireCodec.decode(
                    WireEnvelope(type: WireMessageType.pingReq, payload: Array(payload.prefix(length))))
            }
        }
    }

    @Test func otherFramesAreNotSWIM() {
        #expect(throws: WireError.self) {
            try SWIMWireCodec.decode(WireEnvelope(WireConfigPull(known: [])))
        }
    }

    @Test func hostPortParsing() {
        #expect(ClusterMembership.hostPort("127.0.0.1:7400")! == ("127.0.0.1", 7400))
        #expect(ClusterMembership.hostPort("[::1]:7400")! == ("::1", 7400))
        #expect(ClusterMembership.hostPort("h:0") == nil)
        #expect(ClusterMembership.hostPort("h") == nil)
        #expect(ClusterMembership.hostPort(":1") == nil)
    }
}
