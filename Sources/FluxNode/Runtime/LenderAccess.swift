import FluxActors
import Foundation
import Logging

/// The node's lenders: connector descriptors from `lenders_dir`, their `validate` conditions
/// compiled with the rules engine, one `LenderConnection` each behind a `LenderDirectory`.
struct LenderAccess: Sendable {
    let directory: LenderDirectory
    /// Looked up on every checkout by the rules (`no connector descriptor`): a set, not the
    /// directory's locked, sorted list.
    let ids: Set<String>

    var gateway: any LenderGateway { directory }

    func hasConnector(_ id: String) -> Bool { ids.contains(id) }

    func list() async -> [JSONValue] { await directory.list() }

    static func load(config: NodeConfig, logger: Logger) throws -> LenderAccess {
        let folder = config.resolve(config.lendersDir)
        var descriptors: [ConnectorDescriptor] = []
        if FileManager.default.fileExists(atPath: folder.path) {
            descriptors = try loadDescriptors(directory: folder, environment: ProcessInfo.processInfo.environment)
        } else {
            logger.warning("lenders_dir does not exist; no lenders", metadata: ["path": "\(folder.path)"])
        }
        let directory: LenderDirectory
        do throws(DescriptorError) {
            directory = try LenderDirectory(
                descriptors: descriptors, transport: AsyncHTTPClientTransport(),
                compileCondition: { text throws in
                    let condition = try Condition.compile(text)
                    return { request, today in condition.holds(for: request, today: today) }
                })
        } catch {
            throw ConfigError(key: "lenders_dir", message: "\(error.path): \(error.message)")
        }
        logger.info("lenders loaded", metadata: ["lenders": "\(descriptors.map(\.id).sorted().joined(separator: ","))"])
        return LenderAccess(directory: directory, ids: Set(descriptors.map(\.id)))
    }
}
