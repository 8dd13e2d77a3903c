import Testing

@testable import FluxWire

private let updates = [
    WireMemberUpdate(memberID: "node-a", address: "127.0.0.1:7400", incarnation: 3, status: .alive),
    WireMemberUpdate(memberID: "nöde-b", address: "[::1]:7401", incarnation: .max, status: .suspect),
    WireMemberUpdate(memberID: "c", address: "", incarnation: 0, status: .dead),
    WireMemberUpdate(memberID: "d", address: "h:1", incarnation: 1 << 35, status: .left),
]

private func roundTrip<M: WireMessage & Equatable>(_ message: M) throws {
    let envelope = WireEnvelope(message, correlationID: 5)
    let bytes = try WireFrameCodec().encode(envelope)
    let decoded = try WireFrameCodec().decode(bytes)
    #expect(decoded.type == M.type)
    #expect(try decoded.decode(as: M.self) == message)
    #expect(try WireMessageType.decodeAny(type: M.type, payload: message.encodedPayload()) as? M == message)
}

private func payloadError<M: WireMessage>(_ type: M.Type, _ payload: [UInt8]) -> WireError? {
    do {
        _ = try M.decode(payload)
        return nil
    } catch {
        return error
    }
}

@Suite struct WireMessageTests {
    @Test func everyMessageRoundTrips() throws {
        let nonce = [UInt8](repeating: 0xA5, count: 32)
        try roundTrip(WireHello(nodeID: "node-a", challenge: nonce))
        try roundTrip(WireChallenge(nodeID: "node-b", challenge: nonce))
        try roundTrip(WireProof(mac: nonce))
        try roundTrip(WirePing(from: "node-a", incarnation: 9, updates: updates))
        try roundTrip(WirePing(from: "node-a", incarnation: 0))
        try roundTrip(WireAck(from: "node-b", incarnation: 2, updates: updates))
        try roundTrip(WirePingReq(from: "a", target: "b", targetAddress: "127.0.0.1:7402", updates: updates))
        try roundTrip(WireIndirectAck(target: "b", reachable: true, updates: updates))
        try roundTrip(WireIndirectAck(target: "b", reachable: false))
        try roundTrip(WirePing(from: "a", incarnation: 1, updates: updates, sequence: .max))
        try roundTrip(WireAck(from: "h", incarnation: 1, updates: updates, sequence: 9, target: "t"))
        try roundTrip(WirePingReq(from: "a", target: "b", targetAddress: "h:2", updates: updates, sequence: 4))
        try roundTrip(WireIndirectAck(target: "b", reachable: false, updates: updates, sequence: 4, from: "h"))
        try roundTrip(
            WirePing(
                from: "a", incarnation: 1,
                updates: [
                    WireMemberUpdate(
                        memberID: "s", address: "h:1", incarnation: 2, status: .suspect, http: "h:8080",
                        suspectedBy: ["a", "b"])
                ]))
        try roundTrip(
            WireForward(
                method: "POST", path: "/v1/checkouts?x=1",
                headers: [
                    WireHeader(name: "content-type", value: "application/json"),
                    WireHeader(name: "idempotency-key", value: ""),
                ],
                body: Array("{\"amount_paise\":1500000}".utf8)))
        try roundTrip(WireForward(method: "GET", path: "/", body: [UInt8](repeating: 0x20, count: 100_000)))
        try roundTrip(WireForwardReply(status: 201, headers: [WireHeader(name: "x", value: "ü")], body: [1, 2, 3]))
        try roundTrip(WireConfigPublish(kind: "rules", version: 17, json: Array("{\"rules\":[]}".utf8)))
        try roundTrip(WireConfigPull(known: [.init(kind: "rules", version: 3), .init(kind: "lenders", version: 0)]))
        try roundTrip(WireConfigPull(known: []))
        try roundTrip(
            WireConfigState(entries: [
                WireConfigPublish(kind: "rules", version: 4, json: Array("{}".utf8)),
                WireConfigPublish(kind: "lenders", version: 1, json: []),
            ]))
        try roundTrip(WireShardHandover(shard: 255, epoch: 12, fromNode: "a", toNode: "b", snapshot: [0, 1, 2]))
        try roundTrip(WireShardHandoverAck(shard: UInt32.max, epoch: 1, accepted: true))
        try roundTrip(WireErrorReply(code: "not_owner", message: "shard 3 moved"))
    }

