import MesosWire

/// A task the agent runs, with what it needs to report it to a new leader.
public struct AgentTask: Sendable, Hashable {
    public var info: TaskInfo
    public var frameworkID: FrameworkID
    public var executorID: ExecutorID
    public var state: TaskState
    public var latest: TaskStatus?

    public var key: TaskKey { TaskKey(framework: frameworkID, task: info.taskID) }
    public var executor: ExecutorKey { ExecutorKey(framework: frameworkID, executor: executorID) }
}

/// A framework with executors on this agent.
public struct AgentFramework: Sendable, Hashable {
    public var info: FrameworkInfo
    /// The scheduler's PID, as the master gave it.
    public var pid: String

    public var checkpoint: Bool { info.checkpoint }
    public var isPartitionAware: Bool { info.capabilities.contains { $0.type == .partitionAware } }
}

/// An executor on this agent (Mesos's `Executor`): launched for a task, registered when its
/// process announces itself, terminated when its process is gone.
public struct AgentExecutor: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
        /// Launched (or recovered from the checkpoint) and not yet (re-)registered.
        case registering
        case running
        /// Told to shut down, or killed: waiting for its process to end.
        case terminating
        /// Its process is gone.
        case terminated
    }

    public var key: ExecutorKey
    public var info: ExecutorInfo
    /// The run (Mesos's container id): its checkpoint and sandbox directory.
    public var run: String
    public var checkpoint: Bool
    public var state: State
    /// Its bus PID, once it registered.
    public var pid: PID?
    /// From the checkpoint: it must re-register, not register.
    public var recovered: Bool
    /// Tasks to hand it once it registers.
    public var queued: [TaskID] = []
    /// Registration deadline (launch) or re-registration deadline (recovery).
    var deadline: Duration?
    /// Why the agent ended it: the terminal state of its tasks that are still live.
    var termination: Termination?
}

struct Termination: Sendable, Hashable {
    var state: TaskState
    var reason: TaskStatus.Reason
    var message: String
}

/// The agent: leader following (through `LeaderFollower`), (re)registration with backoff, tasks
/// keyed by (framework, task), each run by its own command executor; status updates from
/// executors checkpointed, acknowledged to the executor, and forwarded to the master until it
/// acknowledges them, in order per task; recovery from the checkpoint after a restart.
/// Pure: events in, effects out; randomness from a seeded generator so tests are repeatable.
///
/// The first event MUST be `.recovered` (an empty state for a fresh agent): until then the
/// agent does not register.
public struct AgentCore: Sendable {
    public enum Event: Sendable, Hashable {
        /// What the shell read from the checkpoint, each executor's liveness filled in.
        case recovered(AgentRecoveryState)
        case leaderDetected(Leader?)
        case message(Inbound)
        /// Our outbound link to endpoint "host:port" broke: what we sent may be lost.
        case linkBroken(endpoint: String)
        case tick(now: Duration)
        case executorFailedToLaunch(ExecutorKey, reason: String)
        /// The executor's process is gone (`status`: its exit code when it was our child).
        case executorExited(ExecutorKey, status: Int32?)
        /// A signal: SIGTERM (`forGood` false: checkpointed executors keep running for the
        /// restarted agent) or SIGUSR1 (unregister, kill every executor).
        case shutdownRequested(forGood: Bool)
    }

    public enum Effect: Sendable, Hashable {
        /// To `to` at `epoch` (the leader's, or 0 before one is known).
        case send(Envelope.Payload, to: PID, epoch: UInt64)
        /// Start `mesos-executor` for this executor, in its own session.
        case launchExecutor(ExecutorLaunch)
        /// SIGKILL the executor and everything in its session (its task included).
        case destroyExecutor(ExecutorKey)
        case checkpoint(CheckpointWrite)
        case observe(AgentObservation)
        case exit(ExitReason)
    }

    enum Phase: Sendable, Hashable {
        case recovering
        /// Waiting for checkpointed executors to re-register, until the deadline.
        case reconnecting(until: Duration)
        case running
        /// `--recover=cleanup`: killing the recovered executors, then exit.
        case cleaningUp(executors: Int)
        /// Waiting for executors to end (until the deadline), then exit.
        case stopping(ExitReason, until: Duration)
    }

