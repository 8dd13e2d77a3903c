import FluxActors
import Foundation
import Testing

/// Three real nodes sharing one SQLite journal, with simulated lenders: checkouts at any node,
/// forwarding to the owner, failover after kill -9, hand-over on graceful leave, and a partition.
@Suite(.serialized) struct ClusterEndToEndTests {
    static let ids = ["n1", "n2", "n3"]
    static let terminal: Set<String> = ["disbursed", "declined", "failed", "cancelled"]

    static func cluster(latencyMs: Int = 150, faults: Bool = false, journal: String? = nil) async throws
        -> ClusterHarness
    {
        let h = try journal.map { try ClusterHarness(journal: $0) } ?? ClusterHarness()
        var overrides: [String: [String: JSONValue]] = [:]
        for lender in ["abfl", "tata", "hero", "piramal"] {
            overrides[lender] = ["latency_ms": .int(Int64(latencyMs)), "jitter_ms": 20]
        }
        do {
            try await h.startLenders(overrides)
            for id in ids { try h.add(id) }
            if faults { setenv("FLUX_FAULT_INJECTION", "1", 1) }
            defer { if faults { unsetenv("FLUX_FAULT_INJECTION") } }
            for id in ids { try await h.start(id) }
            let joined = await ClusterHarness.timeUntil(.seconds(20)) {
                await ClusterMembershipEndToEndTests.allAlive(h, at: ids)
            }
            if joined == nil { throw HarnessError("not joined:\n\(h.log("n3"))") }
        } catch {
            await h.stop()
            throw error
        }
        return h
    }

    static func post(
        _ h: ClusterHarness, at node: String, customer: String, key: String, amount: Int64 = 7_990_000,
        wait: Int? = nil
    ) async throws -> NodeHarness.Reply {
        var headers = [("Idempotency-Key", key)]
        if let wait { headers.append(("Prefer", "wait=\(wait)")) }
        return try await h.request(
            node, "POST", "/v1/applications", body: NodeHarness.checkout(customer: customer, amount: amount),
            headers: headers)
    }

    /// Waits (at `node`) until every application is terminal; returns the ones that are not.
    static func settle(_ h: ClusterHarness, _ ids: [String], at node: String) async throws -> [String: String] {
        var open: [String: String] = [:]
        for id in ids {
            let r = try await h.request(node, "GET", "/v1/applications/\(id)", headers: [("Prefer", "wait=25")])
            let status = r.json?["status"]?.stringValue ?? "HTTP \(r.status) \(r.errorCode ?? "")"
            if !terminal.contains(status) { open[id] = status }
        }
        return open
    }

    /// No simulated lender lent twice for one application, and no application is live at two.
    static func expectNoDoubleLoans(_ h: ClusterHarness) async throws {
        let report = try #require(try await ClusterHarness.get(h.controlURL! + "/loans").json)
        #expect(report["live_at_several_lenders"]?.arrayValue?.isEmpty == true, "\(report.jsonString())")
        for lender in report["lenders"]?.arrayValue ?? [] {
            for (ref, count) in lender["count_by_reference"]?.objectValue ?? [:] {
                #expect(count == 1, "\(ref) asked to lend \(count) times")
            }
        }
    }

