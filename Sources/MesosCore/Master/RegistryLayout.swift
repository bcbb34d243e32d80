import MesosWire

/// Where the registry lives in ZooKeeper (format 2), and how it is read and written there: pure,
/// run by `ZooKeeperRegistryStore` and by the simulator.
///
/// ```
/// <path>/registry                 format 1's whole Registry (migrated, then emptied)
/// <path>/registry/meta            RegistryMeta: format, highest epoch, removed frameworks, write count
/// <path>/registry/agents/NN/<id>  one RegistryAgent per agent, in 64 buckets NN by a hash of its id
/// ```
/// No znode grows with the cluster, and no list of children either (a bucket of 102,400 agents
/// lists ~80 KiB of names; ZooKeeper refuses replies above 1 MiB).
///
/// A write is one or more `multi`s (`Chunk`s, each well under ZooKeeper's 1 MiB request limit),
/// each `[check(leader znode), meta at its version, agent znodes...]`, run by `RegistryWriteCore`:
/// the meta's version orders the writes and its write count tells our commit from another's on a
/// read-back. A format-1 registry found at load goes entirely into the first write, with
/// `migrating` set in the meta until its last chunk empties the old znode: until then a reader
/// (the next leader) takes format 1 as the truth and migrates again.
public struct RegistryLayout: Sendable, Hashable {
    public static let format: UInt32 = 2
    public static let buckets = 64
    /// Data bytes and operations per `multi` (ZooKeeper closes a connection whose request is above
    /// `jute.maxbuffer`, 1 MiB by default).
    public static let maxChunkBytes = 256 * 1024
    public static let maxChunkOperations = 1000

    public let root: String

    public init(groupPath: String) { root = (groupPath == "/" ? "" : groupPath) + "/registry" }

    public var metaPath: String { root + "/meta" }
    public var agentsPath: String { root + "/agents" }
    public var bucketPaths: [String] { (0..<Self.buckets).map(bucketPath) }

    public func bucketPath(_ bucket: Int) -> String {
        agentsPath + "/" + (bucket < 10 ? "0" : "") + String(bucket)
    }

    public func path(of id: AgentID) -> String { bucketPath(Self.bucket(of: id)) + "/" + Self.nodeName(id) }

    /// FNV-1a of the id's bytes: stable across processes and versions (Swift's hash is not).
    static func bucket(of id: AgentID) -> Int {
        var h: UInt32 = 2_166_136_261
        for b in id.value.utf8 {
            h ^= UInt32(b)
            h = h &* 16_777_619
        }
        return Int(h % UInt32(buckets))
    }

    /// The id as a znode name: letters, digits, `-` and `_` as they are, every other byte `%XX`
    /// (no `/`, and never `.` or `..`).
    static func nodeName(_ id: AgentID) -> String {
        var out = ""
        for b in id.value.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out += "%"
                out.unicodeScalars.append(hex[Int(b >> 4)])
                out.unicodeScalars.append(hex[Int(b & 15)])
            }
        }
        return out.isEmpty ? "%" : out
    }

    /// The highest epoch either format records (read before the election, for the epoch floor).
    public static func highestEpoch(root: [UInt8]?, meta: [UInt8]?) -> UInt64 {
        let a = meta.flatMap { try? RegistryMeta(serializedBytes: $0) }?.highestEpoch ?? 0
        let b = root.flatMap { $0.isEmpty ? nil : try? Registry(serializedBytes: $0) }?.highestEpoch ?? 0
        return max(a, b)
    }
}

/// One operation of a registry `multi`, before the shell adds the `check` of its leader znode.
public enum RegistryOperation: Sendable, Hashable {
    case create(String, data: [UInt8])
    /// `version` nil: any version.
    case setData(String, data: [UInt8], version: Int32?)
    case delete(String)

    public var path: String {
        switch self {
        case .create(let p, _), .setData(let p, _, _), .delete(let p): p
        }
    }

    var size: Int {
        switch self {
        case .create(let p, let d), .setData(let p, let d, _): p.utf8.count + d.count + 16
        case .delete(let p): p.utf8.count + 8
        }
    }
}

/// What a registry store knows of ZooKeeper between its writes: the meta's version, which agent
/// znodes exist, whether a migration is due. Plans each write as `Chunk`s.
public struct RegistryWriter: Sendable, Hashable {
    public enum LoadError: Error, Hashable, CustomStringConvertible {
        case corrupt(path: String, problem: String)
        case unknownFormat(UInt32)
        public var description: String {
            switch self {
            case .corrupt(let path, let problem): "\(path): \(problem)"
            case .unknownFormat(let f): "registry format \(f) is newer than this master (\(RegistryLayout.format))"
            }
        }
    }

    /// One `multi` of a write (without the fence's `check`).
    public struct Chunk: Sendable, Hashable {
        /// The meta this chunk leaves (what a read-back compares).
        public let metaBytes: [UInt8]
        let agentOperations: [RegistryOperation]
        let clearsFormat1: Bool
        let endsMigration: Bool
    }

