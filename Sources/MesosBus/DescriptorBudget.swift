#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The sockets the process's buses may hold, below its descriptor limit (RLIMIT_NOFILE) by a
/// reserve. A link connects only with room in the budget and otherwise tries again shortly, its
/// queue kept; accepted connections are counted (a listener cannot refuse them) but never wait.
///
/// Why: a new leader holds its 10,000 agents' connections and opens one more to each for a
/// moment (a return route's offer). At the descriptor limit its connects failed with EMFILE and
/// the answers queued on them were dropped, and libdispatch itself traps when it cannot open
/// /proc (its thread-pool monitor): the process must not get there. The reserve is for
/// everything else that opens files (ZooKeeper, logs, the registry, HTTP clients).
public final class DescriptorBudget: Sendable {
    /// The process's budget: the soft descriptor limit less max(64, 1/16 of it).
    public static let process = DescriptorBudget(limit: DescriptorBudget.processLimit())

    public let limit: Int
    private let used = Atomic<Int>(0)

    public init(limit: Int) { self.limit = max(1, limit) }

    /// Sockets counted now.
    public var inUse: Int { used.load(ordering: .relaxed) }

    /// Takes one socket's room if there is some.
    func take() -> Bool {
        var current = used.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Counts one socket whatever the budget says (an accepted connection).
    func count() { used.add(1, ordering: .relaxed) }

    func release() { used.subtract(1, ordering: .relaxed) }

    static func processLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return Int.max / 2 }
        let soft = Int(clamping: limit.rlim_cur)
        return soft - max(64, soft / 16)
    }
}
