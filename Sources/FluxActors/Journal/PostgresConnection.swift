import CLibPQ
import Foundation

/// One libpq connection. Not thread-safe: its owner (a `PostgresWorker`) only touches it from
/// its own thread. Every call blocks that thread, never a Swift concurrency or NIO thread.
final class PostgresConnection {
    private var handle: OpaquePointer?
    /// The SQLSTATE of the last failed statement ("" when the failure had none).
    private(set) var lastErrorState = ""

    /// Connects with `conninfo` (a libpq keyword/value string or a `postgres://` URI). Our
    /// defaults (connect timeout, keepalives, application name) come first, so anything the
    /// setting says wins; `sslmode` and the other TLS settings pass through to libpq unchanged.
    init(conninfo: String) throws(JournalError) {
        let pairs: [(String, String)] = [
            ("connect_timeout", "5"),
            ("keepalives", "1"),
            ("keepalives_idle", "10"),
            ("keepalives_interval", "5"),
            ("keepalives_count", "3"),
            ("application_name", "flux-journal"),
            ("dbname", conninfo),
        ]
        let keywords = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer {
            keywords.forEach { free($0) }
            values.forEach { free($0) }
        }
        var keywordPointers: [UnsafePointer<CChar>?] = keywords.map { UnsafePointer($0) } + [nil]
        var valuePointers: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        // expand_dbname = 1: the `dbname` value is itself parsed as a conninfo or URI.
        let connection = keywordPointers.withUnsafeMutableBufferPointer { k in
            valuePointers.withUnsafeMutableBufferPointer { v in
                PQconnectdbParams(k.baseAddress, v.baseAddress, 1)
            }
        }
        guard let connection else { throw .unavailable("PostgreSQL: out of memory while connecting") }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.message(PQerrorMessage(connection))
            PQfinish(connection)
            // A bad conninfo is a configuration error; anything else (refused, timeout, auth
            // while the server restarts, too many clients) may pass.
            if message.contains("invalid connection option") || message.contains("invalid URI")
                || message.contains("missing \"=\"") || message.contains("invalid sslmode")
            {
                throw .invalidConfiguration("PostgreSQL journal: \(message)")
            }
            throw .unavailable("PostgreSQL: cannot connect: \(message)")
        }
        handle = connection
    }

    deinit { close() }

    func close() {
        if let handle { PQfinish(handle) }
        handle = nil
    }

    /// False once the connection is lost: the owner drops it and connects again.
    var isUsable: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// Runs SQL without parameters (several statements allowed); returns the last result.
    @discardableResult
    func exec(_ sql: String) throws(JournalError) -> PostgresResult {
        guard let handle else { throw .unavailable("PostgreSQL: connection closed") }
        return try check(PQexec(handle, sql), sql)
    }

    /// Runs one statement with text parameters (`$1`, `$2`, …; nil is SQL NULL).
    @discardableResult
    func exec(_ sql: String, _ parameters: [String?]) throws(JournalError) -> PostgresResult {
        guard let handle else { throw .unavailable("PostgreSQL: connection closed") }
        for parameter in parameters where parameter?.utf8.contains(0) == true {
            throw .corrupt("PostgreSQL cannot store a NUL byte (in a parameter of: \(sql.prefix(60)))")
        }
        let copies = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { copies.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
        let result = pointers.withUnsafeBufferPointer { buffer in
            PQexecParams(handle, sql, Int32(parameters.count), nil, buffer.baseAddress, nil, nil, 0)
        }
        return try check(result, sql)
    }

    /// Runs one statement with parameters in binary format (`PostgresBinaryArray`s): no text
    /// to format on this side or to parse on the server's.
    @discardableResult
    func exec(_ sql: String, binary parameters: [PostgresBinaryArray]) throws(JournalError) -> PostgresResult {
        guard let handle else { throw .unavailable("PostgreSQL: connection closed") }
        let types: [Oid] = parameters.map { Oid($0.element.arrayOID) }
        let formats = [Int32](repeating: 1, count: parameters.count)
        var lengths: [Int32] = []
        var offsets: [Int] = []
        var all: [UInt8] = []
        all.reserveCapacity(parameters.reduce(0) { $0 + $1.bytes.count })
        for parameter in parameters {
            guard parameter.bytes.count <= Int(Int32.max) else { throw .corrupt("PostgreSQL: a parameter over 2 GB") }
            offsets.append(all.count)
            lengths.append(Int32(parameter.bytes.count))
            all.append(contentsOf: parameter.bytes)
        }
        let result = all.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { base in
                let values: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
                return PQexecParams(handle, sql, Int32(parameters.count), types, values, lengths, formats, 0)
            }
        }
        return try check(result, sql)
    }

    /// `COPY … FROM STDIN` with `data` in the format `sql` names (text unless it says binary).
    func copyIn(_ sql: String, data: [UInt8]) throws(JournalError) {
        guard let handle else { throw .unavailable("PostgreSQL: connection closed") }
        let started = PQexec(handle, sql)
        guard PQresultStatus(started) == PGRES_COPY_IN else {
            _ = try check(started, sql)
            throw .unavailable("PostgreSQL: COPY did not start")
        }
        PQclear(started)
        let sent = data.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                PQputCopyData(handle, $0, Int32(buffer.count))
            }
        }
        guard sent == 1, PQputCopyEnd(handle, nil) == 1 else {
            throw .unavailable("PostgreSQL: COPY failed: \(Self.message(PQerrorMessage(handle)))")
        }
        var last: PostgresResult?
        while let next = PQgetResult(handle) { last = try check(next, sql) }
        _ = last
    }

    /// Runs `script` in one round trip (the simple query protocol: several statements, exactly
    /// one of them `COPY … FROM STDIN`, e.g. `BEGIN; SELECT …; COPY …; COMMIT`): sends it, runs
    /// `meanwhile` while the server works, hands the result of the last query before the COPY to
    /// `rows` and sends what `rows` returns as the COPY's data, then reads the remaining results.
    /// Returns the result handed to `rows`.
    ///
    /// On a failure (a statement fails, `meanwhile` or `rows` throws, the connection drops) it
    /// still reads every result, then throws the first error; the server skipped the statements
    /// after the failed one, so a transaction the script opened is left aborted: the caller rolls
    /// it back. `lastErrorState` holds the failed statement's SQLSTATE.
    @discardableResult
    func copyScript(
        _ script: String, meanwhile: () throws(JournalError) -> Void,
        rows: (PostgresResult?) throws(JournalError) -> [UInt8]
    ) throws(JournalError) -> PostgresResult? {
        guard let handle else { throw .unavailable("PostgreSQL: connection closed") }
        lastErrorState = ""
        guard PQsendQuery(handle, script) == 1 else {
            throw .unavailable("PostgreSQL: cannot send: \(Self.message(PQerrorMessage(handle)))")
        }
        var failure: JournalError?
        do throws(JournalError) { try meanwhile() } catch { failure = error }
        var beforeCopy: PostgresResult?
        var copied = false
        while let result = PQgetResult(handle) {
            switch PQresultStatus(result) {
            case PGRES_TUPLES_OK:
                beforeCopy = PostgresResult(result)
            case PGRES_COMMAND_OK:
                PQclear(result)
            case PGRES_COPY_IN:
                PQclear(result)
                copied = true
                var data: [UInt8] = []
                if failure == nil {
                    do throws(JournalError) { data = try rows(beforeCopy) } catch { failure = error }
                }
                if failure != nil {
                    // Makes the server fail the COPY (and skip the rest of the script).
                    _ = PQputCopyEnd(handle, "cancelled by the client")
                } else if !Self.putCopyData(handle, data) || PQputCopyEnd(handle, nil) != 1 {
                    failure = .unavailable("PostgreSQL: COPY failed: \(Self.message(PQerrorMessage(handle)))")
                }
            default:
                let error = self.failure(result)
                if failure == nil { failure = error }
            }
        }
        if let failure { throw failure }
        guard copied else { throw .unavailable("PostgreSQL: the script did not start a COPY") }
        return beforeCopy
    }

    /// Sends COPY data in pieces (libpq takes at most Int32.max bytes per call).
    private static func putCopyData(_ handle: OpaquePointer, _ data: [UInt8]) -> Bool {
        data.withUnsafeBufferPointer { buffer in
            guard let address = buffer.baseAddress else { return true }
            return address.withMemoryRebound(to: CChar.self, capacity: buffer.count) { base in
                var offset = 0
                while offset < buffer.count {
                    let length = min(buffer.count - offset, 1 << 20)
                    guard PQputCopyData(handle, base + offset, Int32(length)) == 1 else { return false }
                    offset += length
                }
                return true
            }
        }
    }

    /// Wraps a result, turning a failed one into the journal's error.
    private func check(_ result: OpaquePointer?, _ sql: String) throws(JournalError) -> PostgresResult {
        lastErrorState = ""
        guard let result else {
            throw .unavailable("PostgreSQL: \(handle.map { Self.message(PQerrorMessage($0)) } ?? "no connection")")
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_COPY_IN:
            return PostgresResult(result)
        default:
            throw failure(result)
        }
    }

    /// The journal's error for a failed result (which it frees); records its SQLSTATE.
    private func failure(_ result: OpaquePointer) -> JournalError {
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
        let message = Self.message(PQresultErrorMessage(result))
        PQclear(result)
        lastErrorState = state
        return PostgresError(sqlState: state, message: message, connectionLost: !isUsable).journalError
    }

    static func message(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "unknown error" }
        return String(cString: pointer).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A server error, classified for the journal.
