import FluxActors
import FluxWire
import Foundation
import Hummingbird

/// `/v1/lenders`: list, hot reload of one descriptor, the ops override of a circuit.
struct LendersController: Sendable {
    let node: NodeRuntime

    func addRoutes(to router: RouterGroup<BasicRequestContext>) {
        router.get("lenders", use: list)
        router.get("lenders/:id", use: get)
        router.put("lenders/:id", use: put)
        router.put("lenders/:id/circuit", use: circuit)
    }

    @Sendable func list(_ request: Request, context: BasicRequestContext) async throws -> Response {
        JSONResponse.make(.ok, .object(["lenders": .array(await node.lenders.list())]))
    }

    @Sendable func get(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let one = await node.lenders.describe(id) else {
            throw APIError(.notFound, "not_found", "no lender \(id)")
        }
        return JSONResponse.make(.ok, one)
    }

    /// Validates, journals and hot-loads a descriptor; every node of the cluster loads it too
    /// (`LenderConfigBook`; this node is the owner of the `config/lenders` stream: others
    /// forward the request here). `422 invalid_descriptor` with the JSON path of the first bad
    /// field in `field`; the old descriptor stays in force everywhere.
    @Sendable func put(_ request: Request, context: BasicRequestContext) async throws -> Response {
        var request = request
        let id = try context.parameters.require("id")
        let body = try await request.jsonObject()
        let view: JSONValue
        do {
            view = try await node.lenderConfig.publish(id: id, body: body)
        } catch .invalid(let error) {
            throw APIError(
                .unprocessableContent, "invalid_descriptor", "\(error.path): \(error.message)", field: error.path)
        } catch .journal(let why) {
            throw APIError.journalUnavailable(why)
        }
        await node.cluster.broadcast(WireConfigPublish(kind: "lenders", version: 0, json: []))
        return JSONResponse.make(.ok, view)
    }

    /// `{"state": "forced_open" | "closed"}`: refuse every `apply` until closed again, or reset
    /// to CLOSED with an empty window.
    @Sendable func circuit(_ request: Request, context: BasicRequestContext) async throws -> Response {
        var request = request
        let id = try context.parameters.require("id")
        let body = try await request.jsonObject()
        let forcedOpen: Bool
        switch body["state"]?.stringValue {
        case "forced_open": forcedOpen = true
        case "closed": forcedOpen = false
        default:
            throw APIError(
                .unprocessableContent, "invalid_field", "state must be \"forced_open\" or \"closed\"", field: "state")
        }
        guard await node.lenders.directory.setCircuit(lenderID: id, forcedOpen: forcedOpen) else {
            throw APIError(.notFound, "not_found", "no lender \(id)")
        }
        node.lenders.logger.notice(
            "circuit set by an operator",
            metadata: ["lender": "\(id)", "state": "\(forcedOpen ? "forced_open" : "closed")"])
        return JSONResponse.make(.ok, await node.lenders.describe(id) ?? .null)
    }
}
