import MesosWire

public enum AgentObservation: Milestone, Hashable {
    case leaderDetected(Leader)
    case leaderBelowFloor(Leader, floor: UInt64)
    case masterless
    case registered(AgentID, Leader)
    case reregistered(AgentID, Leader)
    case masterPingsMissed(Duration)
    case linkToLeaderBroken(Leader)
    case messageDropped(from: String, epoch: UInt64, reason: EpochGuard.DropReason)
    case messageRefused(kind: String, reason: String)
    case killOfUnknownTask(TaskKey)
    case killingTask(TaskKey)
    case frameworkMessageDropped(ExecutorKey)
    case executorMessageRefused(from: String, kind: String, reason: String)
    case executorRegistered(ExecutorKey, PID)
    case executorReregistered(ExecutorKey, PID)
    case executorFailedToLaunch(ExecutorKey, reason: String)
    case executorRegistrationTimedOut(ExecutorKey)
    case executorReregistrationTimedOut(ExecutorKey)
    case shuttingDownExecutor(ExecutorKey, why: String)
    case executorShutdownTimedOut(ExecutorKey)
    case executorExited(ExecutorKey, status: Int32?)
    case updateAfterTerminal(TaskKey, TaskState)
    /// A status update entered the task's stream (from its executor, or made by the agent).
    case statusUpdate(TaskKey, TaskStatus)
    case checkpointEntrySkipped(path: String, problem: String)
    case executorUnrecoverable(ExecutorKey)
    /// The checkpoint was read: `executors` recovered, of which `live` wait to re-register.
    case recovered(AgentID?, executors: Int, live: Int)
    /// Recovery is over: `executors` re-registered, `timedOut` did not in time.
    case reconnected(executors: Int, timedOut: Int)
    /// The host rebooted and this start's agent info is incompatible with the checkpointed one:
    /// the old id is forgotten and the agent registers as a new one.
    case recoveringAsNewAgent(previous: AgentID, reason: String)
    case stopping(String, checkpointedExecutorsKept: Int)

    public var event: String {
        switch self {
        case .leaderDetected: "leader_detected"
        case .leaderBelowFloor: "leader_below_floor"
        case .masterless: "masterless"
        case .registered: "registered"
        case .reregistered: "reregistered"
        case .masterPingsMissed: "master_pings_missed"
        case .linkToLeaderBroken: "link_to_leader_broken"
        case .messageDropped: "message_dropped"
        case .messageRefused: "message_refused"
        case .killOfUnknownTask: "kill_of_unknown_task"
        case .killingTask: "killing_task"
        case .frameworkMessageDropped: "framework_message_dropped"
        case .executorMessageRefused: "executor_message_refused"
        case .executorRegistered: "executor_registered"
        case .executorReregistered: "executor_reregistered"
        case .executorFailedToLaunch: "executor_launch_failed"
        case .executorRegistrationTimedOut: "executor_registration_timed_out"
        case .executorReregistrationTimedOut: "executor_reregistration_timed_out"
        case .shuttingDownExecutor: "shutting_down_executor"
        case .executorShutdownTimedOut: "executor_shutdown_timed_out"
        case .executorExited: "executor_exited"
        case .updateAfterTerminal: "update_after_terminal"
        case .statusUpdate: "status_update"
        case .checkpointEntrySkipped: "checkpoint_entry_skipped"
        case .executorUnrecoverable: "executor_unrecoverable"
        case .recovered: "recovered"
        case .reconnected: "executors_reconnected"
        case .recoveringAsNewAgent: "recovering_as_new_agent"
        case .stopping: "stopping"
        }
    }

    public var level: ObservationLevel {
        switch self {
        case .leaderDetected, .registered, .reregistered, .killOfUnknownTask, .killingTask, .executorRegistered, .executorReregistered,
            .shuttingDownExecutor, .executorExited, .recovered, .reconnected, .stopping, .statusUpdate:
            .info
        case .messageDropped(_, _, let reason): reason == .staleEpoch || reason == .notFromLeader || reason == .unauthenticatedMaster ? .warning : .debug
        case .checkpointEntrySkipped, .executorUnrecoverable: .error
        case .frameworkMessageDropped, .updateAfterTerminal: .debug
        default: .warning
        }
    }