    public let settings: AgentSettings
    public internal(set) var info: AgentInfo
    public let pid: PID
    public internal(set) var follower: LeaderFollower
    public internal(set) var tasks: [TaskKey: AgentTask] = [:]
    public internal(set) var executors: [ExecutorKey: AgentExecutor] = [:]
    public internal(set) var frameworks: [FrameworkID: AgentFramework] = [:]
    /// Status-update streams, per task: unacknowledged updates, oldest first (the head in flight).
    var streams: [TaskKey: UpdateStream] = [:]
    var phase = Phase.recovering
    var now: Duration = .zero
    var lastPing: Duration = .zero
    var exited = false
    /// Stopping: every executor ends (SIGUSR1, shutdown) or only those not checkpointing (SIGTERM).
    var stopAll = false
    var forgetOnExit = false

    public init(info: AgentInfo, pid: PID, epochFloor: UInt64 = 0, seed: UInt64 = 0, settings: AgentSettings = AgentSettings()) {
        var info = info
        info.pid = pid.description
        self.info = info
        self.pid = pid
        self.settings = settings
        self.follower = LeaderFollower(settings: settings.follower, epochFloor: epochFloor, seed: seed)
    }

    public var agentID: AgentID? { info.id }
    public var leader: Leader? { follower.leader }
    public var isRegistered: Bool { follower.isRegistered }
    public var droppedMessages: [EpochGuard.DropReason: Int] { follower.droppedMessages }
    /// Status updates not yet acknowledged by the master.
    public var pendingUpdates: Int { streams.values.reduce(0) { $0 + $1.pending.count } }
    public var pendingUpdateKeys: [TaskKey] { streams.filter { !$0.value.pending.isEmpty }.keys.sorted() }
    /// Recovered and not waiting for executors: (re-)registers with the master.
    public var isRecovered: Bool { phase == .running }

    public mutating func handle(_ event: Event) -> [Effect] {
        if exited { return [] }
        switch event {
        case .recovered(let state):
            guard phase == .recovering else { return [] }
            return recover(state)
        case .leaderDetected(let new):
            return leaderChanged(new)
        case .message(let inbound):
            return receive(inbound)
        case .linkBroken(let endpoint):
            // The master may have lost what we sent, or restarted (a standalone master on the same
            // address): re-register to resynchronize, after the random wait a detection gets (the
            // detector may name a new leader meanwhile). (Mesos's agent only logs "Master
            // disconnected" and waits for its detector; a standalone master's restart is then
            // noticed only by missed pings.)
            guard follower.isRegistered, let leader = follower.leader, leader.pid.endpoint == endpoint else { return [] }
            follower.reregisterSoon(now: now)
            return [.observe(.linkToLeaderBroken(leader))] + retryRegistration()
        case .tick(let t):
            now = max(now, t)
            return phaseTimers() + executorTimers() + retryRegistration() + retryUpdates() + checkMasterPings()
        case .executorFailedToLaunch(let key, let reason):
            guard executors[key] != nil else { return [] }
            executors[key]?.termination = Termination(state: .failed, reason: .containerLaunchFailed, message: "Failed to launch the executor: \(reason)")
            return [.observe(.executorFailedToLaunch(key, reason: reason))] + executorTerminated(key, status: nil)
        case .executorExited(let key, let status):
            guard executors[key] != nil else { return [] }
            return executorTerminated(key, status: status)
        case .shutdownRequested(let forGood):
            return stop(forGood ? .shutDownForGood : .terminated, unregister: forGood, all: forGood)
        }
    }

    // MARK: Leader and registration

    private mutating func leaderChanged(_ new: Leader?) -> [Effect] {
        switch follower.leaderDetected(new, now: now) {
        case .unchanged: return []
        case .belowFloor(let l): return [.observe(.leaderBelowFloor(l, floor: follower.epochFloor))]
        case .masterless: return [.observe(.masterless)]
        case .newLeader(let l, let raised):
            var effects: [Effect] = [.observe(.leaderDetected(l))]
            if raised { effects.append(.checkpoint(.epochFloor(follower.epochFloor))) }
            return effects
        }
    }

