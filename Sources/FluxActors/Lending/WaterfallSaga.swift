import Foundation

/// Timing knobs of the saga. Pure data: the saga returns delays, the shell sleeps.
public struct SagaPolicy: Sendable, Equatable {
    /// After a first `not_found`, ask once more this much later before moving on.
    public var notFoundRecheck: Duration = .milliseconds(300)
    /// Backoff of repeated status inquiries while the answer is unknown or pending.
    public var inquiryBackoffInitial: Duration = .milliseconds(200)
    public var inquiryBackoffMax: Duration = .seconds(30)
    /// After this many unknown/pending answers the application shows
    /// `pending_reason: lender_status_unknown`; Flux keeps asking (it never moves on).
    public var inquiriesBeforeParking = 5
    public var disburseBackoffInitial: Duration = .milliseconds(200)
    public var disburseBackoffMax: Duration = .seconds(30)

    public init() {}
}

/// Something the saga asks its shell to do. The shell performs it and feeds the result back as
/// a `SagaInput`. Before `apply`, `disburse` and `cancelAtLender` the shell makes every event
/// so far durable (ARCHITECTURE principle 3).
public enum SagaEffect: Sendable, Equatable {
    /// Check the lender's circuit and `validate` conditions.
    case admit(lenderID: String)
    case apply(lenderID: String)
    case inquireStatus(lenderID: String, reference: String?, after: Duration)
    case disburse(lenderID: String, reference: String, after: Duration)
    /// Open the loan account (idempotent on the loan id), then report `.loanOpened`.
    case openLoan(loanID: String, lenderID: String, reference: String, annualRateBps: Int)
    /// Compensation: the lender approved an attempt the customer had already cancelled.
    case cancelAtLender(lenderID: String, reference: String)
}

public enum SagaInput: Sendable, Equatable {
    case start
    case admission(lenderID: String, Admission)
    case applied(lenderID: String, LenderCall<ApplyOutcome>)
    case inquired(lenderID: String, LenderCall<StatusOutcome>)
    case disbursal(lenderID: String, LenderCall<DisburseOutcome>)
    case loanOpened(loanID: String)
    /// `nil`: the lender's descriptor has no `cancel` operation.
    case compensation(lenderID: String, LenderCall<CancelOutcome>?)
    case cancel
}

public enum CancelReply: Sendable, Equatable {
    /// Cancelled now.
    case cancelled
    /// A lender call is in flight: the application is cancelled once it settles (and an approval
    /// that arrives meanwhile is compensated).
    case accepted
    case alreadyCancelled
    case refused(reason: String)
}

public struct SagaStep: Sendable, Equatable {
    public var events: [ApplicationEvent] = []
    public var effects: [SagaEffect] = []
    public var cancelReply: CancelReply?
}

public enum ApplicationStatus: String, Sendable, Codable, Equatable {
    case pending, approved, disbursed, declined, failed, cancelled
    case offersReady = "offers_ready"

    public var isTerminal: Bool {
        switch self {
        case .disbursed, .declined, .failed, .cancelled: true
        case .pending, .approved, .offersReady: false
        }
    }
}

/// One row of the application's `attempts` list.
public struct AttemptRow: Sendable, Equatable {
    public var lenderID: String
    public var outcome: AttemptOutcome
    public var reason: String?
    public var tries: Int
    public var latencyMs: Int
    public var startedAt: Date
    public var lenderReference: String?
    /// How `apply` itself ended: an approval found by a status inquiry is `approved` after a
    /// `pending` answer and `ghost_recovered` after a lost one.
    public var applyOutcome: AttemptOutcome?
}

/// The waterfall as a pure state machine: ranked lenders are tried one after another until one
/// approves and disburses. Its state is a fold over `ApplicationEvent`s (`apply`), so a node that
/// reloads the journal continues where the last writer stopped (`resume`). Inputs (`handle`) are
/// turned into events, and the state after them decides the effects the shell performs.
///
/// The ghost-loan rule lives here: once `LenderAttemptStarted` is journalled, the saga never
/// moves to the next lender until that lender has answered or a status inquiry has settled the
/// attempt.
public struct WaterfallSaga: Sendable, Equatable {
    public enum Phase: Sendable, Equatable {
        /// Not yet received.
        case new
        /// Between lenders: the next one is `ranking[nextIndex]`.
        case ready
        /// `LenderAttemptStarted` journalled; `apply` in flight (or lost with a dead node).
        case applying(lenderID: String)
        /// The lender may have lent: asking `status` until it settles.
        case inquiring(lenderID: String, reference: String?)
        case disbursing(lenderID: String, reference: String, annualRateBps: Int)
        case compensating(lenderID: String, reference: String)
        case terminal
    }

