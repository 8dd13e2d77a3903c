import Foundation
import Testing

@testable import FluxActors

enum LenderFixtures {
    static let checkoutJSON: JSONValue = [
        "merchant_id": "croma", "store_id": "croma-blr-12",
        "customer": [
            "id": "c-1", "name": "Asha Rao", "phone": "+919800000001", "email": "asha@example.in",
            "pan": "ABCDE1234F", "date_of_birth": "1992-04-01", "pincode": "560001",
            "monthly_income_paise": 9_000_000, "bureau_score": 762,
        ],
        "product": ["sku": "iphone-16-128", "category": "mobile", "price_paise": 7_990_000],
        "loan": ["amount_paise": 7_990_000, "tenure_months": 12],
        "mode": "waterfall",
    ]

    static func context(reference: String? = nil) -> LenderCallContext {
        LenderCallContext(
            applicationID: "app-1", request: try! CheckoutRequest(json: checkoutJSON),
            createdAt: Date(timeIntervalSince1970: 1_767_225_600),  // 2026-01-01T00:00:00Z
            idempotencyKey: "app-1:hero", lenderReference: reference)
    }

    static let applyResponse: JSONValue = [
        "decision": [
            "from": "$.status", "map": ["APPROVED": "approved", "REJECTED": "rejected", "PENDING": "pending"],
        ],
        "lender_reference": "$.loan_id", "reason": "$.remarks", "annual_rate_bps": "$.roi_bps",
    ]

    static let statusResponse: JSONValue = [
        "decision": [
            "from": "$.status",
            "map": ["APPROVED": "approved", "REJECTED": "rejected", "PENDING": "pending", "NONE": "not_found"],
        ],
        "lender_reference": "$.loan_id", "reason": "$.remarks", "annual_rate_bps": "$.roi_bps",
    ]

    static func descriptorJSON(auth: JSONValue = ["type": "api_key", "header": "X-Api-Key", "value": "k-123"])
        -> JSONValue
    {
        [
            "id": "hero", "name": "Hero FinCorp", "base_url": "http://127.0.0.1:9103/",
            "timeout_ms": 2000,
            "auth": auth,
            "retry": ["max_attempts": 3, "initial_backoff_ms": 100, "multiplier": 2.0, "max_backoff_ms": 2000],
            "circuit_breaker": [
                "failure_rate_threshold": 50, "sliding_window_size": 4, "minimum_calls": 4, "wait_open_ms": 30000,
                "half_open_calls": 2, "slow_call_ms": 1500,
            ],
            "operations": [
                "apply": [
                    "method": "POST", "path": "/v2/loans",
                    "headers": ["X-Request-Id": "{{application.id}}"],
                    "body": [
                        "ref": "{{application.id}}", "amount": "{{loan.amount_paise}}", "pan": "{{customer.pan}}",
                        "tenure": "{{loan.tenure_months}}", "note": "EMI for {{customer.name}}",
                    ],
                    "response": applyResponse,
                ],
                "status": [
                    "method": "GET", "path": "/v2/loans/by-ref/{{application.id}}", "response": statusResponse,
                ],
                "disburse": [
                    "method": "POST", "path": "/v2/loans/{{attempt.lender_reference}}/disburse",
                    "response": [
                        "decision": [
                            "from": "$.state", "map": ["DONE": "disbursed", "FAILED": "failed", "WAIT": "pending"],
                        ]
                    ],
                ],
                "cancel": ["method": "POST", "path": "/v2/loans/{{attempt.lender_reference}}/cancel"],
            ],
            "validate": ["loan.amount_paise >= 500000", "loan.tenure_months in [3, 6, 9, 12, 18, 24]"],
        ]
    }

    static func descriptor(_ json: JSONValue = descriptorJSON(), env: [String: String] = [:]) throws
        -> ConnectorDescriptor
    {
        try ConnectorDescriptor(
            json: json,
            resolver: ReferenceResolver(environment: env) { path in
                if path == "/run/secrets/hero" { return "file-secret" }
                throw TemplateRenderError(message: "no such file")
            })
    }

    static func scope(token: String? = nil, reference: String? = nil, secrets: [String: JSONValue] = [:])
        -> TemplateScope
    {
        TemplateScope(
            context: context(reference: reference), secrets: secrets, token: token,
            now: Date(timeIntervalSince1970: 1_767_225_661))  // 2026-01-01T00:01:01Z
    }
}

