import FaultProxy
import Foundation

/// A throw-away ZooKeeper on loopback (standalone, or an ensemble of N servers) for tests, run by
/// `scripts/zk-standalone.sh` / `scripts/zk-ensemble.sh` in a fresh directory under `$TMPDIR`.
///
/// Whatever happens in the test, the servers die with this object: `deinit` SIGKILLs them by pid
/// and removes the directory. `withZooKeeper { }` tears down right at the end of its scope.
public final class ZooKeeperServer: Sendable {
    public enum Topology: Sendable {
        case standalone
        case ensemble(size: Int)
    }

    public let topology: Topology
    /// `127.0.0.1:port[,127.0.0.1:port...]`
    public let connectString: String
    public let directory: URL

    /// Starts the servers and returns once every one of them serves clients.
    /// A start that fails (another process took a chosen port between the check and the bind) is
    /// tried again on fresh ports, up to three times.
    public static func start(_ topology: Topology = .standalone) async throws -> ZooKeeperServer {
        var attempt = 1
        while true {
            let directory = FileManager.default.temporaryDirectory.appending(path: "zk-test-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            do {
                let connectString = try await runScript(for: topology, in: directory, "start")
                return ZooKeeperServer(topology: topology, connectString: connectString, directory: directory)
            } catch {
                Self.killAndWait(pidFiles(topology: topology, directory: directory))
                try? FileManager.default.removeItem(at: directory)
                guard attempt < 3 else { throw error }
                attempt += 1
            }
        }
    }

    private init(topology: Topology, connectString: String, directory: URL) {
        self.topology = topology
        self.connectString = connectString
        self.directory = directory
    }

    deinit {
        Self.killAndWait(pidFiles)
        try? FileManager.default.removeItem(at: directory)
    }

    /// SIGKILLs every server (a crash: clients see their connections reset) and waits until they are gone.
    public func kill() async {
        await Self.signalAndWait(pidFiles, SIGKILL)
    }

    /// Stops every server with SIGTERM and waits until they are gone.
    public func stop() async {
        await Self.signalAndWait(pidFiles, SIGTERM)
    }

    /// Starts the servers again after `stop()`/`kill()`, on the same ports with the same data.
    public func restart() async throws {
        _ = try await Self.runScript(for: topology, in: directory, "start")
    }

    /// SIGSTOPs every server: connections stay open but nothing answers (a hung or partitioned server).
    public func pause() {
        for pid in pidFiles.compactMap(Self.pid) { _ = signalProcess(pid, SIGSTOP) }
    }

    /// SIGCONTs every server after `pause()`.
    public func resume() {
        for pid in pidFiles.compactMap(Self.pid) { _ = signalProcess(pid, SIGCONT) }
    }

    /// SIGKILLs ensemble member `member` (1-based) and waits until it is gone.
    public func stopMember(_ member: Int) async {
        await Self.signalAndWait([directory.appending(path: "zk\(member)/zk.pid")], SIGKILL)
    }

    /// Starts ensemble member `member` (1-based) again; returns once it serves as leader or follower.
    public func startMember(_ member: Int) async throws {
        _ = try await Self.runScript(for: topology, in: directory, "start1", String(member))
    }

    // MARK: Processes
    // Each server's pid is in its pid file while it may be running; the file goes once the process is
    // gone, so a later signal can never hit a recycled pid.

    private var pidFiles: [URL] { Self.pidFiles(topology: topology, directory: directory) }

    private static func pidFiles(topology: Topology, directory: URL) -> [URL] {
        switch topology {
        case .standalone: [directory.appending(path: "zk.pid")]
        case .ensemble(let size): (1...size).map { directory.appending(path: "zk\($0)/zk.pid") }
        }
    }

