import FluxActors
import Foundation
import Testing

/// Three real nodes with seeds, a shared secret and one SQLite journal; fast SWIM
/// (probe 200 ms, ping timeout 100 ms). Bounds are generous: the machine is shared.
@Suite(.serialized) struct ClusterMembershipEndToEndTests {
    static let ids = ["n1", "n2", "n3"]

    static func threeNodes(swim: String? = nil) async throws -> ClusterHarness {
        let h = try swim.map { try ClusterHarness(swim: $0) } ?? ClusterHarness()
        for id in ids { try h.add(id) }
        do {
            for id in ids { try await h.start(id) }
        } catch {
            await h.stop()
            throw error
        }
        return h
    }

    static func allAlive(_ h: ClusterHarness, at observers: [String], members: [String] = ids) async -> Bool {
        for o in observers {
            let s = await h.statuses(at: o)
            guard s.count == members.count, members.allSatisfy({ s[$0] == "alive" }) else { return false }
        }
        return true
    }

    @Test func joinKillNineAndRestart() async throws {
        try await Self.threeNodes().run { h in try await Self.joinKillNineAndRestart(h) }
    }

    static func joinKillNineAndRestart(_ h: ClusterHarness) async throws {
        // Join: every node sees all three alive, and they agree on placement.
        let joined = await ClusterHarness.timeUntil(.seconds(20)) { await Self.allAlive(h, at: Self.ids) }
        #expect(joined != nil, "not joined:\n\(h.log("n3"))")
        var views: [[ClusterHarness.Member]] = []
        for id in Self.ids { views.append(try await h.members(at: id)) }
        let counts = views.map { $0.map(\.shards) }
        #expect(counts.allSatisfy { $0 == counts[0] }, "all nodes compute the same placement")
        #expect(counts[0].reduce(0, +) == 64)
        #expect(counts[0].allSatisfy { $0 > 0 })
        #expect(views[0].map(\.id) == Self.ids)
        #expect(views[0][1].wire == "127.0.0.1:\(h.nodes["n2"]!.wire)")
        #expect(views[0][1].http == "127.0.0.1:\(h.nodes["n2"]!.http)")

        // The shard table: 64 shards, owners from placement, the same at every node.
        let shards = try await h.adminGet("n1", "/cluster/shards")
        #expect(shards.status == 200)
        guard case .array(let rows)? = shards.json else { throw HarnessError("shards is not an array") }
        #expect(rows.count == 64)
        #expect(rows.allSatisfy { Self.ids.contains($0["owner"]?.stringValue ?? "") })
        #expect(rows.allSatisfy { ($0["epoch"]?.intValue ?? 0) >= 1 })
        let owned = Dictionary(grouping: rows, by: { $0["owner"]?.stringValue ?? "" }).mapValues { Int64($0.count) }
        #expect(views[0].allSatisfy { owned[$0.id] == $0.shards })
        #expect(try await h.adminGet("n1", "/cluster/members", token: nil).status == 401)

        // The CLI: --json is the admin API's list; the table names every node.
        let admin = "127.0.0.1:\(h.nodes["n2"]!.admin)"
        let json = try await h.cli(["members", "--admin", admin, "--token", ClusterHarness.adminToken, "--json"])
        #expect(json.status == 0)
        let listed = try JSONValue.parse(Data(json.output.utf8))
        guard case .array(let cliMembers) = listed else { throw HarnessError("members --json: \(json.output)") }
        #expect(cliMembers.map(ClusterHarness.member).map(\.id) == Self.ids)
        #expect(cliMembers.map(ClusterHarness.member).allSatisfy { $0.status == "alive" })
        let table = try await h.cli(["members", "--admin", admin, "--token", ClusterHarness.adminToken])
        #expect(table.status == 0)
        #expect(table.output.contains("NODE") && table.output.contains("n3") && table.output.contains("alive"))

        // kill -9 n3: both survivors hold it dead.
        let before = try #require(try await h.members(at: "n1").first { $0.id == "n3" }?.incarnation)
        h.kill9("n3")
        let detected = await ClusterHarness.timeUntil(.seconds(20)) {
            let a = await h.statuses(at: "n1")["n3"]
            let b = await h.statuses(at: "n2")["n3"]
            return a == "dead" && b == "dead"
        }
        #expect(detected != nil, "n3 not seen dead:\n\(h.log("n1"))")
        if let detected {
            #expect(detected < .seconds(15))
            if ProcessInfo.processInfo.environment["FLUX_DETECTION_BENCH"] != nil {
                print("detection (3 processes, probe 200 ms): kill -9 → dead on both survivors in \(detected)")
            }
        }
        let afterKill = try await h.members(at: "n1")
        #expect(afterKill.first { $0.id == "n3" }?.shards == 0)
        #expect(afterKill.filter { $0.status == "alive" }.map(\.shards).reduce(0, +) == 64)

        // Restart n3: alive again everywhere, with a higher incarnation.
        try await h.start("n3")
        let back = await ClusterHarness.timeUntil(.seconds(20)) { await Self.allAlive(h, at: Self.ids) }
        #expect(back != nil, "n3 did not rejoin:\n\(h.log("n3"))")
        let after = try #require(try await h.members(at: "n2").first { $0.id == "n3" }?.incarnation)
        #expect(after > before)
    }

