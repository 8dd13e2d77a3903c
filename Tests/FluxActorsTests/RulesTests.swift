import Foundation
import Testing

@testable import FluxActors

/// 2025-06-15T12:00:00Z
private let today = Date(timeIntervalSince1970: 1_749_988_800)

private func application(
    score: Int64 = 762, dob: String = "1992-04-01", amount: Int64 = 7_990_000, tenure: Int64 = 12,
    pincode: String = "560001", category: String = "mobile", extra: [String: JSONValue] = [:]
) -> CheckoutRequest {
    var customer: [String: JSONValue] = [
        "id": "c-1", "name": "Asha Rao", "phone": "+919800000001", "email": "asha@example.in", "pan": "ABCDE1234F",
        "date_of_birth": .string(dob), "pincode": .string(pincode), "monthly_income_paise": 9_000_000,
        "bureau_score": .int(score),
    ]
    for (k, v) in extra { customer[k] = v }
    let json: JSONValue = [
        "merchant_id": "croma", "store_id": "croma-blr-12", "customer": .object(customer),
        "product": ["sku": "iphone-16-128", "category": .string(category), "price_paise": 7_990_000],
        "loan": ["amount_paise": .int(amount), "tenure_months": .int(tenure)], "mode": "waterfall",
    ]
    return try! CheckoutRequest(json: json)
}

/// Compiles a one-lender ruleset around `condition` and tells whether it holds.
private func holds(_ condition: String, _ request: CheckoutRequest = application(), dials: JSONValue = [:]) throws
    -> Bool
{
    let ruleset = try Ruleset.compile([
        "dials": dials, "lenders": [["lender_id": "l", "priority": 5, "when": [.string(condition)]]],
    ])
    return ruleset.evaluate(request, today: today, hasConnector: { _ in true }).ranked.count == 1
}

private func compileError(_ condition: String, dials: JSONValue = [:]) -> RulesError? {
    do {
        _ = try Ruleset.compile([
            "dials": dials, "lenders": [["lender_id": "l", "priority": 5, "when": ["true", .string(condition)]]],
        ])
        return nil
    } catch {
        return error
    }
}

private func score(_ expression: String, _ request: CheckoutRequest = application()) throws -> Double? {
    let ruleset = try Ruleset.compile([
        "lenders": [["lender_id": "l", "priority": 5, "score": .string(expression)]]
    ])
    return ruleset.evaluate(request, today: today, hasConnector: { _ in true }).ranked.first?.score
}

@Suite struct RulesLanguageTests {
    @Test func precedenceOfArithmetic() throws {
        #expect(try score("1 + 2 * 3") == 7)
        #expect(try score("(1 + 2) * 3") == 9)
        #expect(try score("10 - 4 - 3") == 3)
        #expect(try score("-2 * 3 + 10 % 4") == -4)
        #expect(try score("7 / 2") == 3.5)
        #expect(try score("1.5 + 1") == 2.5)
        #expect(try score("priority * 1000 + customer.bureau_score") == 5762)
    }

    @Test func precedenceOfLogic() throws {
        #expect(try holds("true or false and false"))
        #expect(try !holds("(true or false) and false"))
        #expect(try holds("not false and true"))
        #expect(try !holds("not 1 == 1"))
        #expect(try holds("not customer.bureau_score < 700 and loan.tenure_months == 12"))
    }

    @Test func comparisons() throws {
        #expect(try holds("customer.bureau_score == 762"))
        #expect(try holds("customer.bureau_score != 761"))
        #expect(try holds("customer.bureau_score < 763"))
        #expect(try holds("customer.bureau_score <= 762"))
        #expect(try holds("customer.bureau_score > 761"))
        #expect(try holds("customer.bureau_score >= 762"))
        #expect(try !holds("customer.bureau_score > 762"))
        #expect(try holds("762.0 == customer.bureau_score"))
        #expect(try holds("customer.pincode == \"560001\""))
        #expect(try holds("'abc' < 'abd'"))
        #expect(try holds("merchant_id == 'croma' and store_id == 'croma-blr-12' and mode == 'waterfall'"))
    }

