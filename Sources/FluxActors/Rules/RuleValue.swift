import Foundation

/// A value while an expression runs. `fault` is a runtime problem (a missing field, a type that
/// does not fit, an overflow): it travels up the expression and makes the condition fail with
/// its reason, never a crash.
enum RuleValue: Sendable {
    case integer(Int64)
    case decimal(Double)
    case string(String)
    case boolean(Bool)
    case list([RuleValue])
    case fault(RuleFault)

    var typeName: String {
        switch self {
        case .integer, .decimal: "number"
        case .string: "string"
        case .boolean: "boolean"
        case .list: "list"
        case .fault: "error"
        }
    }

    /// The value a field of the application holds. `null` counts as missing.
    init(field json: JSONValue, missing: RuleFault, path: String) {
        switch json {
        case .null: self = .fault(missing)
        case .bool(let b): self = .boolean(b)
        case .int(let i): self = .integer(i)
        case .double(let d): self = .decimal(d)
        case .string(let s): self = .string(s)
        case .array(let elements):
            var values: [RuleValue] = []
            values.reserveCapacity(elements.count)
            for element in elements {
                switch element {
                case .bool(let b): values.append(.boolean(b))
                case .int(let i): values.append(.integer(i))
                case .double(let d): values.append(.decimal(d))
                case .string(let s): values.append(.string(s))
                case .null, .array, .object:
                    self = .fault(RuleFault("\(path) is a list of something other than plain values"))
                    return
                }
            }
            self = .list(values)
        case .object: self = .fault(RuleFault("\(path) is an object, not a value"))
        }
    }

    /// A dial's value, or nil for a JSON value a dial may not hold.
    init?(dial json: JSONValue) {
        switch json {
        case .bool(let b): self = .boolean(b)
        case .int(let i): self = .integer(i)
        case .double(let d) where d.isFinite: self = .decimal(d)
        case .string(let s): self = .string(s)
        case .array(let elements):
            var values: [RuleValue] = []
            for element in elements {
                guard let v = RuleValue(dial: element) else { return nil }
                if case .list = v { return nil }
                values.append(v)
            }
            self = .list(values)
        default: return nil
        }
    }

    var staticType: RuleType {
        switch self {
        case .integer: .integer
        case .decimal: .decimal
        case .string: .string
        case .boolean: .boolean
        case .list: .list
        case .fault: .any
        }
    }
}

/// Why an expression could not produce a value. A class so that a `RuleValue` stays two words
/// and the common faults (a missing field) are made once at compile time and shared.
/// Immutable: `Sendable` without locks.
final class RuleFault: Error, Sendable {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// What the compiler knows of an expression's type. `any` is a field of the application whose
/// type only the request can tell.
enum RuleType: Sendable, Equatable {
    case integer, decimal, string, boolean, list, any

    var isNumeric: Bool { self == .integer || self == .decimal }
    var maybeNumeric: Bool { isNumeric || self == .any }

    var name: String {
        switch self {
        case .integer, .decimal: "number"
        case .string: "string"
        case .boolean: "boolean"
        case .list: "list"
        case .any: "value"
        }
    }

    /// Whether values of the two types can ever be compared with `==`.
    func comparable(with other: RuleType) -> Bool {
        if self == .any || other == .any { return true }
        if isNumeric && other.isNumeric { return true }
        return self == other
    }
}

/// A calendar day in UTC, computed without Foundation's `Calendar` (it is called once per
/// evaluation on the hot path).
struct CivilDay: Sendable, Equatable {
    var year: Int
    var month: Int
    var day: Int

    init(year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    /// The UTC date of an instant (Howard Hinnant's days-to-civil algorithm).
    init(_ date: Date) {
        // Clamped so that no instant (not even an infinite one) can trap the conversion to Int.
        let t = date.timeIntervalSince1970 / 86_400
        let days = t.isFinite ? Int(min(max(t, -1e8), 1e8).rounded(.down)) : 0
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = doy - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    }

    /// Parses `YYYY-MM-DD` (a real date, year 1900 to 9999) without allocating.
    init?(parsing text: String) {
        guard text.utf8.count == 10 else { return nil }
        var copy = text
        // `withUTF8` reads a small (inline) string in place; no allocation for 10 bytes. The
        // date is packed as yyyymmdd; -1 when the text is not of that shape.
        let packed: Int = copy.withUTF8 { u in
            guard u[4] == 0x2D, u[7] == 0x2D else { return -1 }
            var value = 0
            var bad: UInt8 = 0
            for i in 0..<10 where i != 4 && i != 7 {
                let d = u[i] &- 0x30
                bad |= d > 9 ? 1 : 0
                value = value &* 10 &+ Int(d)
            }
            return bad == 0 ? value : -1
        }
        guard packed >= 0 else { return nil }
        let year = packed / 10_000
        let month = packed / 100 % 100
        let day = packed % 100
        guard year >= 1900, year <= 9999, month >= 1, month <= 12, day >= 1,
            day <= CalendarDate.daysIn(year: year, month: month)
        else { return nil }
        self.init(year: year, month: month, day: day)
    }

    /// Whole years from `self` (a birth date) to `today`.
    func years(until today: CivilDay) -> Int {
        var years = today.year - year
        if (today.month, today.day) < (month, day) { years -= 1 }
        return years
    }
}
