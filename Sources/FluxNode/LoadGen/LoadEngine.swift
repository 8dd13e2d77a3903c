import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The load generator's own HTTP/1.1 client for plain `http://` targets: the schedule, the
/// connection pool, every request and the tally live on one event loop, so a request costs a few
/// microseconds of the machine the system under test shares (AsyncHTTPClient cost ≈ 0.5 ms of CPU
/// per checkout here, most of it task, actor and pool hops the generator does not need).
///
/// Semantics are those of `runLoadGen` (Docs/loadgen.md): open loop from a fixed schedule,
/// latency from the intended send time, at most `poolSize` keep-alive connections per target
/// opened as requests need them, a request finding them all busy waits for one (and that wait
/// counts), at most `maxInFlight` pending before a due request is `dropped`, one request per
/// connection at a time (no pipelining, as a store's app would send).
final class LoadEngine: @unchecked Sendable {
    // @unchecked Sendable: every stored property is read and written only on `loop` — `start`
    // and `stopSchedule` hop onto it, and every NIO callback (connect, channel reads, scheduled
    // ticks and sweeps) runs on it because each channel is bootstrapped on `loop` itself.
    // `loop.assertInEventLoop()` guards the entry points in debug builds.

    struct Target {
        var host: String
        var port: Int
        var path: String
        var hostHeader: String
    }

    struct Pending {
        var intended: NIODeadline
        var deadline: NIODeadline
        var head: HTTPRequestHead
        var body: ByteBuffer
    }

    final class Connection: @unchecked Sendable {
        // @unchecked Sendable: captured by the bootstrap's closures, which run on `loop`; like
        // the engine it is only touched there.
        let target: Int
        var handler: LoadConnectionHandler?
        var current: Pending?
        init(target: Int) { self.target = target }
    }

    struct PerTarget {
        var idle: [Connection] = []
        var busy: [ObjectIdentifier: Connection] = [:]
        var connecting = 0
        var waiting: CircularBuffer<Pending> = []
        var open: Int { idle.count + busy.count }
    }

    let loop: any EventLoop
    let options: LoadGenOptions
    let targets: [Target]
    let total: Int
    let intervalNs: Double
    let timeout: TimeAmount
    let poolSize: Int
    var generator: CheckoutBodyGenerator
    var pools: [PerTarget]
    var start = NIODeadline.now()
    var next = 0
    var scheduleDone = false
    var finished = false
    var sweeper: RepeatedTask?
    let promise: EventLoopPromise<LoadReport>

    var counts = LoadCounts()
    var lastReply: NIODeadline?

    /// Only for `http` targets (`LoadEngine.handles`).
    init(options: LoadGenOptions, runID: String, loop: any EventLoop) {
        self.loop = loop
        self.options = options
        targets = options.targets.map { url in
            let host = url.host ?? "127.0.0.1"
            let port = url.port ?? 80
            var base = url.path
            while base.hasSuffix("/") { base.removeLast() }
            return Target(host: host, port: port, path: base + "/v1/applications", hostHeader: "\(host):\(port)")
        }
        total = Int((options.rate * options.durationSeconds).rounded())
        intervalNs = 1e9 / options.rate
        timeout = .nanoseconds(Int64((Double(options.waitSeconds) + options.timeoutSeconds) * 1e9))
        poolSize = options.poolSize
        generator = CheckoutBodyGenerator(seed: options.seed, runID: runID)
        pools = Array(repeating: PerTarget(), count: options.targets.count)
        promise = loop.makePromise(of: LoadReport.self)
    }

    /// Whether every target is plain HTTP (TLS targets go through AsyncHTTPClient).
    static func handles(_ options: LoadGenOptions) -> Bool { options.targets.allSatisfy { $0.scheme == "http" } }

