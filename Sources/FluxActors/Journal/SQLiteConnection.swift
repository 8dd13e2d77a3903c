import CSQLite
import Foundation

/// One SQLite connection with a cache of prepared statements. Not thread-safe: its owner
/// (`SQLiteJournalStore`) only touches it from one serial queue.
final class SQLiteConnection {
    private(set) var db: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    let path: String

    init(path: String, busyTimeout: Duration) throws(JournalError) {
        self.path = path
        var handle: OpaquePointer?
        // NOMUTEX: the connection is used by one serial queue at a time, never concurrently.
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw Self.classify(rc, "cannot open SQLite journal at \(path): \(message)")
        }
        db = handle
        let ms = busyTimeout.components.seconds * 1000 + busyTimeout.components.attoseconds / 1_000_000_000_000_000
        sqlite3_busy_timeout(handle, Int32(clamping: ms))
        sqlite3_extended_result_codes(handle, 1)
    }

    deinit { close() }

    func close() {
        for (_, statement) in statements { sqlite3_finalize(statement) }
        statements.removeAll()
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    /// Runs SQL without results (several statements allowed).
    func exec(_ sql: String) throws(JournalError) {
        guard let db else { throw .unavailable("journal store is closed") }
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            sqlite3_free(errorMessage)
            throw Self.classify(rc, "\(message) (in: \(sql.prefix(60)))")
        }
    }

    /// A cached prepared statement, reset and with its bindings cleared.
    func statement(_ sql: String) throws(JournalError) -> SQLiteStatement {
        guard let db else { throw .unavailable("journal store is closed") }
        if let cached = statements[sql] {
            sqlite3_reset(cached)
            sqlite3_clear_bindings(cached)
            return SQLiteStatement(handle: cached, connection: self)
        }
        var handle: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard rc == SQLITE_OK, let handle else {
            throw Self.classify(rc, "cannot prepare statement: \(String(cString: sqlite3_errmsg(db)))")
        }
        statements[sql] = handle
        return SQLiteStatement(handle: handle, connection: self)
    }

    func error(_ rc: Int32) -> JournalError {
        let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "closed"
        return Self.classify(rc, message)
    }

    /// Maps an SQLite result code to the journal's error: damage is `.corrupt`, anything that may
    /// pass (locked, busy, I/O, disk full) is `.unavailable`.
    static func classify(_ rc: Int32, _ message: String) -> JournalError {
        switch rc & 0xFF {
        case SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_FORMAT:
            return .corrupt("SQLite: \(message)")
        default:
            return .unavailable("SQLite (code \(rc)): \(message)")
        }
    }
}

/// A borrowed prepared statement: bind, step, read columns. Valid until the next
/// `statement(_:)` call for the same SQL.
struct SQLiteStatement {
    let handle: OpaquePointer
    unowned let connection: SQLiteConnection

    private static var transient: sqlite3_destructor_type {
        unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self)
    }

    func bind(_ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(handle, index, value)
    }

    func bind(_ index: Int32, _ value: Int) {
        sqlite3_bind_int64(handle, index, Int64(value))
    }

    func bind(_ index: Int32, _ value: Bool) {
        sqlite3_bind_int64(handle, index, value ? 1 : 0)
    }

    func bind(_ index: Int32, _ value: String) {
        var value = value
        value.withUTF8 { buffer in
            _ = sqlite3_bind_text(
                handle, index, UnsafeRawPointer(buffer.baseAddress)?.assumingMemoryBound(to: CChar.self),
                Int32(buffer.count), Self.transient)
        }
    }

    /// Steps once: true when a row is available, false when done.
    @discardableResult
    func step() throws(JournalError) -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE:
            sqlite3_reset(handle)
            return false
        default:
            let error = connection.error(rc)
            sqlite3_reset(handle)
            throw error
        }
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }
}

/// Journal times are integer microseconds since 1970 UTC.
enum JournalTime {
    static func microseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    static func date(_ microseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(microseconds) / 1_000_000)
    }
}
