/// `shard = hash(entity id) mod shards` with a hash that is the same on every node, every run
/// and every platform (FNV-1a 64), unlike Swift's seeded `Hasher`.
public struct ShardMap: Sendable, Equatable {
    public let shards: Int

    public init(shards: Int) {
        precondition(shards > 0, "a cluster has at least one shard")
        self.shards = shards
    }

    public func shard(for entityID: some StringProtocol) -> Int {
        Int(Self.fnv1a(entityID) % UInt64(shards))
    }

    public static func fnv1a(_ s: some StringProtocol) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01b3
        }
        return h
    }
}
