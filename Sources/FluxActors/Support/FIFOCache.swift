import DequeModule

/// A dictionary bounded to `capacity` entries that forgets the oldest insertion first. Every
/// operation is O(1) amortised: a full cache that takes one entry per checkout must not move
/// its whole order each time (an `Array.removeFirst` of 20,000 ids per loan did).
///
/// Updating a present key keeps its place; a removed key that comes back goes to the end.
/// Removals leave their place in the order behind, marked stale by a generation number, and
/// the order is compacted once stale places outnumber live ones.
public struct FIFOCache<Key: Hashable, Value> {
    public let capacity: Int
    private var entries: [Key: (value: Value, generation: UInt64)] = [:]
    private var order: Deque<(key: Key, generation: UInt64)> = []
    private var nextGeneration: UInt64 = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "a cache holds at least one entry")
        self.capacity = capacity
    }

    public var count: Int { entries.count }
    public var keys: some Collection<Key> { entries.keys }

    public subscript(key: Key) -> Value? { entries[key]?.value }

    /// Inserts or updates; evicts the oldest entries beyond `capacity`.
    public mutating func insert(_ value: Value, for key: Key) {
        if let present = entries[key] {
            entries[key] = (value, present.generation)
            return
        }
        nextGeneration &+= 1
        entries[key] = (value, nextGeneration)
        order.append((key, nextGeneration))
        while entries.count > capacity, let oldest = order.popFirst() {
            if entries[oldest.key]?.generation == oldest.generation { entries.removeValue(forKey: oldest.key) }
        }
        compactIfMostlyStale()
    }

    /// Changes a present entry in place (its place in the order kept); false when absent.
    @discardableResult
    public mutating func update(_ key: Key, _ change: (inout Value) -> Void) -> Bool {
        guard var present = entries[key] else { return false }
        change(&present.value)
        entries[key] = present
        return true
    }

    @discardableResult
    public mutating func removeValue(forKey key: Key) -> Value? {
        defer { compactIfMostlyStale() }
        return entries.removeValue(forKey: key)?.value
    }

    public mutating func removeAll(where shouldRemove: (Key, Value) -> Bool) {
        entries = entries.filter { !shouldRemove($0.key, $0.value.value) }
        compactIfMostlyStale()
    }

    private mutating func compactIfMostlyStale() {
        guard order.count > 2 * entries.count + 64 else { return }
        let live = entries
        order = Deque(order.filter { live[$0.key]?.generation == $0.generation })
    }
}

extension FIFOCache: Sendable where Key: Sendable, Value: Sendable {}
