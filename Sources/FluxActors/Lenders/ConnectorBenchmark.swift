import Foundation

/// `make bench`: microseconds of connector work per lender attempt, no network: render the
/// `apply` request (URL, auth header, headers, JSON body) and read a reply (parse and map).
public func runConnectorBenchmark(iterations: Int) -> Double {
    let descriptorJSON: JSONValue = [
        "id": "hero", "name": "Hero FinCorp", "base_url": "http://127.0.0.1:9103",
        "auth": ["type": "api_key", "header": "X-Api-Key", "value": "k-123"],
        "secrets": ["hs": "signing-key"],
        "operations": [
            "apply": [
                "method": "POST", "path": "/v2/loans",
                "headers": [
                    "X-Request-Id": "{{application.id}}", "Idempotency-Key": "{{attempt.idempotency_key}}",
                    "X-Signature": "{{application.id | hmac_sha256:secrets.hs}}",
                ],
                "body": [
                    "ref": "{{application.id}}", "amount": "{{loan.amount_paise}}", "pan": "{{customer.pan}}",
                    "tenure": "{{loan.tenure_months}}", "name": "{{customer.name}}", "phone": "{{customer.phone}}",
                    "merchant": "{{application.merchant_id}}", "note": "EMI for {{product.sku}}",
                ],
                "response": [
                    "decision": [
                        "from": "$.status",
                        "map": ["APPROVED": "approved", "REJECTED": "rejected", "PENDING": "pending"],
                    ],
                    "lender_reference": "$.loan_id", "reason": "$.remarks", "annual_rate_bps": "$.roi_bps",
                ],
            ],
            "status": [
                "method": "GET", "path": "/v2/loans/by-ref/{{application.id}}",
                "response": [
                    "decision": ["from": "$.status", "map": ["APPROVED": "approved"]], "annual_rate_bps": 1600,
                ],
            ],
        ],
    ]
    let checkout: JSONValue = [
        "merchant_id": "croma", "store_id": "croma-blr-12",
        "customer": [
            "id": "c-1", "name": "Asha Rao", "phone": "+919800000001", "pan": "ABCDE1234F",
            "date_of_birth": "1992-04-01", "bureau_score": 762,
        ],
        "product": ["sku": "iphone-16-128", "price_paise": 7_990_000],
        "loan": ["amount_paise": 7_990_000, "tenure_months": 12],
    ]
    guard let descriptor = try? ConnectorDescriptor(json: descriptorJSON, environment: [:]),
        let request = try? CheckoutRequest(json: checkout)
    else { return -1 }
    let context = LenderCallContext(
        applicationID: "app-000001", request: request, createdAt: Date(), idempotencyKey: "app-000001:hero")
    let reply = Array(
        #"{"status":"APPROVED","loan_id":"HFC-88231","roi_bps":1600,"remarks":"ok","emi_paise":712345}"#.utf8)
    let mapping = descriptor.operations[.apply]!.response
    let now = Date()
    var sink = 0
    let n = max(1, iterations)
    let start = ContinuousClock.now
    for _ in 0..<n {
        let scope = TemplateScope(context: context, secrets: descriptor.secrets, token: nil, now: now)
        guard let req = try? descriptor.request(for: .apply, scope: scope) else { return -1 }
        sink &+= req.body?.count ?? 0
        if let json = JSONReader.parse(reply),
            case .approved(let ref, let bps, _) = ReplyMapping.apply(
                mapping, reply: json, applicationID: context.applicationID)
        {
            sink &+= ref.utf8.count &+ bps
        }
    }
    let elapsed = ContinuousClock.now - start
    let micros = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
    return sink == 0 ? -1 : micros / Double(n)
}
