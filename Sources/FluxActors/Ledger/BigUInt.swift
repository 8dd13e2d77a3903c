/// A non-negative integer of any size: just enough arithmetic for the EMI formula, whose
/// (1 + r)^n = (120000 + bps)^n / 120000^n has numerators of up to ~2,100 bits for 120 months.
/// Limbs are 32-bit, least significant first, with no leading zero limbs (zero is `[]`), so
/// that every product of two limbs plus carries fits in a `UInt64`.
struct BigUInt: Sendable, Equatable, Comparable, CustomStringConvertible {
    private(set) var limbs: [UInt32]

    init(_ value: UInt64) {
        limbs = [UInt32(truncatingIfNeeded: value), UInt32(truncatingIfNeeded: value >> 32)]
        normalize()
    }

    private init(limbs: [UInt32]) {
        self.limbs = limbs
        normalize()
    }

    private mutating func normalize() {
        while limbs.last == 0 { limbs.removeLast() }
    }

    var isZero: Bool { limbs.isEmpty }

    /// Number of significant bits (0 for zero).
    var bitWidth: Int {
        guard let top = limbs.last else { return 0 }
        return limbs.count * 32 - top.leadingZeroBitCount
    }

    static func * (a: BigUInt, b: BigUInt) -> BigUInt {
        if a.isZero || b.isZero { return BigUInt(0) }
        var out = [UInt32](repeating: 0, count: a.limbs.count + b.limbs.count)
        for i in a.limbs.indices {
            var carry: UInt64 = 0
            let x = UInt64(a.limbs[i])
            for j in b.limbs.indices {
                // x·y + out + carry ≤ (2³²−1)² + 2·(2³²−1) = 2⁶⁴ − 1: never overflows.
                let t = x * UInt64(b.limbs[j]) + UInt64(out[i + j]) + carry
                out[i + j] = UInt32(truncatingIfNeeded: t)
                carry = t >> 32
            }
            var k = i + b.limbs.count
            while carry != 0 {
                let t = UInt64(out[k]) + carry
                out[k] = UInt32(truncatingIfNeeded: t)
                carry = t >> 32
                k += 1
            }
        }
        return BigUInt(limbs: out)
    }

    static func + (a: BigUInt, b: BigUInt) -> BigUInt {
        var out = [UInt32](repeating: 0, count: max(a.limbs.count, b.limbs.count) + 1)
        var carry: UInt64 = 0
        for i in out.indices {
            let t =
                (i < a.limbs.count ? UInt64(a.limbs[i]) : 0) + (i < b.limbs.count ? UInt64(b.limbs[i]) : 0) + carry
            out[i] = UInt32(truncatingIfNeeded: t)
            carry = t >> 32
        }
        return BigUInt(limbs: out)
    }

    /// `a − b`; `a` must not be smaller than `b` (naturals have no negatives).
    static func - (a: BigUInt, b: BigUInt) -> BigUInt {
        precondition(a >= b, "BigUInt subtraction would go below zero")
        var out = a.limbs
        var borrow: Int64 = 0
        for i in out.indices {
            var t = Int64(out[i]) - borrow - (i < b.limbs.count ? Int64(b.limbs[i]) : 0)
            if t < 0 {
                t += 1 << 32
                borrow = 1
            } else {
                borrow = 0
            }
            out[i] = UInt32(t)
        }
        return BigUInt(limbs: out)
    }

    func power(_ exponent: Int) -> BigUInt {
        precondition(exponent >= 0, "negative exponent")
        var result = BigUInt(1)
        if limbs.count == 1 {
            // The EMI's bases (120000, 120000 + bps) are one limb: multiply in place.
            for _ in 0..<exponent { result.multiply(byLimb: limbs[0]) }
        } else {
            for _ in 0..<exponent { result = result * self }
        }
        return result
    }

    private mutating func multiply(byLimb x: UInt32) {
        var carry: UInt64 = 0
        for i in limbs.indices {
            let t = UInt64(limbs[i]) * UInt64(x) + carry
            limbs[i] = UInt32(truncatingIfNeeded: t)
            carry = t >> 32
        }
        if carry != 0 { limbs.append(UInt32(carry)) }
        normalize()
    }

