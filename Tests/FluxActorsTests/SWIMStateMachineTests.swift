import Testing

@testable import FluxActors

/// `SWIMStateMachine` driven message by message.
@Suite struct SWIMStateMachineTests {
    static func update(_ n: String, _ status: SWIMStatus = .alive, inc: UInt64 = 0, by: [NodeID] = [])
        -> MemberUpdate
    {
        MemberUpdate(
            node: NodeID(n), wire: "\(n):7400", http: "\(n):8080", incarnation: inc, status: status, suspectedBy: by)
    }

    /// Node "a" that knows `others` as alive.
    static func machine(knowing others: [String], settings: SWIMSettings = SWIMSettings()) -> SWIMStateMachine {
        var m = SWIMStateMachine(node: "a", wire: "a:7400", http: "a:8080", settings: settings, seed: 7)
        guard let first = others.first else { return m }
        _ = m.receive(.ping(sequence: 1, updates: others.map { update($0) }), from: NodeID(first), now: .zero)
        return m
    }

    static func sends(_ ds: [SWIMDirective]) -> [(SWIMMessage, NodeID?, String)] {
        ds.compactMap { if case .send(let m, let n, let w) = $0 { (m, n, w) } else { nil } }
    }

    @Test func precedence() {
        let u = Self.update
        // Same incarnation: alive < suspect < dead < left.
        #expect(u("x", .suspect, 3, []).supersedes(u("x", .alive, 3, [])))
        #expect(u("x", .dead, 3, []).supersedes(u("x", .suspect, 3, [])))
        #expect(u("x", .left, 3, []).supersedes(u("x", .dead, 3, [])))
        #expect(!u("x", .alive, 3, []).supersedes(u("x", .suspect, 3, [])))
        #expect(!u("x", .alive, 3, []).supersedes(u("x", .alive, 3, [])))
        // A higher incarnation wins over anything older, including death.
        #expect(u("x", .alive, 4, []).supersedes(u("x", .dead, 3, [])))
        #expect(!u("x", .dead, 2, []).supersedes(u("x", .alive, 3, [])))
    }

    @Test func lifeguardSuspicionTimeout() {
        let s = SWIMSettings()
        let lo = s.suspicionMinimum(members: 50)
        // 4 · log10(51) · 1 s ≈ 6.83 s; max = 6 × that.
        #expect(abs((lo / .milliseconds(1)) - 6830.3) < 1)
        #expect(s.suspicionTimeout(members: 50, confirmations: 0) == lo * 6)
        #expect(s.suspicionTimeout(members: 50, confirmations: 3) == lo)
        #expect(s.suspicionTimeout(members: 50, confirmations: 10) == lo)
        let t1 = s.suspicionTimeout(members: 50, confirmations: 1)
        let t2 = s.suspicionTimeout(members: 50, confirmations: 2)
        #expect(lo * 6 > t1 && t1 > t2 && t2 > lo)
        // Two nodes: nobody can confirm, so the minimum applies.
        #expect(s.suspicionTimeout(members: 2, confirmations: 0) == s.suspicionMinimum(members: 2))
        #expect(s.gossipTransmissions(members: 50) == 7)
        #expect(s.gossipTransmissions(members: 1) == 2)
    }

    @Test func settingsFromConfigAreValidated() throws {
        #expect(try SWIMSettings.fromConfig() == SWIMSettings())
        #expect(throws: SWIMSettingsError.self) { try SWIMSettings.fromConfig(pingTimeoutMS: 1000) }
        #expect(throws: SWIMSettingsError.self) { try SWIMSettings.fromConfig(indirectProbes: -1) }
        #expect(throws: SWIMSettingsError.self) { try SWIMSettings.fromConfig(probeIntervalMS: 0) }
        #expect(throws: SWIMSettingsError.self) { try SWIMSettings.fromConfig(suspicionMaxMult: 0) }
        do {
            _ = try SWIMSettings.fromConfig(pingTimeoutMS: 2000)
        } catch {
            #expect(error.key == "ping_timeout_ms")
        }
    }

