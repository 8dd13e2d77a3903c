import Logging
import NIOCore
import NIOPosix

/// One authenticated connection to one peer, opened on first use.
///
/// Asks carry a fresh correlation id and their own timeout; when the
/// connection drops, every ask in flight fails with `connectionClosed`. The
/// next ask reconnects — unless the last connects failed, in which case asks
/// fail fast with `peerUnavailable` until the capped, jittered backoff delay
/// has passed (so a dead peer costs nothing but that error).
public actor WirePeer {
    public nonisolated let host: String
    public nonisolated let port: Int
    private let localNodeID: String
    private let secret: [UInt8]
    private let expectedPeerID: String?
    private let configuration: WireConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    /// Told when an established connection closes (the peer died, or the network broke).
    private let onDisconnect: (@Sendable () -> Void)?

    private var channel: (any Channel)?
    private var connecting: Task<(any Channel, String), any Error>?
    private var backoff: WireBackoff
    private var notBefore: ContinuousClock.Instant?
    private var isClosed = false
    /// The node id the peer proved in the last handshake.
    public private(set) var peerNodeID: String?

    public init(
        host: String,
        port: Int,
        localNodeID: String,
        secret: [UInt8],
        expectedPeerID: String? = nil,
        configuration: WireConfiguration = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "flux.wire.peer"),
        onDisconnect: (@Sendable () -> Void)? = nil
    ) {
        self.onDisconnect = onDisconnect
        self.host = host
        self.port = port
        self.localNodeID = localNodeID
        self.secret = secret
        self.expectedPeerID = expectedPeerID
        self.configuration = configuration
        self.group = group
        var logger = logger
        logger[metadataKey: "wire.remote"] = "\(host):\(port)"
        self.logger = logger
        self.backoff = WireBackoff(policy: configuration.backoff)
    }

    /// Sends `envelope` and waits for the reply frame (which may carry the
    /// error flag; `WireEnvelope.decode(as:)` turns that into `WireError.remote`).
    public func ask(_ envelope: WireEnvelope, timeout: Duration? = nil) async throws(WireError) -> WireEnvelope {
        let channel = try await connectedChannel()
        let reply = channel.eventLoop.makePromise(of: WireEnvelope.self)
        let outbound = WireOutbound.ask(envelope, timeout: timeout ?? configuration.askTimeout, promise: reply)
        channel.writeAndFlush(outbound).whenFailure { error in
            // The write never reached the handler (channel already closed).
            reply.fail(WireError.connectionClosed("\(error)"))
        }
        do {
            return try await reply.futureResult.get()
        } catch {
            throw Self.wireError(error)
        }
    }

    /// Typed ask: sends `message`, decodes the reply as `R`.
    public func ask<M: WireMessage, R: WireMessage>(
        _ message: M, expecting: R.Type, timeout: Duration? = nil
    ) async throws(WireError) -> R {
        try await ask(WireEnvelope(message), timeout: timeout).decode(as: R.self)
    }

    /// One-way message: no correlation id, no reply.
    public func tell<M: WireMessage>(_ message: M) async throws(WireError) {
        try await tell(WireEnvelope(message))
    }

    /// One-way frame, already encoded as an envelope (its correlation id is ignored: a tell
    /// carries 0). Returns once the frame is written to the socket.
    public func tell(_ envelope: WireEnvelope) async throws(WireError) {
        let channel = try await connectedChannel()
        let written = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(WireOutbound.tell(envelope, promise: written)).whenFailure { error in
            written.fail(error)
        }
        do {
            try await written.futureResult.get()
        } catch {
            throw Self.wireError(error)
        }
    }

    /// Closes the connection for good; later asks fail.
    public func close() async {
        isClosed = true
        connecting?.cancel()
        if let channel { try? await channel.close() }
        channel = nil
    }

    /// Failed connects in a row (0 once connected).
    public var consecutiveFailures: Int { backoff.failures }

    private func connectedChannel() async throws(WireError) -> any Channel {
        guard !isClosed else { throw .connectionClosed("peer closed locally") }
        if let channel, channel.isActive { return channel }
        channel = nil
        if let connecting {
            do {
                return try await connecting.value.0
            } catch {
                throw .peerUnavailable(Self.wireError(error).reason)
            }
        }
        if let notBefore, ContinuousClock.now < notBefore {
            throw .peerUnavailable(
                "\(backoff.failures) failed connects, next attempt in \(notBefore - ContinuousClock.now)")
        }
        let task = Task { [host, port, localNodeID, secret, expectedPeerID, configuration, group, logger] in
            try await Self.connect(
                host: host, port: port, localNodeID: localNodeID, secret: secret, expectedPeerID: expectedPeerID,
                configuration: configuration, group: group, logger: logger)
        }
        connecting = task
        do {
            let (channel, peer) = try await task.value
            connecting = nil
            guard !isClosed else {
                channel.close(promise: nil)
                throw WireError.connectionClosed("peer closed locally")
            }
            self.channel = channel
            self.peerNodeID = peer
            if let onDisconnect { channel.closeFuture.whenComplete { _ in onDisconnect() } }
            backoff.succeeded()
            notBefore = nil
            return channel
        } catch {
            connecting = nil
            let wire = Self.wireError(error)
            let delay = backoff.failed(random: Double.random(in: 0...1))
            notBefore = ContinuousClock.now + delay
            logger.info(
                "FluxWire connect failed",
                metadata: [
                    "wire.reason": "\(wire.reason)", "wire.failures": "\(backoff.failures)",
                    "wire.retry_in": "\(delay)",
                ])
            throw .peerUnavailable(wire.reason)
        }
    }

    private static func connect(
        host: String, port: Int, localNodeID: String, secret: [UInt8], expectedPeerID: String?,
        configuration: WireConfiguration, group: any EventLoopGroup, logger: Logger
    ) async throws -> (any Channel, String) {
        let handshakeDone = group.any().makePromise(of: String.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(configuration.connectTimeout))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handshake = WireHandshake(
                            role: .client(expectedPeer: expectedPeerID), localNodeID: localNodeID, secret: secret,
                            challenge: WireHandshake.randomChallenge())
                        let sync = channel.pipeline.syncOperations
                        try addWireHandlers(
                            to: sync, configuration: configuration, handshake: handshake,
                            completion: handshakeDone, logger: logger)
                        try sync.addHandler(WireClientHandler(maxInFlight: configuration.maxInFlight, logger: logger))
                    }
                }
                .connect(host: host, port: port)
                .get()
        } catch {
            handshakeDone.fail(error)
            throw error
        }
        do {
            let peer = try await handshakeDone.futureResult.get()
            return (channel, peer)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    static func wireError(_ error: any Error) -> WireError {
        if let wire = error as? WireError { return wire }
        if error is CancellationError { return .connectionClosed("cancelled") }
        return .connectionClosed("\(error)")
    }
}
