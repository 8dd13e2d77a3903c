import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import FluxNode

/// Counts what a stub node receives.
actor StubNodeLog {
    var keys: [String] = []
    var customers = Set<String>()
    var bearer: [String?] = []
    var prefer: [String?] = []

    func record(key: String, customer: String, bearer: String?, prefer: String?) {
        keys.append(key)
        customers.insert(customer)
        self.bearer.append(bearer)
        self.prefer.append(prefer)
    }
}

@Suite struct LoadGenRunTests {
    /// A stand-in for a Flux node: answers every checkout `201 disbursed`, every fifth `declined`.
    /// `delay` holds each reply that long: a slow node.
    func withStubNode(
        delay: Duration = .zero, _ body: @escaping @Sendable (URL, StubNodeLog) async throws -> Void
    ) async throws {
        let log = StubNodeLog()
        let router = Router(context: BasicRequestContext.self)
        router.post("/v1/applications") { request, _ -> Response in
            var request = request
            let bytes = try await request.collectBody(upTo: 1 << 20)
            let j = try SimJSON.decode(bytes.readableBytesView)
            guard case .string(let customer) = j.value(at: "customer.id") else {
                return Response(status: .unprocessableContent)
            }
            let key = request.headers[HTTPField.Name("Idempotency-Key")!] ?? ""
            await log.record(
                key: key, customer: customer, bearer: request.headers[.authorization],
                prefer: request.headers[HTTPField.Name("Prefer")!])
            let n = await log.keys.count
            if delay > .zero { try await Task.sleep(for: delay) }
            let status = n % 5 == 0 ? "declined" : "disbursed"
            return Response(
                status: .created, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"id": "a-\#(n)", "status": "\#(status)"}"#)))
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            logger: {
                var l = Logger(label: "stub")
                l.logLevel = .critical
                return l
            }())
        // Live mode stops the server gracefully: cancelling `run()` traps when accepted
        // connections are still queued ("Deinited NIOAsyncWriter without calling finish()").
        try await app.test(.live) { client in
            let port = try #require(client.port)
            try await body(URL(string: "http://127.0.0.1:\(port)")!, log)
        }
    }

    @Test func openLoopSendsOnScheduleAndCounts() async throws {
        try await withStubNode { url, log in
            let options = LoadGenOptions(
                targets: [url], rate: 400, durationSeconds: 0.5, apiKey: "merchant-key", waitSeconds: 5, seed: 11)
            let report = try await runLoadGen(options: options, logger: Logger(label: "lg"))
            #expect(report.sent == 200)
            #expect(report.completed == 200)
            #expect(report.errors.isEmpty)
            #expect(report.sendLag.count == 200)
            #expect(report.byHTTPStatus == [201: 200])
            #expect(report.byApplicationStatus["declined"] == 40)
            #expect(report.byApplicationStatus["disbursed"] == 160)
            #expect(report.latency.count == 200)
            #expect(report.p50Ms > 0 && report.p50Ms <= report.p99Ms && report.p99Ms <= report.maxMs)
            // The schedule spans 0.5 s whatever the replies do.
            #expect(report.elapsedSeconds >= 0.49)
            let keys = await log.keys
            #expect(Set(keys).count == 200)
            #expect(await log.customers.count == 200)
            #expect(await log.bearer.allSatisfy { $0 == "Bearer merchant-key" })
            #expect(await log.prefer.allSatisfy { $0 == "wait=5" })
        }
    }

    @Test func refusedTargetIsCountedNotHidden() async throws {
        // Port 9 (discard) is closed on a test machine: every request fails to connect.
        let options = LoadGenOptions(
            targets: [URL(string: "http://127.0.0.1:9")!], rate: 100, durationSeconds: 0.1, seed: 3, timeoutSeconds: 1)
        let report = try await runLoadGen(options: options, logger: Logger(label: "lg"))
        #expect(report.sent == 10)
        #expect(report.completed == 0)
        #expect(report.failedSendCount == 10)
        #expect(report.timedOut == 0)
        #expect(report.errors.values.reduce(0, +) == 10)
        #expect(report.latency.count == 0)
    }

    /// One connection and a node that takes 250 ms a reply: 12 checkouts due every 50 ms queue
    /// behind each other. Each waits for the connection (the last for over 2 s, which used to
    /// fail as "no connection from the pool") and its latency counts from its intended send
    /// time, so the tail shows the queue (an omitting generator would report ~250 ms for all).
    @Test func queuedRequestsAreSlowNotFailedAndTimedFromTheSchedule() async throws {
        try await withStubNode(delay: .milliseconds(250)) { url, _ in
            let options = LoadGenOptions(
                targets: [url], rate: 20, durationSeconds: 0.6, seed: 5, connectionsPerTarget: 1, timeoutSeconds: 10)
            let report = try await runLoadGen(options: options, logger: Logger(label: "lg"))
            #expect(report.sent == 12)
            #expect(report.completed == 12)
            #expect(report.errors.isEmpty)
            #expect(report.connectionsPerTarget == 1)
            // The last: sent at 0.55 s, answered at about 12 × 0.25 = 3 s.
            #expect(report.maxMs >= 2_200)
            #expect(report.p50Ms >= 900)
        }
    }

    /// A reply slower than the timeout is a slow reply, counted apart from failed sends and
    /// kept in the latency tail.
    @Test func slowRepliesAreTimedOutNotFailedSends() async throws {
        try await withStubNode(delay: .seconds(3)) { url, _ in
            let options = LoadGenOptions(targets: [url], rate: 20, durationSeconds: 0.2, seed: 6, timeoutSeconds: 0.3)
            let report = try await runLoadGen(options: options, logger: Logger(label: "lg"))
            #expect(report.sent == 4)
            #expect(report.completed == 0)
            #expect(report.timedOut == 4)
            #expect(report.failedSends.isEmpty)
            #expect(report.latency.count == 4)
            #expect(report.latency.min >= 300_000_000)
        }
    }
}
