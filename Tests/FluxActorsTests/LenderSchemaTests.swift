import Foundation
import Testing

@testable import FluxActors

/// `Docs/connector.schema.json` says what the parser accepts: these keep the two in step.
@Suite struct LenderSchemaTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func schema() throws -> JSONValue {
        try JSONValue.parse(Data(contentsOf: Self.repo.appendingPathComponent("Docs/connector.schema.json")))
    }

    func keys(_ v: JSONValue?) -> Set<String> { Set(v?.objectValue?.keys.map { $0 } ?? []) }

    @Test func topLevelKeysAndRequiredFieldsMatchTheParser() throws {
        let s = try schema()
        #expect(s["$schema"] == "https://json-schema.org/draft/2020-12/schema")
        #expect(
            keys(s["properties"])
                == [
                    "id", "name", "base_url", "timeout_ms", "auth", "retry", "circuit_breaker", "operations",
                    "validate",
                    "secrets",
                ])
        // Every key the schema requires, the parser requires too.
        for key in s["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
            #expect(throws: DescriptorError.self, "\(key)") {
                try LenderFixtures.descriptor(LenderFixtures.descriptorJSON().setting(key, nil))
            }
        }
        #expect(keys(s["properties"]?["operations"]?["properties"]) == Set(LenderOperation.allCases.map(\.rawValue)))
    }

    @Test func authTypesAndTheirFields() throws {
        let defs = try schema()["$defs"]
        #expect(
            defs?["auth"]?["properties"]?["type"]?["enum"]
                == ["api_key", "oauth2_client_credentials", "workflow", "mtls"])
        #expect(keys(defs?["workflow"]?["properties"]) == ["type", "steps", "token", "ttl_s", "apply"])
        #expect(keys(defs?["mtls"]?["properties"]) == ["type", "cert_file", "key_file", "ca_file", "then"])
        #expect(
            keys(defs?["oauth2"]?["properties"])
                == ["type", "token_url", "client_id", "client_secret", "scope", "client_auth"])
        #expect(
            keys(defs?["workflow"]?["properties"]?["steps"]?["items"]?["properties"]?["request"]?["properties"])
                == ["method", "path", "headers", "body", "form"])
    }
}
