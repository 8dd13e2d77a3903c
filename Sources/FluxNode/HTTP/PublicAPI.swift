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
            .add(middleware: ForwardingMiddleware(node: node, cluster: node.cluster))
        ApplicationsController(node: node).addRoutes(to: v1)
        LoansController(node: node).addRoutes(to: v1)
        RulesController(node: node).addRoutes(to: v1)
        LendersController(node: node).addRoutes(to: v1)
        router.get("health/live") { _, _ in
            JSONResponse.make(.ok, .object(["status": "live"]))
        }
        router.get("health/ready") { _, _ in
            let ready = await node.isReady()
            return JSONResponse.make(
                ready ? .ok : .serviceUnavailable, .object(["status": ready ? "ready" : "not_ready"]))
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
        // A forwarded reply already names the owner that served it.
        if response.headers[HTTPField.Name("Flux-Node")!] == nil {
            response.headers[HTTPField.Name("Flux-Node")!] = nodeID
        }
        return response
    }
}

/// The admin port (CONTRACT §4). Members and placement come from SWIM membership
/// (`ClusterRuntime`); a node without `cluster_secret` is a cluster of one.
enum AdminAPI {
    static func router(
        node: NodeRuntime, cluster: ClusterRuntime, onLeave: @escaping @Sendable () -> Void
    ) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: APIErrorMiddleware())
        router.add(middleware: NodeHeaderMiddleware(nodeID: node.config.nodeID))
        let admin = router.group("cluster").add(
            middleware: BearerAuthMiddleware(keys: node.config.adminToken.map { [$0] } ?? []))
        admin.get("members") { _, _ in
            JSONResponse.make(.ok, await ClusterAdmin.members(cluster))
        }
        admin.get("shards") { _, _ in
            JSONResponse.make(.ok, try await ClusterAdmin.shards(cluster, node: node))
        }
        if ProcessInfo.processInfo.environment["FLUX_FAULT_INJECTION"] == "1" {
            // Partition tests: `{"drop": ["n2", "n3"]}` drops every frame to and from those nodes.
            admin.put("faults") { request, _ in
                var request = request
                let body = try await request.jsonObject()
                let drop = Set((body["drop"]?.arrayValue ?? []).compactMap(\.stringValue).map { NodeID($0) })
                await cluster.membership.partition(from: drop)
                return JSONResponse.make(.ok, .object(["drop": .array(drop.map { .string($0.rawValue) })]))
            }
        }
        admin.post("leave") { _, _ in
            onLeave()
            return JSONResponse.make(.accepted, .object(["status": "leaving"]))
        }
        router.get("health/live") { _, _ in JSONResponse.make(.ok, .object(["status": "live"])) }
        return router
    }
}