    @Test func betweenIsInclusive() throws {
        #expect(try holds("customer.bureau_score between 700 and 762"))
        #expect(try holds("customer.bureau_score between 762 and 900"))
        #expect(try !holds("customer.bureau_score between 763 and 900"))
        #expect(try holds("customer.bureau_score not between 763 and 900"))
        #expect(try holds("customer.bureau_score between 700 and 800 and true"))
    }

    @Test func membership() throws {
        #expect(try holds("customer.pincode in ['560001', '110001']"))
        #expect(try !holds("customer.pincode not in ['560001', '110001']"))
        #expect(try holds("customer.pincode not in ['110001', '110002']"))
        #expect(try holds("loan.tenure_months in dials.tenures", dials: ["tenures": [6, 12]]))
        #expect(try !holds("loan.tenure_months in []"))
        #expect(try holds("loan.tenure_months in [loan.tenure_months + 1, 12]"))
    }

    @Test func functions() throws {
        #expect(try holds("len(customer.pan) == 10"))
        #expect(try holds("len(['a', 'b']) == 2"))
        #expect(try holds("lower(customer.pan) == 'abcde1234f'"))
        #expect(try holds("lower(product.category) in ['mobile']"))
        #expect(try holds("lower(product.category) == 'mobile phone'", application(category: "Mobile PHONE")))
        #expect(try holds("lower(product.category) == 'écran'", application(category: "ÉCRAN")))
        #expect(try holds("len(product.category) == 5", application(category: "écran")))
    }

    @Test func ageAroundABirthday() throws {
        // today is 2025-06-15
        #expect(try holds("age(customer.date_of_birth) == 25", application(dob: "2000-06-15")))
        #expect(try holds("age(customer.date_of_birth) == 24", application(dob: "2000-06-16")))
        #expect(try holds("age(customer.date_of_birth) == 25", application(dob: "2000-06-14")))
        #expect(try holds("age('2004-06-15') == 21"))
        let day = Date(timeIntervalSince1970: 1_749_945_600)  // 2025-06-15T00:00:00Z
        let eve = day.addingTimeInterval(-1)  // 2025-06-14T23:59:59Z
        let ruleset = try Ruleset.compile([
            "lenders": [["lender_id": "l", "priority": 1, "when": ["age(customer.date_of_birth) >= 21"]]]
        ])
        let request = application(dob: "2004-06-15")
        #expect(ruleset.evaluate(request, today: day, hasConnector: { _ in true }).ranked.count == 1)
        #expect(ruleset.evaluate(request, today: eve, hasConnector: { _ in true }).ranked.isEmpty)
    }

    @Test func civilDayMatchesCalendar() {
        for seconds in stride(from: -2_000_000_000.0, to: 4_000_000_000.0, by: 7_777_777.7) {
            let date = Date(timeIntervalSince1970: seconds)
            let c = CalendarDate(utc: date)
            #expect(CivilDay(date) == CivilDay(year: c.year, month: c.month, day: c.day))
        }
    }

    @Test func integerOverflowFailsTheCondition() throws {
        let ruleset = try Ruleset.compile([
            "lenders": [["lender_id": "l", "priority": 1, "when": ["loan.amount_paise * 9223372036854775807 > 0"]]]
        ])
        let decision = ruleset.evaluate(application(), today: today, hasConnector: { _ in true })
        #expect(
            decision.excluded.first?.failed == ["loan.amount_paise * 9223372036854775807 > 0 (integer overflow in '*')"]
        )
    }

    @Test func constantFaultsAreCompileErrors() {
        #expect(compileError("1 / 0 > 1")?.message == "lenders[0].when[1], line 1, column 3: division by zero in '/'")
        #expect(compileError("9223372036854775807 + 1 > 0")?.message.contains("integer overflow") == true)
        #expect(compileError("99999999999999999999 > 0")?.message.contains("does not fit in 64 bits") == true)
    }
}

