import FluxActors
import Foundation
import Logging
import Synchronization

/// The node's lenders: connector descriptors from `lenders_dir`, their `validate` conditions
/// compiled with the rules engine, one `LenderConnection` each behind a `LenderDirectory`; the
/// hot reload (`PUT /v1/lenders/{id}` and a watcher of `lenders_dir`), the ops override of a
/// circuit, and the reconciler of abandoned references.
final class LenderAccess: Sendable {
    let directory: LenderDirectory
    let reconciler: Reconciler
    /// `lenders_dir`; `${file:…}` and certificate paths of a PUT descriptor are relative to it.
    let folder: URL
    let environment: [String: String]
    let logger: Logger
    private let watcher = Mutex<Task<Void, Never>?>(nil)

    init(
        directory: LenderDirectory, folder: URL, environment: [String: String], logger: Logger,
        journal: ReconcilerJournal? = nil
    ) {
        self.directory = directory
        self.folder = folder
        self.environment = environment
        self.logger = logger
        self.reconciler = Reconciler(gateway: directory, journal: journal, logger: logger)
    }

    var gateway: any LenderGateway { directory }

    /// The rules' `no connector descriptor` check, on every checkout: live, so lenders added or
    /// removed by a reload are seen at once.
    func hasConnector(_ id: String) -> Bool { directory.contains(id) }

    /// `GET /v1/lenders`: the directory's objects with the reconciler's counts in `stats`.
    func list() async -> [JSONValue] {
        let counts = await reconciler.stats()
        return await directory.list().map { Self.merge($0, counts) }
    }

    func describe(_ id: String) async -> JSONValue? {
        guard let one = await directory.describe(lenderID: id) else { return nil }
        return Self.merge(one, await reconciler.stats())
    }

    static func merge(_ lender: JSONValue, _ counts: [String: ReconciliationBook.Stats]) -> JSONValue {
        guard case .object(var o) = lender, let id = o["id"]?.stringValue, case .object(var stats)? = o["stats"] else {
            return lender
        }
        let c = counts[id] ?? ReconciliationBook.Stats()
        stats["orphan_approvals"] = .int(Int64(c.orphanApprovals))
        stats["orphans_cancelled"] = .int(Int64(c.cancelled))
        stats["orphans_flagged"] = .int(Int64(c.flagged))
        stats["reconciling"] = .int(Int64(c.watching))
        o["stats"] = .object(stats)
        return .object(o)
    }

    /// Checks a descriptor the way `put` would, without loading it.
    func validate(id: String, body: JSONValue) throws(DescriptorError) {
        if let given = body["id"], given != .string(id) {
            throw DescriptorError(path: "$.id", message: "must be \(id), the id in the URL")
        }
        _ = try ConnectorDescriptor(json: body, resolver: .files(environment: environment, relativeTo: folder))
    }

    /// Validates and hot-loads a descriptor on this node (`LenderConfigBook` publishes it to the
    /// cluster). Throws the first bad field; the old descriptor stays in force.
    func put(id: String, body: JSONValue) async throws(DescriptorError) -> JSONValue {
        if let given = body["id"], given != .string(id) {
            throw DescriptorError(path: "$.id", message: "must be \(id), the id in the URL")
        }
        let d = try ConnectorDescriptor(
            json: body, resolver: .files(environment: environment, relativeTo: folder))
        try await directory.replace(d)
        logger.notice("lender descriptor replaced through the API", metadata: ["lender": "\(id)"])
        return await describe(id) ?? .null
    }