    @Test func joinPingsSeedsAndSeedAnswersWithFullList() {
        var joiner = SWIMStateMachine(node: "j", wire: "j:7400", http: "j:8080", seed: 1)
        let pings = Self.sends(joiner.join(seeds: ["a:7400", "j:7400"]))
        #expect(pings.count == 1)  // its own address is skipped
        guard case .ping(0, let updates)? = pings.first?.0 else {
            Issue.record("expected a join ping")
            return
        }
        #expect(pings.first?.1 == nil && pings.first?.2 == "a:7400")

        var seed = Self.machine(knowing: ["b", "c", "d"])
        let out = seed.receive(.ping(sequence: 0, updates: updates), from: "j", now: .seconds(1))
        #expect(out.contains { if case .memberChanged(let m, nil) = $0 { m.node == "j" } else { false } })
        guard case .ack(0, "a", let list)? = Self.sends(out).first?.0 else {
            Issue.record("expected an ack")
            return
        }
        #expect(Set(list.map(\.node)) == ["a", "b", "c", "d", "j"])

        _ = joiner.receive(.ack(sequence: 0, target: "a", updates: list), from: "a", now: .seconds(1))
        #expect(joiner.clusterMembers == ["a", "b", "c", "d", "j"])
    }

    @Test func failedProbeGoesIndirectThenSuspectThenDead() throws {
        var m = Self.machine(knowing: ["b", "c", "d", "e"])
        let tick = m.tick(now: .seconds(1))
        let (ping, target, _) = try #require(Self.sends(tick).first)
        guard case .ping(let seq, _) = ping, let target else {
            Issue.record("expected a ping")
            return
        }
        #expect(tick.contains(.schedule(.pingTimeout(sequence: seq), after: .milliseconds(500))))

        let indirect = m.pingTimedOut(sequence: seq, now: .milliseconds(1500))
        let reqs = Self.sends(indirect)
        #expect(reqs.count == 3)
        #expect(reqs.allSatisfy { if case .pingReq(seq, target, _, _) = $0.0 { $0.1 != target } else { false } })
        #expect(Set(reqs.map { $0.1 }).count == 3)
        #expect(indirect.contains(.schedule(.indirectTimeout(sequence: seq), after: .milliseconds(500))))
        // A stale or repeated timeout changes nothing.
        #expect(m.pingTimedOut(sequence: seq, now: .milliseconds(1600)).isEmpty)

        let suspicion = m.indirectTimedOut(sequence: seq, now: .seconds(2))
        #expect(m.status(of: target) == .suspect)
        let timeout = m.settings.suspicionTimeout(members: 5, confirmations: 0)
        #expect(suspicion.contains(.suspicionTimeout(target, timeout: timeout)))
        #expect(suspicion.contains(.schedule(.suspicion(target), after: timeout)))

        // Too early: nothing; at the deadline: dead.
        #expect(m.suspicionTimedOut(target, now: .seconds(2) + timeout - .milliseconds(1)).isEmpty)
        let death = m.suspicionTimedOut(target, now: .seconds(2) + timeout)
        #expect(m.status(of: target) == .dead)
        #expect(death.contains { if case .memberChanged(let x, .suspect) = $0 { x.status == .dead } else { false } })
        #expect(!m.clusterMembers.contains(target))
    }

    @Test func ackInTimeCancelsTheProbe() throws {
        var m = Self.machine(knowing: ["b", "c"])
        let (ping, target, _) = try #require(Self.sends(m.tick(now: .seconds(1))).first)
        let seq = ping.sequence
        _ = m.receive(
            .ack(sequence: seq, target: target!, updates: [Self.update(target!.rawValue)]), from: target!,
            now: .milliseconds(1100))
        #expect(m.pingTimedOut(sequence: seq, now: .milliseconds(1500)).isEmpty)
        #expect(m.indirectTimedOut(sequence: seq, now: .seconds(2)).isEmpty)
        #expect(m.status(of: target!) == .alive)
    }

