import Foundation
import MesosCore
import MesosDaemon

/// The agent's checkpoint on disk (`<work_dir>/meta`): every file written with `AtomicFile`
/// (temporary file, fsync, rename, fsync of the directory), symlinks replaced by a rename.
/// `durable: false` leaves out the fsyncs (agent-swarm: hundreds of agents of one process on one
/// disk, whose fsyncs real agents would each make on their own host).
public struct FileCheckpointStore: CheckpointStore, Sendable {
    public let root: String
    public let durable: Bool

    public init(root: String, durable: Bool = true) {
        self.root = root
        self.durable = durable
    }

    private func full(_ path: String) -> String { root + "/" + path }

    private func makeParent(_ path: String) throws(CheckpointError) {
        let dir = (full(path) as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(path: path, problem: "cannot create its directory: \(error.localizedDescription)")
        }
    }

    /// The directory is made only when the write finds it missing: making it first on every write
    /// was about a quarter of the cost of checkpointing a new epoch floor (a stat per path component).
    public func write(_ bytes: [UInt8], to path: String) throws(CheckpointError) {
        do {
            try AtomicFile.write(bytes, to: full(path), durable: durable)
            return
        } catch where error.errno == ENOENT {
            try makeParent(path)
        } catch {
            throw CheckpointError(path: path, problem: error.description)
        }
        do { try AtomicFile.write(bytes, to: full(path), durable: durable) } catch { throw CheckpointError(path: path, problem: error.description) }
    }

    public func read(_ path: String) throws(CheckpointError) -> [UInt8]? {
        let fd = open(full(path), O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw CheckpointError(path: path, problem: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw CheckpointError(path: path, problem: "cannot read: \(String(cString: strerror(errno)))") }
            if n == 0 { return out }
            out += chunk[0..<n]
        }
    }

    /// Temporary files (`AtomicFile`'s `<name>.tmp.<pid>`) sit next to fixed file names, never in
    /// the directories listed (frameworks, executors, tasks), so nothing is filtered here.
    public func list(_ directory: String) throws(CheckpointError) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: full(directory), isDirectory: &isDir) else { return [] }
        guard isDir.boolValue else { throw CheckpointError(path: directory, problem: "is not a directory") }
        do {
            return try FileManager.default.contentsOfDirectory(atPath: full(directory)).sorted()
        } catch {
            throw CheckpointError(path: directory, problem: "cannot list: \(error.localizedDescription)")
        }
    }

    public func link(_ path: String, to target: String) throws(CheckpointError) {
        try makeParent(path)
        let temporary = full(path) + ".tmp.\(getpid())"
        unlink(temporary)
        guard symlink(target, temporary) == 0 else { throw CheckpointError(path: path, problem: "cannot create a symlink: \(String(cString: strerror(errno)))") }
        guard rename(temporary, full(path)) == 0 else {
            let e = errno
            unlink(temporary)
            throw CheckpointError(path: path, problem: "cannot rename the symlink into place: \(String(cString: strerror(e)))")
        }
    }

    public func readLink(_ path: String) throws(CheckpointError) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(full(path), &buffer, buffer.count - 1)
        if n < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw CheckpointError(path: path, problem: "is not a symlink: \(String(cString: strerror(errno)))")
        }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func remove(_ path: String) throws(CheckpointError) {
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: full(path), isDirectory: &isDir) {
            // A dangling symlink "does not exist" for FileManager: unlink it anyway.
            if unlink(full(path)) != 0 && errno != ENOENT {
                throw CheckpointError(path: path, problem: "cannot remove: \(String(cString: strerror(errno)))")
            }
            return
        }
        do { try FileManager.default.removeItem(atPath: full(path)) } catch {
            throw CheckpointError(path: path, problem: "cannot remove: \(error.localizedDescription)")
        }
    }
}
