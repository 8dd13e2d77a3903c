import Foundation
import NIOCore
import NIOPosix

/// The process entry point. Before anything async runs, NIO's event loops become Swift
/// concurrency's global executor, so that actors, HTTP handlers and sockets share the same two
/// threads instead of handing every request between NIO's threads and the concurrency pool (each
/// hand-over is a context switch; Docs/benchmarks.md measures what it saved).
/// `FLUX_NIO_EXECUTOR=0` keeps the default pool (for comparison).
@main
enum FluxMain {
    static func main() async {
        if ProcessInfo.processInfo.environment["FLUX_NIO_EXECUTOR"] != "0" {
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        await FluxCommand.main()
    }
}
