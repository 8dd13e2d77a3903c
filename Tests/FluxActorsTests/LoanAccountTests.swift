import Foundation
import Testing

@testable import FluxActors

@Suite struct LoanAccountTests {
    /// 2025-01-31T10:15:30.250Z
    let disbursedAt = Date(timeIntervalSince1970: 1_738_318_530.25)

    func opening(application: String = "app_01HX") throws -> LoanOpened {
        try LoanOpened(
            applicationID: application, lenderID: "abfl", lenderReference: "ABFL-778", customerID: "c-1",
            merchantID: "croma", principalPaise: 10_000_000, annualRateBps: 1200, tenureMonths: 12,
            disbursedAt: disbursedAt)
    }

    @Test func loanIDIsAFunctionOfTheApplication() {
        // The same rule as `WaterfallSaga.loanID(for:)`: a recovered saga names the loan it opened.
        #expect(LoanAccountState.loanID(forApplication: "app_01HX") == "loan_01HX")
        #expect(LoanAccountState.loanID(forApplication: "01HX") == "loan_01HX")
        #expect(LoanAccountState.loanID(forApplication: "app_") == "loan_")
        #expect(LoanAccountState.streamName(loanID: "loan_01HX") == "loan/loan_01HX")
    }

    @Test func openingMakesTheScheduleFromTheDisbursalDate() throws {
        let o = try opening()
        #expect(o.loanID == "loan_01HX")
        #expect(o.schedule.emiPaise == 888_488)
        #expect(o.schedule.lines.first?.dueDate.description == "2025-02-28")
        #expect(o.schedule.lines.last?.dueDate.description == "2026-01-31")
    }

