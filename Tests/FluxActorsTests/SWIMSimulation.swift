@testable import FluxActors

/// A seeded, deterministic cluster of `SWIMStateMachine`s: a virtual clock, an event queue and a
/// network that loses and delays messages. Nothing sleeps; a run of hundreds of simulated
/// seconds takes milliseconds to a second.
struct SWIMSimulation {
    struct StatusChange {
        var at: Duration
        var observer: NodeID
        var member: NodeID
        var status: SWIMStatus
        var incarnation: UInt64
    }

    private enum Event {
        case tick(node: Int, generation: Int)
        case deliver(SWIMMessage, from: NodeID, to: Int)
        case timer(SWIMTimer, node: Int, generation: Int)
    }

    private struct Scheduled {
        var at: Duration
        var order: UInt64
        var event: Event
        func precedes(_ o: Scheduled) -> Bool { at != o.at ? at < o.at : order < o.order }
    }

    let settings: SWIMSettings
    /// Probability that any one message is lost.
    var loss: Double
    /// One-way delay, uniform in this range (milliseconds).
    var delayMS: ClosedRange<Int>
    private(set) var now: Duration = .zero
    private(set) var machines: [SWIMStateMachine?]
    private(set) var changes: [StatusChange] = []
    private(set) var messagesSent = 0
    /// Nodes cut off from everyone: their messages in and out are dropped.
    var isolated: Set<Int> = []
    private var generations: [Int]
    private var queue: [Scheduled] = []
    private var order: UInt64 = 0
    private var rng: SWIMRandom
    private var wireIndex: [String: Int] = [:]

    init(
        nodes: Int, seed: UInt64, settings: SWIMSettings = SWIMSettings(), loss: Double = 0,
        delayMS: ClosedRange<Int> = 1...20
    ) {
        self.settings = settings
        self.loss = loss
        self.delayMS = delayMS
        self.machines = Array(repeating: nil, count: nodes)
        self.generations = Array(repeating: 0, count: nodes)
        self.rng = SWIMRandom(seed: seed)
        for i in 0..<nodes { wireIndex[Self.wire(i)] = i }
    }

    static func id(_ i: Int) -> NodeID { NodeID("n\(i < 10 ? "0" : "")\(i)") }
    static func wire(_ i: Int) -> String { "10.0.0.\(i):7400" }
    static func http(_ i: Int) -> String { "10.0.0.\(i):8080" }

    func machine(_ i: Int) -> SWIMStateMachine? { machines[i] }
    var running: [Int] { machines.indices.filter { machines[$0] != nil } }

    /// Start node `i` (a fresh process) and join through `seeds` (node indexes).
    mutating func start(_ i: Int, seeds: [Int], incarnation: UInt64 = 0) {
        generations[i] += 1
        machines[i] = SWIMStateMachine(
            node: Self.id(i), wire: Self.wire(i), http: Self.http(i), incarnation: incarnation, settings: settings,
            seed: rng.next())
        // A random phase, so nodes do not all probe at the same instant.
        let phase = settings.probeInterval * Double.random(in: 0..<1, using: &rng)
        push(now + phase, .tick(node: i, generation: generations[i]))
        let directives = machines[i]!.join(seeds: seeds.map(Self.wire))
        perform(directives, by: i)
    }

    /// The process dies: it stops answering and sending at once.
    mutating func kill(_ i: Int) {
        machines[i] = nil
        generations[i] += 1
    }

    mutating func leave(_ i: Int) {
        guard machines[i] != nil else { return }
        let directives = machines[i]!.leave()
        perform(directives, by: i)
    }

    mutating func run(for d: Duration) { run(until: now + d) }

    mutating func run(until end: Duration) {
        while let next = queue.first, next.at <= end {
            let e = pop()
            now = e.at
            handle(e.event)
        }
        now = end
    }

    /// Runs until `done` holds or `limit` passes; returns the time `done` was first seen to hold.
    /// `done` is checked after every event, but at most once per `every` of simulated time.
    mutating func run(
        until done: (SWIMSimulation) -> Bool, limit: Duration, every: Duration = .milliseconds(50)
    ) -> Duration? {
        let end = now + limit
        var nextCheck = now
        while let next = queue.first, next.at <= end {
            let e = pop()
            now = e.at
            handle(e.event)
            if now >= nextCheck {
                if done(self) { return now }
                nextCheck = now + every
            }
        }
        return done(self) ? now : nil
    }

    /// What node `i` believes about everyone.
    func view(of i: Int) -> [NodeID: SWIMMember] {
        guard let m = machines[i] else { return [:] }
        return Dictionary(uniqueKeysWithValues: m.members.map { ($0.node, $0) })
    }

    /// True when every running node sees exactly the running nodes as alive.
    func converged() -> Bool {
        let alive = running.map(Self.id)
        return running.allSatisfy { i in
            let m = machines[i]!
            return m.clusterSize == alive.count && alive.allSatisfy { m.status(of: $0) == .alive }
        }
    }

    // MARK: - Engine

    private mutating func handle(_ event: Event) {
        switch event {
        case .tick(let i, let g):
            guard g == generations[i], machines[i] != nil else { return }
            push(now + settings.probeInterval, .tick(node: i, generation: g))
            let directives = machines[i]!.tick(now: now)
            perform(directives, by: i)
        case .deliver(let message, let from, let i):
            guard machines[i] != nil, !isolated.contains(i) else { return }
            let directives = machines[i]!.receive(message, from: from, now: now)
            perform(directives, by: i)
        case .timer(let timer, let i, let g):
            guard g == generations[i], machines[i] != nil else { return }
            let directives: [SWIMDirective]
            switch timer {
            case .pingTimeout(let s): directives = machines[i]!.pingTimedOut(sequence: s, now: now)
            case .indirectTimeout(let s): directives = machines[i]!.indirectTimedOut(sequence: s, now: now)
            case .suspicion(let n): directives = machines[i]!.suspicionTimedOut(n, now: now)
            }
            perform(directives, by: i)
        }
    }

    private mutating func perform(_ directives: [SWIMDirective], by i: Int) {
        let me = Self.id(i)
        for d in directives {
            switch d {
            case .send(let message, _, let wire):
                messagesSent += 1
                guard let target = wireIndex[wire], !isolated.contains(i) else { continue }
                if loss > 0, Double.random(in: 0..<1, using: &rng) < loss { continue }
                let delay = Duration.milliseconds(Int.random(in: delayMS, using: &rng))
                push(now + delay, .deliver(message, from: me, to: target))
            case .schedule(let timer, let after):
                push(now + after, .timer(timer, node: i, generation: generations[i]))
            case .memberChanged(let m, _):
                changes.append(
                    StatusChange(at: now, observer: me, member: m.node, status: m.status, incarnation: m.incarnation))
            case .suspicionTimeout, .refuted, .memberRemoved:
                break
            }
        }
    }

    // Binary heap on (time, insertion order): deterministic for a given seed.
    private mutating func push(_ at: Duration, _ event: Event) {
        order += 1
        queue.append(Scheduled(at: at, order: order, event: event))
        var c = queue.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            guard queue[c].precedes(queue[p]) else { break }
            queue.swapAt(c, p)
            c = p
        }
    }

    private mutating func pop() -> Scheduled {
        let top = queue[0]
        let last = queue.removeLast()
        if !queue.isEmpty {
            queue[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1
                let r = l + 1
                var m = p
                if l < queue.count, queue[l].precedes(queue[m]) { m = l }
                if r < queue.count, queue[r].precedes(queue[m]) { m = r }
                if m == p { break }
                queue.swapAt(p, m)
                p = m
            }
        }
        return top
    }
}
