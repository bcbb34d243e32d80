import Foundation
import MesosDaemon
import Synchronization

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Milliseconds since the epoch (CLOCK_REALTIME), the clock agent-swarm and the baselines print.
func nowMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Microsecond resolution, for the ZooKeeper floor.
func nowUs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// A free loopback port (bound, read, released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = BlackholeProxy.loopback(port: 0)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw HarnessError("cannot bind a free port") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

func say(_ text: String) {
    let f = DateFormatter()
    f.dateFormat = "HH:mm:ss.SSS"
    FileHandle.standardError.write(Data("[\(f.string(from: Date()))] \(text)\n".utf8))
}

/// Appends one JSON object per line.
final class JSONLines: Sendable {
    private let path: String
    private let lock = Mutex(())

    init(path: String) { self.path = path }

    func append(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        lock.withLock { _ in
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            guard let h = FileHandle(forWritingAtPath: path) else { return }
            h.seekToEndOfFile()
            h.write(data + Data("\n".utf8))
            try? h.close()
        }
    }
}

/// A child process started with `ProcessLauncher` (empty signal mask, output to a file), whose exit
/// time is recorded by a waiter thread.
final class Child: Sendable {
    let pid: pid_t
    let name: String
    private let exit = Mutex<(at: Int64, code: Int32)?>(nil)

    init(_ executable: String, _ arguments: [String], log: String, name: String) throws {
        self.name = name
        pid = try ProcessLauncher.spawn(
            executable, arguments, environment: ProcessInfo.processInfo.environment, outputFile: log, errorFile: log,
            truncateOutput: false)
        let pid = self.pid
        Thread.detachNewThread { [self] in
            let code = ProcessLauncher.waitForExit(pid)
            self.exit.withLock { $0 = (nowMs(), code) }
        }
    }

    var exited: (at: Int64, code: Int32)? { exit.withLock { $0 } }
    var isRunning: Bool { exited == nil }

    func signal(_ signo: Int32) { if isRunning { kill(pid, signo) } }

    /// Waits up to `timeout` for the exit; SIGKILL after it.
    func stop(_ signo: Int32 = SIGTERM, timeout: Duration = .seconds(10)) async {
        signal(signo)
        let deadline = ContinuousClock.now + timeout
        while isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if isRunning {
            kill(pid, SIGKILL)
            while isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        }
    }
}

/// Follows a growing text file (a child's stdout) line by line.
final class FileTail: @unchecked Sendable {  // used from one task at a time
    let path: String
    private var offset: UInt64 = 0
    private var partial = Data()

    init(path: String) { self.path = path }

    func newLines() -> [String] {
        guard let h = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? h.close() }
        h.seek(toFileOffset: offset)
        let data = h.readDataToEndOfFile()
        offset += UInt64(data.count)
        partial.append(data)
        guard let lastNewline = partial.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
        let complete = partial[partial.startIndex...lastNewline]
        partial = Data(partial[(lastNewline + 1)...])
        return String(decoding: complete, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    if p >= 1 { return sorted.last! }
    let rank = p * Double(sorted.count - 1)
    let lo = Int(rank.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - Double(lo))
}

/// Polls `condition` every `every` until it holds or `timeout` passes; true if it held.
func waitUntil(timeout: Duration, every: Duration = .milliseconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: every)
    }
    return try await condition()
}