    @Test func varintsRoundTripAtEveryWidth() throws {
        for value: UInt64 in [0, 1, 127, 128, 300, 1 << 32, (1 << 63) - 1, 1 << 63, .max] {
            var w = WireWriter()
            w.writeVarint(value)
            var r = WireReader(w.bytes)
            #expect(try r.readVarint("v") == value)
            try r.finish()
        }
        var w = WireWriter()
        w.writeVarint(.max)
        #expect(w.bytes.count == 10)
    }

    @Test func varintOverflowIsRefused() {
        var eleven = WireReader([UInt8](repeating: 0xFF, count: 10) + [0x01])
        #expect(throws: WireError.varintOverflow(field: "v")) { try eleven.readVarint("v") }
        var tooBigTenth = WireReader([UInt8](repeating: 0xFF, count: 9) + [0x02])
        #expect(throws: WireError.varintOverflow(field: "v")) { try tooBigTenth.readVarint("v") }
        var unterminated = WireReader([0x80, 0x80])
        #expect(throws: WireError.truncated(field: "v")) { try unterminated.readVarint("v") }
    }

    @Test func unknownMessageVersion() {
        #expect(payloadError(WirePing.self, [3, 1, 0x61, 0, 0]) == .unsupportedMessageVersion(type: 0x10, version: 3))
        #expect(payloadError(WireHello.self, [2]) == .unsupportedMessageVersion(type: 0x01, version: 2))
        #expect(payloadError(WirePing.self, [0, 1, 0x61, 0, 0]) == .unsupportedMessageVersion(type: 0x10, version: 0))
        #expect(payloadError(WirePing.self, []) == .truncated(field: "message version"))
    }

