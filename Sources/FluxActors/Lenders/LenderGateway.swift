import Foundation

/// What the waterfall needs from a lender. `LenderConnection` (one actor per lender) implements
/// it over HTTP from the lender's connector descriptor; tests implement it with scripted replies.
///
/// Every call returns rather than throws: an outcome is data the saga decides on.
public protocol LenderGateway: Sendable {
    /// Runs before an attempt is recorded: the lender exists, its `validate` conditions hold for
    /// this application and its circuit breaker permits a call. A `.permitted` answer holds a
    /// circuit permission that the next `apply` for this application uses.
    func admit(lenderID: String, context: LenderCallContext) async -> Admission
    func apply(lenderID: String, context: LenderCallContext) async -> LenderCall<ApplyOutcome>
    func status(lenderID: String, context: LenderCallContext) async -> LenderCall<StatusOutcome>
    /// A lender whose descriptor has no `disburse` operation disburses on approval: the answer is
    /// `.disbursed` with zero tries and no call.
    func disburse(lenderID: String, context: LenderCallContext) async -> LenderCall<DisburseOutcome>
    /// The compensation for an approval Flux had already given up on. `nil` when the lender's
    /// descriptor has no `cancel` operation.
    func cancel(lenderID: String, context: LenderCallContext) async -> LenderCall<CancelOutcome>?
}

/// What templates can read about the application and the attempt.
public struct LenderCallContext: Sendable, Equatable {
    public var applicationID: String
    public var request: CheckoutRequest
    public var createdAt: Date
    /// Stable for one (application, lender): a re-sent or recovered call carries the same key.
    public var idempotencyKey: String
    public var lenderReference: String?

    public init(
        applicationID: String, request: CheckoutRequest, createdAt: Date, idempotencyKey: String,
        lenderReference: String? = nil
    ) {
        self.applicationID = applicationID
        self.request = request
        self.createdAt = createdAt
        self.idempotencyKey = idempotencyKey
        self.lenderReference = lenderReference
    }
}

public enum Admission: Sendable, Equatable {
    case permitted
    case circuitOpen
    /// A `validate` condition of the descriptor does not hold; the text of the condition.
    case validationFailed(String)
    /// No connector descriptor for this lender (removed since the rules ranked it).
    case unknownLender
}

/// One operation call as the saga sees it: the outcome, how many HTTP tries it took, how long.
public struct LenderCall<Outcome: Sendable & Equatable>: Sendable, Equatable {
    public var outcome: Outcome
    public var tries: Int
    public var latencyMs: Int
    public init(outcome: Outcome, tries: Int, latencyMs: Int) {
        self.outcome = outcome
        self.tries = tries
        self.latencyMs = latencyMs
    }
}

public enum ApplyOutcome: Sendable, Equatable {
    case approved(reference: String, annualRateBps: Int, reason: String?)
    case rejected(reason: String, reference: String?)
    /// The lender took the application but has not decided: ask `status` later.
    case pending(reference: String?)
    /// The request may have reached the lender and its answer is lost: timeout, connection
    /// reset after sending, 5xx other than 503, or a reply Flux cannot read. The lender may have
    /// lent: the saga asks `status` before it moves on.
    case unknown(reason: String, timedOut: Bool)
    /// The lender certainly did not take the application: connection refused, 4xx, or 429/503
    /// after every retry.
    case failed(reason: String)
}

public enum StatusOutcome: Sendable, Equatable {
    case approved(reference: String, annualRateBps: Int)
    case rejected(reason: String)
    case pending
    /// The lender never took the application.
    case notFound
    /// The inquiry itself failed (timeout, 5xx, unreadable): the answer is still unknown.
    case unknown(reason: String)
}

public enum DisburseOutcome: Sendable, Equatable {
    case disbursed
    case failed(reason: String)
    case pending
    /// Lost reply: whether the money moved is unknown; disburse is idempotent by reference, ask again.
    case unknown(reason: String)
}

public enum CancelOutcome: Sendable, Equatable {
    case cancelled
    case failed(reason: String)
}
