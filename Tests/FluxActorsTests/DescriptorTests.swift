import Foundation
import Testing

@testable import FluxActors

@Suite struct DescriptorTests {
    func error(_ json: JSONValue, env: [String: String] = [:]) -> DescriptorError? {
        do {
            _ = try LenderFixtures.descriptor(json, env: env)
            return nil
        } catch {
            return error as? DescriptorError
        }
    }

    @Test func parsesTheContractExample() throws {
        let d = try LenderFixtures.descriptor()
        #expect(d.id == "hero")
        #expect(d.name == "Hero FinCorp")
        #expect(d.baseURL == "http://127.0.0.1:9103")
        #expect(d.timeoutMs == 2000)
        #expect(d.retry == RetryPolicy(maxAttempts: 3, initialBackoffMs: 100, multiplier: 2, maxBackoffMs: 2000))
        #expect(d.circuitBreaker.slidingWindowSize == 4)
        #expect(d.circuitBreaker.slowCallRateThreshold == 100)
        #expect(Set(d.operations.keys) == [.apply, .status, .disburse, .cancel])
        #expect(d.operations[.status]?.method == "GET")
        #expect(d.validate == ["loan.amount_paise >= 500000", "loan.tenure_months in [3, 6, 9, 12, 18, 24]"])
        guard case .apiKey(let header, _) = d.auth else {
            Issue.record("auth is \(d.auth)")
            return
        }
        #expect(header == "X-Api-Key")
    }

    @Test func defaults() throws {
        var json = LenderFixtures.descriptorJSON()
        for k in ["timeout_ms", "retry", "circuit_breaker", "auth", "validate"] { json = json.setting(k, nil) }
        let d = try LenderFixtures.descriptor(json)
        #expect(d.timeoutMs == 2000)
        #expect(d.retry == RetryPolicy())
        #expect(d.circuitBreaker.failureRateThreshold == 50)
        #expect(d.circuitBreaker.slowCallMs == 2000)
        #expect(d.validate.isEmpty)
        if case .none = d.auth {} else { Issue.record("auth should be none") }
    }

    @Test(
        arguments: [
            ("operations.apply.response.decision.from", JSONValue.int(3), "$.operations.apply.response.decision.from"),
            ("operations.apply.response.decision.from", "status", "$.operations.apply.response.decision.from"),
            (
                "operations.apply.response.decision.map.APPROVED", "yes",
                "$.operations.apply.response.decision.map.APPROVED"
            ),
            ("operations.status", nil, "$.operations.status"),
            ("operations.apply", nil, "$.operations.apply"),
            ("operations.apply.path", "v2/loans", "$.operations.apply.path"),
            ("operations.apply.body.pan", "{{customer.pan | rot13}}", "$.operations.apply.body.pan"),
            ("operations.apply.body.pan", "{{cust.pan}}", "$.operations.apply.body.pan"),
            ("operations.apply.body.pan", "{{application.pan}}", "$.operations.apply.body.pan"),
            ("operations.apply.body.pan", "{{customer.pan", "$.operations.apply.body.pan"),
            ("operations.apply.body.pan", "{{secrets.nope}}", "$.operations.apply.body.pan"),
            ("operations.apply.body.pan", "{{token}}", "$.operations.apply.body.pan"),
            ("operations.apply.body.pan", "{{steps.login.token}}", "$.operations.apply.body.pan"),
            ("operations.apply.headers.X-Request-Id", "a\nb", "$.operations.apply.headers.X-Request-Id"),
            ("operations.apply.response.annual_rate_bps", nil, "$.operations.apply.response.annual_rate_bps"),
            ("operations.apply.response.lender_reference", "$.a[x]", "$.operations.apply.response.lender_reference"),
            ("operations.apply.method", "TRACE", "$.operations.apply.method"),
            ("operations.apply.colour", "red", "$.operations.apply.colour"),
            ("operations.refund", [:], "$.operations.refund"),
            ("id", "hero fincorp", "$.id"),
            ("id", nil, "$.id"),
            ("base_url", "ftp://x", "$.base_url"),
            ("base_url", "not a url", "$.base_url"),
            ("timeout_ms", 0, "$.timeout_ms"),
            ("timeout_ms", "2000", "$.timeout_ms"),
            ("retry.max_attempts", 11, "$.retry.max_attempts"),
            ("retry.multiplier", 0.5, "$.retry.multiplier"),
            ("retry.jitter", "equal", "$.retry.jitter"),
            ("circuit_breaker.failure_rate_threshold", 101, "$.circuit_breaker.failure_rate_threshold"),
            ("circuit_breaker.wait", 1, "$.circuit_breaker.wait"),
            ("validate", "x > 1", "$.validate"),
            ("colour", "red", "$.colour"),
            // mtls and workflow do not take api_key's fields: the first unknown key is named.
            ("auth.type", "mtls", "$.auth.header"),
            ("auth.type", "workflow", "$.auth.header"),
            ("auth.type", "magic", "$.auth.type"),
            ("auth.header", "X Api", "$.auth.header"),
            ("auth.value", nil, "$.auth.value"),
            ("auth.extra", 1, "$.auth.extra"),
            ("secrets", [1], "$.secrets"),
        ] as [(String, JSONValue?, String)])
    func firstBadFieldIsNamed(field: String, value: JSONValue?, path: String) {
        let e = error(LenderFixtures.descriptorJSON().setting(field, value))
        #expect(e?.path == path, "\(e?.message ?? "no error")")
        #expect(e?.message.isEmpty == false)
    }