    /// Runs the schedule to its end and every request to its outcome.
    func run() async throws -> LoadReport {
        loop.execute { self.begin() }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            // Cancellation ends the schedule early; what is in flight still completes.
            self.loop.execute { self.stopSchedule() }
        }
    }

    // MARK: Schedule

    private func begin() {
        loop.assertInEventLoop()
        start = .now()
        sweeper = loop.scheduleRepeatedTask(initialDelay: .milliseconds(10), delay: .milliseconds(10)) { _ in
            self.sweep()
        }
        tick()
    }

    private func intended(_ i: Int) -> NIODeadline { start + .nanoseconds(Int64(Double(i) * intervalNs)) }

    /// Sends every request that is due, then sleeps until the next one is.
    private func tick() {
        guard !scheduleDone else { return }
        let now = NIODeadline.now()
        while next < total, intended(next) <= now {
            issue(next, now: now)
            next += 1
        }
        if next >= total {
            stopSchedule()
        } else {
            loop.scheduleTask(deadline: intended(next)) { self.tick() }
        }
    }

    func stopSchedule() {
        loop.assertInEventLoop()
        scheduleDone = true
        finishIfDone()
    }

    private func issue(_ i: Int, now: NIODeadline) {
        let due = intended(i)
        guard counts.admit(limit: options.maxInFlight, lagNs: nanoseconds(now - due)) else { return }
        let checkout = generator.next()
        let t = i % targets.count
        var headers = HTTPHeaders()
        headers.reserveCapacity(7)
        headers.add(name: "Host", value: targets[t].hostHeader)
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(checkout.body.count))
        headers.add(name: "Idempotency-Key", value: checkout.idempotencyKey)
        if let key = options.apiKey { headers.add(name: "Authorization", value: "Bearer \(key)") }
        if options.waitSeconds > 0 { headers.add(name: "Prefer", value: "wait=\(options.waitSeconds)") }
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: targets[t].path, headers: headers)
        let pending = Pending(
            intended: due, deadline: now + timeout, head: head, body: ByteBuffer(bytes: checkout.body))
        if let connection = pools[t].idle.popLast() {
            send(pending, on: connection)
        } else {
            pools[t].waiting.append(pending)
            openIfNeeded(t)
        }
    }

    // MARK: Connections

    /// Opens a connection when requests wait for one and the pool has room.
    private func openIfNeeded(_ t: Int) {
        guard pools[t].waiting.count > pools[t].connecting, pools[t].open + pools[t].connecting < poolSize else {
            return
        }
        pools[t].connecting += 1
        let connection = Connection(target: t)
        let engine = self
        ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    let handler = LoadConnectionHandler(engine: engine, connection: connection)
                    connection.handler = handler
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: targets[t].host, port: targets[t].port)
            .whenComplete { result in
                engine.connected(connection, result.map { _ in () })
            }
    }

    private func connected(_ connection: Connection, _ result: Result<Void, any Error>) {
        loop.assertInEventLoop()
        let t = connection.target
        pools[t].connecting -= 1
        switch result {
        case .success:
            ready(connection)
        case .failure(let error):
            // With no connection left to this target, the waiting requests cannot be sent.
            if pools[t].open == 0, pools[t].connecting == 0 {
                let failure = SendFailure(error)
                let now = NIODeadline.now()
                while let pending = pools[t].waiting.popFirst() { settle(pending, failure: failure, now: now) }
            }
        }
        finishIfDone()
    }

    /// A connection free for the next request: the oldest waiting one, or the idle list.
    private func ready(_ connection: Connection) {
        let t = connection.target
        if let pending = pools[t].waiting.popFirst() {
            send(pending, on: connection)
        } else if scheduleDone && counts.inFlight == 0 {
            connection.handler?.close()
        } else {
            pools[t].idle.append(connection)
        }
    }

    private func send(_ pending: Pending, on connection: Connection) {
        connection.current = pending
        pools[connection.target].busy[ObjectIdentifier(connection)] = connection
        connection.handler?.send(head: pending.head, body: pending.body)
    }

    /// A whole response arrived on `connection`.
    func responded(_ connection: Connection, status: Int, body: ByteBuffer?, keepAlive: Bool) {
        loop.assertInEventLoop()
        let t = connection.target
        pools[t].busy.removeValue(forKey: ObjectIdentifier(connection))
        if let pending = connection.current {
            connection.current = nil
            let now = NIODeadline.now()
            let appStatus = body.flatMap { applicationStatus(in: Data($0.readableBytesView)) }
            counts.response(
                status: status, applicationStatus: appStatus, latencyNs: nanoseconds(now - pending.intended))
            lastReply = now
        }
        if keepAlive {
            ready(connection)
        } else {
            connection.handler?.close()
        }
        finishIfDone()
    }

    /// The connection closed (by either side, or after an error).
    func closed(_ connection: Connection) {
        loop.assertInEventLoop()
        let t = connection.target
        pools[t].busy.removeValue(forKey: ObjectIdentifier(connection))
        pools[t].idle.removeAll { $0 === connection }
        connection.handler = nil
        if let pending = connection.current {
            connection.current = nil
            settle(pending, failure: .broken("connection closed"), now: .now())
        }
        openIfNeeded(t)
        finishIfDone()
    }

    private func settle(_ pending: Pending, failure: SendFailure, now: NIODeadline) {
        counts.failure(failure, latencyNs: nanoseconds(now - pending.intended))
        lastReply = now
    }

    /// Requests past their timeout, sent or still waiting for a connection, are slow replies:
    /// counted, kept in the latency tail, and their connection closed.
    private func sweep() {
        let now = NIODeadline.now()
        for t in pools.indices {
            while let first = pools[t].waiting.first, first.deadline <= now {
                pools[t].waiting.removeFirst()
                settle(first, failure: .timedOut, now: now)
            }
            for connection in pools[t].busy.values {
                guard let pending = connection.current, pending.deadline <= now else { continue }
                connection.current = nil
                settle(pending, failure: .timedOut, now: now)
                connection.handler?.close()
            }
        }
        finishIfDone()
    }

    private func finishIfDone() {
        guard scheduleDone, counts.inFlight == 0, !finished else { return }
        finished = true
        sweeper?.cancel()
        for t in pools.indices {
            for connection in pools[t].idle { connection.handler?.close() }
            pools[t].idle = []
        }
        let end = lastReply ?? .now()
        promise.succeed(counts.report(options, elapsedSeconds: Double((end - start).nanoseconds) / 1e9))
    }

    private func nanoseconds(_ t: TimeAmount) -> UInt64 { UInt64(max(0, t.nanoseconds)) }
}

/// One keep-alive connection of the load engine: writes a request, gathers its response.
final class LoadConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked Sendable: created in the channel initializer and used only on the channel's event
    // loop, which is the engine's loop (see `LoadEngine`).
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    static let maxBody = 1 << 20

    let engine: LoadEngine
    let connection: LoadEngine.Connection
    private var context: ChannelHandlerContext?
    private var status = 0
    private var keepAlive = true
    private var body: ByteBuffer?

    init(engine: LoadEngine, connection: LoadEngine.Connection) {
        self.engine = engine
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(head: HTTPRequestHead, body: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func close() { context?.close(promise: nil) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            keepAlive = head.isKeepAlive
            body = nil
        case .body(var part):
            if body == nil {
                body = part
            } else {
                body!.writeBuffer(&part)
            }
            if (body?.readableBytes ?? 0) > Self.maxBody { context.close(promise: nil) }
        case .end:
            let reply = body
            body = nil
            engine.responded(connection, status: status, body: reply, keepAlive: keepAlive)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        engine.closed(connection)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}
