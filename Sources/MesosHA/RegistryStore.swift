import Foundation
import MesosCore
import MesosDaemon
import MesosWire
import ZooKeeper

/// Where the leading master keeps the registry (admitted and removed agents, removed frameworks,
/// the highest epoch ever led). ZooKeeper with `--zk`; the work directory when standalone.
public protocol RegistryStore: Sendable {
    /// The registry (nil: none yet); remembers what the following `store`s must be based on.
    func load() async throws -> RegistryState?
    /// The highest epoch ever led, as far as this store knows (0: none), read before election.
    func highestEpochLed() async -> UInt64
    /// Writes `change`, fenced by `fence` (the writer's leader znode) where the store can fence.
    func store(_ change: RegistryChange, fence: String?) async -> RegistryStoreOutcome
    /// A standby starts keeping a copy of the registry current, so that its `load` when elected
    /// reads only what changed since (no-op where reading is cheap).
    func warm() async
    /// How the last `load` read the registry (nil: not known to this store).
    func lastLoad() async -> RegistryLoadReport?
}

extension RegistryStore {
    public func warm() async {}
    public func lastLoad() async -> RegistryLoadReport? { nil }
}

/// How a load read the registry.
public struct RegistryLoadReport: Sendable, Hashable {
    /// Znodes read (or listed) by the load itself.
    public var reads: Int
    /// Whether a warm copy was current before the load began (false: the load read it all).
    public var warm: Bool
}

public enum RegistryStoreOutcome: Sendable, Hashable {
    case stored
    /// `fenced`: another master leads; otherwise the store is unavailable.
    case failed(fenced: Bool, reason: String)
}

