import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// `HTTPTransport` over AsyncHTTPClient: one shared `HTTPClient` for every lender of the node.
///
/// The pool keeps up to 256 HTTP/1.1 connections per lender host (soft limit), enough for
/// ~2,000 calls/s at 100 ms lender latency. Connection establishment is not retried by the
/// pool: a refused connection fails the request at once as `.couldNotConnect`, so `apply` may be
/// retried safely by the connector. Redirects are not followed. Replies over 1 MiB are refused.
public final class AsyncHTTPClientTransport: HTTPTransport {
    public let client: HTTPClient
    static let maxReplyBytes = 1 << 20

    public init(connectionsPerHost: Int = 256, connectTimeout: Duration = .seconds(2), tls: TLSConfiguration? = nil) {
        var config = HTTPClient.Configuration()
        config.tlsConfiguration = tls
        config.redirectConfiguration = .disallow
        config.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerHost)
        config.connectionPool.retryConnectionEstablishment = false
        config.timeout.connect = .nanoseconds(
            Int64(connectTimeout.components.seconds) * 1_000_000_000
                + connectTimeout.components.attoseconds / 1_000_000_000)
        config.decompression = .disabled
        // No tracer: by default AsyncHTTPClient wraps every request in a span of the global
        // (no-op) tracer, whose attribute handling and casts cost ~3 % of a node's CPU per checkout.
        config.tracing.tracer = nil
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    public func shutdown() async { try? await client.shutdown() }

    public func send(_ request: LenderHTTPRequest, timeout: Duration) async throws(TransportError)
        -> LenderHTTPResponse
    {
        var req = HTTPClientRequest(url: request.url)
        req.method = HTTPMethod(rawValue: request.method)
        for h in request.headers { req.headers.add(name: h.name, value: h.value) }
        if let body = request.body {
            req.body = .bytes(ByteBuffer(bytes: body))
        }
        let nanos = Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        do {
            let resp = try await client.execute(req, timeout: .nanoseconds(nanos))
            var headers: [LenderHTTPHeader] = []
            for h in resp.headers { headers.append(LenderHTTPHeader(h.name, h.value)) }
            let buffer: ByteBuffer
            do {
                buffer = try await resp.body.collect(upTo: Self.maxReplyBytes)
            } catch let e as NIOTooManyBytesError {
                _ = e
                throw TransportError.other("reply larger than 1 MiB")
            }
            return LenderHTTPResponse(
                status: Int(resp.status.code), headers: headers, body: Array(buffer.readableBytesView))
        } catch let e as TransportError {
            throw e
        } catch {
            throw Self.classify(error)
        }
    }

    /// Sorts AsyncHTTPClient/NIO errors by what they say about the request's fate.
    static func classify(_ error: any Error) -> TransportError {
        if let e = error as? HTTPClientError {
            // HTTPClientError is a struct of static values, compared by equality.
            if [.connectTimeout, .tlsHandshakeTimeout, .socksHandshakeTimeout, .invalidURL, .emptyHost].contains(e) {
                return .couldNotConnect(String(describing: e))
            }
            if [.deadlineExceeded, .readTimeout, .writeTimeout].contains(e) { return .timedOut }
            if e == .remoteConnectionClosed { return .connectionLost(String(describing: e)) }
            if e == .alreadyShutdown { return .couldNotConnect("the HTTP client is shut down") }
            if e == .cancelled { return .other("cancelled") }
            if String(describing: e).contains("unsupportedScheme") { return .couldNotConnect(String(describing: e)) }
            return .other(String(describing: e))
        }
        // A TLS handshake that fails (certificate refused, unknown CA) sends no request.
        if let e = error as? NIOSSLError { return .couldNotConnect("TLS handshake: \(e)") }
        if let e = error as? BoringSSLError { return .couldNotConnect("TLS handshake: \(e)") }
        if error is NIOConnectionError { return .couldNotConnect("connection refused or host unreachable") }
        if let e = error as? ChannelError {
            switch e {
            case .connectTimeout: return .couldNotConnect("connect timeout")
            case .ioOnClosedChannel, .eof, .outputClosed, .alreadyClosed: return .connectionLost(String(describing: e))
            default: return .other(String(describing: e))
            }
        }
        if let e = error as? IOError {
            switch e.errnoCode {
            case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH: return .couldNotConnect(String(describing: e))
            case ECONNRESET, EPIPE: return .connectionLost(String(describing: e))
            default: return .other(String(describing: e))
            }
        }
        return .other(String(describing: error))
    }
}
