import Metrics

/// The actor shell around one lender's `CircuitBreakerStateMachine`: it supplies the time and
/// counts transitions (`flux_circuit_transitions_total{lender,to}`).
public actor CircuitBreaker {
    public typealias Permission = CircuitBreakerStateMachine.Permission

    private var machine: CircuitBreakerStateMachine
    private let lenderID: String
    private let nowNanos: @Sendable () -> UInt64
    /// Transitions so far, by the state moved to.
    public private(set) var transitions: [CircuitBreakerStateMachine.State: Int] = [:]

    public init(lenderID: String, config: CircuitBreakerConfig, nowNanos: @escaping @Sendable () -> UInt64) {
        self.lenderID = lenderID
        self.machine = CircuitBreakerStateMachine(config: config)
        self.nowNanos = nowNanos
    }

    public var state: CircuitBreakerStateMachine.State { machine.observedState(now: nowNanos()) }
    public var config: CircuitBreakerConfig { machine.config }
    public var notPermittedCalls: Int { machine.notPermitted }

    public func tryAcquirePermission() -> Permission? {
        let (p, t) = machine.tryAcquirePermission(now: nowNanos())
        note(t)
        return p
    }

    public func releasePermission(_ p: Permission) { machine.releasePermission(p) }

    /// Records one call's result; `permission` nil for calls that did not need one.
    public func record(failed: Bool, durationNanos: UInt64, permission: Permission?) {
        let outcome = CircuitBreakerStateMachine.Outcome(failed: failed, durationNanos: durationNanos)
        if let permission {
            note(machine.record(outcome, permission: permission, now: nowNanos()))
        } else {
            note(machine.recordUnpermitted(outcome, now: nowNanos()))
        }
    }

    public func forceOpen() { note(machine.forceOpen(now: nowNanos())) }
    public func disable() { note(machine.disable(now: nowNanos())) }
    public func reset() { note(machine.reset(now: nowNanos())) }

    private func note(_ t: CircuitBreakerStateMachine.Transition?) {
        guard let t else { return }
        transitions[t.to, default: 0] += 1
        Counter(label: "flux_circuit_transitions_total", dimensions: [("lender", lenderID), ("to", t.to.rawValue)])
            .increment()
    }
}
