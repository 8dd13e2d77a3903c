import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix

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
    /// HTTP/1.1 connections per target at most; nil sizes the pool from the rate and
    /// `expectedLatencySeconds` (`poolSize`). Connections open only as requests need them.
    public var connectionsPerTarget: Int?
    /// The reply time the pool is sized for (Little's law: requests in flight = rate × latency).
    /// A slower server does not fail requests: they wait for a connection, and that wait counts
    /// in their latency (measured from the intended send).
    public var expectedLatencySeconds: Double
    /// Per-request timeout on top of `waitSeconds`. Also bounds the wait for a connection.
    public var timeoutSeconds: Double

    public init(
        targets: [URL], rate: Double, durationSeconds: Double, apiKey: String? = nil, waitSeconds: Int = 0,
        seed: UInt64 = UInt64.random(in: 1...UInt64.max), maxInFlight: Int = 20_000, connectionsPerTarget: Int? = nil,
        expectedLatencySeconds: Double = 0.05, timeoutSeconds: Double = 10
    ) {
        self.targets = targets
        self.rate = rate
        self.durationSeconds = durationSeconds
        self.apiKey = apiKey
        self.waitSeconds = waitSeconds
        self.seed = seed
        self.maxInFlight = maxInFlight
        self.connectionsPerTarget = connectionsPerTarget
        self.expectedLatencySeconds = expectedLatencySeconds
        self.timeoutSeconds = timeoutSeconds
    }

    static let maxConnectionsPerTarget = 4096

    /// Connections per target: twice the requests Little's law puts in flight at the expected
    /// latency (a `Prefer: wait` reply can take that long, so it counts too), plus 8, capped at
    /// `maxConnectionsPerTarget` and at `maxInFlight`. 2,000/s at 0.05 s over one target: 208.
    public var poolSize: Int {
        if let connectionsPerTarget { return connectionsPerTarget }
        let latency = max(expectedLatencySeconds, Double(waitSeconds))
        let inFlight = rate / Double(max(targets.count, 1)) * latency
        let size = Int(min((2 * inFlight).rounded(.up), Double(Self.maxConnectionsPerTarget))) + 8
        return min(size, Self.maxConnectionsPerTarget, maxInFlight)
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
        guard maxInFlight > 0, (connectionsPerTarget ?? 1) > 0, timeoutSeconds > 0, expectedLatencySeconds > 0 else {
            throw LoadGenError(message: "max in flight, connections, expected latency and timeout must be positive")
        }
        guard (connectionsPerTarget ?? 1) <= Self.maxConnectionsPerTarget else {
            throw LoadGenError(message: "at most \(Self.maxConnectionsPerTarget) connections per target")
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
    /// Requests that never reached a node, by cause: connection refused, no connection in
    /// time. A load generator problem or a node that is down, not a slow node.
    public var failedSends: [String: Int]
    /// Requests sent whose reply did not come within the timeout: slow replies. They are in
    /// `latency` with the time they waited (a lower bound), so the tail does not hide them.
    public var timedOut: Int
    /// Requests sent that got no reply for another reason (connection closed, reset), by cause.
    public var brokenReplies: [String: Int]
    public var byHTTPStatus: [Int: Int]
    /// The application `status` in the reply body (`pending`, `disbursed`, …).
    public var byApplicationStatus: [String: Int]
    /// From the first intended send to the last reply.
    public var elapsedSeconds: Double
    /// Latency of every response, measured from its intended send time (so a stalled server or
    /// a late client shows up in the tail instead of being omitted).
    public var latency: LatencyHistogram
    /// How late each request was handed to the HTTP client after its intended send time. A
    /// large tail means the generator itself could not keep the schedule (its latencies are
    /// still measured from the intended time).
    public var sendLag: LatencyHistogram
    /// Connections per target the client was allowed to open.
    public var connectionsPerTarget: Int

    /// Every request that got no HTTP response, whatever the cause.
    public var errors: [String: Int] {
        var all = failedSends.merging(brokenReplies, uniquingKeysWith: +)
        if timedOut > 0 { all["timeout", default: 0] += timedOut }
        return all
    }
    public var failedSendCount: Int { failedSends.values.reduce(0, +) }

    public var achievedRate: Double { elapsedSeconds > 0 ? Double(completed) / elapsedSeconds : 0 }
    /// Replies with a 2xx status (a checkout taken): what the throughput target counts. A node
    /// shedding load answers fast with 503s, which `achievedRate` counts too.
    public var acceptedCount: Int { byHTTPStatus.filter { (200..<300).contains($0.key) }.values.reduce(0, +) }
    public var acceptedRate: Double { elapsedSeconds > 0 ? Double(acceptedCount) / elapsedSeconds : 0 }
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
            "failed_sends": .object(failedSends.mapValues { .int(Int64($0)) }), "timed_out": .int(Int64(timedOut)),
            "broken_replies": .object(brokenReplies.mapValues { .int(Int64($0)) }),
            "connections_per_target": .int(Int64(connectionsPerTarget)),
            "by_http_status": .object(
                Dictionary(uniqueKeysWithValues: byHTTPStatus.map { (String($0.key), .int(Int64($0.value))) })),
            "by_application_status": .object(byApplicationStatus.mapValues { .int(Int64($0)) }),
            "elapsed_s": .double(elapsedSeconds), "achieved_rate": .double((achievedRate * 10).rounded() / 10),
            "accepted_rate": .double((acceptedRate * 10).rounded() / 10),
            "latency_ms": .object([
                "p50": ms(p50Ms), "p90": ms(p90Ms), "p99": ms(p99Ms), "p99_9": ms(p999Ms), "max": ms(maxMs),
                "mean": ms(latency.mean / 1_000_000),
            ]),
            "send_lag_ms": .object([
                "p99": ms(Double(sendLag.percentile(99)) / 1e6), "max": ms(Double(sendLag.max) / 1e6),
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
        lines.append(row("failed sends (no node)", "\(failedSendCount)"))
        for (k, v) in failedSends.sorted(by: { $0.value > $1.value }) { lines.append(row("  " + k, "\(v)")) }
        lines.append(row("timed out (slow reply)", "\(timedOut)"))
        if !brokenReplies.isEmpty {
            lines.append(row("broken replies", "\(brokenReplies.values.reduce(0, +))"))
            for (k, v) in brokenReplies.sorted(by: { $0.value > $1.value }) { lines.append(row("  " + k, "\(v)")) }
        }
        lines.append(row("achieved rate", "\(f(achievedRate, 1))/s over \(f(elapsedSeconds)) s"))
        lines.append(row("accepted (2xx) rate", "\(f(acceptedRate, 1))/s"))
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
        lines.append(
            row(
                "send lag p99 / max",
                "\(f(Double(sendLag.percentile(99)) / 1e6)) / \(f(Double(sendLag.max) / 1e6)) ms"
                    + " (generator behind schedule; \(connectionsPerTarget) connections per target)"))
        return lines.joined(separator: "\n")
    }
}

/// What a load run counted. Both clients keep one: the AsyncHTTPClient path inside `LoadTally`
/// (an actor, its requests run as tasks), `LoadEngine` on its event loop.
struct LoadCounts: Sendable {
    var sent = 0
    var completed = 0
    var dropped = 0
    var inFlight = 0
    var failedSends: [String: Int] = [:]
    var timedOut = 0
    var brokenReplies: [String: Int] = [:]
    var sendLag = LatencyHistogram()
    var byHTTPStatus: [Int: Int] = [:]
    var byApplicationStatus: [String: Int] = [:]
    var latency = LatencyHistogram()

    /// Reserves a slot for a request, or counts it dropped.
    mutating func admit(limit: Int, lagNs: UInt64) -> Bool {
        guard inFlight < limit else {
            dropped += 1
            return false
        }
        inFlight += 1
        sent += 1
        sendLag.record(lagNs)
        return true
    }

    mutating func response(status: Int, applicationStatus: String?, latencyNs: UInt64) {
        inFlight -= 1
        completed += 1
        byHTTPStatus[status, default: 0] += 1
        byApplicationStatus[applicationStatus ?? "(none)", default: 0] += 1
        latency.record(latencyNs)
    }

    mutating func failure(_ failure: SendFailure, latencyNs: UInt64) {
        inFlight -= 1
        switch failure {
        case .notSent(let kind): failedSends[kind, default: 0] += 1
        case .timedOut:
            timedOut += 1
            latency.record(latencyNs)
        case .broken(let kind): brokenReplies[kind, default: 0] += 1
        }
    }

    func report(_ options: LoadGenOptions, elapsedSeconds: Double) -> LoadReport {
        LoadReport(
            targets: options.targets.map(\.absoluteString), intendedRate: options.rate,
            durationSeconds: options.durationSeconds, sent: sent, completed: completed, dropped: dropped,
            failedSends: failedSends, timedOut: timedOut, brokenReplies: brokenReplies, byHTTPStatus: byHTTPStatus,
            byApplicationStatus: byApplicationStatus, elapsedSeconds: elapsedSeconds, latency: latency,
            sendLag: sendLag, connectionsPerTarget: options.poolSize)
    }
}

/// Collects outcomes from the request tasks.
private actor LoadTally {
    var counts = LoadCounts()
    var lastReply: ContinuousClock.Instant?

    func admit(limit: Int, lagNs: UInt64) -> Bool { counts.admit(limit: limit, lagNs: lagNs) }

    func response(status: Int, applicationStatus: String?, latencyNs: UInt64, at: ContinuousClock.Instant) {
        counts.response(status: status, applicationStatus: applicationStatus, latencyNs: latencyNs)
        lastReply = at
    }

    func failure(_ failure: SendFailure, latencyNs: UInt64, at: ContinuousClock.Instant) {
        counts.failure(failure, latencyNs: latencyNs)
        lastReply = at
    }
}

/// Runs open-loop checkout load: `POST /v1/applications` at `options.rate` per second on a fixed
/// schedule, whatever the replies do, and reports what came back.
public func runLoadGen(options: LoadGenOptions, logger: Logger) async throws -> LoadReport {
    try options.validate()
    if LoadEngine.handles(options) {
        logger.info(
            "loadgen starting",
            metadata: [
                "rate": "\(options.rate)", "duration_s": "\(options.durationSeconds)",
                "requests": "\(Int((options.rate * options.durationSeconds).rounded()))",
            ])
        let engine = LoadEngine(
            options: options, runID: loadRunID(seed: options.seed),
            loop: MultiThreadedEventLoopGroup.singleton.next())
        return try await engine.run()
    }
    var config = HTTPClient.Configuration()
    config.connectionPool = .init(
        idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: options.poolSize)
    // AsyncHTTPClient bounds the wait for a pooled connection by the connect timeout. A request
    // queued behind busy connections is a slow reply, not a failed send: let it wait as long as
    // the request may take.
    config.timeout = .init(
        connect: .nanoseconds(Int64((Double(options.waitSeconds) + options.timeoutSeconds) * 1e9)))
    // No tracer: the default no-op spans cost CPU on every request the generator sends.
    config.tracing.tracer = nil
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
    var generator = CheckoutBodyGenerator(seed: options.seed, runID: loadRunID(seed: options.seed))
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
            guard await tally.admit(limit: options.maxInFlight, lagNs: nanoseconds(clock.now - intended)) else {
                continue
            }
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
                    let now = clock.now
                    await tally.failure(SendFailure(error), latencyNs: nanoseconds(now - intended), at: now)
                }
            }
        }
        await group.waitForAll()
    }

    let end = await tally.lastReply ?? clock.now
    return await tally.counts.report(options, elapsedSeconds: seconds(end - start))
}

