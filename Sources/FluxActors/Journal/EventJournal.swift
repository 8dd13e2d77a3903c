import Foundation
import Logging
import Metrics
import Synchronization

/// The node's write-behind journal (ARCHITECTURE principle 3). Actors `append` and go on; a
/// flusher writes batches to the store (group commit); before an effect the outside can see, an
/// actor calls `awaitDurable`.
///
/// - Back-pressure: at most `capacity` events are buffered (waiting or being written); `append`
///   beyond that throws `.overloaded` and the caller must not take new work.
/// - Store failures: the batch is kept and retried with capped exponential backoff; `isAvailable`
///   is false meanwhile; the journal resumes by itself when the store answers again. A failed
///   attempt may have written some streams (a lost answer, a PostgreSQL lane that committed): on
///   the retry, a stream whose events are found stored exactly as sent counts as written, not
///   refused (`withoutWrittenBefore`). No appended
///   event is dropped silently: it is written, refused (its waiters are told), or — only when the
///   journal is shut down while the store is failing — reported lost in the log and to its waiters.
/// - Early refusal: an append of a seq the journal knows is durable for its stream throws
///   `.refused(.sequenceConflict)` at once, buffering nothing and leaving the stream as it was.
/// - Refusal (the single-writer rule, principle 2): when the store refuses a stream, every waiter
///   on that stream's unwritten events gets `.refused`, its other buffered events are dropped, and
///   later appends to it throw `.refused` until `clearRefusal(stream:)` (called after the owner
///   reloads the stream) or `acquireShard` for the stream's shard.
///
/// Call `shutdown()` before dropping the journal: the flusher task keeps it alive until then.
public actor EventJournal {
    private let store: any JournalStore
    private let batchSize: Int
    private let flushInterval: Duration
    private let capacity: Int
    private let firstRetryDelay: Duration
    private let maxRetryDelay: Duration
    private let logger: Logger
    private let clock = ContinuousClock()

    // Buffer: `pending[pendingHead...]` waits for the flusher; `inFlight` is being written.
    private var pending: [JournalEvent] = []
    private var pendingHead = 0
    private var inFlight: [JournalEvent] = []
    /// Events of refused streams that the current batch skipped; settled with the batch.
    private var inFlightSkipped = 0
    private var oldestPendingAt: ContinuousClock.Instant?

    // Positions in append order: `flush` waits until `settled` reaches what was appended.
    private var appendedTotal: UInt64 = 0
    private var settledTotal: UInt64 = 0
    private var completedBatches: UInt64 = 0
    private var flushWaiters: [(target: UInt64, continuation: CheckedContinuation<Result<Void, JournalError>, Never>)] =
        []

    private struct Waiter {
        let id: UInt64
        let seq: Int64
        let continuation: CheckedContinuation<Result<Void, JournalError>, Never>
    }

    /// What the journal knows of a stream that has events buffered, waiters or a refusal.
    /// Streams with none of these are forgotten (all their appended events are durable).
    private struct StreamState {
        var shard: Int
        /// Highest seq appended / known durable.
        var appended: Int64
        var durable: Int64
        /// Events of this stream in `pending` or `inFlight`.
        var buffered: Int
        var refusal: AppendRefusal?
        var waiters: [Waiter] = []

        var isForgettable: Bool { buffered == 0 && waiters.isEmpty && refusal == nil }
    }
    private var streams: [String: StreamState] = [:]
    private var refusedStreamCount = 0
    private var nextWaiterID: UInt64 = 0

    private enum State { case running, stopping, stopped }
    private var state = State.running
    private var flusher: Task<Void, Never>?
    private var storeHealthy = true

    private enum Sleep { case idle, linger, backoff }
    private var wake: CheckedContinuation<Void, Never>?
    private var sleeping: Sleep?
    private var wakeTimer: Task<Void, Never>?
    private var wakeGeneration: UInt64 = 0

    private let eventsWritten = Counter(label: "flux_journal_events_written_total")
    private let appendsRefused = Counter(label: "flux_journal_appends_refused_total")
    private let appendsOverloaded = Counter(label: "flux_journal_appends_overloaded_total")
    private let flushTimer = Metrics.Timer(label: "flux_journal_flush_seconds")
    private let bufferGauge = Gauge(label: "flux_journal_buffered_events")

    public init(
        store: any JournalStore, batchSize: Int = 1024, flushInterval: Duration = .milliseconds(2),
        capacity: Int = 100_000, logger: Logger, retryDelay: Duration = .milliseconds(10),
        maxRetryDelay: Duration = .seconds(1)
    ) {
        precondition(batchSize > 0 && capacity > 0, "journal batch size and capacity must be positive")
        self.store = store
        self.batchSize = batchSize
        self.flushInterval = flushInterval
        self.capacity = capacity
        self.logger = logger
        self.firstRetryDelay = retryDelay
        self.maxRetryDelay = max(retryDelay, maxRetryDelay)
    }

    /// Starts the flusher (idempotent; `append` also starts it).
    public func start() {
        guard flusher == nil, state != .stopped else { return }
        flusher = Task { await self.runFlusher() }
    }

    private var bufferedCount: Int { pending.count - pendingHead + inFlight.count }

    /// False while the store is failing or the buffer is full: the node should not take new work.
    public var isAvailable: Bool { state == .running && storeHealthy && bufferedCount < capacity }

    /// `isAvailable` as of the last change, readable without a hop onto the journal (the
    /// checkout's back-pressure check).
    public nonisolated var isAvailableNow: Bool { available.load(ordering: .relaxed) }
    private nonisolated let available = Atomic<Bool>(true)
    private func publishAvailability() { available.store(isAvailable, ordering: .relaxed) }

    /// Events waiting to be written or being written.
    public var bufferedEvents: Int { bufferedCount }

    /// Callers suspended in `awaitDurable` (for tests and metrics).
    var durabilityWaiters: Int { streams.values.reduce(0) { $0 + $1.waiters.count } }

    // MARK: - Append

    /// Buffers `events` (in order; each stream's events in seq order, continuing its last seq).
    /// All or nothing: throws `.overloaded` when they do not fit, `.refused` when one of their
    /// streams is refused, `.unavailable` after shutdown.
    public func append(_ events: [JournalEvent]) throws(JournalError) {
        guard state == .running else { throw .unavailable("the journal is shut down") }
        if events.isEmpty { return }
        // One pass over the streams it knows: a refused stream stays refused; and a seq this
        // journal already knows to be durable is stored, so the append conflicts and is refused
        // now rather than by the store, where the refusal would also stop the stream's writer and
        // drop its buffered events (the stream is not marked refused).
        for event in events {
            guard let known = streams[event.stream] else { continue }
            if let refusal = known.refusal {
                appendsRefused.increment()
                throw .refused(stream: event.stream, refusal)
            }
            if event.seq <= known.durable {
                appendsRefused.increment()
                throw .refused(
                    stream: event.stream, .sequenceConflict(expected: known.appended + 1, got: event.seq))
            }
        }
        guard bufferedCount + events.count <= capacity else {
            appendsOverloaded.increment()
            throw .overloaded
        }
        for event in events {
            if let index = streams.index(forKey: event.stream) {
                streams.values[index].appended = max(streams.values[index].appended, event.seq)
                streams.values[index].buffered += 1
            } else {
                // Everything before the first buffered event was loaded from the journal: durable.
                streams[event.stream] = StreamState(
                    shard: event.shard, appended: event.seq, durable: event.seq - 1, buffered: 1)
            }
        }
        if pending.count == pendingHead { oldestPendingAt = clock.now }
        pending.append(contentsOf: events)
        appendedTotal += UInt64(events.count)
        bufferGauge.record(bufferedCount)
        publishAvailability()
        if flusher == nil { start() }
        switch sleeping {
        case .idle: wakeUp()
        case .linger where pending.count - pendingHead >= batchSize: wakeUp()
        default: break
        }
    }

    // MARK: - Durability barriers

    /// Returns when `stream`'s events up to `seq` are durable (at once if they already are).
    /// A `seq` beyond the last appended one means the last appended one. Throws `.refused` when
    /// the store refused them, `.unavailable` when the journal shut down first or the task is
    /// cancelled.
    public func awaitDurable(stream: String, upTo seq: Int64) async throws(JournalError) {
        guard let known = streams[stream] else { return }  // nothing buffered: all durable
        let target = min(seq, known.appended)
        if known.durable >= target { return }
        if let refusal = known.refusal { throw .refused(stream: stream, refusal) }
        guard state != .stopped else { throw .unavailable("the journal shut down before these events were durable") }
        nextWaiterID &+= 1
        let id = nextWaiterID
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, JournalError>, Never>) in
                // Checked again: nothing may have changed since, but this is where it must hold.
                guard let index = streams.index(forKey: stream), streams.values[index].durable < target else {
                    continuation.resume(returning: .success(()))
                    return
                }
                if Task.isCancelled {
                    continuation.resume(returning: .failure(.unavailable("cancelled while awaiting durability")))
                } else if let refusal = streams.values[index].refusal {
                    continuation.resume(returning: .failure(.refused(stream: stream, refusal)))
                } else if state == .stopped {
                    continuation.resume(
                        returning: .failure(.unavailable("the journal shut down before these events were durable")))
                } else {
                    streams.values[index].waiters.append(Waiter(id: id, seq: target, continuation: continuation))
                }
            }
        } onCancel: {
            Task { await self.cancelWaiter(stream: stream, id: id) }
        }
        try result.get()
    }

    private func cancelWaiter(stream: String, id: UInt64) {
        guard let index = streams.index(forKey: stream),
            let position = streams.values[index].waiters.firstIndex(where: { $0.id == id })
        else { return }
        let waiter = streams.values[index].waiters.remove(at: position)
        waiter.continuation.resume(returning: .failure(.unavailable("cancelled while awaiting durability")))
        if streams.values[index].isForgettable { streams.remove(at: index) }
    }

    /// Returns when everything appended before the call is durable or refused; writes at once
    /// rather than waiting for the flush interval.
    public func flush() async throws(JournalError) {
        let target = appendedTotal
        if settledTotal >= target { return }
        guard state != .stopped else { throw .unavailable("the journal shut down before these events were durable") }
        if flusher == nil { start() }
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Void, JournalError>, Never>) in
            flushWaiters.append((target, continuation))
            if sleeping != nil { wakeUp() }
        }
        try result.get()
    }

    // MARK: - Reads and pass-throughs

    /// The stream's durable events followed by those still buffered, in seq order; only those
    /// after `afterSeq` (a snapshot's seq) when given.
    public func read(stream: String, afterSeq: Int64 = 0) async throws(JournalError) -> [JournalEvent] {
        var events: [JournalEvent] = []
        var last: Int64 = afterSeq
        var batches = completedBatches
        while true {
            // A batch that completes while the store is being read may have left the buffer
            // without being in what was read: read again until no batch completed meanwhile.
            events += try await store.read(stream: stream, afterSeq: last)
            last = events.last?.seq ?? last
            if completedBatches == batches { break }
            batches = completedBatches
        }
        guard let known = streams[stream], known.buffered > 0, known.refusal == nil else { return events }
        for event in inFlight where event.stream == stream && event.seq > last { events.append(event) }
        for event in pending[pendingHead...] where event.stream == stream && event.seq > last { events.append(event) }
        return events
    }

    /// Lets a refused stream be appended to again (after its owner reloaded it from the journal).
    /// Waits until the stream's dropped events have left the buffer.
    public func clearRefusal(stream: String) async throws(JournalError) {
        guard streams[stream]?.refusal != nil else { return }
        try await flush()
        guard let index = streams.index(forKey: stream), streams.values[index].refusal != nil else { return }
        streams.values[index].refusal = nil
        refusedStreamCount -= 1
        if streams.values[index].isForgettable { streams.remove(at: index) }
    }

    /// Takes `shard` for `owner` (new epoch); clears the refusals of the shard's streams, whose
    /// entities the new owner reloads.
    public func acquireShard(_ shard: Int, owner: String) async throws(JournalError) -> Int64 {
        let epoch = try await store.acquireShard(shard, owner: owner)
        let refused = streams.filter { $0.value.refusal != nil && $0.value.shard == shard }.map(\.key)
        for stream in refused { try await clearRefusal(stream: stream) }
        return epoch
    }

    public func shardOwnerships() async throws(JournalError) -> [ShardOwnership] {
        try await store.shardOwnerships()
    }

    public func openStreams(shards: [Int], prefix: String) async throws(JournalError) -> [String] {
        try await store.openStreams(shards: shards, prefix: prefix)
    }

    /// Saves a stream's snapshot once the stream's events up to `snapshot.seq` are durable, so a
    /// snapshot never describes events the journal might still refuse or lose.
    public func saveSnapshot(_ snapshot: JournalSnapshot) async throws(JournalError) {
        try await awaitDurable(stream: snapshot.stream, upTo: snapshot.seq)
        try await store.saveSnapshot(snapshot)
    }

    public func latestSnapshot(stream: String) async throws(JournalError) -> JournalSnapshot? {
        try await store.latestSnapshot(stream: stream)
    }

    // MARK: - Shutdown

    /// Stops taking appends, writes what it can (one more try if the store is failing), stops the
    /// flusher. Waiters on events that could not be written get `.unavailable`; the loss is logged.
    /// Does not close the store.
    public func shutdown() async {
        switch state {
        case .stopped: return
        case .stopping: await flusher?.value
        case .running:
            state = .stopping
            publishAvailability()
            if flusher == nil, bufferedCount > 0 { start() }
            if sleeping != nil { wakeUp() }
            await flusher?.value
            finishShutdown()
        }
    }

    private func finishShutdown() {
        guard state == .stopping else { return }
        state = .stopped
        publishAvailability()
        let lost = bufferedCount
        if lost > 0 {
            logger.error(
                "journal shut down with events that are not durable",
                metadata: ["events": "\(lost)", "streams": "\(streams.values.filter { $0.buffered > 0 }.count)"])
        }
        let error = JournalError.unavailable("the journal shut down before these events were durable")
        for index in streams.indices {
            for waiter in streams.values[index].waiters { waiter.continuation.resume(returning: .failure(error)) }
            streams.values[index].waiters = []
            streams.values[index].buffered = 0
        }
        for waiter in flushWaiters { waiter.continuation.resume(returning: .failure(error)) }
        flushWaiters = []
        pending = []
        pendingHead = 0
        inFlight = []
        bufferGauge.record(0)
    }

    // MARK: - Flusher

    private func runFlusher() async {
        while true {
            if pending.count == pendingHead {
                if state != .running { return }
                await sleep(.idle, until: nil)
                continue
            }
            let urgent = state != .running || !flushWaiters.isEmpty || pending.count - pendingHead >= batchSize
            if !urgent, let oldest = oldestPendingAt {
                let deadline = oldest.advanced(by: flushInterval)
                if clock.now < deadline {
                    await sleep(.linger, until: deadline)
                    continue
                }
            }
            let batch = takeBatch()
            if batch.isEmpty {
                settle(written: [], refused: [:])
                continue
            }
            guard await write(batch) else { return }
        }
    }

    /// Up to `batchSize` events from the front of the buffer; events of refused streams are skipped.
    private func takeBatch() -> [JournalEvent] {
        let available = pending.count - pendingHead
        var batch: [JournalEvent] = []
        if refusedStreamCount == 0 {
            let end = pendingHead + min(batchSize, available)
            batch = Array(pending[pendingHead..<end])
            pendingHead = end
        } else {
            batch.reserveCapacity(min(batchSize, available))
            while pendingHead < pending.count, batch.count < batchSize {
                let event = pending[pendingHead]
                pendingHead += 1
                if let index = streams.index(forKey: event.stream), streams.values[index].refusal != nil {
                    streams.values[index].buffered -= 1
                    inFlightSkipped += 1
                } else {
                    batch.append(event)
                }
            }
        }
        // Drop the consumed front now and then: amortised O(1) per event.
        if pendingHead == pending.count {
            pending.removeAll(keepingCapacity: pending.count <= 4 * batchSize)
            pendingHead = 0
            oldestPendingAt = nil
        } else {
            if pendingHead >= 4096, pendingHead * 2 >= pending.count {
                pending.removeFirst(pendingHead)
                pendingHead = 0
            }
            // They arrived before now; they are written right after this batch if they are overdue.
            oldestPendingAt = clock.now
        }
        inFlight = batch
        return batch
    }

    /// Writes one batch, retrying while the store fails. False when the journal is shutting down
    /// and the store still fails (the batch stays in `inFlight`).
    private func write(_ batch: [JournalEvent]) async -> Bool {
        var delay = firstRetryDelay
        // After a failed attempt some of the batch's streams may be stored already (the commit's
        // answer was lost; a PostgreSQL lane committed while another failed): the retry then
        // finds them as duplicates, which must not refuse — and stop — their writers.
        var retrying = false
        while true {
            let started = clock.now
            do throws(JournalError) {
                let result = try await store.append(batch)
                var refused = result.refused
                if retrying, !refused.isEmpty { refused = try await withoutWrittenBefore(batch, refused) }
                flushTimer.recordNanoseconds(nanoseconds(clock.now - started))
                if !storeHealthy {
                    storeHealthy = true
                    logger.notice("journal store is writable again", metadata: ["buffered": "\(bufferedCount)"])
                }
                settle(written: batch, refused: refused)
                return true
            } catch {
                retrying = true
                if storeHealthy {
                    logger.error(
                        "journal store write failed; keeping the events and retrying",
                        metadata: ["error": "\(error)", "buffered": "\(bufferedCount)"])
                }
                storeHealthy = false
                publishAvailability()
                if state != .running { return false }
                await sleep(.backoff, until: clock.now.advanced(by: delay))
                delay = min(delay * 2, maxRetryDelay)
            }
        }
    }

    /// `refused` without the streams whose events of `batch` are all stored already, exactly as
    /// in the batch (same shard, seq, type, data, epoch, time to the microsecond, closing flag):
    /// an earlier attempt of this very batch wrote them, so they are durable, not refused. Only
    /// sequence conflicts that point before the batch's first event (stored tail ≥ it) qualify;
    /// a fenced stream stays refused (its shard moved on: its writer must stop either way).
    /// Throws when the store cannot be read; the caller then retries the whole batch.
    private func withoutWrittenBefore(
        _ batch: [JournalEvent], _ refused: [String: AppendRefusal]
    ) async throws(JournalError) -> [String: AppendRefusal] {
        var remaining = refused
        var confirmed = 0
        for (stream, refusal) in refused {
            guard case .sequenceConflict(let expected, let got) = refusal, got < expected else { continue }
            let mine = batch.filter { $0.stream == stream }
            guard let first = mine.first else { continue }
            let stored = try await store.read(stream: stream, afterSeq: first.seq - 1)
            if stored.count >= mine.count, zip(mine, stored).allSatisfy({ Self.sameStoredEvent($0, $1) }) {
                remaining[stream] = nil
                confirmed += 1
            }
        }
        if confirmed > 0 {
            logger.notice(
                "journal retry found streams written by the attempt that failed; they are durable",
                metadata: ["streams": "\(confirmed)"])
        }
        return remaining
    }

    /// The same event as the journal stores it (times have microsecond precision).
    static func sameStoredEvent(_ a: JournalEvent, _ b: JournalEvent) -> Bool {
        a.stream == b.stream && a.seq == b.seq && a.shard == b.shard && a.type == b.type && a.data == b.data
            && a.writerEpoch == b.writerEpoch && a.closesStream == b.closesStream
            && JournalTime.microseconds(a.at) == JournalTime.microseconds(b.at)
    }

    /// Applies a finished batch: marks refusals, advances durability, resumes waiters together.
    private func settle(written batch: [JournalEvent], refused: [String: AppendRefusal]) {
        for (stream, refusal) in refused { markRefused(stream, refusal) }
        var writtenCount = 0
        for event in batch {
            guard let index = streams.index(forKey: event.stream) else {
                preconditionFailure("journal lost track of buffered stream \(event.stream)")
            }
            streams.values[index].buffered -= 1
            if refused.isEmpty || refused[event.stream] == nil {
                writtenCount += 1
                if event.seq > streams.values[index].durable { streams.values[index].durable = event.seq }
                if !streams.values[index].waiters.isEmpty { resumeDurableWaiters(at: index) }
            }
            if streams.values[index].isForgettable { streams.remove(at: index) }
        }
        inFlight = []
        settledTotal += UInt64(batch.count + inFlightSkipped)
        inFlightSkipped = 0
        completedBatches += 1
        if writtenCount > 0 { eventsWritten.increment(by: Int64(writtenCount)) }
        bufferGauge.record(bufferedCount)
        publishAvailability()
        if !flushWaiters.isEmpty {
            var done = 0
            while done < flushWaiters.count, flushWaiters[done].target <= settledTotal {
                flushWaiters[done].continuation.resume(returning: .success(()))
                done += 1
            }
            flushWaiters.removeFirst(done)
        }
    }

    private func resumeDurableWaiters(at index: Dictionary<String, StreamState>.Index) {
        let durable = streams.values[index].durable
        streams.values[index].waiters.removeAll { waiter in
            guard waiter.seq <= durable else { return false }
            waiter.continuation.resume(returning: .success(()))
            return true
        }
    }

    private func markRefused(_ stream: String, _ refusal: AppendRefusal) {
        appendsRefused.increment()
        guard let index = streams.index(forKey: stream) else { return }
        if streams.values[index].refusal == nil { refusedStreamCount += 1 }
        streams.values[index].refusal = refusal
        let waiters = streams.values[index].waiters
        streams.values[index].waiters = []
        for waiter in waiters { waiter.continuation.resume(returning: .failure(.refused(stream: stream, refusal))) }
        logger.warning(
            "journal refused a stream; its writer must stop and reload",
            metadata: ["stream": "\(stream)", "refusal": "\(refusal)"])
    }

    private func sleep(_ kind: Sleep, until deadline: ContinuousClock.Instant?) async {
        wakeGeneration &+= 1
        let generation = wakeGeneration
        if let deadline {
            wakeTimer = Task {
                guard (try? await Task.sleep(until: deadline, clock: .continuous)) != nil else { return }
                self.timerFired(generation)
            }
        }
        sleeping = kind
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in wake = continuation }
    }

    private func timerFired(_ generation: UInt64) {
        if generation == wakeGeneration { wakeUp() }
    }

    private func wakeUp() {
        guard let continuation = wake else { return }
        wake = nil
        sleeping = nil
        wakeTimer?.cancel()
        wakeTimer = nil
        continuation.resume()
    }
}

private func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
}
