import FluxActors
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus

/// The public port: `/v1/…` (CONTRACT §2), health and metrics.
enum PublicAPI {
    static func router(node: NodeRuntime, registry: PrometheusCollectorRegistry) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: APIErrorMiddleware())
        router.add(middleware: NodeHeaderMiddleware(nodeID: node.config.nodeID))
        let v1 = router.group("v1").add(middleware: BearerAuthMiddleware(keys: Set(node.config.apiKeys)))
        ApplicationsController(node: node).addRoutes(to: v1)
        LoansController(node: node).addRoutes(to: v1)
        RulesController(node: node).addRoutes(to: v1)
        LendersController(node: node).addRoutes(to: v1)
        router.get("health/live") { _, _ in
            JSONResponse.make(.ok, .object(["status": "live"]))
        }
        router.get("health/ready") { _, _ in
            let ready = await node.isReady()
            return JSONResponse.make(ready ? .ok : .serviceUnavailable, .object(["status": ready ? "ready" : "not_ready"]))
        }
        router.get("metrics") { _, _ in
            JSONResponse.text(.ok, registry.emitToString(), contentType: "text/plain; version=0.0.4")
        }
        return router
    }
}

/// `Flux-Node`: the node that served the request.
struct NodeHeaderMiddleware<Context: RequestContext>: RouterMiddleware {
    let nodeID: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var response = try await next(request, context)
        response.headers[HTTPField.Name("Flux-Node")!] = nodeID
        return response
    }
}

/// The admin port (CONTRACT §4). A single node is a cluster of one until the cluster issue lands.
enum AdminAPI {
    static func router(node: NodeRuntime, onLeave: @escaping @Sendable () -> Void) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: APIErrorMiddleware())
        router.add(middleware: NodeHeaderMiddleware(nodeID: node.config.nodeID))
        let cluster = router.group("cluster").add(
            middleware: BearerAuthMiddleware(keys: node.config.adminToken.map { [$0] } ?? []))
        cluster.get("members") { _, _ in
            let c = node.config
            return JSONResponse.make(
                .ok,
                .array([
                    .object([
                        "node_id": .string(c.nodeID), "wire": .string(c.wire.description),
                        "http": .string(c.http.description), "status": "alive", "incarnation": 0,
                        "shards": .int(Int64(node.shardTable.owned.count)),
                    ])
                ]))
        }
        cluster.get("shards") { _, _ in
            let owner = node.config.nodeID
            return JSONResponse.make(
                .ok,
                .array(
                    node.shardTable.snapshot.sorted { $0.key < $1.key }.map {
                        .object(["shard": .int(Int64($0.key)), "owner": .string(owner), "epoch": .int($0.value)])
                    }))
        }
        cluster.post("leave") { _, _ in
            onLeave()
            return JSONResponse.make(.accepted, .object(["status": "leaving"]))
        }
        router.get("health/live") { _, _ in JSONResponse.make(.ok, .object(["status": "live"])) }
        return router
    }
}