    /// Starts polling `lenders_dir` every `interval` for changed, added or removed `*.json`.
    func startWatching(interval: Duration = .seconds(1)) {
        var reloader = DescriptorFolderReloader(folder: folder)
        reloader.prime()
        let primed = reloader
        let task = Task { [weak self] in
            var reloader = primed
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self else { return }
                await reloader.poll(into: self)
            }
        }
        watcher.withLock {
            $0?.cancel()
            $0 = task
        }
    }

    func stopWatching() { watcher.withLock { $0?.cancel() } }

    /// Loads the descriptors and starts the folder watcher and the reconciler. With `journal`,
    /// the reconciler journals its watches and first brings back those of `ownedShards` (the
    /// shards this node holds at start-up; on a later take-over the caller calls
    /// `reconciler.recover(shards:)` itself).
    static func load(
        config: NodeConfig, logger: Logger, journal: ReconcilerJournal? = nil, ownedShards: [Int] = []
    ) throws -> LenderAccess {
        let folder = config.resolve(config.lendersDir)
        let environment = ProcessInfo.processInfo.environment
        var descriptors: [ConnectorDescriptor] = []
        if FileManager.default.fileExists(atPath: folder.path) {
            descriptors = try loadDescriptors(directory: folder, environment: environment)
        } else {
            logger.warning("lenders_dir does not exist; no lenders", metadata: ["path": "\(folder.path)"])
        }
        let directory: LenderDirectory
        do throws(DescriptorError) {
            directory = try LenderDirectory(
                descriptors: descriptors, transport: NIOHTTPTransport(),
                compileCondition: { text throws in
                    let condition = try Condition.compile(text)
                    return { request, today in condition.holds(for: request, today: today) }
                },
                makeTransport: { d in
                    // An mTLS lender's client certificate belongs to its own connection pool.
                    guard let identity = d.auth.identity else { return nil }
                    return try AsyncHTTPClientTransport(identity: identity)
                })
        } catch {
            throw ConfigError(key: "lenders_dir", message: "\(error.path): \(error.message)")
        }
        logger.info("lenders loaded", metadata: ["lenders": "\(descriptors.map(\.id).sorted().joined(separator: ","))"])
        let access = LenderAccess(
            directory: directory, folder: folder, environment: environment, logger: logger, journal: journal)
        access.startWatching()
        Task {
            await access.recoverWatches(shards: ownedShards)
            await access.reconciler.start()
        }
        return access
    }

    /// `reconciler.recover(shards:)`, tried again while the journal is unavailable (up to about a
    /// minute; then logged: those references are no longer checked in the background).
    func recoverWatches(shards: [Int]) async {
        guard !shards.isEmpty else { return }
        var delay = Duration.milliseconds(100)
        for attempt in 1...10 {
            do {
                let n = try await reconciler.recover(shards: shards)
                if n > 0 { logger.info("reconciler watches recovered", metadata: ["count": "\(n)"]) }
                return
            } catch {
                if attempt == 10 {
                    logger.error("reconciler watches not recovered", metadata: ["error": "\(error)"])
                    return
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
    }
}

/// Polls a descriptor folder: a `*.json` whose modification time or size changed is loaded
/// again, a new one is added, a removed one drops its lender. A file that does not load is
/// logged with its JSON path and changes nothing (the old descriptor stays in force).
struct DescriptorFolderReloader: Sendable {
    struct Seen: Sendable, Equatable {
        var modified: Date
        var size: Int
        /// The lender id the file defined when it last loaded (nil: it never loaded).
        var id: String?
    }

    let folder: URL
    var seen: [String: Seen] = [:]

    init(folder: URL) { self.folder = folder }

    func scan() -> [String: (modified: Date, size: Int)] {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: folder.path) else { return [:] }
        var out: [String: (modified: Date, size: Int)] = [:]
        for name in names where name.hasSuffix(".json") {
            guard let attrs = try? fm.attributesOfItem(atPath: folder.appendingPathComponent(name).path),
                (attrs[.type] as? FileAttributeType) != .typeDirectory
            else { continue }
            out[name] = ((attrs[.modificationDate] as? Date) ?? .distantPast, (attrs[.size] as? Int) ?? 0)
        }
        return out
    }

    /// Records the folder as it is at start (those files were loaded by `loadDescriptors`).
    mutating func prime() {
        for (name, s) in scan() {
            let id = (try? JSONValue.parse(Data(contentsOf: folder.appendingPathComponent(name))))?["id"]?.stringValue
            seen[name] = Seen(modified: s.modified, size: s.size, id: id)
        }
    }

    mutating func poll(into access: LenderAccess) async {
        let now = scan()
        for (name, old) in seen where now[name] == nil {
            seen[name] = nil
            guard let id = old.id, !seen.values.contains(where: { $0.id == id }) else { continue }
            access.directory.remove(lenderID: id)
            access.logger.notice(
                "lender removed: its descriptor file is gone", metadata: ["file": "\(name)", "lender": "\(id)"])
        }
        for name in now.keys.sorted() {
            let s = now[name]!
            if let old = seen[name], old.modified == s.modified, old.size == s.size { continue }
            let previousID = seen[name]?.id
            seen[name] = Seen(modified: s.modified, size: s.size, id: previousID)
            do {
                let d = try loadDescriptor(file: folder.appendingPathComponent(name), environment: access.environment)
                if let other = seen.first(where: { $0.key != name && $0.value.id == d.id }) {
                    throw DescriptorError(
                        path: "\(name): $.id", message: "lender id \(d.id) is also defined in \(other.key)")
                }
                try await access.directory.replace(d)
                seen[name]?.id = d.id
                if let previousID, previousID != d.id { access.directory.remove(lenderID: previousID) }
                access.logger.notice("lender descriptor reloaded", metadata: ["file": "\(name)", "lender": "\(d.id)"])
            } catch let e as DescriptorError {
                let path = e.path.contains(": ") ? e.path : "\(name): \(e.path)"
                access.logger.error(
                    "descriptor refused; the old one stays in force",
                    metadata: ["file": "\(name)", "path": "\(path)", "message": "\(e.message)"])
            } catch {
                access.logger.error("descriptor cannot be read", metadata: ["file": "\(name)", "error": "\(error)"])
            }
        }
    }
}
