import Logging
import NIOCore
import NIOPosix

/// Messages per second over one loopback connection: `Forward` asks with a
/// 4 KiB JSON-like body answered by a `ForwardReply` echoing it, 64 asks in
/// flight, first with compression off (`plain`), then with LZ4 on (`lz4`).
/// Each run lasts `seconds`. Used by `make bench`.
public func runWireBenchmark(seconds: Double) async throws -> (plain: Double, lz4: Double) {
    let plain = try await wireBenchmarkRun(seconds: seconds, compress: false)
    let lz4 = try await wireBenchmarkRun(seconds: seconds, compress: true)
    return (plain, lz4)
}

private func wireBenchmarkRun(seconds: Double, compress: Bool) async throws -> Double {
    var logger = Logger(label: "flux.wire.bench")
    logger.logLevel = .error
    let limits = WireLimits(compressionThreshold: compress ? 1024 : Int.max)
    let configuration = WireConfiguration(limits: limits, askTimeout: .seconds(30))
    let secret = Array("flux-wire-benchmark".utf8)
    let server = try await WireServer.bind(
        host: "127.0.0.1", port: 0, localNodeID: "bench-server", secret: secret, configuration: configuration,
        logger: logger
    ) { request in
        guard let forward = try? request.decode(as: WireForward.self) else {
            return .errorReply(code: "bad_request", message: "expected forward")
        }
        return .reply(WireForwardReply(status: 200, headers: forward.headers, body: forward.body))
    }
    let peer = WirePeer(
        host: "127.0.0.1", port: server.port, localNodeID: "bench-client", secret: secret,
        configuration: configuration, logger: logger)
    var body = ""
    var i = 0
    while body.utf8.count < 4096 {
        body += "{\"application_id\":\"app-\(i)\",\"amount_paise\":\(1_500_000 + i),\"status\":\"approved\"},"
        i += 1
    }
    let request = WireEnvelope(
        WireForward(
            method: "POST", path: "/v1/checkouts",
            headers: [WireHeader(name: "content-type", value: "application/json")], body: Array(body.utf8)))
    _ = try await peer.ask(request)  // connect and handshake outside the timed part

    let clock = ContinuousClock()
    let deadline = clock.now + .milliseconds(Int64(seconds * 1000))
    let start = clock.now
    let count = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<64 {
            group.addTask {
                var done = 0
                while clock.now < deadline {
                    _ = try await peer.ask(request)
                    done += 1
                }
                return done
            }
        }
        var total = 0
        for try await done in group { total += done }
        return total
    }
    let elapsed = clock.now - start
    await peer.close()
    await server.close()
    let secondsElapsed = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return Double(count) / max(secondsElapsed, 1e-9)
}
