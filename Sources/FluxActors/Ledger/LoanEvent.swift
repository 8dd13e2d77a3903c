import Foundation

/// The first event of a loan's stream (`loan/<id>`): the lender disbursed and Flux booked the
/// loan with its schedule. The schedule is stored, not recomputed on load, so a loan keeps the
/// schedule it was opened with even if the arithmetic code changes later.
public struct LoanOpened: Sendable, Equatable {
    public var loanID: String
    public var applicationID: String
    public var lenderID: String
    public var lenderReference: String
    public var customerID: String
    public var merchantID: String
    public var principalPaise: Int64
    public var annualRateBps: Int
    public var tenureMonths: Int
    /// UTC; kept to the whole millisecond (what the journal's JSON holds).
    public var disbursedAt: Date
    public var schedule: AmortizationSchedule

    /// An opening whose schedule is given (e.g. read back). It must belong to this loan.
    public init(
        loanID: String, applicationID: String, lenderID: String, lenderReference: String,
        customerID: String,
        merchantID: String, principalPaise: Int64, annualRateBps: Int, tenureMonths: Int,
        disbursedAt: Date,
        schedule: AmortizationSchedule
    ) throws(ScheduleError) {
        guard schedule.principalPaise == principalPaise else {
            throw .brokenInvariant(
                "schedule principal \(schedule.principalPaise) ≠ loan principal \(principalPaise)")
        }
        guard schedule.tenureMonths == tenureMonths else {
            throw .brokenInvariant(
                "schedule has \(schedule.tenureMonths) lines for a \(tenureMonths)-month loan")
        }
        guard (0...AmortizationSchedule.maxAnnualRateBps).contains(annualRateBps) else {
            throw .rateOutOfRange(annualRateBps)
        }
        self.loanID = loanID
        self.applicationID = applicationID
        self.lenderID = lenderID
        self.lenderReference = lenderReference
        self.customerID = customerID
        self.merchantID = merchantID
        self.principalPaise = principalPaise
        self.annualRateBps = annualRateBps
        self.tenureMonths = tenureMonths
        self.disbursedAt = LoanTimestamp.wholeMilliseconds(disbursedAt)
        self.schedule = schedule
    }

    /// Opens a loan: the schedule is made from the terms, due dates from the UTC date of
    /// `disbursedAt`, and the loan id from the application id (`LoanAccountState.loanID`).
    public init(
        applicationID: String, lenderID: String, lenderReference: String, customerID: String,
        merchantID: String,
        principalPaise: Int64, annualRateBps: Int, tenureMonths: Int, disbursedAt: Date
    ) throws(ScheduleError) {
        let schedule = try AmortizationSchedule.make(
            principalPaise: principalPaise, annualRateBps: annualRateBps, tenureMonths: tenureMonths,
            disbursedOn: CalendarDate(utc: disbursedAt))
        try self.init(
            loanID: LoanAccountState.loanID(forApplication: applicationID), applicationID: applicationID,
            lenderID: lenderID, lenderReference: lenderReference, customerID: customerID,
            merchantID: merchantID,
            principalPaise: principalPaise, annualRateBps: annualRateBps, tenureMonths: tenureMonths,
            disbursedAt: disbursedAt, schedule: schedule)
    }
}

