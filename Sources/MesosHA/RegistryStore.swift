import Foundation
import MesosCore
import MesosDaemon
import MesosWire
import ZooKeeper

/// Where the leading master keeps the registry (admitted and removed agents, removed frameworks,
/// the highest epoch ever led). ZooKeeper with `--zk`; the work directory when standalone.
public protocol RegistryStore: Sendable {
    /// The registry (nil: none yet); remembers what a following `store` must be based on.
    func load() async throws -> Registry?
    /// The highest epoch ever led, as far as this store knows (0: none), read before election.
    func highestEpochLed() async -> UInt64
    /// Writes `registry`, fenced by `fence` (the writer's leader znode) where the store can fence.
    func store(_ registry: Registry, fence: String?) async -> RegistryStoreOutcome
}

public enum RegistryStoreOutcome: Sendable, Hashable {
    case stored
    /// `fenced`: another master leads; otherwise the store is unavailable.
    case failed(fenced: Bool, reason: String)
}

/// The registry in the znode `<path>/registry`; every write is a `multi` that also checks the
/// writer's leader znode (a deposed master cannot write), run by `RegistryWriteCore`.
public actor ZooKeeperRegistryStore: RegistryStore {
    private let session: ZooKeeperSession
    private let node: String
    private var version: Int32?

    public init(session: ZooKeeperSession, groupPath: String) {
        self.session = session
        node = groupPath + "/registry"
    }

    public func load() async throws -> Registry? {
        do {
            let (data, stat) = try await session.get(node)
            version = stat.version
            return try Registry(serializedBytes: data)
        } catch let error as ZooKeeperError where error.code == .noNode {
            version = nil
            return nil
        }
    }

    public func highestEpochLed() async -> UInt64 {
        guard let data = try? await session.get(node).data, let registry = try? Registry(serializedBytes: data) else { return 0 }
        return registry.highestEpoch ?? 0
    }

    public func store(_ registry: Registry, fence: String?) async -> RegistryStoreOutcome {
        guard let fence else { return .failed(fenced: true, reason: "a registry write without a leader znode") }
        var core = RegistryWriteCore(bytes: registry.serializedBytes(), version: version)
        var effects = core.start()
        while let effect = effects.first {
            effects.removeFirst()
            switch effect {
            case .multi(let v):
                let op: MultiOperation = v.map { .setData(node, data: core.bytes, version: $0) } ?? .create(node, data: core.bytes)
                do {
                    let results = try await session.multi([.check(fence, version: ZooKeeperSession.anyVersion), op])
                    let committed: Int32 = if case .dataSet(let stat) = results.last { stat.version } else { 0 }
                    effects += core.handle(.committed(version: committed))
                } catch {
                    effects += core.handle(.failed(Self.failure(error, fence: fence)))
                }
            case .readBack:
                do {
                    let found: (data: [UInt8], stat: Stat)? = try await { () async throws -> (data: [UInt8], stat: Stat)? in
                        do { return try await session.get(node) } catch let e as ZooKeeperError where e.code == .noNode { return nil }
                    }()
                    let fenceExists = try await session.exists(fence) != nil
                    effects += core.handle(.readBack(bytes: found?.data, version: found?.stat.version, fenceExists: fenceExists))
                } catch {
                    effects += core.handle(.readBackFailed(Self.failure(error, fence: fence)))
                }
            case .retry(let delay):
                try? await Task.sleep(for: delay)
                effects += core.handle(.retryDue)
            case .stored(let v):
                version = v
                return .stored
            case .failed(let fenced, let reason):
                return .failed(fenced: fenced, reason: reason)
            }
        }
        return .failed(fenced: false, reason: "registry write ended without an outcome")
    }

    private static func failure(_ error: any Error, fence: String) -> RegistryWriteCore.Failure {
        guard let z = error as? ZooKeeperError else { return .other("\(error)") }
        switch z.code {
        case .connectionLoss, .operationTimeout: return .connectionLoss
        case .badVersion, .nodeExists: return .versionConflict
        case .noNode where z.path == fence: return .fenceGone
        default: return .other("\(z)")
        }
    }
}

/// A standalone master's registry: `registry.pb` in its work directory, written atomically
/// (temporary file, fsync, rename), so a crash mid-write leaves the previous registry.
public struct FileRegistryStore: RegistryStore {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    private var path: String { directory + "/registry.pb" }

    public func load() async throws -> Registry? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try Registry(serializedBytes: [UInt8](data))
    }

    public func highestEpochLed() async -> UInt64 { ((try? await load()) ?? nil)?.highestEpoch ?? 0 }

    public func store(_ registry: Registry, fence: String?) async -> RegistryStoreOutcome {
        do {
            try AtomicFile.write(registry.serializedBytes(), to: path)
            return .stored
        } catch {
            return .failed(fenced: false, reason: "cannot write \(path): \(error)")
        }
    }
}
