/// A checkpoint in memory: the simulator's agents' disks (they survive restarts; a crash never
/// tears a file, every write is whole, as `FileCheckpointStore`'s) and the core tests'.
public final class MemoryCheckpointStore: CheckpointStore {
    public private(set) var files: [String: [UInt8]] = [:]
    public private(set) var links: [String: String] = [:]

    public init() {}

    public func write(_ bytes: [UInt8], to path: String) throws(CheckpointError) { files[path] = bytes }
    public func read(_ path: String) throws(CheckpointError) -> [UInt8]? { files[path] }

    public func list(_ directory: String) throws(CheckpointError) -> [String] {
        let prefix = directory + "/"
        var names = Set<String>()
        for path in Array(files.keys) + Array(links.keys) where path.hasPrefix(prefix) {
            if let name = path.dropFirst(prefix.count).split(separator: "/").first { names.insert(String(name)) }
        }
        return names.sorted()
    }

    public func link(_ path: String, to target: String) throws(CheckpointError) { links[path] = target }
    public func readLink(_ path: String) throws(CheckpointError) -> String? { links[path] }

    public func remove(_ path: String) throws(CheckpointError) {
        let prefix = path + "/"
        for k in files.keys where k == path || k.hasPrefix(prefix) { files[k] = nil }
        for k in links.keys where k == path || k.hasPrefix(prefix) { links[k] = nil }
    }

    /// Overwrites a file with garbage (a disk error, an operator's mistake).
    public func corrupt(_ path: String) { files[path] = [0xff, 0xff, 0xff, 0x7f, 1, 2, 3] }
}
