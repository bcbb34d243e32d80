import MesosWire

/// Why an agent left the cluster.
public enum AgentRemovalReason: Sendable, Hashable, CustomStringConvertible {
    case missedPings(count: Int, timeout: Duration)
    case notReregistered(after: Duration)
    /// The agent shut down for good (SIGUSR1) and said so.
    case unregistered

    public var key: String {
        switch self {
        case .missedPings: "missed_pings"
        case .notReregistered: "not_reregistered"
        case .unregistered: "unregistered"
        }
    }

    public var description: String {
        switch self {
        case .missedPings(let n, let t): "missed \(n) consecutive pings (\(t) each)"
        case .notReregistered(let t): "did not re-register within \(t) after failover"
        case .unregistered: "unregistered (shut down for good)"
        }
    }
}

/// Why a framework was removed.
public enum FrameworkRemovalReason: String, Sendable, Hashable {
    /// Its scheduler unregistered (the driver's `stop(failover: false)`).
    case unregistered
    /// Its scheduler did not come back within `failover_timeout`.
    case failoverTimeout = "failover_timeout"
    /// `POST /master/teardown`.
    case teardownByOperator = "teardown"
}

/// Why a framework (re)registration was refused. The message is what the scheduler is told.
public enum FrameworkRefusal: Sendable, Hashable, CustomStringConvertible {
    case removed
    case failedOver
    case invalid(InvalidValue)
    case principalMismatch(claimed: String?, authenticated: String?)

    public var key: String {
        switch self {
        case .removed: "removed"
        case .failedOver: "failed_over"
        case .invalid: "invalid"
        case .principalMismatch: "principal_mismatch"
        }
    }

    /// Mesos's texts where Mesos has one.
    public var description: String {
        switch self {
        case .removed: "Framework has been removed"
        case .failedOver: "Framework failed over"
        case .invalid(let v): "Invalid FrameworkInfo: \(v)"
        case .principalMismatch(let c, let a):
            "Framework principal '\(c ?? "")' does not match the authenticated principal '\(a ?? "")'"
        }
    }
}

/// What the master reports to its shell (logged once each with `event=<key>`).
public enum MasterObservation: Milestone, Hashable {
    case elected(epoch: UInt64)
    case leading(epoch: UInt64, agentsExpected: Int)
    /// Registrations that arrived while the registry was recovered, acted on now (`RecoveryBacklog`).
    case recoveryBacklogReplayed(count: Int)
    case agentRegistered(AgentID, pid: PID)
    /// `tasks`: the live tasks the master now knows on it.
    case agentReregistered(AgentID, pid: PID, tasks: Int)
    case agentRefused(pid: PID, reason: String)
    case agentRemoved(AgentID, reason: AgentRemovalReason)
    case removedAgentToldToShutDown(pid: PID)
    case agentsNotReregistered(count: Int)
    /// `--agent_removal_rate_limit`: the agent waits for a removal permit (`queued`: removals
    /// waiting, this one included), for missed health checks or (`afterFailover`) for not
    /// re-registering within `agentReregisterTimeout` after a failover.
    case agentRemovalScheduled(AgentID, queued: Int, afterFailover: Bool = false)
    /// A scheduled removal was called off: the agent answered a ping meanwhile.
    case agentRemovalCanceled(AgentID)
    /// `--registry_gc_interval`: removed agents forgotten, oldest first, `byAge` of them for
    /// `--registry_max_agent_age` and `byCount` for `--registry_max_agent_count`.
    case registryPruned(byAge: Int, byCount: Int)
    case frameworkRegistered(FrameworkID, name: String, pid: PID)
    case frameworkReregistered(FrameworkID, pid: PID)
    case frameworkFailedOver(FrameworkID, from: FrameworkConnection, to: FrameworkConnection)
    /// A v1 scheduler subscribed (`POST /api/v1/scheduler` SUBSCRIBE) on this event stream.
    case frameworkSubscribed(FrameworkID, name: String, stream: StreamID)
    /// A SUBSCRIBE refused after its stream opened (one ERROR event, then the stream ends).
    case subscriptionRefused(stream: StreamID, reason: FrameworkRefusal)
    /// A v1 call answered with a 4xx (the framework's stream is unaffected).
    case httpCallRefused(framework: FrameworkID, kind: String, status: Int, reason: String)
    case frameworkRecovered(FrameworkID, fromAgent: AgentID)
    case frameworkDisconnected(FrameworkID, failoverTimeout: Duration)
    case frameworkRemoved(FrameworkID, reason: FrameworkRemovalReason)
    case frameworkRefused(pid: PID, reason: FrameworkRefusal)
    case callRefused(from: PID, kind: String, reason: String)
    case messageDropped(from: String, reason: EpochGuard.DropReason)
    case messageRefused(from: PID, kind: String, reason: String)
    case unexpectedMessage(from: PID, kind: String)
    case executorExited(agent: AgentID, framework: FrameworkID, executor: ExecutorID, status: Int32)
    case tasksReconciledWithAgent(AgentID, count: Int)

