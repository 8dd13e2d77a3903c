import FluxActors
import FluxWire
import Foundation
import Hummingbird

/// `/v1/rules`: the Lender Selector's ruleset (CONTRACT §2 "Rules", §3).
struct RulesController: Sendable {
    let node: NodeRuntime

    func addRoutes(to router: RouterGroup<BasicRequestContext>) {
        router.get("rules", use: get)
        router.put("rules", use: put)
        router.patch("rules/dials", use: patchDials)
        router.post("rules/evaluate", use: evaluate)
    }

    @Sendable func get(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let ruleset = node.rules.ruleset
        return JSONResponse.make(.ok, ruleset.document, headers: [.eTag: "\"\(ruleset.version)\""])
    }

    @Sendable func put(_ request: Request, context: BasicRequestContext) async throws -> Response {
        var request = request
        let version = try ifMatch(request)
        let body = try await request.jsonObject()
        return try await respond { () async throws(RulesPublishError) -> Ruleset in
            try await node.rules.publish(body, ifMatch: version)
        }
    }

    @Sendable func patchDials(_ request: Request, context: BasicRequestContext) async throws -> Response {
        var request = request
        let version = try ifMatch(request)
        guard case .object(let patch) = try await request.jsonObject() else { throw APIError.invalidJSON }
        return try await respond { () async throws(RulesPublishError) -> Ruleset in
            try await node.rules.patchDials(patch, ifMatch: version)
        }
    }

    @Sendable func evaluate(_ request: Request, context: BasicRequestContext) async throws -> Response {
        var request = request
        let body = try await request.jsonObject()
        let checkout: CheckoutRequest
        do { checkout = try CheckoutRequest(json: body) } catch { throw APIError.invalidField(error) }
        let decision = node.rules.ruleset.evaluate(checkout, today: node.now(), hasConnector: node.lenders.hasConnector)
        let ranked: [JSONValue] = decision.ranked.map { r in
            .object(["lender_id": .string(r.lenderID), "score": Self.number(r.score)])
        }
        let excluded: [JSONValue] = decision.excluded.map { e in
            .object(["lender_id": .string(e.lenderID), "failed": .array(e.failed.map { JSONValue.string($0) })])
        }
        return JSONResponse.make(
            .ok,
            .object(["version": .int(Int64(decision.version)), "ranked": .array(ranked), "excluded": .array(excluded)]))
    }

    /// Scores print as integers when they are whole.
    static func number(_ d: Double) -> JSONValue {
        if d.rounded() == d, abs(d) < 9e15 { return .int(Int64(d)) }
        return .double(d)
    }

    private func ifMatch(_ request: Request) throws -> Int {
        guard let raw = request.headers[.ifMatch] else {
            throw APIError(
                .preconditionRequired, "if_match_required", "If-Match with the current ruleset version is required")
        }
        var text = raw.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("W/") { text.removeFirst(2) }
        text = text.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        guard let v = Int(text) else {
            throw APIError(.preconditionFailed, "version_conflict", "If-Match \(raw) is not a ruleset version")
        }
        return v
    }

    private func respond(_ change: () async throws(RulesPublishError) -> Ruleset) async throws -> Response {
        do {
            let ruleset = try await change()
            // Every other node picks the new version up from the journal now (or on its next check).
            await node.cluster.broadcast(WireConfigPublish(kind: "rules", version: UInt64(ruleset.version), json: []))
            return JSONResponse.make(.ok, ruleset.document, headers: [.eTag: "\"\(ruleset.version)\""])
        } catch .invalid(let e) {
            throw APIError(.unprocessableContent, "invalid_rules", e.message, field: e.path.isEmpty ? nil : e.path)
        } catch .versionConflict(let current) {
            throw APIError(
                .preconditionFailed, "version_conflict", "the ruleset is at version \(current); fetch it and retry")
        } catch .journalUnavailable(let why) {
            throw APIError.journalUnavailable(why)
        }
    }
}