    /// `self −= b` in place; `self` must not be smaller than `b`.
    private mutating func subtract(_ b: BigUInt) {
        var borrow: Int64 = 0
        for i in limbs.indices {
            if i >= b.limbs.count && borrow == 0 { break }
            var t = Int64(limbs[i]) - borrow - (i < b.limbs.count ? Int64(b.limbs[i]) : 0)
            if t < 0 {
                t += 1 << 32
                borrow = 1
            } else {
                borrow = 0
            }
            limbs[i] = UInt32(t)
        }
        precondition(borrow == 0, "BigUInt subtraction would go below zero")
        normalize()
    }

    private mutating func shiftRightOne() {
        for i in limbs.indices {
            let high: UInt32 = i + 1 < limbs.count ? limbs[i + 1] << 31 : 0
            limbs[i] = (limbs[i] >> 1) | high
        }
        normalize()
    }

    func shiftedLeft(_ bits: Int) -> BigUInt {
        precondition(bits >= 0, "negative shift")
        if isZero { return self }
        let whole = bits / 32
        let part = bits % 32
        var out = [UInt32](repeating: 0, count: whole)
        out.reserveCapacity(whole + limbs.count + 1)
        if part == 0 {
            out.append(contentsOf: limbs)
        } else {
            var carry: UInt32 = 0
            for limb in limbs {
                out.append((limb << part) | carry)
                carry = limb >> (32 - part)
            }
            out.append(carry)
        }
        return BigUInt(limbs: out)
    }

    /// `(self / divisor, self % divisor)` when the quotient fits in 63 bits (callers know it
    /// does: an EMI is at most the principal plus one month's interest). Binary long division.
    func quotientAndRemainder(dividingBy divisor: BigUInt) -> (quotient: Int64, remainder: BigUInt) {
        precondition(!divisor.isZero, "division by zero")
        if self < divisor { return (0, self) }
        let shift = bitWidth - divisor.bitWidth
        precondition(shift < 63, "quotient does not fit in Int64")
        var remainder = self
        var quotient: Int64 = 0
        // The divisor, aligned with the remainder's top bit, then walked down one bit at a time.
        var d = divisor.shiftedLeft(shift)
        for k in stride(from: shift, through: 0, by: -1) {
            if d <= remainder {
                remainder.subtract(d)
                quotient |= 1 << k
            }
            d.shiftRightOne()
        }
        return (quotient, remainder)
    }

    /// `self / divisor` rounded half up (ties away from zero, as every value here is ≥ 0).
    func dividedRoundingHalfUp(by divisor: BigUInt) -> Int64 {
        let (q, r) = quotientAndRemainder(dividingBy: divisor)
        // r / divisor ≥ 1/2  ⇔  2r ≥ divisor.
        return r.shiftedLeft(1) >= divisor ? q + 1 : q
    }

    static func < (a: BigUInt, b: BigUInt) -> Bool {
        if a.limbs.count != b.limbs.count { return a.limbs.count < b.limbs.count }
        for i in stride(from: a.limbs.count - 1, through: 0, by: -1) where a.limbs[i] != b.limbs[i] {
            return a.limbs[i] < b.limbs[i]
        }
        return false
    }

    /// Decimal digits, for tests and diagnostics.
    var description: String {
        if isZero { return "0" }
        var digits: [UInt8] = []
        var rest = limbs
        while !rest.isEmpty {
            // Divide by 10 in place, limb by limb from the top.
            var remainder: UInt64 = 0
            for i in stride(from: rest.count - 1, through: 0, by: -1) {
                let cur = (remainder << 32) | UInt64(rest[i])
                rest[i] = UInt32(cur / 10)
                remainder = cur % 10
            }
            digits.append(UInt8(remainder) + 0x30)
            while rest.last == 0 { rest.removeLast() }
        }
        return String(decoding: digits.reversed(), as: UTF8.self)
    }
}
