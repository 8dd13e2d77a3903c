import Foundation
import Testing

@testable import FluxNode

@Suite struct SimulatorBookTests {
    // 2025-06-15T00:00:00Z
    let now = Date(timeIntervalSince1970: 1_749_945_600)

    func input(
        _ ref: String = "app-1", score: Int = 760, amount: Int64 = 5_000_000, tenure: Int = 12, dob: String? = nil
    )
        -> LoanApplicationInput
    {
        LoanApplicationInput(
            reference: ref, amountPaise: amount, tenureMonths: tenure, pan: "ABCPR1234F", bureauScore: score,
            dateOfBirth: dob.flatMap(SimDate.init))
    }

    func book(_ rules: SimulatedLendingRules) -> SimulatedLenderBook {
        SimulatedLenderBook(lenderID: "abfl", loanIDPrefix: "ABFL-", rules: rules, rateBps: 1499)
    }

    @Test func approvesWithinPolicyAndQuotesRate() {
        var b = book(
            SimulatedLendingRules(minBureauScore: 750, maxAmountPaise: 20_000_000, allowedTenureMonths: [3, 6, 9, 12]))
        let (loan, isNew) = b.apply(input(), now: now)
        #expect(isNew)
        #expect(loan.decision == .approved)
        #expect(loan.state == .approved)
        #expect(loan.rateBps == 1499)
        #expect(loan.loanID == "ABFL-00000001")
        #expect(loan.reason == nil)
    }

    @Test func declinesWithEveryFailedRule() {
        var b = book(
            SimulatedLendingRules(minBureauScore: 750, maxAmountPaise: 2_000_000, allowedTenureMonths: [3, 6]))
        let (loan, _) = b.apply(input(score: 700, amount: 5_000_000, tenure: 12), now: now)
        #expect(loan.decision == .rejected)
        let reason = loan.reason ?? ""
        #expect(reason.contains("bureau score 700 below 750"))
        #expect(reason.contains("above 2000000"))
        #expect(reason.contains("tenure 12 months not offered"))
    }

    @Test func ageLimitsApplyOnlyWhenDateOfBirthIsSent() {
        let rules = SimulatedLendingRules(minAge: 21, maxAge: 60)
        var b = book(rules)
        // 20 on 2025-06-15 (birthday tomorrow would still be 20; this one is 20 years and a bit).
        #expect(b.apply(input("young", dob: "2005-01-01"), now: now).loan.decision == .rejected)
        #expect(b.apply(input("turns21", dob: "2004-06-15"), now: now).loan.decision == .approved)
        #expect(b.apply(input("nearly21", dob: "2004-06-16"), now: now).loan.decision == .rejected)
        #expect(b.apply(input("old", dob: "1960-01-01"), now: now).loan.decision == .rejected)
        #expect(b.apply(input("unknown-age"), now: now).loan.decision == .approved)
    }

    @Test func applyIsIdempotentOnReference() {
        var b = book(SimulatedLendingRules())
        let first = b.apply(input("app-7"), now: now)
        // A repeat with a different body still gets the first answer: the reference is the key.
        let second = b.apply(input("app-7", score: 300, amount: 9_999_999), now: now.addingTimeInterval(5))
        #expect(!second.isNew)
        #expect(second.loan.loanID == first.loan.loanID)
        #expect(second.loan.decision == first.loan.decision)
        #expect(second.loan.applyCalls == 2)
        #expect(b.loans.count == 1)
        #expect(b.loans.filter { $0.reference == "app-7" }.count == 1)
    }

    @Test func disburseIsIdempotentAndOnlyForApprovedLoans() {
        var b = book(SimulatedLendingRules(minBureauScore: 700))
        let ok = b.apply(input("a"), now: now).loan
        let declined = b.apply(input("b", score: 600), now: now).loan
        guard case .disbursed(let d1) = b.disburse(loanID: ok.loanID) else {
            Issue.record("expected disbursed")
            return
        }
        guard case .disbursed(let d2) = b.disburse(loanID: ok.loanID) else {
            Issue.record("expected disbursed again")
            return
        }
        #expect(d1.state == .disbursed && d2.disburseCalls == 2)
        #expect(b.disburse(loanID: declined.loanID) == .notDisbursable(b.status(reference: "b")!))
        #expect(b.disburse(loanID: "nope") == .notFound)
        #expect(b.loans.filter { $0.state == .disbursed }.count == 1)
    }

