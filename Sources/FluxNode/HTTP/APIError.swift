import FluxActors
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The error object of CONTRACT §2: `{"error": {"code", "message", "field"?}}`.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var field: String?
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    var response: Response {
        var error: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        if let field { error["field"] = .string(field) }
        var r = JSONResponse.make(status, .object(["error": .object(error)]))
        for h in headers { r.headers.append(h) }
        return r
    }

    static func invalidField(_ e: InvalidField) -> APIError {
        APIError(.unprocessableContent, "invalid_field", e.message, field: e.field)
    }

    static let invalidJSON = APIError(.badRequest, "invalid_json", "the body is not a JSON object")
    static let bodyTooLarge = APIError(.contentTooLarge, "body_too_large", "the body is larger than 1 MiB")
    static let notFound = APIError(.notFound, "not_found", "no such resource")
    static let unauthorized = APIError(.unauthorized, "unauthorized", "a valid Authorization: Bearer key is required")
    static func journalUnavailable(_ why: String) -> APIError {
        APIError(
            .serviceUnavailable, "journal_unavailable", "the journal cannot take new work right now; retry shortly")
    }
    /// The admission limit (`AdmissionGate`): CONTRACT's back-pressure reply, with a hint when to
    /// come back (Docs/api.md, "Overload").
    static let overloaded: APIError = {
        var e = APIError(
            .serviceUnavailable, "journal_unavailable",
            "this node has as many checkouts in progress as it takes; retry shortly")
        e.headers[.retryAfter] = "1"
        return e
    }()
}

enum JSONResponse {
    static func make(_ status: HTTPResponse.Status, _ body: JSONValue, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        let data = body.jsonData()
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func text(_ status: HTTPResponse.Status, _ text: String, contentType: String) -> Response {
        var h = HTTPFields()
        h[.contentType] = contentType
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Every error leaves the node as CONTRACT's error object: route-level `APIError`s, the
/// framework's own (unknown route, body too large) and anything unexpected (500, logged).
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            let response = try await next(request, context)
            return response
        } catch let e as APIError {
            return e.response
        } catch is NIOTooManyBytesError {
            return APIError.bodyTooLarge.response
        } catch let e as HTTPError {
            switch e.status {
            case .notFound:
                return APIError(.notFound, "not_found", "no route \(request.method) \(request.uri.path)").response
            case .methodNotAllowed:
                return APIError(.methodNotAllowed, "method_not_allowed", "\(request.method) is not allowed here")
                    .response
            case .contentTooLarge: return APIError.bodyTooLarge.response
            default:
                return APIError(e.status, "http_error", e.body ?? e.status.reasonPhrase).response
            }
        } catch {
            context.logger.error("unexpected error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return APIError(.internalServerError, "internal_error", "an unexpected error occurred").response
        }
    }
}

/// `Authorization: Bearer KEY` when the node has keys configured.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard !keys.isEmpty else { return try await next(request, context) }
        guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer "),
            keys.contains(String(auth.dropFirst("Bearer ".count)))
        else { throw APIError.unauthorized }
        return try await next(request, context)
    }
}

extension Request {
    static let maxBody = 1 << 20

    /// The body as a JSON object; 413 over 1 MiB, 400 when it is not a JSON object.
    mutating func jsonObject() async throws -> JSONValue {
        let buffer: ByteBuffer
        do {
            buffer = try await collectBody(upTo: Self.maxBody)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge
        }
        guard let value = try? JSONValue.parse(buffer.readableBytesView), case .object = value else {
            throw APIError.invalidJSON
        }
        return value
    }

    func header(_ name: String) -> String? {
        guard let n = HTTPField.Name(name) else { return nil }
        return headers[n]
    }

    /// `Prefer: wait=N` (RFC 7240), capped at 30 seconds.
    var preferWait: Duration? {
        guard let prefer = header("Prefer") else { return nil }
        for part in prefer.split(whereSeparator: { $0 == "," || $0 == ";" }) {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2, kv[0].lowercased() == "wait", let n = Double(kv[1]), n.isFinite, n >= 0 {
                return .milliseconds(Int64(min(n, 30) * 1000))
            }
        }
        return nil
    }
}