    @Test func relaysPingReqAndForwardsAckOrNack() throws {
        var m = Self.machine(knowing: ["b", "c"])
        let out = m.receive(
            .pingReq(sequence: 42, target: "c", targetWire: "c:7400", updates: [Self.update("b")]), from: "b",
            now: .seconds(1))
        let (ping, to, wire) = try #require(Self.sends(out).first)
        #expect(to == "c" && wire == "c:7400")
        let relaySeq = ping.sequence
        #expect(relaySeq != 42)
        let forwarded = Self.sends(
            m.receive(.ack(sequence: relaySeq, target: "c", updates: [Self.update("c")]), from: "c", now: .seconds(1)))
        guard case .ack(42, "c", _)? = forwarded.first?.0 else {
            Issue.record("expected the ack forwarded with the requester's sequence")
            return
        }
        #expect(forwarded.first?.1 == "b")

        let out2 = m.receive(
            .pingReq(sequence: 43, target: "c", targetWire: "c:7400", updates: [Self.update("b")]), from: "b",
            now: .seconds(2))
        let seq2 = try #require(Self.sends(out2).first).0.sequence
        let nack = Self.sends(m.pingTimedOut(sequence: seq2, now: .milliseconds(2400)))
        guard case .nack(43, "c", _)? = nack.first?.0 else {
            Issue.record("expected a nack")
            return
        }
    }

    @Test func suspectedNodeRefutesWithAHigherIncarnation() throws {
        var m = Self.machine(knowing: ["b"])
        let out = m.receive(
            .ping(sequence: 9, updates: [Self.update("b"), Self.update("a", .suspect, inc: 0, by: ["b"])]), from: "b",
            now: .seconds(1))
        #expect(out.contains(.refuted(previous: .suspect, incarnation: 1)))
        #expect(m.incarnation == 1)
        guard case .ack(9, "a", let updates)? = Self.sends(out).first?.0 else {
            Issue.record("expected an ack")
            return
        }
        #expect(updates.first == Self.update("a", .alive, inc: 1))
        // Old news about itself changes nothing.
        let again = m.receive(
            .ping(sequence: 10, updates: [Self.update("a", .suspect, inc: 0)]), from: "b", now: .seconds(2))
        #expect(!again.contains { if case .refuted = $0 { true } else { false } })
        #expect(m.incarnation == 1)
    }

