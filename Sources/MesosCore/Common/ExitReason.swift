/// Why a daemon's core tells its shell to exit. The shell logs it (`event=exit reason=<key>`) and
/// exits with `code`.
public enum ExitReason: Sendable, Hashable, CustomStringConvertible {
    /// SIGTERM: stepped down / stopped cleanly.
    case terminated
    /// A leading (or recovering) master lost leadership ("committing suicide").
    case lostLeadership(LeadershipLoss)
    /// A standby's candidacy ended (its session expired): it exits so a supervisor restarts it.
    case candidacyLost(LeadershipLoss)
    /// The registry shows an epoch at or above ours already led (the group was recreated).
    case epochAlreadyLed(epoch: UInt64, highest: UInt64)
    /// The registry could not be read or written.
    case registryUnavailable(String)
    /// A fenced registry write was refused: another master leads.
    case registryWriteFenced(String)
    /// After a failover, too many registered agents did not come back.
    case recoveryAgentRemovalLimit(missing: Int, registered: Int, limitPercent: Double)
    /// The master told this agent to shut down (removed from the cluster).
    case shutDownByMaster(String)
    /// SIGUSR1: the agent unregisters and kills its executors for good.
    case shutDownForGood
    /// The agent's checkpoint could not be recovered (`--strict`): the path and what is wrong.
    case recoveryFailed(path: String, problem: String)
    /// A checkpoint write failed: the agent stops before acting on what it could not persist
    /// (Mesos aborts); its checkpointed executors keep running for the next start.
    case checkpointFailed(path: String, problem: String)
    /// `--recover=cleanup`: the checkpointed executors were killed; nothing left to serve.
    case recoveryCleanedUp(executors: Int)
    /// An executor's task ended and its last update was taken by the agent.
    case taskCompleted
    /// An executor was told to shut down (by its agent) and its task is gone.
    case executorShutDown(String)
    /// An executor lost its agent: not checkpointing (at once), or not back within the recovery timeout.
    case agentGone(String)

    public var code: Int32 {
        switch self {
        case .terminated, .shutDownByMaster, .shutDownForGood, .recoveryCleanedUp, .taskCompleted, .executorShutDown: 0
        default: 1
        }
    }

    /// Stable key (`reason=` of `event=exit`).
    public var key: String {
        switch self {
        case .terminated: "terminated"
        case .lostLeadership: "lost_leadership"
        case .candidacyLost: "candidacy_lost"
        case .epochAlreadyLed: "epoch_already_led"
        case .registryUnavailable: "registry_unavailable"
        case .registryWriteFenced: "registry_write_fenced"
        case .recoveryAgentRemovalLimit: "recovery_agent_removal_limit"
        case .shutDownByMaster: "shut_down_by_master"
        case .shutDownForGood: "shut_down_for_good"
        case .recoveryFailed: "recovery_failed"
        case .checkpointFailed: "checkpoint_failed"
        case .recoveryCleanedUp: "recovery_cleaned_up"
        case .taskCompleted: "task_completed"
        case .executorShutDown: "executor_shut_down"
        case .agentGone: "agent_gone"
        }
    }

    public var description: String {
        switch self {
        case .terminated: "terminated"
        case .lostLeadership(let loss): "lost leadership: \(loss); committing suicide"
        case .candidacyLost(let loss): "candidacy lost while standing by: \(loss)"
        case .epochAlreadyLed(let epoch, let highest): "refusing to lead at epoch \(epoch): epoch \(highest) was already led (was the group recreated?)"
        case .registryUnavailable(let why): "the registry is unavailable: \(why)"
        case .registryWriteFenced(let why): "fenced registry write refused (\(why)): another master leads"
        case .recoveryAgentRemovalLimit(let missing, let registered, let limit):
            "Post-recovery agent removal limit exceeded: \(missing) of \(registered) agents did not re-register (limit \(limit)%)"
        case .shutDownByMaster(let message): "shut down by the master: \(message)"
        case .shutDownForGood: "shut down for good (SIGUSR1)"
        case .recoveryFailed(let path, let problem):
            "Failed to perform recovery: \(path): \(problem). To start afresh (its executors are then not recovered), remove the checkpoint: rm -f <work_dir>/meta/slaves/latest"
        case .checkpointFailed(let path, let problem): "cannot checkpoint \(path): \(problem); stopping before acting on it"
        case .recoveryCleanedUp(let n): "--recover=cleanup: \(n) checkpointed executor(s) killed"
        case .taskCompleted: "the task ended and its last status update was acknowledged"
        case .executorShutDown(let why): "shut down: \(why)"
        case .agentGone(let why): "the agent is gone: \(why)"
        }
    }
}

/// How a master's leadership (or candidacy) ended.
public enum LeadershipLoss: Sendable, Hashable, CustomStringConvertible {
    case sessionExpired
    case membershipDeleted
    /// The detector shows someone else (or nobody) while we lead.
    case otherLeaderDetected(Leader?)
    /// Joining or contending failed for good (e.g. a ZooKeeper error that is not retryable).
    case contenderFailed(String)

    public var key: String {
        switch self {
        case .sessionExpired: "session_expired"
        case .membershipDeleted: "membership_deleted"
        case .otherLeaderDetected: "other_leader_detected"
        case .contenderFailed: "contender_failed"
        }
    }

    public var description: String {
        switch self {
        case .sessionExpired: "ZooKeeper session expired"
        case .membershipDeleted: "our membership znode was deleted"
        case .otherLeaderDetected(let leader): "ZooKeeper shows \(leader.map { "\($0)" } ?? "no leader"), not us"
        case .contenderFailed(let why): why
        }
    }
}