    public var event: String {
        switch self {
        case .elected: "elected"
        case .leading: "leading"
        case .recoveryBacklogReplayed: "recovery_backlog_replayed"
        case .agentRegistered: "agent_registered"
        case .agentReregistered: "agent_reregistered"
        case .agentRefused: "agent_refused"
        case .agentRemoved: "agent_removed"
        case .removedAgentToldToShutDown: "removed_agent_shutdown"
        case .agentsNotReregistered: "agents_not_reregistered"
        case .agentRemovalScheduled: "agent_removal_scheduled"
        case .agentRemovalCanceled: "agent_removal_canceled"
        case .registryPruned: "registry_pruned"
        case .frameworkRegistered: "framework_registered"
        case .frameworkReregistered: "framework_reregistered"
        case .frameworkFailedOver: "framework_failed_over"
        case .frameworkSubscribed: "framework_subscribed"
        case .subscriptionRefused: "subscription_refused"
        case .httpCallRefused: "http_call_refused"
        case .frameworkRecovered: "framework_recovered"
        case .frameworkDisconnected: "framework_disconnected"
        case .frameworkRemoved: "framework_removed"
        case .frameworkRefused: "framework_refused"
        case .callRefused: "call_refused"
        case .messageDropped: "message_dropped"
        case .messageRefused: "message_refused"
        case .unexpectedMessage: "unexpected_message"
        case .executorExited: "executor_exited"
        case .tasksReconciledWithAgent: "tasks_reconciled_with_agent"
        }
    }

    public var level: ObservationLevel {
        switch self {
        case .messageDropped(_, let reason): reason == .wrongPeerRole ? .warning : .debug
        case .agentRefused, .agentRemoved, .agentsNotReregistered, .agentRemovalScheduled, .frameworkRefused, .messageRefused, .unexpectedMessage,
            .callRefused, .frameworkDisconnected, .frameworkRemoved, .subscriptionRefused, .httpCallRefused:
            .warning
        default: .info
        }
    }

    public var fields: [MilestoneField] {
        switch self {
        case .elected(let e): .of(("epoch", e))
        case .leading(let e, let n): .of(("epoch", e), ("agents_expected", n))
        case .recoveryBacklogReplayed(let n): .of(("count", n))
        case .agentRegistered(let id, let pid): .of(("agent_id", id.value), ("agent", pid))
        case .agentReregistered(let id, let pid, let n): .of(("agent_id", id.value), ("agent", pid), ("tasks", n))
        case .agentRefused(let pid, _): .of(("agent", pid))
        case .agentRemoved(let id, let r): .of(("agent_id", id.value), ("reason", r.key))
        case .removedAgentToldToShutDown(let pid): .of(("agent", pid))
        case .agentsNotReregistered(let n): .of(("count", n))
        case .agentRemovalScheduled(let id, let n, let failover): .of(("agent_id", id.value), ("queued", n), ("cause", failover ? "not_reregistered" : "missed_pings"))
        case .agentRemovalCanceled(let id): .of(("agent_id", id.value))
        case .registryPruned(let a, let c): .of(("by_age", a), ("by_count", c))
        case .frameworkRegistered(let id, _, let pid), .frameworkReregistered(let id, let pid): .of(("framework_id", id.value), ("scheduler", pid))
        case .frameworkFailedOver(let id, let a, let b): .of(("framework_id", id.value), ("old", a), ("scheduler", b))
        case .frameworkSubscribed(let id, _, let stream): .of(("framework_id", id.value), ("stream_id", stream.value))
        case .subscriptionRefused(let stream, let r): .of(("stream_id", stream.value), ("reason", r.key))
        case .httpCallRefused(let id, let kind, let status, _): .of(("framework_id", id.value), ("kind", kind), ("status", status))
        case .frameworkRecovered(let id, let agent): .of(("framework_id", id.value), ("agent_id", agent.value))
        case .frameworkDisconnected(let id, let t): .of(("framework_id", id.value), ("failover_timeout_ms", t.milliseconds))
        case .frameworkRemoved(let id, let r): .of(("framework_id", id.value), ("reason", r.rawValue))
        case .frameworkRefused(let pid, let r): .of(("scheduler", pid), ("reason", r.key))
        case .callRefused(let from, let kind, _): .of(("from", from), ("kind", kind))
        case .messageDropped(let from, let r): .of(("from", from), ("reason", r.rawValue))
        case .messageRefused(let from, let kind, _): .of(("from", from), ("kind", kind))
        case .unexpectedMessage(let from, let kind): .of(("from", from), ("kind", kind))
        case .executorExited(let a, let f, let e, let status): .of(("agent_id", a.value), ("framework_id", f.value), ("executor_id", e.value), ("status", status))
        case .tasksReconciledWithAgent(let id, let n): .of(("agent_id", id.value), ("count", n))
        }
    }

