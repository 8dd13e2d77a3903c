/// Reads a lender's 2xx reply through an operation's `response` mapping. Pure. Anything the
/// mapping cannot read is an error with a reason that says which field, never a guess.
enum ReplyMapping {
    struct Unreadable: Error, Equatable {
        var reason: String
    }

    static let maxReason = 256

    /// The Flux word of the reply's decision.
    static func decision(_ m: ResponseMapping, reply: JSONValue) throws(Unreadable) -> String {
        guard let path = m.decisionPath else { throw Unreadable(reason: "no decision mapping") }
        guard let v = path.evaluate(reply), !v.isNull else {
            throw Unreadable(reason: "decision path \(path) is missing in the reply")
        }
        let word: String
        switch v {
        case .string(let s): word = s
        case .int, .double, .bool: word = JSONWriter.string(v)
        default: throw Unreadable(reason: "decision at \(path) is \(v.typeName), not a word")
        }
        guard let mapped = m.decisionMap[word] else {
            throw Unreadable(reason: "decision word '\(clip(word))' at \(path) is not in the map")
        }
        return mapped
    }

    static func text(_ v: JSONValue) -> String? {
        switch v {
        case .string(let s): return s.isEmpty ? nil : clip(s)
        case .int(let i): return String(i)
        case .null: return nil
        default: return clip(JSONWriter.string(v))
        }
    }

    static func clip(_ s: String) -> String {
        s.utf8.count <= maxReason ? s : String(decoding: Array(s.utf8.prefix(maxReason)), as: UTF8.self)
    }

    static func optionalText(_ source: ReplyValue?, _ reply: JSONValue) -> String? {
        guard let source, let v = source.evaluate(reply) else { return nil }
        return text(v)
    }

    /// The lender's reference: from the mapping when it has one (missing there is an error),
    /// else `fallback` (the lender knows the application by Flux's id).
    static func reference(_ m: ResponseMapping, _ reply: JSONValue, fallback: String?) throws(Unreadable) -> String {
        guard let source = m.lenderReference else {
            guard let fallback else { throw Unreadable(reason: "no lender_reference mapping") }
            return fallback
        }
        guard let v = source.evaluate(reply), let t = text(v) else {
            throw Unreadable(reason: "lender_reference \(source.text) is missing in the reply")
        }
        return t
    }

    static func rate(_ m: ResponseMapping, _ reply: JSONValue) throws(Unreadable) -> Int {
        guard let source = m.annualRateBps else { throw Unreadable(reason: "annual_rate_bps is not mapped") }
        guard let v = source.evaluate(reply), !v.isNull else {
            throw Unreadable(reason: "annual_rate_bps \(source.text) is missing in the reply")
        }
        let n: Int64?
        if case .string(let s) = v { n = Int64(s) } else { n = v.intValue }
        guard let n, n >= 0, n <= 100_000 else {
            throw Unreadable(reason: "annual_rate_bps \(source.text) is not a whole number of basis points (0-100000)")
        }
        return Int(n)
    }

    static func apply(_ m: ResponseMapping, reply: JSONValue, applicationID: String) -> ApplyOutcome {
        do throws(Unreadable) {
            switch try decision(m, reply: reply) {
            case "approved":
                return .approved(
                    reference: try reference(m, reply, fallback: applicationID), annualRateBps: try rate(m, reply),
                    reason: optionalText(m.reason, reply))
            case "rejected":
                return .rejected(
                    reason: optionalText(m.reason, reply) ?? "rejected by lender",
                    reference: optionalText(m.lenderReference, reply))
            default:
                return .pending(reference: optionalText(m.lenderReference, reply))
            }
        } catch {
            return .unknown(reason: "unreadable reply: \(error.reason)", timedOut: false)
        }
    }

    static func status(_ m: ResponseMapping, reply: JSONValue, knownReference: String?) -> StatusOutcome {
        do throws(Unreadable) {
            switch try decision(m, reply: reply) {
            case "approved":
                return .approved(
                    reference: try reference(m, reply, fallback: knownReference), annualRateBps: try rate(m, reply))
            case "rejected": return .rejected(reason: optionalText(m.reason, reply) ?? "rejected by lender")
            case "not_found": return .notFound
            default: return .pending
            }
        } catch {
            return .unknown(reason: "unreadable reply: \(error.reason)")
        }
    }

    static func disburse(_ m: ResponseMapping, reply: JSONValue) -> DisburseOutcome {
        do throws(Unreadable) {
            switch try decision(m, reply: reply) {
            case "disbursed": return .disbursed
            case "failed": return .failed(reason: optionalText(m.reason, reply) ?? "disbursal refused by lender")
            default: return .pending
            }
        } catch {
            return .unknown(reason: "unreadable reply: \(error.reason)")
        }
    }

    static func cancel(_ m: ResponseMapping, reply: JSONValue?) -> CancelOutcome {
        guard m.decisionPath != nil else { return .cancelled }
        guard let reply else { return .failed(reason: "unreadable reply: not JSON") }
        do throws(Unreadable) {
            switch try decision(m, reply: reply) {
            case "cancelled": return .cancelled
            default: return .failed(reason: optionalText(m.reason, reply) ?? "cancellation refused by lender")
            }
        } catch {
            return .failed(reason: "unreadable reply: \(error.reason)")
        }
    }
}
