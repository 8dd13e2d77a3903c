import Crypto
import Foundation
import Testing

@testable import FluxActors

/// `auth.type = "workflow"`: parsing, the steps on the wire, caching, renewal at 80 % of the
/// ttl, renewal on a 401, retries from the first step, redaction.
@Suite struct LenderAuthWorkflowTests {
    typealias T = ScriptedTransport

    static let workflow: JSONValue = [
        "type": "workflow",
        "steps": [
            [
                "name": "nonce",
                "request": [
                    "method": "POST", "path": "/auth/v1/nonce", "form": ["client_id": "{{secrets.client_id}}"],
                ],
                "extract": ["nonce": "$.nonce"],
            ],
            [
                "name": "challenge",
                "request": [
                    "path": "/auth/v1/challenge",
                    "body": [
                        "client_id": "{{secrets.client_id}}", "nonce": "{{steps.nonce.nonce}}",
                        "signature": "{{steps.nonce.nonce | hmac_sha256:secrets.signing_key}}",
                    ],
                ],
                "extract": ["id": "$.challenge_id", "challenge": "$.challenge"],
            ],
            [
                "name": "session",
                "request": [
                    "path": "/auth/v1/session",
                    "body": [
                        "challenge_id": "{{steps.challenge.id}}",
                        "response": "{{steps.challenge.challenge | hmac_sha256:secrets.signing_key}}",
                    ],
                ],
                "extract": ["id": "$.session.id"],
            ],
            [
                "name": "token",
                "request": ["path": "/auth/v1/token", "headers": ["X-Session-Id": "{{steps.session.id}}"]],
                "extract": ["access_token": "$.data.access_token", "expires_in": "$.data.expires_in"],
            ],
        ],
        "token": "{{steps.token.access_token}}",
        "ttl_s": "{{steps.token.expires_in}}",
        "apply": ["header": "Authorization", "value": "Bearer {{token}}"],
    ]

    static func descriptorJSON(_ auth: JSONValue = workflow) -> JSONValue {
        LenderFixtures.descriptorJSON(auth: auth).setting(
            "secrets", ["client_id": "flux-sim", "signing_key": "k3y"])
    }