extension JSONValue {
    /// Returns a copy with `value` set at a dotted path of object keys.
    func setting(_ path: String, _ value: JSONValue?) -> JSONValue {
        let parts = path.split(separator: ".").map(String.init)
        func go(_ v: JSONValue, _ rest: ArraySlice<String>) -> JSONValue {
            guard let k = rest.first, case .object(var o) = v else { return v }
            if rest.count == 1 {
                o[k] = value
            } else {
                o[k] = go(o[k] ?? [:], rest.dropFirst())
            }
            return .object(o)
        }
        return go(self, parts[...])
    }
}

/// A manual clock: tests move it; `sleep` only records and advances it.
final class TestClock: Sendable {
    private let nanos = LenderTestLock<UInt64>(1_000_000_000)
    private let slept = LenderTestLock<[Duration]>([])

    var now: UInt64 { nanos.withLock { $0 } }
    var sleeps: [Duration] { slept.withLock { $0 } }

    func advance(ms: Int) { nanos.withLock { $0 += UInt64(ms) * 1_000_000 } }

    var lenderClock: LenderClock {
        LenderClock(
            nowNanos: { self.now },
            wallNow: { Date(timeIntervalSince1970: 1_767_225_661) },
            sleep: { d in
                self.slept.withLock { $0.append(d) }
                let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
                self.advance(ms: Int(ms))
            })
    }
}

/// A transport that answers from a script and records every request.
final class ScriptedTransport: HTTPTransport {
    typealias Reply = @Sendable (LenderHTTPRequest) -> Result<LenderHTTPResponse, TransportError>
    private let state = LenderTestLock<(script: [Reply], requests: [LenderHTTPRequest])>(([], []))
    /// Answers token requests (URL containing "/oauth/token") separately from operation calls.
    private let tokenReplies = LenderTestLock<[Reply]>([])
    let clock: TestClock?
    let latencyMs: Int

    init(clock: TestClock? = nil, latencyMs: Int = 0) {
        self.clock = clock
        self.latencyMs = latencyMs
    }

    func enqueue(_ replies: Reply...) { state.withLock { $0.script.append(contentsOf: replies) } }
    func enqueueToken(_ replies: Reply...) { tokenReplies.withLock { $0.append(contentsOf: replies) } }

    var requests: [LenderHTTPRequest] { state.withLock { $0.requests } }
    var operationRequests: [LenderHTTPRequest] { requests.filter { !$0.url.contains("/oauth/token") } }
    var tokenRequests: [LenderHTTPRequest] { requests.filter { $0.url.contains("/oauth/token") } }

    func send(_ request: LenderHTTPRequest, timeout: Duration) async throws(TransportError) -> LenderHTTPResponse {
        if latencyMs > 0 { clock?.advance(ms: latencyMs) }
        let reply: Reply?
        if request.url.contains("/oauth/token") {
            state.withLock { $0.requests.append(request) }
            reply = tokenReplies.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        } else {
            reply = state.withLock { s in
                s.requests.append(request)
                return s.script.isEmpty ? nil : s.script.removeFirst()
            }
        }
        guard let reply else { throw .other("script exhausted") }
        switch reply(request) {
        case .success(let r): return r
        case .failure(let e): throw e
        }
    }

    static func json(_ status: Int, _ body: JSONValue) -> Reply {
        { _ in .success(LenderHTTPResponse(status: status, body: Array(body.jsonData()))) }
    }
    static func status(_ status: Int) -> Reply { { _ in .success(LenderHTTPResponse(status: status)) } }
    static func fail(_ e: TransportError) -> Reply { { _ in .failure(e) } }
}

/// A value behind a lock, for test doubles shared across tasks.
/// `@unchecked Sendable`: every access to `value` goes through `lock`.
final class LenderTestLock<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// A lender that approves at once (with `reference`) and disburses at once.
final class InstantLender: LenderGateway {
    let reference: String
    init(reference: String) { self.reference = reference }

    func admit(lenderID: String, context: LenderCallContext) async -> Admission { .permitted }
    func apply(lenderID: String, context: LenderCallContext) async -> LenderCall<ApplyOutcome> {
        LenderCall(outcome: .approved(reference: reference, annualRateBps: 1600, reason: nil), tries: 1, latencyMs: 0)
    }
    func status(lenderID: String, context: LenderCallContext) async -> LenderCall<StatusOutcome> {
        LenderCall(outcome: .notFound, tries: 1, latencyMs: 0)
    }
    func disburse(lenderID: String, context: LenderCallContext) async -> LenderCall<DisburseOutcome> {
        LenderCall(outcome: .disbursed, tries: 1, latencyMs: 0)
    }
    func cancel(lenderID: String, context: LenderCallContext) async -> LenderCall<CancelOutcome>? { nil }
}
