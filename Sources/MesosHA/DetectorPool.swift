import Logging
import MesosCore
import MesosWire
import Synchronization
import ZooKeeper

/// One ZooKeeper detector per `--master` URL (and session timeout) per process, shared by every
/// follower that asks for it: Mesos's `DetectorPool` (src/sched/sched.cpp, MESOS-3595). A process
/// hosting K agents or schedulers then holds one ZooKeeper session and one group watch instead of
/// K, and a leader change costs ZooKeeper one list and one read instead of K of each.
///
/// The shared detector runs while at least one of its followers is started; the last `stop` stops
/// it (and closes its session), and the next follower gets a fresh one. Each follower keeps its own
/// epoch floor (`DetectorSubscription`). `host:port` masters need no ZooKeeper: each follower gets
/// a `FixedMasterDetector` of its own, as from `MasterDetectors.make`.
public final class DetectorPool: Sendable {
    /// The process's pool.
    public static let shared = DetectorPool()

    struct Key: Hashable {
        var master: String
        var sessionTimeout: Duration
    }

    private let entries = Mutex<[Key: SharedDetector]>([:])

    public init() {}

    /// A detector for one follower, served by the pool's shared detector for `master`.
    public func detector(master: String, sessionTimeout: Duration, epochFloor: UInt64 = 0, logger: Logger) throws -> any MasterDetector {
        guard master.hasPrefix("zk://") || master.hasPrefix("file://") else {
            return try MasterDetectors.make(master: master, sessionTimeout: sessionTimeout, epochFloor: epochFloor, logger: logger)
        }
        let url = try ZooKeeperURL(parsing: master)  // refused here, as by MasterDetectors.make
        return PooledDetector(pool: self, key: Key(master: master, sessionTimeout: sessionTimeout), url: url, epochFloor: epochFloor, logger: logger)
    }

    /// Followers currently served, per shared detector (for tests and benchmarks).
    public var followerCounts: [Int] { entries.withLock { $0.values.map(\.followerCount) } }

    /// The shared detector for `key` with `follower` added (created and started if it is the first).
    fileprivate func subscribe(_ follower: PooledDetector, key: Key, url: ZooKeeperURL, logger: Logger) async -> SharedDetector {
        let (shared, created) = entries.withLock { entries -> (SharedDetector, Bool) in
            if let existing = entries[key] {
                existing.add(follower)
                return (existing, false)
            }
            let session = ZooKeeperSession(url: url, sessionTimeout: key.sessionTimeout, logger: logger)
            let new = SharedDetector(detector: ZooKeeperLeaderDetector(session: session, path: url.path, ownsSession: true, logger: logger))
            new.add(follower)
            entries[key] = new
            return (new, true)
        }
        if created { await shared.start() }
        return shared
    }

    /// Removes `follower`; the last one out stops the shared detector.
    fileprivate func unsubscribe(_ follower: PooledDetector, key: Key) async {
        let idle = entries.withLock { entries -> SharedDetector? in
            guard let shared = entries[key], shared.remove(follower) else { return nil }
            entries[key] = nil
            return shared
        }
        await idle?.detector.stop()
    }
}

/// The pool's detector for one URL and the followers it serves.
final class SharedDetector: Sendable {
    let detector: ZooKeeperLeaderDetector
    private struct State {
        /// The last leader the shared detector reported (nil: none, or nothing yet).
        var current: Leader?
        var followers: [ObjectIdentifier: PooledDetector] = [:]
    }
    /// Deliveries happen under this lock: a follower being added cannot miss a change nor hear
    /// an older leader after a newer one.
    private let state = Mutex(State())

    init(detector: ZooKeeperLeaderDetector) {
        self.detector = detector
    }

    var followerCount: Int { state.withLock { $0.followers.count } }

    func start() async {
        let changes = detector.changes
        Task.detached { [self] in
            for await leader in changes {
                state.withLock { s in
                    s.current = leader
                    for follower in s.followers.values { follower.deliver(leader) }
                }
            }
        }
        await detector.start()
    }

    /// Adds `follower` and tells it the leader known so far.
    func add(_ follower: PooledDetector) {
        state.withLock { s in
            s.followers[ObjectIdentifier(follower)] = follower
            follower.deliver(s.current)
        }
    }

    /// Removes `follower`; true if it was the last one.
    func remove(_ follower: PooledDetector) -> Bool {
        state.withLock { s in
            s.followers[ObjectIdentifier(follower)] = nil
            return s.followers.isEmpty
        }
    }
}

/// What one follower holds: its own stream of changes over the pool's shared detector.
final class PooledDetector: MasterDetector {
    let changes: AsyncStream<Leader?>
    private let sink: AsyncStream<Leader?>.Continuation
    private let pool: DetectorPool
    private let key: DetectorPool.Key
    private let url: ZooKeeperURL
    private let logger: Logger
    private struct State {
        var subscription: DetectorSubscription
        var shared: SharedDetector?
        var stopped = false
    }
    private let state: Mutex<State>

    init(pool: DetectorPool, key: DetectorPool.Key, url: ZooKeeperURL, epochFloor: UInt64, logger: Logger) {
        self.pool = pool
        self.key = key
        self.url = url
        self.logger = logger
        state = Mutex(State(subscription: DetectorSubscription(epochFloor: epochFloor)))
        (changes, sink) = AsyncStream.makeStream(of: Leader?.self)
    }

    func start() async {
        guard state.withLock({ $0.shared == nil && !$0.stopped }) else { return }
        let shared = await pool.subscribe(self, key: key, url: url, logger: logger)
        state.withLock { $0.shared = shared }
    }

    func stop() async {
        let wasStarted = state.withLock { s -> Bool in
            defer { s.stopped = true; s.shared = nil }
            return s.shared != nil && !s.stopped
        }
        sink.finish()
        if wasStarted { await pool.unsubscribe(self, key: key) }
    }

    /// A ZooKeeper detector ignores hints.
    func hint(_ hint: LeaderHintMessage, from sender: String) async {}

    /// The shared detector reports `leader`: passed on as this follower's subscription decides.
    func deliver(_ leader: Leader?) {
        state.withLock { s in
            guard !s.stopped, let report = s.subscription.deliver(leader) else { return }
            sink.yield(report.leader)
        }
    }
}
