import ArgumentParser
import FluxActors
import Foundation
import Logging
import Synchronization

/// `flux-node demo` (CONTRACT §1): a 3-node cluster on loopback with simulated lenders, a stream
/// of checkouts spread over the nodes with a live table, one node killed with SIGKILL mid-run,
/// and a summary that checks every application ended and no customer got two loans.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run simulated lenders and a 3-node cluster, send checkouts, kill a node, show what happens.")

    @Option(help: "Folder with simulator.json, rules.json and lenders/ (default: the current folder).")
    var examples: String = "."
    @Option(help: "Number of checkouts to send.") var checkouts: Int = 60
    @Option(help: "Checkouts per second.") var rate: Double = 10
    @Option(help: "Random seed of the checkout stream.") var seed: UInt64 = 7
    @Option(help: "Nodes in the cluster.") var nodes: Int = 3
    @Flag(help: "Do not kill a node mid-run.") var noKill = false

    func run() async throws {
        let logger = Logs.bootstrap(label: "flux.demo")
        let local = try LocalCluster(examples: examples, name: "demo")
        do {
            try await local.startLenders()
            // The nodes share one embedded journal; n1 is everyone's seed.
            try await local.startNodes(nodes, prefix: "n", logLevel: "warning")
            try await local.waitForShards()
            let cluster = local.nodes
            print("cluster: \(cluster.map { "\($0.id) \($0.url)" }.joined(separator: ", "))")

            let victim = cluster.count >= 3 && !noKill ? cluster.last : nil
            let sent = try await stream(to: cluster, kill: victim)
            let ok = try await summarize(
                sent, node: cluster[0].url, simulator: local.simulator!, cluster: cluster, killed: victim)
            await local.stop()
            if !ok { throw ExitCode(1) }
        } catch {
            logger.error("demo failed: \(error)")
            await local.stop()
            throw error
        }
    }

    struct Outcome: Sendable {
        var id: String
        var status: String
        var lenders: String
        var latencyMs: Double
        var amountPaise: Int64
        var loanID: String?
        var route: String
        var retried: Bool
    }

    /// Which nodes are up, shared by the checkout tasks (the victim goes down mid-run).
    final class Alive: Sendable {
        private let down = Mutex<Set<String>>([])
        func kill(_ id: String) { down.withLock { _ = $0.insert(id) } }
        func isUp(_ id: String) -> Bool { !down.withLock { $0.contains(id) } }
    }

    private func stream(to cluster: [LocalCluster.Node], kill victim: LocalCluster.Node?) async throws -> [Outcome] {
        var generator = CheckoutBodyGenerator(
            seed: seed, runID: "demo\(seed)x\(Int(Date().timeIntervalSince1970) % 100000)")
        let interval = Duration.milliseconds(Int64(1000 / max(rate, 0.1)))
        let tty = isatty(1) == 1
        let alive = Alive()
        print("")
        print(Self.row(["#", "APPLICATION", "AMOUNT ₹", "TENURE", "NODE", "LENDERS TRIED", "OUTCOME", "LATENCY"]))
        print(String(repeating: "─", count: 130))
        return await withTaskGroup(of: Outcome?.self) { group in
            for n in 1...checkouts {
                if let victim, n == checkouts / 2 {
                    _ = await victim.child.stop(signal: SIGKILL, timeout: .seconds(5))
                    alive.kill(victim.id)
                    let banner = "✖ \(victim.id) killed with SIGKILL — its shards fail over to the others"
                    print(tty ? "\u{1B}[1;31m\(banner)\u{1B}[0m" : banner)
                }
                let checkout = generator.next()
                let entryIndex = n % cluster.count
                group.addTask {
                    let started = ContinuousClock.now
                    // A store app retries a failed request with the same Idempotency-Key at another
                    // node: the key makes it the same application.
                    var reply: (status: Int, body: [UInt8], servedBy: String?)?
                    var entry = cluster[entryIndex]
                    var retried = false
                    for attempt in 0..<cluster.count {
                        entry = cluster[(entryIndex + attempt) % cluster.count]
                        guard alive.isUp(entry.id) else {
                            retried = true
                            continue
                        }
                        if let r = try? await SimpleHTTP.sendWithHeaders(
                            "POST", "\(entry.url)/v1/applications", body: Array(checkout.body),
                            headers: [("Idempotency-Key", checkout.idempotencyKey), ("Prefer", "wait=25")],
                            timeout: .seconds(40))
                        {
                            reply = (r.status, r.body, r.headers.first { $0.0.lowercased() == "flux-node" }?.1)
                            // 503 means "retry shortly" (a shard moving, the journal busy): so do.
                            if r.status == 503, attempt + 1 < cluster.count {
                                retried = true
                                try? await Task.sleep(for: .milliseconds(500))
                                continue
                            }
                            break
                        }
                        retried = true
                    }
                    guard let reply, let view = try? JSONValue.parse(reply.body) else { return nil }
                    let elapsed = ContinuousClock.now - started
                    let latency =
                        Double(elapsed.components.attoseconds / 1_000_000_000_000_000)
                        + Double(elapsed.components.seconds) * 1000
                    let attempts = view["attempts"]?.arrayValue ?? []
                    let tried = attempts.map { a -> String in
                        let lender = a["lender_id"]?.stringValue ?? "?"
                        let mark: String
                        switch a["outcome"]?.stringValue ?? "" {
                        case "approved": mark = "✓"
                        case "ghost_recovered": mark = "✓(ghost)"
                        case "rejected": mark = "✗"
                        case "skipped_open_circuit": mark = "⊘"
                        case "skipped_validation": mark = "–"
                        default: mark = "!"
                        }
                        return lender + mark
                    }.joined(separator: " → ")
                    let served = reply.servedBy ?? "?"
                    let outcome = Outcome(
                        id: view["id"]?.stringValue ?? "?",
                        status: reply.status >= 400 ? "http \(reply.status)" : view["status"]?.stringValue ?? "?",
                        lenders: tried.isEmpty ? "(none eligible)" : tried, latencyMs: latency,
                        amountPaise: checkout.amountPaise, loanID: view["loan_id"]?.stringValue,
                        route: served == entry.id ? served : "\(entry.id)→\(served)", retried: retried)
                    var statusText = outcome.status
                    if tty {
                        let color =
                            switch outcome.status {
                            case "disbursed": "\u{1B}[32m"
                            case "declined": "\u{1B}[33m"
                            default: "\u{1B}[31m"
                            }
                        statusText =
                            color + outcome.status.padding(toLength: 10, withPad: " ", startingAt: 0) + "\u{1B}[0m"
                    }
                    print(
                        Self.row([
                            "\(n)", outcome.id, Self.rupees(checkout.amountPaise), "\(checkout.tenureMonths)m",
                            outcome.route + (retried ? " (retry)" : ""), outcome.lenders, statusText,
                            String(format: "%6.0f ms", latency),
                        ]))
                    return outcome
                }
                try? await Task.sleep(for: interval)
            }
            var all: [Outcome] = []
            for await o in group { if let o { all.append(o) } }
            return all
        }
    }

    private func summarize(
        _ outcomes: [Outcome], node: String, simulator: SimulatorConfig, cluster: [LocalCluster.Node],
        killed: LocalCluster.Node?
    ) async throws -> Bool {
        print(String(repeating: "─", count: 118))
        var byStatus: [String: Int] = [:]
        for o in outcomes { byStatus[o.status, default: 0] += 1 }
        let latencies = outcomes.map(\.latencyMs).sorted()
        func pct(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int((p / 100) * Double(latencies.count)))]
        }
        print("")
        print("Summary: \(outcomes.count) of \(checkouts) checkouts answered")
        for (k, v) in byStatus.sorted(by: { $0.key < $1.key }) {
            print("  \(k.padding(toLength: 12, withPad: " ", startingAt: 0)) \(v)")
        }
        print(
            String(
                format: "  latency      p50 %.0f ms   p99 %.0f ms   max %.0f ms", pct(50), pct(99), latencies.last ?? 0)
        )
        let forwarded = outcomes.filter { $0.route.contains("→") }.count
        let retried = outcomes.filter(\.retried).count
        print("  forwarded    \(forwarded) served by another node than the one asked (Flux-Node)")
        if let killed {
            print(
                "  retried      \(retried) re-sent with the same Idempotency-Key (\(killed.id) was down, or a 503 said retry)"
            )
        }
        if let (status, body) = try? await SimpleHTTP.get("\(cluster[0].adminURL)/cluster/members"), status == 200,
            let list = try? JSONValue.parse(body).arrayValue
        {
            let text = list.map {
                "\($0["node_id"]?.stringValue ?? "?") \($0["status"]?.stringValue ?? "?") (\($0["shards"]?.intValue ?? 0) shards)"
            }
            print("  members      \(text.joined(separator: ", "))")
        }

        // Every application must be terminal, every disbursed one must have its loan, and no
        // lender may hold two live loans for one application.
        var problems: [String] = []
        for o in outcomes {
            guard let (status, body) = try? await SimpleHTTP.get("\(node)/v1/applications/\(o.id)"), status == 200,
                let view = try? JSONValue.parse(body), let s = view["status"]?.stringValue
            else {
                problems.append("\(o.id): cannot read back")
                continue
            }
            if !["disbursed", "declined", "failed", "cancelled"].contains(s) { problems.append("\(o.id): still \(s)") }
            if s == "disbursed" {
                guard let loan = view["loan_id"]?.stringValue,
                    let (ls, _) = try? await SimpleHTTP.get("\(node)/v1/loans/\(loan)"), ls == 200
                else {
                    problems.append("\(o.id): disbursed but its loan cannot be read")
                    continue
                }
            }
        }
        if let (status, body) = try? await SimpleHTTP.get(
            "http://\(simulator.host):\(simulator.controlPort)/_sim/loans"),
            status == 200, let report = try? JSONValue.parse(body)
        {
            let several = report["live_at_several_lenders"]?.arrayValue ?? []
            if !several.isEmpty { problems.append("applications with loans at several lenders: \(several.count)") }
            for lender in report["lenders"]?.arrayValue ?? [] {
                for (ref, count) in lender["count_by_reference"]?.objectValue ?? [:] where (count.intValue ?? 0) > 1 {
                    problems.append(
                        "\(lender["id"]?.stringValue ?? "?") holds \(count.intValue ?? 0) applications for \(ref)")
                }
            }
        } else {
            problems.append("cannot read the simulator's loan book")
        }
        let terminal = outcomes.count - problems.filter { $0.contains("still") }.count
        print(
            "  terminal     \(terminal) of \(outcomes.count); duplicated loans: \(problems.contains { $0.contains("several") || $0.contains("holds") } ? "YES" : "none")"
        )
        if problems.isEmpty {
            print("\nAll checks passed: every application ended, every disbursal has its loan, no one got two loans.")
            return true
        }
        print("\nProblems:")
        for p in problems { print("  - \(p)") }
        return false
    }

    static func row(_ cells: [String]) -> String {
        let widths = [4, 30, 12, 7, 16, 36, 11, 10]
        return zip(cells, widths).map { c, w in
            c.count >= w ? c + " " : c.padding(toLength: w, withPad: " ", startingAt: 0)
        }
        .joined(separator: " ")
    }

    static func rupees(_ paise: Int64) -> String {
        let r = paise / 100
        var s = String(r)
        var out = ""
        // Indian grouping: last three digits, then pairs (12,34,567).
        if s.count > 3 {
            out = "," + s.suffix(3)
            s = String(s.dropLast(3))
            while s.count > 2 {
                out = "," + s.suffix(2) + out
                s = String(s.dropLast(2))
            }
            out = s + out
        } else {
            out = s
        }
        return out
    }
}
