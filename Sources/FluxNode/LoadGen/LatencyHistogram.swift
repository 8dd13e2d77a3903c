/// An HDR-style latency histogram: log-linear buckets over nanoseconds. Values below 256 ns are
/// counted exactly; above, each power of two is split into 128 equal buckets, so a reported
/// value is within 1/256 (0.4 %) of any value recorded in its bucket. Fixed memory (7424
/// counters), O(1) record, no allocation after init.
public struct LatencyHistogram: Sendable, Equatable {
    /// Buckets per power of two; the relative error bound is 1 / (2 · subBuckets).
    static let subBuckets: UInt64 = 128
    static let subBucketBits = 7
    static let bucketCount = (64 - subBucketBits) * Int(subBuckets) + Int(subBuckets)

    private var counts: [UInt64]
    public private(set) var count: UInt64 = 0
    public private(set) var min: UInt64 = .max
    public private(set) var max: UInt64 = 0
    private var sum: Double = 0

    public init() { counts = Array(repeating: 0, count: Self.bucketCount) }

    /// The bucket of a value: exact below 2·subBuckets, then `shift · 128 + (v >> shift)` where
    /// `v >> shift` falls in 128…255.
    static func bucket(of value: UInt64) -> Int {
        if value < 2 * subBuckets { return Int(value) }
        let msb = 63 - value.leadingZeroBitCount
        let shift = msb - subBucketBits
        return shift * Int(subBuckets) + Int(value >> UInt64(shift))
    }

    /// The smallest and largest value that fall in a bucket.
    static func range(ofBucket index: Int) -> ClosedRange<UInt64> {
        if index < 2 * Int(subBuckets) { return UInt64(index)...UInt64(index) }
        let shift = index / Int(subBuckets) - 1
        let sub = UInt64(index - shift * Int(subBuckets))
        let low = sub << UInt64(shift)
        return low...(low + ((1 << UInt64(shift)) - 1))
    }

    public mutating func record(_ nanoseconds: UInt64) {
        counts[Self.bucket(of: nanoseconds)] += 1
        count += 1
        sum += Double(nanoseconds)
        if nanoseconds < min { min = nanoseconds }
        if nanoseconds > max { max = nanoseconds }
    }

    public mutating func merge(_ other: LatencyHistogram) {
        for i in 0..<counts.count where other.counts[i] > 0 { counts[i] += other.counts[i] }
        count += other.count
        sum += other.sum
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
    }

    /// The value at percentile `p` (0…100): the midpoint of the bucket holding the ⌈p·count/100⌉-th
    /// smallest value, clamped to the recorded min and max. 0 when empty.
    public func percentile(_ p: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let clamped = Swift.min(Swift.max(p, 0), 100)
        let rank = Swift.max(1, UInt64((clamped / 100 * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank {
                let r = Self.range(ofBucket: i)
                let mid = r.lowerBound + (r.upperBound - r.lowerBound) / 2
                return Swift.min(Swift.max(mid, min), max)
            }
        }
        return max
    }

    public var mean: Double { count == 0 ? 0 : sum / Double(count) }
}