    @Test func cancelUndoesApprovalButNotDisbursal() {
        var b = book(SimulatedLendingRules())
        let l1 = b.apply(input("a"), now: now).loan
        let l2 = b.apply(input("b"), now: now).loan
        guard case .cancelled(let c) = b.cancel(loanID: l1.loanID) else {
            Issue.record("expected cancelled")
            return
        }
        #expect(c.state == .cancelled)
        #expect(b.disburse(loanID: l1.loanID) == .notDisbursable(b.status(reference: "a")!))
        _ = b.disburse(loanID: l2.loanID)
        guard case .alreadyDisbursed = b.cancel(loanID: l2.loanID) else {
            Issue.record("expected alreadyDisbursed")
            return
        }
        #expect(b.cancel(loanID: "nope") == .notFound)
    }

    @Test func inquiriesAreCountedAndTheFirstKHidden() {
        var b = book(SimulatedLendingRules())
        #expect(b.inquire(reference: "x", hidingFirst: 2) == nil)  // unknown: not counted anywhere
        let l = b.apply(input("x"), now: now).loan
        #expect(b.inquire(reference: "x", hidingFirst: 2) == nil)
        #expect(b.inquire(reference: "x", hidingFirst: 2) == nil)
        let third = b.inquire(reference: "x", hidingFirst: 2)
        #expect(third?.loanID == l.loanID && third?.statusCalls == 3)
        // K may change between inquiries (the control endpoint): the count is the loan's own.
        #expect(b.inquire(reference: "x", hidingFirst: 10) == nil)
        #expect(b.inquire(reference: "x", hidingFirst: 0)?.statusCalls == 5)
        _ = b.cancel(loanID: l.loanID)
        _ = b.cancel(loanID: l.loanID)
        #expect(b.status(reference: "x")?.cancelCalls == 2)
        #expect(b.status(reference: "x")?.state == .cancelled)
    }

    @Test func statusByReference() {
        var b = book(SimulatedLendingRules())
        #expect(b.status(reference: "x") == nil)
        let l = b.apply(input("x"), now: now).loan
        #expect(b.status(reference: "x") == l)
        #expect(b.loan(id: l.loanID) == l)
    }

    // MARK: API shapes

    @Test func everyShapeReadsItsOwnFieldsAndRejectsBadInput() throws {
        for shape in LenderAPIShape.all {
            var body = SimJSON.object([:])
            body.set(.string("app-9"), at: shape.referenceField)
            body.set(.int(4_500_000), at: shape.amountField)
            body.set(.int(9), at: shape.tenureField)
            body.set(.string("ABCPR1234F"), at: shape.panField)
            body.set(.int(777), at: shape.scoreField)
            if let dob = shape.dateOfBirthField { body.set(.string("1990-02-03"), at: dob) }
            let got = try shape.decodeApply(body)
            #expect(got.reference == "app-9" && got.amountPaise == 4_500_000 && got.tenureMonths == 9)
            #expect(got.bureauScore == 777)
            #expect(got.dateOfBirth == (shape.dateOfBirthField == nil ? nil : SimDate("1990-02-03")))

            var bad = body
            bad.set(.string("lots"), at: shape.amountField)
            #expect(throws: SimulatorFieldError.self) { try shape.decodeApply(bad) }
            var outOfRange = body
            outOfRange.set(.int(1000), at: shape.scoreField)
            do {
                _ = try shape.decodeApply(outOfRange)
                Issue.record("score 1000 accepted by \(shape.name)")
            } catch {
                #expect(error.field == shape.scoreField)
            }
            #expect(throws: SimulatorFieldError.self) { try shape.decodeApply(.array([])) }
        }
    }

