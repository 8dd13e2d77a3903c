import Foundation

/// The ceiling for `make bench`: how fast this PostgreSQL takes the journal's rows with plain
/// `COPY`, no checks. Writes `events` checkout-shaped rows (the same shape, payload and stream
/// layout as `runJournalBenchmark`) into a table shaped like `events` (same columns, same
/// primary key) in a scratch schema, 1024 rows per batch — the same group commit as the journal
/// at batch 1024 — and drops the schema afterwards. Returns events/s.
///
/// `connections`: each batch is split by `shard % connections` exactly as the journal splits a
/// batch into its writer lanes (`PostgresJournalStore.lanePartition`), and the parts are
/// `COPY`ed at once, one per connection, each in its own transaction; the next batch starts when
/// every part has committed (as the journal's `append`). 1: one `COPY` and commit per batch.
/// `binary`: COPY's binary format, as the journal's COPY path sends (`PostgresBinaryCopy`);
/// false: the text format.
public func runRawCopyBenchmark(
    conninfo: String, events: Int, connections: Int = 1, binary: Bool = true
) async throws -> Double {
    let batchSize = 1024
    let connections = max(1, connections)
    let schema = "flux_rawcopy_\(UInt32.random(in: 0...UInt32.max))"
    let admin = try PostgresConnection(conninfo: conninfo)
    defer { admin.close() }
    try admin.exec(
        """
        SET client_min_messages = warning;
        CREATE SCHEMA \(schema);
        CREATE TABLE \(schema).events (
            shard integer NOT NULL,
            stream text NOT NULL,
            seq bigint NOT NULL,
            type text NOT NULL,
            data json NOT NULL,
            writer_epoch bigint NOT NULL,
            at timestamptz NOT NULL,
            closes boolean NOT NULL DEFAULT false,
            PRIMARY KEY (stream, seq)
        );
        """)
    defer { _ = try? admin.exec("DROP SCHEMA \(schema) CASCADE") }

    let payload =
        #"{"merchant_id":"croma","store_id":"croma-blr-12","amount_paise":2500000,"#
        + #""tenure_months":9,"lender_id":"hero","idempotency_key":"0f8e2c1a-5b7d-4c3e-9a21-7e6f5d4c3b2a"}"#
    let types = ["Received", "Ranked", "LenderAttemptStarted", "LenderApproved", "Disbursed"]
    let now = Date()
    let at = copyTimestamp(now)
    let run = UUID().uuidString.prefix(8)
    // Rows are built before the clock starts, as `runJournalBenchmark` builds its events first:
    // per batch, one COPY payload per connection that has rows in it.
    var batches: [[(connection: Int, data: [UInt8])]] = []
    var first = 0
    while first < max(0, events) {
        let last = min(first + batchSize, events)
        let batch = (first..<last).map { n in
            let seq = n % 5 + 1
            return JournalEvent(
                shard: n / 5 % 256, stream: "bench-\(run)-\(n / 5)", seq: Int64(seq), type: types[seq - 1],
                data: payload, writerEpoch: 0, at: now, closesStream: seq == 5)
        }
        var parts: [(connection: Int, data: [UInt8])] = []
        for part in PostgresJournalStore.lanePartition(batch, lanes: connections) {
            if binary {
                var rows = PostgresBinaryCopy(reservingEvents: part.events.count)
                for event in part.events { try rows.append(event) }
                parts.append((part.lane, PostgresBinaryCopy.data(rows: [rows.rows[...]], byteCount: rows.rows.count)))
            } else {
                var text: [UInt8] = []
                for event in part.events {
                    let row =
                        "\(event.shard)\t\(event.stream)\t\(event.seq)\t\(event.type)\t\(copyEscaped(event.data))\t0\t\(at)\t\(event.closesStream ? "t" : "f")\n"
                    text.append(contentsOf: row.utf8)
                }
                parts.append((part.lane, text))
            }
        }
        batches.append(parts)
        first = last
    }

    let workers = (0..<connections).map {
        PostgresWorker(
            name: "flux.bench.rawcopy\($0)", conninfo: conninfo,
            setUp: { connection throws(JournalError) in _ = try connection.exec("SET client_min_messages = warning") })
    }
    do {
        // Connected before the clock starts, as the journal's lanes are by the time it is timed.
        for worker in workers {
            try await worker.run { connection throws(JournalError) in _ = try connection.exec("SELECT 1") }
        }
        let copy =
            "BEGIN; COPY \(schema).events \(PostgresBinaryCopy.columns) FROM STDIN\(binary ? " (FORMAT binary)" : ""); COMMIT"
        @Sendable func send(_ part: (connection: Int, data: [UInt8])) async throws(JournalError) {
            // One round trip per part, as the journal's COPY path.
            try await workers[part.connection].run { connection throws(JournalError) in
                _ = try connection.copyScript(copy, meanwhile: {}, rows: { _ in part.data })
            }
        }
        let clock = ContinuousClock()
        let started = clock.now
        for parts in batches {
            if parts.count == 1 {
                try await send(parts[0])
                continue
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for part in parts { group.addTask { try await send(part) } }
                try await group.waitForAll()
            }
        }
        let (seconds, attoseconds) = (clock.now - started).components
        for worker in workers { await worker.shutdown() }
        return Double(events) / (Double(seconds) + Double(attoseconds) / 1e18)
    } catch {
        for worker in workers { await worker.shutdown() }
        throw error
    }
}

