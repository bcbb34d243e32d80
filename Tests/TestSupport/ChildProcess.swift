import Dispatch
import Foundation

/// Runs a program to completion with `posix_spawn`, waiting off the cooperative pool.
///
/// Not `Foundation.Process`, which on Linux (a) spawns with the calling thread's signal mask, and
/// Swift's worker threads block SIGTERM, SIGALRM, SIGCHLD and more, so `timeout` in a script never
/// fires and servers it starts ignore SIGTERM; (b) detects the exit by EOF on a socket the child
/// inherits, so it waits for any daemon the child leaves running.
/// Here the child starts with an empty signal mask and default dispositions, its output goes to
/// files (no pipe a daemon could keep open), and the exit is taken from `waitpid`.
enum ChildProcess {
    struct Failed: Error, CustomStringConvertible {
        let command: String
        let status: Int32
        let stderr: String
        var description: String { "\(command) exited with status \(status): \(stderr)" }
    }

    /// Runs `executable` with stdin from /dev/null, stdout to `outputFile` (truncated), stderr appended
    /// to `errorFile`. Returns the output, or throws `Failed` with the stderr for a non-zero exit.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String], outputFile: String,
        errorFile: String
    ) async throws -> String {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errorFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }

        var pid = pid_t()
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }

        let status = await withCheckedContinuation { (exited: CheckedContinuation<Int32, Never>) in
            DispatchQueue.global().async { [pid] in exited.resume(returning: waitForExit(pid)) }
        }
        guard status == 0 else {
            let stderr = (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? ""
            throw Failed(command: ([executable] + arguments).joined(separator: " "), status: status, stderr: stderr)
        }
        return (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
    }

    /// The exit code, or 128 + the signal number for a killed child (as shells report it).
    private static func waitForExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