    public let policy: SagaPolicy
    public private(set) var phase: Phase = .new
    public private(set) var status: ApplicationStatus = .pending
    public private(set) var received: ApplicationEvent.Received?
    public private(set) var ranking: [String] = []
    public private(set) var excluded: [ApplicationEvent.ExcludedLenderReason] = []
    public private(set) var nextIndex = 0
    public private(set) var attempts: [AttemptRow] = []
    public private(set) var cancelRequested = false
    public private(set) var declineReasons: [String] = []
    public private(set) var pendingReason: String?
    public private(set) var lenderID: String?
    public private(set) var lenderReference: String?
    public private(set) var annualRateBps: Int?
    public private(set) var loanID: String?
    public private(set) var createdAt: Date?
    public private(set) var updatedAt: Date?
    /// A lender gave a business answer (a rejection, or its own validation said no).
    public private(set) var anyBusinessAnswer = false
    // Counters of the current inquiry (rebuilt from events on replay).
    private var notFoundAnswers = 0
    private var unsettledAnswers = 0
    // Not journalled: a recovered saga starts counting disbursal retries again.
    private var disburseRetries = 0
    private var awaitingLoan = false

    public init(policy: SagaPolicy = SagaPolicy()) { self.policy = policy }

    /// Two sagas are equal when their journalled state is: the disbursal retry counter and the
    /// wait for the loan account are the shell's progress, not journalled, and start again after
    /// a recovery.
    public static func == (a: WaterfallSaga, b: WaterfallSaga) -> Bool {
        var a2 = a
        var b2 = b
        a2.disburseRetries = 0
        b2.disburseRetries = 0
        a2.awaitingLoan = false
        b2.awaitingLoan = false
        return a2.isEqualIncludingProgress(b2)
    }

    private func isEqualIncludingProgress(_ o: WaterfallSaga) -> Bool {
        policy == o.policy && phase == o.phase && status == o.status && received == o.received
            && ranking == o.ranking && excluded == o.excluded && nextIndex == o.nextIndex && attempts == o.attempts
            && cancelRequested == o.cancelRequested && declineReasons == o.declineReasons
            && pendingReason == o.pendingReason && lenderID == o.lenderID && lenderReference == o.lenderReference
            && annualRateBps == o.annualRateBps && loanID == o.loanID && createdAt == o.createdAt
            && updatedAt == o.updatedAt && anyBusinessAnswer == o.anyBusinessAnswer
            && notFoundAnswers == o.notFoundAnswers && unsettledAnswers == o.unsettledAnswers
            && disburseRetries == o.disburseRetries && awaitingLoan == o.awaitingLoan
    }

    // MARK: - Folding events

