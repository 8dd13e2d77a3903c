import FluxActors
import FluxWire
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded

/// Any node serves any call (CONTRACT §2): a request for an entity whose shard another node owns
/// is sent to that node over FluxWire (`WireForward`) and answered with the owner's reply; the
/// `Flux-Node` header names the node that served it. Docs/cluster.md, "Forwarding".
enum Forwarding {
    /// Set on a forwarded request: the nodes it went through, comma-separated. A node passes a
    /// request on only to a node not in the list, and at most `maxHops` times (views of
    /// membership converge a moment apart: a node that just gave a shard away knows its taker).
    static let forwardedBy = HTTPField.Name("Flux-Forwarded-By")!
    static let maxHops = 2
    static let fluxNode = HTTPField.Name("Flux-Node")!
    /// `Prefer: wait` holds a reply up to 30 s; the hop allows for that.
    static let timeout = Duration.seconds(35)

    /// The entity (id or stream) a public API request acts on, or nil when any node can answer
    /// it (rules reads, evaluate, lenders, health). `body` is the collected request body.
    static func routingKey(method: HTTPRequest.Method, path: String, body: ByteBuffer?) -> String? {
        let parts = path.split(separator: "?", maxSplits: 1).first.map { $0.split(separator: "/") } ?? []
        guard parts.count >= 2, parts[0] == "v1" else { return nil }
        switch parts[1] {
        case "applications":
            if parts.count == 2 {
                guard method == .post, let body, let json = try? JSONValue.parse(body.readableBytesView),
                    let merchant = json["merchant_id"]?.stringValue,
                    let customer = json["customer"]?["id"]?.stringValue
                else { return nil }  // bad input: answered here, nothing is stored
                // Any key gives the same routing hash: it depends on merchant and customer only.
                return Switchboard.applicationID(merchantID: merchant, customerID: customer, idempotencyKey: "")
            }
            return String(parts[2])
        case "loans":
            return parts.count >= 3 ? String(parts[2]) : nil
        case "rules":
            let writes = (parts.count == 2 && method == .put) || (parts.count == 3 && parts[2] == "dials")
            return writes ? RulesBook.stream : nil
        case "lenders":
            // Publishing a descriptor goes to the owner of its stream; circuits are each node's own.
            return parts.count == 3 && method == .put ? LenderConfigBook.stream : nil
        default:
            return nil
        }
    }

    static func hops(_ request: Request) -> [String] {
        (request.headers[forwardedBy] ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
    }

    static func wireRequest(_ request: Request, body: ByteBuffer?, from me: String) -> WireForward {
        var headers: [WireHeader] = []
        for field in request.headers {
            switch field.name {
            case HTTPField.Name("Host")!, .connection, .contentLength, .transferEncoding, forwardedBy: continue
            default: headers.append(WireHeader(name: field.name.canonicalName, value: field.value))
            }
        }
        headers.append(
            WireHeader(name: forwardedBy.canonicalName, value: (hops(request) + [me]).joined(separator: ",")))
        return WireForward(
            method: request.method.rawValue, path: request.uri.description, headers: headers,
            body: body.map { Array($0.readableBytesView) } ?? [])
    }

    static func response(_ reply: WireForwardReply) -> Response {
        var fields = HTTPFields()
        for h in reply.headers {
            guard let name = HTTPField.Name(h.name) else { continue }
            if name == .contentLength || name == .transferEncoding || name == .connection { continue }
            fields.append(HTTPField(name: name, value: h.value))
        }
        return Response(
            status: HTTPResponse.Status(code: Int(reply.status)), headers: fields,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: reply.body)))
    }
}

