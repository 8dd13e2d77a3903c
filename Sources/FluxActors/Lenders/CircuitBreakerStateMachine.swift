/// Settings of one lender's breaker (descriptor `circuit_breaker`).
public struct CircuitBreakerConfig: Sendable, Equatable {
    /// Open when at least this % of the window's calls failed.
    public var failureRateThreshold = 50
    /// Open when at least this % of the window's calls were slow.
    public var slowCallRateThreshold = 100
    /// The last N calls are judged.
    public var slidingWindowSize = 20
    /// No judgement before this many calls are in the window (capped at the window size).
    public var minimumCalls = 10
    public var waitOpenMs = 30_000
    /// Trial calls permitted in half-open; their results decide closed or open again.
    public var halfOpenCalls = 3
    /// A call longer than this is slow.
    public var slowCallMs = 2000

    public init() {}
}

/// A Resilience4j-style circuit breaker as a value: count-based sliding window, failure-rate and
/// slow-call-rate thresholds, minimum calls, OPEN for a wait then HALF_OPEN trial calls, and
/// operator overrides (forced open, disabled). Time is a nanosecond count supplied by the caller.
///
/// Each permission carries the generation of the state it was given in; a result that comes back
/// after the state changed (a slow call permitted while closed, ending after the circuit opened)
/// is not counted, as in Resilience4j, where results are recorded into the current state's window only
/// for calls that state permitted.
public struct CircuitBreakerStateMachine: Sendable, Equatable {
    public enum State: String, Sendable, Equatable {
        case closed
        case open
        case halfOpen = "half_open"
        case forcedOpen = "forced_open"
        /// Forced closed: every call is permitted and nothing is recorded.
        case disabled
    }

    public struct Permission: Sendable, Equatable, Hashable {
        public var generation: UInt64
    }

    public struct Transition: Sendable, Equatable {
        public var from: State
        public var to: State
    }

    public struct Outcome: Sendable, Equatable {
        public var failed: Bool
        public var durationNanos: UInt64
        public init(failed: Bool, durationNanos: UInt64) {
            self.failed = failed
            self.durationNanos = durationNanos
        }
    }

    /// The ring buffer of the last N results (failed, slow) with running totals.
    struct Window: Sendable, Equatable {
        var size: Int
        var failed: [Bool] = []
        var slow: [Bool] = []
        var next = 0
        var failures = 0
        var slowCalls = 0

        init(size: Int) {
            self.size = size
            failed.reserveCapacity(size)
            slow.reserveCapacity(size)
        }

        var count: Int { failed.count }

        mutating func add(failed f: Bool, slow s: Bool) {
            if failed.count < size {
                failed.append(f)
                slow.append(s)
            } else {
                if failed[next] { failures -= 1 }
                if slow[next] { slowCalls -= 1 }
                failed[next] = f
                slow[next] = s
                next = (next + 1) % size
            }
            if f { failures += 1 }
            if s { slowCalls += 1 }
        }
    }

    public let config: CircuitBreakerConfig
    public private(set) var state: State = .closed
    public private(set) var generation: UInt64 = 0
    var window: Window
    private(set) var openedAt: UInt64 = 0
    private(set) var halfOpenPermitsIssued = 0
    /// Calls refused while open or forced open.
    public private(set) var notPermitted: Int = 0

    public init(config: CircuitBreakerConfig) {
        self.config = config
        self.window = Window(size: max(1, config.slidingWindowSize))
    }

    /// Failure and slow-call rates of the current window, in % (nil below the minimum).
    public var failureRatePercent: Double? {
        window.count >= requiredCalls ? Double(window.failures) * 100 / Double(window.count) : nil
    }
    public var slowCallRatePercent: Double? {
        window.count >= requiredCalls ? Double(window.slowCalls) * 100 / Double(window.count) : nil
    }
    public var bufferedCalls: Int { window.count }

    private var requiredCalls: Int {
        state == .halfOpen ? max(1, config.halfOpenCalls) : max(1, min(config.minimumCalls, config.slidingWindowSize))
    }

