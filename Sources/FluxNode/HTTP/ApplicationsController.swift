import FluxActors
import Foundation
import Hummingbird

/// `/v1/applications`: the checkout. Decodes, validates and hands over to the switchboard; no
/// business rule lives here.
struct ApplicationsController: Sendable {
    let node: NodeRuntime

    func addRoutes(to router: RouterGroup<BasicRequestContext>) {
        router.post("applications", use: create)
        router.get("applications/:id", use: get)
        router.get("applications/:id/events", use: events)
        router.post("applications/:id/cancel", use: cancel)
        router.post("applications/:id/accept", use: accept)
    }

    @Sendable func create(_ request: Request, context: BasicRequestContext) async throws -> Response {
        var request = request
        guard let key = request.header("Idempotency-Key") else {
            throw APIError(.badRequest, "idempotency_key_required", "the Idempotency-Key header is required")
        }
        guard !key.isEmpty, key.utf8.count <= 255 else {
            throw APIError(
                .badRequest, "idempotency_key_required", "the Idempotency-Key header must be 1 to 255 characters")
        }
        let body = try await request.jsonObject()
        let checkout: CheckoutRequest
        do { checkout = try CheckoutRequest(json: body) } catch { throw APIError.invalidField(error) }
        if checkout.mode == .offers {
            throw APIError(
                .unprocessableContent, "mode_not_supported", "offers mode is not available yet; use \"waterfall\"",
                field: "mode")
        }
        let ruleset = node.rules.ruleset
        if let allowed = ruleset.allowedTenureMonths, !allowed.contains(checkout.tenureMonths) {
            throw APIError(
                .unprocessableContent, "invalid_field",
                "loan.tenure_months must be one of \(allowed.sorted().map(String.init).joined(separator: ", "))",
                field: "loan.tenure_months")
        }
        guard node.journal.events.isAvailableNow else { throw APIError.journalUnavailable("back-pressure") }
        guard node.admission.tryEnter() else {
            node.metrics.checkoutTurnedAway()
            throw APIError.overloaded
        }
        let decision = ruleset.evaluate(checkout, today: node.now(), hasConnector: node.lenders.hasConnector)
        let result: (application: LoanApplication, created: Bool)
        do throws(SwitchboardError) {
            defer { node.admission.leave() }
            result = try await node.switchboard.create(request: checkout, idempotencyKey: key, decision: decision)
        } catch {
            throw Self.map(error)
        }
        let view = await result.application.view(wait: request.preferWait)
        node.metrics.applicationCreated(created: result.created)
        return JSONResponse.make(result.created ? .created : .ok, view)
    }

    @Sendable func get(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let app = try await find(context)
        return JSONResponse.make(.ok, await app.view(wait: request.preferWait))
    }

    @Sendable func events(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let app = try await find(context)
        let stored: [JournalEvent]
        do { stored = try await node.journal.events.read(stream: app.stream) } catch {
            throw APIError.journalUnavailable("\(error)")
        }
        let list: [JSONValue] = stored.map { e in
            .object([
                "seq": .int(e.seq),
                "type": .string(e.type),
                "at": .string(Timestamp.format(e.at)),
                "data": (try? JSONValue.parse(Data(e.data.utf8))) ?? .null,
            ])
        }
        return JSONResponse.make(.ok, .array(list))
    }

    @Sendable func cancel(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let app = try await find(context)
        switch await app.cancel() {
        case .cancelled, .alreadyCancelled:
            return JSONResponse.make(.ok, await app.view())
        case .accepted:
            return JSONResponse.make(.accepted, await app.view())
        case .refused(let reason):
            throw APIError(.conflict, "not_cancellable", reason)
        }
    }

    @Sendable func accept(_ request: Request, context: BasicRequestContext) async throws -> Response {
        _ = try await find(context)
        throw APIError(
            .unprocessableContent, "mode_not_supported", "offers mode is not available yet: there is no offer to accept"
        )
    }

    private func find(_ context: BasicRequestContext) async throws -> LoanApplication {
        guard let id = context.parameters.get("id"), id.utf8.count <= 128 else { throw APIError.notFound }
        do {
            guard let app = try await node.switchboard.find(id) else {
                throw APIError(.notFound, "not_found", "no application \(id)")
            }
            return app
        } catch let e as SwitchboardError {
            throw Self.map(e)
        }
    }

    static func map(_ error: SwitchboardError) -> APIError {
        switch error {
        case .idempotencyConflict:
            return APIError(
                .conflict, "idempotency_conflict", "this Idempotency-Key was used with a different request body")
        case .liveApplicationExists(let id):
            return APIError(.conflict, "live_application_exists", id)
        case .journalUnavailable(let why):
            return APIError.journalUnavailable(why)
        case .notFound:
            return APIError.notFound
        case .corrupt(let why):
            return APIError(.internalServerError, "journal_corrupt", "stored application cannot be read: \(why)")
        }
    }
}

/// `/v1/loans/{id}`.
struct LoansController: Sendable {
    let node: NodeRuntime

    func addRoutes(to router: RouterGroup<BasicRequestContext>) {
        router.get("loans/:id", use: get)
    }

    @Sendable func get(_ request: Request, context: BasicRequestContext) async throws -> Response {
        guard let id = context.parameters.get("id"), id.utf8.count <= 128 else { throw APIError.notFound }
        do {
            guard let account = try await node.loans.account(id) else {
                throw APIError(.notFound, "not_found", "no loan \(id)")
            }
            return JSONResponse.make(.ok, await account.view())
        } catch let e as LoanBookError {
            throw APIError.journalUnavailable("\(e)")
        }
    }
}
