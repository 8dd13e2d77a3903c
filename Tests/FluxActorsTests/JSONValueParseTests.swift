import Foundation
import Testing

@testable import FluxActors

@Suite("JSONValue.parse (request bodies, rules, descriptors)")
struct JSONValueParseTests {
    @Test("integers that fit Int64 stay integers; fractions, exponents and huge numbers are doubles")
    func numbers() throws {
        let v = try JSONValue.parse(
            Array(
                #"{"a": 4500000, "b": -0, "c": 12.5, "d": 1e3, "e": 92233720368547758070, "f": 9223372036854775807}"#
                    .utf8))
        #expect(v["a"] == .int(4_500_000))
        #expect(v["b"] == .int(0))
        #expect(v["c"] == .double(12.5))
        #expect(v["d"] == .double(1000))
        #expect(v["d"]?.intValue == 1000)
        #expect(v["e"] == .double(92_233_720_368_547_758_070))
        #expect(v["f"] == .int(Int64.max))
    }

    @Test("strings: escapes, surrogate pairs and non-ASCII text read back exactly")
    func strings() throws {
        let v = try JSONValue.parse(Array(#"["a\"b\\c\/d\n", "\u00e9\ud83d\ude00", "₹ 4,500 ✓"]"#.utf8))
        #expect(v == ["a\"b\\c/d\n", "é😀", "₹ 4,500 ✓"])
    }

    @Test("anything that is not exactly one JSON value is refused with ParseError")
    func refusals() {
        let bad: [[UInt8]] = [
            [], Array("{".utf8), Array(#"{"a":1,}"#.utf8), Array("[1 2]".utf8), Array("01".utf8),
            Array(#"{"a":1} x"#.utf8), Array("'a'".utf8), Array("NaN".utf8), Array(#""\ud800""#.utf8),
            Array("\"tab\there\"".utf8),
            // Invalid UTF-8 inside a string is refused, not repaired.
            [0x22, 0xC3, 0x28, 0x22], [0x22, 0xFF, 0x22],
            Array(repeating: UInt8(ascii: "["), count: 65) + Array(repeating: UInt8(ascii: "]"), count: 65),
        ]
        for bytes in bad {
            #expect(throws: JSONValue.ParseError.self, "\(bytes.prefix(20))") { try JSONValue.parse(bytes) }
        }
    }

    @Test("nesting up to 64 deep is accepted")
    func depth() throws {
        let bytes = Array(repeating: UInt8(ascii: "["), count: 64) + Array(repeating: UInt8(ascii: "]"), count: 64)
        #expect(throws: Never.self) { try JSONValue.parse(bytes) }
    }

    @Test("what JSONWriter writes parses back to the same value")
    func roundTrip() throws {
        let v: JSONValue = [
            "s": "x\u{1}y\"z", "i": .int(-42), "d": .double(0.1), "b": true, "n": nil, "a": [1, "two", [3]],
            "o": ["k": ["deep": "v"]],
        ]
        #expect(try JSONValue.parse(JSONWriter.bytes(v)) == v)
    }
}

@Suite("Checkout bodies: integers are integers")
struct CheckoutIntegerFieldTests {
    static func body(amount: String) -> [UInt8] {
        Array(
            """
            {"merchant_id":"m","customer":{"id":"c","name":"Asha","phone":"+919800000001","pan":"ABCDE1234F",
            "date_of_birth":"1990-01-01","bureau_score":750},"loan":{"amount_paise":\(amount),"tenure_months":12},
            "mode":"waterfall"}
            """.utf8)
    }

    @Test("an amount written as 4500000 is read; 4500000.0 and 45e5 are 422 invalid_field, never rounded")
    func amounts() throws {
        let good = try CheckoutRequest(json: JSONValue.parse(Self.body(amount: "4500000")))
        #expect(good.amountPaise == 4_500_000)
        for bad in ["4500000.0", "45e5", "4500000.5"] {
            #expect(throws: InvalidField.self, "\(bad)") {
                _ = try CheckoutRequest(json: JSONValue.parse(Self.body(amount: bad)))
            }
            do {
                _ = try CheckoutRequest(json: JSONValue.parse(Self.body(amount: bad)))
            } catch let error as InvalidField {
                #expect(error.field == "loan.amount_paise")
            }
        }
    }
}