    @Test func version1SWIMPayloadsDecodeWithDefaults() throws {
        // Version 1 of Ack: from, incarnation, updates; no sequence or target.
        var w = WireWriter()
        w.writeU8(1)
        w.writeString("b")
        w.writeVarint(3)
        w.writeCount(1)
        w.writeString("c")
        w.writeString("h:1")
        w.writeVarint(4)
        w.writeU8(2)
        let ack = try WireAck.decode(w.bytes)
        #expect(
            ack
                == WireAck(
                    from: "b", incarnation: 3,
                    updates: [WireMemberUpdate(memberID: "c", address: "h:1", incarnation: 4, status: .dead)],
                    sequence: 0, target: "b"))
        #expect(WireAck.supportedVersions == 1...2)
        #expect(WireAck(from: "b", incarnation: 0).encodedPayload().first == 2)
    }

    @Test func trailingBytes() {
        var payload = WirePing(from: "a", incarnation: 1).encodedPayload()
        payload += [0, 0]
        #expect(payloadError(WirePing.self, payload) == .trailingBytes(count: 2))
    }

    @Test func truncatedPayloads() {
        let full = WireForward(
            method: "POST", path: "/x", headers: [WireHeader(name: "a", value: "b")], body: [1, 2, 3]
        ).encodedPayload()
        // Every strict prefix fails with a typed error, never a trap.
        for length in 0..<full.count {
            #expect(payloadError(WireForward.self, Array(full.prefix(length))) != nil)
        }
    }

    @Test func countsOverBounds() {
        var w = WireWriter()
        w.writeU8(1)
        w.writeString("a")
        w.writeVarint(1)
        w.writeCount(WireBounds.updates + 1)
        #expect(
            payloadError(WirePing.self, w.bytes)
                == .countOverBound(field: "updates", count: UInt64(WireBounds.updates + 1), max: WireBounds.updates))
        // A count within the bound but larger than the bytes left is refused before allocation.
        var lying = WireWriter()
        lying.writeU8(1)
        lying.writeString("a")
        lying.writeVarint(1)
        lying.writeCount(200)
        #expect(payloadError(WirePing.self, lying.bytes) == .truncated(field: "updates"))
        var huge = WireWriter()
        huge.writeU8(1)
        huge.writeVarint(.max)
        #expect(
            payloadError(WireConfigPull.self, huge.bytes)
                == .countOverBound(field: "config_pull.known", count: .max, max: WireBounds.configEntries))
    }

    @Test func lengthsOverBounds() {
        var w = WireWriter()
        w.writeU8(1)
        w.writeString(String(repeating: "x", count: WireBounds.nodeID + 1))
        #expect(
            payloadError(WirePing.self, w.bytes)
                == .lengthOverBound(field: "ping.from", length: UInt64(WireBounds.nodeID + 1), max: WireBounds.nodeID))
        // A body length larger than the payload is refused without allocating it.
        var body = WireWriter()
        body.writeU8(1)
        body.writeString("GET")
        body.writeString("/")
        body.writeCount(0)
        body.writeVarint(1 << 29)
        #expect(payloadError(WireForward.self, body.bytes) == .truncated(field: "forward.body"))
    }

    @Test func stringsMustBeValidUTF8() {
        var w = WireWriter()
        w.writeU8(1)
        w.writeBytes([0x61, 0xC3, 0x28])  // 0xC3 0x28 is an invalid sequence
        w.writeVarint(1)
        w.writeCount(0)
        #expect(payloadError(WirePing.self, w.bytes) == .invalidUTF8(field: "ping.from"))
        var lone = WireWriter()
        lone.writeU8(1)
        lone.writeBytes([0xED, 0xA0, 0x80])  // UTF-16 surrogate encoded in UTF-8
        lone.writeBytes([UInt8](repeating: 0, count: 32))
        #expect(payloadError(WireHello.self, lone.bytes) == .invalidUTF8(field: "hello.node_id"))
    }

    @Test func invalidValuesAreRefused() {
        var status = WireWriter()
        status.writeU8(1)
        status.writeString("a")
        status.writeVarint(1)
        status.writeCount(1)
        status.writeString("b")
        status.writeString("h:1")
        status.writeVarint(1)
        status.writeU8(9)
        #expect(
            payloadError(WirePing.self, status.bytes)
                == .invalidValue(field: "update.status", reason: "unknown status 9"))
        var bool = WireWriter()
        bool.writeU8(1)
        bool.writeString("t")
        bool.writeU8(2)
        bool.writeCount(0)
        #expect(
            payloadError(WireIndirectAck.self, bool.bytes)
                == .invalidValue(field: "indirect_ack.reachable", reason: "boolean byte 2 is neither 0 nor 1"))
        var reply = WireWriter()
        reply.writeU8(1)
        reply.writeU16(99)
        #expect(payloadError(WireForwardReply.self, reply.bytes) != nil)
        var nonce = WireWriter()
        nonce.writeU8(1)
        nonce.writeString("a")
        nonce.writeBytes([1, 2, 3])
        #expect(
            payloadError(WireHello.self, nonce.bytes)
                == .invalidValue(field: "hello.challenge", reason: "3 bytes, expected 32"))
    }

    @Test func errorRepliesAndWrongTypesDecodeToTypedErrors() {
        let error = WireEnvelope.errorReply(code: "busy", message: "try later")
        #expect(throws: WireError.remote(code: "busy", message: "try later")) { try error.decode(as: WireAck.self) }
        let ping = WireEnvelope(WirePing(from: "a", incarnation: 1))
        #expect(throws: WireError.unexpectedMessage(expected: WireMessageType.ack, got: WireMessageType.ping)) {
            try ping.decode(as: WireAck.self)
        }
    }
}
