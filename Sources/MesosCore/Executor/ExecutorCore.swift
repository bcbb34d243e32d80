import MesosWire

/// What `ExecutorCore` is configured with: Mesos's environment of an executor
/// (src/slave/slave.cpp `executorEnvironment`).
public struct ExecutorSettings: Sendable, Hashable {
    /// MESOS_CHECKPOINT: the framework checkpoints, so the executor outlives its agent for
    /// `recoveryTimeout`, waiting for the restarted agent to reconnect.
    public var checkpoint = false
    /// MESOS_RECOVERY_TIMEOUT (`--recovery_timeout`, 15mins).
    public var recoveryTimeout: Duration = .seconds(900)
    /// MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD (5secs): a shutdown gives the task this long.
    public var shutdownGracePeriod: Duration = .seconds(5)
    /// Between SIGTERM and SIGKILL when a task is killed (Mesos's command executor: 3secs).
    public var killGracePeriod: Duration = .seconds(3)

    public init() {}
}

/// How a task's process ended.
public enum TaskExit: Sendable, Hashable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// Its status could not be collected (Mesos: "Failed to get exit status").
    case unknown

    /// The shells' folded convention (a daemon's exit code, or 128 + signal), where nothing
    /// better is known.
    public init(shellCode code: Int32) { self = code > 128 ? .signaled(code - 128) : .exited(code) }

    /// Mesos's WSTRINGIFY: "exited with status N", "terminated with signal N".
    public var description: String {
        switch self {
        case .exited(let c): "exited with status \(c)"
        case .signaled(let s): "terminated with signal \(TaskExit.signalName(s))"
        case .unknown: "ended; its exit status could not be collected"
        }
    }

    static func signalName(_ s: Int32) -> String {
        let names: [Int32: String] = [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM"]
        return names[s] ?? "\(s)"
    }
}

/// Mesos's command executor (src/launcher/executor.cpp with the v0 driver, src/exec/exec.cpp):
/// registers with its agent, runs one task as its child, reports the task's states with
/// updates that it keeps until the agent acknowledges them, and survives an agent restart when
/// its framework checkpoints (the restarted agent sends ReconnectExecutor; the executor answers
/// with everything unacknowledged). Pure: events in, effects out.
public struct ExecutorCore: Sendable {
    public enum Event: Sendable, Hashable {
        /// The executor's bus listens: register.
        case started(now: Duration)
        case message(Inbound)
        case linkBroken(endpoint: String)
        case tick(now: Duration)
        /// The task's process runs.
        case taskStarted(pid: Int32)
        case taskFailedToStart(reason: String)
        case taskExited(TaskExit)
        /// SIGTERM to the executor itself: as a shutdown from its agent.
        case shutdownRequested
    }

    public enum TaskSignal: Sendable, Hashable { case terminate, kill }

    public enum Effect: Sendable, Hashable {
        /// To the agent (epoch 0: executors follow no leader).
        case send(Envelope.Payload, to: PID)
        /// Start the task's process (a child of the executor, in its own process group).
        case launchTask(TaskInfo)
        /// Signal the task's process group.
        case signalTask(TaskSignal)
        case observe(ExecutorObservation)
        case exit(ExitReason)
    }

    public let settings: ExecutorSettings
    public let frameworkID: FrameworkID
    public let executorID: ExecutorID
    public let agentID: AgentID
    public private(set) var agent: PID
    public private(set) var connected = false
    public private(set) var task: TaskInfo?
    private var framework: FrameworkInfo?
    private var launched = false
    private var taskEnded = false
    private var killing = false
    private var escalateAt: Duration?
    private var killGrace: Duration = .zero
    /// Updates the agent has not acknowledged, oldest first.
    public private(set) var unacknowledged: [StatusUpdate] = []
    private var disconnectedAt: Duration?
    /// A ReconnectExecutor that came while the link to the agent still looked up.
    private var pendingReconnect: PID?
    private var shuttingDown: String?
    private var exitAt: Duration?
    private var exited = false
    private var now: Duration = .zero
    private var rng: SplitMix64

    public init(agent: PID, agentID: AgentID, frameworkID: FrameworkID, executorID: ExecutorID, seed: UInt64 = 0, settings: ExecutorSettings = ExecutorSettings()) {
        self.agent = agent
        self.agentID = agentID
        self.frameworkID = frameworkID
        self.executorID = executorID
        self.settings = settings
        rng = SplitMix64(seed: seed)
    }