    public mutating func apply(_ event: ApplicationEvent) {
        switch event {
        case .received(let r):
            precondition(phase == .new, "an application is received once")
            received = r
            createdAt = r.at
            updatedAt = r.at
            phase = .ready
        case .ranked(let r):
            ranking = r.lenders
            excluded = r.excluded
        case .attemptSkipped(let s):
            attempts.append(
                AttemptRow(
                    lenderID: s.lenderID, outcome: s.outcome, reason: s.reason, tries: 0, latencyMs: 0, startedAt: s.at)
            )
            if s.outcome == .skippedValidation { anyBusinessAnswer = true }
            nextIndex += 1
            updatedAt = s.at
        case .attemptStarted(let s):
            precondition(phase == .ready, "an attempt starts only between lenders")
            attempts.append(
                AttemptRow(
                    lenderID: s.lenderID, outcome: .pending, reason: nil, tries: 0, latencyMs: 0, startedAt: s.at))
            phase = .applying(lenderID: s.lenderID)
            updatedAt = s.at
        case .attemptFinished(let f):
            guard let i = attempts.lastIndex(where: { $0.lenderID == f.lenderID }) else { return }
            attempts[i].outcome = f.outcome
            attempts[i].reason = f.reason
            attempts[i].tries += f.tries
            attempts[i].latencyMs += f.latencyMs
            attempts[i].lenderReference = f.lenderReference
            attempts[i].applyOutcome = f.outcome
            if f.needsInquiry {
                phase = .inquiring(lenderID: f.lenderID, reference: f.lenderReference)
                notFoundAnswers = 0
                unsettledAnswers = 0
            } else if f.outcome != .approved {
                if f.outcome == .rejected { anyBusinessAnswer = true }
                nextIndex += 1
                phase = .ready
            }
        case .statusInquired(let s):
            guard let i = attempts.lastIndex(where: { $0.lenderID == s.lenderID }) else { return }
            switch s.result {
            case .approved:
                attempts[i].outcome = attempts[i].applyOutcome == .pending ? .approved : .ghostRecovered
                attempts[i].lenderReference = s.lenderReference ?? attempts[i].lenderReference
                pendingReason = nil
            case .rejected:
                attempts[i].outcome = .rejected
                attempts[i].reason = s.reason ?? attempts[i].reason
                anyBusinessAnswer = true
                pendingReason = nil
                nextIndex += 1
                phase = .ready
            case .notFound:
                notFoundAnswers += 1
                if notFoundAnswers >= 2 {
                    let before = attempts[i].reason.map { "\($0); " } ?? ""
                    attempts[i].reason = before + "the lender has no record of the application (status not_found twice)"
                    if attempts[i].outcome == .pending { attempts[i].outcome = .error }
                    pendingReason = nil
                    nextIndex += 1
                    phase = .ready
                }
            case .pending, .unknown:
                unsettledAnswers += 1
                if unsettledAnswers >= policy.inquiriesBeforeParking {
                    attempts[i].outcome = .pending
                    pendingReason = "lender_status_unknown"
                }
            }
        case .approved(let a):
            lenderID = a.lenderID
            lenderReference = a.lenderReference
            annualRateBps = a.annualRateBps
            status = .approved
            disburseRetries = 0
            awaitingLoan = false
            phase =
                cancelRequested
                ? .compensating(lenderID: a.lenderID, reference: a.lenderReference)
                : .disbursing(lenderID: a.lenderID, reference: a.lenderReference, annualRateBps: a.annualRateBps)
        case .disbursalFailed(let d):
            if let i = attempts.lastIndex(where: { $0.lenderID == d.lenderID }) {
                attempts[i].outcome = .error
                attempts[i].reason = "disbursal failed: \(d.reason)"
            }
            lenderID = nil
            lenderReference = nil
            annualRateBps = nil
            disburseRetries = 0
            awaitingLoan = false
            status = .pending
            nextIndex += 1
            phase = .ready
        case .cancelRequested(let c):
            cancelRequested = true
            updatedAt = c.at
        case .compensated:
            break
        case .disbursed(let d):
            lenderID = d.lenderID
            lenderReference = d.lenderReference
            annualRateBps = d.annualRateBps
            loanID = d.loanID
            status = .disbursed
            phase = .terminal
            updatedAt = d.at
        case .declined(let c):
            close(.declined, c)
        case .failed(let c):
            close(.failed, c)
        case .cancelled(let c):
            close(.cancelled, c)
        }
    }

    private mutating func close(_ s: ApplicationStatus, _ c: ApplicationEvent.Closed) {
        status = s
        declineReasons = c.reasons
        pendingReason = nil
        phase = .terminal
        updatedAt = c.at
    }

    // MARK: - Deciding

    /// Continues a saga rebuilt from the journal. An `apply` that was in flight when the last
    /// writer stopped is never re-sent: the lender is asked for its `status` first.
    public mutating func resume(now: Date) -> SagaStep {
        var step = SagaStep()
        if case .applying(let lender) = phase {
            record(
                .attemptFinished(
                    .init(
                        lenderID: lender, outcome: .error,
                        reason: "the node stopped while the call was in flight", lenderReference: nil,
                        annualRateBps: nil, tries: 0, latencyMs: 0, needsInquiry: true)), into: &step)
        }
        settle(now: now, into: &step)
        step.effects = effects(firstInquiryImmediate: true)
        return step
    }

