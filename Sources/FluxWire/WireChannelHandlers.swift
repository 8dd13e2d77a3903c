import Logging
import NIOCore
import NIOExtras

/// Converts a Swift `Duration` to NIO's `TimeAmount`.
extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Pass-through handler in front of the frame decoder: refuses a length prefix
/// over `maxFrameSize` (or under the header size) the moment it arrives.
final class WireFrameLengthGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let codec: WireFrameCodec
    private var scanner = WireLengthScanner()
    private var failed = false

    init(limits: WireLimits) { self.codec = WireFrameCodec(limits: limits) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let buffer = unwrapInboundIn(data)
        do {
            try buffer.withUnsafeReadableBytes { (raw) throws(WireError) in
                try scanner.scan(raw, codec: codec)
            }
        } catch {
            failed = true
            context.fireErrorCaught(error)
            return
        }
        context.fireChannelRead(data)
    }
}

/// Frame body ⇄ `WireEnvelope`: header, flags, LZ4. One frame per read.
final class WireFrameHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = WireEnvelope
    typealias OutboundIn = WireEnvelope
    typealias OutboundOut = ByteBuffer

    private let codec: WireFrameCodec
    private var failed = false

    init(limits: WireLimits) { self.codec = WireFrameCodec(limits: limits) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let buffer = unwrapInboundIn(data)
        let result = buffer.withUnsafeReadableBytes { raw in
            Result { () throws(WireError) in try codec.decode(raw) }
        }
        switch result {
        case .success(let envelope):
            context.fireChannelRead(wrapInboundOut(envelope))
        case .failure(let error):
            failed = true
            context.fireErrorCaught(error)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let envelope = unwrapOutboundIn(data)
        do {
            let bytes = try codec.encode(envelope)
            context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: promise)
        } catch {
            // Our own message is too big: fail that write, keep the connection.
            promise?.fail(error)
        }
    }
}

/// Runs `WireHandshake`; until it completes, no frame passes inward and no
/// frame but the handshake's goes out.
final class WireHandshakeHandler: ChannelDuplexHandler {
    typealias InboundIn = WireEnvelope
    typealias InboundOut = WireEnvelope
    typealias OutboundIn = WireEnvelope
    typealias OutboundOut = WireEnvelope

    private var machine: WireHandshake
    private let timeout: Duration
    private let completion: EventLoopPromise<String>?
    private var logger: Logger
    private var timer: Scheduled<Void>?
    private var started = false

    init(
        machine: WireHandshake, timeout: Duration, completion: EventLoopPromise<String>?, logger: Logger
    ) {
        self.machine = machine
        self.timeout = timeout
        self.completion = completion
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        if let remote = context.channel.remoteAddress { logger[metadataKey: "wire.remote"] = "\(remote)" }
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
            perform(machine.timedOut(), context: loopBoundContext.value)
        }
        perform(machine.start(), context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if machine.isComplete {
            context.fireChannelRead(data)
            return
        }
        perform(machine.receive(unwrapInboundIn(data)), context: context)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard machine.isComplete else {
            promise?.fail(WireError.notAuthenticated(type: unwrapOutboundIn(data).type))
            return
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        completion?.fail(WireError.connectionClosed("closed during the handshake"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Errors from the framing below us before authentication end here too.
        if !machine.isComplete {
            completion?.fail(error)
        }
        context.fireErrorCaught(error)
    }

    private func perform(_ action: WireHandshake.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .send(let envelope):
            context.writeAndFlush(wrapOutboundOut(envelope), promise: nil)
        case .complete(let peer, let send):
            timer?.cancel()
            logger[metadataKey: "wire.peer"] = "\(peer)"
            logger.debug("FluxWire handshake complete")
            if let send { context.writeAndFlush(wrapOutboundOut(send), promise: nil) }
            completion?.succeed(peer)
            context.fireUserInboundEventTriggered(WireAuthenticated(peerNodeID: peer))
        case .fail(let error):
            timer?.cancel()
            completion?.fail(error)
            // Sent down the pipeline; the tail handler logs the reason and closes.
            context.fireErrorCaught(error)
        }
    }
}

/// User event fired once the handshake has proven the peer.
struct WireAuthenticated: Sendable {
    let peerNodeID: String
}

/// Shared by the two tail handlers: log why a connection is closed, close it.
func closeOnError(context: ChannelHandlerContext, error: any Error, logger: Logger, side: String) {
    if let wire = error as? WireError {
        logger.warning(
            "FluxWire connection closed",
            metadata: ["wire.side": "\(side)", "wire.reason": "\(wire.reason)"])
    } else if let frame = error as? NIOLengthFieldBasedFrameDecoderError {
        logger.warning(
            "FluxWire connection closed", metadata: ["wire.side": "\(side)", "wire.reason": "\(frame)"])
    } else {
        logger.debug(
            "FluxWire connection closed", metadata: ["wire.side": "\(side)", "wire.reason": "\(error)"])
    }
    context.close(promise: nil)
}

/// Adds the handlers every FluxWire connection shares, bottom to top.
func addWireHandlers(
    to pipeline: ChannelPipeline.SynchronousOperations,
    configuration: WireConfiguration,
    handshake: WireHandshake,
    completion: EventLoopPromise<String>?,
    logger: Logger
) throws {
    let limits = configuration.limits
    try pipeline.addHandler(WireFrameLengthGuard(limits: limits))
    try pipeline.addHandler(
        ByteToMessageHandler(
            LengthFieldBasedFrameDecoder(lengthFieldBitLength: .fourBytes),
            maximumBufferSize: limits.maxFrameSize + 4))
    try pipeline.addHandler(LengthFieldPrepender(lengthFieldBitLength: .fourBytes))
    try pipeline.addHandler(WireFrameHandler(limits: limits))
    try pipeline.addHandler(
        WireHandshakeHandler(
            machine: handshake, timeout: configuration.handshakeTimeout, completion: completion, logger: logger))
}
