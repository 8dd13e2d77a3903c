import FluxActors
import Foundation
import Testing

/// The lender harness through the real binary: every auth scheme in a waterfall, ghost loans,
/// circuits (by failure and by operator), hot reload (API and folder), `lenders check`.
@Suite("lenders, end to end", .serialized)
struct LenderIntegrationTests {
    static func rule(_ id: String, priority: Int, _ when: [String]) -> JSONValue {
        [
            "lender_id": .string(id), "priority": .int(Int64(priority)),
            "when": .array((["customer.bureau_score >= 650"] + when).map { .string($0) }),
            "score": "priority * 1000 + customer.bureau_score",
        ]
    }

    static func rules(_ lenders: [JSONValue]) -> JSONValue {
        ["version": 1, "dials": ["min_bureau_score": 650], "lenders": .array(lenders)]
    }

    @Test("workflow (HMAC handshake) and mTLS lenders disburse through the node; secrets stay masked")
    func workflowAndMTLSThroughTheNode() async throws {
        let h = try await LenderHarness(
            extra: ["idfc", "kotak"],
            rules: Self.rules([
                Self.rule("kotak", priority: 50, ["loan.tenure_months <= 12"]),
                Self.rule("idfc", priority: 40, []),
            ]))
        try await h.run { h in
            let viaMTLS = try await h.checkout("k-1", customer: "mtls-1", tenure: 12)
            #expect(viaMTLS["status"] == "disbursed", "\(viaMTLS)\n\(h.logs())")
            #expect(viaMTLS["lender_id"] == "kotak")
            let viaWorkflow = try await h.checkout("w-1", customer: "wf-1", tenure: 18)
            #expect(viaWorkflow["status"] == "disbursed", "\(viaWorkflow)\n\(h.logs())")
            #expect(viaWorkflow["lender_id"] == "idfc")

            let listed = try await h.get("/v1/lenders")
            let text = String(decoding: listed.body, as: UTF8.self)
            for secret in ["sim-idfc-4a9c12", "sim-kotak-81d3f7", "BEGIN", "flux-sim"] {
                #expect(!text.contains(secret), "GET /v1/lenders shows \(secret)")
            }
            let idfc = try #require(try await h.lender("idfc"))
            #expect(idfc["descriptor"]?["auth"]?["type"] == "workflow")
            #expect(idfc["descriptor"]?["auth"]?["steps"] == "***")
            #expect(idfc["stats"]?["approved"] == 1)
            let metrics = String(decoding: try await h.get("/metrics").body, as: UTF8.self)
            #expect(metrics.contains("flux_lender_calls_total"))
            #expect(metrics.contains(#"lender="idfc""#))
            #expect(!metrics.contains("sim-idfc-4a9c12"))
            let logs = h.logs()
            #expect(!logs.contains("sim-idfc-4a9c12") && !logs.contains("sim-kotak-81d3f7"))
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    @Test("ghost mode at the workflow lender: every application has exactly one loan there")
    func ghostModeMakesExactlyOneLoan() async throws {
        let h = try await LenderHarness(
            extra: ["idfc"],
            lenderOverrides: ["idfc": ["ghost_mode": true, "ghost_delay_ms": 1500, "ghost_rate": 1.0]],
            descriptorOverrides: ["idfc": ["timeout_ms": 400]],
            rules: Self.rules([Self.rule("idfc", priority: 50, []), Self.rule("hero", priority: 10, [])]))
        try await h.run { h in
            var ids: [String] = []
            for i in 0..<3 {
                let view = try await h.checkout("g-\(i)", customer: "ghost-\(i)")
                #expect(view["status"] == "disbursed", "\(view)")
                #expect(view["lender_id"] == "idfc")
                #expect(view["attempts"]?.arrayValue?.first?["outcome"] == "ghost_recovered")
                ids.append(view["id"]?.stringValue ?? "")
            }
            let report = try #require(try await h.request("GET", "\(h.controlURL)/loans").json)
            #expect(report["live_at_several_lenders"]?.arrayValue?.isEmpty == true)
            let idfc = try #require(report["lenders"]?.arrayValue?.first { $0["id"] == "idfc" })
            for id in ids {
                #expect(idfc["count_by_reference"]?[id] == 1, "\(id) at idfc")
            }
            let loans = idfc["loans"]?.arrayValue ?? []
            #expect(loans.allSatisfy { $0["apply_calls"] == 1 })
            let hero = report["lenders"]?.arrayValue?.first { $0["id"] == "hero" }
            #expect(hero?["applications"] == 0)
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    @Test("outage: the circuit opens, later checkouts skip the lender and disburse elsewhere, it closes after recovery")
    func outageOpensAndRecoveryClosesTheCircuit() async throws {
        let breaker: JSONValue = [
            "failure_rate_threshold": 50, "sliding_window_size": 4, "minimum_calls": 4, "wait_open_ms": 2000,
            "half_open_calls": 1, "slow_call_ms": 1500,
        ]
        let h = try await LenderHarness(
            lenderOverrides: ["abfl": ["outage": "503"]],
            descriptorOverrides: [
                "abfl": ["circuit_breaker": breaker, "retry": ["max_attempts": 1, "initial_backoff_ms": 0]]
            ])
        try await h.run { h in
            // abfl ranks first for a 790 customer; each 503 is a failed attempt, tata lends instead.
            for i in 0..<4 {
                let view = try await h.checkout("o-\(i)", customer: "out-\(i)")
                #expect(view["status"] == "disbursed", "\(view)")
                #expect(view["attempts"]?.arrayValue?.first?["lender_id"] == "abfl")
                #expect(view["attempts"]?.arrayValue?.first?["outcome"] == "error")
            }
            #expect(try await h.lender("abfl")?["circuit"] == "open")
            let skipped = try await h.checkout("o-5", customer: "out-5")
            #expect(skipped["status"] == "disbursed")
            #expect(skipped["attempts"]?.arrayValue?.first?["outcome"] == "skipped_open_circuit")
            #expect(skipped["lender_id"] != "abfl")

            try await h.simControl(["lender": "abfl", "outage": "none"])
            try await Task.sleep(for: .milliseconds(2_300))
            #expect(try await h.lender("abfl")?["circuit"] == "half_open")
            let trial = try await h.checkout("o-6", customer: "out-6")
            #expect(trial["lender_id"] == "abfl", "\(trial)")
            #expect(try await h.lender("abfl")?["circuit"] == "closed")
            let metrics = String(decoding: try await h.get("/metrics").body, as: UTF8.self)
            #expect(metrics.contains(#"flux_circuit_transitions_total{lender="abfl",to="open"}"#))
            #expect(metrics.contains(#"flux_circuit_transitions_total{lender="abfl",to="closed"}"#))
            #expect(metrics.contains("flux_lender_call_seconds"))
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    @Test("PUT /v1/lenders/{id}: 422 with the path of the first bad field, old one in force; circuits by operator")
    func hotReloadByAPIAndCircuitOverride() async throws {
        let h = try await LenderHarness()
        try await h.run { h in
            let original = try LenderHarness.movedDescriptor(
                LenderHarness.repoRoot.appendingPathComponent("lenders/hero.json"), urls: h.lenderURLs, overrides: [:])

            let bad = original.settingPath(["operations", "apply", "response", "decision", "from"], "status")
            let refused = try await h.send("PUT", "/v1/lenders/hero", bad)
            #expect(refused.status == 422)
            #expect(refused.errorCode == "invalid_descriptor")
            #expect(refused.json?["error"]?["field"] == "$.operations.apply.response.decision.from")
            let wrongID = try await h.send("PUT", "/v1/lenders/tata", original)
            #expect(wrongID.status == 422)
            #expect(wrongID.json?["error"]?["field"] == "$.id")
            #expect(try await h.lender("hero")?["name"] == "Hero FinCorp (simulated)")

            let renamed = original.settingPath(["name"], "Hero FinCorp (reloaded)")
            let ok = try await h.send("PUT", "/v1/lenders/hero", renamed)
            #expect(ok.status == 200)
            #expect(ok.json?["name"] == "Hero FinCorp (reloaded)")
            #expect(ok.json?["descriptor"]?["auth"]?["client_secret"] == "***")
            #expect(try await h.lender("hero")?["name"] == "Hero FinCorp (reloaded)")

            // A brand-new lender by API: the rules see it at once (hasConnector is live).
            let extra = try LenderHarness.movedDescriptor(
                LenderHarness.repoRoot.appendingPathComponent("lenders/hero.json"), urls: h.lenderURLs, overrides: [:]
            ).settingPath(["id"], "hero2")
            #expect(try await h.send("PUT", "/v1/lenders/hero2", extra).status == 200)
            #expect(try await h.lender("hero2") != nil)

            // Operator override.
            let forced = try await h.send("PUT", "/v1/lenders/abfl/circuit", ["state": "forced_open"])
            #expect(forced.status == 200)
            #expect(forced.json?["circuit"] == "forced_open")
            let view = try await h.checkout("c-1", customer: "circ-1")
            #expect(view["attempts"]?.arrayValue?.first?["outcome"] == "skipped_open_circuit")
            #expect(view["status"] == "disbursed")
            #expect(try await h.send("PUT", "/v1/lenders/abfl/circuit", ["state": "half_open"]).status == 422)
            #expect(try await h.send("PUT", "/v1/lenders/nobody/circuit", ["state": "closed"]).status == 404)
            #expect(
                try await h.send("PUT", "/v1/lenders/abfl/circuit", ["state": "closed"]).json?["circuit"] == "closed")
            let after = try await h.checkout("c-2", customer: "circ-2")
            #expect(after["lender_id"] == "abfl")
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    @Test("changed files in lenders_dir load without a restart; a bad one is refused and the old stays")
    func folderWatcher() async throws {
        let h = try await LenderHarness(
            extra: ["idfc"], only: ["abfl", "tata", "hero", "piramal"],
            rules: Self.rules([Self.rule("idfc", priority: 50, []), Self.rule("hero", priority: 10, [])]))
        try await h.run { h in
            let evaluate = NodeHarness.checkout(customer: "eval-1")
            let before = try await h.send("POST", "/v1/rules/evaluate", evaluate).json
            #expect(before?["excluded"]?.arrayValue?.first?["lender_id"] == "idfc")

            let idfc = try LenderHarness.movedDescriptor(
                LenderHarness.repoRoot.appendingPathComponent("lenders/extra/idfc.json"), urls: h.lenderURLs,
                overrides: [:]
            )
            try idfc.jsonData().write(to: h.lendersDir.appendingPathComponent("idfc.json"))
            try await eventually { try await h.lender("idfc") != nil }
            let after = try await h.send("POST", "/v1/rules/evaluate", evaluate).json
            #expect(after?["ranked"]?.arrayValue?.first?["lender_id"] == "idfc")
            let view = try await h.checkout("f-1", customer: "file-1")
            #expect(view["lender_id"] == "idfc", "\(view)")

            // A broken edit: refused, the lender keeps its old descriptor.
            try Data(#"{"id": "idfc", "name": 7}"#.utf8).write(to: h.lendersDir.appendingPathComponent("idfc.json"))
            try await Task.sleep(for: .milliseconds(2_500))
            #expect(try await h.lender("idfc")?["name"] == idfc["name"])
            #expect(h.logs().contains("descriptor refused"))

            try FileManager.default.removeItem(at: h.lendersDir.appendingPathComponent("idfc.json"))
            try await eventually { try await h.lender("idfc") == nil }
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    @Test("flux-node lenders check: OK, the first bad field, and --dry-run against the simulator")
    func lendersCheck() async throws {
        let good = try LenderHarness.runTool(
            ["lenders", "check", LenderHarness.repoRoot.appendingPathComponent("lenders/hero.json").path])
        #expect(good.status == 0)
        #expect(good.output.hasPrefix("OK hero"))

        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flux-check-\(UUID().uuidString.prefix(6)).json")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try Data(
            #"{"id": "x", "name": "X", "base_url": "http://127.0.0.1:1", "operations": {"apply": {"path": "v2"}}}"#.utf8
        )
        .write(to: tmp)
        let bad = try LenderHarness.runTool(["lenders", "check", tmp.path])
        #expect(bad.status == 1)
        #expect(bad.output.contains("$.operations.apply.path"))

        let h = try await LenderHarness(extra: ["idfc"], only: [])
        try await h.run { h in
            let idfc = try LenderHarness.movedDescriptor(
                LenderHarness.repoRoot.appendingPathComponent("lenders/extra/idfc.json"), urls: h.lenderURLs,
                overrides: [:]
            )
            try idfc.jsonData().write(to: tmp)
            let dry = try LenderHarness.runTool(["lenders", "check", tmp.path, "--dry-run"])
            #expect(dry.status == 0, "\(dry.output)")
            #expect(dry.output.contains("auth OK"))
            #expect(dry.output.contains("/auth/v1/token"))
            #expect(dry.output.contains("status OK: not_found"))
            #expect(!dry.output.contains("sim-idfc-4a9c12"))
            #expect(!dry.output.contains("flux-sim"))
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    // MARK: Late approvals (the reconciler)

    /// hero ranks first and answers `apply` only after the caller's timeout (ghost mode), and its
    /// `status` says `not_found` to the first `hidden` inquiries of each reference: the waterfall
    /// gives up on it after two and abfl lends. `cancel: false` drops hero's `cancel` operation.
    static func lateApproval(hidden: Int, cancel: Bool = true) async throws -> LenderHarness {
        var hero: [String: JSONValue] = ["timeout_ms": 400]
        if !cancel {
            let original = try JSONValue.parse(
                Data(contentsOf: LenderHarness.repoRoot.appendingPathComponent("lenders/hero.json")))
            guard case .object(var operations)? = original["operations"] else {
                throw HarnessError("lenders/hero.json has no operations")
            }
            operations["cancel"] = nil
            hero["operations"] = .object(operations)
        }
        return try await LenderHarness(
            lenderOverrides: [
                "hero": [
                    "ghost_mode": true, "ghost_delay_ms": 1500, "ghost_rate": 1.0,
                    "status_not_found_first": .int(Int64(hidden)),
                ]
            ],
            descriptorOverrides: ["hero": hero],
            rules: Self.rules([Self.rule("hero", priority: 50, []), Self.rule("abfl", priority: 10, [])]))
    }

    /// The simulator's record of `reference` at `lender`.
    static func simLoan(_ h: LenderHarness, _ lender: String, _ reference: String) async throws -> JSONValue? {
        let report = try await h.request("GET", "\(h.controlURL)/loans?lender=\(lender)").json
        let rows = report?["lenders"]?.arrayValue?.first?["loans"]?.arrayValue ?? []
        return rows.first { $0["reference"] == .string(reference) }
    }

    /// Checks out one application and expects the waterfall to have given up on hero and
    /// disbursed with abfl. Returns the application id.
    func checkoutGivingUpOnHero(_ h: LenderHarness, _ key: String) async throws -> String {
        let view = try await h.checkout(key, customer: key)
        #expect(view["status"] == "disbursed", "\(view)\n\(h.logs())")
        #expect(view["lender_id"] == "abfl")
        let first = view["attempts"]?.arrayValue?.first
        #expect(first?["lender_id"] == "hero")
        #expect(first?["outcome"] != "ghost_recovered" && first?["outcome"] != "approved", "\(view)")
        return try #require(view["id"]?.stringValue)
    }

    /// The application ends disbursed with abfl, and abfl holds the only live loan for it.
    func expectOneLiveLoanAtAbfl(_ h: LenderHarness, _ id: String) async throws {
        let view = try await h.get("/v1/applications/\(id)").json
        #expect(view?["status"] == "disbursed")
        #expect(view?["lender_id"] == "abfl")
        let loanID = try #require(view?["loan_id"]?.stringValue)
        #expect(try await h.get("/v1/loans/\(loanID)").json?["lender_id"] == "abfl")
        let abfl = try await Self.simLoan(h, "abfl", id)
        #expect(abfl?["state"] == "disbursed")
        #expect(abfl?["apply_calls"] == 1)
    }

    @Test("late approval: the waterfall moves on, the reconciler finds hero's approval and cancels it")
    func lateApprovalIsCancelled() async throws {
        let h = try await Self.lateApproval(hidden: 2)
        try await h.run { h in
            let id = try await checkoutGivingUpOnHero(h, "late-1")
            // The reconciler's first check comes 5 s after the give-up: the third inquiry finds it.
            try await eventually(timeout: .seconds(30)) {
                try await Self.simLoan(h, "hero", id)?["cancel_calls"] == 1
            }
            let hero = try await Self.simLoan(h, "hero", id)
            #expect(hero?["state"] == "cancelled", "\(String(describing: hero))\n\(h.logs())")
            #expect(hero?["apply_calls"] == 1)
            #expect(hero?["status_calls"] == 3)
            try await expectOneLiveLoanAtAbfl(h, id)
            let report = try await h.request("GET", "\(h.controlURL)/loans").json
            #expect(report?["live_at_several_lenders"]?.arrayValue?.isEmpty == true)

            let stats = try await h.lender("hero")?["stats"]
            #expect(stats?["orphan_approvals"] == 1)
            #expect(stats?["orphans_cancelled"] == 1)
            #expect(stats?["orphans_flagged"] == 0)
            #expect(stats?["reconciling"] == 0)
            let metrics = String(decoding: try await h.get("/metrics").body, as: UTF8.self)
            #expect(metrics.contains(#"flux_orphan_approvals_total{lender="hero",result="cancelled"} 1"#))
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    @Test("late approval at a lender without cancel: flagged for operators (stats, metric, log)")
    func lateApprovalWithoutCancelIsFlagged() async throws {
        let h = try await Self.lateApproval(hidden: 2, cancel: false)
        try await h.run { h in
            #expect(try await h.lender("hero")?["descriptor"]?["operations"]?["cancel"] == nil)
            let id = try await checkoutGivingUpOnHero(h, "flag-1")
            try await eventually(timeout: .seconds(30)) {
                try await h.lender("hero")?["stats"]?["orphans_flagged"] == 1
            }
            let stats = try await h.lender("hero")?["stats"]
            #expect(stats?["orphan_approvals"] == 1)
            #expect(stats?["orphans_cancelled"] == 0)
            #expect(stats?["reconciling"] == 0)
            let metrics = String(decoding: try await h.get("/metrics").body, as: UTF8.self)
            #expect(metrics.contains(#"flux_orphan_approvals_total{lender="hero",result="flagged"} 1"#))
            #expect(h.logs().contains("ORPHAN APPROVAL"))
            // Nothing was cancelled: hero still holds its approval, which is what operators must undo.
            let hero = try await Self.simLoan(h, "hero", id)
            #expect(hero?["cancel_calls"] == 0)
            #expect(hero?["state"] == "approved")
            try await expectOneLiveLoanAtAbfl(h, id)
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    @Test("the watch survives a restart: killed between give-up and late approval, the new node still cancels")
    func lateApprovalAfterARestart() async throws {
        // hero hides the loan until the test says otherwise.
        let h = try await Self.lateApproval(hidden: 1_000_000)
        try await h.run { h in
            let id = try await checkoutGivingUpOnHero(h, "restart-1")
            try await eventually { try await h.lender("hero")?["stats"]?["reconciling"] == 1 }

            try await h.restartNode()
            try await eventually { try await h.lender("hero")?["stats"]?["reconciling"] == 1 }
            #expect(try await Self.simLoan(h, "hero", id)?["cancel_calls"] == 0)

            try await h.simControl(["lender": "hero", "status_not_found_first": 0])
            try await eventually(timeout: .seconds(30)) {
                try await Self.simLoan(h, "hero", id)?["cancel_calls"] == 1
            }
            #expect(try await Self.simLoan(h, "hero", id)?["state"] == "cancelled", "\(h.logs())")
            let stats = try await h.lender("hero")?["stats"]
            #expect(stats?["orphans_cancelled"] == 1)
            #expect(stats?["reconciling"] == 0)
            try await expectOneLiveLoanAtAbfl(h, id)
            let report = try await h.request("GET", "\(h.controlURL)/loans").json
            #expect(report?["live_at_several_lenders"]?.arrayValue?.isEmpty == true)
            await h.stop()  // also on the way out: a detached stop may not run before the process exits
        }
    }

    func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("condition not met within \(timeout)")
    }
}

extension JSONValue {
    func settingPath(_ path: [String], _ value: JSONValue) -> JSONValue {
        guard let k = path.first, case .object(var o) = self else { return self }
        o[k] = path.count == 1 ? value : (o[k] ?? [:]).settingPath(Array(path.dropFirst()), value)
        return .object(o)
    }
}
