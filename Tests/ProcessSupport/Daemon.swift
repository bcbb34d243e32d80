import Dispatch
import Foundation
import MesosDaemon
import Synchronization

/// A long-running child process for daemon-level tests (mesos-master, mesos-agent, probes).
///
/// Spawned by `ProcessLauncher` (empty signal mask, default dispositions), its
/// stdout and stderr go to one log file. We are its parent, so its exit status is collected by a
/// `waitpid` thread and there are no zombies. Whatever the test does, `deinit` SIGKILLs it.
public final class Daemon: Sendable {
    public let name: String
    public let pid: pid_t
    public let logFile: URL
    private let exit = ExitStatus()

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
    public var exitStatus: Int32? { exit.value }

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

    public var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Lines of the log so far.
    public var lines: [String] { log.split(separator: "\n").map(String.init) }

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
    private let status = Mutex<Int32?>(nil)
    var value: Int32? { status.withLock { $0 } }
    func set(_ s: Int32) { status.withLock { $0 = s } }
}