@Suite struct RulesCompileErrorTests {
    @Test func positionAndPath() {
        let e = compileError("customer.bureau_score >= 700 and\n  custmer.pincode == '1'")
        #expect(e?.path == "lenders[0].when[1]")
        #expect(e?.message.hasPrefix("lenders[0].when[1], line 2, column 3: unknown identifier 'custmer'") == true)
    }

    @Test func syntaxErrors() {
        #expect(compileError("customer.bureau_score >=")?.message.contains("line 1, column 25") == true)
        #expect(compileError("(1 + 2")?.message.contains("expected ')'") == true)
        #expect(compileError("1 < 2 < 3")?.message.contains("cannot be chained") == true)
        #expect(compileError("customer.pincode = '1'")?.message.contains("use '=='") == true)
        #expect(compileError("'abc")?.message.contains("string is not closed") == true)
        #expect(compileError("")?.message.contains("empty") == true)
        #expect(compileError("x between 1 or 2")?.message != nil)
    }

    @Test func unknownDial() {
        let e = compileError("customer.bureau_score >= dials.min_score", dials: ["min_bureau_score": 700])
        #expect(e?.message == "lenders[0].when[1], line 1, column 26: unknown dial 'min_score'")
    }

    @Test func typeErrors() {
        #expect(compileError("customer.pincode > 5")?.message.contains("cannot compare a string with a number") == true)
        #expect(compileError("customer.pincode in [110001]")?.message.contains("can never be in this list") == true)
        #expect(compileError("1 + 'a' > 0")?.message.contains("needs numbers") == true)
        #expect(compileError("not 3")?.message.contains("'not' needs true or false") == true)
        #expect(compileError("loan.amount_paise + 1")?.message.contains("a condition must be true or false") == true)
        #expect(compileError("1.5 % 2 == 0")?.message.contains("whole numbers") == true)
        #expect(compileError("customer.bureau_score in 5")?.message.contains("needs a list") == true)
        #expect(compileError("age(5) > 1")?.message.contains("age() needs a date string") == true)
        #expect(compileError("age('1990-13-01') > 1")?.message.contains("YYYY-MM-DD") == true)
    }

    @Test func functionsAndNames() {
        #expect(compileError("len(customer.pan, 2) > 0")?.message.contains("len() takes 1 argument, not 2") == true)
        #expect(compileError("upper(customer.pan) == 'A'")?.message.contains("unknown function 'upper'") == true)
        #expect(
            compileError("table('max_ticket_by_band').max_paise >= loan.amount_paise")?.message.contains(
                "decision tables are not supported yet") == true)
        #expect(compileError("customer > 1")?.message.contains("customer is an object") == true)
        #expect(compileError("merchant_id.x == 'a'")?.message.contains("has no fields") == true)
    }

    @Test func scoreErrorsCarryTheirPath() {
        #expect(throws: RulesError.self) { try score("customer.pincode") }
        do {
            _ = try Ruleset.compile([
                "lenders": [["lender_id": "a", "priority": 1], ["lender_id": "b", "priority": 1, "score": "1 +"]]
            ])
            Issue.record("compiled")
        } catch {
            #expect(error.path == "lenders[1].score")
            #expect(error.message.hasPrefix("lenders[1].score, line 1, column 4:"))
        }
    }

    @Test func structuralErrors() {
        func path(_ json: JSONValue) -> String? {
            do {
                _ = try Ruleset.compile(json)
                return nil
            } catch { return error.path }
        }
        #expect(path(["lenders": [], "extra": 1]) == "extra")
        #expect(path(["dials": [:]]) == "lenders")
        #expect(
            path(["lenders": [["lender_id": "a", "priority": 1], ["lender_id": "a", "priority": 2]]])
                == "lenders[1].lender_id")
        #expect(path(["lenders": [["lender_id": "a"]]]) == "lenders[0].priority")
        #expect(path(["lenders": [["lender_id": "a b", "priority": 1]]]) == "lenders[0].lender_id")
        #expect(path(["lenders": [["lender_id": "a", "priority": 1, "when": "x"]]]) == "lenders[0].when")
        #expect(path(["lenders": [["lender_id": "a", "priority": 1, "when": [1]]]]) == "lenders[0].when[0]")
        #expect(path(["lenders": [["lender_id": "a", "priority": 1, "name": "A"]]]) == "lenders[0].name")
        #expect(path(["lenders": [], "dials": ["x": ["a": 1]]]) == "dials.x")
        #expect(path(["lenders": [], "dials": ["allowed_tenure_months": [3, "6"]]]) == "dials.allowed_tenure_months")
        #expect(path(["lenders": [], "version": 0]) == "version")
        #expect(path(["lenders": [], "tables": 3]) == "tables")
    }

    @Test func limits() {
        let many = JSONValue.array((0..<201).map { .object(["lender_id": .string("l\($0)"), "priority": 1]) })
        #expect(throws: RulesError.self) { try Ruleset.compile(["lenders": many]) }
        let long = String(repeating: "1 + ", count: 1100) + "1 > 0"
        #expect(compileError(long)?.message.contains("longer than 4096 bytes") == true)
        let deep = String(repeating: "(", count: 70) + "1" + String(repeating: ")", count: 70) + " > 0"
        #expect(compileError(deep)?.message.contains("nested deeper than 64") == true)
        let chain = String(repeating: "1 + ", count: 70) + "1 > 0"
        #expect(compileError(chain)?.message.contains("nested deeper than 64") == true)
        let nots = String(repeating: "not ", count: 70) + "true"
        #expect(compileError(nots)?.message.contains("nested deeper than 64") == true)
    }
}

