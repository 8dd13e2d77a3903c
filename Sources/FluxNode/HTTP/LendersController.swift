import FluxActors
import Foundation
import Hummingbird

/// `/v1/lenders`.
struct LendersController: Sendable {
    let node: NodeRuntime

    func addRoutes(to router: RouterGroup<BasicRequestContext>) {
        router.get("lenders", use: list)
    }

    @Sendable func list(_ request: Request, context: BasicRequestContext) async throws -> Response {
        JSONResponse.make(.ok, .object(["lenders": .array(await node.lenders.list())]))
    }
}
