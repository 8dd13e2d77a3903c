import Foundation
import Testing

@testable import FluxActors

@Suite struct LenderConnectionTests {
    typealias T = ScriptedTransport

    static let approved: JSONValue = ["status": "APPROVED", "loan_id": "L-1", "roi_bps": 1600]

    static let oauth: JSONValue = [
        "type": "oauth2_client_credentials", "token_url": "/oauth/token", "client_id": "flux",
        "client_secret": "s3cret", "scope": "loans",
    ]

    func make(_ json: JSONValue = LenderFixtures.descriptorJSON(), transport: T, clock: TestClock) throws
        -> LenderConnection
    {
        var o = LenderConnectionOptions()
        o.jitterSeed = 7
        o.bulkheadWaitMs = 0
        return LenderConnection(
            descriptor: try LenderFixtures.descriptor(json), transport: transport, clock: clock.lenderClock, options: o)
    }

    @Test func apiKeyApplyApproved() async throws {
        let clock = TestClock()
        let t = T()
        t.enqueue(T.json(200, Self.approved))
        let c = try make(transport: t, clock: clock)
        let call = await c.apply(LenderFixtures.context())
        #expect(call.outcome == .approved(reference: "L-1", annualRateBps: 1600, reason: nil))
        #expect(call.tries == 1)
        #expect(t.requests.count == 1)
        #expect(t.requests[0].header("X-Api-Key") == "k-123")
        #expect(t.requests[0].url == "http://127.0.0.1:9103/v2/loans")
        let s = await c.currentStats()
        #expect(s.calls == 1 && s.approved == 1)
    }

    @Test func oauth2TokenIsFetchedOnceAndShared() async throws {
        let clock = TestClock()
        let t = T()
        t.enqueueToken(T.json(200, ["access_token": "tok-1", "expires_in": 100, "token_type": "Bearer"]))
        for _ in 0..<5 { t.enqueue(T.json(200, Self.approved)) }
        let c = try make(LenderFixtures.descriptorJSON(auth: Self.oauth), transport: t, clock: clock)
        await withTaskGroup(of: Void.self) { g in
            for _ in 0..<5 { g.addTask { _ = await c.apply(LenderFixtures.context()) } }
        }
        #expect(t.tokenRequests.count == 1)
        #expect(t.operationRequests.count == 5)
        #expect(t.operationRequests.allSatisfy { $0.header("Authorization") == "Bearer tok-1" })
        let tokenBody = String(decoding: t.tokenRequests[0].body ?? [], as: UTF8.self)
        #expect(tokenBody == "grant_type=client_credentials&scope=loans&client_id=flux&client_secret=s3cret")
        #expect(t.tokenRequests[0].url == "http://127.0.0.1:9103/oauth/token")
    }

    @Test func oauth2TokenIsRenewedBeforeExpiry() async throws {
        let clock = TestClock()
        let t = T()
        t.enqueueToken(
            T.json(200, ["access_token": "tok-1", "expires_in": 100]),
            T.json(200, ["access_token": "tok-2", "expires_in": 100]))
        for _ in 0..<3 { t.enqueue(T.json(200, Self.approved)) }
        let c = try make(LenderFixtures.descriptorJSON(auth: Self.oauth), transport: t, clock: clock)
        _ = await c.apply(LenderFixtures.context())
        clock.advance(ms: 79_000)
        _ = await c.apply(LenderFixtures.context())
        #expect(t.tokenRequests.count == 1)
        clock.advance(ms: 2_000)  // 81 s: past 80 % of 100 s
        _ = await c.apply(LenderFixtures.context())
        #expect(t.tokenRequests.count == 2)
        #expect(
            t.operationRequests.map { $0.header("Authorization") } == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"])
    }

