import Foundation
import Testing

@testable import FluxActors

/// The decision loop takes shortcuts (conditions answered without building their value, shared
/// `failed` lists for sets of plain `false` conditions, fast paths per node shape). These tests
/// hold it to a plain reference: every condition compiled and evaluated on its own
/// (`Condition.failure`, which runs each expression's full value), and the result put together
/// exactly as "Evaluation" in Docs/rules.md says.
@Suite struct RulesDecisionReferenceTests {
    /// 2025-06-15T12:00:00Z
    static let today = Date(timeIntervalSince1970: 1_749_988_800)

    /// Conditions that hold, fail and fault in turn over `requests()`: missing fields, values of
    /// the wrong type, overflow, `and`/`or`/`not`, non-ASCII strings (KELVIN SIGN equals "K").
    static let conditions = [
        "customer.bureau_score >= 700",
        "age(customer.date_of_birth) between 21 and 58",
        "customer.pincode not in ['110001', '110002']",
        "product.category in ['mobile', 'laptop', 'tv']",
        "customer.employer == 'acme'",
        "customer.flag or customer.bureau_score > 650",
        "not (loan.amount_paise > 5000000)",
        "loan.amount_paise * 1000000000000 > 0",
        "lower(product.category) != 'jewellery'",
        "customer.nickname == 'K'",
        "customer.nickname in ['K', 'Asha']",
        "loan.tenure_months in [3, 6, 9, 12]",
        "customer.monthly_income_paise >= loan.amount_paise / 4",
        "merchant_id in ['croma', 'reliance']",
        "customer.bureau_score between 600 and 900",
        "customer.employees > 10",
        "customer.employees in [5, 50]",
        "age(customer.date_of_birth) >= 23 and age(customer.date_of_birth) <= 55",
        "customer.bureau_score > 650 and customer.bureau_score < 640",
        "customer.bureau_score != 700 and customer.bureau_score >= 600",
        "customer.bureau_score >= 600 and customer.employees > 10",
        "customer.employees >= 5 and customer.employees <= 50",
        "customer.bureau_score < 650 or customer.bureau_score > 800",
    ]

    static func requests() -> [CheckoutRequest] {
        let categories = ["mobile", "laptop", "tv", "jewellery", "Mobile", "Jewellery"]
        let pincodes = ["560001", "110001", "400001", "110002"]
        let nicknames: [JSONValue?] = [nil, "K", "\u{212A}", "Asha", .int(7)]
        let employers: [JSONValue?] = [nil, "acme", "other", .null, .bool(true)]
        let flags: [JSONValue?] = [nil, .bool(true), .bool(false), "yes"]
        let employees: [JSONValue?] = [nil, .int(5), .int(50), .int(3), "many", .double(50)]
        return (0..<120).map { i in
            var customer: [String: JSONValue] = [
                "id": "c-1", "name": "Asha Rao", "phone": "+919800000001", "pan": "ABCDE1234F",
                "date_of_birth": .string("\(1960 + (i * 7) % 50)-0\(1 + i % 9)-1\(i % 10)"),
                "pincode": .string(pincodes[i % pincodes.count]),
                "monthly_income_paise": .int(1_000_000 + Int64(i) * 40_000),
                "bureau_score": .int(Int64(560 + (i * 37) % 340)),
            ]
            customer["nickname"] = nicknames[i % nicknames.count]
            customer["employer"] = employers[(i / 2) % employers.count]
            customer["flag"] = flags[(i / 3) % flags.count]
            customer["employees"] = employees[(i / 5) % employees.count]
            let amount = Int64(300_000 + (i * 1_234_567) % 9_000_000)
            let json: JSONValue = [
                "merchant_id": i % 3 == 0 ? "vijay" : "croma", "customer": .object(customer),
                "product": ["sku": "sku-1", "category": .string(categories[i % categories.count])],
                "loan": ["amount_paise": .int(amount), "tenure_months": .int(Int64([3, 6, 12, 18, 24][i % 5]))],
            ]
            return try! CheckoutRequest(json: json)
        }
    }

    /// Lenders of 0 to 70 conditions (beyond the 6 whose failure sets are shared, and beyond the
    /// 64 a bit mask holds), drawn from `conditions` in turn.
    static func lenders() -> [(id: String, priority: Int64, when: [String])] {
        let sizes = [0, 1, 2, 4, 4, 6, 7, 12, 70]
        var start = 0
        return sizes.enumerated().map { index, size in
            let when = (0..<size).map { conditions[(start + $0 * 5) % conditions.count] }
            start += 3
            return (id: "lender-\(index)", priority: Int64((index * 7) % 5), when: when)
        }
    }

    /// Every lender but `lender-3` has a connector.
    static func hasConnector(_ id: String) -> Bool { id != "lender-3" }

    static func reference(
        _ request: CheckoutRequest, lenders: [(id: String, priority: Int64, when: [String])],
        compiled: [[Condition]]
    ) -> (ranked: [RankedLender], excluded: [ExcludedLender]) {
        var ranked: [(RankedLender, Int64)] = []
        var excluded: [ExcludedLender] = []
        for (lender, conditions) in zip(lenders, compiled) {
            var failed = hasConnector(lender.id) ? [] : ["no connector descriptor"]
            failed += conditions.compactMap { $0.failure(for: request, today: today) }
            if failed.isEmpty {
                // The default score is the priority.
                ranked.append((RankedLender(lenderID: lender.id, score: Double(lender.priority)), lender.priority))
            } else {
                excluded.append(ExcludedLender(lenderID: lender.id, failed: failed))
            }
        }
        ranked.sort { a, b in
            if a.0.score != b.0.score { return a.0.score > b.0.score }
            if a.1 != b.1 { return a.1 > b.1 }
            return a.0.lenderID < b.0.lenderID
        }
        return (ranked.map(\.0), excluded)
    }

