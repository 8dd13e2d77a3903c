import Logging
import NIOCore
import NIOExtras
import NIOPosix

/// Accepts FluxWire connections, runs the handshake on each, and hands every
/// authenticated ask to an async handler. A connection that sends a malformed,
/// oversized or unauthenticated frame is closed alone; others carry on.
public final class WireServer: Sendable {
    public typealias Handler = @Sendable (WireEnvelope) async -> WireEnvelope?
    /// Like `Handler`, also given the node id the connection's peer proved in the handshake.
    public typealias PeerHandler = @Sendable (_ request: WireEnvelope, _ peerNodeID: String) async -> WireEnvelope?

    private let channel: any Channel
    private let quiesce: ServerQuiescingHelper
    /// The address actually bound (port 0 picks a free one).
    public let localAddress: SocketAddress

    private init(channel: any Channel, quiesce: ServerQuiescingHelper) throws {
        self.channel = channel
        self.quiesce = quiesce
        guard let address = channel.localAddress else {
            throw WireError.connectionClosed("server socket has no local address")
        }
        self.localAddress = address
    }

    public var port: Int { localAddress.port ?? 0 }

    public static func bind(
        host: String,
        port: Int,
        localNodeID: String,
        secret: [UInt8],
        configuration: WireConfiguration = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "flux.wire.server"),
        handler: @escaping Handler
    ) async throws -> WireServer {
        try await bind(
            host: host, port: port, localNodeID: localNodeID, secret: secret, configuration: configuration,
            group: group,
            logger: logger, peerHandler: { request, _ in await handler(request) })
    }

    /// `bind` with a handler that also learns which (authenticated) node sent each frame.
    public static func bind(
        host: String,
        port: Int,
        localNodeID: String,
        secret: [UInt8],
        configuration: WireConfiguration = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "flux.wire.server"),
        peerHandler handler: @escaping PeerHandler
    ) async throws -> WireServer {
        let quiesce = ServerQuiescingHelper(group: group)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handshake = WireHandshake(
                        role: .server, localNodeID: localNodeID, secret: secret,
                        challenge: WireHandshake.randomChallenge())
                    let sync = channel.pipeline.syncOperations
                    try addWireHandlers(
                        to: sync, configuration: configuration, handshake: handshake, completion: nil, logger: logger)
                    try sync.addHandler(
                        WireServerDispatchHandler(
                            handler: handler, maxInFlight: configuration.maxInFlight, logger: logger))
                }
            }
            .bind(host: host, port: port)
            .get()
        return try WireServer(channel: channel, quiesce: quiesce)
    }

    /// Stops accepting and closes every connection (asks in flight on them
    /// fail on the peers' side with `connectionClosed`).
    public func close() async {
        let done = channel.eventLoop.makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: done)
        try? await done.futureResult.get()
    }
}

/// Tail of a server connection: runs the async handler for each ask and
/// writes its reply back with the ask's correlation id.
final class WireServerDispatchHandler: ChannelInboundHandler {
    typealias InboundIn = WireEnvelope
    typealias OutboundOut = WireEnvelope

    private let handler: WireServer.PeerHandler
    private let maxInFlight: Int
    private var logger: Logger
    private var inFlight = 0
    /// Set by the handshake's `WireAuthenticated` event, which comes before any other frame.
    private var peerNodeID = ""

    init(handler: @escaping WireServer.PeerHandler, maxInFlight: Int, logger: Logger) {
        self.handler = handler
        self.maxInFlight = maxInFlight
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            context.close(promise: nil)
            return
        }
        if let authenticated = event as? WireAuthenticated {
            logger[metadataKey: "wire.peer"] = "\(authenticated.peerNodeID)"
            peerNodeID = authenticated.peerNodeID
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let request = unwrapInboundIn(data)
        guard !request.isReply else {
            // Server connections carry asks and tells only; a stray reply is dropped.
            logger.debug("FluxWire server ignored a reply frame", metadata: ["wire.type": "\(request.type)"])
            return
        }
        let correlationID = request.correlationID
        guard inFlight < maxInFlight else {
            if correlationID != 0 {
                var busy = WireEnvelope.errorReply(
                    code: "busy", message: WireError.tooManyInFlight(max: maxInFlight).reason)
                busy.header.correlationID = correlationID
                context.writeAndFlush(wrapOutboundOut(busy), promise: nil)
            }
            return
        }
        inFlight += 1
        let handler = self.handler
        let peer = peerNodeID
        let channel = context.channel
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        Task {
            let reply = await handler(request, peer)
            channel.eventLoop.execute { bound.value.inFlight -= 1 }
            // Correlation id 0 is a tell: nothing goes back.
            guard correlationID != 0, var reply else { return }
            reply.header.correlationID = correlationID
            reply.header.flags.insert(.reply)
            reply.header.flags.remove(.compressed)
            channel.writeAndFlush(reply).whenFailure { error in
                // The handler's reply could not be encoded (e.g. over the frame size):
                // tell the asker instead of letting it time out.
                guard let wire = error as? WireError else { return }
                var failure = WireEnvelope.errorReply(code: "reply_failed", message: wire.reason)
                failure.header.correlationID = correlationID
                channel.writeAndFlush(failure, promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeOnError(context: context, error: error, logger: logger, side: "server")
    }
}