@Suite struct RulesetEvaluationTests {
    static let contractRuleset: JSONValue = [
        "version": 3,
        "dials": ["min_bureau_score": 700, "max_amount_paise": 20_000_000],
        "lenders": [
            [
                "lender_id": "abfl", "priority": 10,
                "when": [
                    "customer.bureau_score >= dials.min_bureau_score",
                    "age(customer.date_of_birth) between 21 and 58",
                    "loan.amount_paise <= dials.max_amount_paise",
                    "customer.pincode not in ['110001', '110002']",
                ],
                "score": "priority * 1000 + customer.bureau_score",
            ],
            ["lender_id": "hero", "priority": 8, "when": ["customer.bureau_score >= 650"]],
            ["lender_id": "tata", "priority": 9, "when": [], "score": "8"],
            ["lender_id": "piramal", "priority": 7, "score": "8"],
        ],
        "tables": [
            [
                "name": "max_ticket_by_band", "hit_policy": "first", "inputs": ["customer.bureau_score"],
                "outputs": ["max_paise"], "rows": [[">= 780", 30_000_000], ["[720..779]", 15_000_000]],
            ]
        ],
    ]

    @Test func rankingAndTies() throws {
        let ruleset = try Ruleset.compile(Self.contractRuleset)
        #expect(ruleset.version == 3)
        let decision = ruleset.evaluate(application(), today: today, hasConnector: { _ in true })
        // tata, hero (no score: its priority) and piramal all score 8; priority breaks the tie.
        let expected: [RankedLender] = [
            RankedLender(lenderID: "abfl", score: 10762), RankedLender(lenderID: "tata", score: 8),
            RankedLender(lenderID: "hero", score: 8), RankedLender(lenderID: "piramal", score: 8),
        ]
        #expect(decision.ranked == expected)
        #expect(decision.ranked.map(\.lenderID) == ["abfl", "tata", "hero", "piramal"])
        #expect(decision.excluded.isEmpty)
        #expect(decision.version == 3)
    }

    @Test func equalScoreAndPriorityFallsBackToLenderID() throws {
        let ruleset = try Ruleset.compile([
            "lenders": [["lender_id": "zeta", "priority": 1], ["lender_id": "alpha", "priority": 1]]
        ])
        let decision = ruleset.evaluate(application(), today: today, hasConnector: { _ in true })
        #expect(decision.ranked.map(\.lenderID) == ["alpha", "zeta"])
    }

