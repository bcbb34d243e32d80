import Foundation

/// glibc's malloc thresholds for a process that moves messages: fixed instead of glibc's dynamic
/// ones, applied once by the first bus of the process.
///
/// By default glibc returns the top of a heap to the kernel once more than 128 KiB there is free
/// (the threshold moves with the sizes it has seen). A stream of 64 KiB messages then frees and
/// allocates about that much per message: Benchmarks/bus-bench.sh `--only large` measured 16 page
/// faults and 72 us of CPU per 64 KiB message, and 20k messages/s; with these thresholds 0 faults,
/// 32 us and 47-49k messages/s (the same as after a warm-up with small messages, where glibc's
/// thresholds had happened to grow). At most `trimThreshold` free bytes per heap are kept from
/// the kernel. An operator's own GLIBC_TUNABLES or MALLOC_*_ settings win.
enum MemoryPolicy {
    /// Allocations below this come from the heaps and are reused (not mmap'd and unmapped each time).
    static let mmapThreshold: Int32 = 1 << 20
    /// Free space at a heap's top up to this stays mapped.
    static let trimThreshold: Int32 = 2 << 20

    /// Whether the thresholds were set (false: the environment sets malloc's own, or not glibc).
    static let applied: Bool = {
        #if canImport(Glibc)
        let env = ProcessInfo.processInfo.environment.keys
        if env.contains("GLIBC_TUNABLES") || env.contains(where: { $0.hasPrefix("MALLOC_") }) { return false }
        // malloc.h is not in the Glibc module: mallopt by name, with its (stable) parameter numbers.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let mTrimThreshold: Int32 = -1, mMmapThreshold: Int32 = -3
        return mallopt(mMmapThreshold, mmapThreshold) == 1 && mallopt(mTrimThreshold, trimThreshold) == 1
        #else
        return false
        #endif
    }()
}

