/// One booked loan. A shell around `LoanAccountState`: the node persists each event to the
/// journal stream `LoanAccountState.streamName(loanID:)` (awaiting durability before anything
/// the outside sees) and then applies it here.
public actor LoanAccount {
    public nonisolated let id: String
    public private(set) var state: LoanAccountState

    public init(opened: LoanOpened) {
        id = opened.loanID
        state = LoanAccountState(opened: opened)
    }

    /// Brings a loan back from its stream's events, oldest first.
    public init(replaying events: [LoanEvent]) throws(LoanReplayError) {
        let state = try LoanAccountState.replay(events)
        id = state.id
        self.state = state
    }

    /// A loan brought back from a snapshot (and the events after it, already folded in).
    public init(state: LoanAccountState) {
        id = state.id
        self.state = state
    }

    /// Applies an event the caller has already made durable.
    public func apply(_ event: LoanEvent) {
        state.apply(event)
    }

    /// CONTRACT's `GET /v1/loans/{id}` body.
    public func view() -> JSONValue { state.view() }
}
