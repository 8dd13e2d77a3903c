import FluxActors
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import FluxNode

@Suite struct AdmissionGateTests {
    final class Box: Sendable { let count = Mutex(0) }

    @Test func admitsUpToItsLimitAndAgainWhenOneLeaves() {
        let gate = AdmissionGate(limit: 3)
        #expect(gate.tryEnter() && gate.tryEnter() && gate.tryEnter())
        #expect(!gate.tryEnter())
        #expect(!gate.tryEnter())
        #expect(gate.current == 3)
        #expect(gate.refused == 2)
        gate.leave()
        #expect(gate.tryEnter())
        #expect(!gate.tryEnter())
        for _ in 0..<3 { gate.leave() }
        #expect(gate.current == 0)
    }

    @Test func neverAdmitsMoreThanItsLimitUnderContention() async {
        let gate = AdmissionGate(limit: 8)
        let admitted = Box()
        let peak = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<64 {
                group.addTask {
                    var highest = 0
                    for _ in 0..<500 {
                        if gate.tryEnter() {
                            let now = admitted.count.withLock { n in
                                n += 1
                                return n
                            }
                            highest = max(highest, now)
                            admitted.count.withLock { $0 -= 1 }
                            gate.leave()
                        }
                    }
                    return highest
                }
            }
            return await group.reduce(0, max)
        }
        #expect(peak <= 8)
        #expect(gate.current == 0)
    }
}

/// What a client sees at the admission limit, through the same error middleware as the public
/// API: `503`, CONTRACT's error object with `journal_unavailable`, and `Retry-After: 1`.
@Suite struct AdmissionReplyTests {
    @Test func theLimitsReplyIsA503WithRetryAfter() async throws {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: APIErrorMiddleware())
        router.post("/v1/applications") { _, _ -> Response in throw APIError.overloaded }
        let app = Application(router: router)
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/applications", method: .post) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] == "1")
                #expect(response.headers[.contentType] == "application/json")
                let body = try JSONValue.parse(Data(response.body.readableBytesView))
                #expect(body["error"]?["code"]?.stringValue == "journal_unavailable")
                #expect(body["error"]?["message"]?.stringValue?.isEmpty == false)
            }
        }
    }
}
