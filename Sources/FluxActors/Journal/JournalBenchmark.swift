import Foundation
import Logging

/// Raw store throughput for `make bench`: writes `events` events (checkout-like streams of five
/// events, ~200-byte payloads) straight to `store` in batches of each size, one batch at a time.
/// Uses fresh stream names on every run, so it can run against a journal that already has data.
/// Each batch size stops early after `maxSecondsPerSize` (small batches pay one fsync each) and
/// reports the rate of what it wrote.
public func runJournalBenchmark(
    store: any JournalStore, batchSizes: [Int], events: Int, maxSecondsPerSize: Double = 5
) async throws -> [(batch: Int, eventsPerSecond: Double)] {
    let run = UUID().uuidString.prefix(8)
    let clock = ContinuousClock()
    var results: [(batch: Int, eventsPerSecond: Double)] = []
    for batchSize in batchSizes where batchSize > 0 && events > 0 {
        let all = benchmarkEvents(count: events, streamPrefix: "bench-\(run)-b\(batchSize)-")
        let started = clock.now
        var index = 0
        while index < all.count, index == 0 || seconds(clock.now - started) < maxSecondsPerSize {
            let end = min(index + batchSize, all.count)
            let result = try await store.append(Array(all[index..<end]))
            if !result.refused.isEmpty { throw JournalError.corrupt("benchmark batch refused: \(result.refused)") }
            index = end
        }
        results.append((batchSize, Double(index) / seconds(clock.now - started)))
    }
    return results
}

/// Sustained write-behind throughput: checkout-like events appended to an `EventJournal` over
/// `store` as fast as it takes them, for `duration` — the buffer kept full, so the flusher always
/// has a whole batch to write — then flushed. Returns events made durable per second, the final
/// flush included. Back-pressure (`overloaded`) is honoured by waiting 1 ms, as a node would shed
/// work rather than buffer without bound.
public func runSustainedJournalBenchmark(
    store: any JournalStore, duration: Duration = .seconds(10), batchSize: Int = 1024
) async throws -> (events: Int, eventsPerSecond: Double) {
    let journal = EventJournal(
        store: store, batchSize: batchSize,
        logger: Logger(label: "flux.bench.journal", factory: { _ in SwiftLogNoOpLogHandler() }))
    await journal.start()
    let run = UUID().uuidString.prefix(8)
    let clock = ContinuousClock()
    let started = clock.now
    var appended = 0
    var chunk = 0
    var next = benchmarkEvents(count: 1000, streamPrefix: "sustained-\(run)-c0-")
    do {
        while clock.now - started < duration {
            if try await appendUnlessFull(journal, next) {
                appended += next.count
                chunk += 1
                next = benchmarkEvents(count: 1000, streamPrefix: "sustained-\(run)-c\(chunk)-")
            } else {
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        try await journal.flush()
    } catch {
        await journal.shutdown()
        throw error
    }
    let elapsed = seconds(clock.now - started)
    await journal.shutdown()
    return (appended, Double(appended) / elapsed)
}

/// Appends, or returns false when the journal is full (back-pressure).
private func appendUnlessFull(_ journal: EventJournal, _ events: [JournalEvent]) async throws(JournalError) -> Bool {
    do throws(JournalError) {
        try await journal.append(events)
        return true
    } catch .overloaded {
        return false
    }
}

/// Durability latency at a fixed offered load, through the write-behind `EventJournal`.
public struct JournalLatencyReport: Sendable, CustomStringConvertible {
    public var offeredEventsPerSecond: Double
    public var achievedEventsPerSecond: Double
    /// From `append` to `awaitDurable` returning, per checkout (five events).
    public var p50: Duration
    public var p99: Duration
    public var max: Duration
    public var checkouts: Int

    public var description: String {
        func ms(_ d: Duration) -> String { String(format: "%.2f ms", seconds(d) * 1000) }
        let rates = String(
            format: "offered %.0f ev/s, achieved %.0f ev/s", offeredEventsPerSecond, achievedEventsPerSecond)
        return "\(rates), \(checkouts) checkouts: durability p50 \(ms(p50)), p99 \(ms(p99)), max \(ms(max))"
    }
}

/// Offers `checkoutsPerSecond` checkouts (each: append five events, then await their durability)
/// for `duration` through an `EventJournal` on `store`, and measures append→durable latency.
public func runJournalLatencyBenchmark(
    store: any JournalStore, checkoutsPerSecond: Int = 2_000, duration: Duration = .seconds(3),
    batchSize: Int = 1024, flushInterval: Duration = .milliseconds(2)
) async throws -> JournalLatencyReport {
    let journal = EventJournal(
        store: store, batchSize: batchSize, flushInterval: flushInterval,
        logger: Logger(label: "flux.journal.bench", factory: { _ in SwiftLogNoOpLogHandler() }))
    await journal.start()
    let run = UUID().uuidString.prefix(8)
    let clock = ContinuousClock()
    let started = clock.now
    let total = Int(Double(checkoutsPerSecond) * seconds(duration))
    let latencies = try await withThrowingTaskGroup(of: Duration.self, returning: [Duration].self) { group in
        var offered = 0
        while offered < total {
            let due = min(total, Int(Double(checkoutsPerSecond) * seconds(clock.now - started)) + 1)
            while offered < due {
                let stream = "lat-\(run)-\(offered)"
                let events = benchmarkEvents(count: 5, streamPrefix: stream, singleStream: true)
                let appendedAt = clock.now
                try await journal.append(events)
                group.addTask {
                    try await journal.awaitDurable(stream: stream, upTo: 5)
                    return clock.now - appendedAt
                }
                offered += 1
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        var latencies: [Duration] = []
        latencies.reserveCapacity(total)
        for try await latency in group { latencies.append(latency) }
        return latencies
    }
    let elapsed = seconds(clock.now - started)
    await journal.shutdown()
    let sorted = latencies.sorted()
    func percentile(_ p: Double) -> Duration {
        sorted.isEmpty ? .zero : sorted[Swift.min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
    return JournalLatencyReport(
        offeredEventsPerSecond: Double(checkoutsPerSecond * 5), achievedEventsPerSecond: Double(total * 5) / elapsed,
        p50: percentile(0.50), p99: percentile(0.99), max: sorted.last ?? .zero, checkouts: sorted.count)
}

private func benchmarkEvents(count: Int, streamPrefix: String, singleStream: Bool = false) -> [JournalEvent] {
    let payload =
        #"{"merchant_id":"croma","store_id":"croma-blr-12","amount_paise":2500000,"#
        + #""tenure_months":9,"lender_id":"hero","idempotency_key":"0f8e2c1a-5b7d-4c3e-9a21-7e6f5d4c3b2a"}"#
    let types = ["Received", "Ranked", "LenderAttemptStarted", "LenderApproved", "Disbursed"]
    let now = Date()
    return (0..<count).map { n in
        let seq = Int64(singleStream ? n + 1 : n % 5 + 1)
        let stream = singleStream ? streamPrefix : "\(streamPrefix)\(n / 5)"
        return JournalEvent(
            shard: (singleStream ? abs(streamPrefix.hashValue) : n / 5) % 256, stream: stream, seq: seq,
            type: types[Int(seq - 1) % types.count], data: payload,
            writerEpoch: 0, at: now, closesStream: seq == 5)
    }
}

private func seconds(_ duration: Duration) -> Double {
    let (s, atto) = duration.components
    return Double(s) + Double(atto) / 1e18
}
