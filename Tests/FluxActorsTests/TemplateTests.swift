import Crypto
import Foundation
import Testing

@testable import FluxActors

@Suite struct TemplateTests {
    func env(secrets: Set<String> = ["hs", "key"], token: Bool = false, vars: [String: String] = [:])
        -> TemplateEnvironment
    {
        TemplateEnvironment(
            secretNames: secrets, tokenAvailable: token,
            resolver: ReferenceResolver(environment: vars) { _ in throw TemplateRenderError(message: "no files") })
    }

    func text(_ s: String, _ scope: TemplateScope = LenderFixtures.scope(), vars: [String: String] = [:]) throws
        -> String
    {
        try TextTemplate(compiling: s, environment: env(token: true, vars: vars)).render(scope)
    }

    @Test func wholeStringTemplateKeepsTheType() throws {
        let d = try LenderFixtures.descriptor()
        let req = try d.request(for: .apply, scope: LenderFixtures.scope())
        let body = try #require(JSONReader.parse(req.body ?? []))
        #expect(body["amount"] == .int(7_990_000))
        #expect(body["tenure"] == .int(12))
        #expect(body["ref"] == "app-1")
        #expect(body["pan"] == "ABCDE1234F")
        #expect(body["note"] == "EMI for Asha Rao")
        #expect(req.url == "http://127.0.0.1:9103/v2/loans")
        #expect(req.method == "POST")
        #expect(req.header("X-Request-Id") == "app-1")
        #expect(req.header("X-Api-Key") == "k-123")
        #expect(req.header("Content-Type") == "application/json")
    }

    @Test func interpolatedNumberBecomesText() throws {
        #expect(try text("amount={{loan.amount_paise}}") == "amount=7990000")
        #expect(try text("{{customer.name}} / {{application.merchant_id}}") == "Asha Rao / croma")
    }

    @Test func valuesCannotInjectJSON() throws {
        var json = LenderFixtures.checkoutJSON.setting("customer.name", "x\", \"amount\": 1, \"y\": \"")
        json = json.setting("customer.name", .string("Asha\", \"amount_paise\": 1 }"))
        let req = try CheckoutRequest(json: json)
        var ctx = LenderFixtures.context()
        ctx.request = req
        let d = try LenderFixtures.descriptor()
        let r = try d.request(
            for: .apply, scope: TemplateScope(context: ctx, secrets: [:], token: nil, now: Date()))
        let body = try #require(JSONReader.parse(r.body ?? []))
        #expect(body["note"] == .string("EMI for Asha\", \"amount_paise\": 1 }"))
        #expect(body["amount"] == .int(7_990_000))
    }

    @Test func pathAndQueryValuesArePercentEncoded() throws {
        let t = try TextTemplate(
            compiling: "/loans/{{attempt.lender_reference}}?name={{customer.name}}&x=a b", environment: env())
        let s = try t.render(LenderFixtures.scope(reference: "L/1?&=#"), encode: .component)
        #expect(s == "/loans/L%2F1%3F%26%3D%23?name=Asha%20Rao&x=a b")
        let u = try TextTemplate(compiling: "/n/{{customer.name | upper}}", environment: env())
        #expect(try u.render(LenderFixtures.scope(), encode: .component) == "/n/ASHA%20RAO")
    }

    @Test func filters() throws {
        #expect(try text("{{customer.pan | sha256}}") == Hex.lower(SHA256.hash(data: Array("ABCDE1234F".utf8))))
        let mac = HMAC<SHA256>.authenticationCode(for: Array("app-1".utf8), using: SymmetricKey(data: Array("k".utf8)))
        #expect(try text("{{application.id | hmac_sha256:'k'}}") == Hex.lower(mac))
        let scope = LenderFixtures.scope(secrets: ["hs": "k"])
        #expect(try text("{{application.id | hmac_sha256:secrets.hs}}", scope) == Hex.lower(mac))
        #expect(try text("{{application.id | hmac_sha256:${env:HS}}}", vars: ["HS": "k"]) == Hex.lower(mac))
        #expect(try text("{{customer.name | base64}}") == "QXNoYSBSYW8=")
        #expect(try text("{{customer.email | base64url}}") == "YXNoYUBleGFtcGxlLmlu")
        #expect(try text("{{product.sku | base64url}}") == "aXBob25lLTE2LTEyOA")
        #expect(try text("{{customer.name | upper}}") == "ASHA RAO")
        #expect(try text("{{customer.name | lower | upper | lower}}") == "asha rao")
        #expect(try text("{{customer.date_of_birth | iso8601}}") == "1992-04-01T00:00:00Z")
        #expect(try text("{{application.created_at}}") == "2026-01-01T00:00:00Z")
        #expect(try text("{{now}}") == "2026-01-01T00:01:01Z")
        #expect(try text("{{now.epoch_s}}") == "1767225661")
        #expect(try text("{{token}}", LenderFixtures.scope(token: "tok")) == "tok")
        #expect(try text("{{attempt.idempotency_key}}") == "app-1:hero")
    }

