import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Testing

@testable import FluxNode

/// The simulator in-process on free ports, called over real HTTP.
final class RunningSimulator: Sendable {
    let simulator: LenderSimulator
    let task: Task<Void, any Error>
    let urls: [String: String]
    let control: String

    static func start(_ change: (inout SimulatorConfig) -> Void = { _ in }) async throws -> RunningSimulator {
        var config = SimulatorConfig(controlPort: 0, seed: 7)
        config.lenders = config.lenders.map {
            var l = $0
            l.port = 0
            l.behaviour = SimulatedBehaviour()
            return l
        }
        change(&config)
        let simulator = try LenderSimulator(config: config)
        let (events, sink) = AsyncStream<LenderSimulator.ListeningEvent>.makeStream()
        let task = Task {
            defer { sink.finish() }
            try await simulator.run(logger: Logger(label: "sim-test")) { sink.yield($0) }
        }
        var urls: [String: String] = [:]
        var control: String?
        for await event in events {
            switch event {
            case .lender(let id, let url): urls[id] = url
            case .control(let url): control = url
            }
            if urls.count == config.lenders.count, control != nil { break }
        }
        guard let control, urls.count == config.lenders.count else {
            task.cancel()
            _ = try await task.value
            throw SimulatorConfigError(message: "simulator did not start")
        }
        return RunningSimulator(simulator: simulator, task: task, urls: urls, control: control)
    }

    init(simulator: LenderSimulator, task: Task<Void, any Error>, urls: [String: String], control: String) {
        self.simulator = simulator
        self.task = task
        self.urls = urls
        self.control = control
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }
}

struct SimHTTPReply {
    var status: Int
    var json: SimJSON?
    var headers: [(String, String)]

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

func simCall(
    _ method: HTTPMethod, _ url: String, json: SimJSON? = nil, form: String? = nil, raw: Data? = nil,
    headers: [String: String] = [:], timeout: TimeAmount = .seconds(5)
) async throws -> SimHTTPReply {
    var request = HTTPClientRequest(url: url)
    request.method = method
    for (k, v) in headers { request.headers.add(name: k, value: v) }
    if let json {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: json.encoded()))
    } else if let form {
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.body = .bytes(ByteBuffer(string: form))
    } else if let raw {
        request.body = .bytes(ByteBuffer(bytes: raw))
    }
    let response = try await HTTPClient.shared.execute(request, timeout: timeout)
    let body = try await response.body.collect(upTo: 16 << 20)
    let parsed = try? SimJSON.decode(body.readableBytesView)
    return SimHTTPReply(
        status: Int(response.status.code), json: parsed, headers: response.headers.map { ($0.name, $0.value) })
}

/// An apply body in the given lender's shape.
func simApplyBody(_ shape: LenderAPIShape, ref: String, score: Int = 780, amount: Int64 = 5_000_000, tenure: Int = 12)
    -> SimJSON
{
    var body = SimJSON.object([:])
    body.set(.string(ref), at: shape.referenceField)
    body.set(.int(amount), at: shape.amountField)
    body.set(.int(Int64(tenure)), at: shape.tenureField)
    body.set(.string("ABCPR1234F"), at: shape.panField)
    body.set(.int(Int64(score)), at: shape.scoreField)
    if let dob = shape.dateOfBirthField { body.set(.string("1990-05-17"), at: dob) }
    return body
}

@Suite(.serialized) struct SimulatorHTTPTests {
    let abflKey = ["X-ABFL-Api-Key": "sim-abfl-7c1e9a"]

    func heroToken(_ sim: RunningSimulator) async throws -> [String: String] {
        let r = try await simCall(
            .POST, sim.urls["hero"]! + "/oauth/token",
            form: "grant_type=client_credentials&client_id=flux-sim&client_secret=sim-hero-93b0c5")
        guard r.status == 200, case .string(let token) = r.json?.value(at: "access_token") else {
            throw SimulatorConfigError(message: "no token: \(r.status)")
        }
        return ["Authorization": "Bearer \(token)"]
    }