    public mutating func handle(_ input: SagaInput, now: Date) -> SagaStep {
        var step = SagaStep()
        switch input {
        case .start:
            break
        case .admission(let lender, let admission):
            guard phase == .ready, nextIndex < ranking.count, ranking[nextIndex] == lender else { return step }
            switch admission {
            case .permitted:
                if cancelRequested { break }
                record(
                    .attemptStarted(.init(lenderID: lender, idempotencyKey: attemptKey(lender), at: now)), into: &step)
            case .circuitOpen:
                record(
                    .attemptSkipped(
                        .init(lenderID: lender, outcome: .skippedOpenCircuit, reason: "circuit open", at: now)),
                    into: &step)
            case .validationFailed(let condition):
                record(
                    .attemptSkipped(
                        .init(lenderID: lender, outcome: .skippedValidation, reason: condition, at: now)), into: &step)
            case .unknownLender:
                record(
                    .attemptSkipped(
                        .init(
                            lenderID: lender, outcome: .skippedValidation, reason: "no connector descriptor", at: now)),
                    into: &step)
            }
        case .applied(let lender, let call):
            guard phase == .applying(lenderID: lender) else { return step }
            let (outcome, reason, ref, rate, inquire): (AttemptOutcome, String?, String?, Int?, Bool)
            switch call.outcome {
            case .approved(let r, let bps, let why):
                (outcome, reason, ref, rate, inquire) = (.approved, why, r, bps, false)
            case .rejected(let why, let r): (outcome, reason, ref, rate, inquire) = (.rejected, why, r, nil, false)
            case .pending(let r):
                (outcome, reason, ref, rate, inquire) = (.pending, "the lender is deciding", r, nil, true)
            case .unknown(let why, let timedOut):
                (outcome, reason, ref, rate, inquire) = (timedOut ? .timeout : .error, why, nil, nil, true)
            case .failed(let why): (outcome, reason, ref, rate, inquire) = (.error, why, nil, nil, false)
            }
            record(
                .attemptFinished(
                    .init(
                        lenderID: lender, outcome: outcome, reason: reason, lenderReference: ref, annualRateBps: rate,
                        tries: call.tries, latencyMs: call.latencyMs, needsInquiry: inquire)), into: &step)
            if case .approved(let r, let bps, _) = call.outcome {
                record(.approved(.init(lenderID: lender, lenderReference: r, annualRateBps: bps)), into: &step)
            }
        case .inquired(let lender, let call):
            guard case .inquiring(let current, let knownRef) = phase, current == lender else { return step }
            let event: ApplicationEvent.StatusInquired
            switch call.outcome {
            case .approved(let r, let bps):
                event = .init(
                    lenderID: lender, result: .approved, reason: nil, lenderReference: r, annualRateBps: bps,
                    tries: call.tries, latencyMs: call.latencyMs)
            case .rejected(let why):
                event = .init(
                    lenderID: lender, result: .rejected, reason: why, lenderReference: knownRef, annualRateBps: nil,
                    tries: call.tries, latencyMs: call.latencyMs)
            case .pending:
                event = .init(
                    lenderID: lender, result: .pending, reason: nil, lenderReference: knownRef, annualRateBps: nil,
                    tries: call.tries, latencyMs: call.latencyMs)
            case .notFound:
                event = .init(
                    lenderID: lender, result: .notFound, reason: nil, lenderReference: knownRef, annualRateBps: nil,
                    tries: call.tries, latencyMs: call.latencyMs)
            case .unknown(let why):
                event = .init(
                    lenderID: lender, result: .unknown, reason: why, lenderReference: knownRef, annualRateBps: nil,
                    tries: call.tries, latencyMs: call.latencyMs)
            }
            record(.statusInquired(event), into: &step)
            if case .approved(let r, let bps) = call.outcome {
                record(.approved(.init(lenderID: lender, lenderReference: r, annualRateBps: bps)), into: &step)
            }
        case .disbursal(let lender, let call):
            guard case .disbursing(let current, let ref, let bps) = phase, current == lender, !awaitingLoan else {
                return step
            }
            switch call.outcome {
            case .disbursed:
                awaitingLoan = true
                step.effects = [
                    .openLoan(
                        loanID: Self.loanID(for: applicationID), lenderID: lender, reference: ref, annualRateBps: bps)
                ]
                return step
            case .failed(let why):
                record(.disbursalFailed(.init(lenderID: lender, reason: why)), into: &step)
            case .pending, .unknown:
                disburseRetries += 1
            }
        case .loanOpened(let loanID):
            guard case .disbursing(let lender, let ref, let bps) = phase, awaitingLoan else { return step }
            awaitingLoan = false
            record(
                .disbursed(.init(lenderID: lender, lenderReference: ref, annualRateBps: bps, loanID: loanID, at: now)),
                into: &step)
        case .compensation(let lender, let call):
            guard case .compensating(let current, let ref) = phase, current == lender else { return step }
            let result: String
            let reason: String?
            switch call?.outcome {
            case .cancelled?: (result, reason) = ("cancelled", nil)
            case .failed(let why)?: (result, reason) = ("flagged", "lender cancel failed: \(why)")
            case nil: (result, reason) = ("flagged", "the lender has no cancel operation")
            }
            record(
                .compensated(.init(lenderID: lender, lenderReference: ref, result: result, reason: reason)), into: &step
            )
            record(.cancelled(.init(reasons: ["cancelled by the merchant"], at: now)), into: &step)
        case .cancel:
            // A cancel never starts a lender call: calls in flight finish and settle it.
            step.cancelReply = cancel(now: now, into: &step)
            return step
        }
        settle(now: now, into: &step)
        step.effects += effects(firstInquiryImmediate: false)
        return step
    }

