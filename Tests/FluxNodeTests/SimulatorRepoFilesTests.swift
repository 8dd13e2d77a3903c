import Foundation
import Testing

@testable import FluxNode

/// `simulator.json`, `lenders/*.json` and `rules.json` describe the same four lenders; these
/// tests keep them in step with each other and with the simulator's API shapes.
@Suite struct SimulatorRepoFilesTests {
    static let repo = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func json(_ path: String) throws -> SimJSON {
        try SimJSON.decode(Data(contentsOf: Self.repo.appendingPathComponent(path)))
    }

    @Test func simulatorJSONIsTheBuiltInDemo() throws {
        let config = try SimulatorConfig.load(path: Self.repo.appendingPathComponent("simulator.json").path)
        #expect(config == SimulatorConfig())
    }

    /// Fills a descriptor's templates the way CONTRACT §5 says (a string that is exactly one
    /// `{{path}}` becomes the typed value; inside a longer string, text).
    func render(_ template: SimJSON, _ values: [String: SimJSON]) -> SimJSON {
        switch template {
        case .string(let s):
            if s.hasPrefix("{{"), s.hasSuffix("}}"), s.components(separatedBy: "{{").count == 2 {
                return values[String(s.dropFirst(2).dropLast(2))] ?? .null
            }
            var out = s
            for (k, v) in values {
                let text: String
                switch v {
                case .string(let t): text = t
                case .int(let i): text = String(i)
                default: text = ""
                }
                out = out.replacingOccurrences(of: "{{\(k)}}", with: text)
            }
            return .string(out)
        case .object(let o): return .object(o.mapValues { render($0, values) })
        case .array(let a): return .array(a.map { render($0, values) })
        default: return template
        }
    }

    /// The demo's four, and the two outside the demo (`lenders/extra/`).
    static let simulated: [SimulatedLenderConfig] =
        SimulatorConfig().lenders + [
            SimulatorConfig.idfcLender,
            SimulatorConfig.kotakLender(
                tls: SimulatedTLSConfig(certFile: "s.pem", keyFile: "s.key", clientCAFile: "ca.pem")),
        ]