    @Test func apiKeyIsRequired() async throws {
        let sim = try await RunningSimulator.start()
        let url = sim.urls["abfl"]! + LenderAPIShape.abfl.applyPath
        let body = simApplyBody(.abfl, ref: "k-1")
        let missing = try await simCall(.POST, url, json: body)
        #expect(missing.status == 401)
        #expect(missing.json?.value(at: "error.code") == .string("unauthorized"))
        #expect(try await simCall(.POST, url, json: body, headers: ["X-ABFL-Api-Key": "wrong"]).status == 401)
        // Piramal's key under ABFL's header name is no key at all.
        #expect(
            try await simCall(.POST, url, json: body, headers: ["Ocp-Apim-Subscription-Key": "sim-piramal-5d27e0"])
                .status
                == 401)
        let ok = try await simCall(.POST, url, json: body, headers: abflKey)
        #expect(ok.status == 200)
        #expect(ok.json?.value(at: "decision") == .string("APPROVED"))
        // Nothing was recorded for the refused calls.
        let loans = try await simCall(.GET, sim.control + "/_sim/loans?lender=abfl")
        #expect(loans.json?.value(at: "lenders") == loans.json?.value(at: "lenders"))
        guard case .array(let lenders) = loans.json?.value(at: "lenders"), let abfl = lenders.first else {
            Issue.record("no loans report")
            await sim.stop()
            return
        }
        #expect(abfl.value(at: "applications") == .int(1))
        #expect(abfl.value(at: "count_by_reference.k-1") == .int(1))
        await sim.stop()
    }

    @Test func oauth2SecretInBody() async throws {
        let sim = try await RunningSimulator.start()
        let base = sim.urls["hero"]!
        let url = base + LenderAPIShape.hero.applyPath
        #expect(try await simCall(.POST, url, json: simApplyBody(.hero, ref: "o-1")).status == 401)
        #expect(
            try await simCall(
                .POST, url, json: simApplyBody(.hero, ref: "o-1"), headers: ["Authorization": "Bearer nope"]
            )
            .status == 401)

        let token = try await simCall(
            .POST, base + "/oauth/token",
            form: "grant_type=client_credentials&client_id=flux-sim&client_secret=sim-hero-93b0c5")
        #expect(token.status == 200)
        #expect(token.json?.value(at: "token_type") == .string("Bearer"))
        #expect(token.json?.value(at: "expires_in") == .int(3600))
        // Wrong secret, wrong grant, and HTTP Basic for a client that must use the body.
        let wrong = try await simCall(
            .POST, base + "/oauth/token", form: "grant_type=client_credentials&client_id=flux-sim&client_secret=x")
        #expect(wrong.status == 401)
        #expect(wrong.json?.value(at: "error") == .string("invalid_client"))
        #expect(try await simCall(.POST, base + "/oauth/token", form: "grant_type=password").status == 400)
        let basic = "Basic " + Data("flux-sim:sim-hero-93b0c5".utf8).base64EncodedString()
        #expect(
            try await simCall(
                .POST, base + "/oauth/token", form: "grant_type=client_credentials", headers: ["Authorization": basic]
            )
            .status == 401)

        let headers = try await heroToken(sim)
        let ok = try await simCall(.POST, url, json: simApplyBody(.hero, ref: "o-1"), headers: headers)
        #expect(ok.status == 200)
        #expect(ok.json?.value(at: "status") == .string("APPROVED"))
        #expect(ok.json?.value(at: "roi_bps") == .int(1800))
        await sim.stop()
    }

    @Test func oauth2BasicWithScope() async throws {
        let sim = try await RunningSimulator.start()
        let base = sim.urls["tata"]!
        let basic = "Basic " + Data("flux-sim:sim-tata-2f8d41".utf8).base64EncodedString()
        let bodySecret = try await simCall(
            .POST, base + "/connect/token",
            form: "grant_type=client_credentials&client_id=flux-sim&client_secret=sim-tata-2f8d41")
        #expect(bodySecret.status == 401)
        let badScope = try await simCall(
            .POST, base + "/connect/token", form: "grant_type=client_credentials&scope=admin",
            headers: ["Authorization": basic])
        #expect(badScope.status == 400)
        #expect(badScope.json?.value(at: "error") == .string("invalid_scope"))
        let token = try await simCall(
            .POST, base + "/connect/token", form: "grant_type=client_credentials&scope=proposals.write",
            headers: ["Authorization": basic])
        #expect(token.status == 200)
        #expect(token.json?.value(at: "expires_in") == .int(1800))
        guard case .string(let t) = token.json?.value(at: "access_token") else {
            Issue.record("no token")
            await sim.stop()
            return
        }
        let r = try await simCall(
            .POST, base + LenderAPIShape.tata.applyPath, json: simApplyBody(.tata, ref: "t-1"),
            headers: ["Authorization": "Bearer \(t)"])
        #expect(r.status == 200)
        #expect(r.json?.value(at: "data.outcome") == .string("accept"))
        #expect(r.json?.value(at: "data.pricing.annual_rate_bps") == .int(1350))
        await sim.stop()
    }

    @Test func applyDecidesByTheLendersRules() async throws {
        let sim = try await RunningSimulator.start()
        let url = sim.urls["abfl"]! + LenderAPIShape.abfl.applyPath
        // ABFL: score ≥ 750, amount ≤ ₹2 lakh, tenure 3/6/9/12.
        let cases: [(String, Int, Int64, Int, String)] = [
            ("r-ok", 760, 5_000_000, 12, "APPROVED"),
            ("r-score", 740, 5_000_000, 12, "DECLINED"),
            ("r-amount", 800, 25_000_000, 12, "DECLINED"),
            ("r-tenure", 800, 5_000_000, 18, "DECLINED"),
        ]
        for (ref, score, amount, tenure, want) in cases {
            let r = try await simCall(
                .POST, url, json: simApplyBody(.abfl, ref: ref, score: score, amount: amount, tenure: tenure),
                headers: abflKey)
            #expect(r.status == 200)
            #expect(r.json?.value(at: "decision") == .string(want), "\(ref)")
            #expect(r.json?.value(at: "partner_ref") == .string(ref))
        }
        let declined = try await simCall(
            .GET, sim.urls["abfl"]! + "/api/v1/emi/applications/by-partner-ref/r-score", headers: abflKey)
        guard case .string(let remarks) = declined.json?.value(at: "remarks") else {
            Issue.record("no remarks")
            await sim.stop()
            return
        }
        #expect(remarks.contains("bureau score 740 below 750"))
        await sim.stop()
    }

    @Test func applyIsIdempotentAndStatusFindsIt() async throws {
        let sim = try await RunningSimulator.start()
        let base = sim.urls["piramal"]!
        let key = ["Ocp-Apim-Subscription-Key": "sim-piramal-5d27e0"]
        let first = try await simCall(
            .POST, base + "/los/v2/leads", json: simApplyBody(.piramal, ref: "idem-1", amount: 4_000_000), headers: key)
        let again = try await simCall(
            .POST, base + "/los/v2/leads", json: simApplyBody(.piramal, ref: "idem-1", amount: 4_000_000), headers: key)
        #expect(first.status == 200 && again.status == 200)
        #expect(first.json?.value(at: "leadId") != nil)
        #expect(first.json?.value(at: "leadId") == again.json?.value(at: "leadId"))
        #expect(first.json?.value(at: "leadStatus") == .string("SANCTIONED"))

        let status = try await simCall(.GET, base + "/los/v2/leads?leadReference=idem-1", headers: key)
        #expect(status.status == 200)
        #expect(status.json?.value(at: "leadId") == first.json?.value(at: "leadId"))
        let unknown = try await simCall(.GET, base + "/los/v2/leads?leadReference=never-sent", headers: key)
        #expect(unknown.status == 404)
        #expect(
            try await simCall(
                .GET, sim.urls["abfl"]! + "/api/v1/emi/applications/by-partner-ref/nope", headers: abflKey
            )
            .status == 404)

        guard case .string(let leadID) = first.json?.value(at: "leadId") else {
            await sim.stop()
            return
        }
        let d1 = try await simCall(
            .POST, base + "/los/v2/leads/\(leadID)/disbursement", json: .object([:]), headers: key)
        let d2 = try await simCall(
            .POST, base + "/los/v2/leads/\(leadID)/disbursement", json: .object([:]), headers: key)
        #expect(d1.status == 200 && d2.status == 200)
        #expect(d2.json?.value(at: "disbursementStatus") == .string("SUCCESS"))
        #expect(try await simCall(.POST, base + "/los/v2/leads/PFL-LD-99/disbursement", headers: key).status == 404)
        let cancel = try await simCall(.POST, base + "/los/v2/leads/\(leadID)/cancellation", headers: key)
        #expect(cancel.status == 409)

        let loans = try await simCall(.GET, sim.control + "/_sim/loans?lender=piramal")
        guard case .array(let lenders) = loans.json?.value(at: "lenders"), let p = lenders.first,
            case .array(let rows) = p.value(at: "loans"), let row = rows.first
        else {
            Issue.record("no loans report")
            await sim.stop()
            return
        }
        #expect(p.value(at: "count_by_reference.idem-1") == .int(1))
        #expect(p.value(at: "disbursed") == .int(1))
        #expect(rows.count == 1)
        #expect(row.value(at: "apply_calls") == .int(2))
        #expect(row.value(at: "disburse_calls") == .int(2))
        #expect(loans.json?.value(at: "live_at_several_lenders") == .array([]))
        let summary = try await simCall(.GET, sim.control + "/_sim/loans?summary=true")
        guard case .array(let all) = summary.json?.value(at: "lenders") else {
            Issue.record("no summary")
            await sim.stop()
            return
        }
        #expect(all.count == 4)
        #expect(all.allSatisfy { $0.value(at: "loans") == nil && $0.value(at: "count_by_reference") == nil })
        #expect(all.first { $0.value(at: "id") == .string("piramal") }?.value(at: "max_count_per_reference") == .int(1))
        await sim.stop()
    }

    @Test func percentEncodedReferencesFindTheirLoan() async throws {
        let sim = try await RunningSimulator.start()
        // Flux percent-encodes rendered values in paths and query strings.
        let ref = "app:01J9/x y"
        let encoded = "app%3A01J9%2Fx%20y"
        let headers = try await heroToken(sim)
        let hero = sim.urls["hero"]!
        let applied = try await simCall(
            .POST, hero + "/v2/loans", json: simApplyBody(.hero, ref: ref), headers: headers)
        #expect(applied.status == 200)
        let status = try await simCall(.GET, hero + "/v2/loans/by-ref/\(encoded)", headers: headers)
        #expect(status.status == 200)
        #expect(status.json?.value(at: "ref") == .string(ref))

        let key = ["Ocp-Apim-Subscription-Key": "sim-piramal-5d27e0"]
        let piramal = sim.urls["piramal"]!
        #expect(
            try await simCall(.POST, piramal + "/los/v2/leads", json: simApplyBody(.piramal, ref: ref), headers: key)
                .status
                == 200)
        let byQuery = try await simCall(.GET, piramal + "/los/v2/leads?leadReference=\(encoded)", headers: key)
        #expect(byQuery.status == 200)
        #expect(byQuery.json?.value(at: "leadReference") == .string(ref))
        await sim.stop()
    }

    @Test func ghostModeRecordsTheLoanButReplaysLate() async throws {
        let sim = try await RunningSimulator.start()
        let control = try await simCall(
            .POST, sim.control + "/_sim/control",
            json: .object(["lender": .string("hero"), "ghost_mode": .bool(true), "ghost_delay_ms": .int(1500)]))
        #expect(control.status == 200)
        #expect(control.json?.value(at: "lenders.hero.ghost_mode") == .bool(true))
        #expect(control.json?.value(at: "lenders.abfl.ghost_mode") == .bool(false))

        let headers = try await heroToken(sim)
        let base = sim.urls["hero"]!
        await #expect(throws: HTTPClientError.self) {
            _ = try await simCall(
                .POST, base + "/v2/loans", json: simApplyBody(.hero, ref: "ghost-1"), headers: headers,
                timeout: .milliseconds(150))
        }
        // The caller timed out, but the lender lent: status tells.
        let status = try await simCall(.GET, base + "/v2/loans/by-ref/ghost-1", headers: headers)
        #expect(status.status == 200)
        #expect(status.json?.value(at: "status") == .string("APPROVED"))
        // A re-sent apply is answered from the record (and, in ghost mode, late again): no second loan.
        let loans = try await simCall(.GET, sim.control + "/_sim/loans?lender=hero")
        guard case .array(let lenders) = loans.json?.value(at: "lenders"), let h = lenders.first else {
            Issue.record("no loans report")
            await sim.stop()
            return
        }
        #expect(h.value(at: "count_by_reference.ghost-1") == .int(1))
        #expect(h.value(at: "approved") == .int(1))
        await sim.stop()
    }

    @Test func lateApprovalHidesTheFirstInquiriesThenCountsCancels() async throws {
        let sim = try await RunningSimulator.start()
        let control = try await simCall(
            .POST, sim.control + "/_sim/control",
            json: .object(["lender": .string("hero"), "status_not_found_first": .int(2)]))
        #expect(control.status == 200)
        #expect(control.json?.value(at: "lenders.hero.status_not_found_first") == .int(2))
        #expect(control.json?.value(at: "lenders.abfl.status_not_found_first") == .int(0))
        let bad = try await simCall(
            .POST, sim.control + "/_sim/control",
            json: .object(["lender": .string("hero"), "status_not_found_first": .int(-1)]))
        #expect(bad.status == 422)

        let headers = try await heroToken(sim)
        let base = sim.urls["hero"]!
        let applied = try await simCall(
            .POST, base + "/v2/loans", json: simApplyBody(.hero, ref: "late-1"), headers: headers)
        #expect(applied.json?.value(at: "status") == .string("APPROVED"))
        var codes: [Int] = []
        for _ in 0..<3 {
            codes.append(try await simCall(.GET, base + "/v2/loans/by-ref/late-1", headers: headers).status)
        }
        #expect(codes == [404, 404, 200])
        guard case .string(let loanID)? = applied.json?.value(at: "loan_id") else {
            Issue.record("no loan id")
            await sim.stop()
            return
        }
        let cancel = try await simCall(.POST, base + "/v2/loans/\(loanID)/cancel", headers: headers)
        #expect(cancel.status == 200)
        let loans = try await simCall(.GET, sim.control + "/_sim/loans?lender=hero")
        guard case .array(let lenders) = loans.json?.value(at: "lenders"),
            case .array(let rows)? = lenders.first?.value(at: "loans"), let row = rows.first
        else {
            Issue.record("no loans report")
            await sim.stop()
            return
        }
        #expect(row.value(at: "status_calls") == .int(3))
        #expect(row.value(at: "cancel_calls") == .int(1))
        #expect(row.value(at: "state") == .string("cancelled"))
        await sim.stop()
    }

    @Test func outage503RecordsNothingAndRefuseClosesThePort() async throws {
        let sim = try await RunningSimulator.start()
        let abfl = sim.urls["abfl"]!
        let url = abfl + LenderAPIShape.abfl.applyPath
        _ = try await simCall(
            .POST, sim.control + "/_sim/control",
            json: .object(["lenders": .array([.string("abfl")]), "outage": .string("503")]))
        let down = try await simCall(.POST, url, json: simApplyBody(.abfl, ref: "out-1"), headers: abflKey)
        #expect(down.status == 503)
        #expect(down.header("Retry-After") == "1")
        #expect(
            try await simCall(.GET, abfl + "/api/v1/emi/applications/by-partner-ref/out-1", headers: abflKey).status
                == 503
        )

        _ = try await simCall(
            .POST, sim.control + "/_sim/control",
            json: .object(["lender": .string("abfl"), "outage": .string("refuse")]))
        var refused = false
        for _ in 0..<100 where !refused {
            do {
                _ = try await simCall(.GET, abfl + "/_sim/control", timeout: .milliseconds(500))
                try await Task.sleep(for: .milliseconds(20))
            } catch {
                // Only a refused connection counts. While the server shuts down, a pooled
                // keep-alive connection may first fail as closed; then the next try is refused.
                refused = "\(error)".lowercased().contains("refused")
            }
        }
        #expect(refused, "port still open in refuse mode")

        _ = try await simCall(
            .POST, sim.control + "/_sim/control", json: .object(["lender": .string("abfl"), "outage": .string("none")]))
        var back: SimHTTPReply?
        for _ in 0..<100 where back == nil {
            back = try? await simCall(
                .POST, url, json: simApplyBody(.abfl, ref: "out-1"), headers: abflKey, timeout: .milliseconds(500))
            if back == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(back?.status == 200)
        let loans = try await simCall(.GET, sim.control + "/_sim/loans?lender=abfl")
        guard case .array(let lenders) = loans.json?.value(at: "lenders"), let a = lenders.first else {
            Issue.record("no loans report")
            await sim.stop()
            return
        }
        #expect(a.value(at: "count_by_reference.out-1") == .int(1))
        #expect(a.value(at: "loans") != nil)
        await sim.stop()
    }

    @Test func injectedErrorsAndBadInput() async throws {
        let sim = try await RunningSimulator.start {
            $0.maxBodyBytes = 2048
        }
        let url = sim.urls["abfl"]! + LenderAPIShape.abfl.applyPath
        #expect(try await simCall(.POST, url, raw: Data("{not json".utf8), headers: abflKey).status == 400)
        var missing = simApplyBody(.abfl, ref: "b-1")
        missing.set(.null, at: "applicant")
        let r = try await simCall(.POST, url, json: missing, headers: abflKey)
        #expect(r.status == 422)
        #expect(r.json?.value(at: "error.field") == .string("applicant.pan"))
        #expect(try await simCall(.POST, url, raw: Data(repeating: 0x20, count: 4096), headers: abflKey).status == 413)
        let badControl = try await simCall(.POST, sim.control + "/_sim/control", json: .object(["error_rate": .int(3)]))
        #expect(badControl.status == 422)
        #expect(
            try await simCall(.POST, sim.control + "/_sim/control", json: .object(["lender": .string("sbi")])).status
                == 404)

        _ = try await simCall(
            .POST, sim.control + "/_sim/control", json: .object(["lender": .string("abfl"), "error_rate": .int(1)]))
        #expect(try await simCall(.POST, url, json: simApplyBody(.abfl, ref: "e-1"), headers: abflKey).status == 500)
        _ = try await simCall(
            .POST, sim.control + "/_sim/control", json: .object(["lender": .string("abfl"), "error_rate": .int(0)]))
        #expect(
            try await simCall(.GET, sim.urls["abfl"]! + "/api/v1/emi/applications/by-partner-ref/e-1", headers: abflKey)
                .status == 404)
        await sim.stop()
    }
}
