/// One HTTP request to a lender, fully rendered.
public struct LenderHTTPRequest: Sendable, Equatable {
    public var method: String
    /// Absolute URL, query included, already percent-encoded.
    public var url: String
    public var headers: [LenderHTTPHeader]
    public var body: [UInt8]?

    public init(method: String, url: String, headers: [LenderHTTPHeader], body: [UInt8]?) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

public struct LenderHTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

public struct LenderHTTPResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [LenderHTTPHeader]
    public var body: [UInt8]

    public init(status: Int, headers: [LenderHTTPHeader] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Why a request got no HTTP answer. The distinction decides whether `apply` may be re-sent.
public enum TransportError: Error, Sendable, Equatable {
    /// The connection could not be made (refused, DNS, TLS handshake): nothing was sent.
    case couldNotConnect(String)
    /// No answer within the timeout: the lender may have received the request.
    case timedOut
    /// The connection broke after the request was (partly) sent.
    case connectionLost(String)
    /// Anything else (treated as "may have been received").
    case other(String)

    var retryFailure: RetryPolicy.Failure {
        switch self {
        case .couldNotConnect: .couldNotConnect
        case .timedOut: .timedOut
        case .connectionLost: .connectionLost
        case .other: .transport
        }
    }

    var reason: String {
        switch self {
        case .couldNotConnect(let s): "could not connect: \(s)"
        case .timedOut: "timed out"
        case .connectionLost(let s): "connection lost after sending: \(s)"
        case .other(let s): "transport error: \(s)"
        }
    }
}

/// Sends one request. `AsyncHTTPClientTransport` in production; scripted fakes in tests.
public protocol HTTPTransport: Sendable {
    func send(_ request: LenderHTTPRequest, timeout: Duration) async throws(TransportError) -> LenderHTTPResponse
    /// Releases connections (an mTLS lender's own client). The default does nothing.
    func shutdown() async
}

extension HTTPTransport {
    public func shutdown() async {}
}
