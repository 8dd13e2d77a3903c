import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore

/// What `flux-node loadgen` does: how many checkouts, how fast, against which nodes.
public struct LoadGenOptions: Sendable, Equatable {
    /// Node base URLs (`http://127.0.0.1:8080`); requests go round-robin over them.
    public var targets: [URL]
    /// Checkouts started per second, on a fixed schedule whatever the replies do.
    public var rate: Double
    public var durationSeconds: Double
    /// Sent as `Authorization: Bearer KEY` when set.
    public var apiKey: String?
    /// `Prefer: wait=N` on each request (0: no header, the reply is the first view).
    public var waitSeconds: Int
    public var seed: UInt64
    /// Requests allowed in flight at once; a request due while this many are pending is counted
    /// as `dropped` rather than delaying the schedule.
    public var maxInFlight: Int
    /// HTTP/1.1 connections per target.
    public var connectionsPerTarget: Int
    /// Per-request timeout on top of `waitSeconds`.
    public var timeoutSeconds: Double

    public init(
        targets: [URL], rate: Double, durationSeconds: Double, apiKey: String? = nil, waitSeconds: Int = 0,
        seed: UInt64 = UInt64.random(in: 1...UInt64.max), maxInFlight: Int = 20_000, connectionsPerTarget: Int = 512,
        timeoutSeconds: Double = 10
    ) {
        self.targets = targets
        self.rate = rate
        self.durationSeconds = durationSeconds
        self.apiKey = apiKey
        self.waitSeconds = waitSeconds
        self.seed = seed
        self.maxInFlight = maxInFlight
        self.connectionsPerTarget = connectionsPerTarget
        self.timeoutSeconds = timeoutSeconds
    }

    func validate() throws {
        guard !targets.isEmpty else { throw LoadGenError(message: "at least one --target is required") }
        for t in targets where !(t.scheme == "http" || t.scheme == "https") || t.host == nil {
            throw LoadGenError(message: "target \(t.absoluteString) must be an http(s) URL with a host")
        }
        guard rate > 0, rate <= 1_000_000 else { throw LoadGenError(message: "rate must be in (0, 1000000]") }
        guard durationSeconds > 0, durationSeconds <= 86_400 else {
            throw LoadGenError(message: "duration must be in (0, 86400] seconds")
        }
        guard rate * durationSeconds <= 100_000_000 else { throw LoadGenError(message: "rate × duration over 1e8") }
        guard (0...30).contains(waitSeconds) else { throw LoadGenError(message: "wait must be 0…30 seconds") }
        guard maxInFlight > 0, connectionsPerTarget > 0, timeoutSeconds > 0 else {
            throw LoadGenError(message: "max in flight, connections and timeout must be positive")
        }
    }
}

public struct LoadGenError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The result of a load run.
public struct LoadReport: Sendable {
    public var targets: [String]
    public var intendedRate: Double
    public var durationSeconds: Double
    /// Requests put on the wire (or attempted).
    public var sent: Int
    /// Requests that got an HTTP response, whatever its status.
    public var completed: Int
    /// Due while `maxInFlight` requests were pending: never sent.
    public var dropped: Int
    /// Requests that got no response: connection refused, timeout, reset.
    public var errors: [String: Int]
    public var byHTTPStatus: [Int: Int]
    /// The application `status` in the reply body (`pending`, `disbursed`, …).
    public var byApplicationStatus: [String: Int]
    /// From the first intended send to the last reply.
    public var elapsedSeconds: Double
    /// Latency of every response, measured from its intended send time (so a stalled server or
    /// a late client shows up in the tail instead of being omitted).
    public var latency: LatencyHistogram

    public var achievedRate: Double { elapsedSeconds > 0 ? Double(completed) / elapsedSeconds : 0 }
    public var p50Ms: Double { ms(latency.percentile(50)) }
    public var p90Ms: Double { ms(latency.percentile(90)) }
    public var p99Ms: Double { ms(latency.percentile(99)) }
    public var p999Ms: Double { ms(latency.percentile(99.9)) }
    public var maxMs: Double { ms(latency.max) }
    private func ms(_ ns: UInt64) -> Double { Double(ns) / 1_000_000 }

