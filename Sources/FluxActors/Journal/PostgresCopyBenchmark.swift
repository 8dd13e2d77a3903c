import Foundation

/// The ceiling for `make bench`: how fast this PostgreSQL takes the journal's rows with plain
/// `COPY`, no checks. Writes `events` checkout-shaped rows (the same shape, payload and stream
/// layout as `runJournalBenchmark`) into a table shaped like `events` (same columns, same
/// primary key) in a scratch schema, 1024 rows per `COPY` and per transaction — the same group
/// commit as the journal at batch 1024 — and drops the schema afterwards. Returns events/s.
/// `binary`: COPY's binary format, as the journal's COPY path sends (`PostgresBinaryCopy`);
/// false: the text format.
public func runRawCopyBenchmark(conninfo: String, events: Int, binary: Bool = true) throws -> Double {
    let batchSize = 1024
    let connection = try PostgresConnection(conninfo: conninfo)
    defer { connection.close() }
    let schema = "flux_rawcopy_\(UInt32.random(in: 0...UInt32.max))"
    try connection.exec(
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
    defer { _ = try? connection.exec("DROP SCHEMA \(schema) CASCADE") }

    let payload =
        #"{"merchant_id":"croma","store_id":"croma-blr-12","amount_paise":2500000,"#
        + #""tenure_months":9,"lender_id":"hero","idempotency_key":"0f8e2c1a-5b7d-4c3e-9a21-7e6f5d4c3b2a"}"#
    let types = ["Received", "Ranked", "LenderAttemptStarted", "LenderApproved", "Disbursed"]
    let now = Date()
    let at = copyTimestamp(now)
    let run = UUID().uuidString.prefix(8)
    // Rows are built before the clock starts, as `runJournalBenchmark` builds its events first.
    var batches: [[UInt8]] = []
    var current: [UInt8] = []
    var binaryRows = PostgresBinaryCopy()
    for n in 0..<max(0, events) {
        let seq = n % 5 + 1
        if binary {
            try binaryRows.append(
                JournalEvent(
                    shard: n / 5 % 256, stream: "bench-\(run)-\(n / 5)", seq: Int64(seq), type: types[seq - 1],
                    data: payload, writerEpoch: 0, at: now, closesStream: seq == 5))
        } else {
            let row =
                "\(n / 5 % 256)\tbench-\(run)-\(n / 5)\t\(seq)\t\(types[seq - 1])\t\(copyEscaped(payload))\t0\t\(at)\t\(seq == 5 ? "t" : "f")\n"
            current.append(contentsOf: row.utf8)
        }
        if (n + 1) % batchSize == 0 || n == events - 1 {
            if binary {
                batches.append(PostgresBinaryCopy.data(rows: [binaryRows.rows[...]], byteCount: binaryRows.rows.count))
                binaryRows = PostgresBinaryCopy()
            } else {
                batches.append(current)
                current = []
            }
        }
    }

    let clock = ContinuousClock()
    let started = clock.now
    let copy =
        "COPY \(schema).events \(PostgresBinaryCopy.columns) FROM STDIN\(binary ? " (FORMAT binary)" : "")"
    for batch in batches {
        // One round trip per batch, as the journal's COPY path.
        try connection.copyScript("BEGIN; \(copy); COMMIT", meanwhile: {}, rows: { _ in batch })
    }
    let (seconds, attoseconds) = (clock.now - started).components
    return Double(events) / (Double(seconds) + Double(attoseconds) / 1e18)
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
    /// Raw `COPY` of the same rows (1024 per COPY and commit), no checks.
    public var rawCopyEventsPerSecond: Double
    /// Through `EventJournal` at a fixed offered load.
    public var latency: JournalLatencyReport

    /// The batch-1024 rate over the raw COPY rate.
    public var ratio: Double {
        guard rawCopyEventsPerSecond > 0, let big = durable.first(where: { $0.batch == 1024 }) else { return 0 }
        return big.eventsPerSecond / rawCopyEventsPerSecond
    }
}

/// Runs the PostgreSQL journal figures against `conninfo`, each part in a scratch schema that is
/// dropped afterwards: durable events/s at `batchSizes` (`events` checkout-shaped events each),
/// the raw COPY rate of the same rows, and append→durable latency at `eventsPerSecond` offered.
public func runPostgresJournalBenchmarks(
    conninfo: String, batchSizes: [Int] = [1, 64, 1024], events: Int = 100_000, eventsPerSecond: Int = 10_000,
    latencyDuration: Duration = .seconds(5)
) async throws -> PostgresJournalFigures {
    let schema = "flux_bench_\(UInt32.random(in: 0...UInt32.max))"
    let store = try PostgresJournalStore(conninfo: conninfo, schema: schema)
    do {
        try await store.prepare()
        let durable = try await runJournalBenchmark(store: store, batchSizes: batchSizes, events: events)
        let raw = try runRawCopyBenchmark(conninfo: conninfo, events: events)
        let latency = try await runJournalLatencyBenchmark(
            store: store, checkoutsPerSecond: max(1, eventsPerSecond / 5), duration: latencyDuration)
        try? await store.execute("DROP SCHEMA \(schema) CASCADE")
        await store.close()
        return PostgresJournalFigures(durable: durable, rawCopyEventsPerSecond: raw, latency: latency)
    } catch {
        try? await store.execute("DROP SCHEMA \(schema) CASCADE")
        await store.close()
        throw error
    }
}
