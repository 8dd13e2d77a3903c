import Foundation

/// Journal events as `COPY events (shard, stream, seq, type, data, writer_epoch, at, closes)
/// FROM STDIN (FORMAT binary)` data, built straight into bytes: the server parses no numbers,
/// no timestamps and no escapes (`json`'s binary form is its text, stored byte for byte).
///
/// Layout (PostgreSQL's binary COPY format): the 11-byte signature, flags and header-extension
/// length (both 0), then per row the field count (int16) and each field as an int32 length and
/// its binary value, then the trailer (int16 -1); all integers big-endian. `timestamptz` is
/// int64 microseconds since 2000-01-01 UTC.
struct PostgresBinaryCopy {
    static let signature: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00]
    /// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's timestamp epoch).
    static let postgresEpochOffset: Int64 = 946_684_800_000_000
    /// The columns, in the order the rows carry them.
    static let columns = "(shard, stream, seq, type, data, writer_epoch, at, closes)"

    /// The rows, without header or trailer (see `data(rows:)`).
    private(set) var rows: [UInt8] = []

    init(reservingEvents count: Int = 0) {
        rows.reserveCapacity(count * 330)
    }

    /// Appends one row. PostgreSQL text cannot hold a NUL byte: `.corrupt`, and nothing of the
    /// row is appended.
    mutating func append(_ event: JournalEvent) throws(JournalError) {
        guard let shard = Int32(exactly: event.shard) else {
            throw .corrupt("journal shard \(event.shard) does not fit PostgreSQL's integer")
        }
        let start = rows.count
        do throws(JournalError) {
            append16(8)
            append32(4)
            append32(UInt32(bitPattern: shard))
            try appendText(event.stream)
            append32(8)
            append64(event.seq)
            try appendText(event.type)
            try appendText(event.data)
            append32(8)
            append64(event.writerEpoch)
            append32(8)
            append64(JournalTime.microseconds(event.at) - Self.postgresEpochOffset)
            append32(1)
            rows.append(event.closesStream ? 1 : 0)
        } catch {
            rows.removeSubrange(start...)
            throw error
        }
    }

    /// COPY data: header, `rows`, trailer.
    static func data<Rows: Collection>(rows: Rows, byteCount: Int) -> [UInt8] where Rows.Element == ArraySlice<UInt8> {
        var data: [UInt8] = []
        data.reserveCapacity(signature.count + 8 + byteCount + 2)
        data.append(contentsOf: signature)
        data.append(contentsOf: [0, 0, 0, 0, 0, 0, 0, 0])  // flags, header extension length
        for slice in rows { data.append(contentsOf: slice) }
        data.append(contentsOf: [0xFF, 0xFF])  // trailer: field count -1
        return data
    }

    private mutating func appendText(_ value: String) throws(JournalError) {
        try PostgresBinaryArray.appendText(value, into: &rows)
    }

    private mutating func append16(_ v: UInt16) {
        rows.append(UInt8(truncatingIfNeeded: v >> 8))
        rows.append(UInt8(truncatingIfNeeded: v))
    }

    private mutating func append32(_ v: UInt32) {
        withUnsafeBytes(of: v.bigEndian) { rows.append(contentsOf: $0) }
    }

    private mutating func append64(_ v: Int64) {
        withUnsafeBytes(of: v.bigEndian) { rows.append(contentsOf: $0) }
    }
}
