import Foundation

/// Starts child processes with `posix_spawn`, for tasks and for tests' daemons.
///
/// Not `Foundation.Process`, which on Linux (a) spawns with the calling thread's signal mask, and
/// Swift's worker threads block SIGTERM, SIGALRM, SIGCHLD and more, so children would ignore
/// SIGTERM; (b) detects the exit by EOF on a socket the child inherits, so it waits for any
/// daemon the child leaves running. Here the child starts with an empty signal mask and default
/// dispositions, its output goes to files, and the exit is taken from `waitpid`.
public enum ProcessLauncher {
    public struct Failed: Error, CustomStringConvertible {
        public let command: String
        public let errno: Int32
        /// Where it was to run: a missing directory fails the spawn with the same ENOENT as a
        /// missing executable, so the message names both.
        public var workingDirectory: String? = nil
        public var description: String {
            "cannot start \(command)\(workingDirectory.map { " in \($0)" } ?? ""): \(String(cString: strerror(errno)))"
        }
    }

    /// Starts `executable` (stdin /dev/null, stdout to `outputFile`, stderr appended to `errorFile`;
    /// one file for both when they are the same path) and returns its pid; the caller reaps it
    /// with `waitForExit`. `newProcessGroup`: the child leads its own group, so signalling `-pid`
    /// reaches everything it starts.
    public static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String], outputFile: String,
        errorFile: String, truncateOutput: Bool = true, newProcessGroup: Bool = false, newSession: Bool = false,
        workingDirectory: String? = nil
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Nothing else of ours goes to the child: not our listening sockets (a task would keep the
        // port after we die), not our connections (a peer would see them half-open).
        closeFrom(&actions, 3)
        // File actions run in order: the output files open before the chdir, so relative paths
        // (an agent's relative --work_dir) mean what they mean to the caller. The executable is made
        // absolute for the same reason (posix_spawn resolves it after the chdir).
        if outputFile == errorFile {
            posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | (truncateOutput ? O_TRUNC : O_APPEND), 0o644)
            posix_spawn_file_actions_addopen(&actions, 2, errorFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        if let workingDirectory { addChdir(&actions, workingDirectory) }
        let executable = workingDirectory != nil && !executable.hasPrefix("/") && executable.contains("/")
            ? FileManager.default.currentDirectoryPath + "/" + executable : executable

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if newSession {
            flags |= posixSpawnSetSID  // its own session and group: it outlives our exit and our signals
        } else if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }

        var pid = pid_t()
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard spawned == 0 else { throw Failed(command: executable, errno: spawned, workingDirectory: workingDirectory) }
        return pid
    }

    /// Blocks until `pid` exits: its exit code, or 128 + the signal number (as shells report it).
    public static func waitForExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Waits for `pid` off the cooperative pool.
    public static func exit(of pid: pid_t) async -> Int32 {
        await withCheckedContinuation { (done: CheckedContinuation<Int32, Never>) in
            Thread.detachNewThread { done.resume(returning: waitForExit(pid)) }
        }
    }

    /// How a child ended, as `waitpid` tells it (nil: it could not be waited for).
    public enum Ending: Sendable, Hashable {
        case exited(Int32)
        case signaled(Int32)
    }

    /// Waits for `pid` off the cooperative pool; nil when `waitpid` fails (not our child...).
    public static func ending(of pid: pid_t) async -> Ending? {
        await withCheckedContinuation { (done: CheckedContinuation<Ending?, Never>) in
            Thread.detachNewThread {
                var status: Int32 = 0
                var r: pid_t
                repeat { r = waitpid(pid, &status, 0) } while r < 0 && errno == EINTR
                guard r == pid else { return done.resume(returning: nil) }
                let signal = status & 0x7f
                done.resume(returning: signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal))
            }
        }
    }

    /// glibc's POSIX_SPAWN_SETSID (2.26+), behind _GNU_SOURCE in spawn.h.
    private static let posixSpawnSetSID: Int32 = 0x80

    /// glibc's posix_spawn_file_actions_addchdir_np (2.29+).
    private typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
    private static let addChdirNP: AddChdir? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addchdir_np") else { return nil }
        return unsafeBitCast(symbol, to: AddChdir.self)
    }()

    private static func addChdir(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ dir: String) {
        if let addChdirNP { _ = addChdirNP(actions, dir) }
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), which Swift does not import.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    private static func closeFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ fd: Int32) {
        if let addCloseFrom { _ = addCloseFrom(actions, fd) }
    }
}
