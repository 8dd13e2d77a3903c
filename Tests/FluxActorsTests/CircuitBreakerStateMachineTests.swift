import Testing

@testable import FluxActors

@Suite struct CircuitBreakerStateMachineTests {
    typealias M = CircuitBreakerStateMachine
    static let ms: UInt64 = 1_000_000

    func config(
        window: Int = 10, minimum: Int = 10, failure: Int = 50, slow: Int = 100, slowMs: Int = 1000,
        wait: Int = 5000, halfOpen: Int = 3
    ) -> CircuitBreakerConfig {
        var c = CircuitBreakerConfig()
        c.slidingWindowSize = window
        c.minimumCalls = minimum
        c.failureRateThreshold = failure
        c.slowCallRateThreshold = slow
        c.slowCallMs = slowMs
        c.waitOpenMs = wait
        c.halfOpenCalls = halfOpen
        return c
    }

    /// Makes one permitted call with the given result; returns the transition, if any.
    @discardableResult
    func call(_ m: inout M, failed: Bool, durationMs: UInt64 = 10, now: UInt64 = 0) -> M.Transition? {
        let (p, _) = m.tryAcquirePermission(now: now)
        guard let p else {
            Issue.record("call not permitted in \(m.state)")
            return nil
        }
        return m.record(.init(failed: failed, durationNanos: durationMs * Self.ms), permission: p, now: now)
    }

    @Test func thresholdIsExactAtTheBoundary() {
        var m = M(config: config())
        for _ in 0..<5 { call(&m, failed: false) }
        for _ in 0..<4 { call(&m, failed: true) }
        #expect(m.state == .closed)
        // 10th call: 5 of 10 failed = 50 % ≥ 50 % → open.
        #expect(call(&m, failed: true) == M.Transition(from: .closed, to: .open))
        #expect(m.state == .open)
    }

    @Test func belowThresholdStaysClosed() {
        var m = M(config: config())
        for _ in 0..<6 { call(&m, failed: false) }
        for _ in 0..<4 { call(&m, failed: true) }
        #expect(m.state == .closed)
        #expect(m.failureRatePercent == 40)
    }

    @Test func minimumCallsBeforeJudging() {
        var m = M(config: config(window: 10, minimum: 5))
        for _ in 0..<4 { call(&m, failed: true) }
        #expect(m.state == .closed)
        #expect(m.failureRatePercent == nil)
        call(&m, failed: true)
        #expect(m.state == .open)
    }

    @Test func minimumAboveWindowIsCappedAtTheWindow() {
        var m = M(config: config(window: 4, minimum: 100))
        for _ in 0..<4 { call(&m, failed: true) }
        #expect(m.state == .open)
    }

    @Test func windowSlides() {
        var m = M(config: config(window: 4, minimum: 4))
        // F S S S → 25 %; then S slides the failure out.
        call(&m, failed: true)
        for _ in 0..<3 { call(&m, failed: false) }
        #expect(m.failureRatePercent == 25)
        call(&m, failed: false)
        #expect(m.failureRatePercent == 0)
        #expect(m.bufferedCalls == 4)
        // Two failures in the last four: 50 % opens.
        call(&m, failed: true)
        #expect(m.state == .closed)
        call(&m, failed: true)
        #expect(m.state == .open)
    }

    @Test func slowCallsOpenTheCircuit() {
        var m = M(config: config(window: 4, minimum: 4, slow: 50, slowMs: 1000))
        call(&m, failed: false, durationMs: 1000)  // exactly the threshold is not slow
        call(&m, failed: false, durationMs: 1001)
        call(&m, failed: false, durationMs: 10)
        #expect(m.state == .closed)
        call(&m, failed: false, durationMs: 5000)
        #expect(m.slowCallRatePercent == 50)
        #expect(m.state == .open)
    }

    @Test func defaultSlowRateNeedsEveryCallSlow() {
        var m = M(config: config(window: 3, minimum: 3, slow: 100))
        call(&m, failed: false, durationMs: 5000)
        call(&m, failed: false, durationMs: 5000)
        call(&m, failed: false, durationMs: 10)
        #expect(m.state == .closed)
        for _ in 0..<3 { call(&m, failed: false, durationMs: 5000) }
        #expect(m.state == .open)
    }

