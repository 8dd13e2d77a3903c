import Foundation

extension WaterfallSaga {
    /// The public application view (CONTRACT §2). Flux adds `pending_reason` and
    /// `cancel_requested` (documented in Docs/api.md).
    public func view() -> JSONValue {
        func str(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }
        var o: [String: JSONValue] = [
            "id": .string(applicationID),
            "status": .string(status.rawValue),
            "mode": .string(received?.request["mode"]?.stringValue ?? "waterfall"),
            "lender_id": str(lenderID),
            "lender_reference": str(lenderReference),
            "loan_id": str(loanID),
            "decline_reasons": .array(declineReasons.map { .string($0) }),
            "attempts": .array(
                attempts.map { a in
                    .object([
                        "lender_id": .string(a.lenderID),
                        "outcome": .string(a.outcome.rawValue),
                        "reason": str(a.reason),
                        "tries": .int(Int64(a.tries)),
                        "latency_ms": .int(Int64(a.latencyMs)),
                        "started_at": .string(Timestamp.format(a.startedAt)),
                    ])
                }),
            "offers": .array([]),
            "created_at": createdAt.map { .string(Timestamp.format($0)) } ?? .null,
            "updated_at": updatedAt.map { .string(Timestamp.format($0)) } ?? .null,
            "merchant_id": str(received?.merchantID),
        ]
        if let pendingReason { o["pending_reason"] = .string(pendingReason) }
        if cancelRequested && !status.isTerminal { o["cancel_requested"] = .bool(true) }
        if let annualRateBps { o["annual_rate_bps"] = .int(Int64(annualRateBps)) }
        return .object(o)
    }
}
