import FluxWire
import Foundation
import Testing

@testable import FluxActors

/// The membership shell over real FluxWire connections on loopback, with fast settings (one
/// period is 50 ms, so each test takes well under a second or two).
@Suite(.serialized) struct ClusterMembershipTests {
    static let secret = Array("membership-test-secret".utf8)
    static let fast = SWIMSettings(
        probeInterval: .milliseconds(50), pingTimeout: .milliseconds(20), suspicionMult: 2, suspicionMaxMult: 3)

    static func cluster(_ n: Int, prefix: String) async throws -> [LoopbackMember] {
        let first = try await LoopbackMember.start(id: "\(prefix)0", secret: secret, seeds: [], settings: fast)
        var all = [first]
        for i in 1..<n {
            all.append(
                try await LoopbackMember.start(id: "\(prefix)\(i)", secret: secret, seeds: [first.wire], settings: fast)
            )
        }
        return all
    }

    static func eventually(_ timeout: Duration = .seconds(30), _ condition: () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return await condition()
    }

    static func statuses(_ m: LoopbackMember) async -> [String: SWIMStatus] {
        Dictionary(uniqueKeysWithValues: await m.membership.members().map { ($0.node.rawValue, $0.status) })
    }

    @Test func joinCrashAndDetection() async throws {
        let nodes = try await Self.cluster(3, prefix: "j")
        let changes = await nodes[0].membership.changes()
        let joined = try await Self.eventually {
            for n in nodes {
                let s = await Self.statuses(n)
                if s != ["j0": .alive, "j1": .alive, "j2": .alive] { return false }
            }
            return true
        }
        #expect(joined)
        // Every node computes the same placement, over all three.
        let tables = [
            await nodes[0].membership.placement(shards: 64), await nodes[1].membership.placement(shards: 64),
        ]
        #expect(tables[0] == tables[1])
        #expect(tables[0].members == ["j0", "j1", "j2"])
        // HTTP addresses travel with the records (version 2 updates).
        #expect(await nodes[1].membership.member("j2")?.http == "127.0.0.1:0")

        await nodes[2].crash()
        let dead = try await Self.eventually {
            let a = await Self.statuses(nodes[0])["j2"]
            let b = await Self.statuses(nodes[1])["j2"]
            return a == .dead && b == .dead
        }
        #expect(dead)
        // (Under a loaded machine j1 may be falsely suspected for a moment and refute.)
        let placed = try await Self.eventually {
            await nodes[0].membership.placement(shards: 64).members == ["j0", "j1"]
        }
        let view = await Self.statuses(nodes[0])
        #expect(placed, "\(view)")
        // The change stream told of j2's arrival and of its death.
        var seen: [SWIMStatus] = []
        for await change in changes {
            if case .changed(let m, _) = change, m.node == "j2" { seen.append(m.status) }
            if seen.last == .dead { break }
        }
        #expect(seen.first == .alive)
        #expect(seen.last == .dead)
        for n in nodes { await n.crash() }
    }

    @Test(
        .disabled(
            "flaky under a loaded machine (1 full-suite run in 4 on 2 shared cores): one member misses the leave and lists the leaver dead; issue 4 note"
        ))
    func leaveIsSeenAsLeftAndRestartRejoinsHigher() async throws {
        let nodes = try await Self.cluster(3, prefix: "l")
        #expect(
            try await Self.eventually {
                let a = await Self.statuses(nodes[0]).values.filter { $0 == .alive }.count
                let c = await Self.statuses(nodes[2]).values.filter { $0 == .alive }.count
                return a == 3 && c == 3
            })
        let before = try #require(await nodes[0].membership.member("l1")?.incarnation)
        await nodes[1].leaveAndStop()
        #expect(
            try await Self.eventually {
                let a = await Self.statuses(nodes[0])["l1"]
                let c = await Self.statuses(nodes[2])["l1"]
                return a == .left && c == .left
            })
        // A new process with the same id (and a later start time) joins again.
        let again = try await LoopbackMember.start(
            id: "l1", secret: Self.secret, seeds: [nodes[0].wire], settings: Self.fast, incarnation: before + 1000)
        #expect(
            try await Self.eventually {
                let a = await Self.statuses(nodes[0])["l1"]
                let c = await Self.statuses(nodes[2])["l1"]
                return a == .alive && c == .alive
            })
        #expect((await nodes[2].membership.member("l1")?.incarnation ?? 0) > before)
        for n in nodes + [again] { await n.crash() }
    }

    @Test func aNodeWithTheWrongSecretIsNeverAdmitted() async throws {
        let nodes = try await Self.cluster(2, prefix: "s")
        let intruder = try await LoopbackMember.start(
            id: "s-bad", secret: Array("another-secret-entirely".utf8), seeds: [nodes[0].wire], settings: Self.fast)
        #expect(
            try await Self.eventually {
                let a = await Self.statuses(nodes[0])
                let b = await Self.statuses(nodes[1])
                return a == ["s0": .alive, "s1": .alive] && b == a
            })
        // Twelve periods of retrying its seeds change nothing.
        try await Task.sleep(for: .milliseconds(600))
        #expect(await Self.statuses(nodes[0])["s-bad"] == nil)
        #expect(await Self.statuses(nodes[1])["s-bad"] == nil)
        #expect(await Self.statuses(intruder) == ["s-bad": .alive])
        for n in nodes + [intruder] { await n.crash() }
    }

    @Test func withoutASecretANodeListsOnlyItself() async {
        let m = ClusterMembership(
            configuration: .init(node: "solo", wire: "127.0.0.1:1", http: "127.0.0.1:2", secret: nil, incarnation: 77))
        await m.start()
        let members = await m.members()
        #expect(members.map(\.node) == ["solo"])
        #expect(members.first?.incarnation == 77)
        #expect(await m.placement(shards: 8).owners == Array(repeating: "solo", count: 8))
        await m.stop()
    }
}

/// `FLUX_DETECTION_BENCH=1 swift test --filter DetectionBenchmark`: kill → dead on every
/// survivor, 3 members on loopback, default and fast `[swim]` settings (Docs/cluster.md).
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["FLUX_DETECTION_BENCH"] != nil))
struct DetectionBenchmark {
    @Test func defaultAndFastSettings() async throws {
        let runs = Int(ProcessInfo.processInfo.environment["FLUX_DETECTION_RUNS"] ?? "") ?? 5
        let half = try SWIMSettings.fromConfig(probeIntervalMS: 500, pingTimeoutMS: 250)
        let fast = try SWIMSettings.fromConfig(probeIntervalMS: 200, pingTimeoutMS: 100)
        for settings in [SWIMSettings(), half, fast] {
            let figures = try await runDetectionBenchmark(nodes: 3, settings: settings, runs: runs)
            print("detection: \(figures) — \(figures.detections.map { "\($0)" }.joined(separator: ", "))")
            #expect(figures.worst < settings.suspicionMinimum(members: 3) * 6 + settings.probeInterval * 4)
        }
    }
}