/// Bodies follow the seed; ids and keys also carry the time and a random part, so two runs
/// against the same cluster (a warm-up and a measurement, say) never share a key or customer.
func loadRunID(seed: UInt64) -> String {
    String(seed % 0xFFFF_FFFF, radix: 36) + "-" + String(UInt64(Date().timeIntervalSince1970), radix: 36)
        + String(UInt16.random(in: .min ... .max), radix: 36)
}

/// The `status` field of an application view, if the body is one.
func applicationStatus(in body: Data) -> String? {
    guard let json = try? SimJSON.decode(body), case .string(let status) = json.value(at: "status") else { return nil }
    return status
}

/// A duration in whole nanoseconds, 0 for a negative one.
func nanoseconds(_ d: Duration) -> UInt64 {
    let (s, atto) = d.components
    guard s >= 0 else { return 0 }
    return UInt64(s) * 1_000_000_000 + UInt64(atto / 1_000_000_000)
}

private func seconds(_ d: Duration) -> Double {
    let (s, atto) = d.components
    return Double(s) + Double(atto) / 1e18
}

/// Why a request got no HTTP response.
enum SendFailure: Equatable {
    /// It never reached a node: refused, no connection in time, no route.
    case notSent(String)
    /// Sent, but the reply took longer than the timeout.
    case timedOut
    /// Sent, and the connection broke before a reply.
    case broken(String)

    init(_ error: any Error) {
        if let e = error as? HTTPClientError {
            switch e {
            case .deadlineExceeded, .readTimeout: self = .timedOut
            case .connectTimeout: self = .notSent("connect timeout")
            case .getConnectionFromPoolTimeout: self = .notSent("no connection in time")
            case .remoteConnectionClosed: self = .broken("connection closed")
            default: self = .broken(String("\(e)".prefix(80)))
            }
            return
        }
        let text = "\(error)"
        if text.contains("refused") {
            self = .notSent("connection refused")
        } else if text.contains("Timeout") || text.contains("timed out") {
            self = .notSent("connect timeout")
        } else {
            self = .broken(String(text.prefix(80)))
        }
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
