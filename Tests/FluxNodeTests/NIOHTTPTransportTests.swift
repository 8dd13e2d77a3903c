import FluxActors
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import FluxActors

/// The node's own HTTP/1.1 lender transport against a real server on loopback: what comes back,
/// and how each way of failing is classified (the connector's retry rule depends on it).
@Suite struct NIOHTTPTransportTests {
    func withServer(_ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        let router = Router(context: BasicRequestContext.self)
        router.post("/echo/{id}") { request, context -> Response in
            var request = request
            let bytes = try await request.collectBody(upTo: 1 << 20)
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            headers[HTTPField.Name("X-Seen-Key")!] = request.headers[HTTPField.Name("X-Api-Key")!] ?? "-"
            headers[HTTPField.Name("X-Path")!] = "\(context.parameters.get("id") ?? "")?\(request.uri.query ?? "")"
            return Response(status: .accepted, headers: headers, body: .init(byteBuffer: bytes))
        }
        router.get("/slow") { _, _ -> Response in
            try await Task.sleep(for: .milliseconds(600))
            return Response(status: .ok)
        }
        router.get("/big") { _, _ -> Response in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "x"), count: 2 << 20)))
        }
        router.get("/moved") { _, _ -> Response in
            Response(status: .found, headers: [.location: "/elsewhere"])
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            logger: {
                var l = Logger(label: "stub-lender")
                l.logLevel = .critical
                return l
            }())
        // Live mode stops the server gracefully: cancelling `run()` traps when accepted
        // connections are still queued ("Deinited NIOAsyncWriter without calling finish()").
        try await app.test(.live) { client in
            let port = try #require(client.port)
            try await body(port)
        }
    }

    @Test func roundTripKeepsBodyStatusHeadersAndQuery() async throws {
        try await withServer { port in
            let t = NIOHTTPTransport(connectionsPerHost: 2)
            // More calls than connections, concurrently: they queue and all complete.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        let body = Array(#"{"n":\#(i),"name":"Asha"}"#.utf8)
                        let r = try await t.send(
                            LenderHTTPRequest(
                                method: "POST", url: "http://127.0.0.1:\(port)/echo/a\(i)?x=\(i)",
                                headers: [LenderHTTPHeader("X-Api-Key", "k-\(i)")], body: body),
                            timeout: .seconds(5))
                        #expect(r.status == 202)
                        #expect(r.body == body)
                        let seen = r.headers.first { $0.name.lowercased() == "x-seen-key" }?.value
                        #expect(seen == "k-\(i)")
                        let path = r.headers.first { $0.name.lowercased() == "x-path" }?.value
                        #expect(path == "a\(i)?x=\(i)")
                    }
                }
                try await group.waitForAll()
            }
            // A redirect is an answer, not followed.
            let moved = try await t.send(
                LenderHTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/moved", headers: [], body: nil),
                timeout: .seconds(5))
            #expect(moved.status == 302)
            await t.shutdown()
        }
    }

    @Test func slowReplyIsTimedOutAndTheNextCallStillWorks() async throws {
        try await withServer { port in
            let t = NIOHTTPTransport(connectionsPerHost: 1)
            // The one connection is open first: on a busy machine a connect alone can take longer
            // than the short timeout below (that would rightly be `couldNotConnect`).
            let warm = try await t.send(
                LenderHTTPRequest(
                    method: "POST", url: "http://127.0.0.1:\(port)/echo/w", headers: [], body: Array("w".utf8)),
                timeout: .seconds(5))
            #expect(warm.status == 202)
            do throws(TransportError) {
                _ = try await t.send(
                    LenderHTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/slow", headers: [], body: nil),
                    timeout: .milliseconds(150))
                Issue.record("a 600 ms reply came within 150 ms")
            } catch {
                #expect(error == .timedOut)
            }
            // The timed-out connection was closed: its late reply is not taken for this one's.
            let r = try await t.send(
                LenderHTTPRequest(
                    method: "POST", url: "http://127.0.0.1:\(port)/echo/b", headers: [], body: Array("ok".utf8)),
                timeout: .seconds(5))
            #expect(r.status == 202)
            #expect(r.body == Array("ok".utf8))
            await t.shutdown()
        }
    }

    @Test func oversizedReplyIsRefused() async throws {
        try await withServer { port in
            let t = NIOHTTPTransport()
            do throws(TransportError) {
                _ = try await t.send(
                    LenderHTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/big", headers: [], body: nil),
                    timeout: .seconds(5))
                Issue.record("a 2 MiB reply was accepted")
            } catch {
                guard case .other(let why) = error else {
                    Issue.record("expected .other, got \(error)")
                    return
                }
                #expect(why.contains("1 MiB"))
            }
            await t.shutdown()
        }
    }

    @Test func refusedConnectionAndBadURLAreCouldNotConnect() async throws {
        let t = NIOHTTPTransport()
        for url in ["http://127.0.0.1:1/v2/loans", "http://:80/x", "http://127.0.0.1:99999/x"] {
            do throws(TransportError) {
                _ = try await t.send(
                    LenderHTTPRequest(method: "POST", url: url, headers: [], body: [1]), timeout: .seconds(2))
                Issue.record("\(url) answered")
            } catch {
                guard case .couldNotConnect = error else {
                    Issue.record("\(url): expected couldNotConnect, got \(error)")
                    continue
                }
            }
        }
        await t.shutdown()
    }

    /// A lender that reads the request and drops the connection: the request may have been
    /// received, so it is `connectionLost` (never "could not connect", which would allow a resend).
    @Test func connectionDroppedAfterTheRequestIsConnectionLost() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(DropOnRead()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress?.port ?? 0
        let t = NIOHTTPTransport()
        do throws(TransportError) {
            _ = try await t.send(
                LenderHTTPRequest(method: "POST", url: "http://127.0.0.1:\(port)/apply", headers: [], body: [1, 2]),
                timeout: .seconds(3))
            Issue.record("a dropped connection answered")
        } catch {
            guard case .connectionLost = error else {
                Issue.record("expected connectionLost, got \(error)")
                return
            }
        }
        await t.shutdown()
        try await server.close()
    }

    @Test func targetsParse() {
        let a = HTTPTarget(url: "http://127.0.0.1:9001/v1/apply?ref=a%20b")
        #expect(a?.host == "127.0.0.1")
        #expect(a?.port == 9001)
        #expect(a?.pathAndQuery == "/v1/apply?ref=a%20b")
        #expect(a?.hostHeader == "127.0.0.1:9001")
        let b = HTTPTarget(url: "http://lender.example")
        #expect(b?.port == 80)
        #expect(b?.pathAndQuery == "/")
        let c = HTTPTarget(url: "http://[::1]:8443?x=1")
        #expect(c?.host == "::1")
        #expect(c?.port == 8443)
        #expect(c?.pathAndQuery == "/?x=1")
        #expect(HTTPTarget(url: "http://user:pw@host/x") == nil)
        #expect(HTTPTarget(url: "http://host:port/x") == nil)
        #expect(HTTPTarget(url: "https://host/x") == nil)
    }
}

private final class DropOnRead: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.close(promise: nil) }
}