    public mutating func handle(_ event: Event) -> [Effect] {
        if exited { return [] }
        switch event {
        case .started(let t):
            now = t
            return [.send(.registerExecutor(RegisterExecutorMessage(frameworkID: frameworkID, executorID: executorID)), to: agent)]
        case .message(let inbound):
            return receive(inbound)
        case .linkBroken(let endpoint):
            guard endpoint == agent.endpoint, connected || task == nil else { return [] }
            if connected && settings.checkpoint {
                connected = false
                disconnectedAt = now
                let old = agent
                if let next = pendingReconnect {
                    pendingReconnect = nil
                    return [.observe(.agentDisconnected(old, waiting: settings.recoveryTimeout))] + reconnect(to: next)
                }
                return [.observe(.agentDisconnected(old, waiting: settings.recoveryTimeout))]
            }
            connected = false
            return shutdown(because: settings.checkpoint ? "the link to the agent broke before it registered this executor" : "the link to the agent broke and the framework does not checkpoint", gone: true)
        case .tick(let t):
            now = max(now, t)
            return timers()
        case .taskStarted(let pid):
            guard task != nil, !taskEnded else { return [] }
            launched = true
            let effects: [Effect] = [.observe(.taskStarted(pid: pid))]
            if killing {
                // A kill came while it was starting: no RUNNING after KILLING; the grace starts now.
                escalateAt = now + killGrace
                return effects + [.signalTask(.terminate)]
            }
            return effects + update(.running, message: nil)
        case .taskFailedToStart(let reason):
            guard task != nil, !taskEnded else { return [] }
            taskEnded = true
            return update(.failed, message: "Failed to launch the task: \(reason)", reason: .containerLaunchFailed) + exitIfDone()
        case .taskExited(let exit):
            guard task != nil, !taskEnded else { return [] }
            taskEnded = true
            escalateAt = nil
            let state: TaskState = killing ? .killed : (exit == .exited(0) ? .finished : .failed)
            let message = exit == .unknown ? "Failed to get exit status for Command" : "Command \(exit)"
            return [.observe(.taskExited(exit))] + update(state, message: message) + exitIfDone()
        case .shutdownRequested:
            return shutdown(because: "SIGTERM", gone: false)
        }
    }

    // MARK: Messages

    private mutating func receive(_ inbound: Inbound) -> [Effect] {
        let envelope = inbound.envelope
        guard let payload = envelope.payload else { return [] }
        do {
            try MessageValidation.validate(payload)
        } catch {
            return [.observe(.messageRefused(from: envelope.from, kind: payload.kind, reason: error.description))]
        }
        // A restarted agent may listen elsewhere: it proves itself by our agent's id.
        if case .reconnectExecutor(let m) = payload {
            // From its agent's host, naming its agent; and only once the link to the old agent is
            // down (a restarted agent may ask before that is noticed: the ask waits for it), so a
            // process that merely knows the agent id cannot take a live executor over.
            guard m.agentID == agentID, let from = PID(envelope.from), from.host == agent.host else {
                return [.observe(.messageRefused(from: envelope.from, kind: payload.kind, reason: "not agent \(agentID.value) on \(agent.host)"))]
            }
            if connected {
                pendingReconnect = from
                return [.observe(.reconnectWaiting(from))]
            }
            return reconnect(to: from)
        }
        guard envelope.from == agent.description else {
            return [.observe(.messageRefused(from: envelope.from, kind: payload.kind, reason: "not from this executor's agent \(agent)"))]
        }
        switch payload {
        case .executorRegistered(let m):
            guard !connected else { return [] }
            connected = true
            framework = m.frameworkInfo
            return [.observe(.registered(agent))]
        case .executorReregistered:
            guard !connected else { return [] }
            connected = true
            disconnectedAt = nil
            // Updates made since the ReregisterExecutor went out are sent now (all unacknowledged
            // ones again: the agent recognises those it has by their uuid).
            return [.observe(.reregistered(agent))] + unacknowledged.map { .send(.statusUpdate(StatusUpdateMessage(update: $0)), to: agent) } + exitIfDone()
        case .runTask(let m):
            guard connected, shuttingDown == nil else { return [] }
            guard task == nil else {
                if task?.taskID == m.task.taskID { return [] }  // a duplicate
                // Mesos: one task per command executor.
                return updateOf(m.task.taskID, .failed, message: "Attempted to run multiple tasks using a \"command\" executor", reason: .taskInvalid)
            }
            task = m.task
            framework = m.framework
            guard let command = m.task.command?.value, !command.isEmpty else {
                taskEnded = true
                return update(.failed, message: "The task has no command", reason: .taskInvalid) + exitIfDone()
            }
            return [.observe(.launching(m.task.taskID))] + update(.starting, message: nil) + [.launchTask(m.task)]
        case .killTask(let m):
            guard let task, m.taskID == task.taskID else { return [] }
            return kill(grace: settings.killGracePeriod)
        case .statusUpdateAck(let m):
            guard let i = unacknowledged.firstIndex(where: { $0.uuid == m.uuid }) else { return [] }
            unacknowledged.remove(at: i)
            return exitIfDone()
        case .shutdownExecutor:
            return shutdown(because: "the agent asked", gone: false)
        case .frameworkToExecutor(let m):
            // The command executor has no use for framework messages (as Mesos's).
            return [.observe(.frameworkMessage(bytes: m.data.count))]
        default:
            return []
        }
    }