    @Test func decisionsMatchAConditionByConditionReference() throws {
        let lenders = Self.lenders()
        let ruleset = try Ruleset.compile([
            "lenders": .array(
                lenders.map { l in
                    [
                        "lender_id": .string(l.id), "priority": .int(l.priority),
                        "when": .array(l.when.map { .string($0) }),
                    ]
                })
        ])
        let compiled = try lenders.map { l in try l.when.map { try Condition.compile($0) } }
        var faults = 0
        var sharedSets = 0
        for request in Self.requests() {
            let decision = ruleset.evaluate(request, today: Self.today, hasConnector: Self.hasConnector)
            let expected = Self.reference(request, lenders: lenders, compiled: compiled)
            #expect(decision.ranked == expected.ranked)
            #expect(decision.excluded == expected.excluded)
            for e in decision.excluded {
                faults += e.failed.filter { $0.hasSuffix(")") }.count
                if e.failed.count > 1 && !e.failed.contains(where: { $0.hasSuffix(")") }) { sharedSets += 1 }
            }
        }
        // The requests exercise what the shortcuts skip: faults, and several plain failures.
        #expect(faults > 100)
        #expect(sharedSets > 20)
    }

    @Test func integerRangesAreTheComparisons() {
        let values: [Int64] = [.min, .min + 1, -1, 0, 1, .max - 1, .max]
        let ops: [(BinaryOperator, (Int64, Int64) -> Bool)] = [
            (.equal, ==), (.notEqual, !=), (.less, <), (.lessOrEqual, <=), (.greater, >), (.greaterOrEqual, >=),
        ]
        for (op, compare) in ops {
            for c in values {
                let check = IntegerRangeCheck(slot: 0, op, c)
                for x in values {
                    #expect(check.test(x) == RuleTruth(compare(x, c)), "\(x) \(op.rawValue) \(c)")
                }
            }
        }
    }

    @Test func dateParsingAgreesWithCalendarDate() {
        var texts = [
            "2024-02-29", "2023-02-29", "2000-02-29", "1900-02-29", "1899-12-31", "1900-01-01", "9999-12-31",
            "2000-13-01", "2000-00-10", "2000-01-00", "2000-04-31", "20a0-01-01", "2000/01/01", "2000-01-1",
            "2000-01-100", " 2000-01-01", "2000-0１-01", "", "----------", "0000-00-00", "2000-1a-01",
        ]
        for i in 0..<400 { texts.append("\(1890 + i % 120)-\(String(format: "%02d", i % 14))-\(String(format: "%02d", i % 33))") }
        for text in texts {
            let parsed = CivilDay(parsing: text)
            let expected = CalendarDate(text).map { CivilDay(year: $0.year, month: $0.month, day: $0.day) }
            #expect(parsed == expected, "\(text)")
        }
    }

    @Test func benchmarkDecisionsMatchTheReference() throws {
        // The benchmark's own ruleset uses dials and priorities, which a standalone condition
        // cannot read: compare against the same ruleset with the dials written in.
        let ruleset = try Ruleset.compile(benchmarkRuleset)
        var inlined = benchmarkRuleset
        guard case .object(var top) = inlined, case .array(let lenderItems) = top["lenders"] else {
            Issue.record("benchmark ruleset shape")
            return
        }
        let dials = [
            "dials.min_bureau_score + 20": "720", "dials.min_bureau_score": "700",
            "dials.max_amount_paise": "20000000", "dials.blocked_pincodes": "['110001', '110002']",
        ]
        var lenders: [(id: String, priority: Int64, when: [String])] = []
        var items: [JSONValue] = []
        for item in lenderItems {
            guard case .object(var l) = item, case .string(let id) = l["lender_id"], case .int(let p) = l["priority"],
                case .array(let when) = l["when"]
            else { continue }
            let texts: [String] = when.compactMap { w in
                guard case .string(var t) = w else { return nil }
                for (k, v) in dials { t = t.replacingOccurrences(of: k, with: v) }
                return t
            }
            lenders.append((id, p, texts))
            l["when"] = .array(texts.map { .string($0) })
            items.append(.object(l))
        }
        top["lenders"] = .array(items)
        top["dials"] = nil
        inlined = .object(top)
        let plain = try Ruleset.compile(inlined)
        let compiled = try lenders.map { l in try l.when.map { try Condition.compile($0) } }
        for request in benchmarkApplications(count: 64) {
            let a = ruleset.evaluate(request, today: Self.today, hasConnector: Self.hasConnector)
            let b = plain.evaluate(request, today: Self.today, hasConnector: Self.hasConnector)
            let expected = Self.reference(request, lenders: lenders, compiled: compiled)
            // The benchmark's scores are not the priority: compare which lenders rank, the
            // excluded lists exactly where the texts are the same, and otherwise which lenders
            // failed how many conditions.
            #expect(b.excluded == expected.excluded)
            #expect(
                a.excluded.map { "\($0.lenderID):\($0.failed.count)" }
                    == b.excluded.map { "\($0.lenderID):\($0.failed.count)" })
            #expect(Set(a.ranked.map(\.lenderID)) == Set(expected.ranked.map(\.lenderID)))
            #expect(a.ranked == b.ranked)
        }
    }
}