    public var message: String {
        switch self {
        case .elected(let e): "elected leader at epoch \(e); recovering the registry"
        case .leading(let e, let n): "leading at epoch \(e) with \(n) agent(s) expected to re-register"
        case .recoveryBacklogReplayed(let n): "answering \(n) registration(s) received while recovering the registry"
        case .agentRegistered(let id, let pid): "agent \(id.value) at \(pid) registered"
        case .agentReregistered(let id, let pid, let n): "agent \(id.value) at \(pid) re-registered with \(n) live task(s)"
        case .agentRefused(let pid, let r): "refusing agent \(pid): \(r)"
        case .agentRemoved(let id, let r): "removing agent \(id.value): \(r)"
        case .removedAgentToldToShutDown(let pid): "message from removed agent \(pid): telling it to shut down"
        case .agentsNotReregistered(let n): "removing \(n) agent(s) that did not re-register"
        case .agentRemovalScheduled(let id, let n, let failover):
            "agent \(id.value) \(failover ? "did not re-register after the failover" : "missed its health checks"); its removal waits for the rate limit (\(n) queued)"
        case .agentRemovalCanceled(let id): "agent \(id.value) answered a ping: its scheduled removal is canceled"
        case .registryPruned(let a, let c): "registry GC forgot \(a + c) removed agent(s): \(a) older than the maximum age, \(c) above the maximum count"
        case .frameworkRegistered(let id, let name, let pid): "framework \(id.value) (\(name)) registered from \(pid)"
        case .frameworkReregistered(let id, let pid): "framework \(id.value) re-registered from \(pid)"
        case .frameworkFailedOver(let id, let a, let b): "framework \(id.value) failed over from \(a) to \(b)"
        case .frameworkSubscribed(let id, let name, let stream): "framework \(id.value) (\(name)) subscribed over HTTP, stream \(stream.value)"
        case .subscriptionRefused(let stream, let r): "refusing subscription on stream \(stream.value): \(r)"
        case .httpCallRefused(let id, let kind, let status, let r): "refusing \(kind) call of framework \(id.value) with \(status): \(r)"
        case .frameworkRecovered(let id, let agent): "recovering framework \(id.value) from re-registering agent \(agent.value)"
        case .frameworkDisconnected(let id, let t): "framework \(id.value) disconnected; giving it \(t) to fail over"
        case .frameworkRemoved(let id, let r): "removing framework \(id.value) (\(r.rawValue))"
        case .frameworkRefused(let pid, let r): "refusing framework registration from \(pid): \(r)"
        case .callRefused(let from, let kind, let r): "refusing \(kind) from \(from): \(r)"
        case .messageDropped(let from, let r): "dropped message from \(from): \(r.explanation)"
        case .messageRefused(let from, let kind, let r): "refusing \(kind) from \(from): \(r)"
        case .unexpectedMessage(let from, let kind): "unexpected message \(kind) from \(from)"
        case .executorExited(let a, let f, let e, let status): "executor \(f.value)/\(e.value) on agent \(a.value) exited with status \(status)"
        case .tasksReconciledWithAgent(let id, let n): "asking agent \(id.value) about \(n) task(s) it did not report"
        }
    }
}
