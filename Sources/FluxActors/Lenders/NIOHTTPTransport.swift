import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// `HTTPTransport` for plain `http://` lenders straight over SwiftNIO's HTTP/1.1 codec: per lender
/// host a pool of keep-alive connections confined to one event loop, one request per connection
/// at a time. `https://` requests go to `tls` (AsyncHTTPClient, which owns certificates, SNI and
/// ALPN).
///
/// Why not AsyncHTTPClient for everything: at checkout rates a node makes two to four lender
/// calls per checkout, and AsyncHTTPClient's request and pool state machines, its streamed
/// response body and the hops between them were the largest single block of the node's CPU
/// (Docs/benchmarks.md). Here a call is one hop onto the pool's loop and one continuation back.
///
/// Semantics are AsyncHTTPClientTransport's (the connector relies on them to decide whether
/// `apply` may be sent again):
/// - a connection that cannot be made (refused, unreachable, connect timeout), or no free
///   connection within the request's timeout: `.couldNotConnect` — nothing was written;
/// - no complete reply within the timeout after the request was written: `.timedOut`, and the
///   connection is closed (its late reply must not be read as the next request's);
/// - the connection closed or failed after the request was written: `.connectionLost`;
/// - a reply over 1 MiB: `.other`. Redirects are returned as they are, not followed.
public final class NIOHTTPTransport: HTTPTransport {
    static let maxReplyBytes = 1 << 20

    let group: any EventLoopGroup
    let connectionsPerHost: Int
    let connectTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let tls: any HTTPTransport
    private let pools = Mutex<[String: HostPool]>([:])

    public init(
        connectionsPerHost: Int = 256, connectTimeout: Duration = .seconds(2), idleTimeout: Duration = .seconds(60),
        tls: any HTTPTransport = AsyncHTTPClientTransport(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.group = group
        self.connectionsPerHost = max(1, connectionsPerHost)
        self.connectTimeout = .nanoseconds(connectTimeout.wholeNanoseconds)
        self.idleTimeout = .nanoseconds(idleTimeout.wholeNanoseconds)
        self.tls = tls
    }

    public func shutdown() async {
        let all = pools.withLock { p in
            defer { p = [:] }
            return Array(p.values)
        }
        for pool in all { pool.loop.execute { pool.close() } }
        await tls.shutdown()
    }

    public func send(_ request: LenderHTTPRequest, timeout: Duration) async throws(TransportError)
        -> LenderHTTPResponse
    {
        guard request.url.hasPrefix("http://") else { return try await tls.send(request, timeout: timeout) }
        guard let target = HTTPTarget(url: request.url) else {
            throw .couldNotConnect("invalid URL \(request.url.prefix(120))")
        }
        let pool = self.pool(target)
        var headers = HTTPHeaders()
        headers.reserveCapacity(request.headers.count + 2)
        var hasHost = false
        for h in request.headers {
            let name = h.name.lowercased()
            if name == "host" { hasHost = true }
            if name == "content-length" { continue }
            headers.add(name: h.name, value: h.value)
        }
        if !hasHost { headers.add(name: "Host", value: target.hostHeader) }
        let body = request.body.map { ByteBuffer(bytes: $0) }
        if let body {
            headers.add(name: "Content-Length", value: String(body.readableBytes))
        } else if request.method != "GET" && request.method != "HEAD" {
            headers.add(name: "Content-Length", value: "0")
        }
        let call = HostPool.Call(
            head: HTTPRequestHead(
                version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: target.pathAndQuery,
                headers: headers),
            body: body, timeout: .nanoseconds(timeout.wholeNanoseconds))
        let result: Result<LenderHTTPResponse, TransportError> = await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                call.continuation = continuation
                pool.loop.execute { pool.submit(call) }
            }
        } onCancel: {
            pool.loop.execute { pool.cancel(call) }
        }
        return try result.get()
    }

    private func pool(_ target: HTTPTarget) -> HostPool {
        pools.withLock { pools in
            if let pool = pools[target.key] { return pool }
            let pool = HostPool(
                target: target, loop: group.next(), limit: connectionsPerHost, connectTimeout: connectTimeout,
                idleTimeout: idleTimeout)
            pools[target.key] = pool
            return pool
        }
    }
}

/// Host, port and request target of an `http://` URL.
struct HTTPTarget: Equatable {
    var host: String
    var port: Int
    var pathAndQuery: String
    var hostHeader: String
    var key: String { "\(host):\(port)" }