    /// A restarted agent asked: hand it everything unacknowledged.
    private mutating func reconnect(to from: PID) -> [Effect] {
        agent = from
        return [
            .observe(.reconnecting(from)),
            .send(.reregisterExecutor(ReregisterExecutorMessage(executorID: executorID, frameworkID: frameworkID, tasks: unacknowledgedTasks, updates: unacknowledged)), to: agent),
        ]
    }

    /// The task, while any of its updates is unacknowledged (Mesos's `tasks` of the driver).
    private var unacknowledgedTasks: [TaskInfo] {
        guard let task, !(taskEnded && unacknowledged.isEmpty) else { return [] }
        return [task]
    }

    // MARK: Task

    private mutating func kill(grace: Duration) -> [Effect] {
        guard !taskEnded else { return [] }
        if killing {
            // A repeated kill may only shorten the grace period.
            if let at = escalateAt, now + grace < at { escalateAt = now + grace }
            return []
        }
        killing = true
        killGrace = grace
        escalateAt = launched ? now + grace : nil  // not started yet: the grace starts when it does
        var effects: [Effect] = [.observe(.killingTask(grace: grace))]
        if framework?.capabilities.contains(where: { $0.type == .taskKillingState }) == true {
            effects += update(.killing, message: nil)
        }
        if launched { effects.append(.signalTask(.terminate)) }
        return effects
    }

    private mutating func shutdown(because why: String, gone: Bool) -> [Effect] {
        guard shuttingDown == nil else { return [] }
        shuttingDown = why
        let effects: [Effect] = [.observe(.shuttingDown(why))]
        exitAt = now + settings.shutdownGracePeriod
        if task == nil || (taskEnded && (unacknowledged.isEmpty || !connected)) {
            exited = true
            return effects + [.exit(gone ? .agentGone(why) : .executorShutDown(why))]
        }
        if taskEnded { return effects }  // its last updates are on their way: exit once taken (or at exitAt)
        // Mesos: the task gets the shutdown grace period less 2 s, to report before the agent's SIGKILL.
        let grace = max(settings.shutdownGracePeriod - .seconds(2), .milliseconds(500))
        return effects + kill(grace: min(settings.killGracePeriod, grace))
    }

    /// When the next of its timers is due (the kill's escalation, the recovery timeout, the exit
    /// after a shutdown's grace), nil when none runs: the shell ticks coarsely and wakes for it.
    public var nextDeadline: Duration? {
        [
            taskEnded ? nil : escalateAt,
            connected ? nil : disconnectedAt.map { $0 + settings.recoveryTimeout },
            exited ? nil : exitAt,
        ].compactMap { $0 }.min()
    }

    private mutating func timers() -> [Effect] {
        var effects: [Effect] = []
        if let at = escalateAt, now >= at, !taskEnded {
            escalateAt = nil
            effects += [.observe(.escalatingKill), .signalTask(.kill)]
        }
        if let since = disconnectedAt, !connected, now - since >= settings.recoveryTimeout {
            disconnectedAt = nil
            effects += [.observe(.recoveryTimedOut(settings.recoveryTimeout))]
            effects += shutdown(because: "the agent did not reconnect within \(settings.recoveryTimeout)", gone: true)
        }
        if let at = exitAt, now >= at, !exited {
            exited = true
            effects.append(.exit(.executorShutDown(shuttingDown ?? "shut down")))
        }
        return effects
    }

    /// The task ended and the agent has every update (or, shutting down, nobody will take them).
    private mutating func exitIfDone() -> [Effect] {
        guard taskEnded, !exited else { return [] }
        if unacknowledged.isEmpty {
            exited = true
            return [.exit(shuttingDown.map { .executorShutDown($0) } ?? .taskCompleted)]
        }
        if shuttingDown != nil && !connected {
            exited = true
            return [.exit(.agentGone(shuttingDown ?? ""))]
        }
        return []
    }

    // MARK: Status updates

    private mutating func update(_ state: TaskState, message: String?, reason: TaskStatus.Reason? = nil) -> [Effect] {
        guard let task else { return [] }
        return updateOf(task.taskID, state, message: message, reason: reason)
    }

