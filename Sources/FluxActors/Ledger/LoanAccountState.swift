import Foundation

/// A booked loan, folded from its events. Pure: `apply` changes it, `view` shows it.
public struct LoanAccountState: Sendable, Equatable {
    public enum Status: String, Sendable, Codable {
        case active, closed
    }

    public private(set) var opened: LoanOpened
    public private(set) var status: Status
    /// Lines as shown, with what has been paid against each.
    public private(set) var schedule: AmortizationSchedule
    /// Principal still owed (principal less principal repaid); the whole principal when opened.
    public private(set) var outstandingPaise: Int64

    public var id: String { opened.loanID }

    public init(opened: LoanOpened) {
        self.opened = opened
        status = .active
        schedule = opened.schedule
        outstandingPaise = opened.principalPaise
    }

    /// Folds the loan's events, oldest first. The first must open it, and only the first.
    public static func replay(_ events: [LoanEvent]) throws(LoanReplayError) -> LoanAccountState {
        guard case .opened(let opening)? = events.first else { throw .doesNotStartOpened }
        var state = LoanAccountState(opened: opening)
        for (i, event) in events.enumerated().dropFirst() {
            if case .opened = event { throw .openedTwice(index: i) }
            state.apply(event)
        }
        return state
    }

    /// Applies an event that happened to this loan. A loan is opened once, at `init(opened:)`:
    /// a second opening is a bug in the caller (use `replay` for events read from storage).
    public mutating func apply(_ e: LoanEvent) {
        switch e {
        case .opened(let again):
            preconditionFailure("loan \(opened.loanID) opened twice (again as \(again.loanID))")
        }
    }

    /// The loan id for an application's loan: a function of the application id only, so that a
    /// saga recovered after a crash opens the same loan (the journal's unique (stream, seq)
    /// then refuses a second `LoanOpened`), never a second one.
    /// `app_XYZ` → `loan_XYZ`; any other id `X` → `loan_X` (the same rule as
    /// `WaterfallSaga.loanID(for:)`; Flux's own application ids all start with `app_`).
    public static func loanID(forApplication id: String) -> String {
        "loan_" + (id.hasPrefix("app_") ? id.dropFirst(4) : id[...])
    }

    /// The journal stream of a loan's events.
    public static func streamName(loanID: String) -> String { "loan/" + loanID }

    /// Exactly CONTRACT's `GET /v1/loans/{id}` body.
    public func view() -> JSONValue {
        [
            "id": .string(opened.loanID),
            "application_id": .string(opened.applicationID),
            "lender_id": .string(opened.lenderID),
            "customer_id": .string(opened.customerID),
            "principal_paise": .int(opened.principalPaise),
            "annual_rate_bps": .int(Int64(opened.annualRateBps)),
            "tenure_months": .int(Int64(opened.tenureMonths)),
            "emi_paise": .int(schedule.emiPaise),
            "status": .string(status.rawValue),
            "outstanding_paise": .int(outstandingPaise),
            "schedule": .array(schedule.lines.map { $0.view() }),
        ]
    }
}

/// Why a loan's stored events do not make a loan.
public enum LoanReplayError: Error, Sendable, Equatable, CustomStringConvertible {
    case doesNotStartOpened
    case openedTwice(index: Int)

    public var description: String {
        switch self {
        case .doesNotStartOpened: "a loan stream must start with LoanOpened"
        case .openedTwice(let i): "a loan stream opens the loan again at event \(i + 1)"
        }
    }
}