/// `date` as a PostgreSQL timestamptz literal in UTC with microseconds.
private func copyTimestamp(_ date: Date) -> String {
    let microseconds = JournalTime.microseconds(date)
    var seconds = time_t(microseconds / 1_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    return String(
        format: "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
        Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec),
        Int(microseconds % 1_000_000))
}

/// A value in COPY's text format: backslash, tab, newline and carriage return escaped.
private func copyEscaped(_ value: String) -> String {
    guard value.utf8.contains(where: { $0 == 0x5C || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else { return value }
    return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\t", with: "\\t")
        .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
}

/// The PostgreSQL figures of `make bench` (issue 3), all from one run on one database.
public struct PostgresJournalFigures: Sendable {
    /// Durable events/s of `PostgresJournalStore.append`, one batch at a time, per batch size.
    public var durable: [(batch: Int, eventsPerSecond: Double)]
    /// Raw `COPY` of the same rows (1024 per COPY and commit), no checks, on one connection.
    public var rawCopyEventsPerSecond: Double
    /// The journal's writer lanes (`PostgresJournalStore.defaultLanes` unless told otherwise).
    public var lanes: Int
    /// Raw `COPY` of the same rows on `lanes` connections at once, each 1024-row batch split by
    /// shard as the journal splits it.
    public var rawCopyLanesEventsPerSecond: Double
    /// Through `EventJournal` at a fixed offered load.
    public var latency: JournalLatencyReport
    /// Through `EventJournal` as fast as it takes events, for `sustainedDuration`.
    public var sustained: (events: Int, eventsPerSecond: Double)
    public var sustainedDuration: Duration

    /// The batch-1024 rate over the raw COPY rate on one connection.
    public var ratio: Double { ratio(to: rawCopyEventsPerSecond) }
    /// The batch-1024 rate over the raw COPY rate on as many connections as the journal's lanes.
    public var lanesRatio: Double { ratio(to: rawCopyLanesEventsPerSecond) }

    private func ratio(to raw: Double) -> Double {
        guard raw > 0, let big = durable.first(where: { $0.batch == 1024 }) else { return 0 }
        return big.eventsPerSecond / raw
    }
}

/// Runs the PostgreSQL journal figures against `conninfo`, each part in a scratch schema that is
/// dropped afterwards: durable events/s at `batchSizes` (`events` checkout-shaped events each),
/// the raw COPY rate of the same rows on one connection and on `lanes` connections, and
/// append→durable latency at `eventsPerSecond` offered. `lanes`: the store's writer lanes.
public func runPostgresJournalBenchmarks(
    conninfo: String, batchSizes: [Int] = [1, 64, 1024], events: Int = 100_000, eventsPerSecond: Int = 10_000,
    latencyDuration: Duration = .seconds(5), sustainedDuration: Duration = .seconds(10),
    lanes: Int = PostgresJournalStore.defaultLanes
) async throws -> PostgresJournalFigures {
    let schema = "flux_bench_\(UInt32.random(in: 0...UInt32.max))"
    let store = try PostgresJournalStore(conninfo: conninfo, schema: schema, lanes: lanes)
    do {
        try await store.prepare()
        let durable = try await runJournalBenchmark(store: store, batchSizes: batchSizes, events: events)
        let raw = try await runRawCopyBenchmark(conninfo: conninfo, events: events)
        let rawLanes = try await runRawCopyBenchmark(conninfo: conninfo, events: events, connections: max(1, lanes))
        let latency = try await runJournalLatencyBenchmark(
            store: store, checkoutsPerSecond: max(1, eventsPerSecond / 5), duration: latencyDuration)
        let sustained = try await runSustainedJournalBenchmark(store: store, duration: sustainedDuration)
        try? await store.execute("DROP SCHEMA \(schema) CASCADE")
        await store.close()
        return PostgresJournalFigures(
            durable: durable, rawCopyEventsPerSecond: raw, lanes: max(1, lanes), rawCopyLanesEventsPerSecond: rawLanes,
            latency: latency, sustained: sustained, sustainedDuration: sustainedDuration)
    } catch {
        try? await store.execute("DROP SCHEMA \(schema) CASCADE")
        await store.close()
        throw error
    }
}
