import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import FluxWire

private let secret = Array("loopback-secret".utf8)

/// Collects log messages so tests can check that a close was logged with its reason.
final class CapturedLogs: @unchecked Sendable {
    // @unchecked: every access to `lines` holds `lock`.
    private let lock = NSLock()
    private var lines: [String] = []

    func append(_ line: String) {
        lock.lock()
        lines.append(line)
        lock.unlock()
    }

    var all: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { _ in CapturingHandler(sink: self) }
        logger.logLevel = .debug
        return logger
    }
}

struct CapturingHandler: LogHandler {
    let sink: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        sink.append("\(event.message) \(merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })")
    }
}

/// Handler used by the tests: pings are acked, "hold" forwards wait until released.
actor Gate {
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var open = false
    func wait() async {
        if open { return }
        await withCheckedContinuation { waiters.append($0) }
    }
    func release() {
        open = true
        for waiter in waiters { waiter.resume() }
        waiters.removeAll()
    }
}

private func echo(_ gate: Gate) -> WireServer.Handler {
    { request in
        switch request.type {
        case WireMessageType.ping:
            guard let ping = try? request.decode(as: WirePing.self) else { return nil }
            return .reply(WireAck(from: "server", incarnation: ping.incarnation + 1, updates: ping.updates))
        case WireMessageType.forward:
            guard let forward = try? request.decode(as: WireForward.self) else { return nil }
            if forward.path == "/hold" { await gate.wait() }
            if forward.path == "/huge" {
                // Random bytes do not compress: the reply is over the 4 MiB frame limit.
                var rng = SystemRandomNumberGenerator()
                var words = [UInt64](repeating: 0, count: (4 * 1024 * 1024 + 4096) / 8)
                for i in words.indices { words[i] = rng.next() }
                let body = words.withUnsafeBytes { Array($0) }
                return .reply(WireForwardReply(status: 200, body: body))
            }
            return .reply(WireForwardReply(status: 200, body: forward.body))
        default:
            return .errorReply(code: "unsupported", message: "type \(request.type)")
        }
    }
}

private func config(handshakeTimeout: Duration = .seconds(10)) -> WireConfiguration {
    WireConfiguration(
        handshakeTimeout: handshakeTimeout, askTimeout: .seconds(10),
        backoff: .init(base: .zero, cap: .zero, jitter: 0))
}

private func startServer(
    _ logs: CapturedLogs, gate: Gate, port: Int = 0, configuration: WireConfiguration = config()
) async throws -> WireServer {
    try await WireServer.bind(
        host: "127.0.0.1", port: port, localNodeID: "server", secret: secret, configuration: configuration,
        logger: logs.logger("server"), handler: echo(gate))
}

private func peer(_ server: WireServer, secret: [UInt8] = secret, id: String = "client") -> WirePeer {
    WirePeer(host: "127.0.0.1", port: server.port, localNodeID: id, secret: secret, configuration: config())
}

/// Opens a raw TCP connection, sends `bytes`, and waits until the server closes it.
private func sendRaw(_ bytes: [UInt8], to server: WireServer) async throws -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: server.port).get()
    try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    try await channel.closeFuture.get()
    return clock.now - start
}

private func ping(_ peer: WirePeer, _ n: UInt64) async throws -> WireAck {
    try await peer.ask(WirePing(from: "client", incarnation: n, updates: []), expecting: WireAck.self)
}

