/// Every way a FluxWire frame, message, handshake or connection can go wrong.
///
/// Decoding never traps: each malformed input becomes one of these cases, and
/// `reason` says what was wrong in words fit for a log line (no payload bytes).
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    // Framing
    case frameTooLarge(length: Int, max: Int)
    case truncatedHeader(length: Int)
    case unsupportedVersion(UInt8)
    case unknownType(UInt16)
    case reservedFlags(UInt8)
    case badCompression(String)
    case decompressedTooLarge(length: Int, max: Int)
    // Message codec
    case truncated(field: String)
    case varintOverflow(field: String)
    case lengthOverBound(field: String, length: UInt64, max: Int)
    case countOverBound(field: String, count: UInt64, max: Int)
    case invalidUTF8(field: String)
    case invalidValue(field: String, reason: String)
    case trailingBytes(count: Int)
    case unsupportedMessageVersion(type: UInt16, version: UInt8)
    case unexpectedMessage(expected: UInt16, got: UInt16)
    // Handshake
    case notAuthenticated(type: UInt16)
    case badProof
    case handshakeTimeout
    case unexpectedPeer(expected: String, got: String)
    // Connection
    case askTimeout(type: UInt16)
    case connectionClosed(String)
    case peerUnavailable(String)
    case tooManyInFlight(max: Int)
    case remote(code: String, message: String)

    public var reason: String {
        switch self {
        case .frameTooLarge(let length, let max):
            return "frame of \(length) bytes exceeds the maximum of \(max)"
        case .truncatedHeader(let length):
            return "frame of \(length) bytes is shorter than the \(WireFrameHeader.size)-byte header"
        case .unsupportedVersion(let byte):
            return "unsupported magic/protocol version byte 0x\(String(byte, radix: 16))"
        case .unknownType(let type):
            return "unknown message type 0x\(String(type, radix: 16))"
        case .reservedFlags(let flags):
            return "reserved flag bits set (flags 0x\(String(flags, radix: 16)))"
        case .badCompression(let why):
            return "bad LZ4 payload: \(why)"
        case .decompressedTooLarge(let length, let max):
            return "decompressed size \(length) exceeds the maximum of \(max)"
        case .truncated(let field):
            return "payload ends inside \(field)"
        case .varintOverflow(let field):
            return "varint \(field) overflows 64 bits"
        case .lengthOverBound(let field, let length, let max):
            return "\(field) length \(length) exceeds the bound \(max)"
        case .countOverBound(let field, let count, let max):
            return "\(field) count \(count) exceeds the bound \(max)"
        case .invalidUTF8(let field):
            return "\(field) is not valid UTF-8"
        case .invalidValue(let field, let why):
            return "\(field): \(why)"
        case .trailingBytes(let count):
            return "\(count) trailing bytes after the message"
        case .unsupportedMessageVersion(let type, let version):
            return "message type 0x\(String(type, radix: 16)) version \(version) is not supported"
        case .unexpectedMessage(let expected, let got):
            return "expected message type 0x\(String(expected, radix: 16)), got 0x\(String(got, radix: 16))"
        case .notAuthenticated(let type):
            return "frame of type 0x\(String(type, radix: 16)) before the handshake completed"
        case .badProof:
            return "handshake proof does not match the cluster secret"
        case .handshakeTimeout:
            return "handshake did not complete in time"
        case .unexpectedPeer(let expected, let got):
            return "expected peer \(expected), it says it is \(got)"
        case .askTimeout(let type):
            return "no reply to message type 0x\(String(type, radix: 16)) in time"
        case .connectionClosed(let why):
            return "connection closed: \(why)"
        case .peerUnavailable(let why):
            return "peer unavailable: \(why)"
        case .tooManyInFlight(let max):
            return "more than \(max) requests in flight on one connection"
        case .remote(let code, let message):
            return "peer answered with error \(code): \(message)"
        }
    }

    public var description: String { reason }
}