    @Test func loanViewSpeaksTheLendersWords() {
        var b = book(SimulatedLendingRules(minBureauScore: 750))
        let approved = b.apply(input("a"), now: now).loan
        let declined = b.apply(input("b", score: 700), now: now).loan
        let tata = LenderAPIShape.tata
        let v = tata.loanView(approved)
        #expect(v.value(at: "data.outcome") == .string("accept"))
        #expect(v.value(at: "data.proposal_number") == .string(approved.loanID))
        #expect(v.value(at: "data.pricing.annual_rate_bps") == .int(1499))
        #expect(tata.loanView(declined).value(at: "data.outcome") == .string("decline"))
        #expect(LenderAPIShape.piramal.loanView(declined).value(at: "leadStatus") == .string("REJECTED"))
        #expect(LenderAPIShape.hero.loanView(approved).value(at: "status") == .string("APPROVED"))
    }

    // MARK: Config

    @Test func emptyConfigIsTheDemo() throws {
        let config = try SimulatorConfig.parse(Data("{}".utf8))
        #expect(config == SimulatorConfig())
        #expect(config.lenders.count == 4)
        #expect(Set(config.lenders.map(\.auth.type)) == [.apiKey, .oauth2])
        #expect(Set(config.lenders.filter { $0.auth.type == .oauth2 }.map(\.auth.clientAuth)) == [.body, .basic])
        #expect(Set(config.lenders.filter { $0.auth.type == .apiKey }.map(\.auth.header)).count == 2)
    }

    @Test func lenderFieldsDefault() throws {
        let config = try SimulatorConfig.parse(Data(#"{"lenders": [{"id": "hero", "port": 9200}]}"#.utf8))
        let l = try #require(config.lenders.first)
        #expect(l.api == "hero" && l.name == "hero" && l.rateBps == 1500)
        #expect(l.auth == .apiKey(header: "X-Api-Key", value: "sim-hero-key"))
        #expect(l.behaviour == SimulatedBehaviour())
    }

    @Test func badConfigsNameTheField() {
        func message(_ json: String) -> String {
            do {
                _ = try SimulatorConfig.parse(Data(json.utf8))
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(
            message(#"{"lenders": [{"id": "abfl", "port": 9101}, {"id": "hero", "port": 9101}]}"#).contains(
                "lenders[1].port"))
        #expect(message(#"{"lenders": [{"id": "x", "api": "sbi"}]}"#).contains("lenders[0].api"))
        #expect(message(#"{"lenders": [{"id": "hero", "error_rate": 1.5}]}"#).contains("error_rate"))
        #expect(message(#"{"lenders": [{"port": 1}]}"#).contains("lenders[0].id"))
        #expect(
            message(#"{"lenders": [{"id": "hero", "auth": {"type": "oauth2_client_credentials"}}]}"#).contains(
                "client_id"))
        #expect(message("[1,2").contains("not valid JSON"))
        #expect(message(#"{"control_port": "x"}"#).contains("control_port"))
    }
}

@Suite struct SimJSONTests {
    @Test func parsesAndRoundTrips() throws {
        let text = #"{"a": [1, -2, 3.5, 1e3, true, false, null], "b": {"c": "x\"y\\z\n\u00e9\ud83d\ude00/"}, "": ""}"#
        let v = try SimJSON.decode(Array(text.utf8))
        #expect(v.value(at: "b.c") == .string("x\"y\\z\né😀/"))
        #expect(
            v.value(at: "a")
                == .array([.int(1), .int(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null]))
        #expect(try SimJSON.decode(v.encoded()) == v)
        let control = SimJSON.string("tab\tbell\u{07}")
        #expect(try SimJSON.decode(control.encoded()) == control)
    }

    @Test func refusesMalformedInput() {
        for bad in [
            "", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"abc", "\"\\x\"", "tru", "{} x", "\"\\ud800\"", "-", "1e",
        ] {
            #expect(throws: SimJSONSyntaxError.self, "\(bad)") { try SimJSON.decode(Array(bad.utf8)) }
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: SimJSONSyntaxError.self) { try SimJSON.decode(Array(deep.utf8)) }
        #expect(throws: SimJSONSyntaxError.self) { try SimJSON.decode([0x22, 0xFF, 0x22]) }
    }
}
