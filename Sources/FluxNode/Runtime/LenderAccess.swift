import FluxActors
import Foundation
import Logging

/// The node's lenders: connector descriptors from `lenders_dir`, their `validate` conditions
/// compiled with the rules engine, one `LenderConnection` each behind a `LenderDirectory`.
struct LenderAccess: Sendable {
    let directory: LenderDirectory
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
        var validators: [String: [LenderValidator]] = [:]
        for d in descriptors {
            validators[d.id] = try d.validate.enumerated().map { (i, text) in
                let condition: Condition
                do { condition = try Condition.compile(text, path: "$.validate[\(i)]") } catch let error as RulesError {
                    throw ConfigError(key: "lenders_dir", message: "\(d.id): validate[\(i)]: \(error.message)")
                }
                return LenderValidator(text: text) { request, today in condition.holds(for: request, today: today) }
            }
        }
        let directory = LenderDirectory(
            descriptors: descriptors, transport: AsyncHTTPClientTransport(), validators: validators)
        logger.info("lenders loaded", metadata: ["lenders": "\(descriptors.map(\.id).sorted().joined(separator: ","))"])
        return LenderAccess(directory: directory, ids: Set(descriptors.map(\.id)))
    }
}