@Suite(.serialized) struct WireLoopbackTests {
    @Test func handshakeThenAskReply() async throws {
        let logs = CapturedLogs()
        let gate = Gate()
        let server = try await startServer(logs, gate: gate)
        let client = peer(server)
        let update = WireMemberUpdate(memberID: "n1", address: "127.0.0.1:1", incarnation: 4, status: .suspect)
        let ack = try await client.ask(
            WirePing(from: "client", incarnation: 41, updates: [update]), expecting: WireAck.self)
        #expect(ack == WireAck(from: "server", incarnation: 42, updates: [update]))
        #expect(await client.peerNodeID == "server")
        // A large compressible body goes through LZ4 both ways.
        let body = Array(String(repeating: "{\"amount_paise\":1500000}", count: 2000).utf8)
        let reply = try await client.ask(
            WireForward(method: "POST", path: "/x", body: body), expecting: WireForwardReply.self)
        #expect(reply.body == body)
        // Concurrent asks are matched by correlation id.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<50 {
                group.addTask {
                    let ack = try await ping(client, UInt64(n))
                    #expect(ack.incarnation == UInt64(n) + 1)
                }
            }
            try await group.waitForAll()
        }
        // A reply too large to send comes back as an error, not a timeout.
        do {
            _ = try await client.ask(WireForward(method: "GET", path: "/huge"), expecting: WireForwardReply.self)
            Issue.record("a reply over the frame limit was delivered")
        } catch {
            guard case .remote(code: "reply_failed", let message) = error, message.contains("exceeds the maximum")
            else {
                Issue.record("unexpected error \(error)")
                return
            }
        }
        // An error reply becomes a typed remote error.
        await #expect(throws: WireError.remote(code: "unsupported", message: "type 64")) {
            try await client.ask(
                WireShardHandover(shard: 1, epoch: 1, fromNode: "a", toNode: "b"), expecting: WireShardHandoverAck.self)
        }
        await client.close()
        await server.close()
    }

    @Test func badClientsAreDroppedWhileAGoodOneKeepsWorking() async throws {
        let logs = CapturedLogs()
        let gate = Gate()
        let server = try await startServer(logs, gate: gate)
        let good = peer(server)
        #expect(try await ping(good, 1).incarnation == 2)

        // Wrong secret: the handshake fails on both sides.
        let impostor = peer(server, secret: Array("guess".utf8), id: "impostor")
        await #expect(throws: WireError.self) { try await ping(impostor, 1) }
        #expect(try await ping(good, 2).incarnation == 3)

        // A ping before any handshake.
        let early = try WireFrameCodec().encode(WireEnvelope(WirePing(from: "x", incarnation: 1), correlationID: 1))
        let lengthPrefixed = [0, 0, 0, UInt8(early.count)] + early
        #expect(try await sendRaw(lengthPrefixed, to: server) < .seconds(5))
        #expect(try await ping(good, 3).incarnation == 4)

        // A length prefix far over the maximum: refused before the body arrives.
        #expect(try await sendRaw([0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3], to: server) < .seconds(5))
        // Garbage header: unknown version.
        #expect(try await sendRaw([0, 0, 0, 12] + [UInt8](repeating: 0x42, count: 12), to: server) < .seconds(5))
        #expect(try await ping(good, 4).incarnation == 5)

        await good.close()
        await server.close()
        let lines = logs.all.joined(separator: "\n")
        #expect(lines.contains("handshake proof does not match the cluster secret"))
        #expect(lines.contains("before the handshake completed"))
        #expect(lines.contains("exceeds the maximum of 4194304"))
        #expect(lines.contains("unsupported magic/protocol version byte 0x42"))
    }

    @Test func silentClientIsClosedAtTheHandshakeTimeout() async throws {
        let logs = CapturedLogs()
        let server = try await startServer(
            logs, gate: Gate(), configuration: config(handshakeTimeout: .milliseconds(100)))
        let elapsed = try await sendRaw([], to: server)
        #expect(elapsed >= .milliseconds(100))
        #expect(logs.all.contains { $0.contains("handshake did not complete in time") })
        await server.close()
    }

    @Test func askTimesOutAndTheConnectionStaysUsable() async throws {
        let logs = CapturedLogs()
        let gate = Gate()
        let server = try await startServer(logs, gate: gate)
        let client = peer(server)
        await #expect(throws: WireError.askTimeout(type: WireMessageType.forward)) {
            try await client.ask(WireEnvelope(WireForward(method: "GET", path: "/hold")), timeout: .milliseconds(50))
        }
        #expect(try await ping(client, 7).incarnation == 8)
        await gate.release()
        await client.close()
        await server.close()
    }

    @Test func inFlightAsksFailOnDisconnectAndThePeerReconnects() async throws {
        let logs = CapturedLogs()
        let gate = Gate()
        let server = try await startServer(logs, gate: gate)
        let port = server.port
        let client = peer(server)
        #expect(try await ping(client, 1).incarnation == 2)

        let held = Task {
            try await client.ask(WireEnvelope(WireForward(method: "GET", path: "/hold")), timeout: .seconds(30))
        }
        // Make sure the held ask reached the server before closing it.
        #expect(try await ping(client, 2).incarnation == 3)
        let clock = ContinuousClock()
        let start = clock.now
        await server.close()
        await #expect(throws: WireError.self) { try await held.value }
        #expect(clock.now - start < .seconds(5))
        await gate.release()

        // Nothing listens: asks fail with a typed error, not a hang.
        await #expect(throws: WireError.self) { try await ping(client, 3) }

        let restarted = try await startServer(logs, gate: gate, port: port)
        var answered: WireAck?
        for attempt in 0..<20 where answered == nil {
            answered = try? await ping(client, UInt64(100 + attempt))
        }
        #expect(answered != nil)
        #expect(await client.consecutiveFailures == 0)
        await client.close()
        await restarted.close()
    }

    @Test func benchmarkRuns() async throws {
        let result = try await runWireBenchmark(seconds: 0.05)
        #expect(result.plain > 0)
        #expect(result.lz4 > 0)
    }
}
