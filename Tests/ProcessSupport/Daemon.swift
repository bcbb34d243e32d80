import Dispatch
import Foundation
import MesosDaemon
import Synchronization

/// A long-running child process for daemon-level tests (mesos-master, mesos-agent, probes).
///
/// Spawned by `ProcessLauncher` (empty signal mask, default dispositions), its
/// stdout and stderr go to one log file. We are its parent, so its exit status (and when it came)
/// is collected by a `waitpid` thread and there are no zombies. Whatever the test does, `deinit`
/// SIGKILLs it.
public final class Daemon: Sendable {
    public let name: String
    public let pid: pid_t
    /// `<logDirectory>/<name>.log`, appended to (a process started again under the same name adds to it).
    public let logFile: URL
    private let exit = ExitStatus()
    private let tail = Mutex<(offset: UInt64, partial: Data)>((0, Data()))

    /// - environment: added to this process's environment.
    public init(_ name: String, executable: String, arguments: [String], environment: [String: String] = [:], logDirectory: URL) throws {
        self.name = name
        try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
        logFile = logDirectory.appending(path: "\(name).log")
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        pid = try ProcessLauncher.spawn(executable, arguments, environment: env, outputFile: logFile.path, errorFile: logFile.path)
        let pid = self.pid, exit = self.exit
        Thread.detachNewThread { exit.set(ProcessLauncher.waitForExit(pid)) }
    }

    deinit {
        if isRunning { _ = Glibc.kill(pid, SIGKILL) }
    }

    public var isRunning: Bool { exit.value == nil }
    /// The exit code, or 128 + signal; nil while running.
    public var exitStatus: Int32? { exit.value?.status }
    /// The exit status and when (wall clock) the exit was collected; nil while running.
    public var exited: (status: Int32, at: Date)? { exit.value }

    public func signal(_ signo: Int32) { if isRunning { _ = Glibc.kill(pid, signo) } }

    /// Waits for the exit; nil if still running after `timeout`.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(10)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return exitStatus
    }

    /// SIGKILL and wait.
    public func kill() async {
        signal(SIGKILL)
        _ = await waitForExit()
    }

    /// `signo`, and SIGKILL if it is still running after `timeout`.
    public func stop(_ signo: Int32 = SIGTERM, timeout: Duration = .seconds(10)) async {
        signal(signo)
        if await waitForExit(timeout: timeout) == nil { await kill() }
    }

    public var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Lines of the log so far.
    public var lines: [String] { log.split(separator: "\n").map(String.init) }

    /// The complete lines logged since the previous call (the first call: since the start of the
    /// file): for following a long log without reading all of it again.
    public func newLines() -> [String] {
        tail.withLock { tail in
            guard let file = FileHandle(forReadingAtPath: logFile.path) else { return [] }
            defer { try? file.close() }
            file.seek(toFileOffset: tail.offset)
            let data = file.readDataToEndOfFile()
            tail.offset += UInt64(data.count)
            tail.partial.append(data)
            guard let lastNewline = tail.partial.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
            let complete = tail.partial[...lastNewline]
            tail.partial = Data(tail.partial[(lastNewline + 1)...])
            return complete.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// Waits until the log contains `text`; returns the first line containing it.
    @discardableResult
    public func waitForLog(_ text: String, timeout: Duration = .seconds(10)) async throws -> String {
        var found: String?
        try await Poll.until("'\(text)' in \(name)'s log", timeout: timeout) {
            found = lines.first { $0.contains(text) }
            return found != nil
        }
        return found!
    }
}

/// The package's built products (the test bundle sits next to them).
public enum Products {
    public static let directory: URL = {
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        if let dir = ProcessInfo.processInfo.environment["MESOS_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        return packageRoot.appending(path: ".build/debug")
    }()

    public static func path(_ product: String) -> String { directory.appending(path: product).path }

    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

private final class ExitStatus: Sendable {
    private let status = Mutex<(status: Int32, at: Date)?>(nil)
    var value: (status: Int32, at: Date)? { status.withLock { $0 } }
    func set(_ s: Int32) { status.withLock { $0 = (s, Date()) } }
}
