import AsyncHTTPClient
import Foundation
import NIOSSL

/// The client identity of an `mtls` lender: PEM text read at descriptor load (`cert_file`,
/// `key_file`, optional `ca_file`, relative to the descriptor's folder), so a descriptor is
/// self-contained once compiled and a bad file is refused at load with the field's path.
public struct MTLSIdentity: Sendable, Equatable {
    /// As written in the descriptor (for messages; the contents are what count).
    public var certFile: String
    public var keyFile: String
    public var caFile: String?
    var certificatePEM: [UInt8]
    var keyPEM: [UInt8]
    /// Trust roots for the lender's server certificate; nil: the system's.
    var caPEM: [UInt8]?

    /// Which field is wrong, if any: the certificate chain, the key or the CA must each be PEM
    /// that BoringSSL reads.
    func problem() -> (field: String, message: String)? {
        do {
            guard !(try NIOSSLCertificate.fromPEMBytes(certificatePEM)).isEmpty else {
                return ("cert_file", "holds no PEM certificate")
            }
        } catch {
            return ("cert_file", "is not a PEM certificate")
        }
        do {
            _ = try NIOSSLPrivateKey(bytes: keyPEM, format: .pem)
        } catch {
            return ("key_file", "is not a PEM private key (an encrypted key is not supported)")
        }
        if let caPEM {
            do {
                guard !(try NIOSSLCertificate.fromPEMBytes(caPEM)).isEmpty else {
                    return ("ca_file", "holds no PEM certificate")
                }
            } catch {
                return ("ca_file", "is not a PEM certificate")
            }
        }
        return nil
    }

    /// The TLS client configuration: this identity, and the CA (or the system's roots).
    public func tlsConfiguration() throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificatePEM).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: keyPEM, format: .pem))
        if let caPEM {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(caPEM))
        }
        return tls
    }
}

extension AsyncHTTPClientTransport {
    /// A transport of its own for one mTLS lender: the client certificate is part of the
    /// connection, so the lender gets an `HTTPClient` (and pool) that no other lender shares.
    /// The owner must `shutdown()` it.
    public convenience init(identity: MTLSIdentity, connectionsPerHost: Int = 256) throws {
        try self.init(connectionsPerHost: connectionsPerHost, tls: identity.tlsConfiguration())
    }
}