struct PostgresError: Error {
    var sqlState: String
    var message: String
    var connectionLost: Bool

    /// Connection loss, shutdown, overload, timeouts, deadlocks and serialisation failures may
    /// pass: `.unavailable` (the write-behind journal retries). Bad data is `.corrupt`.
    var journalError: JournalError {
        let text = "PostgreSQL \(sqlState.isEmpty ? "" : "[\(sqlState)] ")\(message)"
        if connectionLost || sqlState.isEmpty { return .unavailable(text) }
        switch sqlState.prefix(2) {
        case "08", "53", "57", "58", "40", "55", "HV", "XX": return .unavailable(text)
        case "22": return .corrupt(text)
        case "3D", "28", "42":
            // Missing database, bad password, missing table/permission: fixable by the operator
            // without restarting, so retrying makes sense.
            return .unavailable(text)
        default: return .unavailable(text)
        }
    }
}

/// A query result in text format. Owns the libpq result; frees it on deinit.
final class PostgresResult {
    private let handle: OpaquePointer

    init(_ handle: OpaquePointer) { self.handle = handle }
    deinit { PQclear(handle) }

    var rows: Int { Int(PQntuples(handle)) }

    func isNull(_ row: Int, _ column: Int) -> Bool { PQgetisnull(handle, Int32(row), Int32(column)) == 1 }

