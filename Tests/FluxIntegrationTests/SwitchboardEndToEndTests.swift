import FluxActors
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real `flux-node` binary against the simulated lenders, over HTTP.
@Suite("single node, end to end", .serialized)
struct SwitchboardEndToEndTests {
    @Test("a checkout is disbursed, its loan has an exact schedule, its events are listed")
    func checkoutDisburses() async throws {
        let h = try await NodeHarness()
        try await h.run { h in
            let body = NodeHarness.checkout(customer: "e2e-1", score: 790, amount: 7_990_000, tenure: 12)
            let r = try await h.post(
                "/v1/applications", body, headers: [("Idempotency-Key", "k-1"), ("Prefer", "wait=20")])
            #expect(r.status == 201)
            #expect(r.header("Flux-Node") == "it-node")
            let view = try #require(r.json)
            #expect(view["status"] == "disbursed")
            let attempts = view["attempts"]?.arrayValue ?? []
            #expect(attempts.last?["outcome"] == "approved")
            #expect(view["lender_id"] == attempts.last?["lender_id"])
            let loanID = try #require(view["loan_id"]?.stringValue)

            let loan = try #require(try await h.get("/v1/loans/\(loanID)").json)
            #expect(loan["principal_paise"] == 7_990_000)
            #expect(loan["status"] == "active")
            let schedule = loan["schedule"]?.arrayValue ?? []
            #expect(schedule.count == 12)
            #expect(schedule.compactMap { $0["principal_paise"]?.intValue }.reduce(0, +) == 7_990_000)
            #expect(schedule.last?["balance_paise"] == 0)

            let events = try #require(
                try await h.get("/v1/applications/\(view["id"]!.stringValue!)/events").json?.arrayValue)
            #expect(events.first?["type"] == "ApplicationReceived")
            #expect(events.first?["seq"] == 1)
            #expect(events.last?["type"] == "ApplicationDisbursed")
            #expect(events.contains { $0["type"] == "LenderAttemptStarted" })
        }
    }

    @Test("Idempotency-Key: 201, 200 for the same body, 409 for another, 400 when missing, scoped by merchant")
    func idempotency() async throws {
        let h = try await NodeHarness()
        try await h.run { h in
            let body = NodeHarness.checkout(customer: "idem-1")
            let first = try await h.post("/v1/applications", body, headers: [("Idempotency-Key", "same")])
            #expect(first.status == 201)
            let again = try await h.post("/v1/applications", body, headers: [("Idempotency-Key", "same")])
            #expect(again.status == 200)
            #expect(again.json?["id"] == first.json?["id"])
            let other = NodeHarness.checkout(customer: "idem-1", amount: 1_000_000)
            let conflict = try await h.post("/v1/applications", other, headers: [("Idempotency-Key", "same")])
            #expect(conflict.status == 409)
            #expect(conflict.errorCode == "idempotency_conflict")
            let missing = try await h.post("/v1/applications", body)
            #expect(missing.status == 400)
            #expect(missing.errorCode == "idempotency_key_required")
            let elsewhere = NodeHarness.checkout(customer: "idem-2", merchant: "vijay-sales")
            let scoped = try await h.post("/v1/applications", elsewhere, headers: [("Idempotency-Key", "same")])
            #expect(scoped.status == 201)
            #expect(scoped.json?["id"] != first.json?["id"])
        }
    }

    @Test("bad input gets its 4xx with error.code and stores nothing; the node goes on serving")
    func badInput() async throws {
        let h = try await NodeHarness()
        try await h.run { h in
            func post(_ raw: [UInt8], key: String) async throws -> NodeHarness.Reply {
                try await h.request("POST", "/v1/applications", body: raw, headers: [("Idempotency-Key", key)])
            }
            let notJSON = try await post(Array("{not json".utf8), key: "b1")
            #expect(notJSON.status == 400)
            #expect(notJSON.errorCode == "invalid_json")
            let array = try await post(Array("[1,2]".utf8), key: "b2")
            #expect(array.status == 400)

            var missing = NodeHarness.checkout(customer: "bad-1")
            if case .object(var o) = missing, case .object(var loan) = o["loan"] {
                loan.removeValue(forKey: "tenure_months")
                o["loan"] = .object(loan)
                missing = .object(o)
            }
            let r1 = try await h.post("/v1/applications", missing, headers: [("Idempotency-Key", "b3")])
            #expect(r1.status == 422)
            #expect(r1.errorCode == "invalid_field")
            #expect(r1.json?["error"]?["field"] == "loan.tenure_months")

            let negative = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "bad-2", amount: -5),
                headers: [("Idempotency-Key", "b4")])
            #expect(negative.status == 422)
            #expect(negative.json?["error"]?["field"] == "loan.amount_paise")
            let zero = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "bad-2", amount: 0),
                headers: [("Idempotency-Key", "b5")]
            )
            #expect(zero.status == 422)

            let tenure = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "bad-3", tenure: 7),
                headers: [("Idempotency-Key", "b6")]
            )
            #expect(tenure.status == 422)
            #expect(tenure.json?["error"]?["field"] == "loan.tenure_months")

            var offers = NodeHarness.checkout(customer: "bad-4")
            if case .object(var o) = offers {
                o["mode"] = "offers"
                offers = .object(o)
            }
            let off = try await h.post("/v1/applications", offers, headers: [("Idempotency-Key", "b7")])
            #expect(off.status == 422)
            #expect(off.errorCode == "mode_not_supported")

            let huge = try await post(Array(repeating: UInt8(ascii: " "), count: (1 << 20) + 10), key: "b8")
            #expect(huge.status == 413)
            #expect(huge.errorCode == "body_too_large")

            let wrongType = try await post(Array(#"{"merchant_id": 5}"#.utf8), key: "b9")
            #expect(wrongType.status == 422)
            #expect(wrongType.json?["error"]?["field"] == "merchant_id")

            #expect(try await h.get("/v1/applications/app_doesnotexist").status == 404)
            #expect(try await h.get("/v1/applications/app_doesnotexist").errorCode == "not_found")
            // Nothing was stored: the same keys with a good body are new applications.
            let good = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "bad-5"), headers: [("Idempotency-Key", "b3")])
            #expect(good.status == 201)
            #expect(try await h.get("/health/live").status == 200)
            #expect(try await h.get("/health/ready").status == 200)
        }
    }

    @Test("one live application per customer per merchant; cancel while a lender call is in flight")
    func liveApplicationAndCancel() async throws {
        // Every lender slow, so the first application stays pending for a while.
        let slow: [String: JSONValue] = ["latency_ms": 1500, "jitter_ms": 0]
        let h = try await NodeHarness(lenderOverrides: ["abfl": slow, "tata": slow, "hero": slow, "piramal": slow])
        try await h.run { h in
            let first = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "live-1"), headers: [("Idempotency-Key", "l1")])
            #expect(first.status == 201)
            let id = try #require(first.json?["id"]?.stringValue)
            let second = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "live-1", amount: 2_000_000),
                headers: [("Idempotency-Key", "l2")])
            #expect(second.status == 409)
            #expect(second.errorCode == "live_application_exists")
            #expect(second.json?["error"]?["message"]?.stringValue == id)

            try await Task.sleep(for: .milliseconds(300))
            let cancel = try await h.request("POST", "/v1/applications/\(id)/cancel")
            #expect(cancel.status == 202 || cancel.status == 200)
            let done = try await h.get("/v1/applications/\(id)", headers: [("Prefer", "wait=15")])
            #expect(done.json?["status"] == "cancelled")
            let again = try await h.request("POST", "/v1/applications/\(id)/cancel")
            #expect(again.status == 200)
            // Once it is terminal the customer may apply again.
            let third = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "live-1", amount: 2_000_000),
                headers: [("Idempotency-Key", "l3")])
            #expect(third.status == 201)
            // A lender that approved the cancelled attempt was compensated (its loan cancelled), never disbursed.
            let report = try #require(try await h.request("GET", h.controlURL + "/loans").json)
            for lender in report["lenders"]?.arrayValue ?? [] {
                for loan in lender["loans"]?.arrayValue ?? [] where loan["reference"]?.stringValue == id {
                    #expect(loan["state"] != "disbursed")
                }
            }
        }
    }

    @Test("declined when no lender will lend; failed when none can be reached")
    func declinedAndFailed() async throws {
        let h = try await NodeHarness(lenderOverrides: [:])
        try await h.run { h in
            let low = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "dec-1", score: 400),
                headers: [("Idempotency-Key", "d1"), ("Prefer", "wait=20")])
            #expect(low.json?["status"] == "declined")
            let reasons = low.json?["decline_reasons"]?.arrayValue ?? []
            #expect(reasons.count == 4)
            await h.stopNode()
            await h.stop()

            let down: [String: JSONValue] = ["outage": "refuse"]
            let h2 = try await NodeHarness(lenderOverrides: ["abfl": down, "tata": down, "hero": down, "piramal": down])
            try await h2.run { h2 in
                let r = try await h2.post(
                    "/v1/applications", NodeHarness.checkout(customer: "fail-1"),
                    headers: [("Idempotency-Key", "f1"), ("Prefer", "wait=25")])
                #expect(r.json?["status"] == "failed")
                let outcomes = (r.json?["attempts"]?.arrayValue ?? []).compactMap { $0["outcome"]?.stringValue }
                #expect(!outcomes.isEmpty)
                #expect(outcomes.allSatisfy { $0 == "error" || $0 == "skipped_open_circuit" })
            }
        }
    }

    @Test("ghost loan: the lender approved but replied after the timeout; Flux finds it, never lends twice")
    func ghostLoan() async throws {
        let ghost: [String: JSONValue] = ["ghost_mode": true, "ghost_delay_ms": 2500, "ghost_rate": 1.0]
        let h = try await NodeHarness(
            lenderOverrides: ["abfl": ghost], descriptorOverrides: ["abfl": ["timeout_ms": 500]])
        try await h.run { h in
            let r = try await h.post(
                "/v1/applications",
                NodeHarness.checkout(customer: "ghost-1", score: 800, amount: 5_000_000, tenure: 12),
                headers: [("Idempotency-Key", "g1"), ("Prefer", "wait=25")])
            let view = try #require(r.json)
            let id = try #require(view["id"]?.stringValue)
            #expect(view["status"] == "disbursed")
            let first = view["attempts"]?.arrayValue?.first
            #expect(first?["lender_id"] == "abfl")
            #expect(first?["outcome"] == "ghost_recovered")
            #expect(view["lender_id"] == "abfl")
            let report = try #require(try await h.request("GET", h.controlURL + "/loans").json)
            #expect(report["live_at_several_lenders"]?.arrayValue?.isEmpty == true)
            let abfl = report["lenders"]?.arrayValue?.first { $0["id"] == "abfl" }
            #expect(abfl?["count_by_reference"]?[id] == 1)
        }
    }

    @Test("kill -9 during a burst: every application answered 201 comes back and ends; no one gets two loans")
    func crashRecovery() async throws {
        let h = try await NodeHarness(lenderOverrides: [
            "abfl": ["latency_ms": 300], "tata": ["latency_ms": 300], "hero": ["latency_ms": 300],
            "piramal": ["latency_ms": 300],
        ])
        try await h.run { h in
            var accepted: [String] = []
            for i in 0..<30 {
                let r = try await h.post(
                    "/v1/applications", NodeHarness.checkout(customer: "crash-\(i)", score: 700 + i * 5),
                    headers: [("Idempotency-Key", "c\(i)")])
                if r.status == 201, let id = r.json?["id"]?.stringValue { accepted.append(id) }
            }
            #expect(accepted.count == 30)
            await h.stopNode(kill9: true)
            try await h.startNode()
            for id in accepted {
                let r = try await h.get("/v1/applications/\(id)", headers: [("Prefer", "wait=25")])
                #expect(r.status == 200, "application \(id) lost")
                let status = r.json?["status"]?.stringValue ?? "?"
                if !["disbursed", "declined", "failed"].contains(status) {
                    let events = try await h.get("/v1/applications/\(id)/events").json?.arrayValue ?? []
                    let trail = events.dropFirst().map {
                        "\($0["seq"]?.intValue ?? 0) \($0["type"]?.stringValue ?? "") \($0["data"]?.jsonString() ?? "")"
                    }
                    Issue.record("\(id) ended \(status):\n\(trail.joined(separator: "\n"))\n\(h.logs().suffix(1500))")
                }
            }
            let report = try #require(try await h.request("GET", h.controlURL + "/loans").json)
            #expect(report["live_at_several_lenders"]?.arrayValue?.isEmpty == true)
            for lender in report["lenders"]?.arrayValue ?? [] {
                for (_, count) in lender["count_by_reference"]?.objectValue ?? [:] { #expect(count == 1) }
            }
        }
    }

    @Test(
        "rules: GET with ETag, PUT needs If-Match, stale is 412, bad rules 422 with position, evaluate lists failures")
    func rules() async throws {
        let h = try await NodeHarness()
        try await h.run { h in
            let current = try await h.get("/v1/rules")
            #expect(current.status == 200)
            #expect(current.header("ETag") == "\"1\"")
            let doc = try #require(current.json)
            let noMatch = try await h.request("PUT", "/v1/rules", body: Array(doc.jsonData()))
            #expect(noMatch.status == 428)
            #expect(noMatch.errorCode == "if_match_required")
            let stale = try await h.request(
                "PUT", "/v1/rules", body: Array(doc.jsonData()), headers: [("If-Match", "\"7\"")])
            #expect(stale.status == 412)
            #expect(stale.errorCode == "version_conflict")
            let bad: JSONValue = [
                "lenders": [["lender_id": "hero", "priority": 1, "when": ["customer.bureau_score >>= 3"]]]
            ]
            let refused = try await h.request(
                "PUT", "/v1/rules", body: Array(bad.jsonData()), headers: [("If-Match", "1")])
            #expect(refused.status == 422)
            #expect(refused.errorCode == "invalid_rules")
            #expect(refused.json?["error"]?["message"]?.stringValue?.contains("column") == true)
            let ok = try await h.request(
                "PUT", "/v1/rules", body: Array(doc.jsonData()), headers: [("If-Match", "\"1\"")])
            #expect(ok.status == 200)
            #expect(ok.json?["version"] == 2)
            #expect(try await h.get("/v1/rules").header("ETag") == "\"2\"")

            let eval = try await h.post("/v1/rules/evaluate", NodeHarness.checkout(customer: "ev-1", score: 660))
            #expect(eval.status == 200)
            let excluded = eval.json?["excluded"]?.arrayValue ?? []
            #expect(!excluded.isEmpty)
            #expect(excluded.allSatisfy { !($0["failed"]?.arrayValue ?? []).isEmpty })

            // The published version survives a restart.
            await h.stopNode()
            try await h.startNode()
            #expect(try await h.get("/v1/rules").header("ETag") == "\"2\"")
        }
    }

    @Test("lenders are listed with their circuits and stats; secrets are masked")
    func lenders() async throws {
        let h = try await NodeHarness()
        try await h.run { h in
            let r = try await h.get("/v1/lenders")
            #expect(r.status == 200)
            let lenders = r.json?["lenders"]?.arrayValue ?? []
            #expect(Set(lenders.compactMap { $0["id"]?.stringValue }) == ["abfl", "piramal", "hero", "tata"])
            let text = String(decoding: r.body, as: UTF8.self)
            #expect(!text.contains("sim-abfl-7c1e9a"))
            #expect(!text.contains("sim-hero-93b0c5"))
            #expect(lenders.allSatisfy { $0["circuit"] == "closed" })
            let metrics = try await h.get("/metrics")
            #expect(metrics.status == 200)
        }
    }

    @Test("SIGTERM: the node flushes and exits 0")
    func gracefulShutdown() async throws {
        let h = try await NodeHarness()
        try await h.run { h in
            let r = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "term-1"), headers: [("Idempotency-Key", "t1")])
            #expect(r.status == 201)
            let status = await h.stopNode()
            #expect(status == 0)
            try await h.startNode()
            let id = try #require(r.json?["id"]?.stringValue)
            #expect(try await h.get("/v1/applications/\(id)").status == 200)
        }
    }

    @Test("a configuration with an unknown key or a bad value does not start, and names the key")
    func badConfiguration() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flux-conf-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (toml, key) in [
            ("colour = \"blue\"\n", "colour"), ("shards = -3\n", "shards"), ("http = \"nope\"\n", "http"),
        ] {
            let conf = dir.appendingPathComponent("c.conf")
            try toml.write(to: conf, atomically: true, encoding: .utf8)
            let log = dir.appendingPathComponent("log")
            try? FileManager.default.removeItem(at: log)
            let p = try NodeHarness.spawn(["run", "--config", conf.path], log: log)
            p.waitUntilExit()
            #expect(p.terminationStatus == 2)
            let out = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            #expect(out.contains(key), "message should name \(key): \(out)")
        }
    }
}
