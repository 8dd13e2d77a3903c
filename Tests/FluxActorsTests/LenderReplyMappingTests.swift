import Foundation
import Testing

@testable import FluxActors

@Suite struct LenderReplyMappingTests {
    let apply: ResponseMapping
    let status: ResponseMapping
    let disburse: ResponseMapping

    init() throws {
        let d = try LenderFixtures.descriptor()
        apply = d.operations[.apply]!.response
        status = d.operations[.status]!.response
        disburse = d.operations[.disburse]!.response
    }

    @Test func applyDecisions() {
        #expect(
            ReplyMapping.apply(
                apply, reply: ["status": "APPROVED", "loan_id": "L-9", "roi_bps": 1600], applicationID: "a")
                == .approved(reference: "L-9", annualRateBps: 1600, reason: nil))
        #expect(
            ReplyMapping.apply(apply, reply: ["status": "REJECTED", "remarks": "low score"], applicationID: "a")
                == .rejected(reason: "low score", reference: nil))
        #expect(
            ReplyMapping.apply(apply, reply: ["status": "PENDING", "loan_id": 7], applicationID: "a")
                == .pending(reference: "7"))
        // A rate given as a numeric string is read; a literal rate needs no reply field.
        #expect(
            ReplyMapping.apply(
                apply, reply: ["status": "APPROVED", "loan_id": "L", "roi_bps": "1450"], applicationID: "a")
                == .approved(reference: "L", annualRateBps: 1450, reason: nil))
        var literal = apply
        literal.annualRateBps = .literal(1600)
        #expect(
            ReplyMapping.apply(literal, reply: ["status": "APPROVED", "loan_id": "L"], applicationID: "a")
                == .approved(reference: "L", annualRateBps: 1600, reason: nil))
    }

    func unknownReason(_ o: ApplyOutcome) -> String? {
        if case .unknown(let r, let t) = o, !t { return r }
        return nil
    }

    @Test func unreadableRepliesSayWhich() {
        let unmapped = ReplyMapping.apply(apply, reply: ["status": "MAYBE"], applicationID: "a")
        #expect(unknownReason(unmapped)?.contains("'MAYBE'") == true)
        let noDecision = ReplyMapping.apply(apply, reply: ["state": "APPROVED"], applicationID: "a")
        #expect(unknownReason(noDecision)?.contains("decision path $.status is missing") == true)
        let noRate = ReplyMapping.apply(apply, reply: ["status": "APPROVED", "loan_id": "L"], applicationID: "a")
        #expect(unknownReason(noRate)?.contains("annual_rate_bps $.roi_bps is missing") == true)
        let badRate = ReplyMapping.apply(
            apply, reply: ["status": "APPROVED", "loan_id": "L", "roi_bps": 16.5], applicationID: "a")
        #expect(unknownReason(badRate)?.contains("annual_rate_bps") == true)
        let noRef = ReplyMapping.apply(apply, reply: ["status": "APPROVED", "roi_bps": 1600], applicationID: "a")
        #expect(unknownReason(noRef)?.contains("lender_reference $.loan_id is missing") == true)
    }

    @Test func referenceFallsBackToApplicationIDOnlyWhenNotMapped() {
        var m = apply
        m.lenderReference = nil
        #expect(
            ReplyMapping.apply(m, reply: ["status": "APPROVED", "roi_bps": 1600], applicationID: "app-1")
                == .approved(reference: "app-1", annualRateBps: 1600, reason: nil))
    }

    @Test func statusAndDisburse() {
        #expect(ReplyMapping.status(status, reply: ["status": "NONE"], knownReference: "r") == .notFound)
        #expect(ReplyMapping.status(status, reply: ["status": "PENDING"], knownReference: "r") == .pending)
        #expect(
            ReplyMapping.status(
                status, reply: ["status": "APPROVED", "loan_id": "L", "roi_bps": 1200], knownReference: "r")
                == .approved(reference: "L", annualRateBps: 1200))
        if case .unknown = ReplyMapping.status(
            status, reply: ["status": "APPROVED", "loan_id": "L"], knownReference: "r")
        {
        } else {
            Issue.record("approval without a rate must be unknown")
        }
        #expect(ReplyMapping.disburse(disburse, reply: ["state": "DONE"]) == .disbursed)
        #expect(ReplyMapping.disburse(disburse, reply: ["state": "WAIT"]) == .pending)
        #expect(
            ReplyMapping.disburse(disburse, reply: ["state": "FAILED"])
                == .failed(reason: "disbursal refused by lender"))
        if case .unknown = ReplyMapping.disburse(disburse, reply: ["state": 3]) {
        } else {
            Issue.record("3 is unmapped")
        }
    }
}
