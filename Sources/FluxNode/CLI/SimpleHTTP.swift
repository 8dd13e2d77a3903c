import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A few plain HTTP calls for the command-line tools (members, demo).
enum SimpleHTTP {
    static func get(_ url: String, bearer: String? = nil, timeout: Duration = .seconds(5)) async throws -> (
        Int, [UInt8]
    ) {
        try await send(
            "GET", url, body: nil, headers: bearer.map { [("Authorization", "Bearer \($0)")] } ?? [], timeout: timeout)
    }

    static func send(
        _ method: String, _ url: String, body: [UInt8]?, headers: [(String, String)], timeout: Duration = .seconds(35)
    ) async throws -> (Int, [UInt8]) {
        let r = try await sendWithHeaders(method, url, body: body, headers: headers, timeout: timeout)
        return (r.status, r.body)
    }

    /// `send`, with the response headers.
    static func sendWithHeaders(
        _ method: String, _ url: String, body: [UInt8]?, headers: [(String, String)], timeout: Duration = .seconds(35)
    ) async throws -> (status: Int, headers: [(String, String)], body: [UInt8]) {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .init(timeout))
        let bytes = try await response.body.collect(upTo: 8 << 20)
        return (
            Int(response.status.code), response.headers.map { ($0.name, $0.value) }, Array(bytes.readableBytesView)
        )
    }
}