    @Test func suspicionIsClearedByRefutationAndShortenedByConfirmations() {
        var m = Self.machine(knowing: ["b", "c", "d", "e", "f"])
        _ = m.receive(
            .ping(sequence: 2, updates: [Self.update("b"), Self.update("c", .suspect, by: ["b"])]), from: "b",
            now: .seconds(1))
        #expect(m.status(of: "c") == .suspect)
        let confirmed = m.receive(
            .ping(sequence: 3, updates: [Self.update("d"), Self.update("c", .suspect, by: ["d"])]), from: "d",
            now: .seconds(2))
        let shorter = m.settings.suspicionTimeout(members: 6, confirmations: 1)
        #expect(confirmed.contains(.suspicionTimeout("c", timeout: shorter)))
        // The same confirmer again does not count twice.
        let repeated = m.receive(
            .ping(sequence: 4, updates: [Self.update("d"), Self.update("c", .suspect, by: ["d"])]), from: "d",
            now: .seconds(2))
        #expect(!repeated.contains { if case .suspicionTimeout = $0 { true } else { false } })
        // c refutes.
        let refuted = m.receive(.ping(sequence: 5, updates: [Self.update("c", inc: 1)]), from: "c", now: .seconds(3))
        #expect(m.status(of: "c") == .alive)
        #expect(
            refuted.contains {
                if case .memberChanged(let x, .suspect) = $0 { x.node == "c" && x.status == .alive } else { false }
            })
        // The old suspicion's timer firing later does nothing.
        #expect(m.suspicionTimedOut("c", now: .seconds(100)).isEmpty)
    }

    @Test func deadNeedsAHigherIncarnationToComeBack() {
        var m = Self.machine(knowing: ["b", "c"])
        _ = m.receive(
            .ping(sequence: 2, updates: [Self.update("b"), Self.update("c", .dead)]), from: "b", now: .seconds(1))
        #expect(m.status(of: "c") == .dead)
        // c, unaware, still says alive at incarnation 0: ignored, and told it is dead.
        let out = m.receive(.ping(sequence: 3, updates: [Self.update("c")]), from: "c", now: .seconds(2))
        #expect(m.status(of: "c") == .dead)
        guard case .ack(3, "a", let updates)? = Self.sends(out).first?.0 else {
            Issue.record("expected an ack")
            return
        }
        #expect(updates.contains(Self.update("c", .dead)))
        // With incarnation 1 it is back, and gets the full member list.
        let back = m.receive(.ping(sequence: 4, updates: [Self.update("c", inc: 1)]), from: "c", now: .seconds(3))
        #expect(m.status(of: "c") == .alive)
        guard case .ack(4, "a", let list)? = Self.sends(back).first?.0 else {
            Issue.record("expected an ack")
            return
        }
        #expect(Set(list.map(\.node)) == ["a", "b", "c"])
    }

    @Test func leaveAnnouncesLeftAndStopsProbing() {
        var m = Self.machine(knowing: ["b", "c"])
        let out = Self.sends(m.leave())
        #expect(Set(out.compactMap { $0.1 }) == ["b", "c"])
        #expect(out.allSatisfy { $0.0.updates.first == Self.update("a", .left) })
        #expect(m.status == .left)
        #expect(!m.clusterMembers.contains("a"))
        #expect(Self.sends(m.tick(now: .seconds(5))).isEmpty)
        // Someone calling it dead does not make it come back.
        _ = m.receive(.ping(sequence: 2, updates: [Self.update("a", .dead)]), from: "b", now: .seconds(6))
        #expect(m.status == .left && m.incarnation == 0)

        var other = Self.machine(knowing: ["b"])
        _ = other.receive(.ping(sequence: 3, updates: [Self.update("b", .left)]), from: "b", now: .seconds(1))
        #expect(other.status(of: "b") == .left)
        // A late death report about the same incarnation does not override `left`.
        _ = other.receive(
            .ping(sequence: 4, updates: [Self.update("c"), Self.update("b", .dead)]), from: "c", now: .seconds(2))
        #expect(other.status(of: "b") == .left)
    }

    @Test func deadAndLeftMembersStayListedForAnHour() {
        var m = Self.machine(knowing: ["b", "c"])
        _ = m.receive(
            .ping(sequence: 2, updates: [Self.update("b"), Self.update("c", .dead)]), from: "b", now: .seconds(10))
        _ = m.tick(now: .seconds(10) + .seconds(3599))
        #expect(m.member("c")?.status == .dead)
        #expect(m.members.map(\.node) == ["a", "b", "c"])
        let out = m.tick(now: .seconds(10) + .seconds(3600))
        #expect(out.contains(.memberRemoved("c")))
        #expect(m.member("c") == nil)
    }

    @Test func suspectTargetIsToldOfItsSuspicion() throws {
        // Lifeguard's buddy system: a ping to a suspect carries its suspicion.
        var m = Self.machine(knowing: ["b"])
        _ = m.receive(
            .ping(sequence: 2, updates: [Self.update("c"), Self.update("b", .suspect, by: ["c"])]), from: "c",
            now: .seconds(1))
        // Round-robin: b is pinged within two ticks.
        let pings = Self.sends(m.tick(now: .seconds(2)) + m.tick(now: .seconds(3)))
        let toB = try #require(pings.first { $0.1 == "b" })
        #expect(toB.0.updates.contains { $0.node == "b" && $0.status == .suspect })
    }

    @Test func boundedMessagesAndIgnoredNoise() {
        var m = Self.machine(knowing: ["b"])
        // A message from ourselves, or from a stranger without its own record, is ignored.
        #expect(m.receive(.ping(sequence: 1, updates: []), from: "a", now: .seconds(1)).isEmpty)
        #expect(m.receive(.ping(sequence: 1, updates: []), from: "zz", now: .seconds(1)).isEmpty)
        // Unmatched acks and nacks change nothing.
        #expect(m.receive(.ack(sequence: 999, target: "b", updates: []), from: "b", now: .seconds(1)).isEmpty)
        #expect(m.receive(.nack(sequence: 999, target: "b", updates: []), from: "b", now: .seconds(1)).isEmpty)
        // A flood of records in one message is cut at a full member list.
        var flooded = Self.machine(knowing: ["b"], settings: SWIMSettings(maxFullSync: 10))
        let flood = [Self.update("b")] + (0..<1000).map { Self.update("x\($0)") }
        _ = flooded.receive(.ping(sequence: 5, updates: flood), from: "b", now: .seconds(1))
        #expect(flooded.members.count == 1 + 10 + 2)  // itself + the first 12 records
        // Piggyback is bounded.
        var big = Self.machine(knowing: (0..<100).map { "n\($0)" }, settings: SWIMSettings(maxPiggyback: 5))
        let ping = Self.sends(big.tick(now: .seconds(1))).first
        #expect((ping?.0.updates.count ?? 0) <= 7)
    }
}