extension LoanOpened: Codable {
    enum CodingKeys: String, CodingKey {
        case loanID = "loan_id"
        case applicationID = "application_id"
        case lenderID = "lender_id"
        case lenderReference = "lender_reference"
        case customerID = "customer_id"
        case merchantID = "merchant_id"
        case principalPaise = "principal_paise"
        case annualRateBps = "annual_rate_bps"
        case tenureMonths = "tenure_months"
        case disbursedAt = "disbursed_at"
        case schedule
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let at = try c.decode(String.self, forKey: .disbursedAt)
        guard let disbursedAt = LoanTimestamp.parse(at) else {
            throw DecodingError.dataCorruptedError(
                forKey: .disbursedAt, in: c, debugDescription: "disbursed_at must be an RFC 3339 UTC time")
        }
        do {
            try self.init(
                loanID: try c.decode(String.self, forKey: .loanID),
                applicationID: try c.decode(String.self, forKey: .applicationID),
                lenderID: try c.decode(String.self, forKey: .lenderID),
                lenderReference: try c.decode(String.self, forKey: .lenderReference),
                customerID: try c.decode(String.self, forKey: .customerID),
                merchantID: try c.decode(String.self, forKey: .merchantID),
                principalPaise: try c.decode(Int64.self, forKey: .principalPaise),
                annualRateBps: try c.decode(Int.self, forKey: .annualRateBps),
                tenureMonths: try c.decode(Int.self, forKey: .tenureMonths),
                disbursedAt: disbursedAt,
                schedule: try c.decode(AmortizationSchedule.self, forKey: .schedule))
        } catch let error as ScheduleError {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: c.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(loanID, forKey: .loanID)
        try c.encode(applicationID, forKey: .applicationID)
        try c.encode(lenderID, forKey: .lenderID)
        try c.encode(lenderReference, forKey: .lenderReference)
        try c.encode(customerID, forKey: .customerID)
        try c.encode(merchantID, forKey: .merchantID)
        try c.encode(principalPaise, forKey: .principalPaise)
        try c.encode(annualRateBps, forKey: .annualRateBps)
        try c.encode(tenureMonths, forKey: .tenureMonths)
        try c.encode(LoanTimestamp.format(disbursedAt), forKey: .disbursedAt)
        try c.encode(schedule, forKey: .schedule)
    }
}

/// Why a stored loan event cannot be read.
public struct LoanEventDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var type: String
    public var message: String
    public var description: String { "cannot read loan event \(type): \(message)" }
}

/// Everything that happens to a loan, oldest first in its journal stream `loan/<id>`.
/// Payments, foreclosure, KFS and No-Dues add cases here later.
public enum LoanEvent: Sendable, Equatable {
    case opened(LoanOpened)

    /// The journal's `type` column: stable forever (renaming one orphans stored events).
    public var typeName: String {
        switch self {
        case .opened: "LoanOpened"
        }
    }

    /// Whether this event ends the loan's live life (the journal's `closesStream`).
    public var closesStream: Bool {
        switch self {
        case .opened: false
        }
    }

    /// The journal's `data` column: the event's payload as a compact JSON object, keys sorted
    /// (the text `JSONEncoder` with `.sortedKeys` wrote, without its cost: a 24-line schedule is
    /// written on every disbursal).
    public func encodedData() -> String {
        switch self {
        case .opened(let e):
            var w = JSONObjectWriter(capacity: 512 + 160 * e.schedule.lines.count)
            w.int("annual_rate_bps", e.annualRateBps)
            w.string("application_id", e.applicationID)
            w.string("customer_id", e.customerID)
            w.string("disbursed_at", LoanTimestamp.format(e.disbursedAt))
            w.string("lender_id", e.lenderID)
            w.string("lender_reference", e.lenderReference)
            w.string("loan_id", e.loanID)
            w.string("merchant_id", e.merchantID)
            w.int("principal_paise", e.principalPaise)
            w.object("schedule") { s in
                s.int("emi_paise", e.schedule.emiPaise)
                s.objects("lines", e.schedule.lines) { l, line in
                    l.int("balance_paise", line.balancePaise)
                    l.string("due_date", line.dueDate.description)
                    l.int("emi_paise", line.emiPaise)
                    l.int("interest_paise", line.interestPaise)
                    l.int("n", line.n)
                    l.int("paid_paise", line.paidPaise)
                    l.int("principal_paise", line.principalPaise)
                }
            }
            w.int("tenure_months", e.tenureMonths)
            return w.finish()
        }
    }

