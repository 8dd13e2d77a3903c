/// One invented NBFC API: its paths, the names of its fields, its decision words. The four
/// shapes differ on purpose (nesting, camelCase vs snake_case, status by path vs by query,
/// decision words) so that Flux's connector descriptors are exercised, not a single format.
struct LenderAPIShape: Sendable {
    enum StatusRoute: Sendable {
        /// `GET path` where `path` holds a `:ref` parameter.
        case path(String)
        /// `GET path?param=REF`.
        case query(path: String, param: String)
    }

    let name: String
    let loanIDPrefix: String
    let applyPath: String
    let status: StatusRoute
    /// Paths holding an `:id` parameter (the lender's loan id).
    let disbursePath: String
    let cancelPath: String

    // Request fields (dotted paths into the JSON body).
    let referenceField: String
    let amountField: String
    let tenureField: String
    let panField: String
    let scoreField: String
    /// nil: this lender never asks for a date of birth (and so cannot apply age limits).
    let dateOfBirthField: String?

    // Reply fields.
    let loanIDField: String
    let echoReferenceField: String
    let decisionField: String
    let rateField: String
    let reasonField: String
    let stateField: String
    let approvedWord: String
    let rejectedWord: String
    /// `state` words: what the loan is now.
    let disbursedWord: String
    let cancelledWord: String
    let failedWord: String

    func stateWord(_ state: SimulatedLoan.State) -> String {
        switch state {
        case .approved: approvedWord
        case .rejected: rejectedWord
        case .disbursed: disbursedWord
        case .cancelled: cancelledWord
        }
    }

    static let all: [LenderAPIShape] = [abfl, piramal, hero, tata]

    static func named(_ name: String) -> LenderAPIShape? { all.first { $0.name == name } }

    /// Aditya Birla-like: snake_case, nested applicant, status by partner reference in the path.
    static let abfl = LenderAPIShape(
        name: "abfl", loanIDPrefix: "ABFL-EMI-",
        applyPath: "/api/v1/emi/applications",
        status: .path("/api/v1/emi/applications/by-partner-ref/:ref"),
        disbursePath: "/api/v1/emi/applications/:id/disburse",
        cancelPath: "/api/v1/emi/applications/:id/cancel",
        referenceField: "partner_ref", amountField: "loan_amount_paise", tenureField: "tenure_months",
        panField: "applicant.pan", scoreField: "applicant.bureau_score", dateOfBirthField: "applicant.dob",
        loanIDField: "application_no", echoReferenceField: "partner_ref", decisionField: "decision",
        rateField: "roi_bps", reasonField: "remarks", stateField: "disbursal_status",
        approvedWord: "APPROVED", rejectedWord: "DECLINED", disbursedWord: "DISBURSED", cancelledWord: "CANCELLED",
        failedWord: "NOT_DISBURSABLE")

    /// Piramal-like: camelCase "leads", status by query string, "SANCTIONED".
    static let piramal = LenderAPIShape(
        name: "piramal", loanIDPrefix: "PFL-LD-",
        applyPath: "/los/v2/leads",
        status: .query(path: "/los/v2/leads", param: "leadReference"),
        disbursePath: "/los/v2/leads/:id/disbursement",
        cancelPath: "/los/v2/leads/:id/cancellation",
        referenceField: "leadReference", amountField: "amountInPaise", tenureField: "tenureMonths",
        panField: "panNumber", scoreField: "cibilScore", dateOfBirthField: "dateOfBirth",
        loanIDField: "leadId", echoReferenceField: "leadReference", decisionField: "leadStatus",
        rateField: "interestRateBps", reasonField: "rejectionReason", stateField: "disbursementStatus",
        approvedWord: "SANCTIONED", rejectedWord: "REJECTED", disbursedWord: "SUCCESS", cancelledWord: "CANCELLED",
        failedWord: "FAILED")

    /// Hero FinCorp-like: the flat shape of CONTRACT §5's example.
    static let hero = LenderAPIShape(
        name: "hero", loanIDPrefix: "HFCL",
        applyPath: "/v2/loans",
        status: .path("/v2/loans/by-ref/:ref"),
        disbursePath: "/v2/loans/:id/disburse",
        cancelPath: "/v2/loans/:id/cancel",
        referenceField: "ref", amountField: "amount", tenureField: "tenure",
        panField: "pan", scoreField: "score", dateOfBirthField: nil,
        loanIDField: "loan_id", echoReferenceField: "ref", decisionField: "status",
        rateField: "roi_bps", reasonField: "remarks", stateField: "status",
        approvedWord: "APPROVED", rejectedWord: "REJECTED", disbursedWord: "DISBURSED", cancelledWord: "CANCELLED",
        failedWord: "FAILED")

