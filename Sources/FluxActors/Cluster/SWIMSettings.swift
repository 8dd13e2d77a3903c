import Foundation

/// SWIM/Lifeguard tuning. The first five are cluster.conf's `[swim]` keys (CONTRACT §1); the
/// rest have fixed defaults that suit clusters of up to a few hundred nodes.
public struct SWIMSettings: Sendable, Equatable {
    /// `probe_interval_ms`: one protocol period; each period a node probes one member.
    public var probeInterval: Duration
    /// `ping_timeout_ms`: how long a direct ping may take before indirect probes are sent.
    public var pingTimeout: Duration
    /// `indirect_probes`: how many members are asked to ping an unresponsive target (k); also
    /// Lifeguard's K, the number of independent confirmations that bring a suspicion to its minimum.
    public var indirectProbes: Int
    /// `suspicion_mult`: minimum suspicion timeout = mult · log10(N+1) · probe interval.
    public var suspicionMult: Int
    /// `suspicion_max_mult`: maximum suspicion timeout = this × the minimum.
    public var suspicionMaxMult: Int
    /// How long indirect probes may take; nil means the rest of the period
    /// (probe interval − ping timeout).
    public var indirectTimeout: Duration?
    /// λ: each piece of news is piggybacked ⌈λ · log10(N+1)⌉ times by each node that learns it.
    public var gossipMult: Int
    /// Most pieces of news on one message (besides the sender's own record and, for a suspect
    /// receiver, its suspicion).
    public var maxPiggyback: Int
    /// Most records in the full list a node receives when it joins (its own included); matches
    /// FluxWire's bound on updates per message.
    public var maxFullSync: Int
    /// How long dead and left members stay listed before they are forgotten (CONTRACT §4: ≥ 1 h).
    public var deadRetention: Duration

    public init(
        probeInterval: Duration = .milliseconds(1000),
        pingTimeout: Duration = .milliseconds(500),
        indirectProbes: Int = 3,
        suspicionMult: Int = 4,
        suspicionMaxMult: Int = 6,
        indirectTimeout: Duration? = nil,
        gossipMult: Int = 4,
        maxPiggyback: Int = 16,
        maxFullSync: Int = 256,
        deadRetention: Duration = .seconds(3600)
    ) {
        self.probeInterval = probeInterval
        self.pingTimeout = pingTimeout
        self.indirectProbes = indirectProbes
        self.suspicionMult = suspicionMult
        self.suspicionMaxMult = suspicionMaxMult
        self.indirectTimeout = indirectTimeout
        self.gossipMult = gossipMult
        self.maxPiggyback = maxPiggyback
        self.maxFullSync = maxFullSync
        self.deadRetention = deadRetention
    }

    /// From cluster.conf's `[swim]` table (milliseconds), validated.
    public static func fromConfig(
        probeIntervalMS: Int = 1000, pingTimeoutMS: Int = 500, indirectProbes: Int = 3,
        suspicionMult: Int = 4, suspicionMaxMult: Int = 6
    ) throws(SWIMSettingsError) -> SWIMSettings {
        let s = SWIMSettings(
            probeInterval: .milliseconds(probeIntervalMS), pingTimeout: .milliseconds(pingTimeoutMS),
            indirectProbes: indirectProbes, suspicionMult: suspicionMult,
            suspicionMaxMult: suspicionMaxMult)
        try s.validate()
        return s
    }

    public func validate() throws(SWIMSettingsError) {
        func fail(_ key: String, _ why: String) -> SWIMSettingsError {
            SWIMSettingsError(key: key, message: why)
        }
        guard probeInterval >= .milliseconds(10), probeInterval <= .seconds(60) else {
            throw fail("probe_interval_ms", "must be between 10 and 60000")
        }
        guard pingTimeout >= .milliseconds(1), pingTimeout < probeInterval else {
            throw fail("ping_timeout_ms", "must be at least 1 and less than probe_interval_ms")
        }
        guard (0...16).contains(indirectProbes) else {
            throw fail("indirect_probes", "must be between 0 and 16")
        }
        guard (1...100).contains(suspicionMult) else {
            throw fail("suspicion_mult", "must be between 1 and 100")
        }
        guard (1...100).contains(suspicionMaxMult) else {
            throw fail("suspicion_max_mult", "must be between 1 and 100")
        }
        if let indirectTimeout, indirectTimeout <= .zero {
            throw fail("indirect_timeout", "must be positive")
        }
        guard (1...100).contains(gossipMult) else { throw fail("gossip_mult", "must be between 1 and 100") }
        guard (1...1000).contains(maxPiggyback) else {
            throw fail("max_piggyback", "must be between 1 and 1000")
        }
        guard maxFullSync >= 1 else { throw fail("max_full_sync", "must be at least 1") }
        guard deadRetention >= .zero else { throw fail("dead_retention", "must not be negative") }
    }

    /// How long indirect probes get.
    public var effectiveIndirectTimeout: Duration {
        if let indirectTimeout { return indirectTimeout }
        let rest = probeInterval - pingTimeout
        return rest > .zero ? rest : pingTimeout
    }

    /// Lifeguard's minimum suspicion timeout for a cluster of `members` nodes (self included).
    public func suspicionMinimum(members: Int) -> Duration {
        probeInterval * (Double(suspicionMult) * log10(Double(max(members, 1)) + 1))
    }

    /// K: confirmations that bring a suspicion down to its minimum. Never more than the other
    /// members that could confirm (N − 2: not the suspect, not the first suspecter).
    public func expectedConfirmations(members: Int) -> Int {
        max(0, min(indirectProbes, members - 2))
    }

    /// Lifeguard: max(min, max − (max − min) · log(C+1) / log(K+1)) with C independent
    /// confirmations (not counting the first suspecter) and K expected.
    public func suspicionTimeout(members: Int, confirmations: Int) -> Duration {
        let lo = suspicionMinimum(members: members)
        let hi = lo * suspicionMaxMult
        let k = expectedConfirmations(members: members)
        guard k >= 1 else { return lo }
        let c = max(0, confirmations)
        let fraction = log(Double(c) + 1) / log(Double(k) + 1)
        let t = hi - (hi - lo) * fraction
        return t > lo ? t : lo
    }

    /// How many times each node piggybacks one piece of news: ⌈λ · log10(N+1)⌉, at least 1.
    public func gossipTransmissions(members: Int) -> Int {
        max(1, Int((Double(gossipMult) * log10(Double(max(members, 1)) + 1)).rounded(.up)))
    }
}

/// A `[swim]` setting out of range.
public struct SWIMSettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var message: String
    public var description: String { "swim.\(key) \(message)" }
}