    static func hmac(_ s: String, _ key: String = "k3y") -> String {
        HMAC<SHA256>.authenticationCode(for: Data(s.utf8), using: SymmetricKey(data: Data(key.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// The four replies of one handshake; `token` and `ttl` vary per run.
    static func handshake(_ t: T, token: String, ttl: Int = 900, n: Int = 1) {
        t.enqueue(
            T.json(200, ["nonce": .string("n\(n)")]),
            T.json(200, ["challenge_id": .string("c\(n)"), "challenge": .string("ch\(n)")]),
            T.json(200, ["session": ["id": .string("s\(n)")]]),
            T.json(200, ["data": ["access_token": .string(token), "expires_in": .int(Int64(ttl))]]))
    }

    static let approved: JSONValue = ["status": "APPROVED", "loan_id": "L-1", "roi_bps": 1600]

    func make(_ json: JSONValue = descriptorJSON(), transport: T, clock: TestClock) throws -> LenderConnection {
        var o = LenderConnectionOptions()
        o.jitterSeed = 3
        o.bulkheadWaitMs = 0
        return LenderConnection(
            descriptor: try LenderFixtures.descriptor(json), transport: transport, clock: clock.lenderClock, options: o)
    }

    @Test func parsesAndExposesTheSteps() throws {
        let d = try LenderFixtures.descriptor(Self.descriptorJSON())
        guard case .workflow(let w) = d.auth else {
            Issue.record("not a workflow: \(d.auth)")
            return
        }
        #expect(w.steps.map(\.name) == ["nonce", "challenge", "session", "token"])
        #expect(w.header == "Authorization")
        #expect(d.auth.usesToken)
        // Every part of auth but its type is a secret in GET /v1/lenders.
        #expect(d.redacted["auth"]?["steps"] == "***")
        #expect(d.redacted["auth"]?["type"] == "workflow")
        #expect(d.redacted["secrets"]?["signing_key"] == "***")
    }

    @Test(
        arguments: [
            ("auth.steps", [] as JSONValue, "$.auth.steps"),
            ("auth.ttl_s", nil, "$.auth.ttl_s"),
            ("auth.ttl_s", 0, "$.auth.ttl_s"),
            ("auth.ttl_s", "900", "$.auth.ttl_s"),
            ("auth.token", "{{steps.token.nope}}", "$.auth.token"),
            ("auth.token", "{{customer.pan}}", "$.auth.token"),
            ("auth.apply.header", "Bad Header", "$.auth.apply.header"),
            ("auth.apply", nil, "$.auth.apply"),
            ("auth.colour", "red", "$.auth.colour"),
        ] as [(String, JSONValue?, String)])
    func badFieldsAreNamed(field: String, value: JSONValue?, path: String) {
        let json = Self.descriptorJSON().setting(field, value)
        do {
            _ = try LenderFixtures.descriptor(json)
            Issue.record("accepted \(field) = \(String(describing: value))")
        } catch let error as DescriptorError {
            #expect(error.path == path, "\(error.message)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func stepTemplatesAreChecked() {
        func failure(_ step: Int, _ key: String, _ value: JSONValue) -> DescriptorError? {
            guard case .array(var steps)? = Self.workflow["steps"] else { return nil }
            steps[step] = steps[step].setting(key, value)
            do {
                _ = try LenderFixtures.descriptor(Self.descriptorJSON(Self.workflow.setting("steps", .array(steps))))
                return nil
            } catch { return error as? DescriptorError }
        }
        // A step reads only the steps before it.
        #expect(
            failure(0, "request.form.client_id", "{{steps.token.access_token}}")?.path
                == "$.auth.steps[0].request.form.client_id")
        // Auth runs once per lender: no application in it.
        #expect(
            failure(1, "request.body.nonce", "{{application.id}}")?.path == "$.auth.steps[1].request.body.nonce")
        #expect(failure(2, "request.form", ["a": "b"])?.path == "$.auth.steps[2].request.form")
        #expect(failure(3, "extract.access_token", "data.token")?.path == "$.auth.steps[3].extract.access_token")
        #expect(failure(1, "name", "nonce")?.path == "$.auth.steps[1].name")
        // Step headers follow the operations' rules (no line breaks: no header injection).
        #expect(
            failure(0, "request.headers", ["X-Trace": "a\r\nX-Evil: 1"])?.path
                == "$.auth.steps[0].request.headers.X-Trace")
        // Operations may read the steps' values, and the token.
        let ok = Self.descriptorJSON().setting("operations.apply.headers.X-Session", "{{steps.session.id}}")
        #expect((try? LenderFixtures.descriptor(ok)) != nil)
    }

    @Test func stepsRunInOrderAndTheTokenIsCached() async throws {
        let clock = TestClock()
        let t = T()
        Self.handshake(t, token: "tok-1")
        t.enqueue(T.json(200, Self.approved), T.json(200, Self.approved))
        let c = try make(transport: t, clock: clock)
        #expect(
            await c.apply(LenderFixtures.context()).outcome
                == .approved(reference: "L-1", annualRateBps: 1600, reason: nil))
        #expect(
            await c.apply(LenderFixtures.context()).outcome
                == .approved(reference: "L-1", annualRateBps: 1600, reason: nil))
        let r = t.requests
        #expect(r.count == 6)
        #expect(
            r.map(\.url).prefix(4) == [
                "http://127.0.0.1:9103/auth/v1/nonce", "http://127.0.0.1:9103/auth/v1/challenge",
                "http://127.0.0.1:9103/auth/v1/session", "http://127.0.0.1:9103/auth/v1/token",
            ])
        #expect(r[0].header("Content-Type") == "application/x-www-form-urlencoded")
        #expect(String(decoding: r[0].body ?? [], as: UTF8.self) == "client_id=flux-sim")
        let challenge = try JSONValue.parse(r[1].body ?? [])
        #expect(challenge["signature"] == .string(Self.hmac("n1")))
        #expect(challenge["nonce"] == "n1")
        let session = try JSONValue.parse(r[2].body ?? [])
        #expect(session["challenge_id"] == "c1")
        #expect(session["response"] == .string(Self.hmac("ch1")))
        #expect(r[3].header("X-Session-Id") == "s1")
        #expect(r[3].body == nil)
        #expect(r[4].header("Authorization") == "Bearer tok-1")
        #expect(r[5].header("Authorization") == "Bearer tok-1")
        #expect(await c.tokenFetches == 1)
    }

    @Test func renewedAtEightyPercentOfATemplatedTTL() async throws {
        let clock = TestClock()
        let t = T()
        Self.handshake(t, token: "tok-1", ttl: 2)
        t.enqueue(T.json(200, Self.approved))
        let c = try make(transport: t, clock: clock)
        _ = await c.apply(LenderFixtures.context())
        clock.advance(ms: 1_500)  // under 80 % of 2 s
        t.enqueue(T.json(200, Self.approved))
        _ = await c.apply(LenderFixtures.context())
        #expect(await c.tokenFetches == 1)
        clock.advance(ms: 200)  // 1.7 s: past 1.6 s
        Self.handshake(t, token: "tok-2", ttl: 2, n: 2)
        t.enqueue(T.json(200, Self.approved))
        _ = await c.apply(LenderFixtures.context())
        #expect(await c.tokenFetches == 2)
        let auth = t.requests.compactMap { $0.header("Authorization") }
        #expect(auth == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"])
    }

    @Test func literalTTL() async throws {
        let clock = TestClock()
        let t = T()
        Self.handshake(t, token: "tok-1", ttl: 5)
        t.enqueue(T.json(200, Self.approved))
        let c = try make(Self.descriptorJSON(Self.workflow.setting("ttl_s", 100)), transport: t, clock: clock)
        _ = await c.apply(LenderFixtures.context())
        #expect(await c.tokenRenewsInSeconds == 80)
    }

    @Test func a401RenewsOnceThenIsTheAnswer() async throws {
        let clock = TestClock()
        let t = T()
        Self.handshake(t, token: "tok-1")
        t.enqueue(T.status(401))
        Self.handshake(t, token: "tok-2", n: 2)
        t.enqueue(T.json(200, Self.approved))
        let c = try make(transport: t, clock: clock)
        let call = await c.apply(LenderFixtures.context())
        #expect(call.outcome == .approved(reference: "L-1", annualRateBps: 1600, reason: nil))
        #expect(t.requests.compactMap { $0.header("Authorization") } == ["Bearer tok-1", "Bearer tok-2"])
        // Two 401s in a row: the second is the answer, after one renewal.
        t.enqueue(T.status(401))
        Self.handshake(t, token: "tok-3", n: 3)
        t.enqueue(T.status(401))
        let again = await c.apply(LenderFixtures.context())
        #expect(again.outcome == .failed(reason: "HTTP 401"))
        #expect(await c.tokenFetches == 3)
    }

    @Test func aFailedStepStartsAgainFromTheFirst() async throws {
        let clock = TestClock()
        let t = T()
        t.enqueue(T.json(200, ["nonce": "n1"]), T.status(503))
        Self.handshake(t, token: "tok-1", n: 2)
        t.enqueue(T.json(200, Self.approved))
        let c = try make(transport: t, clock: clock)
        let call = await c.apply(LenderFixtures.context())
        #expect(call.outcome == .approved(reference: "L-1", annualRateBps: 1600, reason: nil))
        #expect(
            t.requests.map { URL(string: $0.url)!.path }.prefix(6) == [
                "/auth/v1/nonce", "/auth/v1/challenge", "/auth/v1/nonce", "/auth/v1/challenge", "/auth/v1/session",
                "/auth/v1/token",
            ])
        #expect(clock.sleeps.count == 1)
    }

    @Test func aHandshakeThatNeverWorksFailsTheCallWithTheReason() async throws {
        let clock = TestClock()
        let t = T()
        t.enqueue(T.json(200, ["nonce": "n1"]), T.json(200, ["challenge_id": "c1"]))
        let c = try make(transport: t, clock: clock)
        let call = await c.apply(LenderFixtures.context())
        // A missing extraction is retried like a bad reply; the script then runs dry.
        guard case .failed(let reason) = call.outcome else {
            Issue.record("\(call.outcome)")
            return
        }
        #expect(reason.hasPrefix("auth: "))
        #expect(t.requests.allSatisfy { $0.url.contains("/auth/v1/") })
        #expect(await c.authenticate() != nil)
    }

    @Test func mtlsWrapsAnotherAuth() throws {
        // Files through the fixture's resolver: only /run/secrets/hero exists, so a readable
        // file that is not PEM is refused at its own field.
        let json = LenderFixtures.descriptorJSON(auth: [
            "type": "mtls", "cert_file": "/run/secrets/hero", "key_file": "/run/secrets/hero",
        ]).setting("base_url", "https://127.0.0.1:9106")
        do {
            _ = try LenderFixtures.descriptor(json)
            Issue.record("accepted a certificate that is not PEM")
        } catch {
            #expect((error as? DescriptorError)?.path == "$.auth.cert_file")
        }
        let nested = LenderFixtures.descriptorJSON(auth: [
            "type": "mtls", "cert_file": "/run/secrets/hero", "key_file": "/run/secrets/hero",
            "then": ["type": "mtls"],
        ])
        do {
            _ = try LenderFixtures.descriptor(nested)
            Issue.record("accepted")
        } catch {
            #expect((error as? DescriptorError)?.path == "$.auth.cert_file")
        }
    }
}
