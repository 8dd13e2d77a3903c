import Testing

@testable import FluxActors

@Suite struct LenderRetryPolicyTests {
    /// Always answers the top of the range (UInt64.max), to make "full jitter" the ceiling.
    struct MaxRandom: RandomNumberGenerator {
        mutating func next() -> UInt64 { .max }
    }
    struct ZeroRandom: RandomNumberGenerator {
        mutating func next() -> UInt64 { 0 }
    }

    let policy = RetryPolicy(maxAttempts: 5, initialBackoffMs: 100, multiplier: 2, maxBackoffMs: 500)

    @Test func applyIsRetriedOnlyWhenNothingReachedTheLender() {
        var rng = MaxRandom()
        for f: RetryPolicy.Failure in [.couldNotConnect, .http(429), .http(503)] {
            #expect(policy.decide(after: f, operation: .apply, triesSoFar: 1, using: &rng) != .giveUp, "\(f)")
        }
        for f: RetryPolicy.Failure in [
            .timedOut, .connectionLost, .transport, .http(500), .http(502), .http(504), .http(400),
        ] {
            #expect(policy.decide(after: f, operation: .apply, triesSoFar: 1, using: &rng) == .giveUp, "\(f)")
        }
    }

    @Test func idempotentOperationsAreRetriedOnEveryFailure() {
        var rng = MaxRandom()
        for op: LenderOperation? in [.status, .disburse, .cancel, nil] {
            for f: RetryPolicy.Failure in [
                .couldNotConnect, .timedOut, .connectionLost, .transport, .http(500), .http(429), .http(408),
            ] {
                #expect(
                    policy.decide(after: f, operation: op, triesSoFar: 1, using: &rng) != .giveUp,
                    "\(f) \(String(describing: op))")
            }
            #expect(policy.decide(after: .http(400), operation: op, triesSoFar: 1, using: &rng) == .giveUp)
        }
    }

    @Test func cappedExponentialCeiling() {
        #expect((1...6).map { policy.ceilingMs(afterTries: $0) } == [100, 200, 400, 500, 500, 500])
        var none = policy
        none.jitter = .none
        var rng = ZeroRandom()
        #expect(none.decide(after: .timedOut, operation: .status, triesSoFar: 3, using: &rng) == .retry(afterMs: 400))
    }

    @Test func fullJitterStaysWithinZeroAndTheCeiling() {
        var hi = MaxRandom()
        var lo = ZeroRandom()
        #expect(policy.decide(after: .timedOut, operation: .status, triesSoFar: 2, using: &hi) == .retry(afterMs: 200))
        #expect(policy.decide(after: .timedOut, operation: .status, triesSoFar: 2, using: &lo) == .retry(afterMs: 0))
        var seeded = JitterRandom(state: 42)
        for k in 1...4 {
            guard
                case .retry(let ms) = policy.decide(after: .timedOut, operation: .status, triesSoFar: k, using: &seeded)
            else {
                Issue.record("gave up at \(k)")
                continue
            }
            #expect((0...policy.ceilingMs(afterTries: k)).contains(ms))
        }
    }

    @Test func stopsAtMaxAttempts() {
        var rng = MaxRandom()
        #expect(policy.decide(after: .couldNotConnect, operation: .apply, triesSoFar: 4, using: &rng) != .giveUp)
        #expect(policy.decide(after: .couldNotConnect, operation: .apply, triesSoFar: 5, using: &rng) == .giveUp)
        let once = RetryPolicy(maxAttempts: 1, initialBackoffMs: 100, multiplier: 2, maxBackoffMs: 100)
        #expect(once.decide(after: .timedOut, operation: .status, triesSoFar: 1, using: &rng) == .giveUp)
    }
}