    init?(url: String) {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.utf8.dropFirst(7)
        let end = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
        let authority = String(decoding: rest[rest.startIndex..<end], as: UTF8.self)
        var path = String(decoding: rest[end...], as: UTF8.self)
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host = authority
        var port = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = Int(after.dropFirst()) else { return nil }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]) else { return nil }
            port = p
        }
        guard !host.isEmpty, (1...65_535).contains(port) else { return nil }
        self.host = host
        self.port = port
        pathAndQuery = path
        hostHeader = authority
    }
}

/// The connections to one lender host. Every stored property is used only on `loop`.
final class HostPool: @unchecked Sendable {
    // @unchecked Sendable: `submit`, `cancel` and `close` are only called through `loop.execute`,
    // and every other method runs from a callback of a channel bootstrapped on `loop` or a task
    // scheduled on it; `loop.assertInEventLoop()` checks the entry points in debug builds.

    /// One request and where its outcome goes. Created by `send`, then used only on the loop.
    final class Call: @unchecked Sendable {
        // @unchecked Sendable: `continuation` is set before the call is handed to the loop and
        // everything else is touched only on the loop (see HostPool).
        let head: HTTPRequestHead
        let body: ByteBuffer?
        let timeout: TimeAmount
        var continuation: UnsafeContinuation<Result<LenderHTTPResponse, TransportError>, Never>?
        var timer: Scheduled<Void>?
        var connection: Connection?

        init(head: HTTPRequestHead, body: ByteBuffer?, timeout: TimeAmount) {
            self.head = head
            self.body = body
            self.timeout = timeout
        }

        /// Delivers the outcome once; later outcomes (a timeout racing a reply) are dropped.
        func finish(_ result: Result<LenderHTTPResponse, TransportError>) {
            timer?.cancel()
            timer = nil
            connection = nil
            continuation?.resume(returning: result)
            continuation = nil
        }
        var isFinished: Bool { continuation == nil }
    }

    final class Connection: @unchecked Sendable {
        // @unchecked Sendable: captured by the bootstrap's closures, which run on `loop`; like
        // the pool it is only touched there.
        var handler: PooledConnectionHandler?
        var call: Call?
        var idleSince = NIODeadline.now()
    }

    let target: HTTPTarget
    let loop: any EventLoop
    let limit: Int
    let connectTimeout: TimeAmount
    let idleTimeout: TimeAmount
    private var idle: [Connection] = []
    private var open = 0
    private var connecting = 0
    private var waiting = CircularBuffer<Call>()
    private var reaper: RepeatedTask?
    private var closed = false

    init(target: HTTPTarget, loop: any EventLoop, limit: Int, connectTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.target = target
        self.loop = loop
        self.limit = limit
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
    }

    func submit(_ call: Call) {
        loop.assertInEventLoop()
        guard !closed else {
            call.finish(.failure(.couldNotConnect("the HTTP transport is shut down")))
            return
        }
        guard !call.isFinished else { return }  // cancelled before it got here
        call.timer = loop.scheduleTask(in: call.timeout) { [self] in self.timedOut(call) }
        if reaper == nil {
            reaper = loop.scheduleRepeatedTask(initialDelay: idleTimeout, delay: idleTimeout) { [self] _ in
                self.reapIdle()
            }
        }
        if let connection = idle.popLast() {
            write(call, on: connection)
        } else {
            waiting.append(call)
            openIfNeeded()
        }
    }

    func cancel(_ call: Call) {
        loop.assertInEventLoop()
        guard !call.isFinished else { return }
        if let connection = call.connection {
            // Written (perhaps in part): the reply must not be read as another request's.
            connection.call = nil
            connection.handler?.close()
            call.finish(.failure(.other("cancelled")))
        } else {
            waiting.removeAll { $0 === call }
            call.finish(.failure(.other("cancelled")))
        }
    }

    func close() {
        loop.assertInEventLoop()
        closed = true
        reaper?.cancel()
        for connection in idle { connection.handler?.close() }
        idle = []
        while let call = waiting.popFirst() {
            call.finish(.failure(.couldNotConnect("the HTTP transport is shut down")))
        }
    }

    private func timedOut(_ call: Call) {
        guard !call.isFinished else { return }
        if let connection = call.connection {
            connection.call = nil
            connection.handler?.close()
            call.finish(.failure(.timedOut))
        } else {
            waiting.removeAll { $0 === call }
            call.finish(.failure(.couldNotConnect("no connection to \(target.key) within the timeout")))
        }
    }