    @Test func anyNodeServesAnyCallAndSurvivorsTakeOverAfterKillNine() async throws {
        let h = try await Self.cluster()
        try await h.run { h in
            // Checkouts at every node; the owner serves each and says so in Flux-Node.
            let map = ShardMap(shards: 64)
            var forwarded = 0
            var first: [String: (id: String, entry: String)] = [:]
            for i in 0..<12 {
                let entry = Self.ids[i % 3]
                let r = try await Self.post(h, at: entry, customer: "any-\(i)", key: "any-\(i)", wait: 20)
                #expect(r.status == 201, "\(r.status) \(String(decoding: r.body, as: UTF8.self))")
                let id = try #require(r.json?["id"]?.stringValue)
                #expect(Self.terminal.contains(r.json?["status"]?.stringValue ?? ""))
                let served = try #require(r.header("Flux-Node"))
                if served != entry { forwarded += 1 }
                // The serving node is the shard's owner in the shard table.
                let shards = try await h.adminGet(entry, "/cluster/shards").json?.arrayValue ?? []
                let shard = map.shard(for: id)
                #expect(shards.first { $0["shard"]?.intValue == Int64(shard) }?["owner"]?.stringValue == served)
                first["any-\(i)"] = (id, entry)
            }
            #expect(forwarded > 0, "with three owners some checkouts must be forwarded")

            // The same application reads the same at every node; a replay at another node is 200.
            let (id0, entry0) = first["any-0"]!
            var views: Set<String> = []
            for node in Self.ids {
                let r = try await h.request(node, "GET", "/v1/applications/\(id0)")
                #expect(r.status == 200)
                views.insert(r.json?["status"]?.stringValue ?? "?")
            }
            #expect(views.count == 1)
            let other = Self.ids.first { $0 != entry0 }!
            let replay = try await Self.post(h, at: other, customer: "any-0", key: "any-0")
            #expect(replay.status == 200)
            #expect(replay.json?["id"]?.stringValue == id0)
            let conflict = try await Self.post(h, at: other, customer: "any-0", key: "any-0", amount: 5_000_000)
            #expect(conflict.status == 409)
            #expect(conflict.errorCode == "idempotency_conflict")
            // The same key for another customer names the first application too.
            let stolen = try await Self.post(h, at: other, customer: "somebody-else", key: "any-0")
            #expect(stolen.status == 409)
            #expect(stolen.errorCode == "idempotency_conflict")

            // One live application per customer, whichever node each request reaches.
            let live = try await Self.post(h, at: "n1", customer: "live-1", key: "live-1a")
            #expect(live.status == 201)
            let second = try await Self.post(h, at: "n2", customer: "live-1", key: "live-1b")
            #expect(second.status == 409, "\(String(decoding: second.body, as: UTF8.self))")
            #expect(second.errorCode == "live_application_exists")

            // A ruleset published at one node is in force at every node.
            let rules = try await h.request("n2", "GET", "/v1/rules")
            let version = try #require(rules.json?["version"]?.intValue)
            let put = try await h.request(
                "n2", "PUT", "/v1/rules", body: rules.json, headers: [("If-Match", "\"\(version)\"")])
            #expect(put.status == 200, "\(String(decoding: put.body, as: UTF8.self))")
            for node in Self.ids {
                let seen = await ClusterHarness.timeUntil(.seconds(5)) {
                    (try? await h.request(node, "GET", "/v1/rules").header("ETag")) == "\"\(version + 1)\""
                }
                #expect(seen != nil, "\(node) did not get version \(version + 1)")
            }

            // A lender descriptor published at one node is loaded by every node; a bad one by none.
            let file = h.dir.appendingPathComponent("lenders/hero.json")
            guard case .object(var hero) = try JSONValue.parse(Data(contentsOf: file)) else {
                throw HarnessError("hero.json is not an object")
            }
            hero["timeout_ms"] = 1234
            let published = try await h.request("n3", "PUT", "/v1/lenders/hero", body: .object(hero))
            #expect(published.status == 200, "\(String(decoding: published.body, as: UTF8.self))")
            func heroTimeout(_ node: String) async -> Int64? {
                let list = try? await h.request(node, "GET", "/v1/lenders").json?["lenders"]?.arrayValue
                return list?.first { $0["id"]?.stringValue == "hero" }?["descriptor"]?["timeout_ms"]?.intValue
            }
            for node in Self.ids {
                let loaded = await ClusterHarness.timeUntil(.seconds(5)) { await heroTimeout(node) == 1234 }
                #expect(loaded != nil, "\(node) did not load the published descriptor")
            }
            hero["timeout_ms"] = "soon"
            let bad = try await h.request("n1", "PUT", "/v1/lenders/hero", body: .object(hero))
            #expect(bad.status == 422)
            #expect(bad.errorCode == "invalid_descriptor")
            try await Task.sleep(for: .milliseconds(300))
            for node in Self.ids { #expect(await heroTimeout(node) == 1234) }

            // kill -9 during a burst: every application answered 201 ends, nobody lends twice.
            var accepted: [String] = []
            for i in 0..<24 {
                let r = try await Self.post(h, at: Self.ids[i % 2], customer: "burst-\(i)", key: "burst-\(i)")
                if r.status == 201, let id = r.json?["id"]?.stringValue { accepted.append(id) }
            }
            #expect(accepted.count == 24)
            let killedAt = ContinuousClock.now
            h.kill9("n3")
            let open = try await Self.settle(h, accepted, at: "n1")
            #expect(open.isEmpty, "not terminal after failover: \(open)\n\(h.log("n1"))")
            let dead = await ClusterHarness.timeUntil(.seconds(15)) { await h.statuses(at: "n1")["n3"] == "dead" }
            #expect(dead != nil)
            print(
                "failover: all \(accepted.count) applications terminal \(ContinuousClock.now - killedAt) after kill -9")
            try await Self.expectNoDoubleLoans(h)
            // n3's shards are owned by the survivors now.
            let shards = try await h.adminGet("n1", "/cluster/shards").json?.arrayValue ?? []
            #expect(shards.count == 64)
            #expect(shards.allSatisfy { ["n1", "n2"].contains($0["owner"]?.stringValue ?? "") })
        }
    }

    @Test(
        "PostgreSQL journal: kill -9 of a node mid-burst, survivors finish everything, nobody lends twice",
        .enabled(if: ProcessInfo.processInfo.environment["FLUX_TEST_POSTGRES"] != nil))
    func failoverOnPostgres() async throws {
        let h = try await Self.cluster(latencyMs: 200, journal: try freshPostgresDatabase())
        try await h.run { h in
            var accepted: [String] = []
            for i in 0..<24 {
                let r = try await Self.post(h, at: Self.ids[i % 3], customer: "pg-\(i)", key: "pg-\(i)")
                if r.status == 201, let id = r.json?["id"]?.stringValue { accepted.append(id) }
            }
            #expect(accepted.count == 24)
            h.kill9("n2")
            let open = try await Self.settle(h, accepted, at: "n3")
            #expect(open.isEmpty, "not terminal after failover: \(open)\n\(h.log("n3"))")
            try await Self.expectNoDoubleLoans(h)
            let shards = try await h.adminGet("n1", "/cluster/shards").json?.arrayValue ?? []
            #expect(shards.allSatisfy { ["n1", "n3"].contains($0["owner"]?.stringValue ?? "") })
        }
    }

    @Test func gracefulLeaveHandsShardsOverAndNothingStalls() async throws {
        let h = try await Self.cluster(latencyMs: 300)
        try await h.run { h in
            var accepted: [String] = []
            for i in 0..<18 {
                let r = try await Self.post(h, at: Self.ids[i % 3], customer: "leave-\(i)", key: "leave-\(i)")
                if r.status == 201, let id = r.json?["id"]?.stringValue { accepted.append(id) }
            }
            #expect(accepted.count == 18)
            let leftAt = ContinuousClock.now
            #expect(await h.terminate("n2") == 0, "SIGTERM: hand over, leave, exit 0\n\(h.log("n2"))")
            let open = try await Self.settle(h, accepted, at: "n3")
            #expect(open.isEmpty, "stalled after the leave: \(open)\n\(h.log("n3"))")
            print("leave: all \(accepted.count) applications terminal \(ContinuousClock.now - leftAt) after SIGTERM")
            let members = try await h.members(at: "n1")
            #expect(members.first { $0.id == "n2" }?.status == "left")
            #expect(members.first { $0.id == "n2" }?.shards == 0)
            try await Self.expectNoDoubleLoans(h)
            // New checkouts go on at the two that stayed.
            let r = try await Self.post(h, at: "n1", customer: "after-leave", key: "after-leave", wait: 20)
            #expect(r.status == 201)
            #expect(["n1", "n3"].contains(r.header("Flux-Node") ?? ""))
        }
    }

    @Test func theMinorityOfAPartitionStopsActingAndNobodyLendsTwice() async throws {
        let h = try await Self.cluster(latencyMs: 200, faults: true)
        try await h.run { h in
            var accepted: [String] = []
            for i in 0..<18 {
                let r = try await Self.post(h, at: Self.ids[i % 3], customer: "part-\(i)", key: "part-\(i)")
                if r.status == 201, let id = r.json?["id"]?.stringValue { accepted.append(id) }
            }
            #expect(accepted.count == 18)
            // Cut n1 off from n2 and n3, both ways.
            for (node, drop) in [("n1", ["n2", "n3"]), ("n2", ["n1"]), ("n3", ["n1"])] {
                let r = try await h.request(
                    node, "PUT", "/cluster/faults", body: ["drop": .array(drop.map { .string($0) })], admin: true)
                #expect(r.status == 200)
            }
            // The majority sees n1 dead and takes its shards; n1 (1 of 3) gives up everything.
            let split = await ClusterHarness.timeUntil(.seconds(20)) {
                let atMajority = await h.statuses(at: "n2")
                let atMinority = await h.statuses(at: "n1")
                return atMajority["n1"] == "dead" && atMinority["n2"] == "dead" && atMinority["n3"] == "dead"
            }
            #expect(split != nil)
            let open = try await Self.settle(h, accepted, at: "n2")
            #expect(open.isEmpty, "not terminal at the majority: \(open)\n\(h.log("n2"))")
            // The minority takes no new work: nothing it could append would be accepted.
            let refused = try await Self.post(h, at: "n1", customer: "minority", key: "minority")
            #expect(refused.status == 503, "\(String(decoding: refused.body, as: UTF8.self))")
            let shards = try await h.adminGet("n2", "/cluster/shards").json?.arrayValue ?? []
            #expect(shards.allSatisfy { ["n2", "n3"].contains($0["owner"]?.stringValue ?? "") })
            try await Self.expectNoDoubleLoans(h)
            // Heal: n1 comes back (a higher incarnation) and takes a share again.
            for node in Self.ids {
                _ = try await h.request(node, "PUT", "/cluster/faults", body: ["drop": []], admin: true)
            }
            let healed = await ClusterHarness.timeUntil(.seconds(30)) {
                await ClusterMembershipEndToEndTests.allAlive(h, at: Self.ids)
            }
            let view = await h.statuses(at: "n2")
            #expect(healed != nil, "\(view)")
            // Shards move back while the three settle: a 503 (retry shortly) may come first.
            var after = try await Self.post(h, at: "n1", customer: "healed", key: "healed", wait: 20)
            let retryUntil = ContinuousClock.now + .seconds(15)
            while after.status == 503, ContinuousClock.now < retryUntil {
                try await Task.sleep(for: .milliseconds(200))
                after = try await Self.post(h, at: "n1", customer: "healed", key: "healed", wait: 20)
            }
            #expect(after.status == 201, "\(String(decoding: after.body, as: UTF8.self))\n\(h.log("n1"))")
        }
    }
}
