import Foundation

/// How one lender's attempt ended, as the public view shows it (CONTRACT §2 `attempts[].outcome`).
public enum AttemptOutcome: String, Sendable, Codable, Equatable {
    case approved, rejected, error, timeout, pending
    case skippedOpenCircuit = "skipped_open_circuit"
    case skippedValidation = "skipped_validation"
    case ghostRecovered = "ghost_recovered"
}

/// What a status inquiry said, as journalled.
public enum InquiryResult: String, Sendable, Codable, Equatable {
    case approved, rejected, pending
    case notFound = "not_found"
    case unknown
}

/// The events of one application's stream (`app/<id>`). The saga's state is a fold over them,
/// so a node that reloads the stream continues exactly where the last writer stopped.
public enum ApplicationEvent: Sendable, Equatable {
    case received(Received)
    case ranked(Ranked)
    case attemptSkipped(AttemptSkipped)
    /// The intent to call `apply`; durable before the call (the ghost-loan rule).
    case attemptStarted(AttemptStarted)
    case attemptFinished(AttemptFinished)
    case statusInquired(StatusInquired)
    case approved(Approved)
    case disbursalFailed(DisbursalFailed)
    case cancelRequested(CancelRequested)
    case compensated(Compensated)
    case disbursed(Disbursed)
    case declined(Closed)
    case failed(Closed)
    case cancelled(Closed)

    public struct Received: Sendable, Equatable, Codable {
        public var applicationID: String
        public var merchantID: String
        public var customerID: String
        public var idempotencyKey: String
        /// SHA-256 of the canonical request JSON: a replay with a different body is a conflict.
        public var requestHash: String
        public var request: JSONValue
        public var at: Date
    }

    public struct Ranked: Sendable, Equatable, Codable {
        public var rulesetVersion: Int
        public var lenders: [String]
        public var scores: [Double]
        public var excluded: [ExcludedLenderReason]
    }

    public struct ExcludedLenderReason: Sendable, Equatable, Codable {
        public var lenderID: String
        public var failed: [String]
    }

    public struct AttemptSkipped: Sendable, Equatable, Codable {
        public var lenderID: String
        public var outcome: AttemptOutcome
        public var reason: String
        public var at: Date
    }

    public struct AttemptStarted: Sendable, Equatable, Codable {
        public var lenderID: String
        public var idempotencyKey: String
        public var at: Date
    }

    public struct AttemptFinished: Sendable, Equatable, Codable {
        public var lenderID: String
        public var outcome: AttemptOutcome
        public var reason: String?
        public var lenderReference: String?
        public var annualRateBps: Int?
        public var tries: Int
        public var latencyMs: Int
        /// True when the lender may have lent and a status inquiry must settle it.
        public var needsInquiry: Bool
    }

    public struct StatusInquired: Sendable, Equatable, Codable {
        public var lenderID: String
        public var result: InquiryResult
        public var reason: String?
        public var lenderReference: String?
        public var annualRateBps: Int?
        public var tries: Int
        public var latencyMs: Int
    }

    public struct Approved: Sendable, Equatable, Codable {
        public var lenderID: String
        public var lenderReference: String
        public var annualRateBps: Int
    }

    public struct DisbursalFailed: Sendable, Equatable, Codable {
        public var lenderID: String
        public var reason: String
    }

    public struct CancelRequested: Sendable, Equatable, Codable {
        public var at: Date
    }

    public struct Compensated: Sendable, Equatable, Codable {
        public var lenderID: String
        public var lenderReference: String
        /// `cancelled` at the lender, or `flagged` for operators (no `cancel` operation / it failed).
        public var result: String
        public var reason: String?
    }

    public struct Disbursed: Sendable, Equatable, Codable {
        public var lenderID: String
        public var lenderReference: String
        public var annualRateBps: Int
        public var loanID: String
        public var at: Date
    }

    public struct Closed: Sendable, Equatable, Codable {
        public var reasons: [String]
        public var at: Date
    }

    public var typeName: String {
        switch self {
        case .received: "ApplicationReceived"
        case .ranked: "LendersRanked"
        case .attemptSkipped: "LenderAttemptSkipped"
        case .attemptStarted: "LenderAttemptStarted"
        case .attemptFinished: "LenderAttemptFinished"
        case .statusInquired: "LenderStatusInquired"
        case .approved: "ApplicationApproved"
        case .disbursalFailed: "DisbursalFailed"
        case .cancelRequested: "CancelRequested"
        case .compensated: "LenderApprovalCompensated"
        case .disbursed: "ApplicationDisbursed"
        case .declined: "ApplicationDeclined"
        case .failed: "ApplicationFailed"
        case .cancelled: "ApplicationCancelled"
        }
    }

