import AsyncHTTPClient
import NIOCore
import NIOPosix
import Testing

@testable import FluxActors

@Suite struct LenderTransportTests {
    @Test func refusedConnectionIsCouldNotConnect() async throws {
        let t = AsyncHTTPClientTransport()
        do {
            // Port 1 on loopback: nothing listens there, the connect is refused at once.
            _ = try await t.send(
                LenderHTTPRequest(method: "POST", url: "http://127.0.0.1:1/v2/loans", headers: [], body: [1]),
                timeout: .seconds(2))
            Issue.record("a closed port answered")
        } catch {
            guard case .couldNotConnect = error else {
                Issue.record("expected couldNotConnect, got \(error)")
                try await t.shutdown()
                return
            }
        }
        try await t.shutdown()
    }

    @Test func classifiesErrorsByTheRequestsFate() {
        #expect(AsyncHTTPClientTransport.classify(HTTPClientError.deadlineExceeded) == .timedOut)
        #expect(AsyncHTTPClientTransport.classify(HTTPClientError.readTimeout) == .timedOut)
        guard case .couldNotConnect = AsyncHTTPClientTransport.classify(HTTPClientError.connectTimeout) else {
            Issue.record("connect timeout")
            return
        }
        guard case .connectionLost = AsyncHTTPClientTransport.classify(HTTPClientError.remoteConnectionClosed) else {
            Issue.record("remote closed")
            return
        }
        guard case .couldNotConnect = AsyncHTTPClientTransport.classify(ChannelError.connectTimeout(.seconds(1))) else {
            Issue.record("channel connect timeout")
            return
        }
    }
}
