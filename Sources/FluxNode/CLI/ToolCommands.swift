import ArgumentParser
import FluxActors
import Foundation
import Logging
import Synchronization

struct SimulateLendersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate-lenders", abstract: "Serve simulated NBFC APIs on loopback (see Docs/simulator.md).")

    @Option(help: "Simulator configuration (JSON).") var config: String = "simulator.json"

    func run() async throws {
        let logger = Logs.bootstrap(label: "flux.simulator")
        let cfg: SimulatorConfig
        do { cfg = try SimulatorConfig.load(path: config) } catch {
            FileHandle.standardError.write(Data("flux-node: simulator configuration error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        try await withTaskCancellationOnTermination {
            try await runLenderSimulator(config: cfg, logger: logger)
        }
    }
}

struct LoadGenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen", abstract: "Open-loop checkout load with an HDR latency report.")

    @Option(
        name: .customLong("target"), parsing: .upToNextOption, help: "Node base URL(s), e.g. http://127.0.0.1:8080.")
    var targets: [String] = []
    @Option(help: "Checkouts per second.") var rate: Double = 100
    @Option(help: "Seconds to run.") var duration: Double = 10
    @Option(help: "Prefer: wait=N seconds on each request (0: none).") var wait: Int = 0
    @Option(name: .customLong("api-key"), help: "Merchant API key.") var apiKey: String?
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "HTTP connections per target at most (default: sized from the rate and expected latency).")
    var connections: Int?
    @Option(name: .customLong("expected-latency"), help: "Seconds a reply is expected to take, for sizing connections.")
    var expectedLatency: Double = 0.05
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        let logger = Logs.bootstrap(label: "flux.loadgen")
        let urls = targets.compactMap(URL.init(string:))
        let options = LoadGenOptions(
            targets: urls, rate: rate, durationSeconds: duration, apiKey: apiKey, waitSeconds: wait, seed: seed,
            connectionsPerTarget: connections, expectedLatencySeconds: expectedLatency)
        let report: LoadReport
        do { report = try await runLoadGen(options: options, logger: logger) } catch let e as LoadGenError {
            FileHandle.standardError.write(Data("flux-node loadgen: \(e)\n".utf8))
            throw ExitCode(2)
        }
        print(json ? report.renderJSON() : report.render())
    }
}

/// Cancels `body` on SIGTERM/SIGINT so a tool command exits 0 when stopped.
func withTaskCancellationOnTermination(_ body: @escaping @Sendable () async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await body() }
        group.addTask {
            await TerminationSignal.wait()
            throw CancellationError()
        }
        do {
            try await group.next()
        } catch is CancellationError {
        }
        group.cancelAll()
    }
}

enum TerminationSignal {
    /// Returns when the process receives SIGTERM or SIGINT.
    static func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let once = OnceFlag()
            for sig in [SIGTERM, SIGINT] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    if once.take() { c.resume() }
                }
                source.resume()
                Keep.sources.append(source)
            }
        }
    }

    private enum Keep {
        // Written once per signal at start-up from one task, never read: the sources must live.
        nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []
    }
}

final class OnceFlag: Sendable {
    private let flag = Synchronization.Mutex(false)
    func take() -> Bool {
        flag.withLock { taken in
            if taken { return false }
            taken = true
            return true
        }
    }
}
