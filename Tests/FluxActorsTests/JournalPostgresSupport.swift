import Foundation
import Testing

@testable import FluxActors

/// The PostgreSQL database the tests use: `FLUX_TEST_POSTGRES` (a conninfo), set by
/// `eval "$(scripts/pg-test.sh start)"`. Nil when unset: the PostgreSQL tests are skipped.
let testPostgresConninfo: String? = {
    guard let value = ProcessInfo.processInfo.environment["FLUX_TEST_POSTGRES"], !value.isEmpty else { return nil }
    return value
}()

extension JournalStoreKind {
    /// PostgreSQL on `conninfo`, each fixture in a fresh schema that cleanup drops; every batch is
    /// split over the default lanes (`splitThreshold` 1). `copyThreshold`:
    /// the smallest batch the store appends with COPY (1: every batch; `Int.max`: none, every
    /// batch takes the exact path).
    static func postgres(_ conninfo: String, copyThreshold: Int, name: String) -> JournalStoreKind {
        JournalStoreKind(name: name) {
            let schema = "flux_test_\(UUID().uuidString.prefix(8).lowercased())"
            let open: @Sendable () async throws -> any JournalStore = {
                let store = try PostgresJournalStore(
                    conninfo: conninfo, schema: schema, readers: 2, copyThreshold: copyThreshold, splitThreshold: 1)
                try await store.prepare()
                return store
            }
            return JournalStoreFixture(
                store: try await open(), openAnother: open,
                cleanup: { try? await dropPostgresSchema(conninfo: conninfo, schema: schema) })
        }
    }
}

/// Runs one SQL statement on a fresh connection (test plumbing: drop a schema, kill backends).
func postgresExec(conninfo: String, _ sql: String) async throws {
    let store = try PostgresJournalStore(conninfo: conninfo, readers: 1)
    defer { Task { await store.close() } }
    try await store.execute(sql)
    await store.close()
}

func dropPostgresSchema(conninfo: String, schema: String) async throws {
    try await postgresExec(conninfo: conninfo, "DROP SCHEMA IF EXISTS \(schema) CASCADE")
}
