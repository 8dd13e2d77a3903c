import Foundation

/// Opens the journal store named by a `journal` setting (CONTRACT section 1):
/// - `sqlite:PATH` — the embedded SQLite journal; a relative PATH is resolved against `directory`
///   and missing parent folders are created. Several nodes on one machine may share the file.
/// - `postgres://…`, `postgresql://…` or a libpq conninfo (`host=… dbname=…`) — PostgreSQL
///   (`PostgresJournalStore`; TLS settings such as `sslmode` pass to libpq unchanged). Connects on
///   first use, so a database that is down does not stop the node from starting.
///
/// The store is opened but not prepared: call `prepare()` before using it.
public func makeJournalStore(_ url: String, relativeTo directory: URL) throws(JournalError) -> any JournalStore {
    let setting = url.trimmingCharacters(in: .whitespaces)
    guard setting.utf8.count <= 4096 else { throw .invalidConfiguration("journal setting is longer than 4096 bytes") }
    if setting.hasPrefix("sqlite:") {
        var path = String(setting.dropFirst("sqlite:".count))
        // Accept the URL spelling `sqlite:///abs/path` and `sqlite://rel/path` too.
        if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
        guard !path.isEmpty else {
            throw .invalidConfiguration("journal `sqlite:` needs a file path, e.g. sqlite:.flux/journal.db")
        }
        guard !path.contains("\0") else { throw .invalidConfiguration("journal path contains a NUL byte") }
        let file =
            path.hasPrefix("/")
            ? URL(fileURLWithPath: path) : directory.appendingPathComponent(path)
        let parent = file.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw .invalidConfiguration(
                "cannot create the journal folder \(parent.path): \(error.localizedDescription)")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: file.path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw .invalidConfiguration("journal path \(file.path) is a folder, not a file")
        }
        return try SQLiteJournalStore(path: file.standardizedFileURL.path)
    }
    if setting.hasPrefix("postgres://") || setting.hasPrefix("postgresql://") || isConninfo(setting) {
        return try PostgresJournalStore(conninfo: setting)
    }
    throw .invalidConfiguration(
        "journal must be `sqlite:PATH` or a PostgreSQL URL (`postgres://…`) / conninfo; got `\(setting.prefix(40))`")
}

/// A libpq keyword/value conninfo: `key=value` pairs separated by spaces.
private func isConninfo(_ setting: String) -> Bool {
    guard let first = setting.split(separator: " ").first, let equals = first.firstIndex(of: "=") else { return false }
    let key = first[..<equals]
    return !key.isEmpty && key.allSatisfy { $0.isLetter || $0 == "_" }
}