    @Test func hmacKeyFromEnvironmentIsNotReparsed() throws {
        // A secret that looks like a template stays literal text.
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array("app-1".utf8), using: SymmetricKey(data: Array("{{customer.pan}}".utf8)))
        #expect(
            try text("{{application.id | hmac_sha256:${env:HS}}}", vars: ["HS": "{{customer.pan}}"]) == Hex.lower(mac))
        #expect(try text("x-${env:HS}", vars: ["HS": "{{customer.pan}}"]) == "x-{{customer.pan}}")
    }

    @Test func filtersGiveStringsInBodies() throws {
        let t = JSONTemplate.typed(
            try TextTemplate(compiling: "{{loan.amount_paise | sha256}}", environment: env()).singleExpression!)
        let v = try t.render(LenderFixtures.scope())
        #expect(v == .string(Hex.lower(SHA256.hash(data: Array("7990000".utf8)))))
    }

    @Test func missingPathIsARenderError() throws {
        let t = try TextTemplate(compiling: "{{customer.middle_name}}", environment: env())
        #expect(throws: TemplateRenderError.self) { try t.render(LenderFixtures.scope()) }
        let r = try TextTemplate(compiling: "/l/{{attempt.lender_reference}}", environment: env())
        do {
            _ = try r.render(LenderFixtures.scope())
            Issue.record("rendered without a lender reference")
        } catch {
            #expect(error.message.contains("attempt.lender_reference"))
        }
        // A typed null stays null; as text it is an error.
        let scope = LenderFixtures.scope(secrets: ["key": .null])
        let typed = try TextTemplate(compiling: "{{secrets.key}}", environment: env()).singleExpression!
        #expect(try typed.typedValue(scope) == .null)
        #expect(throws: TemplateRenderError.self) { try typed.textValue(scope) }
    }

    @Test func compileErrors() {
        for bad in [
            "{{}}", "{{ customer..pan }}", "{{nope.x}}", "{{customer.pan | md5}}", "{{customer.pan | upper:1}}",
            "{{customer.pan | hmac_sha256}}", "{{customer.pan | hmac_sha256:'k}}", "{{now.hour}}", "{{attempt.x}}",
            "{{secrets.absent}}", "{{token}}", "abc {{customer.pan", "${env:MISSING}", "${vault:x}",
        ] {
            #expect(throws: TemplateCompileError.self, "\(bad)") {
                try TextTemplate(compiling: bad, environment: env())
            }
        }
    }

    @Test func iso8601ParsesOffsets() {
        #expect(TimeText.parse("2024-03-01T05:30:00+05:30").map(TimeText.iso8601) == "2024-03-01T00:00:00Z")
        #expect(TimeText.parse("2024-02-29T23:59:59.123Z").map(TimeText.iso8601) == "2024-02-29T23:59:59Z")
        #expect(TimeText.parse("2023-02-29") == nil)
        #expect(TimeText.parse("0").map(TimeText.iso8601) == "1970-01-01T00:00:00Z")
        #expect(TimeText.iso8601(Date(timeIntervalSince1970: -1)) == "1969-12-31T23:59:59Z")
    }

    @Test func jsonPath() throws {
        let doc: JSONValue = ["a": ["b": [["c": 1], ["c": "two"]]], "odd key": true]
        #expect(try JSONPath("$.a.b[0].c").evaluate(doc) == 1)
        #expect(try JSONPath("$.a.b[1]['c']").evaluate(doc) == "two")
        #expect(try JSONPath("$['odd key']").evaluate(doc) == true)
        #expect(try JSONPath("$").evaluate(doc) == doc)
        #expect(try JSONPath("$.a.b[2].c").evaluate(doc) == Optional<JSONValue>.none)
        #expect(try JSONPath("$.a.x").evaluate(doc) == Optional<JSONValue>.none)
        for bad in ["a.b", "$.", "$[x]", "$.a[", "$..a", "$.a b"] {
            #expect(throws: JSONPath.ParseError.self, "\(bad)") { try JSONPath(bad) }
        }
    }

    @Test func jsonReaderAndWriterRoundTrip() throws {
        let text = #"{"a":[1,-2.5,true,false,null,"x\"y\\z\u00e9\ud83d\ude00"],"b":{"c":1e3}}"#
        let v = try #require(JSONReader.parse(Array(text.utf8)))
        #expect(v["a"]?.arrayValue?[0] == .int(1))
        #expect(v["a"]?.arrayValue?[5] == .string("x\"y\\zé😀"))
        #expect(v.value(atPath: "b.c") == .double(1000))
        #expect(JSONReader.parse(Array(JSONWriter.bytes(v))) == v)
        for bad in ["", "{", "[1,]", "01", "\"\u{01}\"", "{\"a\" 1}", "tru", "1 2", "\"\\ud800\""] {
            #expect(JSONReader.parse(Array(bad.utf8)) == Optional<JSONValue>.none, "\(bad)")
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(JSONReader.parse(Array(deep.utf8)) == Optional<JSONValue>.none)
    }
}
