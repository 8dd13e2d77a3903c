import Foundation

/// The ruleset `make bench` measures: four lenders of four conditions each, in the shape of
/// CONTRACT §3's example.
let benchmarkRuleset: JSONValue = [
    "version": 1,
    "dials": [
        "min_bureau_score": 700, "max_amount_paise": 20_000_000,
        "blocked_pincodes": ["110001", "110002"], "allowed_tenure_months": [3, 6, 9, 12, 18, 24],
    ],
    "lenders": [
        [
            "lender_id": "abfl", "priority": 10,
            "when": [
                "customer.bureau_score >= dials.min_bureau_score",
                "age(customer.date_of_birth) between 21 and 58",
                "loan.amount_paise <= dials.max_amount_paise",
                "customer.pincode not in dials.blocked_pincodes",
            ],
            "score": "priority * 1000 + customer.bureau_score",
        ],
        [
            "lender_id": "hero", "priority": 8,
            "when": [
                "customer.bureau_score >= 650",
                "age(customer.date_of_birth) between 21 and 60",
                "loan.tenure_months in [3, 6, 9, 12]",
                "product.category in ['mobile', 'laptop', 'tv']",
            ],
            "score": "priority * 1000 + customer.bureau_score / 10",
        ],
        [
            "lender_id": "piramal", "priority": 6,
            "when": [
                "customer.bureau_score between 600 and 900",
                "loan.amount_paise between 500000 and 15000000",
                "customer.monthly_income_paise >= loan.amount_paise / 4",
                "lower(product.category) != 'jewellery'",
            ],
            "score": "priority * 1000 + (customer.monthly_income_paise / 100000)",
        ],
        [
            "lender_id": "tata", "priority": 9,
            "when": [
                "customer.bureau_score >= dials.min_bureau_score + 20",
                "age(customer.date_of_birth) >= 23 and age(customer.date_of_birth) <= 55",
                "loan.amount_paise <= product.price_paise",
                "merchant_id in ['croma', 'reliance', 'vijay']",
            ],
            "score": "priority * 1000 + customer.bureau_score - loan.tenure_months",
        ],
    ],
]

/// Varied applications, made deterministically (no randomness source).
func benchmarkApplications(count: Int) -> [CheckoutRequest] {
    let categories = ["mobile", "laptop", "tv", "jewellery", "Mobile"]
    let merchants = ["croma", "reliance", "vijay", "poorvika"]
    let pincodes = ["560001", "110001", "400001", "600002", "110002"]
    let tenures: [Int64] = [3, 6, 9, 12, 18, 24]
    var result: [CheckoutRequest] = []
    for i in 0..<count {
        let score = Int64(560 + (i * 37) % 340)
        let year = 1960 + (i * 7) % 50
        let amount = Int64(300_000 + (i * 1_234_567) % 25_000_000)
        let json: JSONValue = [
            "merchant_id": .string(merchants[i % merchants.count]), "store_id": "store-1",
            "customer": [
                "id": .string("c-\(i)"), "name": "Asha Rao", "phone": "+919800000001", "email": "asha@example.in",
                "pan": "ABCDE1234F", "date_of_birth": .string("\(year)-0\(1 + i % 9)-1\(i % 10)"),
                "pincode": .string(pincodes[i % pincodes.count]),
                "monthly_income_paise": .int(2_000_000 + Int64(i) * 50_000),
                "bureau_score": .int(score),
            ],
            "product": [
                "sku": "sku-1", "category": .string(categories[i % categories.count]),
                "price_paise": .int(amount + 100_000),
            ],
            "loan": ["amount_paise": .int(amount), "tenure_months": .int(tenures[i % tenures.count])],
            "mode": "waterfall",
        ]
        // The generator only makes valid applications; a failure here is a bug in it.
        result.append(try! CheckoutRequest(json: json))
    }
    return result
}

/// Every lender has a connector. A stored closure, opaque at the call as the node's is
/// (`node.lenders.hasConnector`, passed from another module): with a closure literal the compiler
/// specialises `evaluate` for this call site, a shape the node's call never has.
private final class BenchmarkConnectors {
    let hasConnector: (String) -> Bool = { !$0.isEmpty }
}

/// CPU time of the calling thread: what "per second on one core" means on a shared machine,
/// where wall time would also count other processes' turns.
func threadCPUNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// Evaluates the benchmark ruleset `iterations` times on one thread over varied applications.
/// Timed in this thread's CPU time. Returns whole-ruleset decisions per second and lender decisions (one lender's conditions
/// and score) per second.
public func runRulesBenchmark(iterations: Int) -> (decisionsPerSecond: Double, lenderDecisionsPerSecond: Double) {
    // The ruleset is a fixed, valid literal; a failure to compile is a bug caught by the tests.
    let ruleset = try! Ruleset.compile(benchmarkRuleset)
    let applications = benchmarkApplications(count: 64)
    let today = Date(timeIntervalSince1970: 1_764_000_000)  // 2025-11-24
    let lenders = ruleset.lenderIDs.count
    let iterations = max(iterations, 1)
    var checksum = 0
    // Warm up caches and lazy initialisation before timing.
    for i in 0..<min(iterations, 1000) {
        checksum &+= ruleset.evaluate(applications[i & 63], today: today, hasConnector: { _ in true }).ranked.count
    }
    let start = threadCPUNanoseconds()
    // Each decision borrows a request held in a local variable, as the HTTP path borrows the one
    // it decoded; the next one is swapped in (a move: no reference counting). Passing an array
    // element instead, the compiler copies it for the call (a retain and a release of each of its
    // strings): a cost of the harness, not of the rules.
    var pool = applications
    var request = pool[63]
    let connectors = BenchmarkConnectors()
    for i in 0..<iterations {
        swap(&request, &pool[i & 63])
        let decision = ruleset.evaluate(request, today: today, hasConnector: connectors.hasConnector)
        checksum &+= decision.ranked.count &+ decision.excluded.count
    }
    let seconds = max(Double(threadCPUNanoseconds() - start) / 1e9, 1e-9)
    // Keeps the loop from being optimised away.
    if checksum == Int.min { print(checksum) }
    let perSecond = Double(iterations) / seconds
    return (perSecond, perSecond * Double(lenders))
}