    @Test func viewIsTheContractsLoanBody() throws {
        let state = LoanAccountState(opened: try opening())
        #expect(state.status == .active)
        #expect(state.outstandingPaise == 10_000_000)
        let view = state.view()
        #expect(
            Set(view.objectValue?.keys ?? [:].keys) == [
                "id", "application_id", "lender_id", "customer_id", "principal_paise", "annual_rate_bps",
                "tenure_months", "emi_paise", "status", "outstanding_paise", "schedule",
            ])
        #expect(view["id"] == "loan_01HX")
        #expect(view["application_id"] == "app_01HX")
        #expect(view["lender_id"] == "abfl")
        #expect(view["customer_id"] == "c-1")
        #expect(view["principal_paise"] == 10_000_000)
        #expect(view["annual_rate_bps"] == 1200)
        #expect(view["tenure_months"] == 12)
        #expect(view["emi_paise"] == 888_488)
        #expect(view["status"] == "active")
        #expect(view["outstanding_paise"] == 10_000_000)
        let schedule = try #require(view["schedule"]?.arrayValue)
        #expect(schedule.count == 12)
        #expect(
            schedule[0] == [
                "n": 1, "due_date": "2025-02-28", "emi_paise": 888_488, "principal_paise": 788_488,
                "interest_paise": 100_000, "balance_paise": 9_211_512, "paid_paise": 0,
            ])
        #expect(schedule[11]["emi_paise"] == 888_485)
        #expect(schedule[11]["balance_paise"] == 0)
        #expect(schedule[11]["due_date"] == "2026-01-31")
    }

    @Test func openedEventRoundTripsThroughTheJournalColumns() throws {
        let event = LoanEvent.opened(try opening())
        #expect(event.typeName == "LoanOpened")
        #expect(!event.closesStream)
        let data = event.encodedData()
        let json = try JSONValue.parse(Array(data.utf8))
        #expect(json["loan_id"] == "loan_01HX")
        #expect(json["disbursed_at"] == "2025-01-31T10:15:30.250Z")
        #expect(json["principal_paise"] == 10_000_000)
        #expect(json["schedule"]?["lines"]?.arrayValue?.count == 12)
        #expect(try LoanEvent.decode(type: "LoanOpened", data: data) == event)
        // Stable text: encoding the decoded event again gives the same bytes.
        #expect(try LoanEvent.decode(type: "LoanOpened", data: data).encodedData() == data)
    }

    @Test func openedEventTextIsWhatJSONEncoderWrote() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for tenure in [1, 12, 24] {
            let o = try LoanOpened(
                applicationID: "app_1/\"x\"", lenderID: "abfl", lenderReference: "R-1", customerID: "c",
                merchantID: "m",
                principalPaise: 1_234_567, annualRateBps: 1_650, tenureMonths: tenure,
                disbursedAt: Date(timeIntervalSince1970: 1_738_318_530.25))
            let legacy = String(decoding: try encoder.encode(o), as: UTF8.self)
            #expect(LoanEvent.opened(o).encodedData() == legacy)
        }
    }

    @Test func disbursalTimeIsKeptToTheMillisecond() throws {
        var o = try opening()
        o = try LoanOpened(
            applicationID: "app_1", lenderID: "l", lenderReference: "r", customerID: "c", merchantID: "m",
            principalPaise: 500_000, annualRateBps: 0, tenureMonths: 3,
            disbursedAt: Date(timeIntervalSince1970: 1_738_318_530.123456))
        #expect(LoanTimestamp.format(o.disbursedAt) == "2025-01-31T10:15:30.123Z")
        let back = try LoanEvent.decode(type: "LoanOpened", data: LoanEvent.opened(o).encodedData())
        #expect(back == .opened(o))
    }

    @Test func timestampsFormatAndParse() {
        #expect(LoanTimestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(LoanTimestamp.format(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00.000Z")
        #expect(LoanTimestamp.parse("2000-02-29T00:00:00Z") == Date(timeIntervalSince1970: 951_782_400))
        #expect(LoanTimestamp.parse("2025-01-31T10:15:30.25Z") == Date(timeIntervalSince1970: 1_738_318_530.25))
        #expect(LoanTimestamp.parse("2025-01-31T10:15:30.123456789Z") == Date(timeIntervalSince1970: 1_738_318_530.123))
        for bad in [
            "", "2025-01-31", "2025-01-31T10:15:30", "2025-02-30T10:15:30Z", "2025-01-31T24:00:00Z",
            "2025-01-31T10:15:30.Z", "2025-01-31T10:15:30+05:30", "2025-01-31T10:15:30.1234567890Z",
        ] {
            #expect(LoanTimestamp.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func corruptEventsAreRefusedWithAReason() throws {
        let data = LoanEvent.opened(try opening()).encodedData()
        func reason(_ type: String, _ data: String) -> String? {
            do {
                _ = try LoanEvent.decode(type: type, data: data)
                return nil
            } catch { return error.message }
        }
        #expect(reason("LoanFrobbed", data) == "unknown event type")
        #expect(reason("LoanOpened", "not json") != nil)
        #expect(reason("LoanOpened", #"{"disbursed_at": "2025-01-31T10:15:30Z"}"#) == "loan_id is missing")
        // A schedule that no longer sums to the loan is refused, not shown.
        var json = try JSONValue.parse(Array(data.utf8))
        guard case .object(var fields) = json else { Issue.record("not an object"); return }
        fields["principal_paise"] = 10_000_001
        json = .object(fields)
        #expect(reason("LoanOpened", json.jsonString())?.contains("principal") == true)
        // A line whose balance was tampered with.
        let tampered = data.replacingOccurrences(of: "\"balance_paise\":9211512", with: "\"balance_paise\":9211511")
        #expect(tampered != data)
        #expect(reason("LoanOpened", tampered)?.contains("balance") == true)
        #expect(
            reason("LoanOpened", data.replacingOccurrences(of: "2025-01-31T10:15:30.250Z", with: "yesterday")) != nil)
    }

    @Test func openingRefusesAScheduleOfAnotherLoan() throws {
        let o = try opening()
        #expect(throws: ScheduleError.self) {
            try LoanOpened(
                loanID: o.loanID, applicationID: o.applicationID, lenderID: o.lenderID,
                lenderReference: o.lenderReference, customerID: o.customerID, merchantID: o.merchantID,
                principalPaise: o.principalPaise + 1, annualRateBps: o.annualRateBps, tenureMonths: o.tenureMonths,
                disbursedAt: o.disbursedAt, schedule: o.schedule)
        }
        #expect(throws: ScheduleError.tenureOutOfRange(0)) {
            try LoanOpened(
                applicationID: "app_1", lenderID: "l", lenderReference: "r", customerID: "c", merchantID: "m",
                principalPaise: 500_000, annualRateBps: 1200, tenureMonths: 0, disbursedAt: disbursedAt)
        }
    }

    @Test func replayNeedsExactlyOneOpeningFirst() throws {
        let opened = LoanEvent.opened(try opening())
        #expect(try LoanAccountState.replay([opened]) == LoanAccountState(opened: try opening()))
        #expect(throws: LoanReplayError.doesNotStartOpened) { try LoanAccountState.replay([]) }
        #expect(throws: LoanReplayError.openedTwice(index: 1)) { try LoanAccountState.replay([opened, opened]) }
    }

    @Test func actorShowsItsState() async throws {
        let account = LoanAccount(opened: try opening())
        #expect(account.id == "loan_01HX")
        #expect(await account.view() == LoanAccountState(opened: try opening()).view())
        let reloaded = try LoanAccount(replaying: [.opened(try opening())])
        #expect(await reloaded.state == account.state)
    }
}