    func text(_ row: Int, _ column: Int) -> String {
        guard let value = PQgetvalue(handle, Int32(row), Int32(column)) else { return "" }
        let count = Int(PQgetlength(handle, Int32(row), Int32(column)))
        return value.withMemoryRebound(to: UInt8.self, capacity: count) {
            String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
        }
    }

    func int64(_ row: Int, _ column: Int) throws(JournalError) -> Int64 {
        guard let value = PQgetvalue(handle, Int32(row), Int32(column)), let number = Int64(String(cString: value))
        else { throw .corrupt("PostgreSQL: expected an integer in row \(row) column \(column)") }
        return number
    }

    func bool(_ row: Int, _ column: Int) -> Bool {
        guard let value = PQgetvalue(handle, Int32(row), Int32(column)) else { return false }
        return value.pointee == CChar(UInt8(ascii: "t"))
    }
}

/// Reading libpq connection settings without connecting.
public enum PostgresConninfo {
    /// The settings libpq reads from `conninfo` (keyword/value or URI), only those given.
    /// Throws `.invalidConfiguration` with libpq's message when it cannot parse it.
    public static func parse(_ conninfo: String) throws(JournalError) -> [String: String] {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &errorMessage) else {
            let message = errorMessage.map { String(cString: $0) } ?? "cannot parse it"
            if let errorMessage { PQfreemem(errorMessage) }
            throw .invalidConfiguration(
                "PostgreSQL journal setting: \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        defer { PQconninfoFree(options) }
        var settings: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { settings[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        return settings
    }

    /// `conninfo` with any password replaced, for logs.
    public static func redacted(_ conninfo: String) -> String {
        guard let settings = try? parse(conninfo) else { return "(unparsable PostgreSQL setting)" }
        return settings.keys.sorted().filter { $0 != "password" }.map { "\($0)=\(settings[$0]!)" }.joined(
            separator: " ")
    }
}
