import Testing

@testable import FluxWire

private let secret = Array("correct horse battery staple".utf8)
private let clientNonce = [UInt8](repeating: 0x11, count: 32)
private let serverNonce = [UInt8](repeating: 0x22, count: 32)

private func pair(
    clientSecret: [UInt8] = secret, serverSecret: [UInt8] = secret, expected: String? = nil
) -> (WireHandshake, WireHandshake) {
    (
        WireHandshake(
            role: .client(expectedPeer: expected), localNodeID: "client", secret: clientSecret, challenge: clientNonce),
        WireHandshake(role: .server, localNodeID: "server", secret: serverSecret, challenge: serverNonce)
    )
}

private func sent(_ action: WireHandshake.Action) -> WireEnvelope? {
    if case .send(let envelope) = action { return envelope }
    return nil
}

@Suite struct WireHandshakeTests {
    @Test func mutualHandshakeCompletesOnBothSides() throws {
        var (client, server) = pair(expected: "server")
        #expect(server.start() == .none)
        let hello = try #require(sent(client.start()))
        #expect(hello.type == WireMessageType.hello)
        let challenge = try #require(sent(server.receive(hello)))
        #expect(try challenge.decode(as: WireChallenge.self).challenge == serverNonce)
        let proof = try #require(sent(client.receive(challenge)))
        #expect(
            try proof.decode(as: WireProof.self).mac
                == WireHandshake.proof(secret: secret, challenge: serverNonce, prover: "client", verifier: "server"))
        guard case .complete("client", let serverProof?) = server.receive(proof) else {
            Issue.record("server did not complete")
            return
        }
        #expect(server.isComplete && server.peerNodeID == "client")
        #expect(client.receive(serverProof) == .complete(peerNodeID: "server", send: nil))
        #expect(client.isComplete && client.peerNodeID == "server")
    }

    @Test func wrongSecretIsABadProof() throws {
        var (client, server) = pair(clientSecret: Array("wrong".utf8))
        _ = server.start()
        let hello = try #require(sent(client.start()))
        let challenge = try #require(sent(server.receive(hello)))
        let proof = try #require(sent(client.receive(challenge)))
        #expect(server.receive(proof) == .fail(.badProof))
        #expect(!server.isComplete)
        // Once failed, it stays failed.
        #expect(server.receive(proof) == .fail(.badProof))
    }

    @Test func serverWithWrongSecretIsRefusedByTheClient() throws {
        var (client, server) = pair(serverSecret: Array("impostor".utf8))
        _ = server.start()
        let hello = try #require(sent(client.start()))
        let challenge = try #require(sent(server.receive(hello)))
        let proof = try #require(sent(client.receive(challenge)))
        // The impostor cannot verify our proof; even if it answered with a forged MAC we refuse it.
        let forged = WireEnvelope(
            WireProof(
                mac: WireHandshake.proof(
                    secret: Array("impostor".utf8), challenge: clientNonce, prover: "server", verifier: "client")))
        #expect(server.receive(proof) == .fail(.badProof))
        #expect(client.receive(forged) == .fail(.badProof))
    }

    @Test func reflectedProofIsRefused() throws {
        // The client's own proof sent back to it must not count as the server's.
        var (client, server) = pair()
        _ = server.start()
        let hello = try #require(sent(client.start()))
        let challenge = try #require(sent(server.receive(hello)))
        _ = client.receive(challenge)
        let reflected = WireEnvelope(
            WireProof(
                mac: WireHandshake.proof(secret: secret, challenge: clientNonce, prover: "client", verifier: "server")))
        #expect(client.receive(reflected) == .fail(.badProof))
    }

    @Test func frameBeforeHandshakeIsRefused() {
        var (_, server) = pair()
        _ = server.start()
        let ping = WireEnvelope(WirePing(from: "x", incarnation: 1), correlationID: 1)
        #expect(server.receive(ping) == .fail(.notAuthenticated(type: WireMessageType.ping)))
        var (client, _) = pair()
        _ = client.start()
        #expect(
            client.receive(WireEnvelope(WireAck(from: "server", incarnation: 1)))
                == .fail(.notAuthenticated(type: WireMessageType.ack)))
    }

    @Test func handshakeFrameWithCorrelationIDOrFlagsIsRefused() throws {
        var (client, server) = pair()
        _ = server.start()
        var hello = try #require(sent(client.start()))
        hello.header.correlationID = 9
        #expect(server.receive(hello) == .fail(.notAuthenticated(type: WireMessageType.hello)))
        var (client2, server2) = pair()
        _ = server2.start()
        var flagged = try #require(sent(client2.start()))
        flagged.header.flags = .reply
        #expect(server2.receive(flagged) == .fail(.notAuthenticated(type: WireMessageType.hello)))
    }

    @Test func handshakeMessagesOutOfOrderAreRefused() {
        var (_, server) = pair()
        _ = server.start()
        let proof = WireEnvelope(WireProof(mac: [UInt8](repeating: 0, count: 32)))
        #expect(
            server.receive(proof)
                == .fail(.unexpectedMessage(expected: WireMessageType.hello, got: WireMessageType.proof)))
    }

    @Test func malformedHelloIsRefused() {
        var (_, server) = pair()
        _ = server.start()
        let bad = WireEnvelope(type: WireMessageType.hello, payload: [1, 0])
        #expect(server.receive(bad) == .fail(.invalidValue(field: "hello.node_id", reason: "empty node id")))
    }

    @Test func unexpectedServerIdentityIsRefused() throws {
        var (client, server) = pair(expected: "someone-else")
        _ = server.start()
        let hello = try #require(sent(client.start()))
        let challenge = try #require(sent(server.receive(hello)))
        #expect(client.receive(challenge) == .fail(.unexpectedPeer(expected: "someone-else", got: "server")))
    }

    @Test func timeoutFailsOnlyAnUnfinishedHandshake() throws {
        var (client, server) = pair()
        _ = server.start()
        #expect(server.timedOut() == .fail(.handshakeTimeout))
        _ = client.start()
        var (c2, s2) = pair()
        _ = s2.start()
        let hello = try #require(sent(c2.start()))
        let challenge = try #require(sent(s2.receive(hello)))
        let proof = try #require(sent(c2.receive(challenge)))
        guard case .complete(_, let back?) = s2.receive(proof) else {
            Issue.record("no completion")
            return
        }
        _ = c2.receive(back)
        #expect(c2.timedOut() == .none)
        #expect(s2.timedOut() == .none)
    }

    @Test func macInputSeparatesIds() {
        // ("ab", "c") and ("a", "bc") must not produce the same MAC input.
        #expect(
            WireHandshake.macInput(challenge: [], prover: "ab", verifier: "c")
                != WireHandshake.macInput(challenge: [], prover: "a", verifier: "bc"))
    }
}

@Suite struct WireBackoffTests {
    @Test func backoffDoublesUpToTheCapWithJitter() {
        var backoff = WireBackoff(policy: .init(base: .milliseconds(100), cap: .seconds(1), jitter: 0.5))
        #expect(backoff.delay(random: 0) == .zero)
        #expect(backoff.failed(random: 0) == .milliseconds(100))
        #expect(backoff.failed(random: 0) == .milliseconds(200))
        #expect(backoff.failed(random: 0) == .milliseconds(400))
        #expect(backoff.failed(random: 0) == .milliseconds(800))
        #expect(backoff.failed(random: 0) == .seconds(1))
        for _ in 0..<100 { _ = backoff.failed(random: 0) }
        #expect(backoff.delay(random: 0) == .seconds(1))
        #expect(backoff.delay(random: 1) == .milliseconds(500))
        backoff.succeeded()
        #expect(backoff.failures == 0)
        #expect(backoff.delay(random: 1) == .zero)
    }
}