    @Test(arguments: ["abfl", "piramal", "hero", "tata", "idfc", "kotak"])
    func descriptorMatchesTheSimulatedLender(id: String) throws {
        let extra = !["abfl", "piramal", "hero", "tata"].contains(id)
        let d = try json(extra ? "lenders/extra/\(id).json" : "lenders/\(id).json")
        let sim = try #require(Self.simulated.first { $0.id == id })
        let shape = try #require(LenderAPIShape.named(sim.api))
        #expect(d.value(at: "id") == .string(id))
        let scheme = sim.tls == nil ? "http" : "https"
        #expect(d.value(at: "base_url") == .string("\(scheme)://127.0.0.1:\(sim.port)"))
        for block in ["timeout_ms", "retry.max_attempts", "circuit_breaker.sliding_window_size"] {
            #expect(d.value(at: block) != nil, "\(id) lacks \(block)")
        }

        // Auth: the descriptor carries the credentials the simulator checks.
        switch sim.auth.type {
        case .apiKey where sim.tls != nil:
            #expect(d.value(at: "auth.type") == .string("mtls"))
            #expect(d.value(at: "auth.then.type") == .string("api_key"))
            #expect(d.value(at: "auth.then.header") == .string(sim.auth.header))
            #expect(d.value(at: "auth.then.value") == .string(sim.auth.value))
        case .hmacHandshake:
            #expect(d.value(at: "auth.type") == .string("workflow"))
            #expect(d.value(at: "secrets.client_id") == .string(sim.auth.clientID))
            #expect(d.value(at: "secrets.signing_key") == .string(sim.auth.clientSecret))
            guard case .array(let steps) = d.value(at: "auth.steps") else {
                Issue.record("\(id) has no steps")
                return
            }
            let paths = steps.compactMap { step -> String? in
                if case .string(let p) = step.value(at: "request.path") { return p }
                return nil
            }
            #expect(paths == ["nonce", "challenge", "session", "token"].map { "\(sim.auth.tokenPath)/\($0)" })
        case .apiKey:
            #expect(d.value(at: "auth.type") == .string("api_key"))
            #expect(d.value(at: "auth.header") == .string(sim.auth.header))
            #expect(d.value(at: "auth.value") == .string(sim.auth.value))
        case .oauth2:
            #expect(d.value(at: "auth.type") == .string("oauth2_client_credentials"))
            guard case .string(let url) = d.value(at: "auth.token_url") else {
                Issue.record("\(id) has no token_url")
                return
            }
            #expect(url.hasSuffix(sim.auth.tokenPath))
            #expect(d.value(at: "auth.client_id") == .string(sim.auth.clientID))
            #expect(d.value(at: "auth.client_secret") == .string(sim.auth.clientSecret))
            #expect(d.value(at: "auth.client_auth") == .string(sim.auth.clientAuth.rawValue))
        }

        // Apply: the rendered body is one the simulated lender reads, with the right values.
        #expect(d.value(at: "operations.apply.path") == .string(shape.applyPath))
        let values: [String: SimJSON] = [
            "application.id": .string("app-42"), "application.merchant_id": .string("croma"),
            "attempt.idempotency_key": .string("app-42/\(id)"), "attempt.lender_reference": .string("L-1"),
            "loan.amount_paise": .int(7_990_000), "loan.tenure_months": .int(12), "customer.pan": .string("ABCPR1234F"),
            "customer.bureau_score": .int(762), "customer.date_of_birth": .string("1992-04-01"),
            "customer.name": .string("Asha Rao"), "customer.phone": .string("+919800000001"),
        ]
        let body = render(try #require(d.value(at: "operations.apply.body")), values)
        let input = try shape.decodeApply(body)
        #expect(input.reference == "app-42" && input.amountPaise == 7_990_000 && input.tenureMonths == 12)
        #expect(input.bureauScore == 762 && input.pan == "ABCPR1234F")

        // Status and disburse paths land on the simulator's routes.
        let statusPath = render(try #require(d.value(at: "operations.status.path")), values)
        switch shape.status {
        case .path(let p): #expect(statusPath == .string(p.replacingOccurrences(of: ":ref", with: "app-42")))
        case .query(let p, let param): #expect(statusPath == .string("\(p)?\(param)=app-42"))
        }
        #expect(
            render(try #require(d.value(at: "operations.disburse.path")), values)
                == .string(shape.disbursePath.replacingOccurrences(of: ":id", with: "L-1")))
        #expect(
            render(try #require(d.value(at: "operations.cancel.path")), values)
                == .string(shape.cancelPath.replacingOccurrences(of: ":id", with: "L-1")))

        // Replies: the descriptor's JSONPaths find the decision, reference and rate in the
        // simulator's reply, and its map knows both decision words.
        var book = SimulatedLenderBook(
            lenderID: id, loanIDPrefix: shape.loanIDPrefix, rules: sim.rules, rateBps: sim.rateBps)
        let approved = book.apply(input, now: Date()).loan
        let reply = shape.loanView(approved)
        for op in ["apply", "status"] {
            let r = "operations.\(op).response"
            let decisionPath = try #require(jsonPath(d.value(at: "\(r).decision.from")))
            #expect(reply.value(at: decisionPath) != nil)
            for word in [shape.approvedWord, shape.rejectedWord] {
                #expect(d.value(at: "\(r).decision.map.\(word)") != nil, "\(id) \(op) cannot map \(word)")
            }
            #expect(
                reply.value(at: try #require(jsonPath(d.value(at: "\(r).lender_reference"))))
                    == .string(approved.loanID))
            #expect(
                reply.value(at: try #require(jsonPath(d.value(at: "\(r).annual_rate_bps")))) == .int(Int64(sim.rateBps))
            )
        }
        let disbursed = shape.stateView(approved, word: shape.disbursedWord)
        let disbursePath = try #require(jsonPath(d.value(at: "operations.disburse.response.decision.from")))
        #expect(disbursed.value(at: disbursePath) == .string(shape.disbursedWord))
        #expect(d.value(at: "operations.disburse.response.decision.map.\(shape.disbursedWord)") == .string("disbursed"))
        #expect(d.value(at: "operations.disburse.response.decision.map.\(shape.failedWord)") == .string("failed"))
        #expect(d.value(at: "operations.cancel.response.decision.map.\(shape.cancelledWord)") == .string("cancelled"))
    }

    /// `$.a.b` → `a.b` (the descriptors here use only dotted paths).
    func jsonPath(_ v: SimJSON?) -> String? {
        guard case .string(let s) = v, s.hasPrefix("$.") else { return nil }
        return String(s.dropFirst(2))
    }

    @Test func rulesRankEveryDescribedLender() throws {
        let rules = try json("rules.json")
        #expect(rules.value(at: "version") == .int(1))
        #expect(rules.value(at: "tables") == nil)
        #expect(rules.value(at: "dials.allowed_tenure_months") == .array([3, 6, 9, 12, 18, 24].map { .int($0) }))
        #expect(rules.value(at: "dials.min_bureau_score") != nil)
        #expect(rules.value(at: "dials.max_amount_paise") != nil)
        guard case .array(let lenders) = rules.value(at: "lenders") else {
            Issue.record("no lenders")
            return
        }
        let ids = lenders.compactMap { l -> String? in
            if case .string(let s) = l.value(at: "lender_id") { return s }
            return nil
        }
        #expect(Set(ids) == ["abfl", "piramal", "hero", "tata"])
        for l in lenders {
            #expect(l.value(at: "score") != nil)
            guard case .array(let when) = l.value(at: "when") else {
                Issue.record("lender without when")
                continue
            }
            #expect(!when.isEmpty)
        }
    }
}
