import Foundation
import MesosDaemon

/// An executor an agent launched, as its `event=executor_launched` milestone names it: its
/// process (the leader of its own session: it outlives its agent) and its sandbox, where its log
/// (`stderr`, with the task's output) is.
public struct LaunchedExecutor: Sendable, Hashable, CustomStringConvertible {
    public let framework: String
    public let executor: String
    public let task: String
    public let process: pid_t
    public let directory: String

    /// "framework/task".
    public var taskKey: String { "\(framework)/\(task)" }
    public var description: String { "executor \(framework)/\(executor) (process \(process))" }

    /// The executor's milestones (its log shares `stderr` with the task's output).
    public var milestones: [Milestone] {
        let text = (try? String(contentsOfFile: directory + "/stderr", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { Milestone(String($0)) }
    }

    public func milestones(_ event: String, _ matching: [String: String] = [:]) -> [Milestone] {
        milestones.filter { $0.matches(event, matching) }
    }

    @discardableResult
    public func waitFor(_ event: String, _ matching: [String: String] = [:], timeout: Duration = .seconds(10)) async throws -> Milestone {
        var found: Milestone?
        try await Poll.until("event=\(event) in the log of \(self)", timeout: timeout) {
            found = milestones(event, matching).first
            return found != nil
        }
        return found!
    }

    /// The task's process id, once the executor started it.
    public var taskPID: pid_t? { milestones("task_started").last?["task_pid"].flatMap { pid_t($0) } }

    /// Whether the executor process still runs.
    public var isRunning: Bool { ProcessProbe.isRunning(process, program: "mesos-executor") }

    /// SIGKILLs the executor and everything in its session (its task): test cleanup, by pid.
    public func killSession() { ProcessProbe.killSession(process, marks: ["MESOS_FRAMEWORK_ID=\(framework)", "MESOS_EXECUTOR_ID=\(executor)"]) }
}

extension Daemon {
    /// The executors this agent launched, oldest first (a restarted agent's log holds every run's).
    public var launchedExecutors: [LaunchedExecutor] {
        milestones("executor_launched").compactMap { m in
            guard let fw = m["framework_id"], let e = m["executor_id"], let t = m["task_id"], let p = m["executor_process"].flatMap({ pid_t($0) }), let d = m["directory"] else { return nil }
            return LaunchedExecutor(framework: fw, executor: e, task: t, process: p, directory: d)
        }
    }
}