/// The registry in ZooKeeper as `RegistryLayout` lays it out (a meta znode and one znode per
/// agent); every write is one or more `multi`s that also check the writer's leader znode (a
/// deposed master cannot write), each run by `RegistryWriteCore`. A load reads through a
/// `RegistryWarmCopy` (every znode read with a watch, `loadConcurrency` requests in flight): a
/// standby's `warm` keeps the copy current, so the load of an elected standby re-reads only what
/// changed. A format-1 registry's migration is left to the first write.
public actor ZooKeeperRegistryStore: RegistryStore {
    private let session: ZooKeeperSession
    private var writer: RegistryWriter
    /// Reads in flight while loading the agents' znodes.
    public let loadConcurrency: Int

    /// The copy of the registry's znodes that `load` reads through, kept current by `warm`.
    private var copy = RegistryWarmCopy()
    /// The rounds over `copy` in flight (a load joins a standby's before its own).
    private var settling: Task<Int, any Error>?
    private var keepingWarm: Task<Void, Never>?
    /// The least time between a standby's rounds over its copy (each re-lists every bucket that
    /// changed, and 10,000 agents registering change all 64 many times a second).
    static let warmRoundInterval: Duration = .seconds(1)
    /// Whether `warm` had read the whole copy once (then a load re-reads only what changed since).
    private var copyRead = false
    private var loaded = false
    private var report: RegistryLoadReport?

    public init(session: ZooKeeperSession, groupPath: String, loadConcurrency: Int = 512) {
        self.session = session
        self.loadConcurrency = max(1, loadConcurrency)
        writer = RegistryWriter(layout: RegistryLayout(groupPath: groupPath))
    }

    public var layout: RegistryLayout { writer.layout }

    public func load() async throws -> RegistryState? {
        let warm = copyRead
        keepingWarm?.cancel()
        keepingWarm = nil
        loaded = true
        // A barrier: its reply comes after the event of every watch on a change made before it.
        _ = try await session.exists(writer.layout.metaPath)
        let reads = try await settle()
        report = RegistryLoadReport(reads: reads, warm: warm)
        let agents = copy.listedAgents(writer.layout)
        let meta = copy.meta.flatMap { m in m.data.map { ($0, m.version) } }
        let root = copy.root?.data
        // A leader writes the registry itself and keeps no copy.
        copy = RegistryWarmCopy()
        copyRead = false
        return try writer.loaded(root: root, meta: meta, agents: agents)
    }

    public func lastLoad() async -> RegistryLoadReport? { report }

    /// Whether `warm` has read the whole registry once (and keeps its copy current since).
    public var isWarm: Bool { copyRead }

    public func warm() async {
        guard keepingWarm == nil, !loaded else { return }
        keepingWarm = Task { await self.keepWarm() }
    }

    /// Until this master loads the registry to lead: a round over the copy, then another after
    /// the meta's next change (every registry write changes the meta, in the same `multi`).
    private func keepWarm() async {
        while !Task.isCancelled {
            do {
                _ = try await settle()
                if !loaded { copyRead = true }
            } catch {
                // ZooKeeper unavailable: the next round re-reads whatever is stale by then.
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            guard let meta = copy.meta?.watch else { continue }
            guard (try? await meta.event()) != nil else { return }
            // Writes come in bursts (10,000 agents registering): one round a second at most. A
            // load re-reads whatever changed since the last round anyway.
            try? await Task.sleep(for: Self.warmRoundInterval)
        }
    }

    /// Rounds over the copy until one reads nothing; the number of znodes read.
    private func settle() async throws -> Int {
        if let running = settling { _ = try? await running.value }
        let task = Task { try await self.rounds() }
        settling = task
        defer { if settling == task { settling = nil } }
        return try await task.value
    }

    private func rounds() async throws -> Int {
        var total = 0
        while true {
            let reads = try await round()
            total += reads
            if reads == 0 { return total }
        }
    }

    /// Re-reads, with watches, every entry of the copy that was never read or changed since: the
    /// root and meta, then the buckets' lists, then the agents they list. Returns the reads.
    private func round() async throws -> Int {
        let layout = writer.layout, session = session
        var reads = 0
        if RegistryWarmCopy.isStale(copy.root?.watch) {
            copy.root = try await Self.watchedNode(session, layout.root)
            reads += 1
        }
        if RegistryWarmCopy.isStale(copy.meta?.watch) {
            copy.meta = try await Self.watchedNode(session, layout.metaPath)
            reads += 1
        }
        let buckets = layout.bucketPaths.filter { RegistryWarmCopy.isStale(copy.buckets[$0]?.watch) }
        for (path, bucket) in try await Self.concurrently(buckets, limit: loadConcurrency, { try await Self.watchedBucket(session, $0) }) {
            copy.listed(bucket, at: path)
        }
        let agents = copy.staleAgents(layout)
        for (path, agent) in try await Self.concurrently(agents, limit: loadConcurrency, { try await Self.watchedAgent(session, $0) }) {
            // Gone: its bucket's watch has fired too, and the next round lists the bucket again.
            copy.agents[path] = agent
        }
        return reads + buckets.count + agents.count
    }

    /// `path`'s data with a watch; a missing znode gets an exists watch. nil: created while being
    /// looked at (read again next round).
    private static func watchedNode(_ session: ZooKeeperSession, _ path: String) async throws -> RegistryWarmCopy.Node? {
        do {
            let (data, stat, watch) = try await session.watchData(path)
            return .init(data: data, version: stat.version, watch: watch)
        } catch let e as ZooKeeperError where e.code == .noNode {
            let (stat, watch) = try await session.watchExists(path)
            return stat == nil ? .init(data: nil, version: -1, watch: watch) : nil
        }
    }

    private static func watchedBucket(_ session: ZooKeeperSession, _ path: String) async throws -> RegistryWarmCopy.Bucket? {
        do {
            let (names, watch) = try await session.watchChildren(path)
            return .init(names: names, watch: watch)
        } catch let e as ZooKeeperError where e.code == .noNode {
            let (stat, watch) = try await session.watchExists(path)
            return stat == nil ? .init(names: [], watch: watch) : nil
        }
    }

    private static func watchedAgent(_ session: ZooKeeperSession, _ path: String) async throws -> RegistryWarmCopy.Agent? {
        do {
            let (data, _, watch) = try await session.watchData(path)
            return .init(data: data, watch: watch)
        } catch let e as ZooKeeperError where e.code == .noNode {
            return nil
        }
    }

    public func highestEpochLed() async -> UInt64 {
        let root = (try? await Self.data(session, writer.layout.root)) ?? nil
        let meta = (try? await Self.data(session, writer.layout.metaPath)) ?? nil
        return RegistryLayout.highestEpoch(root: root?.data, meta: meta?.data)
    }

    public func store(_ change: RegistryChange, fence: String?) async -> RegistryStoreOutcome {
        guard let fence else { return .failed(fenced: true, reason: "a registry write without a leader znode") }
        for chunk in writer.plan(change) {
            if case .failed(let fenced, let reason) = await write(chunk, fence: fence) { return .failed(fenced: fenced, reason: reason) }
        }
        return .stored
    }

    private func write(_ chunk: RegistryWriter.Chunk, fence: String) async -> RegistryStoreOutcome {
        let metaPath = writer.layout.metaPath
        var core = RegistryWriteCore(bytes: chunk.metaBytes, version: writer.metaVersion)
        var effects = core.start()
        while let effect = effects.first {
            effects.removeFirst()
            switch effect {
            case .multi(let v):
                let ops: [MultiOperation] = [.check(fence, version: ZooKeeperSession.anyVersion)] + writer.operations(chunk, metaVersion: v).map(Self.operation)
                do {
                    let results = try await session.multi(ops)
                    // The meta is the first operation after the check when it exists; created, it is at version 0.
                    let committed: Int32 = if v != nil, results.count > 1, case .dataSet(let stat) = results[1] { stat.version } else { 0 }
                    effects += core.handle(.committed(version: committed))
                } catch {
                    effects += core.handle(.failed(Self.failure(error, fence: fence)))
                }
            case .readBack:
                do {
                    let found = try await Self.data(session, metaPath)
                    let fenceExists = try await session.exists(fence) != nil
                    effects += core.handle(.readBack(bytes: found?.data, version: found?.stat.version, fenceExists: fenceExists))
                } catch {
                    effects += core.handle(.readBackFailed(Self.failure(error, fence: fence)))
                }
            case .retry(let delay):
                try? await Task.sleep(for: delay)
                effects += core.handle(.retryDue)
            case .stored(let v):
                writer.committed(chunk, metaVersion: v)
                return .stored
            case .failed(let fenced, let reason):
                return .failed(fenced: fenced, reason: reason)
            }
        }
        return .failed(fenced: false, reason: "registry write ended without an outcome")
    }

    private static func operation(_ op: RegistryOperation) -> MultiOperation {
        switch op {
        case .create(let path, let data): .create(path, data: data)
        case .setData(let path, let data, let version): .setData(path, data: data, version: version ?? ZooKeeperSession.anyVersion)
        case .delete(let path): .delete(path)
        }
    }

    private static func data(_ session: ZooKeeperSession, _ path: String) async throws -> (data: [UInt8], stat: Stat)? {
        do { return try await session.get(path) } catch let e as ZooKeeperError where e.code == .noNode { return nil }
    }

    /// `read` of every path, with at most `limit` in flight.
    private static func concurrently<T: Sendable>(
        _ paths: [String], limit: Int, _ read: @escaping @Sendable (String) async throws -> T
    ) async throws -> [(String, T)] {
        try await withThrowingTaskGroup(of: (String, T).self) { group in
            var next = paths.makeIterator()
            for _ in 0..<limit {
                guard let path = next.next() else { break }
                group.addTask { (path, try await read(path)) }
            }
            var out: [(String, T)] = []
            out.reserveCapacity(paths.count)
            while let result = try await group.next() {
                out.append(result)
                if let path = next.next() { group.addTask { (path, try await read(path)) } }
            }
            return out
        }
    }

    private static func failure(_ error: any Error, fence: String) -> RegistryWriteCore.Failure {
        guard let z = error as? ZooKeeperError else { return .other("\(error)") }
        switch z.code {
        case .connectionLoss, .operationTimeout: return .connectionLoss
        case .noNode where z.path == fence: return .fenceGone
        // Not what this store knew: another writer, or our own commit whose reply was lost.
        case .badVersion, .nodeExists, .noNode: return .versionConflict
        default: return .other("\(z)")
        }
    }
}

/// A standalone master's registry: a `RegistrySnapshot` in `registry-v2.pb` in its work directory
/// (format 1's `registry.pb` is read when there is none), written atomically (temporary file,
/// fsync, rename), so a crash mid-write leaves the previous registry.
public actor FileRegistryStore: RegistryStore {
    public let directory: String
    private var state = RegistryState()

    public init(directory: String) { self.directory = directory }

    private var path: String { directory + "/registry-v2.pb" }
    private var format1Path: String { directory + "/registry.pb" }

    public func load() async throws -> RegistryState? {
        let loaded = try Self.read(path: path, format1: format1Path)
        state = loaded ?? RegistryState()
        return loaded
    }

    private static func read(path: String, format1: String) throws -> RegistryState? {
        if let data = FileManager.default.contents(atPath: path) {
            let snapshot = try RegistrySnapshot(serializedBytes: [UInt8](data))
            return RegistryState(meta: snapshot.meta ?? RegistryMeta(format: RegistryLayout.format), agents: snapshot.agents)
        }
        guard let data = FileManager.default.contents(atPath: format1) else { return nil }
        return RegistryState(legacy: try Registry(serializedBytes: [UInt8](data)))
    }

    public func highestEpochLed() async -> UInt64 { ((try? Self.read(path: path, format1: format1Path)) ?? nil)?.highestEpoch ?? 0 }

    public func store(_ change: RegistryChange, fence: String?) async -> RegistryStoreOutcome {
        var next = state
        next.apply(change)
        do {
            try AtomicFile.write(next.snapshot.serializedBytes(), to: path)
            state = next
            return .stored
        } catch {
            return .failed(fenced: false, reason: "cannot write \(path): \(error)")
        }
    }
}
