/// Settings of FluxWire connections (both the server and the peers).
public struct WireConfiguration: Sendable, Hashable {
    public var limits: WireLimits
    /// A connection that has not completed the handshake by then is closed.
    public var handshakeTimeout: Duration
    /// Default per-ask timeout (an ask can pass its own).
    public var askTimeout: Duration
    public var connectTimeout: Duration
    /// Asks waiting for a reply on one client connection / requests being
    /// handled on one server connection; more are refused with `tooManyInFlight`.
    public var maxInFlight: Int
    public var backoff: WireBackoff.Policy

    public init(
        limits: WireLimits = .default,
        handshakeTimeout: Duration = .seconds(5),
        askTimeout: Duration = .seconds(5),
        connectTimeout: Duration = .seconds(2),
        maxInFlight: Int = 1024,
        backoff: WireBackoff.Policy = .init()
    ) {
        self.limits = limits
        self.handshakeTimeout = handshakeTimeout
        self.askTimeout = askTimeout
        self.connectTimeout = connectTimeout
        self.maxInFlight = max(1, maxInFlight)
        self.backoff = backoff
    }
}

/// Reconnect backoff: after `n` consecutive failed connects the next attempt
/// waits `min(cap, base · 2^(n-1))`, scaled by a random factor in
/// `[1 - jitter, 1]` so that nodes do not reconnect in lock-step. Pure; the
/// random factor is passed in.
public struct WireBackoff: Sendable, Hashable {
    public struct Policy: Sendable, Hashable {
        public var base: Duration
        public var cap: Duration
        /// Fraction of the delay that is randomised, 0...1.
        public var jitter: Double

        public init(base: Duration = .milliseconds(100), cap: Duration = .seconds(5), jitter: Double = 0.5) {
            self.base = base
            self.cap = max(cap, base)
            self.jitter = min(max(jitter, 0), 1)
        }
    }

    public let policy: Policy
    public private(set) var failures: Int = 0

    public init(policy: Policy) { self.policy = policy }

    /// Delay before the next attempt after one more failure; `random` in 0...1.
    public mutating func failed(random: Double) -> Duration {
        failures += 1
        return delay(random: random)
    }

    public mutating func succeeded() { failures = 0 }

    /// Delay for the current failure count (zero when there were none).
    public func delay(random: Double) -> Duration {
        guard failures > 0 else { return .zero }
        var delay = policy.base
        for _ in 1..<min(failures, 32) {
            delay *= 2
            if delay >= policy.cap { break }
        }
        delay = min(delay, policy.cap)
        let factor = 1 - policy.jitter * min(max(random, 0), 1)
        return delay * factor
    }
}
