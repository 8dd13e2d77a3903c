import AsyncHTTPClient
import Foundation
import Testing

@testable import FluxNode

@Suite struct LoadGenHistogramTests {
    /// The exact percentile of a sorted sample, by the same rank rule as the histogram.
    func exact(_ sorted: [UInt64], _ p: Double) -> UInt64 {
        let rank = max(1, Int((p / 100 * Double(sorted.count)).rounded(.up)))
        return sorted[rank - 1]
    }

    @Test func bucketsAreContiguousAndCoverEveryValue() {
        var previousUpper: UInt64?
        for i in 0..<LatencyHistogram.bucketCount {
            let r = LatencyHistogram.range(ofBucket: i)
            if let previousUpper { #expect(r.lowerBound == previousUpper + 1, "gap before bucket \(i)") }
            #expect(LatencyHistogram.bucket(of: r.lowerBound) == i)
            #expect(LatencyHistogram.bucket(of: r.upperBound) == i)
            previousUpper = r.upperBound
        }
        #expect(previousUpper == UInt64.max)
    }

    @Test func percentilesWithinOnePercentOnASkewedSample() {
        var rng = SplitMix64(seed: 42)
        var h = LatencyHistogram()
        var values: [UInt64] = []
        // Log-uniform from 50 µs to 5 s, plus a few huge outliers: a latency-like shape.
        for _ in 0..<50_000 {
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            let v = UInt64(50_000 * pow(100_000, u))
            values.append(v)
            h.record(v)
        }
        for v: UInt64 in [30_000_000_000, 31_000_000_000, 29_000_000_000] {
            values.append(v)
            h.record(v)
        }
        values.sort()
        #expect(h.count == UInt64(values.count))
        #expect(h.max == values.last!)
        #expect(h.min == values.first!)
        for p in [0.0, 1, 10, 50, 75, 90, 99, 99.9, 99.99, 100] {
            let want = Double(exact(values, p))
            let got = Double(h.percentile(p))
            #expect(abs(got - want) / want <= 0.01, "p\(p): \(got) vs \(want)")
        }
    }

    @Test func smallValuesAreExactAndEmptyIsZero() {
        var h = LatencyHistogram()
        #expect(h.percentile(99) == 0)
        for v: UInt64 in [1, 2, 3, 200, 255] { h.record(v) }
        #expect(h.percentile(20) == 1)
        #expect(h.percentile(60) == 3)
        #expect(h.percentile(100) == 255)
    }

    @Test func mergeAddsCounts() {
        var a = LatencyHistogram()
        var b = LatencyHistogram()
        for v: UInt64 in 1...1000 { a.record(v * 1000) }
        for v: UInt64 in 1001...2000 { b.record(v * 1000) }
        a.merge(b)
        #expect(a.count == 2000)
        #expect(a.max == 2_000_000)
        let p50 = Double(a.percentile(50))
        #expect(abs(p50 - 1_000_000) / 1_000_000 <= 0.01)
    }
}

@Suite struct LoadGenBodyTests {
    @Test func bodiesAreValidCheckoutsWithUniqueIdsAndKeys() throws {
        var g = CheckoutBodyGenerator(seed: 9, runID: "t1")
        var keys = Set<String>()
        var customers = Set<String>()
        var scores: [Int] = []
        var tenures = Set<Int>()
        for _ in 0..<2000 {
            let c = g.next()
            keys.insert(c.idempotencyKey)
            customers.insert(c.customerID)
            let j = try SimJSON.decode(c.body)
            guard case .string(let merchant) = j.value(at: "merchant_id"), !merchant.isEmpty,
                case .string(let pan) = j.value(at: "customer.pan"),
                case .string(let phone) = j.value(at: "customer.phone"),
                case .string(let dob) = j.value(at: "customer.date_of_birth"),
                case .int(let score) = j.value(at: "customer.bureau_score"),
                case .int(let amount) = j.value(at: "loan.amount_paise"),
                case .int(let price) = j.value(at: "product.price_paise"),
                case .int(let tenure) = j.value(at: "loan.tenure_months"),
                case .string(let pincode) = j.value(at: "customer.pincode"),
                case .string = j.value(at: "customer.name"),
                j.value(at: "customer.id") == .string(c.customerID),
                j.value(at: "mode") == .string("waterfall")
            else {
                Issue.record("missing or mistyped field in \(String(decoding: c.body, as: UTF8.self))")
                return
            }
            let p = Array(pan.utf8)
            let isLetter = { (c: UInt8) in c >= 65 && c <= 90 }
            let isDigit = { (c: UInt8) in c >= 48 && c <= 57 }
            #expect(
                p.count == 10 && p[0..<5].allSatisfy(isLetter) && p[3] == UInt8(ascii: "P")
                    && p[5..<9].allSatisfy(isDigit) && isLetter(p[9]), "\(pan)")
            let ph = Array(phone.utf8)
            #expect(
                ph.count == 13 && phone.hasPrefix("+91") && (54...57).contains(ph[3]) && ph[3...].allSatisfy(isDigit),
                "\(phone)")
            #expect(SimDate(dob) != nil)
            #expect(pincode.count == 6)
            #expect((300...900).contains(score))
            #expect(amount > 0 && amount <= price)
            #expect([3, 6, 9, 12, 18, 24].contains(Int(tenure)))
            scores.append(Int(score))
            tenures.insert(Int(tenure))
            #expect(Int(score) == c.bureauScore && amount == c.amountPaise)
        }
        #expect(keys.count == 2000)
        #expect(customers.count == 2000)
        #expect(tenures.count == 6)
        // A spread that exercises every lender: some sub-prime, most near-prime/prime.
        let below650 = scores.filter { $0 < 650 }.count
        let above750 = scores.filter { $0 >= 750 }.count
        #expect((40...300).contains(below650), "\(below650) below 650")
        #expect((500...1200).contains(above750), "\(above750) at 750+")
    }

    @Test func sameSeedSameBodiesDifferentRunDifferentKeys() {
        var a = CheckoutBodyGenerator(seed: 5, runID: "r1")
        var b = CheckoutBodyGenerator(seed: 5, runID: "r1")
        var c = CheckoutBodyGenerator(seed: 5, runID: "r2")
        for _ in 0..<50 {
            let x = a.next()
            let y = b.next()
            let z = c.next()
            #expect(x.body == y.body)
            #expect(x.idempotencyKey != z.idempotencyKey)
            #expect(x.customerID != z.customerID)
        }
    }

    @Test func reportRendersEveryFigure() throws {
        var h = LatencyHistogram()
        for v: UInt64 in 1...100 { h.record(v * 1_000_000) }
        let r = LoadReport(
            targets: ["http://127.0.0.1:8080"], intendedRate: 100, durationSeconds: 1, sent: 100, completed: 98,
            dropped: 0, failedSends: ["connection refused": 1], timedOut: 2, brokenReplies: [:],
            byHTTPStatus: [201: 98],
            byApplicationStatus: ["disbursed": 90, "declined": 8],
            elapsedSeconds: 1.2, latency: h, sendLag: LatencyHistogram(), connectionsPerTarget: 58)
        let text = r.render()
        for needle in [
            "sent", "100", "completed", "98", "timed out (slow reply)", "failed sends", "connection refused", "201",
            "disbursed", "p99.9", "100.00", "81.7/s", "send lag", "58 connections",
        ] {
            #expect(text.contains(needle), "render lacks \(needle)")
        }
        #expect(abs(r.p50Ms - 50) < 0.5)
        let json = try SimJSON.decode(Array(r.renderJSON().utf8))
        #expect(json.value(at: "sent") == .int(100))
        #expect(json.value(at: "by_http_status.201") == .int(98))
        #expect(json.value(at: "errors.timeout") == .int(2))
        #expect(json.value(at: "timed_out") == .int(2))
        #expect(json.value(at: "failed_sends.connection refused") == .int(1))
        #expect(json.value(at: "connections_per_target") == .int(58))
        #expect(json.value(at: "latency_ms.max") == .double(100))
        #expect(abs(r.maxMs - 100) < 0.001)
    }

    /// A node that sheds load answers fast with 503s: they are answered, not accepted, and the
    /// throughput figure the bench reports is the accepted one.
    @Test func sheddingRepliesAreAnsweredButNotAccepted() throws {
        let r = LoadReport(
            targets: ["http://127.0.0.1:8080"], intendedRate: 100, durationSeconds: 1, sent: 100, completed: 100,
            dropped: 0, failedSends: [:], timedOut: 0, brokenReplies: [:], byHTTPStatus: [201: 60, 200: 10, 503: 30],
            byApplicationStatus: ["pending": 70, "(none)": 30], elapsedSeconds: 2, latency: LatencyHistogram(),
            sendLag: LatencyHistogram(), connectionsPerTarget: 8)
        #expect(r.acceptedCount == 70)
        #expect(r.achievedRate == 50)
        #expect(r.acceptedRate == 35)
        #expect(r.render().contains("accepted (2xx) rate       35.0/s"))
        let json = try SimJSON.decode(Array(r.renderJSON().utf8))
        #expect(json.value(at: "accepted_rate") == .double(35))
        #expect(json.value(at: "achieved_rate") == .double(50))
    }

    @Test func optionsAreValidated() {
        let url = URL(string: "http://127.0.0.1:8080")!
        #expect(throws: LoadGenError.self) { try LoadGenOptions(targets: [], rate: 10, durationSeconds: 1).validate() }
        #expect(throws: LoadGenError.self) {
            try LoadGenOptions(targets: [url], rate: 0, durationSeconds: 1).validate()
        }
        #expect(throws: LoadGenError.self) {
            try LoadGenOptions(targets: [url], rate: 1, durationSeconds: 1, waitSeconds: 31).validate()
        }
        #expect(throws: LoadGenError.self) {
            try LoadGenOptions(targets: [URL(string: "ftp://x")!], rate: 1, durationSeconds: 1).validate()
        }
        #expect(throws: Never.self) { try LoadGenOptions(targets: [url], rate: 500, durationSeconds: 10).validate() }
    }

    /// Little's law with headroom: the pool grows with the rate and the expected latency, and
    /// an explicit size wins.
    @Test func poolIsSizedFromRateAndLatency() {
        let url = URL(string: "http://127.0.0.1:8080")!
        #expect(LoadGenOptions(targets: [url], rate: 2000, durationSeconds: 1).poolSize == 208)
        #expect(LoadGenOptions(targets: [url, url], rate: 2000, durationSeconds: 1).poolSize == 108)
        #expect(
            LoadGenOptions(targets: [url], rate: 2000, durationSeconds: 1, expectedLatencySeconds: 0.25).poolSize
                == 1008)
        #expect(LoadGenOptions(targets: [url], rate: 1, durationSeconds: 1).poolSize == 9)
        // A `Prefer: wait` reply may take the whole wait.
        #expect(LoadGenOptions(targets: [url], rate: 100, durationSeconds: 1, waitSeconds: 5).poolSize == 1008)
        #expect(LoadGenOptions(targets: [url], rate: 1_000_000, durationSeconds: 1).poolSize == 4096)
        #expect(LoadGenOptions(targets: [url], rate: 2000, durationSeconds: 1, maxInFlight: 100).poolSize == 100)
        #expect(LoadGenOptions(targets: [url], rate: 2000, durationSeconds: 1, connectionsPerTarget: 7).poolSize == 7)
        #expect(throws: LoadGenError.self) {
            try LoadGenOptions(targets: [url], rate: 1, durationSeconds: 1, connectionsPerTarget: 5000).validate()
        }
    }

    @Test func failuresAreSortedIntoNotSentSlowAndBroken() {
        #expect(SendFailure(HTTPClientError.getConnectionFromPoolTimeout) == .notSent("no connection in time"))
        #expect(SendFailure(HTTPClientError.connectTimeout) == .notSent("connect timeout"))
        #expect(SendFailure(HTTPClientError.deadlineExceeded) == .timedOut)
        #expect(SendFailure(HTTPClientError.readTimeout) == .timedOut)
        #expect(SendFailure(HTTPClientError.remoteConnectionClosed) == .broken("connection closed"))
        struct Refused: Error, CustomStringConvertible { var description: String { "connect(2): Connection refused" } }
        #expect(SendFailure(Refused()) == .notSent("connection refused"))
    }
}