    /// Reads an event back from the journal's `type` and `data` columns.
    public static func decode(type: String, data: String) throws(LoanEventDecodingError) -> LoanEvent {
        let bytes = Data(data.utf8)
        do {
            switch type {
            case "LoanOpened": return .opened(try JSONDecoder().decode(LoanOpened.self, from: bytes))
            default: throw LoanEventDecodingError(type: type, message: "unknown event type")
            }
        } catch let error as LoanEventDecodingError {
            throw error
        } catch let DecodingError.dataCorrupted(context) {
            throw LoanEventDecodingError(type: type, message: Self.describe(context))
        } catch let DecodingError.keyNotFound(key, context) {
            throw LoanEventDecodingError(
                type: type, message: "\(Self.path(context.codingPath + [key])) is missing")
        } catch let DecodingError.typeMismatch(_, context) {
            throw LoanEventDecodingError(type: type, message: "\(Self.describe(context))")
        } catch let DecodingError.valueNotFound(_, context) {
            throw LoanEventDecodingError(type: type, message: "\(Self.describe(context))")
        } catch {
            throw LoanEventDecodingError(type: type, message: "data is not JSON of this event")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    private static func describe(_ context: DecodingError.Context) -> String {
        let at = path(context.codingPath)
        return at.isEmpty ? context.debugDescription : "\(at): \(context.debugDescription)"
    }
}

/// RFC 3339 UTC times to the millisecond (`2025-01-31T10:15:30.123Z`), in integer arithmetic so
/// that formatting and parsing round-trip to the same `Date`.
enum LoanTimestamp {
    static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    static func wholeMilliseconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds(date)) / 1000)
    }

    static func format(_ date: Date) -> String {
        let ms = milliseconds(date)
        let days = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let msOfDay = ms - days * 86_400_000
        let (y, m, d) = civil(fromDays: days)
        func pad(_ v: Int64, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let h = msOfDay / 3_600_000
        let mi = msOfDay / 60_000 % 60
        let s = msOfDay / 1000 % 60
        let frac = msOfDay % 1000
        return
            "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(h, 2)):\(pad(mi, 2)):\(pad(s, 2)).\(pad(frac, 3))Z"
    }

    /// Accepts `YYYY-MM-DDTHH:MM:SS[.fff…]Z` (fraction of 0 to 9 digits, read to the millisecond).
    static func parse(_ text: String) -> Date? {
        let u = Array(text.utf8)
        guard u.count >= 20, u.count <= 30, u.last == UInt8(ascii: "Z"), u[4] == 0x2D, u[7] == 0x2D,
            u[10] == UInt8(ascii: "T"), u[13] == 0x3A, u[16] == 0x3A
        else { return nil }
        func num(_ r: Range<Int>) -> Int64? {
            var n: Int64 = 0
            for c in u[r] {
                guard c >= 0x30, c <= 0x39 else { return nil }
                n = n * 10 + Int64(c - 0x30)
            }
            return n
        }
        guard let date = CalendarDate(String(decoding: u[0..<10], as: UTF8.self)),
            let h = num(11..<13), let mi = num(14..<16), let s = num(17..<19), h < 24, mi < 60, s < 60
        else { return nil }
        var ms: Int64 = 0
        if u.count > 20 {
            let fraction = u[20..<(u.count - 1)]
            guard u[19] == UInt8(ascii: "."), !fraction.isEmpty,
                fraction.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
            else { return nil }
            for i in 0..<3 {
                ms = ms * 10 + (i < fraction.count ? Int64(fraction[20 + i] - 0x30) : 0)
            }
        }
        let days = Self.days(fromCivil: Int64(date.year), Int64(date.month), Int64(date.day))
        let total = days * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000 + ms
        return Date(timeIntervalSince1970: Double(total) / 1000)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The inverse of `days(fromCivil:)` (H. Hinnant's `civil_from_days`).
    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
    }
}
