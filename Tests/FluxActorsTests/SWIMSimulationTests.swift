import Testing

@testable import FluxActors

/// Whole-cluster behaviour of `SWIMStateMachine`, driven by the seeded `SWIMSimulation`.
@Suite struct SWIMSimulationTests {
    /// 50 nodes joining one after another through three seeds.
    static func formedCluster(
        nodes: Int = 50, seed: UInt64, loss: Double = 0, settings: SWIMSettings = SWIMSettings()
    ) -> SWIMSimulation {
        var sim = SWIMSimulation(nodes: nodes, seed: seed, settings: settings, loss: loss)
        let seeds = [0, 1, 2].filter { $0 < nodes }
        for i in 0..<nodes {
            sim.start(i, seeds: seeds)
            sim.run(for: .milliseconds(100))
        }
        return sim
    }

    @Test func fiftyNodesConvergeOnFullMembership() {
        var sim = Self.formedCluster(seed: 1)
        let at = sim.run(until: { $0.converged() }, limit: .seconds(60))
        #expect(at != nil, "50 nodes did not converge within 60 s of the last join")
        for i in 0..<50 {
            let view = sim.view(of: i)
            #expect(view.count == 50)
            #expect(view.values.allSatisfy { $0.status == .alive && $0.incarnation == 0 })
        }
        #expect(sim.changes.allSatisfy { $0.status == .alive })
    }

    @Test func tenPercentLossNeverKillsAnAliveNode() {
        var sim = Self.formedCluster(seed: 2, loss: 0.10)
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(60)) != nil)
        let start = sim.now
        sim.run(for: sim.settings.probeInterval * 300)
        let after = sim.changes.filter { $0.at >= start }
        let suspicions = after.filter { $0.status == .suspect }.count
        let deaths = sim.changes.filter { $0.status == .dead || $0.status == .left }
        #expect(deaths.isEmpty, "alive nodes declared dead: \(deaths.prefix(5))")
        // The loss is real: false suspicions happen and are refuted.
        #expect(suspicions > 0)
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(60)) != nil)
    }

    @Test func killedNodeIsDeclaredDeadByAllWithinTheLifeguardBound() throws {
        var sim = Self.formedCluster(seed: 3)
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(60)) != nil)
        let victim = SWIMSimulation.id(17)
        let killedAt = sim.now
        sim.kill(17)
        let allSeeDead: (SWIMSimulation) -> Bool = { s in
            s.running.allSatisfy { s.view(of: $0)[victim]?.status == .dead }
        }
        let settings = sim.settings
        // First failed probe (expected within a period or two; round-robin bounds it by N),
        // then at most the maximum suspicion timeout, then a few periods of dissemination.
        let bound =
            settings.probeInterval * 10 + settings.suspicionTimeout(members: 50, confirmations: 0)
            + settings.probeInterval * 10
        let reached = sim.run(until: allSeeDead, limit: bound * 2)
        let at = try #require(reached)
        let took = at - killedAt
        #expect(took <= bound, "took \(took), bound \(bound)")
        // Not before anyone could have finished the shortest suspicion.
        #expect(took >= settings.suspicionMinimum(members: 50))
        // Nobody else died on the way.
        #expect(sim.changes.allSatisfy { $0.status != .dead || $0.member == victim })
    }

    @Test func suspectedButAliveNodeRefutes() {
        var sim = Self.formedCluster(nodes: 5, seed: 4)
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(30)) != nil)
        let target = SWIMSimulation.id(3)
        // Cut node 3 off until someone suspects it, then let it answer again (well before the
        // shortest suspicion timeout).
        sim.isolated = [3]
        let suspected = sim.run(
            until: { s in s.changes.last.map { $0.member == target && $0.status == .suspect } ?? false },
            limit: .seconds(5))
        sim.isolated = []
        #expect(suspected != nil)
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(30)) != nil)
        #expect(sim.machine(3)!.incarnation >= 1)
        for i in 0..<5 {
            #expect(sim.view(of: i)[target]?.incarnation == sim.machine(3)!.incarnation)
        }
        #expect(!sim.changes.contains { $0.status == .dead })
    }

    @Test func gracefulLeavePropagatesAsLeft() throws {
        var sim = Self.formedCluster(nodes: 10, seed: 5)
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(30)) != nil)
        let leaver = SWIMSimulation.id(6)
        sim.leave(6)
        sim.run(for: .milliseconds(200))
        sim.kill(6)  // the process exits after announcing
        let at = sim.run(
            until: { s in s.running.allSatisfy { s.view(of: $0)[leaver]?.status == .left } }, limit: .seconds(10))
        #expect(at != nil)
        // Stays `left` (never turns `dead`) and keeps being listed.
        sim.run(for: .seconds(120))
        for i in sim.running {
            #expect(sim.view(of: i)[leaver]?.status == .left)
            #expect(!sim.machine(i)!.clusterMembers.contains(leaver))
        }
        #expect(!sim.changes.contains { $0.status == .dead })
    }

    @Test func deadNodeRejoinsWithAHigherIncarnation() throws {
        var sim = Self.formedCluster(nodes: 10, seed: 6)
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(30)) != nil)
        let node = SWIMSimulation.id(4)
        sim.kill(4)
        let dead = sim.run(
            until: { s in s.running.allSatisfy { s.view(of: $0)[node]?.status == .dead } }, limit: .seconds(120))
        #expect(dead != nil)
        // A new process with the same id and the same (stale) incarnation 0.
        sim.start(4, seeds: [0])
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(30)) != nil)
        let incarnation = sim.machine(4)!.incarnation
        #expect(incarnation >= 1)
        for i in sim.running {
            #expect(sim.view(of: i)[node]?.incarnation == incarnation)
            #expect(sim.view(of: i).count == 10)
        }
    }

    @Test func partitionedNodeThatWasDeclaredDeadComesBack() {
        var sim = Self.formedCluster(nodes: 8, seed: 7)
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(30)) != nil)
        let node = SWIMSimulation.id(5)
        sim.isolated = [5]
        let dead = sim.run(
            until: { s in s.running.filter { $0 != 5 }.allSatisfy { s.view(of: $0)[node]?.status == .dead } },
            limit: .seconds(120))
        #expect(dead != nil)
        sim.isolated = []
        // Node 5 still runs; it learns it was declared dead, refutes and is back.
        #expect(sim.run(until: { $0.converged() }, limit: .seconds(60)) != nil)
        #expect(sim.machine(5)!.incarnation >= 1)
    }

    @Test func sameSeedSameHistory() {
        func history(_ seed: UInt64) -> [String] {
            var sim = Self.formedCluster(nodes: 12, seed: seed, loss: 0.05)
            sim.kill(3)
            sim.run(for: .seconds(40))
            return sim.changes.map { "\($0.at) \($0.observer) \($0.member) \($0.status) \($0.incarnation)" }
        }
        let a = history(42)
        #expect(!a.isEmpty)
        #expect(a == history(42))
        #expect(a != history(43))
    }
}
