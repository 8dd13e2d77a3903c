import FluxActors
import FluxWire
import Foundation
import Logging

/// Lender descriptors published with `PUT /v1/lenders/{id}`, cluster-wide: journalled in the
/// stream `config/lenders` (one `LenderDescriptorPublished {lender_id, descriptor}` event per
/// publish, written by the owner of that stream's shard, to which the request is forwarded),
/// announced to every member (`WireConfigPublish {kind: "lenders"}`), and applied by every node
/// from the journal: on the announcement, every 2 s in any case, and at start-up (after the
/// descriptors of `lenders_dir`), so a late joiner or a restarted node has them too.
actor LenderConfigBook {
    static let stream = "config/lenders"
    private let journal: EventJournal
    private let shard: Int
    private let epoch: @Sendable (Int) -> Int64?
    private let now: @Sendable () -> Date
    private let lenders: LenderAccess
    private let logger: Logger
    /// The last event of the stream applied here.
    private var applied: Int64 = 0

    init(
        journal: EventJournal, shards: ShardMap, epoch: @escaping @Sendable (Int) -> Int64?,
        now: @escaping @Sendable () -> Date, lenders: LenderAccess, logger: Logger
    ) {
        self.journal = journal
        self.shard = shards.shard(for: Self.stream)
        self.epoch = epoch
        self.now = now
        self.lenders = lenders
        self.logger = logger
    }

    enum PublishError: Error {
        case invalid(DescriptorError)
        case journal(String)
    }

    /// Validates, journals (durably) and loads a descriptor; the caller announces it.
    func publish(id: String, body: JSONValue) async throws(PublishError) -> JSONValue {
        do { try lenders.validate(id: id, body: body) } catch { throw .invalid(error) }
        do {
            try await refresh()
            guard let writerEpoch = epoch(shard) else {
                throw JournalError.unavailable("this node does not own the lenders' configuration shard (\(shard))")
            }
            let event = JournalEvent(
                shard: shard, stream: Self.stream, seq: applied + 1, type: "LenderDescriptorPublished",
                data: JSONValue.object(["lender_id": .string(id), "descriptor": body]).jsonString(),
                writerEpoch: writerEpoch, at: now())
            try await journal.append([event])
            try await journal.awaitDurable(stream: Self.stream, upTo: event.seq)
            try await refresh()
        } catch {
            throw .journal("\(error)")
        }
        return await lenders.describe(id) ?? .null
    }

    /// Applies the published descriptors this node has not applied yet. A descriptor that does
    /// not load here (a `${env:…}` this node lacks) is logged and skipped: the node keeps the one
    /// it had.
    func refresh() async throws {
        let events = try await journal.read(stream: Self.stream, afterSeq: applied)
        for e in events where e.seq > applied {
            applied = e.seq
            guard let doc = try? JSONValue.parse(Data(e.data.utf8)), let id = doc["lender_id"]?.stringValue,
                let descriptor = doc["descriptor"]
            else {
                logger.error("unreadable lender descriptor event", metadata: ["seq": "\(e.seq)"])
                continue
            }
            do {
                _ = try await lenders.put(id: id, body: descriptor)
            } catch {
                logger.error(
                    "a published lender descriptor does not load on this node",
                    metadata: ["lender": "\(id)", "error": "\(error.path): \(error.message)"])
            }
        }
    }
}
