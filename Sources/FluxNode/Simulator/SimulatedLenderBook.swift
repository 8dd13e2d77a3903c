import Foundation

/// An apply request in the simulator's own words, whatever shape the lender's API has.
struct LoanApplicationInput: Sendable, Equatable {
    var reference: String
    var amountPaise: Int64
    var tenureMonths: Int
    var pan: String
    var bureauScore: Int
    var dateOfBirth: SimDate?
}

/// A calendar date `YYYY-MM-DD` (the simulator's own: it does not link FluxActors).
struct SimDate: Sendable, Equatable {
    var year: Int
    var month: Int
    var day: Int

    init?(_ text: String) {
        let u = Array(text.utf8)
        guard u.count == 10, u[4] == 0x2D, u[7] == 0x2D else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var n = 0
            for c in u[r] {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                n = n * 10 + Int(c - 0x30)
            }
            return n
        }
        guard let y = num(0..<4), let m = num(5..<7), let d = num(8..<10), (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        (year, month, day) = (y, m, d)
    }

    /// Whole years from this date to `now` (UTC).
    func age(on now: Date) -> Int {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let today = calendar.dateComponents([.year, .month, .day], from: now)
        var age = today.year! - year
        if (today.month!, today.day!) < (month, day) { age -= 1 }
        return age
    }
}

/// A lender's record of one application (its "loan" when approved).
struct SimulatedLoan: Sendable, Equatable {
    enum Decision: String, Sendable { case approved, rejected }
    enum State: String, Sendable { case approved, rejected, disbursed, cancelled }

    var reference: String
    var loanID: String
    var decision: Decision
    var reason: String?
    var state: State
    var amountPaise: Int64
    var tenureMonths: Int
    var rateBps: Int
    var bureauScore: Int
    /// How many apply calls carried this reference (the first made the record; the rest were
    /// answered from it).
    var applyCalls: Int
    var disburseCalls: Int
    var statusCalls = 0
    var cancelCalls = 0
    var createdAt: Date
}

/// One lender's book: the pure core of a simulated NBFC. Apply is idempotent on the caller's
/// reference, disburse and cancel on the loan id. No clocks, sockets or randomness here.
struct SimulatedLenderBook: Sendable {
    enum DisburseResult: Equatable {
        case disbursed(SimulatedLoan)
        case notFound
        /// Declined or cancelled: there is nothing to pay out.
        case notDisbursable(SimulatedLoan)
    }

    enum CancelResult: Equatable {
        case cancelled(SimulatedLoan)
        case notFound
        /// Money has moved: a cancel can no longer undo it.
        case alreadyDisbursed(SimulatedLoan)
    }

    /// A bound on memory: a book that is full refuses new applications (the shell says 503).
    static let maxApplications = 2_000_000

    let lenderID: String
    let loanIDPrefix: String
    let rules: SimulatedLendingRules
    let rateBps: Int
    private(set) var loansByReference: [String: SimulatedLoan] = [:]
    private var referenceByLoanID: [String: String] = [:]
    private(set) var insertionOrder: [String] = []

    init(lenderID: String, loanIDPrefix: String, rules: SimulatedLendingRules, rateBps: Int) {
        self.lenderID = lenderID
        self.loanIDPrefix = loanIDPrefix
        self.rules = rules
        self.rateBps = rateBps
    }

    var isFull: Bool { loansByReference.count >= Self.maxApplications }

