import Foundation

/// Files a crash can never tear: written to a temporary file in the same directory, fsynced,
/// renamed over the target, and the directory fsynced (so the rename itself is durable).
/// `durable: false` leaves out both fsyncs: still never torn by a crash of the process (the
/// rename is atomic), but a crash of the machine may lose the write.
public enum AtomicFile {
    public struct Failed: Error, CustomStringConvertible {
        public let path: String
        public let step: String
        public let errno: Int32
        public var description: String { "\(step) \(path): \(String(cString: strerror(errno)))" }
    }

    public static func write(_ bytes: [UInt8], to path: String, durable: Bool = true) throws(Failed) {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = "\(path).tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failed(path: temporary, step: "cannot create", errno: errno) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                close(fd)
                unlink(temporary)
                throw Failed(path: temporary, step: "cannot write", errno: e)
            }
            written += n
        }
        guard !durable || fsync(fd) == 0 else {
            let e = errno
            close(fd)
            unlink(temporary)
            throw Failed(path: temporary, step: "cannot fsync", errno: e)
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw Failed(path: path, step: "cannot rename onto", errno: e)
        }
        guard durable else { return }
        let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    public static func write(_ text: String, to path: String) throws(Failed) { try write(Array(text.utf8), to: path) }
}