    /// Tata Capital-like: everything wrapped in `data`, lower-case outcome words, nested pricing.
    static let tata = LenderAPIShape(
        name: "tata", loanIDPrefix: "TCL-CD-",
        applyPath: "/consumer-durable/v1/proposals",
        status: .path("/consumer-durable/v1/proposals/external/:ref"),
        disbursePath: "/consumer-durable/v1/proposals/:id/disbursements",
        cancelPath: "/consumer-durable/v1/proposals/:id/cancel",
        referenceField: "proposal.external_id", amountField: "proposal.requested_amount.value_paise",
        tenureField: "proposal.tenor_months", panField: "kyc.pan", scoreField: "bureau.score",
        dateOfBirthField: "kyc.date_of_birth",
        loanIDField: "data.proposal_number", echoReferenceField: "data.external_id", decisionField: "data.outcome",
        rateField: "data.pricing.annual_rate_bps", reasonField: "data.reason_code", stateField: "data.state",
        approvedWord: "accept", rejectedWord: "decline", disbursedWord: "paid", cancelledWord: "withdrawn",
        failedWord: "failed")
}

/// A request field that is missing, of the wrong type or out of range (→ `422`).
struct SimulatorFieldError: Error, Equatable {
    var field: String
    var message: String
}

extension LenderAPIShape {
    /// Reads an apply request in this lender's words, checking types and ranges.
    func decodeApply(_ body: SimJSON) throws(SimulatorFieldError) -> LoanApplicationInput {
        guard case .object = body else { throw SimulatorFieldError(field: "", message: "body must be a JSON object") }
        func string(_ path: String, max: Int = 128) throws(SimulatorFieldError) -> String {
            guard let v = body.value(at: path) else {
                throw SimulatorFieldError(field: path, message: "\(path) is required")
            }
            guard case .string(let s) = v else {
                throw SimulatorFieldError(field: path, message: "\(path) must be a string, not \(v.simTypeName)")
            }
            guard !s.isEmpty, s.utf8.count <= max else {
                throw SimulatorFieldError(field: path, message: "\(path) must be 1…\(max) bytes")
            }
            return s
        }
        func int(_ path: String, _ range: ClosedRange<Int64>) throws(SimulatorFieldError) -> Int64 {
            guard let v = body.value(at: path) else {
                throw SimulatorFieldError(field: path, message: "\(path) is required")
            }
            let i: Int64
            switch v {
            case .int(let n): i = n
            // Some callers template numbers into strings; a lender would accept "12" too.
            case .string(let s) where Int64(s) != nil: i = Int64(s)!
            default: throw SimulatorFieldError(field: path, message: "\(path) must be an integer, not \(v.simTypeName)")
            }
            guard range.contains(i) else {
                throw SimulatorFieldError(
                    field: path, message: "\(path) must be \(range.lowerBound)…\(range.upperBound)")
            }
            return i
        }
        let reference = try string(referenceField)
        let amount = try int(amountField, 1...1_000_000_000)
        let tenure = try int(tenureField, 1...120)
        let pan = try string(panField, max: 10)
        let score = try int(scoreField, 300...900)
        var dob: SimDate?
        if let field = dateOfBirthField {
            let text = try string(field, max: 10)
            guard let d = SimDate(text) else {
                throw SimulatorFieldError(field: field, message: "\(field) must be YYYY-MM-DD")
            }
            dob = d
        }
        return LoanApplicationInput(
            reference: reference, amountPaise: amount, tenureMonths: Int(tenure), pan: pan, bureauScore: Int(score),
            dateOfBirth: dob)
    }

    /// The reply to `apply` and `status`: the decision in this lender's words.
    func loanView(_ loan: SimulatedLoan) -> SimJSON {
        var j = SimJSON.object([:])
        j.set(.string(loan.loanID), at: loanIDField)
        j.set(.string(loan.reference), at: echoReferenceField)
        j.set(.string(loan.decision == .approved ? approvedWord : rejectedWord), at: decisionField)
        // The rate is quoted on every reply (indicative on a decline), so a caller that always
        // reads it finds it.
        j.set(.int(Int64(loan.rateBps)), at: rateField)
        j.set(loan.reason.map(SimJSON.string) ?? .null, at: reasonField)
        if stateField != decisionField {
            j.set(.string(stateWord(loan.state)), at: stateField)
        }
        return j
    }

    /// The reply to `disburse` and `cancel`.
    func stateView(_ loan: SimulatedLoan, word: String? = nil) -> SimJSON {
        var j = SimJSON.object([:])
        j.set(.string(loan.loanID), at: loanIDField)
        j.set(.string(loan.reference), at: echoReferenceField)
        j.set(.string(word ?? stateWord(loan.state)), at: stateField)
        return j
    }
}