    private static func pid(in file: URL) -> pid_t? {
        (try? String(contentsOf: file, encoding: .utf8)).flatMap {
            pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    private static func signalAndWait(_ files: [URL], _ signal: Int32) async {
        let pids = signalAll(files, signal)
        let deadline = ContinuousClock.now + .seconds(10)
        while pids.contains(where: isRunning), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        forgetStopped(files)
    }

    /// For `deinit` and failed starts, where there is no awaiting.
    private static func killAndWait(_ files: [URL]) {
        let pids = signalAll(files, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(2)
        while pids.contains(where: isRunning), ContinuousClock.now < deadline { usleep(5_000) }
        forgetStopped(files)
    }

    private static func signalAll(_ files: [URL], _ signal: Int32) -> [pid_t] {
        let pids = files.compactMap(pid)
        for pid in pids { _ = signalProcess(pid, signal) }
        return pids
    }

    private static func forgetStopped(_ files: [URL]) {
        for file in files where !(pid(in: file).map(isRunning) ?? true) {
            try? FileManager.default.removeItem(at: file)
        }
    }

    /// The servers are orphans reaped late by init, and `kill -0` succeeds on zombies: read the state.
    private static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.range(of: ") ", options: .backwards)
        else { return false }
        return stat[end.upperBound...].first != "Z"
    }

    // MARK: Scripts

    private static let scripts = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // TestSupport
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // package root
        .appending(path: "scripts")

    /// Runs the topology's script; returns its last stdout line (the connect string for `start`).
    /// The script's stderr is appended to `DIR/scripts.log`.
    private static func runScript(for topology: Topology, in directory: URL, _ command: String, _ arguments: String...)
        async throws -> String
    {
        var environment = ProcessInfo.processInfo.environment
        let script: String
        switch topology {
        case .standalone:
            script = "zk-standalone.sh"
        case .ensemble(let size):
            script = "zk-ensemble.sh"
            environment["ZK_N"] = String(size)
        }
        let stdout = try await ChildProcess.run(
            scripts.appending(path: script).path, [command, directory.path] + arguments, environment: environment,
            outputFile: directory.appending(path: "script.out").path,
            errorFile: directory.appending(path: "scripts.log").path)
        return stdout.split(whereSeparator: \.isNewline).last.map(String.init) ?? ""
    }
}

// MARK: Four-letter words

extension ZooKeeperServer {
    /// Sends a four-letter word (`srvr`, `wchp`...) to the server at 127.0.0.1:`port` and returns its
    /// reply (the server closes the connection after it).
    public static func fourLetterWord(_ word: String, port: Int, timeout: Duration = .seconds(2)) throws -> String {
        let socket = try Loopback.Socket(connectingTo: port)
        try socket.write(word)
        return String(decoding: try socket.readToEnd(timeout: timeout), as: UTF8.self)
    }

    /// `cons`: the ids of the sessions connected to the server at 127.0.0.1:`port` (a connection that
    /// has no session yet, like the four-letter word's own, has none), as `0x...` hex.
    public static func sessions(port: Int) throws -> Set<String> {
        var sessions: Set<String> = []
        for line in try fourLetterWord("cons", port: port).split(whereSeparator: \.isNewline) {
            guard let range = line.range(of: "sid=") else { continue }
            sessions.insert(String(line[range.upperBound...].prefix { $0 != "," && $0 != ")" }))
        }
        return sessions
    }

    /// `Mode: leader|follower|standalone` of the server at 127.0.0.1:`port` (from `srvr`); nil when it
    /// does not answer within `timeout`.
    public static func mode(port: Int, timeout: Duration = .milliseconds(500)) -> String? {
        guard let reply = try? fourLetterWord("srvr", port: port, timeout: timeout) else { return nil }
        return reply.split(whereSeparator: \.isNewline).first { $0.hasPrefix("Mode: ") }.map { String($0.dropFirst(6)) }
    }
}

/// Runs `body` against a fresh ZooKeeper and kills it afterwards, also when `body` throws.
public func withZooKeeper<T>(
    _ topology: ZooKeeperServer.Topology = .standalone,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ZooKeeperServer) async throws -> T
) async throws -> T {
    let server = try await ZooKeeperServer.start(topology)
    do {
        let result = try await body(server)
        await server.kill()
        return result
    } catch {
        await server.kill()
        throw error
    }
}

/// `kill(2)`; a free function because `ZooKeeperServer.kill()` shadows it inside the class.
private func signalProcess(_ pid: pid_t, _ signal: Int32) -> Int32 { kill(pid, signal) }

/// The client ports of a connect string `127.0.0.1:p1,127.0.0.1:p2,...`, in order.
public func clientPorts(_ connectString: String) -> [Int] {
    connectString.split(separator: ",").compactMap { $0.split(separator: ":").last.flatMap { Int($0) } }
}