    @Test func sigtermLeavesAndAWrongSecretIsNeverAdmitted() async throws {
        try await Self.threeNodes().run { h in try await Self.leaveAndIntruder(h) }
    }

    static func leaveAndIntruder(_ h: ClusterHarness) async throws {
        #expect(await ClusterHarness.timeUntil(.seconds(20)) { await Self.allAlive(h, at: Self.ids) } != nil)

        // An intruder with another secret, seeded at n1, is never admitted.
        try h.add("intruder", secret: "not-the-cluster-secret")
        try await h.start("intruder")
        try await Task.sleep(for: .seconds(2))  // ten probe periods of retrying its seeds
        for id in Self.ids {
            #expect(await h.statuses(at: id)["intruder"] == nil)
        }
        #expect(await h.statuses(at: "intruder") == ["intruder": "alive"])

        // SIGTERM n2: a graceful leave, seen as `left` (not dead) by the others.
        #expect(await h.terminate("n2") == 0)
        let left = await ClusterHarness.timeUntil(.seconds(10)) {
            let a = await h.statuses(at: "n1")["n2"]
            let c = await h.statuses(at: "n3")["n2"]
            return a == "left" && c == "left"
        }
        #expect(left != nil, "n2 not seen left:\n\(h.log("n1"))")
        let members = try await h.members(at: "n3")
        #expect(members.first { $0.id == "n2" }?.shards == 0)
        #expect(members.filter { $0.status == "alive" }.map(\.id) == ["n1", "n3"])
        // Still `left` a few periods later (no late death report overrides it).
        try await Task.sleep(for: .seconds(1))
        #expect(await h.statuses(at: "n1")["n2"] == "left")
    }

    @Test func seedsWithoutASecretRefuseToStart() async throws {
        try await ClusterHarness().run { h in
            try h.add("lonely", noSecret: true, seeds: ["127.0.0.1:1"])
            #expect(try await h.runToExit("lonely") == 2)
            #expect(h.log("lonely").contains("cluster_secret"))
        }
    }

    @Test func aNodeWithoutSecretOrSeedsIsAClusterOfOne() async throws {
        try await ClusterHarness().run { h in
            try h.add("solo", noSecret: true, seeds: [])
            try await h.start("solo")
            let members = try await h.members(at: "solo")
            #expect(members.count == 1)
            #expect(members.first?.status == "alive")
            #expect(members.first?.shards == 64)
            #expect((members.first?.incarnation ?? 0) > 1_600_000_000_000, "incarnation = start time in ms")
        }
    }

    /// `FLUX_DETECTION_BENCH=1`: kill -9 → dead on both survivors with real processes, with the
    /// default `[swim]` settings and with probe 200 ms / ping timeout 100 ms (Docs/cluster.md).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FLUX_DETECTION_BENCH"] != nil))
    func killNineDetectionFigures() async throws {
        let runs = Int(ProcessInfo.processInfo.environment["FLUX_DETECTION_RUNS"] ?? "") ?? 3
        for (name, swim) in [("default", ""), ("fast", "probe_interval_ms = 200\nping_timeout_ms = 100")] {
            var times: [Duration] = []
            for _ in 0..<runs {
                let h = try await Self.threeNodes(swim: swim)
                var detected: Duration?
                try await h.run { h in
                    let joined = await ClusterHarness.timeUntil(.seconds(30)) { await Self.allAlive(h, at: Self.ids) }
                    #expect(joined != nil)
                    h.kill9("n3")
                    detected = await ClusterHarness.timeUntil(.seconds(60), poll: .milliseconds(10)) {
                        let a = await h.statuses(at: "n1")["n3"]
                        let b = await h.statuses(at: "n2")["n3"]
                        return a == "dead" && b == "dead"
                    }
                }
                times.append(try #require(detected))
            }
            print("detection (3 processes, \(name) [swim]): \(times.map { "\($0)" }.joined(separator: ", "))")
        }
    }
}
