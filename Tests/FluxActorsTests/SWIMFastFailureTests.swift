import Testing

@testable import FluxActors

/// Lost connections and failed sends make SWIM act sooner, never differently.
@Suite struct SWIMFastFailureTests {
    typealias T = SWIMStateMachineTests

    static func status(_ m: SWIMStateMachine, _ node: String) -> SWIMStatus? { m.member(NodeID(node))?.status }

    @Test func aLostConnectionIsProbedAtOnceAndAFailedPingGoesIndirectAtOnce() {
        var m = T.machine(knowing: ["b", "c"])
        let probe = T.sends(m.connectionLost(to: "b", now: .milliseconds(10)))
        guard case .ping(let seq, _)? = probe.first?.0 else {
            Issue.record("expected a ping to b, got \(probe)")
            return
        }
        #expect(probe.first?.1 == "b")
        // The ping cannot be sent (connection refused): the indirect phase starts now.
        let indirect = T.sends(m.sendFailed(.ping(sequence: seq, updates: []), to: "b", now: .milliseconds(11)))
        #expect(indirect.count == 1)
        guard case .pingReq(let reqSeq, let target, _, _)? = indirect.first?.0 else {
            Issue.record("expected a ping-req, got \(indirect)")
            return
        }
        #expect(target == "b")
        #expect(indirect.first?.1 == "c")
        #expect(Self.status(m, "b") == .alive, "nothing is concluded yet")
        // The helper cannot reach b either: with every helper's nack, b is suspect at once.
        _ = m.receive(.nack(sequence: reqSeq, target: "b", updates: []), from: "c", now: .milliseconds(20))
        #expect(Self.status(m, "b") == .suspect)
    }

    @Test func aLostConnectionToAMemberAlreadyBeingProbedWaitsItsTurnFirst() {
        var m = T.machine(knowing: ["b", "c"])
        let first = T.sends(m.tick(now: .milliseconds(1000)))
        guard let target = first.first?.1 else {
            Issue.record("no probe")
            return
        }
        let other: NodeID = target == "b" ? "c" : "b"
        // A probe is in flight: the lost member is probed next, ahead of the round robin.
        #expect(m.connectionLost(to: other, now: .milliseconds(1010)).isEmpty)
        let next = T.sends(m.tick(now: .milliseconds(2000)))
        #expect(next.contains { if case .ping = $0.0 { $0.1 == other } else { false } })
    }

    @Test func aRelayThatCannotReachTheTargetAnswersNackAtOnce() {
        var m = T.machine(knowing: ["b", "c"])
        let relay = T.sends(
            m.receive(.pingReq(sequence: 9, target: "c", targetWire: "c:7400", updates: []), from: "b", now: .zero))
        guard case .ping(let relaySeq, _)? = relay.first?.0 else {
            Issue.record("expected a relayed ping, got \(relay)")
            return
        }
        let nack = T.sends(m.sendFailed(.ping(sequence: relaySeq, updates: []), to: "c", now: .milliseconds(1)))
        #expect(nack.contains { if case .nack(9, "c", _) = $0.0 { $0.1 == "b" } else { false } })
    }

    @Test func deadAndLeftMembersAreNotProbedOnALostConnection() {
        var m = T.machine(knowing: ["b", "c"])
        _ = m.receive(.ping(sequence: 2, updates: [T.update("b", .left)]), from: "c", now: .zero)
        #expect(m.connectionLost(to: "b", now: .milliseconds(5)).isEmpty)
    }
}