    /// Decides a new reference, or answers a known one from its record. `isNew` is false for a
    /// repeat: the same decision and loan id, and no second loan.
    mutating func apply(_ input: LoanApplicationInput, now: Date) -> (loan: SimulatedLoan, isNew: Bool) {
        if var existing = loansByReference[input.reference] {
            existing.applyCalls += 1
            loansByReference[input.reference] = existing
            return (existing, false)
        }
        let failures = Self.evaluate(input, rules: rules, now: now)
        let serial = String(insertionOrder.count + 1)
        let loanID = loanIDPrefix + String(repeating: "0", count: max(0, 8 - serial.count)) + serial
        let loan = SimulatedLoan(
            reference: input.reference, loanID: loanID, decision: failures.isEmpty ? .approved : .rejected,
            reason: failures.isEmpty ? nil : failures.joined(separator: "; "),
            state: failures.isEmpty ? .approved : .rejected, amountPaise: input.amountPaise,
            tenureMonths: input.tenureMonths, rateBps: rateBps, bureauScore: input.bureauScore, applyCalls: 1,
            disburseCalls: 0, createdAt: now)
        // One record per reference is the whole point of the simulator's "never lent twice" check.
        precondition(referenceByLoanID[loanID] == nil, "loan id \(loanID) issued twice")
        loansByReference[input.reference] = loan
        referenceByLoanID[loanID] = input.reference
        insertionOrder.append(input.reference)
        return (loan, true)
    }

    func status(reference: String) -> SimulatedLoan? { loansByReference[reference] }

    /// A `status` inquiry about a reference: counted on its loan; `nil` when there is none, or
    /// while this is one of its first `k` inquiries (a lender whose status lags its apply).
    mutating func inquire(reference: String, hidingFirst k: Int) -> SimulatedLoan? {
        guard var loan = loansByReference[reference] else { return nil }
        loan.statusCalls += 1
        loansByReference[reference] = loan
        return loan.statusCalls <= k ? nil : loan
    }

    func loan(id: String) -> SimulatedLoan? { referenceByLoanID[id].flatMap { loansByReference[$0] } }

    mutating func disburse(loanID: String) -> DisburseResult {
        guard let ref = referenceByLoanID[loanID], var loan = loansByReference[ref] else { return .notFound }
        loan.disburseCalls += 1
        switch loan.state {
        case .approved, .disbursed:
            loan.state = .disbursed
            loansByReference[ref] = loan
            return .disbursed(loan)
        case .rejected, .cancelled:
            loansByReference[ref] = loan
            return .notDisbursable(loan)
        }
    }

    mutating func cancel(loanID: String) -> CancelResult {
        guard let ref = referenceByLoanID[loanID], var loan = loansByReference[ref] else { return .notFound }
        loan.cancelCalls += 1
        loansByReference[ref] = loan
        switch loan.state {
        case .disbursed: return .alreadyDisbursed(loan)
        case .approved, .cancelled:
            loan.state = .cancelled
            loansByReference[ref] = loan
            return .cancelled(loan)
        case .rejected:
            // Nothing was lent; cancelling a decline is a no-op that reports the decline.
            return .cancelled(loan)
        }
    }

    /// Records in the order they were made.
    var loans: [SimulatedLoan] { insertionOrder.compactMap { loansByReference[$0] } }

    mutating func reset() {
        loansByReference = [:]
        referenceByLoanID = [:]
        insertionOrder = []
    }

    /// Every rule the application fails, in words an operator can read; empty means approve.
    static func evaluate(_ input: LoanApplicationInput, rules: SimulatedLendingRules, now: Date) -> [String] {
        var failures: [String] = []
        if input.bureauScore < rules.minBureauScore {
            failures.append("bureau score \(input.bureauScore) below \(rules.minBureauScore)")
        }
        if input.amountPaise < rules.minAmountPaise {
            failures.append("amount \(input.amountPaise) paise below \(rules.minAmountPaise)")
        }
        if input.amountPaise > rules.maxAmountPaise {
            failures.append("amount \(input.amountPaise) paise above \(rules.maxAmountPaise)")
        }
        if !rules.allowedTenureMonths.isEmpty, !rules.allowedTenureMonths.contains(input.tenureMonths) {
            failures.append(
                "tenure \(input.tenureMonths) months not offered (\(rules.allowedTenureMonths.map(String.init).joined(separator: ",")))"
            )
        }
        if let dob = input.dateOfBirth {
            let age = dob.age(on: now)
            if let min = rules.minAge, age < min { failures.append("age \(age) below \(min)") }
            if let max = rules.maxAge, age > max { failures.append("age \(age) above \(max)") }
        }
        return failures
    }
}
