import Logging
import NIOCore

/// What `WirePeer` writes into a client connection.
enum WireOutbound: Sendable {
    /// Wait for the reply with a fresh correlation id, or fail after `timeout`.
    case ask(WireEnvelope, timeout: Duration, promise: EventLoopPromise<WireEnvelope>)
    /// Fire and forget (correlation id 0).
    case tell(WireEnvelope, promise: EventLoopPromise<Void>?)
}

/// Tail of a client connection: assigns correlation ids, matches replies to
/// asks, times asks out, and fails every ask in flight when the connection goes.
final class WireClientHandler: ChannelDuplexHandler {
    typealias InboundIn = WireEnvelope
    typealias OutboundIn = WireOutbound
    typealias OutboundOut = WireEnvelope

    private struct Pending {
        let promise: EventLoopPromise<WireEnvelope>
        let timer: Scheduled<Void>
    }

    private var nextID: UInt64 = 1
    private var pending: [UInt64: Pending] = [:]
    private let maxInFlight: Int
    private var logger: Logger

    init(maxInFlight: Int, logger: Logger) {
        self.maxInFlight = maxInFlight
        self.logger = logger
    }

    var inFlight: Int { pending.count }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .tell(var envelope, let tellPromise):
            envelope.header.correlationID = 0
            context.write(wrapOutboundOut(envelope), promise: tellPromise)
            promise?.succeed()
        case .ask(var envelope, let timeout, let replyPromise):
            guard pending.count < maxInFlight else {
                replyPromise.fail(WireError.tooManyInFlight(max: maxInFlight))
                promise?.succeed()
                return
            }
            let id = nextID
            nextID = nextID == .max ? 1 : nextID + 1
            envelope.header.correlationID = id
            let type = envelope.type
            let timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
                if let entry = pending.removeValue(forKey: id) {
                    entry.promise.fail(WireError.askTimeout(type: type))
                }
            }
            pending[id] = Pending(promise: replyPromise, timer: timer)
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.assumeIsolated().whenFailure { [self] error in
                if let entry = pending.removeValue(forKey: id) {
                    entry.timer.cancel()
                    entry.promise.fail(error)
                }
            }
            context.write(wrapOutboundOut(envelope), promise: written)
            promise?.succeed()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.isReply, let entry = pending.removeValue(forKey: envelope.correlationID) else {
            // Late reply after a timeout, or an ask from the server side (not used).
            logger.debug(
                "FluxWire client dropped an unmatched frame",
                metadata: ["wire.type": "\(envelope.type)", "wire.correlation": "\(envelope.correlationID)"])
            return
        }
        entry.timer.cancel()
        entry.promise.succeed(envelope)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(WireError.connectionClosed("connection lost with the ask in flight"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason = (error as? WireError)?.reason ?? "\(error)"
        failAll(WireError.connectionClosed(reason))
        closeOnError(context: context, error: error, logger: logger, side: "client")
    }

    private func failAll(_ error: WireError) {
        let entries = pending
        pending.removeAll()
        for (_, entry) in entries {
            entry.timer.cancel()
            entry.promise.fail(error)
        }
    }
}
