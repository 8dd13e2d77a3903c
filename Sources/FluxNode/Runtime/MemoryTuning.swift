import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// glibc malloc settings for a long-running server (Docs/configuration.md, "Memory").
///
/// With glibc's defaults the heap's top is given back to the kernel whenever 128 KiB of it is
/// free, and blocks over a (moving) threshold come from their own mmap: under load the node
/// then keeps faulting fresh zeroed pages in for memory it had a moment before. Measured at
/// 2,000 checkouts/s (Docs/benchmarks.md, "Checkouts: session 7"): about 5 % less node CPU per
/// checkout with the settings below. The price is up to `trimThreshold` of freed heap kept by
/// the process instead of returned.
enum MemoryTuning {
    /// Free heap kept at the top before any is returned to the kernel.
    static let trimThreshold: Int32 = 256 << 20
    /// Extra heap asked for whenever the heap grows.
    static let topPad: Int32 = 64 << 20
    /// Blocks from this size up get their own mmap (fixed: no dynamic threshold).
    static let mmapThreshold: Int32 = 32 << 20

    /// Applies the settings, unless the operator tuned malloc through the environment.
    static func apply(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard shouldApply(environment: environment) else { return }
        #if canImport(Glibc)
            // `mallopt` is in <malloc.h>, which the Glibc module does not import: it is looked up
            // by name and called through its C signature.
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
            typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
            let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
            _ = mallopt(Self.mTrimThreshold, trimThreshold)
            _ = mallopt(Self.mTopPad, topPad)
            _ = mallopt(Self.mMmapThreshold, mmapThreshold)
        #endif
    }

    // The parameter numbers of <malloc.h>.
    static let mTrimThreshold: Int32 = -1
    static let mTopPad: Int32 = -2
    static let mMmapThreshold: Int32 = -3

    /// False when `GLIBC_TUNABLES` names a malloc tunable or a `MALLOC_…_` variable is set: the
    /// operator's choice stands.
    static func shouldApply(environment: [String: String]) -> Bool {
        if environment["GLIBC_TUNABLES"]?.contains("glibc.malloc.") == true { return false }
        return !environment.keys.contains { $0.hasPrefix("MALLOC_") }
    }
}
