/// Why a schedule cannot be made (or a stored one is not a schedule).
public enum ScheduleError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The principal is not in 1...`AmortizationSchedule.maxPrincipalPaise`.
    case principalOutOfRange(Int64)
    /// The tenure is not in 1...`AmortizationSchedule.maxTenureMonths`.
    case tenureOutOfRange(Int)
    /// The rate is not in 0...`AmortizationSchedule.maxAnnualRateBps`.
    case rateOutOfRange(Int)
    /// Rounding every line to the paisa would repay the loan before its last instalment (a
    /// balance would go below zero). Only tiny principals, or very high rates over very long
    /// tenures, do this; the loan cannot be booked with such a schedule.
    case roundingOverdrawsBalance(instalment: Int)
    /// A schedule (decoded from storage) that breaks an invariant; the text says which.
    case brokenInvariant(String)

    public var description: String {
        switch self {
        case .principalOutOfRange(let p):
            "principal \(p) paise is not between 1 and \(AmortizationSchedule.maxPrincipalPaise)"
        case .tenureOutOfRange(let n):
            "tenure \(n) months is not between 1 and \(AmortizationSchedule.maxTenureMonths)"
        case .rateOutOfRange(let r):
            "annual rate \(r) bps is not between 0 and \(AmortizationSchedule.maxAnnualRateBps)"
        case .roundingOverdrawsBalance(let n):
            "rounding to the paisa would repay this principal before instalment \(n) falls due; "
                + "the principal is too small for this rate and tenure"
        case .brokenInvariant(let why): "schedule breaks an invariant: \(why)"
        }
    }
}

/// One line of a schedule. `balancePaise` is the principal still owed after this line.
public struct Instalment: Sendable, Equatable {
    /// 1-based.
    public var n: Int
    public var dueDate: CalendarDate
    public var emiPaise: Int64
    public var principalPaise: Int64
    public var interestPaise: Int64
    public var balancePaise: Int64
    /// What has been paid against this line (0 when the loan is opened; payments are later).
    public var paidPaise: Int64

    public init(
        n: Int, dueDate: CalendarDate, emiPaise: Int64, principalPaise: Int64, interestPaise: Int64,
        balancePaise: Int64, paidPaise: Int64 = 0
    ) {
        self.n = n
        self.dueDate = dueDate
        self.emiPaise = emiPaise
        self.principalPaise = principalPaise
        self.interestPaise = interestPaise
        self.balancePaise = balancePaise
        self.paidPaise = paidPaise
    }

    /// The line as CONTRACT's `GET /v1/loans/{id}` shows it.
    public func view() -> JSONValue {
        [
            "n": .int(Int64(n)), "due_date": .string(dueDate.description), "emi_paise": .int(emiPaise),
            "principal_paise": .int(principalPaise), "interest_paise": .int(interestPaise),
            "balance_paise": .int(balancePaise), "paid_paise": .int(paidPaise),
        ]
    }
}

extension Instalment: Codable {
    enum CodingKeys: String, CodingKey {
        case n
        case dueDate = "due_date"
        case emiPaise = "emi_paise"
        case principalPaise = "principal_paise"
        case interestPaise = "interest_paise"
        case balancePaise = "balance_paise"
        case paidPaise = "paid_paise"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        n = try c.decode(Int.self, forKey: .n)
        let due = try c.decode(String.self, forKey: .dueDate)
        guard let date = CalendarDate(due) else {
            throw DecodingError.dataCorruptedError(
                forKey: .dueDate, in: c, debugDescription: "due_date must be a date YYYY-MM-DD")
        }
        dueDate = date
        emiPaise = try c.decode(Int64.self, forKey: .emiPaise)
        principalPaise = try c.decode(Int64.self, forKey: .principalPaise)
        interestPaise = try c.decode(Int64.self, forKey: .interestPaise)
        balancePaise = try c.decode(Int64.self, forKey: .balancePaise)
        paidPaise = try c.decodeIfPresent(Int64.self, forKey: .paidPaise) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(n, forKey: .n)
        try c.encode(dueDate.description, forKey: .dueDate)
        try c.encode(emiPaise, forKey: .emiPaise)
        try c.encode(principalPaise, forKey: .principalPaise)
        try c.encode(interestPaise, forKey: .interestPaise)
        try c.encode(balancePaise, forKey: .balancePaise)
        try c.encode(paidPaise, forKey: .paidPaise)
    }
}