    func opened(halfOpen: Int = 3) -> M {
        var m = M(config: config(window: 2, minimum: 2, wait: 5000, halfOpen: halfOpen))
        call(&m, failed: true, now: 0)
        call(&m, failed: true, now: 0)
        #expect(m.state == .open)
        return m
    }

    @Test func openRefusesUntilTheWaitIsOver() {
        var m = opened()
        #expect(m.tryAcquirePermission(now: 4999 * Self.ms).0 == nil)
        #expect(m.notPermitted == 1)
        #expect(m.observedState(now: 4999 * Self.ms) == .open)
        #expect(m.observedState(now: 5000 * Self.ms) == .halfOpen)
        let (p, t) = m.tryAcquirePermission(now: 5000 * Self.ms)
        #expect(p != nil)
        #expect(t == M.Transition(from: .open, to: .halfOpen))
    }

    @Test func halfOpenPermitsOnlyItsTrialCalls() {
        var m = opened(halfOpen: 3)
        let now = 6000 * Self.ms
        let permits = (0..<4).map { _ in m.tryAcquirePermission(now: now).0 }
        #expect(permits.compactMap { $0 }.count == 3)
        #expect(permits[3] == nil)
        // A released permit frees its slot.
        m.releasePermission(permits[0]!)
        #expect(m.tryAcquirePermission(now: now).0 != nil)
    }

    @Test func halfOpenSuccessCloses() {
        var m = opened(halfOpen: 3)
        let now = 6000 * Self.ms
        let ps = (0..<3).map { _ in m.tryAcquirePermission(now: now).0! }
        #expect(m.record(.init(failed: true, durationNanos: 0), permission: ps[0], now: now) == nil)
        #expect(m.record(.init(failed: false, durationNanos: 0), permission: ps[1], now: now) == nil)
        // 1 of 3 failed: 33 % < 50 % → closed, with a fresh window.
        #expect(
            m.record(.init(failed: false, durationNanos: 0), permission: ps[2], now: now)
                == M.Transition(from: .halfOpen, to: .closed))
        #expect(m.bufferedCalls == 0)
    }

    @Test func halfOpenFailureReopens() {
        var m = opened(halfOpen: 2)
        let now = 6000 * Self.ms
        let ps = (0..<2).map { _ in m.tryAcquirePermission(now: now).0! }
        _ = m.record(.init(failed: true, durationNanos: 0), permission: ps[0], now: now)
        #expect(
            m.record(.init(failed: false, durationNanos: 0), permission: ps[1], now: now)
                == M.Transition(from: .halfOpen, to: .open))
        // The wait starts again from the reopening.
        #expect(m.tryAcquirePermission(now: now + 4999 * Self.ms).0 == nil)
        #expect(m.tryAcquirePermission(now: now + 5000 * Self.ms).0 != nil)
    }

    @Test func lateResultsFromAnEarlierStateAreIgnored() {
        var m = M(config: config(window: 2, minimum: 2))
        let (early, _) = m.tryAcquirePermission(now: 0)
        call(&m, failed: true)
        call(&m, failed: true)
        #expect(m.state == .open)
        #expect(m.record(.init(failed: false, durationNanos: 0), permission: early!, now: 0) == nil)
        #expect(m.state == .open)
    }

    @Test func unpermittedResultsCountOnlyWhileClosed() {
        var m = M(config: config(window: 2, minimum: 2))
        _ = m.recordUnpermitted(.init(failed: true, durationNanos: 0), now: 0)
        #expect(
            m.recordUnpermitted(.init(failed: true, durationNanos: 0), now: 0) == M.Transition(from: .closed, to: .open)
        )
        #expect(m.recordUnpermitted(.init(failed: false, durationNanos: 0), now: 0) == nil)
        #expect(m.bufferedCalls == 2)
    }

    @Test func operatorOverrides() {
        var m = M(config: config(window: 2, minimum: 2))
        #expect(m.forceOpen(now: 0) == M.Transition(from: .closed, to: .forcedOpen))
        #expect(m.tryAcquirePermission(now: UInt64.max / 2).0 == nil)
        #expect(m.disable(now: 0) == M.Transition(from: .forcedOpen, to: .disabled))
        for _ in 0..<5 { call(&m, failed: true) }
        #expect(m.state == .disabled)
        #expect(m.reset(now: 0) == M.Transition(from: .disabled, to: .closed))
        call(&m, failed: true)
        call(&m, failed: true)
        #expect(m.state == .open)
    }
}