    @Test func validateEntryPath() {
        let e = error(LenderFixtures.descriptorJSON().setting("validate", ["a > 1", 7]))
        #expect(e?.path == "$.validate[1]")
    }

    @Test func mtlsNeedsReadableFiles() {
        let e = error(LenderFixtures.descriptorJSON().setting("auth", ["type": "mtls", "cert_file": "x"]))
        #expect(e?.path == "$.auth.cert_file")
        #expect(e?.message.contains("cannot be read") == true)
    }

    @Test func oauth2TokenURLRelativeToBase() throws {
        let d = try LenderFixtures.descriptor(
            LenderFixtures.descriptorJSON(auth: [
                "type": "oauth2_client_credentials", "token_url": "/oauth/token", "client_id": "flux",
                "client_secret": "${env:HERO_SECRET}", "client_auth": "basic",
            ]), env: ["HERO_SECRET": "s3cret"])
        guard case .oauth2ClientCredentials(let o) = d.auth else {
            Issue.record("not oauth2")
            return
        }
        #expect(o.tokenURL == "http://127.0.0.1:9103/oauth/token")
        #expect(o.clientSecret == "s3cret")
        #expect(o.clientAuth == .basic)
        #expect(o.scope == nil)
    }

    @Test func missingEnvironmentOrFileIsInvalid() {
        let json = LenderFixtures.descriptorJSON(auth: [
            "type": "api_key", "header": "X-Api-Key", "value": "${env:NOPE}",
        ])
        let e = error(json)
        #expect(e?.path == "$.auth.value")
        #expect(e?.message.contains("NOPE") == true)
        let f = error(LenderFixtures.descriptorJSON().setting("operations.apply.headers.X-Key", "${file:/nope}"))
        #expect(f?.path == "$.operations.apply.headers.X-Key")
    }

    @Test func redactionHidesEverySecret() throws {
        var json = LenderFixtures.descriptorJSON(auth: [
            "type": "oauth2_client_credentials", "token_url": "/oauth/token", "client_id": "flux",
            "client_secret": "${env:HERO_SECRET}", "scope": "loans",
        ])
        json = json.setting("secrets", ["hs": "${file:/run/secrets/hero}", "partner": "p-77"])
        json = json.setting("operations.apply.headers.X-Partner", "pk-${env:PARTNER}")
        let d = try LenderFixtures.descriptor(json, env: ["HERO_SECRET": "s3cret", "PARTNER": "zz"])
        let r = d.redacted
        #expect(
            r["auth"] == [
                "type": "oauth2_client_credentials", "token_url": "/oauth/token", "client_id": "***",
                "client_secret": "***", "scope": "***",
            ])
        #expect(r["secrets"] == ["hs": "***", "partner": "***"])
        #expect(r.value(atPath: "operations.apply.headers.X-Partner") == "***")
        #expect(r.value(atPath: "operations.apply.headers.X-Request-Id") == "{{application.id}}")
        #expect(r["id"] == "hero")
        let text = r.jsonString()
        for secret in ["s3cret", "zz", "file-secret", "p-77", "flux\""] { #expect(!text.contains(secret)) }
        #expect(d.secrets["hs"] == "file-secret")
    }

    @Test func apiKeyRedacted() throws {
        let r = try LenderFixtures.descriptor().redacted
        #expect(r["auth"] == ["type": "api_key", "header": "***", "value": "***"])
    }

    @Test func boundedSize() {
        let big = JSONValue.array(Array(repeating: 1, count: 6000))
        #expect(error(LenderFixtures.descriptorJSON().setting("operations.apply.body.items", big))?.path == "$")
        let long = JSONValue.string(String(repeating: "x", count: 9000))
        #expect(error(LenderFixtures.descriptorJSON().setting("name", long))?.path == "$.name")
    }

    @Test func loadsADirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flux-desc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "k-from-file\n".write(to: dir.appendingPathComponent("hero.key"), atomically: true, encoding: .utf8)
        let json = LenderFixtures.descriptorJSON(auth: [
            "type": "api_key", "header": "X-Api-Key", "value": "${file:hero.key}",
        ])
        try json.jsonData().write(to: dir.appendingPathComponent("hero.json"))
        try Data("ignored".utf8).write(to: dir.appendingPathComponent("README.txt"))
        let all = try loadDescriptors(directory: dir, environment: [:])
        #expect(all.map(\.id) == ["hero"])
        let req = try all[0].request(for: .apply, scope: LenderFixtures.scope())
        #expect(req.header("X-Api-Key") == "k-from-file")

        try json.setting("timeout_ms", -1).jsonData().write(to: dir.appendingPathComponent("bad.json"))
        #expect {
            try loadDescriptors(directory: dir, environment: [:])
        } throws: { e in
            (e as? DescriptorError)?.path == "bad.json: $.timeout_ms"
        }
    }
}
