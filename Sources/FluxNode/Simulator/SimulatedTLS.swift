import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL

/// HTTPS with client-certificate verification for a simulated mTLS lender: a TLS handler in
/// front of Hummingbird's HTTP/1 channel (what `HummingbirdTLS` does, without the extra product).
enum SimulatedTLS {
    static func server(_ tls: SimulatedTLSConfig) throws -> HTTPServerBuilder {
        let chain = try NIOSSLCertificate.fromPEMFile(tls.certFile).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: tls.keyFile, format: .pem)
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        // Verify the client's chain against the client CA; no hostname check (clients have none).
        config.certificateVerification = .noHostnameVerification
        config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(tls.clientCAFile))
        let context = try NIOSSLContext(configuration: config)
        return HTTPServerBuilder { responder in
            TLSChildChannel(base: HTTP1Channel(responder: responder), context: context)
        }
    }
}

struct TLSChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let context: NIOSSLContext

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