/// On the public `/v1` routes: serves locally what this node owns, forwards the rest.
struct ForwardingMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let node: NodeRuntime
    let cluster: ClusterRuntime

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard cluster.isClustered, let owner = node.owner.withLock({ $0 }) else {
            return try await next(request, context)
        }
        var request = request
        var body: ByteBuffer?
        if request.method == .post || request.method == .put || request.method == .patch {
            do { body = try await request.collectBody(upTo: Request.maxBody) } catch is NIOTooManyBytesError {
                throw APIError.bodyTooLarge
            }
        }
        guard let key = Forwarding.routingKey(method: request.method, path: request.uri.path, body: body) else {
            return try await next(request, context)
        }
        let shard = node.shardTable.map.shard(for: key)
        let hops = Forwarding.hops(request)
        let forwarded = hops.count >= Forwarding.maxHops
        // A request whose owner cannot be reached is tried again while the cluster notices (the
        // routed calls are idempotent: keyed POSTs, cancels, If-Match writes, reads).
        let deadline = ContinuousClock.now + .seconds(8)
        while true {
            switch await owner.route(shard, forwarded: forwarded, avoiding: Set(hops)) {
            case .local:
                return try await next(request, context)
            case .unavailable(let why):
                throw APIError(.serviceUnavailable, "shard_unavailable", why)
            case .forward(let to):
                let wire = Forwarding.wireRequest(request, body: body, from: node.config.nodeID)
                do throws(WireError) {
                    return Forwarding.response(try await cluster.forward(wire, to: to, timeout: Forwarding.timeout))
                } catch {
                    context.logger.warning(
                        "forwarding failed",
                        metadata: ["to": "\(to)", "shard": "\(shard)", "reason": "\(error.reason)"])
                    if ContinuousClock.now >= deadline {
                        throw APIError(
                            .serviceUnavailable, "node_unavailable",
                            "the node owning this entity (\(to)) cannot be reached")
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        }
    }
}

/// Serves a forwarded request through this node's own public router, as if it had come in over
/// HTTP here.
struct ForwardedRequestServer: Sendable {
    let responder: RouterResponder<BasicRequestContext>
    let logger: Logger
    /// The context needs a channel it never uses for these requests.
    private let channel: any Channel = EmbeddedChannel()

    init(responder: RouterResponder<BasicRequestContext>, logger: Logger) {
        self.responder = responder
        self.logger = logger
    }

    func serve(_ forward: WireForward) async -> WireForwardReply {
        var fields = HTTPFields()
        for h in forward.headers {
            if let name = HTTPField.Name(h.name) { fields.append(HTTPField(name: name, value: h.value)) }
        }
        guard let method = HTTPRequest.Method(forward.method) else {
            return WireForwardReply(
                status: 400, body: Array(#"{"error":{"code":"bad_method","message":"bad method"}}"#.utf8))
        }
        let head = HTTPRequest(
            method: method, scheme: "http", authority: "flux", path: forward.path, headerFields: fields)
        let request = Request(head: head, body: RequestBody(buffer: ByteBuffer(bytes: forward.body)))
        let context = BasicRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: logger))
        do {
            let response = try await responder.respond(to: request, context: context)
            let collector = BodyCollector()
            try await response.body.write(collector)
            var headers: [WireHeader] = []
            for field in response.headers {
                headers.append(WireHeader(name: field.name.canonicalName, value: field.value))
            }
            return WireForwardReply(status: UInt16(response.status.code), headers: headers, body: collector.bytes)
        } catch {
            logger.error("forwarded request failed", metadata: ["error": "\(error)"])
            return WireForwardReply(
                status: 500,
                body: Array(#"{"error":{"code":"internal_error","message":"forwarded request failed"}}"#.utf8))
        }
    }
}

/// Collects a response body (ours are small JSON documents) for the wire reply.
private final class BodyCollector: ResponseBodyWriter {
    var bytes: [UInt8] = []

    func write(_ buffer: ByteBuffer) async throws {
        guard bytes.count + buffer.readableBytes <= WireBounds.blob else {
            throw WireError.lengthOverBound(
                field: "forward_reply.body", length: UInt64(buffer.readableBytes), max: WireBounds.blob)
        }
        bytes.append(contentsOf: buffer.readableBytesView)
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
