import Foundation
import Testing

@testable import FluxActors

@Suite("ApplicationEvent JSON")
struct ApplicationEventTests {
    static let at = Date(timeIntervalSince1970: 1_717_245_296.789)  // 2024-06-01T12:34:56.789Z

    /// One of every case, with optional fields both set and unset.
    static let samples: [ApplicationEvent] = [
        .received(
            .init(
                applicationID: "app_01J0", merchantID: "m_croma", customerID: "c_42", idempotencyKey: "k/1",
                requestHash: "0f" + String(repeating: "a", count: 62),
                request: [
                    "merchant_id": "m_croma", "customer": ["id": "c_42", "bureau_score": 780, "income": 12.5],
                    "loan": ["amount_paise": 4_500_000], "tags": ["a", nil, true],
                ], at: at)),
        .ranked(
            .init(
                rulesetVersion: 7, lenders: ["abfl", "piramal"], scores: [0.75, 0.5],
                excluded: [.init(lenderID: "hero", failed: ["customer.bureau_score >= 750", "x < 2"])])),
        .ranked(.init(rulesetVersion: 1, lenders: [], scores: [], excluded: [])),
        .attemptSkipped(.init(lenderID: "abfl", outcome: .skippedOpenCircuit, reason: "circuit open", at: at)),
        .attemptSkipped(.init(lenderID: "abfl", outcome: .skippedValidation, reason: "customer.age >= 21", at: at)),
        .attemptStarted(.init(lenderID: "abfl", idempotencyKey: "app_01J0.abfl", at: at)),
        .attemptFinished(
            .init(
                lenderID: "abfl", outcome: .approved, reason: "ok", lenderReference: "R-1", annualRateBps: 1600,
                tries: 2,
                latencyMs: 120, needsInquiry: false)),
        .attemptFinished(
            .init(
                lenderID: "abfl", outcome: .timeout, reason: nil, lenderReference: nil, annualRateBps: nil, tries: 1,
                latencyMs: 5000, needsInquiry: true)),
        .statusInquired(
            .init(
                lenderID: "abfl", result: .notFound, reason: nil, lenderReference: nil, annualRateBps: nil, tries: 1,
                latencyMs: 9)),
        .statusInquired(
            .init(
                lenderID: "abfl", result: .approved, reason: "late", lenderReference: "R-2", annualRateBps: 1450,
                tries: 3,
                latencyMs: 90)),
        .approved(.init(lenderID: "abfl", lenderReference: "R-1", annualRateBps: 1600)),
        .disbursalFailed(.init(lenderID: "abfl", reason: "KYC \"pending\" ✓")),
        .cancelRequested(.init(at: at)),
        .compensated(.init(lenderID: "abfl", lenderReference: "R-1", result: "flagged", reason: "no cancel")),
        .compensated(.init(lenderID: "abfl", lenderReference: "R-1", result: "cancelled", reason: nil)),
        .disbursed(.init(lenderID: "abfl", lenderReference: "R-1", annualRateBps: 1600, loanID: "loan_01J0", at: at)),
        .declined(.init(reasons: ["abfl: rejected (score)"], at: at)),
        .failed(.init(reasons: [], at: at)),
        .cancelled(.init(reasons: ["cancelled by the merchant"], at: at)),
    ]

    @Test(
        "encodedData then decode gives the same event, for every case")
    func roundTrip() throws {
        for event in Self.samples {
            let data = event.encodedData()
            let back = try ApplicationEvent.decode(type: event.typeName, data: data)
            #expect(back == event, "\(event.typeName): \(data)")
            #expect(back.encodedData() == data)
        }
    }

    @Test("encodedData writes byte for byte the text JSONEncoder wrote (stored events keep their shape)")
    func sameTextAsJSONEncoder() throws {
        func legacy(_ v: some Encodable) throws -> String {
            String(decoding: try ApplicationEvent.encoder.encode(v), as: UTF8.self)
        }
        for event in Self.samples {
            let expected: String
            switch event {
            case .received(let p): expected = try legacy(p)
            case .ranked(let p): expected = try legacy(p)
            case .attemptSkipped(let p): expected = try legacy(p)
            case .attemptStarted(let p): expected = try legacy(p)
            case .attemptFinished(let p): expected = try legacy(p)
            case .statusInquired(let p): expected = try legacy(p)
            case .approved(let p): expected = try legacy(p)
            case .disbursalFailed(let p): expected = try legacy(p)
            case .cancelRequested(let p): expected = try legacy(p)
            case .compensated(let p): expected = try legacy(p)
            case .disbursed(let p): expected = try legacy(p)
            case .declined(let p), .failed(let p), .cancelled(let p): expected = try legacy(p)
            }
            #expect(event.encodedData() == expected, "\(event.typeName)")
        }
    }