    /// The report as one JSON object (`--json`): counts, rates and latencies in milliseconds.
    public func renderJSON() -> String {
        func ms(_ v: Double) -> SimJSON { .double((v * 1000).rounded() / 1000) }
        let json = SimJSON.object([
            "targets": .array(targets.map(SimJSON.string)),
            "intended_rate": .double(intendedRate), "duration_s": .double(durationSeconds),
            "sent": .int(Int64(sent)), "completed": .int(Int64(completed)), "dropped": .int(Int64(dropped)),
            "errors": .object(errors.mapValues { .int(Int64($0)) }),
            "by_http_status": .object(
                Dictionary(uniqueKeysWithValues: byHTTPStatus.map { (String($0.key), .int(Int64($0.value))) })),
            "by_application_status": .object(byApplicationStatus.mapValues { .int(Int64($0)) }),
            "elapsed_s": .double(elapsedSeconds), "achieved_rate": .double((achievedRate * 10).rounded() / 10),
            "latency_ms": .object([
                "p50": ms(p50Ms), "p90": ms(p90Ms), "p99": ms(p99Ms), "p99_9": ms(p999Ms), "max": ms(maxMs),
                "mean": ms(latency.mean / 1_000_000),
            ]),
        ])
        return String(decoding: json.encoded(), as: UTF8.self)
    }

    /// A readable table for the terminal.
    public func render() -> String {
        func f(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
        func row(_ k: String, _ v: String) -> String { k.padding(toLength: 26, withPad: " ", startingAt: 0) + v }
        var lines: [String] = []
        lines.append("flux loadgen — open loop, \(f(intendedRate, 1))/s for \(f(durationSeconds, 1)) s")
        lines.append(row("targets", targets.joined(separator: ", ")))
        lines.append(String(repeating: "─", count: 60))
        lines.append(row("sent", "\(sent)"))
        lines.append(row("completed", "\(completed)"))
        if dropped > 0 { lines.append(row("dropped (client full)", "\(dropped)")) }
        let errorTotal = errors.values.reduce(0, +)
        lines.append(row("errors (no response)", "\(errorTotal)"))
        for (k, v) in errors.sorted(by: { $0.value > $1.value }) { lines.append(row("  " + k, "\(v)")) }
        lines.append(row("achieved rate", "\(f(achievedRate, 1))/s over \(f(elapsedSeconds)) s"))
        lines.append(String(repeating: "─", count: 60))
        lines.append("HTTP status")
        for (k, v) in byHTTPStatus.sorted(by: { $0.key < $1.key }) { lines.append(row("  \(k)", "\(v)")) }
        lines.append("application status")
        for (k, v) in byApplicationStatus.sorted(by: { $0.value > $1.value }) { lines.append(row("  " + k, "\(v)")) }
        lines.append(String(repeating: "─", count: 60))
        lines.append("latency from intended send (ms)")
        lines.append(
            "  "
                + ["p50", "p90", "p99", "p99.9", "max"].map { $0.padding(toLength: 10, withPad: " ", startingAt: 0) }
                .joined())
        lines.append(
            "  "
                + [p50Ms, p90Ms, p99Ms, p999Ms, maxMs].map { f($0).padding(toLength: 10, withPad: " ", startingAt: 0) }
                .joined())
        return lines.joined(separator: "\n")
    }
}

/// Collects outcomes from the request tasks.
private actor LoadTally {
    var sent = 0
    var completed = 0
    var dropped = 0
    var inFlight = 0
    var errors: [String: Int] = [:]
    var byHTTPStatus: [Int: Int] = [:]
    var byApplicationStatus: [String: Int] = [:]
    var latency = LatencyHistogram()
    var lastReply: ContinuousClock.Instant?

    /// Reserves a slot for a request, or counts it dropped.
    func admit(limit: Int) -> Bool {
        guard inFlight < limit else {
            dropped += 1
            return false
        }
        inFlight += 1
        sent += 1
        return true
    }

    func response(status: Int, applicationStatus: String?, latencyNs: UInt64, at: ContinuousClock.Instant) {
        inFlight -= 1
        completed += 1
        byHTTPStatus[status, default: 0] += 1
        byApplicationStatus[applicationStatus ?? "(none)", default: 0] += 1
        latency.record(latencyNs)
        lastReply = at
    }

    func failure(_ kind: String, at: ContinuousClock.Instant) {
        inFlight -= 1
        errors[kind, default: 0] += 1
        lastReply = at
    }
}

/// Runs open-loop checkout load: `POST /v1/applications` at `options.rate` per second on a fixed
/// schedule, whatever the replies do, and reports what came back.
public func runLoadGen(options: LoadGenOptions, logger: Logger) async throws -> LoadReport {
    try options.validate()
    var config = HTTPClient.Configuration()
    config.connectionPool = .init(
        idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: options.connectionsPerTarget)
    config.timeout = .init(connect: .seconds(2))
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    do {
        let report = try await runLoadGen(options: options, client: client, logger: logger)
        try await client.shutdown()
        return report
    } catch {
        try? await client.shutdown()
        throw error
    }
}

func runLoadGen(options: LoadGenOptions, client: HTTPClient, logger: Logger) async throws -> LoadReport {
    try options.validate()
    let total = Int((options.rate * options.durationSeconds).rounded())
    let interval = 1.0 / options.rate
    let tally = LoadTally()
    // Bodies follow the seed; ids and keys also carry the time and a random part, so two runs
    // against the same cluster (a warm-up and a measurement, say) never share a key or customer.
    let runID =
        String(options.seed % 0xFFFF_FFFF, radix: 36) + "-" + String(UInt64(Date().timeIntervalSince1970), radix: 36)
        + String(UInt16.random(in: .min ... .max), radix: 36)
    var generator = CheckoutBodyGenerator(seed: options.seed, runID: runID)
    let urls = options.targets.map { $0.absoluteString.trimmingSuffix("/") + "/v1/applications" }
    let timeout = TimeAmount.nanoseconds(Int64((Double(options.waitSeconds) + options.timeoutSeconds) * 1e9))
    let clock = ContinuousClock()
    let start = clock.now
    logger.info(
        "loadgen starting",
        metadata: ["rate": "\(options.rate)", "duration_s": "\(options.durationSeconds)", "requests": "\(total)"])

    await withTaskGroup(of: Void.self) { group in
        for i in 0..<total {
            let intended = start.advanced(by: .nanoseconds(Int64(Double(i) * interval * 1e9)))
            if clock.now < intended {
                // Cancellation ends the schedule early; what is in flight still completes.
                do { try await Task.sleep(until: intended, clock: clock) } catch { break }
            }
            guard await tally.admit(limit: options.maxInFlight) else { continue }
            let checkout = generator.next()
            var request = HTTPClientRequest(url: urls[i % urls.count])
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "Idempotency-Key", value: checkout.idempotencyKey)
            if let key = options.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
            if options.waitSeconds > 0 { request.headers.add(name: "Prefer", value: "wait=\(options.waitSeconds)") }
            request.body = .bytes(ByteBuffer(bytes: checkout.body))
            let sendRequest = request
            group.addTask {
                do {
                    let response = try await client.execute(sendRequest, timeout: timeout)
                    let body = try await response.body.collect(upTo: 1 << 20)
                    let now = clock.now
                    let status = applicationStatus(in: Data(body.readableBytesView))
                    await tally.response(
                        status: Int(response.status.code), applicationStatus: status,
                        latencyNs: nanoseconds(now - intended), at: now)
                } catch {
                    await tally.failure(describe(error), at: clock.now)
                }
            }
        }
        await group.waitForAll()
    }

