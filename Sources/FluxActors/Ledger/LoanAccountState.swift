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

// MARK: - Snapshots

extension LoanAccountState {
    /// The version of `snapshotData()`'s layout. A snapshot of another version is ignored and the
    /// loan is folded from its whole stream (snapshots are a cache of the journal, never the truth).
    static let snapshotVersion = 1

    private struct Snapshot: Codable {
        var v: Int
        var opened: LoanOpened
        var status: Status
        var schedule: AmortizationSchedule
        var outstandingPaise: Int64

        enum CodingKeys: String, CodingKey {
            case v, opened, status, schedule
            case outstandingPaise = "outstanding_paise"
        }
    }

    /// The whole state as a compact JSON object (keys sorted), for the journal's `snapshots` table.
    public func snapshotData() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let snapshot = Snapshot(
            v: Self.snapshotVersion, opened: opened, status: status, schedule: schedule,
            outstandingPaise: outstandingPaise)
        // Strings, integers and arrays of them always encode; `nil` here would be a Foundation bug.
        guard let data = try? encoder.encode(snapshot) else { preconditionFailure("a loan snapshot failed to encode") }
        return String(decoding: data, as: UTF8.self)
    }

    /// A state read back from `snapshotData()`; nil when the text is not a snapshot of this
    /// version (the caller then folds the whole stream).
    public init?(snapshotData: String) {
        guard let snapshot = try? JSONDecoder().decode(Snapshot.self, from: Data(snapshotData.utf8)),
            snapshot.v == Self.snapshotVersion, snapshot.schedule.principalPaise == snapshot.opened.principalPaise,
            (0...snapshot.opened.principalPaise).contains(snapshot.outstandingPaise)
        else { return nil }
        opened = snapshot.opened
        status = snapshot.status
        schedule = snapshot.schedule
        outstandingPaise = snapshot.outstandingPaise
    }

    /// Folds the events that follow a snapshot (`LoanOpened` must not be among them).
    public static func replay(from snapshot: LoanAccountState, _ tail: [LoanEvent]) throws(LoanReplayError)
        -> LoanAccountState
    {
        var state = snapshot
        for (i, event) in tail.enumerated() {
            if case .opened = event { throw .openedTwice(index: i) }
            state.apply(event)
        }
        return state
    }
}