    @Test func everyFailedConditionIsListedInOrder() throws {
        let ruleset = try Ruleset.compile(Self.contractRuleset)
        let request = application(score: 640, dob: "1950-01-01", amount: 25_000_000, pincode: "110002")
        let decision = ruleset.evaluate(request, today: today, hasConnector: { _ in true })
        #expect(
            decision.excluded == [
                ExcludedLender(
                    lenderID: "abfl",
                    failed: [
                        "customer.bureau_score >= dials.min_bureau_score",
                        "age(customer.date_of_birth) between 21 and 58",
                        "loan.amount_paise <= dials.max_amount_paise",
                        "customer.pincode not in ['110001', '110002']",
                    ]),
                ExcludedLender(lenderID: "hero", failed: ["customer.bureau_score >= 650"]),
            ])
        #expect(decision.ranked.map(\.lenderID) == ["tata", "piramal"])
    }

    @Test func lenderWithoutConnectorIsExcluded() throws {
        let ruleset = try Ruleset.compile(Self.contractRuleset)
        let decision = ruleset.evaluate(application(), today: today, hasConnector: { $0 != "hero" })
        #expect(decision.excluded == [ExcludedLender(lenderID: "hero", failed: ["no connector descriptor"])])
        #expect(!decision.ranked.contains { $0.lenderID == "hero" })
    }

    /// A lone plain failure shares a precomputed list; a second failure, a fault or a missing
    /// connector must still come out complete and in order.
    @Test func failedListsKeepTheirOrderAroundALoneFailure() throws {
        let ruleset = try Ruleset.compile([
            "lenders": [
                [
                    "lender_id": "l", "priority": 1,
                    "when": ["customer.bureau_score > 800", "customer.employer == 'acme'", "true"],
                ],
                ["lender_id": "m", "priority": 1, "when": ["true", "customer.bureau_score > 800"]],
            ]
        ])
        let decision = ruleset.evaluate(application(), today: today, hasConnector: { $0 != "m" })
        #expect(
            decision.excluded == [
                ExcludedLender(
                    lenderID: "l",
                    failed: [
                        "customer.bureau_score > 800",
                        "customer.employer == 'acme' (customer.employer is missing)",
                    ]),
                ExcludedLender(lenderID: "m", failed: ["no connector descriptor", "customer.bureau_score > 800"]),
            ])
        let alone = ruleset.evaluate(application(), today: today, hasConnector: { _ in true })
        #expect(alone.excluded.last == ExcludedLender(lenderID: "m", failed: ["customer.bureau_score > 800"]))
    }

    /// Validated optional fields are read from `CheckoutRequest`'s typed properties; absent or
    /// null they are missing, as when they were read from the raw body.
    @Test func typedOptionalFieldsReadLikeTheBody() throws {
        let ruleset = try Ruleset.compile([
            "lenders": [
                [
                    "lender_id": "l", "priority": 1,
                    "when": [
                        "customer.pincode == '560001'", "customer.monthly_income_paise == 9000000",
                        "product.category == 'mobile'", "product.price_paise == 7990000",
                        "product.sku == 'iphone-16-128'",
                        "customer.email == 'asha@example.in'",
                    ],
                ]
            ]
        ])
        #expect(ruleset.evaluate(application(), today: today, hasConnector: { _ in true }).ranked.count == 1)
        let nulled = application(extra: ["pincode": .null, "monthly_income_paise": .null])
        #expect(
            ruleset.evaluate(nulled, today: today, hasConnector: { _ in true }).excluded.first?.failed == [
                "customer.pincode == '560001' (customer.pincode is missing)",
                "customer.monthly_income_paise == 9000000 (customer.monthly_income_paise is missing)",
            ])
    }

    /// The integer and string fast paths give what the general operations give, including for
    /// values of another kind than the constants (an unvalidated field holding anything).
    @Test func fastPathsAgreeWithTheGeneralOperations() throws {
        func request(_ employees: JSONValue) -> CheckoutRequest { application(extra: ["employees": employees]) }
        #expect(try holds("customer.employees in [1, 2, 3]", request(2)))
        #expect(try !holds("customer.employees in [1, 2, 3]", request(2.5)))
        #expect(try holds("customer.employees in [1, 2, 3]", request(2.0)))
        #expect(try !holds("customer.employees in ['2', 'x']", request(2)))
        #expect(try holds("customer.employees not in ['2', 'x']", request(2)))
        #expect(try holds("customer.employees in ['2', 'x']", request("2")))
        #expect(try !holds("customer.employees in [1, 2, 3]", request("2")))
        #expect(try holds("customer.employees between 1 and 3", request(3)))
        #expect(try holds("customer.employees between 1 and 3", request(2.5)))
        #expect(try !holds("customer.employees not between 1 and 3", request(1)))
        #expect(try holds("customer.employees >= 2", request(2)))
        #expect(try holds("customer.employees >= 2", request(2.5)))
        #expect(try holds("3 > customer.employees", request(2)))
        #expect(try holds("customer.employees < loan.tenure_months", request(2)))
        #expect(try holds("customer.employees < loan.tenure_months", request(2.5)))
        #expect(try holds("customer.employees == '2'", request("2")))
        #expect(try !holds("customer.employees != '2'", request("2")))
        #expect(try holds("customer.employees != '22'", request("2")))
        #expect(try !holds("customer.employees != '2'", request(2)))
        #expect(try holds("customer.employees < '3'", request("2")))
        let ruleset = try Ruleset.compile([
            "lenders": [["lender_id": "l", "priority": 1, "when": ["customer.employees >= 2"]]]
        ])
        let decision = ruleset.evaluate(request("many"), today: today, hasConnector: { _ in true })
        #expect(
            decision.excluded.first?.failed == [
                "customer.employees >= 2 ('>=' cannot compare a string with a number)"
            ])
    }

    @Test func missingFieldFailsWithAReason() throws {
        let ruleset = try Ruleset.compile([
            "lenders": [
                [
                    "lender_id": "l", "priority": 1,
                    "when": ["customer.employer == 'acme'", "customer.bureau_score > 0", "customer.tags in ['x']"],
                ]
            ]
        ])
        let decision = ruleset.evaluate(application(), today: today, hasConnector: { _ in true })
        #expect(
            decision.excluded.first?.failed == [
                "customer.employer == 'acme' (customer.employer is missing)",
                "customer.tags in ['x'] (customer.tags is missing)",
            ])
        let typed = ruleset.evaluate(
            application(extra: ["employer": 42, "tags": "x"]), today: today, hasConnector: { _ in true })
        #expect(
            typed.excluded.first?.failed == ["customer.employer == 'acme' ('==' cannot compare a number with a string)"]
        )
    }

    @Test func decisionEncodesWithSnakeCaseKeys() throws {
        let decision = RuleDecision(
            version: 2, ranked: [RankedLender(lenderID: "a", score: 1.5)],
            excluded: [ExcludedLender(lenderID: "b", failed: ["x"])])
        let json = try JSONValue.parse(JSONEncoder().encode(decision))
        let ranked: JSONValue = [["lender_id": "a", "score": 1.5]]
        let excluded: JSONValue = [["lender_id": "b", "failed": ["x"]]]
        let expected: JSONValue = ["version": 2, "ranked": ranked, "excluded": excluded]
        #expect(json == expected)
        #expect(try JSONDecoder().decode(RuleDecision.self, from: JSONEncoder().encode(decision)) == decision)
    }

    @Test func documentKeepsTablesAndVersion() throws {
        let ruleset = try Ruleset.compile(Self.contractRuleset).withVersion(7)
        #expect(ruleset.version == 7)
        var expected = Self.contractRuleset.objectValue!
        expected["version"] = 7
        #expect(ruleset.document == .object(expected))
        #expect(try Ruleset.compile(["lenders": []]).version == 1)
        #expect(try Ruleset.compile(ruleset.document).version == 7)
    }

    @Test func patchingDials() throws {
        let ruleset = try Ruleset.compile(Self.contractRuleset)
        let request = application(score: 720)
        #expect(ruleset.evaluate(request, today: today, hasConnector: { _ in true }).ranked.first?.lenderID == "abfl")
        let patched = try ruleset.patchingDials(["min_bureau_score": 740])
        #expect(patched.version == 3)
        #expect(patched.document["dials"]?["min_bureau_score"] == 740)
        #expect(patched.document["dials"]?["max_amount_paise"] == 20_000_000)
        let decision = patched.evaluate(request, today: today, hasConnector: { _ in true })
        #expect(decision.excluded.first?.failed == ["customer.bureau_score >= dials.min_bureau_score"])
        // Removing a dial that a condition reads does not compile; the old ruleset stays usable.
        #expect(throws: RulesError.self) { try ruleset.patchingDials(["min_bureau_score": nil]) }
        #expect(throws: RulesError.self) { try ruleset.patchingDials(["min_bureau_score": "high"]) }
        #expect(throws: RulesError.self) { try ruleset.patchingDials(["bad name": 1]) }
    }

    @Test func allowedTenureMonths() throws {
        #expect(try Ruleset.compile(["lenders": []]).allowedTenureMonths == nil)
        let ruleset = try Ruleset.compile(["lenders": [], "dials": ["allowed_tenure_months": [3, 6, 12]]])
        #expect(ruleset.allowedTenureMonths == [3, 6, 12])
        #expect(try ruleset.patchingDials(["allowed_tenure_months": [9]]).allowedTenureMonths == [9])
        #expect(try ruleset.patchingDials(["allowed_tenure_months": nil]).allowedTenureMonths == nil)
        #expect(throws: RulesError.self) { try ruleset.patchingDials(["allowed_tenure_months": [0]]) }
    }

    @Test func benchmarkRulesetCompilesAndRanks() throws {
        let ruleset = try Ruleset.compile(benchmarkRuleset)
        let decisions = benchmarkApplications(count: 64).map {
            ruleset.evaluate($0, today: today, hasConnector: { _ in true })
        }
        #expect(decisions.allSatisfy { $0.ranked.count + $0.excluded.count == 4 })
        #expect(decisions.contains { !$0.ranked.isEmpty })
        #expect(decisions.contains { !$0.excluded.isEmpty })
        // No benchmark application trips a runtime fault: each failure is a plain false.
        #expect(
            decisions.allSatisfy {
                $0.excluded.allSatisfy { $0.failed.allSatisfy { !$0.hasSuffix(")") || $0.hasPrefix("score") } }
            })
    }
}

@Suite struct StandaloneConditionTests {
    @Test func holdsAndFails() throws {
        let c = try Condition.compile("loan.tenure_months in [3, 6, 9, 12, 18, 24]")
        #expect(c.text == "loan.tenure_months in [3, 6, 9, 12, 18, 24]")
        #expect(c.holds(for: application(tenure: 12), today: today))
        #expect(!c.holds(for: application(tenure: 7), today: today))
        #expect(c.failure(for: application(tenure: 7), today: today) == c.text)
        let missing = try Condition.compile("customer.employer != 'x'")
        #expect(
            missing.failure(for: application(), today: today)
                == "customer.employer != 'x' (customer.employer is missing)")
    }

    @Test func noDialsOrPriority() {
        #expect(throws: RulesError.self) { try Condition.compile("loan.amount_paise >= dials.min") }
        #expect(throws: RulesError.self) { try Condition.compile("priority > 1") }
        do {
            _ = try Condition.compile("loan.amount_paise >= ", path: "validate[1]")
            Issue.record("compiled")
        } catch {
            #expect(error.path == "validate[1]")
            #expect(error.message.hasPrefix("validate[1], line 1, column 22:"))
        }
    }
}