    @Test func a401RenewsTheTokenOnceAndRetries() async throws {
        let clock = TestClock()
        let t = T()
        t.enqueueToken(
            T.json(200, ["access_token": "tok-1", "expires_in": 100]),
            T.json(200, ["access_token": "tok-2", "expires_in": 100]),
            T.json(200, ["access_token": "tok-3", "expires_in": 100]))
        t.enqueue(T.status(401), T.json(200, Self.approved))
        let c = try make(LenderFixtures.descriptorJSON(auth: Self.oauth), transport: t, clock: clock)
        let call = await c.apply(LenderFixtures.context())
        #expect(call.outcome == .approved(reference: "L-1", annualRateBps: 1600, reason: nil))
        #expect(t.operationRequests.map { $0.header("Authorization") } == ["Bearer tok-1", "Bearer tok-2"])
        // A second 401 in a row is the answer.
        t.enqueue(T.status(401), T.status(401))
        let again = await c.apply(LenderFixtures.context())
        #expect(again.outcome == .failed(reason: "HTTP 401"))
        #expect(t.tokenRequests.count == 3)
    }

    @Test func basicClientAuth() throws {
        var o = Self.oauth.setting("client_auth", "basic")
        o = o.setting("client_id", "a b")
        let d = try LenderFixtures.descriptor(LenderFixtures.descriptorJSON(auth: o))
        guard case .oauth2ClientCredentials(let cfg) = d.auth else { return }
        let r = cfg.tokenRequest()
        #expect(r.header("Authorization") == "Basic " + Data("a%20b:s3cret".utf8).base64EncodedString())
        #expect(String(decoding: r.body ?? [], as: UTF8.self) == "grant_type=client_credentials&scope=loans")
    }

    @Test func applyIsNotResentAfterATimeout() async throws {
        let t = T()
        t.enqueue(T.fail(.timedOut))
        let c = try make(transport: t, clock: TestClock())
        let call = await c.apply(LenderFixtures.context())
        #expect(call.outcome == .unknown(reason: "timed out", timedOut: true))
        #expect(call.tries == 1)
        #expect(t.requests.count == 1)
        t.enqueue(T.fail(.connectionLost("reset")))
        let lost = await c.apply(LenderFixtures.context())
        guard case .unknown(_, false) = lost.outcome else {
            Issue.record("\(lost.outcome)")
            return
        }
    }

    @Test func applyIsRetriedAfterConnectFailureAnd503() async throws {
        let clock = TestClock()
        let t = T()
        t.enqueue(T.fail(.couldNotConnect("refused")), T.status(503), T.json(200, Self.approved))
        let c = try make(transport: t, clock: clock)
        let call = await c.apply(LenderFixtures.context())
        #expect(call.outcome == .approved(reference: "L-1", annualRateBps: 1600, reason: nil))
        #expect(call.tries == 3)
        #expect(clock.sleeps.count <= 2)
        #expect(clock.sleeps.allSatisfy { $0 <= .milliseconds(200) })
        // 429 on every try: failed, after max_attempts (3).
        t.enqueue(T.status(429), T.status(429), T.status(429))
        let busy = await c.apply(LenderFixtures.context())
        #expect(busy.outcome == .failed(reason: "HTTP 429 after 3 tries"))
        #expect(busy.tries == 3)
        // 500 may have been processed: unknown, not retried.
        t.enqueue(T.status(500))
        let broken = await c.apply(LenderFixtures.context())
        #expect(broken.outcome == .unknown(reason: "HTTP 500", timedOut: false))
        #expect(broken.tries == 1)
    }

    @Test func statusIsRetriedAndMaps404() async throws {
        let t = T()
        t.enqueue(T.fail(.timedOut), T.status(404))
        let c = try make(transport: t, clock: TestClock())
        let call = await c.status(LenderFixtures.context())
        #expect(call.outcome == .notFound)
        #expect(call.tries == 2)
        #expect(t.requests[0].url == "http://127.0.0.1:9103/v2/loans/by-ref/app-1")
        #expect(t.requests[0].method == "GET")
        #expect(t.requests[0].body == nil)
        t.enqueue(T.json(200, Self.approved))
        #expect(await c.status(LenderFixtures.context()).outcome == .approved(reference: "L-1", annualRateBps: 1600))
        t.enqueue(T.fail(.timedOut), T.fail(.timedOut), T.fail(.timedOut))
        #expect(await c.status(LenderFixtures.context()).outcome == .unknown(reason: "timed out"))
    }