    mutating func retryRegistration() -> [Effect] {
        guard phase == .running, let leader = follower.registrationDue(now: now) else { return [] }
        let payload: Envelope.Payload
        if let id = agentID {
            payload = .reregisterAgent(ReregisterAgentMessage(
                agent: info, tasks: tasks.keys.sorted().compactMap { tasks[$0].map { reported($0, agent: id) } },
                frameworks: frameworks.keys.sorted { $0.value < $1.value }.compactMap { frameworks[$0]?.info }))
        } else {
            payload = .registerAgent(RegisterAgentMessage(agent: info))
        }
        return [.send(payload, to: leader.pid, epoch: leader.epoch)]
    }

    func reported(_ t: AgentTask, agent: AgentID) -> MesosTask {
        MesosTask(name: t.info.name, taskID: t.info.taskID, frameworkID: t.frameworkID, agentID: agent, state: t.state, resources: t.info.resources, status: t.latest, executorID: t.executorID)
    }

    private mutating func checkMasterPings() -> [Effect] {
        guard follower.isRegistered, now - lastPing > settings.masterPingTimeout else { return [] }
        follower.reregisterNow(now: now)
        return [.observe(.masterPingsMissed(settings.masterPingTimeout))] + retryRegistration()
    }

    // MARK: Messages

    private mutating func receive(_ inbound: Inbound) -> [Effect] {
        let envelope = inbound.envelope
        guard let payload = envelope.payload else { return [] }
        // Executors follow no leader: their messages are checked against the executor that sent them.
        if payload.isFromExecutor { return fromExecutor(payload, envelope.from) }
        if let reason = follower.admit(inbound) {
            return [.observe(.messageDropped(from: envelope.from, epoch: envelope.epoch, reason: reason))]
        }
        guard let leader = follower.leader else { return [] }
        do {
            try MessageValidation.validate(payload)
        } catch {
            return [
                .observe(.messageRefused(kind: payload.kind, reason: error.description)),
                .send(.messageRefused(MessageRefusedMessage(kind: payload.kind, reason: error.description)), to: leader.pid, epoch: leader.epoch),
            ]
        }
        switch payload {
        case .agentRegistered(let m): return registered(as: m.agentID, reconciliations: [])
        case .agentReregistered(let m): return registered(as: m.agentID, reconciliations: m.reconciliations)
        case .ping:
            lastPing = now
            return [.send(.pong(PongAgentMessage()), to: leader.pid, epoch: leader.epoch)]
        case .runTask(let m):
            return runTask(m)
        case .killTask(let m):
            return killTask(TaskKey(framework: m.frameworkID, task: m.taskID), m)
        case .shutdownFramework(let m):
            return executors.keys.filter { $0.framework == m.frameworkID }.sorted().flatMap { shutdownExecutor($0, why: "framework shut down") }
        case .statusUpdateAck(let m):
            return acknowledged(TaskKey(framework: m.frameworkID, task: m.taskID), uuid: m.uuid)
        case .frameworkToExecutor(let m):
            let key = ExecutorKey(framework: m.frameworkID, executor: m.executorID)
            guard let e = executors[key], e.state == .running, let to = e.pid else { return [.observe(.frameworkMessageDropped(key))] }
            return [.send(payload, to: to, epoch: leader.epoch)]
        case .shutdown(let m):
            // Removed: its executors are shut down, then it forgets its id (the next start registers anew).
            return stop(.shutDownByMaster(m.message ?? "told to shut down by the master"), unregister: false, all: true)
        default:
            return []
        }
    }

    private mutating func registered(as id: AgentID, reconciliations: [ReconcileTasksMessage]) -> [Effect] {
        let first = agentID == nil
        if let known = agentID, known != id {
            return [.observe(.messageRefused(kind: "agent_reregistered", reason: "the master names this agent \(id.value), not \(known.value)"))]
        }
        guard !follower.isRegistered, let leader = follower.leader else { return [] }  // a duplicate answer
        info.id = id
        follower.registered()
        lastPing = now
        var effects: [Effect] = [.observe(first ? .registered(id, leader) : .reregistered(id, leader))]
        if first { effects.append(.checkpoint(.agent(info))) }
        // Unacknowledged updates go again at once to the new leader.
        for key in streams.keys.sorted() {
            streams[key]?.sentAt = nil
            effects += sendHead(key)
        }
        // Tasks the master knows and we do not: terminal updates, so it stops believing they run.
        for r in reconciliations {
            for status in r.statuses where tasks[TaskKey(framework: r.frameworkID, task: status.taskID)] == nil {
                effects += unknownTask(TaskKey(framework: r.frameworkID, task: status.taskID), message: "Reconciliation: task unknown to the agent")
            }
        }
        return effects
    }

