import FluxActors
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The node on the PostgreSQL journal (issue 3): crashes and a database that goes away.
@Suite(
    "single node on PostgreSQL", .serialized,
    .enabled(if: ProcessInfo.processInfo.environment["FLUX_TEST_POSTGRES"] != nil, "needs FLUX_TEST_POSTGRES"))
struct PostgresJournalEndToEndTests {
    static let slow: [String: [String: JSONValue]] = [
        "abfl": ["latency_ms": 200], "tata": ["latency_ms": 200], "hero": ["latency_ms": 200],
        "piramal": ["latency_ms": 200],
    ]

    /// Runs `body`, then stops the node and the simulated lenders, also when `body` throws.
    /// (Awaited here: a `defer { Task { await h.stop() } }` may never run before the test
    /// process exits, and leaves the simulator running.)
    static func stoppingAfterwards(_ h: NodeHarness, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            await h.stop()
            throw error
        }
        await h.stop()
    }

    /// Every application answered 201 is terminal, and no lender holds two applications for one reference.
    static func expectAllSettled(_ h: NodeHarness, _ ids: [String]) async throws {
        for id in ids {
            let r = try await h.get("/v1/applications/\(id)", headers: [("Prefer", "wait=25")])
            #expect(r.status == 200, "application \(id) answered 201 but is lost")
            let status = r.json?["status"]?.stringValue ?? "?"
            #expect(["disbursed", "declined", "failed"].contains(status), "\(id) ended \(status)")
        }
        let report = try #require(try await h.request("GET", h.controlURL + "/loans").json)
        #expect(report["live_at_several_lenders"]?.arrayValue?.isEmpty == true)
        for lender in report["lenders"]?.arrayValue ?? [] {
            for (ref, count) in lender["count_by_reference"]?.objectValue ?? [:] {
                #expect(count == 1, "\(lender["id"]?.stringValue ?? "?") asked to lend \(count) times for \(ref)")
            }
        }
    }

    @Test("kill -9 during a burst on PostgreSQL: every 201 comes back and ends; no one gets two loans")
    func crash() async throws {
        let h = try await NodeHarness(lenderOverrides: Self.slow, journal: try freshPostgresDatabase())
        try await Self.stoppingAfterwards(h) { try await Self.crashBody(h) }
    }

    static func crashBody(_ h: NodeHarness) async throws {
        let run = UUID().uuidString.prefix(6)
        var accepted: [String] = []
        for i in 0..<40 {
            let r = try await h.post(
                "/v1/applications", NodeHarness.checkout(customer: "pgc-\(run)-\(i)", score: 700 + i * 4),
                headers: [("Idempotency-Key", "pgc-\(run)-\(i)")])
            if r.status == 201, let id = r.json?["id"]?.stringValue { accepted.append(id) }
        }
        #expect(accepted.count == 40)
        await h.stopNode(kill9: true)
        try await h.startNode()
        try await Self.expectAllSettled(h, accepted)
    }

    @Test(
        "PostgreSQL restarts under load: 503 journal_unavailable or 201, and every 201 completes",
        .timeLimit(.minutes(1)))
    func databaseRestart() async throws {
        let h = try await NodeHarness(lenderOverrides: Self.slow, journal: try freshPostgresDatabase())
        try await Self.stoppingAfterwards(h) { try await Self.databaseRestartBody(h) }
    }

    static func databaseRestartBody(_ h: NodeHarness) async throws {
        let run = UUID().uuidString.prefix(6)
        let seen = RestartObservations()
        let restart = Task.detached {
            try await Task.sleep(for: .seconds(1))
            let p = Process()
            p.executableURL = NodeHarness.repoRoot.appendingPathComponent("scripts/pg-test.sh")
            p.arguments = ["restart", "2"]
            // The restarted server is a daemon: it must not inherit the test's output pipe, or
            // `swift test` waits for it forever. (The script also closes every other inherited
            // descriptor before it starts the server: Foundation learns that `p` ended when p's
            // copy of a socket closes, and a server holding it kept `p` "running" for ever.)
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            // Polled, not `waitUntilExit()`: that blocks one of the few cooperative threads.
            let deadline = ContinuousClock.now + .seconds(40)
            while p.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            if p.isRunning { p.terminate() }
            let status = p.isRunning ? Int32(-1) : p.terminationStatus
            await seen.restartEnded()
            return status
        }
        // Open-loop load: a checkout every 50 ms and a readiness probe every 100 ms, each on its
        // own task, so that a checkout held up by the outage does not stop new ones arriving. It
        // goes on until 2 s after the database is back (at most 40 s).
        let started = ContinuousClock.now
        var checkouts = 0
        await withTaskGroup(of: Void.self) { group in
            var tick = 0
            while ContinuousClock.now - started < .seconds(40) {
                if let ended = await seen.restartEndedAt, ContinuousClock.now - ended > .seconds(2) { break }
                tick += 1
                checkouts += 1
                let n = checkouts
                group.addTask {
                    let afterRestart = await seen.restartEndedAt != nil
                    do {
                        let r = try await h.request(
                            "POST", "/v1/applications",
                            body: Array(NodeHarness.checkout(customer: "pgr-\(run)-\(n)").jsonData()),
                            headers: [("Idempotency-Key", "pgr-\(run)-\(n)")], timeout: .seconds(30))
                        switch r.status {
                        case 201: await seen.accepted(r.json?["id"]?.stringValue ?? "", afterRestart: afterRestart)
                        case 503 where r.errorCode == "journal_unavailable": await seen.unavailable()
                        default: await seen.unexpected("\(r.status): \(String(decoding: r.body, as: UTF8.self))")
                        }
                    } catch {
                        await seen.unexpected("\(error)")
                    }
                }
                if tick % 2 == 0 {
                    group.addTask {
                        if let r = try? await h.get("/health/ready"), r.status == 503 { await seen.notReady() }
                    }
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(try await restart.value == 0)
        let o = await seen.snapshot()
        #expect(o.unexpected.isEmpty, "every checkout is answered 201 or 503 journal_unavailable: \(o.unexpected)")
        // The outage is visible to clients and probes, and writing resumes by itself.
        #expect(o.unavailable > 0, "no checkout got 503 journal_unavailable while the database was down")
        #expect(o.notReady, "/health/ready never turned false while the database was down")
        #expect(o.acceptedAfterRestart > 0, "no checkout was accepted after the database came back")
        #expect(o.accepted.count + o.unavailable == checkouts)
        try await Self.expectAllSettled(h, o.accepted)
        #expect(try await h.get("/health/ready").status == 200)
    }
}

/// What `databaseRestart`'s load saw.
private actor RestartObservations {
    private(set) var restartEndedAt: ContinuousClock.Instant?
    private var acceptedIDs: [String] = []
    private var acceptedAfterRestart = 0
    private var unavailableCount = 0
    private var sawNotReady = false
    private var unexpectedReplies: [String] = []

    func restartEnded() { restartEndedAt = ContinuousClock.now }
    func accepted(_ id: String, afterRestart: Bool) {
        acceptedIDs.append(id)
        if afterRestart { acceptedAfterRestart += 1 }
    }
    func unavailable() { unavailableCount += 1 }
    func notReady() { sawNotReady = true }
    func unexpected(_ what: String) { unexpectedReplies.append(what) }

    func snapshot() -> (
        accepted: [String], acceptedAfterRestart: Int, unavailable: Int, notReady: Bool, unexpected: [String]
    ) {
        (acceptedIDs, acceptedAfterRestart, unavailableCount, sawNotReady, unexpectedReplies)
    }
}
