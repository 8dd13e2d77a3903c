import Testing

@testable import FluxActors

/// Expected figures below come from an independent reference (Python `fractions.Fraction`,
/// exact rationals, the same CONTRACT formula), not from this code.
@Suite struct AmortizationScheduleTests {
    let jan15 = CalendarDate(year: 2025, month: 1, day: 15)!

    typealias Line = (emi: Int64, principal: Int64, interest: Int64, balance: Int64)

    func lines(_ s: AmortizationSchedule) -> [[Int64]] {
        s.lines.map { [$0.emiPaise, $0.principalPaise, $0.interestPaise, $0.balancePaise] }
    }

    @Test func oneLakhAtTwelvePercentForTwelveMonths() throws {
        let s = try AmortizationSchedule.make(
            principalPaise: 10_000_000, annualRateBps: 1200, tenureMonths: 12, disbursedOn: jan15)
        #expect(s.emiPaise == 888_488)  // ₹8,884.88
        #expect(
            lines(s) == [
                [888_488, 788_488, 100_000, 9_211_512],
                [888_488, 796_373, 92115, 8_415_139],
                [888_488, 804_337, 84151, 7_610_802],
                [888_488, 812_380, 76108, 6_798_422],
                [888_488, 820_504, 67984, 5_977_918],
                [888_488, 828_709, 59779, 5_149_209],
                [888_488, 836_996, 51492, 4_312_213],
                [888_488, 845_366, 43122, 3_466_847],
                [888_488, 853_820, 34668, 2_613_027],
                [888_488, 862_358, 26130, 1_750_669],
                [888_488, 870_981, 17507, 879_688],
                [888_485, 879_688, 8797, 0],
            ])
        #expect(s.lines.map(\.n) == Array(1...12))
        #expect(s.lines.allSatisfy { $0.paidPaise == 0 })
        #expect(s.principalPaise == 10_000_000)
        #expect(s.totalInterestPaise == 661_853)
    }

    /// DOMAIN.md's no-cost EMI example: ₹35,000 over 6 months at 14 % is booked as a ₹33,614
    /// loan whose EMI is the ₹5,833 the customer pays (₹35,000 / 6).
    @Test func noCostEmiWorkedExample() throws {
        let s = try AmortizationSchedule.make(
            principalPaise: 3_361_400, annualRateBps: 1400, tenureMonths: 6, disbursedOn: jan15)
        #expect(s.emiPaise == 583_331)
        #expect(s.emiPaise / 100 == 5833)
        #expect(
            lines(s) == [
                [583_331, 544_115, 39216, 2_817_285],
                [583_331, 550_463, 32868, 2_266_822],
                [583_331, 556_885, 26446, 1_709_937],
                [583_331, 563_382, 19949, 1_146_555],
                [583_331, 569_955, 13376, 576_600],
                [583_327, 576_600, 6727, 0],
            ])
        // The sticker price at the same rate costs more: the subvention pays the difference.
        let sticker = try AmortizationSchedule.make(
            principalPaise: 3_500_000, annualRateBps: 1400, tenureMonths: 6, disbursedOn: jan15)
        #expect(sticker.emiPaise == 607_383)
    }

    @Test func zeroRateSplitsEvenlyAndTheLastLineAbsorbs() throws {
        let s = try AmortizationSchedule.make(
            principalPaise: 100_000, annualRateBps: 0, tenureMonths: 3, disbursedOn: jan15)
        #expect(s.emiPaise == 33333)
        #expect(lines(s) == [[33333, 33333, 0, 66667], [33333, 33333, 0, 33334], [33334, 33334, 0, 0]])
        // 1001 / 2 = 500.5 rounds half up to 501; the last line takes what is left.
        let half = try AmortizationSchedule.make(
            principalPaise: 1001, annualRateBps: 0, tenureMonths: 2, disbursedOn: jan15)
        #expect(half.emiPaise == 501)
        #expect(lines(half) == [[501, 501, 0, 500], [500, 500, 0, 0]])
    }

    @Test func oneMonthTenureRepaysEverythingWithHalfUpInterest() throws {
        // 650 paise at 1 % a month: interest 6.5 → 7 (half up; banker's rounding would give 6),
        // EMI = P(1 + r) = 656.5 → 657.
        let s = try AmortizationSchedule.make(
            principalPaise: 650, annualRateBps: 1200, tenureMonths: 1, disbursedOn: jan15)
        #expect(s.emiPaise == 657)
        #expect(lines(s) == [[657, 650, 7, 0]])
        #expect(s.lines[0].dueDate == CalendarDate(year: 2025, month: 2, day: 15)!)
    }

    @Test func roundingIsHalfUp() {
        // balance × bps / 120000 exactly x.5 → x + 1; just below → x.
        #expect(AmortizationSchedule.interest(onBalance: 6, annualRateBps: 10_000) == 1)  // 0.5
        #expect(AmortizationSchedule.interest(onBalance: 18, annualRateBps: 10_000) == 2)  // 1.5
        #expect(AmortizationSchedule.interest(onBalance: 5, annualRateBps: 10_000) == 0)  // 0.4166…
        #expect(AmortizationSchedule.interest(onBalance: 7, annualRateBps: 10_000) == 1)  // 0.5833…
        #expect(AmortizationSchedule.interest(onBalance: 10_000_000, annualRateBps: 1200) == 100_000)
        // EMI ties: n = 1 makes the EMI P(1 + r) exactly.
        #expect(AmortizationSchedule.emi(principalPaise: 650, annualRateBps: 1200, tenureMonths: 1) == 657)
        #expect(AmortizationSchedule.emi(principalPaise: 150, annualRateBps: 1200, tenureMonths: 1) == 152)  // 151.5
        #expect(AmortizationSchedule.emi(principalPaise: 149, annualRateBps: 1200, tenureMonths: 1) == 150)  // 150.49
        #expect(AmortizationSchedule.emi(principalPaise: 3, annualRateBps: 0, tenureMonths: 2) == 2)  // 1.5
        #expect(AmortizationSchedule.emi(principalPaise: 5, annualRateBps: 0, tenureMonths: 4) == 1)  // 1.25
    }

    @Test func dueDatesClampToTheMonthsEnd() throws {
        let leap = try AmortizationSchedule.make(
            principalPaise: 1_000_000, annualRateBps: 1500, tenureMonths: 4,
            disbursedOn: CalendarDate(year: 2024, month: 1, day: 31)!)
        #expect(leap.lines.map(\.dueDate.description) == ["2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"])
        let common = try AmortizationSchedule.make(
            principalPaise: 1_000_000, annualRateBps: 1500, tenureMonths: 2,
            disbursedOn: CalendarDate(year: 2023, month: 1, day: 31)!)
        #expect(common.lines.map(\.dueDate.description) == ["2023-02-28", "2023-03-31"])
        let yearEnd = try AmortizationSchedule.make(
            principalPaise: 1_000_000, annualRateBps: 1500, tenureMonths: 3,
            disbursedOn: CalendarDate(year: 2025, month: 11, day: 30)!)
        #expect(yearEnd.lines.map(\.dueDate.description) == ["2025-12-30", "2026-01-30", "2026-02-28"])
    }

    @Test func refusesInputsOutOfRange() {
        func make(_ p: Int64, _ bps: Int, _ n: Int) -> ScheduleError? {
            do {
                _ = try AmortizationSchedule.make(
                    principalPaise: p, annualRateBps: bps, tenureMonths: n, disbursedOn: jan15)
                return nil
            } catch { return error }
        }
        #expect(make(0, 1200, 12) == .principalOutOfRange(0))
        #expect(make(-5, 1200, 12) == .principalOutOfRange(-5))
        #expect(make(AmortizationSchedule.maxPrincipalPaise + 1, 1200, 12) == .principalOutOfRange(1_000_000_001))
        #expect(make(100_000, 1200, 0) == .tenureOutOfRange(0))
        #expect(make(100_000, 1200, 121) == .tenureOutOfRange(121))
        #expect(make(100_000, -1, 12) == .rateOutOfRange(-1))
        #expect(make(100_000, 10_001, 12) == .rateOutOfRange(10_001))
        #expect(make(AmortizationSchedule.maxPrincipalPaise, 10_000, 120) == nil)
        #expect(make(1, 0, 1) == nil)
    }

    /// Rounding that would pay a tiny loan off before its last line is refused, not booked
    /// with a negative balance.
    @Test func refusesSchedulesWhoseRoundingOverdraws() {
        // 46 / 92 = 0.5 → EMI 1: 46 lines of 1 paisa repay it, line 47 would go below zero.
        #expect(throws: ScheduleError.roundingOverdrawsBalance(instalment: 47)) {
            try AmortizationSchedule.make(principalPaise: 46, annualRateBps: 0, tenureMonths: 92, disbursedOn: jan15)
        }
        // 100 % a year over 112 months: early rounding grows by (1 + r)ⁿ and overtakes ₹165.
        #expect(throws: ScheduleError.self) {
            try AmortizationSchedule.make(
                principalPaise: 16_517, annualRateBps: 10_000, tenureMonths: 112, disbursedOn: jan15)
        }
    }

    @Test func invariantsHoldOverManyRandomLoans() throws {
        var rng = SplitMix64(seed: 0x5EED_F1A5)
        var made = 0
        for i in 0..<400 {
            let p: Int64 =
                i % 4 == 0
                ? Int64(rng.next(below: 20_000)) + 1
                : Int64(rng.next(below: UInt64(AmortizationSchedule.maxPrincipalPaise))) + 1
            let bps = [0, 1, 10_000, Int(rng.next(below: 3601)), Int(rng.next(below: 10_001))][i % 5]
            let n = i % 7 == 0 ? 120 : Int(rng.next(below: 120)) + 1
            let result = Result { () throws(ScheduleError) in
                try AmortizationSchedule.make(
                    principalPaise: p, annualRateBps: bps, tenureMonths: n, disbursedOn: jan15)
            }
            let s: AmortizationSchedule
            switch result {
            case .success(let made): s = made
            case .failure(.roundingOverdrawsBalance): continue
            case .failure(let other): throw other
            }
            made += 1
            #expect(s.lines.count == n)
            #expect(s.principalPaise == p, "P=\(p) bps=\(bps) n=\(n)")
            #expect(s.lines.last?.balancePaise == 0)
            #expect(s.lines.allSatisfy { $0.balancePaise >= 0 && $0.principalPaise >= 0 && $0.interestPaise >= 0 })
            #expect(s.lines.dropLast().allSatisfy { $0.emiPaise == s.emiPaise })
            try s.checkInvariants()
            // Interest of each line is balance-before × r to the paisa.
            var before = p
            var interestExact = true
            for line in s.lines {
                let exact2 = 2 * before * Int64(bps)  // 240000 × the exact interest
                let got2 = 2 * line.interestPaise * 120_000
                // |interest − exact| ≤ ½, ties rounded up.
                interestExact = interestExact && got2 > exact2 - 120_000 && got2 <= exact2 + 120_000
                before = line.balancePaise
            }
            #expect(interestExact, "P=\(p) bps=\(bps) n=\(n)")
        }
        #expect(made > 300)  // the refusals are rare corner cases, not the norm
    }

    /// For realistic consumer loans (₹1,000 to ₹1 crore, up to 36 % a year, up to 24 months),
    /// rounding stays tiny: the last EMI is within a paisa per instalment of the others.
    @Test func lastLineDriftIsSmallForConsumerLoans() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<300 {
            let p = Int64(rng.next(below: 999_900_000)) + 100_000
            let bps = Int(rng.next(below: 3601))
            let n = Int(rng.next(below: 24)) + 1
            let s = try AmortizationSchedule.make(
                principalPaise: p, annualRateBps: bps, tenureMonths: n, disbursedOn: jan15)
            #expect(abs(s.lines[n - 1].emiPaise - s.emiPaise) <= Int64(n), "P=\(p) bps=\(bps) n=\(n)")
        }
    }

    @Test func storedSchedulesAreCheckedAgainstTheInvariants() throws {
        let good = try AmortizationSchedule.make(
            principalPaise: 100_000, annualRateBps: 0, tenureMonths: 3, disbursedOn: jan15)
        #expect(try AmortizationSchedule(emiPaise: good.emiPaise, lines: good.lines) == good)

        var lines = good.lines
        lines[2].balancePaise = -1
        #expect(throws: ScheduleError.self) { try AmortizationSchedule(emiPaise: good.emiPaise, lines: lines) }

        lines = good.lines
        lines[2].principalPaise += 1
        lines[2].emiPaise += 1
        #expect(throws: ScheduleError.self) { try AmortizationSchedule(emiPaise: good.emiPaise, lines: lines) }

        lines = good.lines
        lines[0].interestPaise = 5
        #expect(throws: ScheduleError.self) { try AmortizationSchedule(emiPaise: good.emiPaise, lines: lines) }

        lines = good.lines
        lines.swapAt(0, 1)
        #expect(throws: ScheduleError.self) { try AmortizationSchedule(emiPaise: good.emiPaise, lines: lines) }

        #expect(throws: ScheduleError.self) { try AmortizationSchedule(emiPaise: 0, lines: []) }
    }

    @Test func bigIntegersAreExact() {
        let a = BigUInt(130_000).power(120)
        #expect(a.description.hasPrefix("4711"))  // 130000¹²⁰ = 1.3¹²⁰ · 10⁶⁰⁰ ≈ 4.712 · 10⁶¹³
        #expect(a.description.count == 614)
        let b = BigUInt(UInt64.max) * BigUInt(UInt64.max)
        #expect(b.description == "340282366920938463426481119284349108225")
        #expect((b - BigUInt(UInt64.max)).description == "340282366920938463408034375210639556610")
        let (q, r) = (BigUInt(1_000_000_007) * a + BigUInt(12345)).quotientAndRemainder(dividingBy: a)
        #expect(q == 1_000_000_007)
        #expect(r == BigUInt(12345))
        #expect(BigUInt(7).dividedRoundingHalfUp(by: BigUInt(2)) == 4)
        #expect(BigUInt(5).dividedRoundingHalfUp(by: BigUInt(4)) == 1)
        #expect(BigUInt(1).shiftedLeft(100).bitWidth == 101)
    }
}

extension AmortizationScheduleTests {
    /// A small seeded generator (SplitMix64) so that the random tests repeat exactly. Nested so
    /// that it cannot collide with another test file's generator.
    struct SplitMix64 {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func next(below bound: UInt64) -> UInt64 { next() % bound }
    }
}