    private mutating func cancel(now: Date, into step: inout SagaStep) -> CancelReply {
        switch phase {
        case .terminal:
            return status == .cancelled ? .alreadyCancelled : .refused(reason: "the application is \(status.rawValue)")
        case .compensating:
            // Already cancelling: the approval that arrived meanwhile is being compensated.
            return .accepted
        case .disbursing:
            return .refused(reason: "the application is approved and its disbursal has started")
        case .new:
            return .refused(reason: "the application does not exist")
        case .ready, .applying, .inquiring:
            if cancelRequested { return .accepted }
            record(.cancelRequested(.init(at: now)), into: &step)
            if phase == .ready {
                settle(now: now, into: &step)
                return .cancelled
            }
            return .accepted
        }
    }

    /// Between lenders with nothing left to try (or a cancel pending): close the application.
    private mutating func settle(now: Date, into step: inout SagaStep) {
        guard phase == .ready else { return }
        if cancelRequested {
            record(.cancelled(.init(reasons: ["cancelled by the merchant"], at: now)), into: &step)
        } else if nextIndex >= ranking.count {
            let reasons = closingReasons()
            if anyBusinessAnswer || ranking.isEmpty {
                record(.declined(.init(reasons: reasons, at: now)), into: &step)
            } else {
                record(.failed(.init(reasons: reasons, at: now)), into: &step)
            }
        }
    }

    private func closingReasons() -> [String] {
        if ranking.isEmpty {
            if excluded.isEmpty { return ["no lender is configured for this application"] }
            return excluded.map { "\($0.lenderID): \($0.failed.joined(separator: "; "))" }
        }
        return attempts.map { "\($0.lenderID): \($0.outcome.rawValue)\($0.reason.map { " (\($0))" } ?? "")" }
    }

    private func effects(firstInquiryImmediate: Bool) -> [SagaEffect] {
        switch phase {
        case .new, .terminal:
            return []
        case .ready:
            return nextIndex < ranking.count && !cancelRequested ? [.admit(lenderID: ranking[nextIndex])] : []
        case .applying(let lender):
            return [.apply(lenderID: lender)]
        case .inquiring(let lender, let ref):
            return [
                .inquireStatus(
                    lenderID: lender, reference: ref, after: inquiryDelay(firstImmediate: firstInquiryImmediate))
            ]
        case .disbursing(let lender, let ref, _):
            if awaitingLoan { return [] }
            let delay =
                disburseRetries == 0
                ? .zero : backoff(disburseRetries, policy.disburseBackoffInitial, policy.disburseBackoffMax)
            return [.disburse(lenderID: lender, reference: ref, after: delay)]
        case .compensating(let lender, let ref):
            return [.cancelAtLender(lenderID: lender, reference: ref)]
        }
    }

    private func inquiryDelay(firstImmediate: Bool) -> Duration {
        // After a recovery the first inquiry goes out at once, whatever backoff was reached before.
        if firstImmediate || (unsettledAnswers == 0 && notFoundAnswers == 0) { return .zero }
        if notFoundAnswers > 0 && unsettledAnswers == 0 { return policy.notFoundRecheck }
        return backoff(unsettledAnswers, policy.inquiryBackoffInitial, policy.inquiryBackoffMax)
    }

    private func backoff(_ k: Int, _ initial: Duration, _ cap: Duration) -> Duration {
        var d = initial
        for _ in 1..<max(1, min(k, 30)) {
            d = d * 2
            if d >= cap { return cap }
        }
        return min(d, cap)
    }

    private mutating func record(_ event: ApplicationEvent, into step: inout SagaStep) {
        apply(event)
        step.events.append(event)
    }

    // MARK: - Naming

    public var applicationID: String { received?.applicationID ?? "" }

    /// The key the lender sees for this application's attempt: stable across retries and
    /// recovery, so a lender that is idempotent on it never lends twice.
    public func attemptKey(_ lenderID: String) -> String { "\(applicationID).\(lenderID)" }

    public static func loanID(for applicationID: String) -> String {
        let suffix = applicationID.hasPrefix("app_") ? String(applicationID.dropFirst(4)) : applicationID
        return "loan_" + suffix
    }
}