    // MARK: Tasks

    private mutating func runTask(_ m: RunTaskMessage) -> [Effect] {
        let key = TaskKey(framework: m.frameworkID, task: m.task.taskID)
        guard tasks[key] == nil, let agentID, phase == .running else { return [] }
        var framework = m.framework
        framework.id = m.frameworkID
        var effects: [Effect] = []
        if frameworks[m.frameworkID]?.info != framework || frameworks[m.frameworkID]?.pid != m.pid {
            frameworks[m.frameworkID] = AgentFramework(info: framework, pid: m.pid)
            if framework.checkpoint { effects.append(.checkpoint(.framework(agent: agentID, framework, pid: m.pid))) }
        }
        // Mesos's command executor takes its task's id.
        let executorKey = ExecutorKey(framework: m.frameworkID, executor: ExecutorID(value: m.task.taskID.value))
        tasks[key] = AgentTask(info: m.task, frameworkID: m.frameworkID, executorID: executorKey.executor, state: .staging)
        guard executors[executorKey] == nil else {
            return effects + update(key, .failed, message: "Executor \(executorKey.executor.value) of an earlier task with this id is still ending", reason: .taskInvalid)
        }
        let run = follower.randomBytes(16).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        let command = m.task.command?.value ?? ""
        let executorInfo = ExecutorInfo(
            executorID: executorKey.executor, command: CommandInfo(value: "mesos-executor"), frameworkID: m.frameworkID,
            name: "Command Executor (Task: \(m.task.taskID.value)) (Command: sh -c '\(command.prefix(100))')")
        var executor = AgentExecutor(key: executorKey, info: executorInfo, run: run, checkpoint: framework.checkpoint, state: .registering, recovered: false)
        executor.queued = [m.task.taskID]
        executor.deadline = now + settings.executorRegistrationTimeout
        executors[executorKey] = executor
        if framework.checkpoint {
            effects.append(.checkpoint(.executor(agent: agentID, executorKey, executorInfo, run: run)))
            effects.append(.checkpoint(.task(agent: agentID, executorKey, run: run, reported(tasks[key]!, agent: agentID))))
        }
        effects.append(.launchExecutor(ExecutorLaunch(key: executorKey, info: executorInfo, run: run, agentID: agentID, framework: framework, task: m.task)))
        return effects
    }

    private mutating func killTask(_ key: TaskKey, _ m: KillTaskMessage) -> [Effect] {
        guard let task = tasks[key] else {
            // Unknown here: say so reliably, so the master stops believing it runs.
            return [.observe(.killOfUnknownTask(key))] + unknownTask(key, message: "Kill of a task unknown to the agent")
        }
        guard !task.state.isTerminal else { return [] }
        guard let executor = executors[task.executor] else { return [] }
        switch executor.state {
        case .registering where executor.queued.contains(key.task):
            // Not handed to its executor yet: it never runs (Mesos: TASK_KILLED, then the idle executor goes).
            executors[task.executor]?.queued.removeAll { $0 == key.task }
            executors[task.executor]?.termination = Termination(state: .killed, reason: .taskKilledDuringLaunch, message: "Killed before its executor registered")
            return update(key, .killed, message: "Killed before its executor registered", reason: .taskKilledDuringLaunch)
                + destroy(task.executor)
        case .running:
            guard let to = executor.pid else { return [] }
            return [.observe(.killingTask(key)), .send(.killTask(m), to: to, epoch: follower.leader?.epoch ?? 0)]
        default:
            return []  // its executor is ending: the terminal update follows
        }
    }
}

/// What the shell needs to start an executor.
public struct ExecutorLaunch: Sendable, Hashable {
    public var key: ExecutorKey
    public var info: ExecutorInfo
    public var run: String
    public var agentID: AgentID
    public var framework: FrameworkInfo
    public var task: TaskInfo
}

extension Envelope.Payload {
    /// Messages an agent takes from its executors (never from masters).
    var isFromExecutor: Bool {
        switch self {
        case .registerExecutor, .reregisterExecutor, .statusUpdate, .executorToFramework: true
        default: false
        }
    }
}