    @Test func disburseAndCancel() async throws {
        let t = T()
        let c = try make(transport: t, clock: TestClock())
        // No lender reference: the path cannot be rendered, nothing is sent.
        let missing = await c.disburse(LenderFixtures.context())
        guard case .failed(let reason) = missing.outcome else {
            Issue.record("\(missing.outcome)")
            return
        }
        #expect(reason.contains("attempt.lender_reference"))
        #expect(t.requests.isEmpty)
        t.enqueue(T.json(200, ["state": "DONE"]), T.json(200, [:]))
        #expect(await c.disburse(LenderFixtures.context(reference: "L/1")).outcome == .disbursed)
        #expect(t.requests[0].url == "http://127.0.0.1:9103/v2/loans/L%2F1/disburse")
        #expect(await c.cancel(LenderFixtures.context(reference: "L-1"))?.outcome == .cancelled)
        let noCancel = try make(
            LenderFixtures.descriptorJSON().setting("operations.cancel", nil), transport: t, clock: TestClock())
        #expect(await noCancel.cancel(LenderFixtures.context(reference: "L-1")) == nil)
    }

    @Test func unreadableRepliesAreErrorsWithReasons() async throws {
        let t = T()
        t.enqueue(
            T.json(200, ["status": "MAYBE"]),
            { _ in .success(LenderHTTPResponse(status: 200, body: Array("<html>".utf8))) })
        let c = try make(transport: t, clock: TestClock())
        let a = await c.apply(LenderFixtures.context())
        #expect(
            a.outcome
                == .unknown(
                    reason: "unreadable reply: decision word 'MAYBE' at $.status is not in the map", timedOut: false))
        let b = await c.apply(LenderFixtures.context())
        #expect(b.outcome == .unknown(reason: "unreadable reply: not JSON", timedOut: false))
    }

    func directory(_ t: T, clock: TestClock, json: JSONValue = LenderFixtures.descriptorJSON()) throws
        -> LenderDirectory
    {
        var o = LenderConnectionOptions()
        o.jitterSeed = 1
        o.bulkheadWaitMs = 0
        return try LenderDirectory(
            descriptors: [LenderFixtures.descriptor(json)], transport: t,
            compileCondition: { text in
                // A stand-in for the rules engine: two known conditions.
                switch text {
                case "loan.amount_paise >= 500000": return { r, _ in r.amountPaise >= 500_000 }
                case "loan.tenure_months in [3, 6, 9, 12, 18, 24]":
                    return { r, _ in [3, 6, 9, 12, 18, 24].contains(r.tenureMonths) }
                default: throw TemplateCompileError("cannot compile \(text)")
                }
            }, clock: clock.lenderClock, options: o)
    }

    @Test func circuitOpensAfterFailuresAndLenderIsSkipped() async throws {
        let clock = TestClock()
        let t = T()
        let dir = try directory(t, clock: clock)
        for _ in 0..<4 { t.enqueue(T.fail(.timedOut)) }
        for _ in 0..<4 {
            #expect(await dir.admit(lenderID: "hero", context: LenderFixtures.context()) == .permitted)
            _ = await dir.apply(lenderID: "hero", context: LenderFixtures.context())
        }
        #expect(await dir.admit(lenderID: "hero", context: LenderFixtures.context()) == .circuitOpen)
        let skipped = await dir.apply(lenderID: "hero", context: LenderFixtures.context())
        #expect(skipped.outcome == .failed(reason: "circuit open"))
        #expect(skipped.tries == 0)
        #expect(t.requests.count == 4)
        #expect(await dir.connection("hero")!.breaker.transitions[.open] == 1)
        // After wait_open_ms the circuit lets trial calls through.
        clock.advance(ms: 30_000)
        t.enqueue(T.json(200, Self.approved), T.json(200, Self.approved))
        #expect(await dir.admit(lenderID: "hero", context: LenderFixtures.context()) == .permitted)
        _ = await dir.apply(lenderID: "hero", context: LenderFixtures.context())
        var ctx2 = LenderFixtures.context()
        ctx2.idempotencyKey = "app-2:hero"
        #expect(await dir.admit(lenderID: "hero", context: ctx2) == .permitted)
        _ = await dir.apply(lenderID: "hero", context: ctx2)
        #expect(await dir.connection("hero")!.breaker.state == .closed)
    }

    @Test func slowCallsCount() async throws {
        let clock = TestClock()
        let t = T(clock: clock, latencyMs: 1600)  // over slow_call_ms 1500
        let json = LenderFixtures.descriptorJSON().setting("circuit_breaker.slow_call_rate_threshold", 50)
        let c = try make(json, transport: t, clock: clock)
        for _ in 0..<4 { t.enqueue(T.json(200, Self.approved)) }
        for _ in 0..<4 { _ = await c.apply(LenderFixtures.context()) }
        #expect(await c.breaker.state == .open)
        let s = await c.currentStats()
        #expect(s.p50Ms == 1600 && s.p99Ms == 1600)
    }

    @Test func admissionChecks() async throws {
        let t = T()
        let dir = try directory(t, clock: TestClock())
        #expect(await dir.admit(lenderID: "nope", context: LenderFixtures.context()) == .unknownLender)
        var ctx = LenderFixtures.context()
        ctx.request.tenureMonths = 7
        #expect(
            await dir.admit(lenderID: "hero", context: ctx)
                == .validationFailed("loan.tenure_months in [3, 6, 9, 12, 18, 24]"))
        await #expect(
            throws: DescriptorError(
                path: "$.validate[0]", message: "TemplateCompileError(message: \"cannot compile x\")")
        ) {
            try await dir.replace(
                try LenderFixtures.descriptor(LenderFixtures.descriptorJSON().setting("validate", ["x"])))
        }
    }

    @Test func hotSwapAndList() async throws {
        let t = T()
        let dir = try directory(t, clock: TestClock())
        t.enqueue(T.json(200, Self.approved), T.json(200, ["status": "REJECTED", "remarks": "no"]))
        _ = await dir.apply(lenderID: "hero", context: LenderFixtures.context())
        let listed = await dir.list()
        #expect(listed.count == 1)
        #expect(listed[0]["id"] == "hero")
        #expect(listed[0]["base_url"] == "http://127.0.0.1:9103")
        #expect(listed[0]["circuit"] == "closed")
        #expect(listed[0].value(atPath: "stats.calls") == 1)
        #expect(listed[0].value(atPath: "stats.approval_rate") == .double(1))
        #expect(listed[0].value(atPath: "descriptor.auth.value") == "***")
        try await dir.replace(
            LenderFixtures.descriptor(LenderFixtures.descriptorJSON().setting("base_url", "http://10.0.0.9:1")))
        let r = await dir.apply(lenderID: "hero", context: LenderFixtures.context())
        #expect(r.outcome == .rejected(reason: "no", reference: nil))
        #expect(t.requests[1].url == "http://10.0.0.9:1/v2/loans")
        #expect(await dir.list()[0].value(atPath: "stats.calls") == 1)
    }

    @Test func operatorOverrideSurvivesAReloadAndContainsIsLive() async throws {
        let t = T()
        let dir = try directory(t, clock: TestClock())
        #expect(dir.contains("hero") && !dir.contains("tata"))
        #expect(await dir.setCircuit(lenderID: "hero", forcedOpen: true))
        #expect(await !dir.setCircuit(lenderID: "tata", forcedOpen: true))
        #expect(await dir.admit(lenderID: "hero", context: LenderFixtures.context()) == .circuitOpen)
        try await dir.replace(LenderFixtures.descriptor(LenderFixtures.descriptorJSON().setting("name", "Hero 2")))
        #expect(await dir.connection("hero")!.breaker.state == .forcedOpen)
        #expect(await dir.describe(lenderID: "hero")?["circuit"] == "forced_open")
        #expect(await dir.setCircuit(lenderID: "hero", forcedOpen: false))
        #expect(await dir.admit(lenderID: "hero", context: LenderFixtures.context()) == .permitted)
        try await dir.replace(LenderFixtures.descriptor(LenderFixtures.descriptorJSON().setting("id", "tata")))
        #expect(dir.contains("tata"))
        dir.remove(lenderID: "tata")
        #expect(!dir.contains("tata"))
    }

    @Test func bulkheadFullFailsFast() async throws {
        var o = LenderConnectionOptions()
        o.maxConcurrentCalls = 0
        o.bulkheadWaitMs = 0
        let t = T()
        let c = LenderConnection(
            descriptor: try LenderFixtures.descriptor(), transport: t, clock: TestClock().lenderClock, options: o)
        #expect(await c.apply(LenderFixtures.context()).outcome == .failed(reason: "bulkhead full"))
        #expect(t.requests.isEmpty)
    }
}