    /// The state as seen at `now` (an open circuit whose wait is over reads as half-open).
    public func observedState(now: UInt64) -> State {
        if state == .open, now &- openedAt >= waitNanos, now >= openedAt { return .halfOpen }
        return state
    }

    private var waitNanos: UInt64 { UInt64(max(0, config.waitOpenMs)) * 1_000_000 }

    /// Asks to make one call. A `nil` answer means the call must not be made.
    public mutating func tryAcquirePermission(now: UInt64) -> (Permission?, Transition?) {
        switch state {
        case .closed, .disabled:
            return (Permission(generation: generation), nil)
        case .forcedOpen:
            notPermitted += 1
            return (nil, nil)
        case .open:
            guard now >= openedAt, now - openedAt >= waitNanos else {
                notPermitted += 1
                return (nil, nil)
            }
            let t = move(to: .halfOpen, now: now)
            halfOpenPermitsIssued = 1
            return (Permission(generation: generation), t)
        case .halfOpen:
            guard halfOpenPermitsIssued < config.halfOpenCalls else {
                notPermitted += 1
                return (nil, nil)
            }
            halfOpenPermitsIssued += 1
            return (Permission(generation: generation), nil)
        }
    }

    /// Gives back a permission whose call was never made (so a half-open trial slot is freed).
    public mutating func releasePermission(_ p: Permission) {
        if state == .halfOpen, p.generation == generation, halfOpenPermitsIssued > 0 { halfOpenPermitsIssued -= 1 }
    }

    /// Records the result of a permitted call. Results from an earlier state are ignored.
    public mutating func record(_ outcome: Outcome, permission: Permission, now: UInt64) -> Transition? {
        guard permission.generation == generation else { return nil }
        return add(outcome, now: now)
    }

    /// Records a call that did not ask for permission (status, disburse, cancel: the saga needs
    /// them even while the circuit is open). Counted only while closed.
    public mutating func recordUnpermitted(_ outcome: Outcome, now: UInt64) -> Transition? {
        guard state == .closed else { return nil }
        return add(outcome, now: now)
    }

    private mutating func add(_ outcome: Outcome, now: UInt64) -> Transition? {
        switch state {
        case .closed, .halfOpen: break
        case .open, .forcedOpen, .disabled: return nil
        }
        let slow = outcome.durationNanos > UInt64(max(0, config.slowCallMs)) * 1_000_000
        window.add(failed: outcome.failed, slow: slow)
        guard window.count >= requiredCalls else { return nil }
        let total = window.count
        // Integer comparison: exact at the boundary (50 % of 10 is 5 failures, and 5 opens).
        let exceeded =
            window.failures * 100 >= config.failureRateThreshold * total
            || window.slowCalls * 100 >= config.slowCallRateThreshold * total
        if state == .halfOpen {
            return move(to: exceeded ? .open : .closed, now: now)
        }
        return exceeded ? move(to: .open, now: now) : nil
    }

    // MARK: operator overrides

    public mutating func forceOpen(now: UInt64) -> Transition? { move(to: .forcedOpen, now: now) }
    /// Forced closed: permits everything and records nothing until `reset`.
    public mutating func disable(now: UInt64) -> Transition? { move(to: .disabled, now: now) }
    /// Back to closed with an empty window.
    public mutating func reset(now: UInt64) -> Transition? { move(to: .closed, now: now) }

    private mutating func move(to new: State, now: UInt64) -> Transition? {
        let old = state
        guard old != new || new == .closed else { return nil }
        state = new
        generation &+= 1
        switch new {
        case .closed:
            window = Window(size: max(1, config.slidingWindowSize))
        case .halfOpen:
            window = Window(size: max(1, config.halfOpenCalls))
            halfOpenPermitsIssued = 0
        case .open:
            openedAt = now
        case .forcedOpen, .disabled:
            break
        }
        return old == new ? nil : Transition(from: old, to: new)
    }
}
