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
}

public enum RegistryStoreOutcome: Sendable, Hashable {
    case stored
    /// `fenced`: another master leads; otherwise the store is unavailable.
    case failed(fenced: Bool, reason: String)
}

/// The registry in ZooKeeper as `RegistryLayout` lays it out (a meta znode and one znode per
/// agent); every write is one or more `multi`s that also check the writer's leader znode (a
/// deposed master cannot write), each run by `RegistryWriteCore`. A load reads the agents'
/// znodes concurrently (`loadConcurrency` requests in flight) and, for a format-1 registry,
/// leaves its migration to the first write.
public actor ZooKeeperRegistryStore: RegistryStore {
    private let session: ZooKeeperSession
    private var writer: RegistryWriter
    /// Reads in flight while loading the agents' znodes.
    public let loadConcurrency: Int

    public init(session: ZooKeeperSession, groupPath: String, loadConcurrency: Int = 512) {
        self.session = session
        self.loadConcurrency = max(1, loadConcurrency)
        writer = RegistryWriter(layout: RegistryLayout(groupPath: groupPath))
    }

    public var layout: RegistryLayout { writer.layout }

    public func load() async throws -> RegistryState? {
        let layout = writer.layout, session = session
        async let root = Self.data(session, layout.root)
        async let meta = Self.data(session, layout.metaPath)
        let paths = try await withThrowingTaskGroup(of: [String].self) { group in
            for bucket in layout.bucketPaths {
                group.addTask { try await Self.children(session, bucket).map { bucket + "/" + $0 } }
            }
            var all: [String] = []
            for try await names in group { all += names }
            return all
        }
        let agents = try await Self.readAll(session, paths, concurrency: loadConcurrency)
        let (r, m) = try await (root, meta)
        return try writer.loaded(root: r?.data, meta: m.map { ($0.data, $0.stat.version) }, agents: agents)
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

    private static func children(_ session: ZooKeeperSession, _ path: String) async throws -> [String] {
        do { return try await session.children(path) } catch let e as ZooKeeperError where e.code == .noNode { return [] }
    }

    /// The data of every node of `paths` that still exists, with `concurrency` reads in flight.
    private static func readAll(_ session: ZooKeeperSession, _ paths: [String], concurrency: Int) async throws -> [(path: String, data: [UInt8])] {
        try await withThrowingTaskGroup(of: (String, [UInt8]?).self) { group in
            var next = paths.makeIterator()
            for _ in 0..<concurrency {
                guard let path = next.next() else { break }
                group.addTask { (path, try await data(session, path)?.data) }
            }
            var out: [(path: String, data: [UInt8])] = []
            out.reserveCapacity(paths.count)
            while let (path, data) = try await group.next() {
                if let data { out.append((path, data)) }
                if let path = next.next() { group.addTask { (path, try await Self.data(session, path)?.data) } }
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