    /// True for the events after which the application is terminal.
    public var closesStream: Bool {
        switch self {
        case .disbursed, .declined, .failed, .cancelled: true
        default: false
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(Timestamp.format(date))
        }
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        // The inverse of `convertToSnakeCase` for Flux's names: `lender_id` → `lenderID` (the built-in
        // `convertFromSnakeCase` would give `lenderId`, which matches no property).
        d.keyDecodingStrategy = .custom { path in
            let parts = path.last!.stringValue.split(separator: "_", omittingEmptySubsequences: false)
            var name = String(parts.first ?? "")
            for part in parts.dropFirst() {
                name += part == "id" ? "ID" : part.prefix(1).uppercased() + part.dropFirst()
            }
            return SnakeKey(stringValue: name)
        }
        d.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let s = try c.decode(String.self)
            guard let date = Timestamp.parse(s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "bad timestamp \(s)")
            }
            return date
        }
        return d
    }()

    private struct SnakeKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The event's data as JSON text (the journal's `data` column): compact, keys sorted, `nil`
    /// fields left out — the text `encoder` writes, without its cost on the checkout path.
    public func encodedData() -> String {
        var w = JSONObjectWriter()
        switch self {
        case .received(let p):
            w.string("application_id", p.applicationID)
            w.string("at", Timestamp.format(p.at))
            w.string("customer_id", p.customerID)
            w.string("idempotency_key", p.idempotencyKey)
            w.string("merchant_id", p.merchantID)
            w.json("request", p.request)
            w.string("request_hash", p.requestHash)
        case .ranked(let p):
            w.objects("excluded", p.excluded) { o, e in
                o.strings("failed", e.failed)
                o.string("lender_id", e.lenderID)
            }
            w.strings("lenders", p.lenders)
            w.int("ruleset_version", p.rulesetVersion)
            w.doubles("scores", p.scores)
        case .attemptSkipped(let p):
            w.string("at", Timestamp.format(p.at))
            w.string("lender_id", p.lenderID)
            w.string("outcome", p.outcome.rawValue)
            w.string("reason", p.reason)
        case .attemptStarted(let p):
            w.string("at", Timestamp.format(p.at))
            w.string("idempotency_key", p.idempotencyKey)
            w.string("lender_id", p.lenderID)
        case .attemptFinished(let p):
            w.int("annual_rate_bps", p.annualRateBps)
            w.int("latency_ms", p.latencyMs)
            w.string("lender_id", p.lenderID)
            w.string("lender_reference", p.lenderReference)
            w.bool("needs_inquiry", p.needsInquiry)
            w.string("outcome", p.outcome.rawValue)
            w.string("reason", p.reason)
            w.int("tries", p.tries)
        case .statusInquired(let p):
            w.int("annual_rate_bps", p.annualRateBps)
            w.int("latency_ms", p.latencyMs)
            w.string("lender_id", p.lenderID)
            w.string("lender_reference", p.lenderReference)
            w.string("reason", p.reason)
            w.string("result", p.result.rawValue)
            w.int("tries", p.tries)
        case .approved(let p):
            w.int("annual_rate_bps", p.annualRateBps)
            w.string("lender_id", p.lenderID)
            w.string("lender_reference", p.lenderReference)
        case .disbursalFailed(let p):
            w.string("lender_id", p.lenderID)
            w.string("reason", p.reason)
        case .cancelRequested(let p):
            w.string("at", Timestamp.format(p.at))
        case .compensated(let p):
            w.string("lender_id", p.lenderID)
            w.string("lender_reference", p.lenderReference)
            w.string("reason", p.reason)
            w.string("result", p.result)
        case .disbursed(let p):
            w.int("annual_rate_bps", p.annualRateBps)
            w.string("at", Timestamp.format(p.at))
            w.string("lender_id", p.lenderID)
            w.string("lender_reference", p.lenderReference)
            w.string("loan_id", p.loanID)
        case .declined(let p), .failed(let p), .cancelled(let p):
            w.string("at", Timestamp.format(p.at))
            w.strings("reasons", p.reasons)
        }
        return w.finish()
    }

    public struct DecodeError: Error, Sendable, Equatable {
        public var message: String
    }

    public static func decode(type: String, data: String) throws(DecodeError) -> ApplicationEvent {
        func dec<T: Decodable>(_: T.Type) throws(DecodeError) -> T {
            do { return try decoder.decode(T.self, from: Data(data.utf8)) } catch {
                throw DecodeError(message: "cannot decode \(type): \(error)")
            }
        }
        switch type {
        case "ApplicationReceived": return .received(try dec(Received.self))
        case "LendersRanked": return .ranked(try dec(Ranked.self))
        case "LenderAttemptSkipped": return .attemptSkipped(try dec(AttemptSkipped.self))
        case "LenderAttemptStarted": return .attemptStarted(try dec(AttemptStarted.self))
        case "LenderAttemptFinished": return .attemptFinished(try dec(AttemptFinished.self))
        case "LenderStatusInquired": return .statusInquired(try dec(StatusInquired.self))
        case "ApplicationApproved": return .approved(try dec(Approved.self))
        case "DisbursalFailed": return .disbursalFailed(try dec(DisbursalFailed.self))
        case "CancelRequested": return .cancelRequested(try dec(CancelRequested.self))
        case "LenderApprovalCompensated": return .compensated(try dec(Compensated.self))
        case "ApplicationDisbursed": return .disbursed(try dec(Disbursed.self))
        case "ApplicationDeclined": return .declined(try dec(Closed.self))
        case "ApplicationFailed": return .failed(try dec(Closed.self))
        case "ApplicationCancelled": return .cancelled(try dec(Closed.self))
        default: throw DecodeError(message: "unknown event type \(type)")
        }
    }
}

