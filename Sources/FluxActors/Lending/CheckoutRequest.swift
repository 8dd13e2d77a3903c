import Foundation

/// A field of a request that is missing, of the wrong type or out of range.
/// Maps to `422 invalid_field` with `field` naming its path.
public struct InvalidField: Error, Sendable, Equatable {
    public var field: String
    public var message: String
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }
}

/// The store's checkout, validated. `raw` is the request body as sent (the rules and the
/// lender templates read fields from it by path); the typed fields are the ones Flux itself
/// relies on.
public struct CheckoutRequest: Sendable, Equatable {
    public enum Mode: String, Sendable, Codable { case waterfall, offers }

    public var merchantID: String
    public var storeID: String?
    public var customerID: String
    public var customerName: String
    public var phone: String
    public var pan: String
    public var dateOfBirth: String
    public var bureauScore: Int
    public var amountPaise: Int64
    public var tenureMonths: Int
    public var mode: Mode
    // The optional fields CONTRACT §2 validates, kept as read so that the rules engine takes
    // them from here instead of walking `raw` on every decision. nil when absent or null.
    public var email: String?
    public var pincode: String?
    public var monthlyIncomePaise: Int64?
    public var productSKU: String?
    public var productCategory: String?
    public var productPricePaise: Int64?
    /// The whole body as sent, validated. Rules and templates read `customer.…`, `loan.…` from it.
    public var raw: JSONValue

    /// Upper bound on a single checkout loan: ₹1 crore. Anything larger is a typo or an attack.
    public static let maxAmountPaise: Int64 = 1_000_000_000
    public static let maxTenureMonths = 120
    static let maxStringLength = 256

    public init(json: JSONValue) throws(InvalidField) {
        guard case .object = json else { throw InvalidField(field: "", message: "body must be a JSON object") }
        let v = FieldReader(root: json)
        merchantID = try v.string("merchant_id", pattern: .identifier)
        storeID = try v.optionalString("store_id", pattern: .identifier)
        _ = try v.object("customer")
        customerID = try v.string("customer.id", pattern: .identifier)
        customerName = try v.string("customer.name")
        phone = try v.string("customer.phone", pattern: .phone)
        email = try v.optionalString("customer.email", pattern: .email)
        pan = try v.string("customer.pan", pattern: .pan)
        dateOfBirth = try v.string("customer.date_of_birth", pattern: .date)
        pincode = try v.optionalString("customer.pincode", pattern: .pincode)
        monthlyIncomePaise = try v.optionalInt("customer.monthly_income_paise", range: 0...Int64.max / 2)
        bureauScore = Int(try v.int("customer.bureau_score", range: 300...900))
        if json["product"] != nil {
            _ = try v.object("product")
            productSKU = try v.optionalString("product.sku")
            productCategory = try v.optionalString("product.category")
            productPricePaise = try v.optionalInt("product.price_paise", range: 1...Self.maxAmountPaise)
        }
        _ = try v.object("loan")
        amountPaise = try v.int("loan.amount_paise", range: 1...Self.maxAmountPaise)
        tenureMonths = Int(try v.int("loan.tenure_months", range: 1...Int64(Self.maxTenureMonths)))
        if let m = try v.optionalString("mode") {
            guard let mode = Mode(rawValue: m) else {
                throw InvalidField(field: "mode", message: "mode must be \"waterfall\" or \"offers\"")
            }
            self.mode = mode
        } else {
            mode = .waterfall
        }
        raw = json
    }

    /// Customer's age in whole years on `today` (UTC), from `date_of_birth`.
    public func age(on today: Date) -> Int? { CalendarDate(dateOfBirth)?.age(on: today) }
}

/// Reads typed fields by dotted path, naming the path in its errors.
struct FieldReader {
    enum Pattern {
        case any, identifier, phone, email, pan, date, pincode

        func matches(_ s: String) -> Bool {
            let u = Array(s.utf8)
            switch self {
            case .any: return true
            case .identifier:
                return u.allSatisfy { c in
                    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D
                        || c == 0x5F || c == 0x2E || c == 0x3A
                }
            case .phone:
                let digits = u.first == 0x2B ? u.dropFirst() : u[...]
                return digits.count >= 8 && digits.count <= 15 && digits.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
            case .email:
                guard let at = s.firstIndex(of: "@") else { return false }
                return at != s.startIndex && s[s.index(after: at)...].contains(".") && !s.contains(" ")
            case .pan:
                // AAAAA9999A: five letters, four digits, one letter.
                guard u.count == 10 else { return false }
                let isLetter = { (c: UInt8) in c >= 0x41 && c <= 0x5A }
                let isDigit = { (c: UInt8) in c >= 0x30 && c <= 0x39 }
                return u[0..<5].allSatisfy(isLetter) && u[5..<9].allSatisfy(isDigit) && isLetter(u[9])
            case .date: return CalendarDate(s) != nil
            case .pincode: return u.count == 6 && u.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && u[0] != 0x30
            }
        }