    let end = await tally.lastReply ?? clock.now
    return LoadReport(
        targets: options.targets.map(\.absoluteString), intendedRate: options.rate,
        durationSeconds: options.durationSeconds, sent: await tally.sent, completed: await tally.completed,
        dropped: await tally.dropped, errors: await tally.errors, byHTTPStatus: await tally.byHTTPStatus,
        byApplicationStatus: await tally.byApplicationStatus, elapsedSeconds: seconds(end - start),
        latency: await tally.latency)
}

/// The `status` field of an application view, if the body is one.
func applicationStatus(in body: Data) -> String? {
    guard let json = try? SimJSON.decode(body), case .string(let status) = json.value(at: "status") else { return nil }
    return status
}

private func nanoseconds(_ d: Duration) -> UInt64 {
    let (s, atto) = d.components
    guard s >= 0 else { return 0 }
    return UInt64(s) * 1_000_000_000 + UInt64(atto / 1_000_000_000)
}

private func seconds(_ d: Duration) -> Double {
    let (s, atto) = d.components
    return Double(s) + Double(atto) / 1e18
}

private func describe(_ error: any Error) -> String {
    if let e = error as? HTTPClientError {
        switch e {
        case .deadlineExceeded, .readTimeout, .connectTimeout: return "timeout"
        case .remoteConnectionClosed: return "connection closed"
        default: return "\(e)"
        }
    }
    let text = "\(error)"
    if text.contains("refused") { return "connection refused" }
    return String(text.prefix(80))
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