    public let layout: RegistryLayout
    /// The meta's version (nil: no meta znode yet).
    public private(set) var metaVersion: Int32?
    private var rootExists = false
    private var existing: Set<String> = []
    private var writes: UInt64 = 0
    /// A format-1 registry read at load: all of it goes with the first write.
    private var migration: RegistryState?

    public init(layout: RegistryLayout) { self.layout = layout }

    public var migrationDue: Bool { migration != nil }

    /// What the load read: `<path>/registry`'s data (nil: absent), the meta (nil: absent) and
    /// every agent znode (path and data). Returns the registry (nil: none yet).
    public mutating func loaded(root: [UInt8]?, meta: (data: [UInt8], version: Int32)?, agents: [(path: String, data: [UInt8])]) throws(LoadError) -> RegistryState? {
        rootExists = root != nil
        existing = Set(agents.map(\.path))
        migration = nil
        metaVersion = meta?.version
        var parsedMeta: RegistryMeta?
        if let meta {
            do { parsedMeta = try RegistryMeta(serializedBytes: meta.data) } catch { throw .corrupt(path: layout.metaPath, problem: "\(error)") }
            guard parsedMeta!.format <= RegistryLayout.format else { throw .unknownFormat(parsedMeta!.format) }
            writes = parsedMeta!.writes ?? 0
        }
        if let parsedMeta, parsedMeta.migrating != true {
            var entries: [RegistryAgent] = []
            entries.reserveCapacity(agents.count)
            for (path, data) in agents {
                do { entries.append(try RegistryAgent(serializedBytes: data)) } catch { throw .corrupt(path: path, problem: "\(error)") }
            }
            return RegistryState(meta: parsedMeta, agents: entries)
        }
        // Format 1 (or a migration cut short): the old znode is the truth.
        guard let root, !root.isEmpty else { return nil }
        let legacy: Registry
        do { legacy = try Registry(serializedBytes: root) } catch { throw .corrupt(path: layout.root, problem: "\(error)") }
        let state = RegistryState(legacy: legacy)
        migration = state
        return state
    }

    /// The `multi`s that write `change` (at least one: the meta changes with every write).
    public mutating func plan(_ change: RegistryChange) -> [Chunk] {
        var operations: [RegistryOperation] = []
        var puts: [(AgentID, RegistryChange.Entry)]
        var strays: [String] = []
        if var target = migration {
            target.apply(change)
            let wanted = Dictionary(target.entries.map { (layout.path(of: $0.id), $0) }, uniquingKeysWith: { a, _ in a })
            puts = target.entries.map { ($0.id, .put($0)) }
            strays = existing.subtracting(wanted.keys).sorted()
        } else {
            puts = change.agents.sorted { $0.key.value < $1.key.value }
        }
        for (id, entry) in puts {
            let path = layout.path(of: id)
            switch entry {
            case .put(let e):
                let data = e.serializedBytes()
                operations.append(existing.contains(path) ? .setData(path, data: data, version: nil) : .create(path, data: data))
            case .delete:
                if existing.contains(path) { operations.append(.delete(path)) }
            }
        }
        operations += strays.map { .delete($0) }

        var groups: [[RegistryOperation]] = [[]]
        var bytes = 0
        for op in operations {
            if !groups[groups.count - 1].isEmpty, bytes + op.size > RegistryLayout.maxChunkBytes || groups[groups.count - 1].count >= RegistryLayout.maxChunkOperations {
                groups.append([])
                bytes = 0
            }
            groups[groups.count - 1].append(op)
            bytes += op.size
        }
        let migrating = migration != nil
        return groups.enumerated().map { i, ops in
            let last = i == groups.count - 1
            var meta = change.meta
            meta.format = RegistryLayout.format
            meta.writes = writes + UInt64(i) + 1
            meta.migrating = migrating && !last ? true : nil
            return Chunk(metaBytes: meta.serializedBytes(), agentOperations: ops, clearsFormat1: migrating && last && rootExists, endsMigration: migrating && last)
        }
    }

    /// The operations of `chunk` when the meta is at `version` (nil: the first write ever, which
    /// also creates the layout's parents).
    public func operations(_ chunk: Chunk, metaVersion version: Int32?) -> [RegistryOperation] {
        var ops: [RegistryOperation] = []
        if let version {
            ops.append(.setData(layout.metaPath, data: chunk.metaBytes, version: version))
        } else {
            if !rootExists { ops.append(.create(layout.root, data: [])) }
            ops.append(.create(layout.agentsPath, data: []))
            ops += layout.bucketPaths.map { .create($0, data: []) }
            ops.append(.create(layout.metaPath, data: chunk.metaBytes))
        }
        ops += chunk.agentOperations
        if chunk.clearsFormat1 { ops.append(.setData(layout.root, data: [], version: nil)) }
        return ops
    }

    /// `chunk` is in, and the meta is now at `version`.
    public mutating func committed(_ chunk: Chunk, metaVersion version: Int32) {
        metaVersion = version
        rootExists = true
        writes += 1
        for op in chunk.agentOperations {
            switch op {
            case .create(let p, _): existing.insert(p)
            case .delete(let p): existing.remove(p)
            case .setData: break
            }
        }
        if chunk.endsMigration { migration = nil }
    }
}
