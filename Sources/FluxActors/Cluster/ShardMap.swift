/// `shard = hash(entity id) mod shards` with a hash that is the same on every node, every run
/// and every platform (FNV-1a 64), unlike Swift's seeded `Hasher`.
public struct ShardMap: Sendable, Equatable {
    public let shards: Int

    public init(shards: Int) {
        precondition(shards > 0, "a cluster has at least one shard")
        self.shards = shards
    }

    /// The shard of an entity. Applications and loans (`app_…`, `loan_…`) carry their routing
    /// hash in their id (the first 8 hex digits after the prefix: the hash of merchant and
    /// customer), so every application of one customer, and its loan, share a shard and an owner;
    /// any other id or stream name is hashed whole.
    public func shard(for entityID: some StringProtocol) -> Int {
        if let routing = Self.routingHash(entityID) { return Int(routing % UInt64(shards)) }
        return Int(Self.fnv1a(entityID) % UInt64(shards))
    }

    /// The 32-bit routing hash embedded in `app_XXXXXXXX…` / `loan_XXXXXXXX…` ids (lower-case hex).
    public static func routingHash(_ id: some StringProtocol) -> UInt64? {
        let utf8 = id.utf8
        var i = utf8.startIndex
        if utf8.starts(with: "app_".utf8) {
            i = utf8.index(i, offsetBy: 4)
        } else if utf8.starts(with: "loan_".utf8) {
            i = utf8.index(i, offsetBy: 5)
        } else {
            return nil
        }
        var value: UInt64 = 0
        for _ in 0..<8 {
            guard i != utf8.endIndex else { return nil }
            let b = utf8[i]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
            i = utf8.index(after: i)
        }
        return value
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