    /// Mesos's ExecutorProcess::sendStatusUpdate: a fresh uuid, kept until acknowledged. Sent
    /// once; unacknowledged updates go again only in ReregisterExecutor (as Mesos).
    private mutating func updateOf(_ taskID: TaskID, _ state: TaskState, message: String?, reason: TaskStatus.Reason?) -> [Effect] {
        var uuid: [UInt8] = []
        for _ in 0..<2 { withUnsafeBytes(of: rng.next().littleEndian) { uuid += $0 } }
        let status = TaskStatus(taskID: taskID, state: state, message: message, source: .executor, reason: reason, agentID: agentID, timestamp: now.inSeconds, uuid: uuid)
        let u = StatusUpdate(frameworkID: frameworkID, status: status, timestamp: now.inSeconds, uuid: uuid, agentID: agentID, executorID: executorID)
        if taskID == task?.taskID { unacknowledged.append(u) }
        guard connected else { return [.observe(.updateQueued(state))] }
        return [.send(.statusUpdate(StatusUpdateMessage(update: u)), to: agent)]
    }
}

public enum ExecutorObservation: Milestone, Hashable {
    case registered(PID)
    case reregistered(PID)
    case reconnecting(PID)
    case reconnectWaiting(PID)
    case agentDisconnected(PID, waiting: Duration)
    case recoveryTimedOut(Duration)
    case launching(TaskID)
    case taskStarted(pid: Int32)
    case taskExited(TaskExit)
    case killingTask(grace: Duration)
    case escalatingKill
    case shuttingDown(String)
    case updateQueued(TaskState)
    case frameworkMessage(bytes: Int)
    case messageRefused(from: String, kind: String, reason: String)

    public var event: String {
        switch self {
        case .registered: "executor_registered"
        case .reregistered: "executor_reregistered"
        case .reconnecting: "reconnecting"
        case .reconnectWaiting: "reconnect_waiting"
        case .agentDisconnected: "agent_disconnected"
        case .recoveryTimedOut: "recovery_timed_out"
        case .launching: "launching_task"
        case .taskStarted: "task_started"
        case .taskExited: "task_exited"
        case .killingTask: "killing_task"
        case .escalatingKill: "kill_escalated"
        case .shuttingDown: "shutting_down"
        case .updateQueued: "update_queued"
        case .frameworkMessage: "framework_message"
        case .messageRefused: "message_refused"
        }
    }

    public var level: ObservationLevel {
        switch self {
        case .agentDisconnected, .recoveryTimedOut, .escalatingKill, .messageRefused: .warning
        case .updateQueued, .frameworkMessage: .debug
        default: .info
        }
    }

    public var fields: [MilestoneField] {
        switch self {
        case .registered(let p), .reregistered(let p), .reconnecting(let p), .reconnectWaiting(let p): .of(("agent", p))
        case .agentDisconnected(let p, let d): .of(("agent", p), ("recovery_timeout_ms", d.milliseconds))
        case .recoveryTimedOut(let d): .of(("recovery_timeout_ms", d.milliseconds))
        case .launching(let t): .of(("task_id", t.value))
        case .taskStarted(let pid): .of(("task_pid", pid))
        case .taskExited(let e): .of(("status", e))
        case .killingTask(let g): .of(("grace_ms", g.milliseconds))
        case .escalatingKill: []
        case .shuttingDown: []
        case .updateQueued(let s): .of(("state", s.protoName))
        case .frameworkMessage(let n): .of(("bytes", n))
        case .messageRefused(let from, let kind, _): .of(("from", from), ("kind", kind))
        }
    }

    public var message: String {
        switch self {
        case .registered(let p): "registered with agent \(p)"
        case .reregistered(let p): "re-registered with the restarted agent \(p)"
        case .reconnecting(let p): "the restarted agent \(p) asked to reconnect: re-registering with every unacknowledged update"
        case .reconnectWaiting(let p): "\(p) asked to reconnect while the link to the agent is up: waiting for it to break"
        case .agentDisconnected(let p, let d): "the link to agent \(p) broke: waiting \(d) for it to recover"
        case .recoveryTimedOut(let d): "the agent did not come back within \(d): shutting down"
        case .launching(let t): "launching task \(t.value)"
        case .taskStarted(let pid): "task process \(pid) started"
        case .taskExited(let e): "the task \(e)"
        case .killingTask(let g): "killing the task: SIGTERM, SIGKILL after \(g)"
        case .escalatingKill: "the task outlived its grace period: SIGKILL"
        case .shuttingDown(let why): "shutting down: \(why)"
        case .updateQueued(let s): "\(s.protoName) kept until the agent is back"
        case .frameworkMessage(let n): "framework message of \(n) bytes ignored (command executor)"
        case .messageRefused(let from, let kind, let r): "refused \(kind) from \(from): \(r)"
        }
    }
}