        var expectation: String {
            switch self {
            case .any: "a string"
            case .identifier: "an identifier of letters, digits, '-', '_', '.', ':'"
            case .phone: "a phone number of 8 to 15 digits, optionally after '+'"
            case .email: "an email address"
            case .pan: "a PAN of the form AAAAA9999A"
            case .date: "a date YYYY-MM-DD"
            case .pincode: "a six-digit PIN code"
            }
        }
    }

    let root: JSONValue

    func lookup(_ path: String) -> JSONValue? {
        let v = root.value(atPath: path)
        if case .null = v { return nil }
        return v
    }

    func object(_ path: String) throws(InvalidField) -> [String: JSONValue] {
        guard let v = lookup(path) else { throw InvalidField(field: path, message: "\(path) is required") }
        guard case .object(let o) = v else { throw InvalidField(field: path, message: "\(path) must be an object") }
        return o
    }

    func string(_ path: String, pattern: Pattern = .any) throws(InvalidField) -> String {
        guard let s = try optionalString(path, pattern: pattern) else {
            throw InvalidField(field: path, message: "\(path) is required")
        }
        return s
    }

    func optionalString(_ path: String, pattern: Pattern = .any) throws(InvalidField) -> String? {
        guard let v = lookup(path) else { return nil }
        guard case .string(let s) = v else {
            throw InvalidField(field: path, message: "\(path) must be a string, not \(v.typeName)")
        }
        guard !s.isEmpty else { throw InvalidField(field: path, message: "\(path) must not be empty") }
        guard s.utf8.count <= CheckoutRequest.maxStringLength else {
            throw InvalidField(field: path, message: "\(path) is longer than \(CheckoutRequest.maxStringLength) bytes")
        }
        guard pattern.matches(s) else {
            throw InvalidField(field: path, message: "\(path) must be \(pattern.expectation)")
        }
        return s
    }

    func int(_ path: String, range: ClosedRange<Int64>) throws(InvalidField) -> Int64 {
        guard let i = try optionalInt(path, range: range) else {
            throw InvalidField(field: path, message: "\(path) is required")
        }
        return i
    }

    func optionalInt(_ path: String, range: ClosedRange<Int64>) throws(InvalidField) -> Int64? {
        guard let v = lookup(path) else { return nil }
        guard case .int(let i) = v else {
            throw InvalidField(field: path, message: "\(path) must be an integer, not \(v.typeName)")
        }
        guard range.contains(i) else {
            throw InvalidField(
                field: path, message: "\(path) must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return i
    }
}

/// A calendar date (no time, no zone), parsed from `YYYY-MM-DD`.
public struct CalendarDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var year: Int
    public var month: Int
    public var day: Int

    public init?(_ text: some StringProtocol) {
        let u = Array(text.utf8)
        guard u.count == 10, u[4] == 0x2D, u[7] == 0x2D else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var n = 0
            for c in u[r] {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                n = n * 10 + Int(c - 0x30)
            }
            return n
        }
        guard let y = num(0..<4), let m = num(5..<7), let d = num(8..<10) else { return nil }
        self.init(year: y, month: m, day: d)
    }

    public init?(year: Int, month: Int, day: Int) {
        guard year >= 1900, year <= 9999, (1...12).contains(month), day >= 1,
            day <= CalendarDate.daysIn(year: year, month: month)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// The UTC calendar date of an instant.
    public init(utc date: Date) {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        let c = cal.dateComponents([.year, .month, .day], from: date)
        year = c.year!
        month = c.month!
        day = c.day!
    }

    public static func daysIn(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Whole years from this date to `today` (UTC).
    public func age(on today: Date) -> Int {
        let t = CalendarDate(utc: today)
        var years = t.year - year
        if (t.month, t.day) < (month, day) { years -= 1 }
        return years
    }

    /// The same day `months` later, clamped to the end of that month.
    public func adding(months: Int) -> CalendarDate {
        let total = year * 12 + (month - 1) + months
        let y = total / 12
        let m = total % 12 + 1
        return CalendarDate(year: y, month: m, day: min(day, CalendarDate.daysIn(year: y, month: m)))!
    }

    public var description: String {
        func pad(_ n: Int, _ w: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
    }

    public static func < (a: CalendarDate, b: CalendarDate) -> Bool {
        (a.year, a.month, a.day) < (b.year, b.month, b.day)
    }
}