    @Test("encodedData then decode gives the same event, for the payloads without ...ID fields")
    func roundTripWithoutIDFields() throws {
        let plain = Self.samples.filter { !$0.encodedData().contains("_id\"") }
        #expect(plain.count >= 5)
        for event in plain {
            let data = event.encodedData()
            let back = try ApplicationEvent.decode(type: event.typeName, data: data)
            #expect(back == event, "\(event.typeName): \(data)")
            #expect(back.encodedData() == data)
        }
    }

    @Test("every type name is distinct and decodes; terminal events close the stream")
    func typeNames() {
        let names = Set(Self.samples.map(\.typeName))
        #expect(names.count == 14)
        let closing = Self.samples.filter(\.closesStream).map(\.typeName)
        #expect(
            Set(closing) == [
                "ApplicationDisbursed", "ApplicationDeclined", "ApplicationFailed", "ApplicationCancelled",
            ])
    }

    @Test("the journal's data is snake_case JSON with sorted keys and RFC 3339 timestamps")
    func encodingShape() {
        let approved = ApplicationEvent.approved(.init(lenderID: "abfl", lenderReference: "R/1", annualRateBps: 1600))
        #expect(approved.encodedData() == #"{"annual_rate_bps":1600,"lender_id":"abfl","lender_reference":"R/1"}"#)
        let closed = ApplicationEvent.declined(.init(reasons: ["a"], at: Self.at))
        #expect(closed.encodedData() == #"{"at":"2024-06-01T12:34:56.789Z","reasons":["a"]}"#)
        let skipped = ApplicationEvent.attemptSkipped(
            .init(lenderID: "x", outcome: .skippedOpenCircuit, reason: "circuit open", at: Self.at))
        #expect(skipped.encodedData().contains(#""outcome":"skipped_open_circuit""#))
        let inquired = ApplicationEvent.statusInquired(
            .init(
                lenderID: "x", result: .notFound, reason: nil, lenderReference: nil, annualRateBps: nil, tries: 1,
                latencyMs: 2))
        #expect(inquired.encodedData().contains(#""result":"not_found""#))
    }

    @Test("an unknown type is a DecodeError naming it")
    func unknownType() {
        #expect(throws: ApplicationEvent.DecodeError.self) {
            try ApplicationEvent.decode(type: "LoanExploded", data: "{}")
        }
        do {
            _ = try ApplicationEvent.decode(type: "LoanExploded", data: "{}")
        } catch {
            #expect(error.message == "unknown event type LoanExploded")
        }
    }

    @Test(
        "bad data is a DecodeError, never a crash",
        arguments: [
            ("ApplicationApproved", ""),
            ("ApplicationApproved", "not json"),
            ("ApplicationApproved", "[]"),
            ("ApplicationApproved", #"{"lender_id":"a","lender_reference":"b"}"#),
            ("ApplicationApproved", #"{"lender_id":"a","lender_reference":"b","annual_rate_bps":"16"}"#),
            ("ApplicationDeclined", #"{"reasons":[],"at":"yesterday"}"#),
            ("ApplicationDeclined", #"{"reasons":[],"at":1717200000}"#),
            ("LenderAttemptSkipped", #"{"lender_id":"a","outcome":"maybe","reason":"r","at":"2024-06-01T00:00:00Z"}"#),
            ("LenderStatusInquired", #"{"lender_id":"a","result":"approved","tries":1}"#),
        ])
    func badData(type: String, data: String) {
        #expect(throws: ApplicationEvent.DecodeError.self) {
            try ApplicationEvent.decode(type: type, data: data)
        }
    }

    @Test("decoding accepts unknown extra fields and timestamps without milliseconds")
    func lenientDecode() throws {
        let e = try ApplicationEvent.decode(
            type: "ApplicationCancelled", data: #"{"reasons":["r"],"at":"2024-06-01T00:00:00Z","extra":1}"#)
        #expect(e == .cancelled(.init(reasons: ["r"], at: Date(timeIntervalSince1970: 1_717_200_000))))
    }
}

@Suite("Timestamp")
struct TimestampTests {
    @Test(
        "format: UTC, milliseconds, zero-padded",
        arguments: [
            (0.0, "1970-01-01T00:00:00.000Z"),
            (1_717_245_296.789, "2024-06-01T12:34:56.789Z"),
            (1_709_164_800, "2024-02-29T00:00:00.000Z"),  // leap day
            (951_782_400, "2000-02-29T00:00:00.000Z"),  // divisible by 400: leap
            (4_107_542_400, "2100-03-01T00:00:00.000Z"),  // 2100 is not a leap year: Feb 28 + 1 day
            (4_107_542_399.5, "2100-02-28T23:59:59.500Z"),
            (1_704_067_199.999, "2023-12-31T23:59:59.999Z"),
            (-86_400, "1969-12-31T00:00:00.000Z"),
            (253_402_300_799, "9999-12-31T23:59:59.000Z"),
            (1.0005, "1970-01-01T00:00:01.000Z"),  // truncates below a millisecond
        ] as [(Double, String)])
    func format(seconds: Double, text: String) {
        #expect(Timestamp.format(Date(timeIntervalSince1970: seconds)) == text)
    }

    @Test("format agrees with Foundation's calendar across many days")
    func formatMatchesCalendar() {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        var t: Double = -2_208_988_800  // 1900-01-01
        while t < 4_102_444_800 {  // 2100-01-01
            let d = Date(timeIntervalSince1970: t)
            let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second], from: d)
            let expected = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02d.000Z", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
            #expect(Timestamp.format(d) == expected)
            t += 86_400 * 7 + 3_601
        }
    }

    @Test(
        "parse: Z, offsets, lowercase, fraction lengths",
        arguments: [
            ("2024-06-01T12:34:56.789Z", 1_717_245_296.789),
            ("2024-06-01T12:34:56Z", 1_717_245_296),
            ("2024-06-01t12:34:56z", 1_717_245_296),
            ("2024-06-01T12:34:56.5Z", 1_717_245_296.5),
            ("2024-06-01T18:04:56+05:30", 1_717_245_296),
            ("2024-06-01T07:34:56-05:00", 1_717_245_296),
            ("2024-06-01T12:34:56.789+00:00", 1_717_245_296.789),
            ("2024-02-29T00:00:00Z", 1_709_164_800),
            ("2000-02-29T00:00:00Z", 951_782_400),
            ("1969-12-31T23:59:59.999Z", -0.001),
            ("1970-01-01T00:00:00.000Z", 0),
        ] as [(String, Double)])
    func parse(text: String, seconds: Double) throws {
        let d = try #require(Timestamp.parse(text))
        #expect(abs(d.timeIntervalSince1970 - seconds) < 0.000_5, "\(text)")
        #expect(Timestamp.format(d) == Timestamp.format(Date(timeIntervalSince1970: seconds)), "\(text)")
    }

    @Test("parse(format(d)) is within a millisecond of d, across two centuries")
    func roundTripWithinAMillisecond() throws {
        var t: Double = -2_208_988_800
        while t < 4_102_444_800 {
            let d = Date(timeIntervalSince1970: t)
            let back = try #require(Timestamp.parse(Timestamp.format(d)))
            #expect(abs(back.timeIntervalSince1970 - d.timeIntervalSince1970) < 0.001_001)
            t += 12_345_678.912_3
        }
    }

    @Test(
        "formatting a millisecond instant is exact, and so is format(parse(text))")
    func formatExactMilliseconds() {
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_087_307_469.771)) == "2004-06-15T13:51:09.771Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 2_173_727_214.115)) == "2038-11-18T21:06:54.115Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -0.001)) == "1969-12-31T23:59:59.999Z")
        let text = "2038-11-18T21:06:54.114Z"
        #expect(Timestamp.parse(text).map(Timestamp.format) == text)
    }

    @Test(
        "format then parse is the identity on millisecond instants"
    )
    func roundTrip() throws {
        var ms: Int64 = -2_208_988_800_000
        var n = 0
        while ms < 4_102_444_800_000 {
            let d = Date(timeIntervalSince1970: Double(ms) / 1000)
            let text = Timestamp.format(d)
            let back = try #require(Timestamp.parse(text), "\(text)")
            #expect(Timestamp.format(back) == text)
            #expect(back == d, "\(text): \(back.timeIntervalSince1970) != \(d.timeIntervalSince1970)")
            ms += 1_234_567_891_3  // about 143 days and an odd number of milliseconds
            n += 1
        }
        #expect(n > 400)
    }

    @Test(
        "parse: malformed input is nil",
        arguments: [
            "", "2024", "2024-06-01", "2024-06-01T12:34:56", "2024-06-01 12:34:56Z", "2024/06/01T12:34:56Z",
            "2024-06-01T12:34:56ZZ", "2024-06-01T12:34:56Zjunk", "2024-06-01T12:34:56+0530", "2024-06-01T12:34:56+05:3",
            "2024-06-01T12:34:56+05:30:00", "2024-06-01T12:34:56.123", "2024-06-01T12:34:56.123X",
            "20x4-06-01T12:34:56Z",
            "2024-0a-01T12:34:56Z", "2024-06-01T1:34:56Z", "-024-06-01T12:34:56Z", "2024-06-01T12:34:56 Z",
            "2024-06-01T12:34:56+ab:cd",
        ])
    func parseRejectsMalformed(text: String) {
        #expect(Timestamp.parse(text) == nil, "\(text)")
    }

    @Test(
        "parse: out-of-range fields are nil",
        arguments: [
            "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-06-31T00:00:00Z", "2023-02-29T00:00:00Z",
            "2024-06-00T00:00:00Z", "2024-06-01T24:00:00Z", "2024-06-01T12:60:00Z", "2024-06-01T12:00:61Z",
            "2024-06-01T12:00:00+25:00",
        ])
    func parseRejectsOutOfRange(text: String) {
        #expect(Timestamp.parse(text) == nil, "\(text)")
    }
}