/// RFC 3339 UTC timestamps with millisecond precision, as the public API shows them.
public enum Timestamp {
    public static func format(_ date: Date) -> String {
        // Date keeps a Double of seconds since 2001, so an instant of whole milliseconds can come back
        // a few hundred nanoseconds early (x.771 as x.77099…): 10 µs of slack before truncating.
        let ms = Int64((date.timeIntervalSince1970 * 1000 + 0.01).rounded(.down))
        let secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let milli = ms - secs * 1000
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let rem = secs - days * 86400
        let (y, m, d) = civil(fromDays: days)
        func p(_ n: Int64, _ w: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return
            "\(p(y, 4))-\(p(m, 2))-\(p(d, 2))T\(p(rem / 3600, 2)):\(p(rem % 3600 / 60, 2)):\(p(rem % 60, 2)).\(p(milli, 3))Z"
    }

    public static func parse(_ s: String) -> Date? {
        let u = Array(s.utf8)
        guard u.count >= 20, u[4] == 0x2D, u[7] == 0x2D, u[10] == 0x54 || u[10] == 0x74, u[13] == 0x3A,
            u[16] == 0x3A
        else { return nil }
        func num(_ r: Range<Int>) -> Int64? {
            var n: Int64 = 0
            for c in u[r] {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                n = n * 10 + Int64(c - 0x30)
            }
            return n
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13),
            let mi = num(14..<16), let se = num(17..<19)
        else { return nil }
        guard (1...12).contains(mo), d >= 1, d <= CalendarDate.daysIn(year: Int(y), month: Int(mo)), h <= 23,
            mi <= 59, se <= 59
        else { return nil }
        var i = 19
        var nanos: Int64 = 0
        if i < u.count, u[i] == 0x2E {
            i += 1
            var digits = 0
            while i < u.count, u[i] >= 0x30, u[i] <= 0x39 {
                if digits < 9 { nanos = nanos * 10 + Int64(u[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in min(digits, 9)..<9 { nanos *= 10 }
        }
        guard i < u.count else { return nil }
        var offset: Int64 = 0
        if u[i] == 0x5A || u[i] == 0x7A {
            guard i == u.count - 1 else { return nil }
        } else if u[i] == 0x2B || u[i] == 0x2D, u.count == i + 6, let oh = num(i + 1..<i + 3),
            let om = num(i + 4..<i + 6)
        {
            guard oh <= 23, om <= 59 else { return nil }
            offset = (oh * 3600 + om * 60) * (u[i] == 0x2B ? 1 : -1)
        } else {
            return nil
        }
        let days = daysFromCivil(y, mo, d)
        let secs = days * 86400 + h * 3600 + mi * 60 + se - offset
        // Whole milliseconds first, divided once: a millisecond instant parses to exactly the Date
        // that `Double(ms) / 1000` gives, so format ∘ parse is the identity.
        let ms = secs * 1000 + nanos / 1_000_000
        return Date(timeIntervalSince1970: (Double(ms) + Double(nanos % 1_000_000) / 1e6) / 1000)
    }

    // Howard Hinnant's civil-from-days algorithms.
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}
