import Foundation

extension ConnectorDescriptor {
    /// Renders one operation's HTTP request: URL (rendered values percent-encoded), headers
    /// (auth included), JSON body. Pure; a missing template path is a `TemplateRenderError`.
    public func request(for op: LenderOperation, scope: TemplateScope) throws(TemplateRenderError) -> LenderHTTPRequest
    {
        guard let spec = operations[op] else {
            throw TemplateRenderError(message: "the descriptor has no \(op.rawValue) operation")
        }
        let url = baseURL + (try spec.path.render(scope, encode: .component))
        var headers: [LenderHTTPHeader] = []
        headers.reserveCapacity(spec.headers.count + 3)
        switch auth.headerAuth {
        case .none, .mtls: break
        case .apiKey(let name, let value):
            headers.append(LenderHTTPHeader(name, try Self.headerValue(value.render(scope), name: name)))
        case .oauth2ClientCredentials:
            guard let token = scope.token else { throw TemplateRenderError(message: "no access token") }
            headers.append(
                LenderHTTPHeader("Authorization", try Self.headerValue("Bearer " + token, name: "Authorization")))
        case .workflow(let w):
            guard scope.token != nil else { throw TemplateRenderError(message: "no workflow token") }
            headers.append(LenderHTTPHeader(w.header, try Self.headerValue(w.value.render(scope), name: w.header)))
        }
        for h in spec.headers {
            headers.append(LenderHTTPHeader(h.name, try Self.headerValue(h.value.render(scope), name: h.name)))
        }
        var body: [UInt8]? = nil
        if let b = spec.body {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(512)
            try b.write(scope, into: &bytes)
            body = bytes
            if !spec.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
                headers.append(LenderHTTPHeader("Content-Type", "application/json"))
            }
        }
        if !spec.headers.contains(where: { $0.name.lowercased() == "accept" }) {
            headers.append(LenderHTTPHeader("Accept", "application/json"))
        }
        return LenderHTTPRequest(method: spec.method, url: url, headers: headers, body: body)
    }

    /// A rendered header value must not break the header block.
    static func headerValue(_ v: String, name: String) throws(TemplateRenderError) -> String {
        guard !v.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D || $0 == 0x00 }) else {
            throw TemplateRenderError(message: "header \(name) would contain a line break")
        }
        return v
    }
}

extension OAuth2ClientCredentials {
    /// The token request (RFC 6749 §4.4): form-encoded `grant_type=client_credentials`, client
    /// credentials in the body or as HTTP Basic.
    public func tokenRequest() -> LenderHTTPRequest {
        let enc = PercentEncoding.component
        var form = ["grant_type=client_credentials"]
        if let scope { form.append("scope=" + enc.encode(scope)) }
        var headers = [
            LenderHTTPHeader("Content-Type", "application/x-www-form-urlencoded"),
            LenderHTTPHeader("Accept", "application/json"),
        ]
        switch clientAuth {
        case .body:
            form.append("client_id=" + enc.encode(clientID))
            form.append("client_secret=" + enc.encode(clientSecret))
        case .basic:
            // RFC 6749 §2.3.1: each part form-encoded before joining.
            let pair = enc.encode(clientID) + ":" + enc.encode(clientSecret)
            headers.append(LenderHTTPHeader("Authorization", "Basic " + Data(pair.utf8).base64EncodedString()))
        }
        return LenderHTTPRequest(
            method: "POST", url: tokenURL, headers: headers, body: Array(form.joined(separator: "&").utf8))
    }

    /// `access_token` and `expires_in` (seconds; nil when the server does not say).
    static func parseToken(_ body: [UInt8]) -> (token: String, expiresIn: Int?)? {
        guard let reply = JSONReader.parse(body), case .string(let token)? = reply["access_token"], !token.isEmpty,
            token.utf8.count <= 8192
        else { return nil }
        var expires: Int? = nil
        if let e = reply["expires_in"] {
            if let i = e.intValue { expires = Int(clamping: i) } else if let s = e.stringValue { expires = Int(s) }
        }
        return (token, expires)
    }
}
