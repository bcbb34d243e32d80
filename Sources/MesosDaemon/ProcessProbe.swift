import Foundation

/// What `/proc` says about processes that are not (or no longer) our children: an agent that
/// restarted finds its executors this way (Mesos's containerizer recovery).
public enum ProcessProbe {
    /// The kernel's boot id: pids read from a checkpoint mean nothing after a reboot.
    public static var bootID: String {
        (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
    }

    /// Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session.
    public struct Stat: Sendable, Hashable {
        public var state: Character
        public var parent: pid_t
        public var group: pid_t
        public var session: pid_t
    }

    public static func stat(_ pid: pid_t) -> Stat? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // The name may hold spaces and parentheses: fields start after the last ')'.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 4, let state = fields[0].first, let ppid = pid_t(fields[1]), let pgrp = pid_t(fields[2]), let sid = pid_t(fields[3]) else { return nil }
        return Stat(state: state, parent: ppid, group: pgrp, session: sid)
    }

    /// CPU time (user + system) the process has used so far, in milliseconds (fields 14 and 15 of
    /// /proc/<pid>/stat); nil when it is gone. For benchmarks.
    public static func cpuMilliseconds(_ pid: pid_t) -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Int64(fields[11]), let system = Int64(fields[12]) else { return nil }
        return (user + system) * 1000 / max(Int64(sysconf(Int32(_SC_CLK_TCK))), 1)
    }

    /// Resident memory (VmRSS of /proc/<pid>/status) in KiB; nil when it is gone. For benchmarks.
    public static func residentKiB(_ pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        }
        return nil
    }

    /// Open file descriptors of `pid` (entries of /proc/PID/fd); nil when it cannot be read.
    public static func openDescriptors(_ pid: pid_t) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }

    /// Runs (not a zombie) and its program is `name` (a pid reused by another program is not ours).
    public static func isRunning(_ pid: pid_t, program name: String) -> Bool {
        guard pid > 1, let s = stat(pid), s.state != "Z", s.state != "X" else { return false }
        guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), let argv0 = cmdline.split(separator: 0).first else { return false }
        return (String(decoding: argv0, as: UTF8.self) as NSString).lastPathComponent == name
    }

    /// Every process in `session` (Mesos's killtree with sessions=true).
    public static func members(ofSession session: pid_t) -> [pid_t] {
        guard session > 1, let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return names.compactMap { pid_t($0) }.filter { stat($0)?.session == session }
    }

    /// A process's environment (`KEY=value` entries), when it can be read.
    public static func environment(of pid: pid_t) -> Set<String>? {
        guard let bytes = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return nil }
        return Set(bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
    }

    /// SIGKILLs every process of `session` whose environment holds all of `marks` (`KEY=value`:
    /// an executor's MESOS_FRAMEWORK_ID and MESOS_EXECUTOR_ID, which its task inherits), so a
    /// session id that was reused by someone else's session is never touched. Repeated until none
    /// is left (a member may fork while we look), at most a few rounds.
    public static func killSession(_ session: pid_t, marks: Set<String>) {
        guard session > 1, session != getsid(0) else { return }  // never our own session
        for _ in 0..<5 {
            let ours = members(ofSession: session).filter { pid in environment(of: pid).map { marks.isSubset(of: $0) } ?? false }
            if ours.isEmpty { break }
            for p in ours { kill(p, SIGKILL) }
        }
    }
}
