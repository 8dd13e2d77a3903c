import Testing

@testable import FluxActors

@Suite struct FIFOCacheTests {
    @Test func forgetsTheOldestInsertionBeyondItsCapacity() {
        var c = FIFOCache<String, Int>(capacity: 3)
        for (i, k) in ["a", "b", "c", "d"].enumerated() { c.insert(i, for: k) }
        #expect(c.count == 3)
        #expect(c["a"] == nil)
        #expect(c["b"] == 1 && c["c"] == 2 && c["d"] == 3)
    }

    @Test func anUpdateKeepsItsPlace() {
        var c = FIFOCache<String, Int>(capacity: 2)
        c.insert(1, for: "a")
        c.insert(2, for: "b")
        c.insert(10, for: "a")
        #expect(c.update("b") { $0 += 5 })
        #expect(!c.update("zz") { $0 += 5 })
        c.insert(3, for: "c")
        // "a" was inserted first: updating it did not make it younger.
        #expect(c["a"] == nil)
        #expect(c["b"] == 7 && c["c"] == 3)
    }

    @Test func aRemovedKeyThatComesBackIsYoungAndItsOldPlaceEvictsNothing() {
        var c = FIFOCache<String, Int>(capacity: 2)
        c.insert(1, for: "a")
        c.insert(2, for: "b")
        #expect(c.removeValue(forKey: "a") == 1)
        c.insert(3, for: "a")  // now the youngest
        c.insert(4, for: "c")  // evicts "b", the oldest live entry, not the new "a"
        #expect(c["b"] == nil)
        #expect(c["a"] == 3 && c["c"] == 4)
    }

    @Test func removeAllWhereAndStaysBoundedUnderChurn() {
        var c = FIFOCache<Int, Int>(capacity: 100)
        for i in 0..<10_000 {
            c.insert(i, for: i)
            if i % 2 == 0 { c.removeValue(forKey: i) }
        }
        #expect(c.count == 100)
        #expect(c[9_999] == 9_999)
        #expect(c[9_998] == nil)
        c.removeAll { k, _ in k % 3 == 0 }
        #expect(c.keys.allSatisfy { $0 % 3 != 0 && $0 % 2 == 1 })
        #expect(c.count < 100)
        for i in 20_000..<20_100 { c.insert(i, for: i) }
        #expect(c.count == 100)
        #expect(c.keys.allSatisfy { $0 >= 20_000 })
    }
}
