/// Capped exponential backoff with full jitter, and CONTRACT §5's rule of which failures may be
/// retried. Pure: the caller supplies the random source.
public struct RetryPolicy: Sendable, Equatable {
    public enum Jitter: String, Sendable { case full, none }

    /// Tries in all, the first one included.
    public var maxAttempts = 3
    public var initialBackoffMs = 100
    public var multiplier = 2.0
    public var maxBackoffMs = 2000
    public var jitter = Jitter.full

    public init() {}

    public init(maxAttempts: Int, initialBackoffMs: Int, multiplier: Double, maxBackoffMs: Int, jitter: Jitter = .full)
    {
        self.maxAttempts = maxAttempts
        self.initialBackoffMs = initialBackoffMs
        self.multiplier = multiplier
        self.maxBackoffMs = maxBackoffMs
        self.jitter = jitter
    }

    /// Why one HTTP try did not give an answer the operation can use.
    public enum Failure: Sendable, Equatable {
        /// The connection could not be made: the request was never sent.
        case couldNotConnect
        /// No reply in time: the request may have been received.
        case timedOut
        /// The connection broke after the request was (partly) sent.
        case connectionLost
        /// Any other transport failure (treated as "may have been received").
        case transport
        /// The lender answered with this HTTP status.
        case http(Int)
    }

    public enum Decision: Sendable, Equatable {
        case giveUp
        case retry(afterMs: Int)
    }

    /// May this failure be retried at all for this operation?
    /// `apply` only when the lender certainly did not take the request (no connection, 429, 503);
    /// `status`, `disburse`, `cancel` and auth calls are idempotent by reference and retried on
    /// every failure except a 4xx answer, which a retry would only repeat (408 and 429 excepted).
    public static func isRetryable(_ failure: Failure, operation: LenderOperation?) -> Bool {
        if operation == .apply {
            switch failure {
            case .couldNotConnect: return true
            case .http(let s): return s == 429 || s == 503
            case .timedOut, .connectionLost, .transport: return false
            }
        }
        switch failure {
        case .couldNotConnect, .timedOut, .connectionLost, .transport: return true
        case .http(let s): return s >= 500 || s == 408 || s == 429
        }
    }

    /// The largest delay before try `triesSoFar + 1`: min(cap, initial · multiplier^(triesSoFar − 1)).
    public func ceilingMs(afterTries triesSoFar: Int) -> Int {
        var d = Double(initialBackoffMs)
        var k = 1
        while k < triesSoFar, d < Double(maxBackoffMs) {
            d *= multiplier
            k += 1
        }
        return Int(min(d, Double(maxBackoffMs)))
    }

    /// Retry? after how long? `triesSoFar` ≥ 1 counts the tries already made (this one included).
    /// `operation` nil means an auth call.
    public func decide(
        after failure: Failure, operation: LenderOperation?, triesSoFar: Int,
        using rng: inout some RandomNumberGenerator
    ) -> Decision {
        guard triesSoFar < maxAttempts, Self.isRetryable(failure, operation: operation) else { return .giveUp }
        let ceiling = ceilingMs(afterTries: triesSoFar)
        switch jitter {
        case .none: return .retry(afterMs: ceiling)
        case .full:
            // Uniform in 0...ceiling: the high word of random × (ceiling + 1).
            let r = (UInt64(ceiling) + 1).multipliedFullWidth(by: rng.next()).high
            return .retry(afterMs: Int(r))
        }
    }
}