    private func openIfNeeded() {
        guard waiting.count > connecting, open + connecting < limit else { return }
        connecting += 1
        let connection = Connection()
        let pool = self
        ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    let handler = PooledConnectionHandler(pool: pool, connection: connection)
                    connection.handler = handler
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: target.host, port: target.port)
            .whenComplete { result in pool.connected(connection, result.map { _ in () }) }
    }

    private func connected(_ connection: Connection, _ result: Result<Void, any Error>) {
        loop.assertInEventLoop()
        connecting -= 1
        switch result {
        case .success:
            open += 1
            if closed {
                connection.handler?.close()
                return
            }
            release(connection)
        case .failure(let error):
            // The calls waiting for a connection were not sent: with none left to this host they
            // fail now (the connector may retry `apply` safely); otherwise they wait for one.
            if open == 0 && connecting == 0 {
                let reason = Self.describeConnectFailure(error)
                while let call = waiting.popFirst() { call.finish(.failure(.couldNotConnect(reason))) }
            }
        }
    }

    private func write(_ call: Call, on connection: Connection) {
        connection.call = call
        call.connection = connection
        connection.handler?.send(head: call.head, body: call.body)
    }

    /// The connection is free: the oldest waiting call, or the idle list.
    private func release(_ connection: Connection) {
        if let call = waiting.popFirst() {
            write(call, on: connection)
        } else {
            connection.idleSince = .now()
            idle.append(connection)
        }
    }

    func replied(_ connection: Connection, _ response: LenderHTTPResponse, keepAlive: Bool) {
        loop.assertInEventLoop()
        let call = connection.call
        connection.call = nil
        if keepAlive && !closed {
            release(connection)
        } else {
            connection.handler?.close()
        }
        call?.finish(.success(response))
    }

    func failed(_ connection: Connection, _ error: TransportError) {
        loop.assertInEventLoop()
        let call = connection.call
        connection.call = nil
        connection.handler?.close()
        call?.finish(.failure(error))
    }

    func closedConnection(_ connection: Connection) {
        loop.assertInEventLoop()
        open -= 1
        idle.removeAll { $0 === connection }
        connection.handler = nil
        if let call = connection.call {
            connection.call = nil
            call.finish(.failure(.connectionLost("the lender closed the connection")))
        }
        openIfNeeded()
    }

    private func reapIdle() {
        let cutoff = NIODeadline.now() - idleTimeout
        for connection in idle where connection.idleSince < cutoff { connection.handler?.close() }
    }

    static func describeConnectFailure(_ error: any Error) -> String {
        if let e = error as? ChannelError, case .connectTimeout = e { return "connect timeout" }
        if error is NIOConnectionError { return "connection refused or host unreachable" }
        if let e = error as? IOError { return "\(e)" }
        return "\(error)"
    }
}

/// One pooled connection's pipeline end: writes a request, gathers its reply.
final class PooledConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked Sendable: created in the channel initializer and used only on the channel's
    // event loop, which is its pool's loop.
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let pool: HostPool
    let connection: HostPool.Connection
    private var context: ChannelHandlerContext?
    private var head: HTTPResponseHead?
    private var body: ByteBuffer?

    init(pool: HostPool, connection: HostPool.Connection) {
        self.pool = pool
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(head: HTTPRequestHead, body: ByteBuffer?) {
        guard let context else {
            pool.failed(connection, .connectionLost("connection already closed"))
            return
        }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func close() { context?.close(promise: nil) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = nil
        case .body(var part):
            if body == nil {
                body = part
            } else {
                body!.writeBuffer(&part)
            }
            if (body?.readableBytes ?? 0) > NIOHTTPTransport.maxReplyBytes {
                head = nil
                body = nil
                pool.failed(connection, .other("reply larger than 1 MiB"))
            }
        case .end:
            guard let h = head else { return }
            head = nil
            let bytes = body.map { Array($0.readableBytesView) } ?? []
            body = nil
            var headers: [LenderHTTPHeader] = []
            headers.reserveCapacity(h.headers.count)
            for (name, value) in h.headers { headers.append(LenderHTTPHeader(name, value)) }
            pool.replied(
                connection, LenderHTTPResponse(status: Int(h.status.code), headers: headers, body: bytes),
                keepAlive: h.isKeepAlive)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool.closedConnection(connection)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        pool.failed(connection, .connectionLost("\(error)".prefix(120).description))
    }
}

extension Duration {
    /// Whole nanoseconds, saturating.
    fileprivate var wholeNanoseconds: Int64 {
        let (s, atto) = components
        let (m, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        return m &+ atto / 1_000_000_000
    }
}
