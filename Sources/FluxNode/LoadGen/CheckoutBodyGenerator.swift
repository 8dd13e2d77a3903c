import Foundation

/// Makes realistic, varied checkout bodies (CONTRACT §2) from a seed: Indian names, valid-looking
/// PANs and phones, a bureau-score spread from sub-prime to super-prime, store products from a
/// phone to a laptop, tenures from the usual 3–24 months. Every body has its own customer id and
/// idempotency key, so the one-live-application-per-customer rule never interferes with load.
public struct CheckoutBodyGenerator: Sendable {
    public struct Checkout: Sendable {
        public var idempotencyKey: String
        public var customerID: String
        /// The JSON body, ready to send.
        public var body: Data
        public var bureauScore: Int
        public var amountPaise: Int64
        public var tenureMonths: Int
    }

    struct Product {
        var sku: String
        var category: String
        var pricePaise: Int64
        var weight: Int
    }

    static let merchants: [(id: String, stores: [String])] = [
        ("croma", ["croma-blr-12", "croma-mum-03", "croma-del-07"]),
        ("reliance-digital", ["rd-hyd-21", "rd-pune-04"]),
        ("vijay-sales", ["vs-mum-11", "vs-ahd-02"]),
        ("poorvika", ["pv-chn-05", "pv-cbe-01"]),
    ]
    /// Weighted towards what is bought on EMI at a store: phones first, then TVs and appliances.
    static let products: [Product] = [
        Product(sku: "iphone-16-128", category: "mobile", pricePaise: 7_990_000, weight: 14),
        Product(sku: "galaxy-s24-256", category: "mobile", pricePaise: 7_499_900, weight: 10),
        Product(sku: "redmi-note-13", category: "mobile", pricePaise: 1_799_900, weight: 14),
        Product(sku: "macbook-air-m3", category: "laptop", pricePaise: 11_490_000, weight: 6),
        Product(sku: "thinkpad-e14", category: "laptop", pricePaise: 6_849_000, weight: 6),
        Product(sku: "lg-oled-55", category: "television", pricePaise: 13_999_000, weight: 4),
        Product(sku: "sony-bravia-43", category: "television", pricePaise: 4_499_000, weight: 10),
        Product(sku: "samsung-ff-653l", category: "refrigerator", pricePaise: 8_990_000, weight: 6),
        Product(sku: "ifb-fl-8kg", category: "washing_machine", pricePaise: 3_749_000, weight: 10),
        Product(sku: "daikin-1.5t-inv", category: "air_conditioner", pricePaise: 4_690_000, weight: 10),
        Product(sku: "boat-airdopes", category: "audio", pricePaise: 149_900, weight: 8),
        // Over every lender's ticket size: declined without a lender being asked.
        Product(sku: "rolex-datejust", category: "watch", pricePaise: 95_000_000, weight: 2),
    ]
    static let productWeightTotal = products.reduce(0) { $0 + $1.weight }

    static let firstNames = [
        "Asha", "Rohan", "Priya", "Vikram", "Ananya", "Arjun", "Meera", "Karthik", "Divya", "Rahul", "Sneha",
        "Aditya", "Lakshmi", "Imran", "Fatima", "Gurpreet", "Neha", "Suresh", "Kavya", "Manoj",
    ]
    static let lastNames = [
        "Rao", "Sharma", "Iyer", "Patel", "Reddy", "Singh", "Nair", "Khan", "Das", "Menon", "Gupta", "Joshi",
        "Kulkarni", "Banerjee", "Pillai", "Verma",
    ]
    static let pincodes = ["560001", "400001", "110003", "500081", "411001", "600028", "380009", "641002", "700019"]
    static let tenures = [3, 3, 6, 6, 6, 9, 12, 12, 12, 12, 18, 24]

    private var rng: SplitMix64
    private let runID: String
    private var sequence = 0

    /// `runID` prefixes ids and keys so two runs against the same cluster never collide.
    public init(seed: UInt64, runID: String) {
        rng = SplitMix64(seed: seed)
        self.runID = runID
    }

    public mutating func next() -> Checkout {
        sequence += 1
        let n = sequence
        let merchant = Self.merchants[pick(Self.merchants.count)]
        let store = merchant.stores[pick(merchant.stores.count)]
        let product = pickProduct()
        let first = Self.firstNames[pick(Self.firstNames.count)]
        let last = Self.lastNames[pick(Self.lastNames.count)]
        let score = bureauScore()
        // Some customers pay a down payment of 10–30 %; the rest finance the full price.
        let downPercent = rng.chance(0.3) ? Int64(10 + pick(21)) : 0
        let amount = product.pricePaise - product.pricePaise * downPercent / 100
        let tenure = Self.tenures[pick(Self.tenures.count)]
        let customerID = "lg-\(runID)-c\(n)"
        let year = 1966 + pick(40)  // ages from about 19 to 59
        let dob = "\(year)-\(Self.twoDigits(1 + pick(12)))-\(Self.twoDigits(1 + pick(28)))"
        let income = Int64(25_000 + pick(275_000)) * 100
        let customer: [String: SimJSON] = [
            "id": .string(customerID),
            "name": .string("\(first) \(last)"),
            "phone": .string("+91" + String(9_000_000_000 + UInt64(pick(999_999_999)))),
            "email": .string("\(first.lowercased()).\(last.lowercased()).\(n)@example.in"),
            "pan": .string(pan(lastName: last)),
            "date_of_birth": .string(dob),
            "pincode": .string(Self.pincodes[pick(Self.pincodes.count)]),
            "monthly_income_paise": .int(income),
            "bureau_score": .int(Int64(score)),
        ]
        let body = SimJSON.object([
            "merchant_id": .string(merchant.id),
            "store_id": .string(store),
            "customer": .object(customer),
            "product": .object([
                "sku": .string(product.sku), "category": .string(product.category),
                "price_paise": .int(product.pricePaise),
            ]),
            "loan": .object(["amount_paise": .int(amount), "tenure_months": .int(Int64(tenure))]),
            "mode": .string("waterfall"),
        ])
        let data = body.encoded()
        return Checkout(
            idempotencyKey: "lg-\(runID)-\(n)", customerID: customerID, body: data, bureauScore: score,
            amountPaise: amount, tenureMonths: tenure)
    }

    /// A CIBIL-like spread: roughly normal around 735 (σ ≈ 55), clamped to 300…900.
    mutating func bureauScore() -> Int {
        // Irwin–Hall: the sum of 12 uniforms is close to normal with mean 6 and σ 1.
        var s = 0.0
        for _ in 0..<12 { s += Double(rng.next() >> 11) / Double(1 << 53) }
        return Swift.min(900, Swift.max(300, Int((735 + (s - 6) * 55).rounded())))
    }

    /// AAAAA9999A, with the fourth letter `P` (individual) and the fifth the surname's initial,
    /// as real PANs have.
    mutating func pan(lastName: String) -> String {
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        var s = ""
        for _ in 0..<3 { s.append(letters[pick(26)]) }
        s.append("P")
        s.append(lastName.first ?? "X")
        let digits = String(pick(10_000))
        s += String(repeating: "0", count: 4 - digits.count) + digits
        s.append(letters[pick(26)])
        return s
    }

    private mutating func pickProduct() -> Product {
        var r = pick(Self.productWeightTotal)
        for p in Self.products {
            if r < p.weight { return p }
            r -= p.weight
        }
        return Self.products[0]
    }

    static func twoDigits(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    private mutating func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
}