/// The EMI schedule of a reducing-balance loan, exactly as CONTRACT §2 "Loans" defines it:
///
/// - r = annual_rate_bps / 120000; EMI = round(P·r·(1+r)^n / ((1+r)^n − 1)); zero rate: round(P / n);
/// - each line: interest = round(balance before × r), principal = EMI − interest;
/// - the last line's principal is the whole remaining balance (its EMI = that + its interest);
/// - instalment k falls due k months after disbursal, same day, clamped to the month's end;
/// - every rounding is half-up to the paisa.
///
/// No floating point: the EMI is one exact rational division (big integers), the interest of a
/// line an exact `Int64` division. See Docs/loans.md for why the result is exact.
public struct AmortizationSchedule: Sendable, Equatable {
    /// ₹1 crore, the largest checkout (`CheckoutRequest.maxAmountPaise`). Keeps balance × bps
    /// (≤ 10⁹ · 10⁴) far inside `Int64`.
    public static let maxPrincipalPaise: Int64 = CheckoutRequest.maxAmountPaise
    public static let maxTenureMonths = 120
    /// 100 % a year.
    public static let maxAnnualRateBps = 10_000

    /// 12 months × 10,000 bps: r = bps / monthlyRateDenominator.
    static let monthlyRateDenominator: Int64 = 120_000

    /// The regular instalment (every line's EMI but possibly the last).
    public private(set) var emiPaise: Int64
    public private(set) var lines: [Instalment]

    public var principalPaise: Int64 { lines.reduce(0) { $0 + $1.principalPaise } }
    public var totalInterestPaise: Int64 { lines.reduce(0) { $0 + $1.interestPaise } }
    public var tenureMonths: Int { lines.count }

    /// A schedule from stored lines: checked against every invariant, so that a corrupt
    /// journal event is refused rather than shown.
    public init(emiPaise: Int64, lines: [Instalment]) throws(ScheduleError) {
        self.emiPaise = emiPaise
        self.lines = lines
        try checkInvariants()
    }

    private init(unchecked emiPaise: Int64, lines: [Instalment]) {
        self.emiPaise = emiPaise
        self.lines = lines
    }

    public static func make(
        principalPaise p: Int64, annualRateBps bps: Int, tenureMonths n: Int, disbursedOn: CalendarDate
    ) throws(ScheduleError) -> AmortizationSchedule {
        guard p >= 1, p <= maxPrincipalPaise else { throw .principalOutOfRange(p) }
        guard n >= 1, n <= maxTenureMonths else { throw .tenureOutOfRange(n) }
        guard bps >= 0, bps <= maxAnnualRateBps else { throw .rateOutOfRange(bps) }

        let emi = Self.emi(principalPaise: p, annualRateBps: bps, tenureMonths: n)
        var lines: [Instalment] = []
        lines.reserveCapacity(n)
        var balance = p
        for k in 1...n {
            let interest = Self.interest(onBalance: balance, annualRateBps: bps)
            // The last line clears whatever rounding left; the others pay EMI − interest.
            let principal = k == n ? balance : emi - interest
            // interest ≤ EMI on every line: the balance never grows (principal ≥ 0) so
            // balance·r ≤ P·r < P·r·(1+r)^n/((1+r)^n − 1), and half-up rounding keeps the order.
            precondition(principal >= 0, "principal of a line below zero: interest above the EMI")
            guard principal <= balance else { throw .roundingOverdrawsBalance(instalment: k) }
            balance -= principal
            lines.append(
                Instalment(
                    n: k, dueDate: disbursedOn.adding(months: k), emiPaise: principal + interest,
                    principalPaise: principal, interestPaise: interest, balancePaise: balance))
        }
        let schedule = AmortizationSchedule(unchecked: emi, lines: lines)
        // By construction; stated so that a change to the loop above cannot break it quietly.
        precondition(schedule.principalPaise == p, "principal of the lines does not sum to the loan")
        precondition(balance == 0, "schedule does not end at a zero balance")
        return schedule
    }

