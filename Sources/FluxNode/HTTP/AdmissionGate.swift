import Synchronization

/// Admission control for new checkouts: at most `limit` creations in progress at once (from
/// validation to the durable receipt). Beyond it a checkout is answered `503
/// journal_unavailable` at once instead of joining a queue whose wait its client will not sit
/// out: without it, a node offered more than it can do kept every request (tens of thousands,
/// long after their clients had timed out) and then answered nothing in time even at a tenth of
/// the load (Docs/benchmarks.md, "Checkouts: session 6").
final class AdmissionGate: Sendable {
    /// 512 creations in progress is a quarter of a second of work at 2,000 checkouts/s: room for
    /// bursts, not for a backlog.
    static let defaultLimit = 512

    let limit: Int
    private let inProgress = Atomic<Int>(0)
    private let turnedAway = Atomic<Int>(0)

    init(limit: Int = AdmissionGate.defaultLimit) {
        precondition(limit > 0, "an admission gate admits at least one")
        self.limit = limit
    }

    /// Takes a place; false (and nothing taken) when all `limit` are in use.
    func tryEnter() -> Bool {
        let (_, after) = inProgress.add(1, ordering: .acquiringAndReleasing)
        if after <= limit { return true }
        inProgress.subtract(1, ordering: .acquiringAndReleasing)
        turnedAway.add(1, ordering: .relaxed)
        return false
    }

    func leave() { inProgress.subtract(1, ordering: .acquiringAndReleasing) }

    var current: Int { inProgress.load(ordering: .relaxed) }
    /// Checkouts refused since start.
    var refused: Int { turnedAway.load(ordering: .relaxed) }
}
