import Crypto

/// The mutual handshake that proves `cluster_secret` before any other frame.
///
/// ```
/// client → server  Hello{client id, client challenge (32 random bytes)}
/// server → client  Challenge{server id, server challenge (32 random bytes)}
/// client → server  Proof{HMAC(secret, server challenge ‖ client id ‖ server id)}
/// server → client  Proof{HMAC(secret, client challenge ‖ server id ‖ client id)}
/// ```
/// Ids inside the MAC are each prefixed by their u16 big-endian length so that
/// no two (prover, verifier) pairs share an input. The prover's id comes first,
/// so a proof can never be reflected back as the other side's. A pure value:
/// frames in, actions out; the NIO shell sends, closes and runs the timer.
public struct WireHandshake: Sendable {
    public enum Role: Sendable, Equatable {
        /// `expectedPeer`: refuse a server that names itself otherwise.
        case client(expectedPeer: String?)
        case server
    }

    public enum Action: Sendable, Equatable {
        case none
        case send(WireEnvelope)
        /// Authenticated; send `send` first if present, then let frames through.
        case complete(peerNodeID: String, send: WireEnvelope?)
        /// Close the connection; the error is the logged reason.
        case fail(WireError)
    }

    private enum State: Sendable {
        case idle
        case clientAwaitingChallenge
        case clientAwaitingProof(serverID: String)
        case serverAwaitingHello
        case serverAwaitingProof(clientID: String, clientChallenge: [UInt8])
        case complete(peerNodeID: String)
        case failed(WireError)
    }

    public let role: Role
    public let localNodeID: String
    private let key: SymmetricKey
    private let challenge: [UInt8]
    private var state: State = .idle

    /// - Parameter challenge: 32 random bytes (injected so tests are deterministic;
    ///   `WireHandshake.randomChallenge()` in production).
    public init(role: Role, localNodeID: String, secret: [UInt8], challenge: [UInt8]) {
        precondition(challenge.count == WireBounds.nonce, "a challenge is exactly 32 bytes")
        self.role = role
        self.localNodeID = localNodeID
        self.key = SymmetricKey(data: secret)
        self.challenge = challenge
    }

    public static func randomChallenge() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<WireBounds.nonce).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    public var isComplete: Bool {
        if case .complete = state { return true }
        return false
    }

    public var peerNodeID: String? {
        if case .complete(let peer) = state { return peer }
        return nil
    }

    /// Called once the connection is up.
    public mutating func start() -> Action {
        guard case .idle = state else { return .none }
        switch role {
        case .client:
            state = .clientAwaitingChallenge
            return .send(WireEnvelope(WireHello(nodeID: localNodeID, challenge: challenge)))
        case .server:
            state = .serverAwaitingHello
            return .none
        }
    }

    /// Called for every frame that arrives before the handshake completed.
    public mutating func receive(_ envelope: WireEnvelope) -> Action {
        do {
            return try step(envelope)
        } catch {
            return fail(error)
        }
    }

    /// Called when the handshake deadline passes.
    public mutating func timedOut() -> Action {
        switch state {
        case .complete, .failed: return .none
        default: return fail(.handshakeTimeout)
        }
    }

    private mutating func fail(_ error: WireError) -> Action {
        state = .failed(error)
        return .fail(error)
    }

    private mutating func step(_ envelope: WireEnvelope) throws(WireError) -> Action {
        guard WireMessageType.handshakeTypes.contains(envelope.type), envelope.header.flags.isEmpty,
            envelope.correlationID == 0
        else {
            throw .notAuthenticated(type: envelope.type)
        }
        switch state {
        case .clientAwaitingChallenge:
            let message = try envelope.decode(as: WireChallenge.self)
            if case .client(let expected?) = role, expected != message.nodeID {
                throw .unexpectedPeer(expected: expected, got: message.nodeID)
            }
            state = .clientAwaitingProof(serverID: message.nodeID)
            let mac = Self.proof(key: key, challenge: message.challenge, prover: localNodeID, verifier: message.nodeID)
            return .send(WireEnvelope(WireProof(mac: mac)))

        case .clientAwaitingProof(let serverID):
            let message = try envelope.decode(as: WireProof.self)
            try verify(message.mac, challenge: challenge, prover: serverID, verifier: localNodeID)
            state = .complete(peerNodeID: serverID)
            return .complete(peerNodeID: serverID, send: nil)

        case .serverAwaitingHello:
            let message = try envelope.decode(as: WireHello.self)
            guard message.nodeID != localNodeID else {
                throw .invalidValue(field: "hello.node_id", reason: "peer claims this node's own id")
            }
            state = .serverAwaitingProof(clientID: message.nodeID, clientChallenge: message.challenge)
            return .send(WireEnvelope(WireChallenge(nodeID: localNodeID, challenge: challenge)))

        case .serverAwaitingProof(let clientID, let clientChallenge):
            let message = try envelope.decode(as: WireProof.self)
            try verify(message.mac, challenge: challenge, prover: clientID, verifier: localNodeID)
            state = .complete(peerNodeID: clientID)
            let mac = Self.proof(key: key, challenge: clientChallenge, prover: localNodeID, verifier: clientID)
            return .complete(peerNodeID: clientID, send: WireEnvelope(WireProof(mac: mac)))

        case .idle:
            throw .notAuthenticated(type: envelope.type)
        case .complete:
            // The shell stops calling us once complete; a stray call is harmless.
            return .none
        case .failed(let error):
            throw error
        }
    }

    private func verify(_ mac: [UInt8], challenge: [UInt8], prover: String, verifier: String) throws(WireError) {
        let input = Self.macInput(challenge: challenge, prover: prover, verifier: verifier)
        // Constant-time comparison inside swift-crypto.
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: input, using: key) else {
            throw .badProof
        }
    }

    static func proof(key: SymmetricKey, challenge: [UInt8], prover: String, verifier: String) -> [UInt8] {
        let input = macInput(challenge: challenge, prover: prover, verifier: verifier)
        return Array(HMAC<SHA256>.authenticationCode(for: input, using: key))
    }

    /// `HMAC-SHA256(secret, challenge ‖ len ‖ prover ‖ len ‖ verifier)`, for tests and docs.
    public static func proof(secret: [UInt8], challenge: [UInt8], prover: String, verifier: String) -> [UInt8] {
        proof(key: SymmetricKey(data: secret), challenge: challenge, prover: prover, verifier: verifier)
    }

    static func macInput(challenge: [UInt8], prover: String, verifier: String) -> [UInt8] {
        var writer = WireWriter(capacity: challenge.count + prover.utf8.count + verifier.utf8.count + 4)
        for byte in challenge { writer.writeU8(byte) }
        for id in [prover, verifier] {
            let utf8 = Array(id.utf8)
            writer.writeU16(UInt16(clamping: utf8.count))
            for byte in utf8 { writer.writeU8(byte) }
        }
        return writer.bytes
    }
}