    /// round(P·r·(1+r)^n / ((1+r)^n − 1)) with r = bps/120000, in exact integers:
    /// with a = 120000 + bps and b = 120000, (1+r)^n = aⁿ/bⁿ and the EMI is
    /// P·bps·aⁿ / (b·(aⁿ − bⁿ)), one division of naturals rounded half up.
    static func emi(principalPaise p: Int64, annualRateBps bps: Int, tenureMonths n: Int) -> Int64 {
        if bps == 0 {
            // round(P / n) half up = ⌊(2P + n) / 2n⌋.
            return (2 * p + Int64(n)) / (2 * Int64(n))
        }
        let b = BigUInt(UInt64(monthlyRateDenominator))
        let a = BigUInt(UInt64(monthlyRateDenominator) + UInt64(bps))
        let an = a.power(n)
        let numerator = BigUInt(UInt64(p)) * BigUInt(UInt64(bps)) * an
        let denominator = b * (an - b.power(n))
        return numerator.dividedRoundingHalfUp(by: denominator)
    }

    /// round(balance × bps / 120000) half up = ⌊(balance·bps + 60000) / 120000⌋.
    static func interest(onBalance balance: Int64, annualRateBps bps: Int) -> Int64 {
        let (product, overflow) = balance.multipliedReportingOverflow(by: Int64(bps))
        precondition(!overflow, "balance × rate overflows Int64; principal bound not enforced")
        return (product + monthlyRateDenominator / 2) / monthlyRateDenominator
    }

    /// Every invariant a schedule must keep, whether made here or read back from storage.
    public func checkInvariants() throws(ScheduleError) {
        guard !lines.isEmpty, lines.count <= Self.maxTenureMonths else {
            throw .brokenInvariant("it has \(lines.count) lines, not 1...\(Self.maxTenureMonths)")
        }
        guard emiPaise >= 0 else { throw .brokenInvariant("EMI below zero") }
        var balance: Int64 = 0
        for line in lines {
            let (sum, overflow) = balance.addingReportingOverflow(line.principalPaise)
            guard !overflow, line.principalPaise >= 0 else {
                throw .brokenInvariant("line \(line.n) has an impossible principal")
            }
            balance = sum
        }
        guard balance >= 1, balance <= Self.maxPrincipalPaise else {
            throw .brokenInvariant("its principal \(balance) is out of range")
        }
        var previousDue: CalendarDate?
        for (i, line) in lines.enumerated() {
            let why = "line \(line.n)"
            guard line.n == i + 1 else { throw .brokenInvariant("\(why) is numbered out of order") }
            guard line.interestPaise >= 0, line.paidPaise >= 0 else {
                throw .brokenInvariant("\(why) has a negative amount")
            }
            guard line.emiPaise == line.principalPaise + line.interestPaise else {
                throw .brokenInvariant("\(why): EMI is not principal + interest")
            }
            guard i == lines.count - 1 || line.emiPaise == emiPaise else {
                throw .brokenInvariant("\(why): EMI differs from the schedule's EMI before the last line")
            }
            balance -= line.principalPaise
            guard line.balancePaise == balance, balance >= 0 else {
                throw .brokenInvariant("\(why): balance is not the principal still owed")
            }
            if let previousDue, line.dueDate <= previousDue {
                throw .brokenInvariant("\(why) falls due before the line above it")
            }
            previousDue = line.dueDate
        }
        guard balance == 0 else { throw .brokenInvariant("the last balance is \(balance), not 0") }
    }
}

extension AmortizationSchedule: Codable {
    enum CodingKeys: String, CodingKey {
        case emiPaise = "emi_paise"
        case lines
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let emi = try c.decode(Int64.self, forKey: .emiPaise)
        let lines = try c.decode([Instalment].self, forKey: .lines)
        do {
            try self.init(emiPaise: emi, lines: lines)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: c.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(emiPaise, forKey: .emiPaise)
        try c.encode(lines, forKey: .lines)
    }
}