    public var fields: [MilestoneField] {
        switch self {
        case .leaderDetected(let l), .linkToLeaderBroken(let l): .of(("epoch", l.epoch), ("master", l.pid))
        case .leaderBelowFloor(let l, let floor): .of(("epoch", l.epoch), ("master", l.pid), ("floor", floor))
        case .masterless: []
        case .registered(let id, let l), .reregistered(let id, let l): .of(("agent_id", id.value), ("epoch", l.epoch), ("master", l.pid))
        case .masterPingsMissed(let d): .of(("timeout_ms", d.milliseconds))
        case .messageDropped(let from, let epoch, let r): .of(("from", from), ("epoch", epoch), ("reason", r.rawValue))
        case .messageRefused(let kind, _): .of(("kind", kind))
        case .killOfUnknownTask(let key), .killingTask(let key): .of(("framework_id", key.framework.value), ("task_id", key.task.value))
        case .updateAfterTerminal(let key, let s): .of(("framework_id", key.framework.value), ("task_id", key.task.value), ("state", s.protoName))
        case .executorMessageRefused(let from, let kind, _): .of(("from", from), ("kind", kind))
        case .statusUpdate(let key, let st):
            .of(("framework_id", key.framework.value), ("task_id", key.task.value), ("state", st.state.protoName), ("source", st.source?.protoName ?? "none"))
                + (st.reason.map { [MilestoneField("reason", $0.protoName)] } ?? [])
        case .executorRegistered(let k, let p), .executorReregistered(let k, let p): Self.executor(k) + .of(("executor_pid", p))
        case .executorExited(let k, let status): Self.executor(k) + .of(("status", status.map { "\($0)" } ?? "unknown"))
        case .frameworkMessageDropped(let k), .executorFailedToLaunch(let k, _), .executorRegistrationTimedOut(let k), .executorReregistrationTimedOut(let k),
            .shuttingDownExecutor(let k, _), .executorShutdownTimedOut(let k), .executorUnrecoverable(let k):
            Self.executor(k)
        case .checkpointEntrySkipped(let path, _): .of(("path", path))
        case .recovered(let id, let n, let live): .of(("agent_id", id?.value ?? "none"), ("executors", n), ("live", live))
        case .reconnected(let n, let t): .of(("executors", n), ("timed_out", t))
        case .recoveringAsNewAgent(let id, _): .of(("previous_agent_id", id.value))
        case .stopping(let reason, let kept): .of(("reason", reason), ("checkpointed_executors_kept", kept))
        }
    }

    private static func executor(_ k: ExecutorKey) -> [MilestoneField] { .of(("framework_id", k.framework.value), ("executor_id", k.executor.value)) }

    public var message: String {
        switch self {
        case .leaderDetected(let l): "new leader detected: \(l)"
        case .leaderBelowFloor(let l, let floor): "ignoring leader \(l): epoch below \(floor), the newest this agent has seen"
        case .masterless: "no leading master detected: master-less, ignoring master messages"
        case .registered(let id, let l): "registered with \(l) as agent \(id.value)"
        case .reregistered(let id, let l): "re-registered with \(l) as agent \(id.value)"
        case .masterPingsMissed(let d): "no ping from the master for \(d): re-registering"
        case .linkToLeaderBroken(let l): "the link to \(l) broke: re-registering"
        case .messageDropped(let from, let epoch, let r): "dropped message from \(from) at epoch \(epoch): \(r.explanation)"
        case .messageRefused(let kind, let r): "refused \(kind) from the master: \(r)"
        case .killOfUnknownTask(let key): "kill of unknown task \(key)"
        case .killingTask(let key): "asking the executor of \(key) to kill it"
        case .frameworkMessageDropped(let k): "framework message for executor \(k) dropped: it is not running (or no master)"
        case .executorMessageRefused(let from, let kind, let r): "refused \(kind) from \(from): \(r)"
        case .executorRegistered(let k, let p): "executor \(k) registered from \(p)"
        case .executorReregistered(let k, let p): "executor \(k) re-registered from \(p)"
        case .executorFailedToLaunch(let k, let r): "executor \(k) failed to launch: \(r)"
        case .executorRegistrationTimedOut(let k): "executor \(k) did not register in time: killing it"
        case .executorReregistrationTimedOut(let k): "executor \(k) did not re-register in time: killing it"
        case .shuttingDownExecutor(let k, let why): "shutting down executor \(k): \(why)"
        case .executorShutdownTimedOut(let k): "executor \(k) outlived its shutdown grace period: killing it"
        case .executorExited(let k, let s): "executor \(k) exited" + (s.map { " with status \($0)" } ?? "")
        case .updateAfterTerminal(let key, let s): "ignoring \(s.protoName) for \(key): the task already ended"
        case .statusUpdate(let key, let st): "\(st.state.protoName) for task \(key)" + (st.message.map { ": \($0)" } ?? "")
        case .checkpointEntrySkipped(let path, let p): "skipping checkpoint entry \(path) (--strict=false): \(p)"
        case .executorUnrecoverable(let k): "executor \(k) cannot be recovered: killing it"
        case .recovered(let id, let n, let live): "recovered agent \(id?.value ?? "(new)") from the checkpoint: \(n) executor(s), \(live) to reconnect"
        case .reconnected(let n, let t): "recovery done: \(n) executor(s) running, \(t) did not re-register"
        case .recoveringAsNewAgent(let id, let why): "falling back to recover as a new agent (the host rebooted): agent info incompatible with agent \(id.value)'s: \(why)"
        case .stopping(let reason, let kept): "stopping (\(reason)); \(kept) checkpointed executor(s) keep running"
        }
    }
}
