import MesosWire

/// A task the agent runs, with what it needs to report it to a new leader.
public struct AgentTask: Sendable, Hashable {
    public var info: TaskInfo
    public var framework: FrameworkInfo
    public var frameworkID: FrameworkID
    public var state: TaskState
    public var latest: TaskStatus?
    public var killRequested = false

    public var key: TaskKey { TaskKey(framework: frameworkID, task: info.taskID) }
}

/// The agent: leader following (through `LeaderFollower`), (re)registration with backoff, tasks
/// keyed by (framework, task), and status updates retried until acknowledged, in order per task.
/// Pure: events in, effects out; randomness from a seeded generator so tests are repeatable.
public struct AgentCore: Sendable {
    public enum Event: Sendable, Hashable {
        case leaderDetected(Leader?)
        case message(Inbound)
        /// Our outbound link to endpoint "host:port" broke: what we sent may be lost.
        case linkBroken(endpoint: String)
        case tick(now: Duration)
        case taskStarted(TaskKey)
        case taskFailedToStart(TaskKey, reason: String)
        /// The task's process ended: `code` (exit status, or 128 + signal).
        case taskExited(TaskKey, code: Int32)
    }

    public enum Effect: Sendable, Hashable {
        /// To the detected leader, at its epoch.
        case send(Envelope.Payload, to: PID, epoch: UInt64)
        case launch(TaskKey, TaskInfo)
        case kill(TaskKey)
        /// Save the agent id (nil: forget it, register anew next time) and the newest epoch seen.
        case persist(agentID: AgentID?, epochFloor: UInt64)
        case observe(AgentObservation)
        /// Kill every task and exit.
        case exit(ExitReason)
    }

    public let settings: AgentSettings
    public private(set) var info: AgentInfo
    public let pid: PID
    public private(set) var follower: LeaderFollower
    public private(set) var tasks: [TaskKey: AgentTask] = [:]
    /// Unacknowledged status updates, per task, oldest first (only the head is in flight).
    private var updates: [TaskKey: [StatusUpdate]] = [:]
    private var sentAt: [TaskKey: (at: Duration, interval: Duration)] = [:]
    private var now: Duration = .zero
    private var lastPing: Duration = .zero
    private var shutDown = false

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
    /// Status updates not yet acknowledged.
    public var pendingUpdates: Int { updates.values.reduce(0) { $0 + $1.count } }
    public var pendingUpdateKeys: [TaskKey] { updates.keys.sorted() }

    public mutating func handle(_ event: Event) -> [Effect] {
        if shutDown { return [] }
        switch event {
        case .leaderDetected(let new):
            return leaderChanged(new)
        case .message(let inbound):
            return receive(inbound)
        case .linkBroken(let endpoint):
            // The master may have lost what we sent, or restarted (a standalone master on the same
            // address): re-register to resynchronize, as Mesos agents do when their master exits.
            guard follower.isRegistered, let leader = follower.leader, leader.pid.endpoint == endpoint else { return [] }
            follower.reregisterNow(now: now)
            return [.observe(.linkToLeaderBroken(leader))] + retryRegistration()
        case .tick(let t):
            now = max(now, t)
            return retryRegistration() + retryUpdates() + checkMasterPings()
        case .taskStarted(let key):
            guard tasks[key] != nil else { return [] }
            return update(key, .running, message: "started")
        case .taskFailedToStart(let key, let reason):
            guard tasks[key] != nil else { return [] }
            return update(key, .failed, message: "failed to start: \(reason)", reason: .containerLaunchFailed)
        case .taskExited(let key, let code):
            guard let task = tasks[key], !task.state.isTerminal else { return [] }
            if task.killRequested { return update(key, .killed, message: "killed") }
            return code == 0 ? update(key, .finished, message: "exited 0") : update(key, .failed, message: "exited with status \(code)", reason: .commandExecutorFailed)
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
            if raised { effects.append(.persist(agentID: agentID, epochFloor: follower.epochFloor)) }
            return effects
        }
    }

    private mutating func retryRegistration() -> [Effect] {
        guard let leader = follower.registrationDue(now: now) else { return [] }
        let payload: Envelope.Payload
        if let id = agentID {
            let frameworks = Dictionary(tasks.sorted { $0.key < $1.key }.map { ($0.value.frameworkID, $0.value.framework) }, uniquingKeysWith: { a, _ in a })
            payload = .reregisterAgent(ReregisterAgentMessage(
                agent: info, tasks: tasks.keys.sorted().compactMap { tasks[$0].map { reported($0, agent: id) } },
                frameworks: frameworks.keys.sorted { $0.value < $1.value }.compactMap { frameworks[$0] }))
        } else {
            payload = .registerAgent(RegisterAgentMessage(agent: info))
        }
        return [.send(payload, to: leader.pid, epoch: leader.epoch)]
    }

    private func reported(_ t: AgentTask, agent: AgentID) -> MesosTask {
        MesosTask(name: t.info.name, taskID: t.info.taskID, frameworkID: t.frameworkID, agentID: agent, state: t.state, resources: t.info.resources, status: t.latest)
    }

    private mutating func checkMasterPings() -> [Effect] {
        guard follower.isRegistered, now - lastPing > settings.masterPingTimeout else { return [] }
        follower.reregisterNow(now: now)
        return [.observe(.masterPingsMissed(settings.masterPingTimeout))] + retryRegistration()
    }

    // MARK: Messages

    private mutating func receive(_ inbound: Inbound) -> [Effect] {
        let envelope = inbound.envelope
        if let reason = follower.admit(inbound) {
            return [.observe(.messageDropped(from: envelope.from, epoch: envelope.epoch, reason: reason))]
        }
        guard let leader = follower.leader, let payload = envelope.payload else { return [] }
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
            let key = TaskKey(framework: m.frameworkID, task: m.task.taskID)
            guard tasks[key] == nil else { return [] }
            tasks[key] = AgentTask(info: m.task, framework: m.framework, frameworkID: m.frameworkID, state: .staging)
            return [.launch(key, m.task)]
        case .killTask(let m):
            let key = TaskKey(framework: m.frameworkID, task: m.taskID)
            guard var task = tasks[key] else {
                // Unknown here: say so reliably, so the master stops believing it runs.
                return [.observe(.killOfUnknownTask(key))] + unknownTask(key, message: "Kill of a task unknown to the agent")
            }
            guard !task.state.isTerminal else { return [] }
            task.killRequested = true
            tasks[key] = task
            return [.kill(key)]
        case .shutdownFramework(let m):
            return tasks.keys.filter { $0.framework == m.frameworkID }.sorted().flatMap { key -> [Effect] in
                guard let task = tasks[key], !task.state.isTerminal else { return [] }
                tasks[key]?.killRequested = true
                return [.kill(key)]
            }
        case .statusUpdateAck(let m):
            return acknowledged(TaskKey(framework: m.frameworkID, task: m.taskID), uuid: m.uuid)
        case .shutdown(let m):
            shutDown = true
            info.id = nil
            let reason = m.message ?? "told to shut down by the master"
            return [.persist(agentID: nil, epochFloor: follower.epochFloor), .exit(.shutDownByMaster(reason))]
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
        if first { effects.append(.persist(agentID: id, epochFloor: follower.epochFloor)) }
        // Unacknowledged updates go again at once to the new leader.
        for key in updates.keys.sorted() {
            sentAt[key] = nil
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

    // MARK: Status updates

    private mutating func update(_ key: TaskKey, _ state: TaskState, message: String, reason: TaskStatus.Reason? = nil) -> [Effect] {
        guard var task = tasks[key] else { return [] }
        let status = newStatus(key, state, message: message, reason: reason)
        task.state = state
        task.latest = status
        tasks[key] = task
        return enqueue(key, status)
    }

    /// A reliable TASK_LOST for a task this agent does not have.
    private mutating func unknownTask(_ key: TaskKey, message: String) -> [Effect] {
        guard updates[key] == nil else { return [] }
        return enqueue(key, newStatus(key, .lost, message: message, reason: .reconciliation))
    }

    private mutating func newStatus(_ key: TaskKey, _ state: TaskState, message: String, reason: TaskStatus.Reason?) -> TaskStatus {
        TaskStatus(taskID: key.task, state: state, message: message, source: .agent, reason: reason, agentID: agentID, timestamp: now.inSeconds, uuid: follower.randomBytes(16))
    }

    private mutating func enqueue(_ key: TaskKey, _ status: TaskStatus) -> [Effect] {
        updates[key, default: []].append(StatusUpdate(frameworkID: key.framework, status: status, timestamp: now.inSeconds, uuid: status.uuid ?? [], agentID: agentID))
        return updates[key]?.count == 1 ? sendHead(key) : []
    }

    /// Updates of one task go in order: the next only after the previous is acknowledged.
    private mutating func sendHead(_ key: TaskKey) -> [Effect] {
        guard follower.isRegistered, let leader = follower.leader, var head = updates[key]?.first, sentAt[key] == nil else { return [] }
        head.agentID = agentID
        head.status.agentID = agentID
        sentAt[key] = (now, settings.statusUpdateRetryInterval)
        return [.send(.statusUpdate(StatusUpdateMessage(update: head, pid: pid.description)), to: leader.pid, epoch: leader.epoch)]
    }

    private mutating func retryUpdates() -> [Effect] {
        guard follower.isRegistered, let leader = follower.leader else { return [] }
        var effects: [Effect] = []
        for (key, sent) in sentAt.sorted(by: { $0.key < $1.key }) where now - sent.at >= sent.interval {
            guard var head = updates[key]?.first else { continue }
            head.agentID = agentID
            head.status.agentID = agentID
            sentAt[key] = (now, min(sent.interval * 2, settings.maxStatusUpdateRetryInterval))
            effects.append(.send(.statusUpdate(StatusUpdateMessage(update: head, pid: pid.description)), to: leader.pid, epoch: leader.epoch))
        }
        return effects
    }

    private mutating func acknowledged(_ key: TaskKey, uuid: [UInt8]) -> [Effect] {
        guard let head = updates[key]?.first, head.uuid == uuid else { return [] }  // duplicate or stale ack
        updates[key]?.removeFirst()
        sentAt[key] = nil
        if updates[key]?.isEmpty != false {
            updates[key] = nil
            if tasks[key]?.state.isTerminal == true { tasks[key] = nil }
            return []
        }
        return sendHead(key)
    }
}

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
        }
    }

    public var level: ObservationLevel {
        switch self {
        case .leaderDetected, .registered, .reregistered, .killOfUnknownTask: .info
        case .messageDropped(_, _, let reason): reason == .staleEpoch || reason == .notFromLeader || reason == .unauthenticatedMaster ? .warning : .debug
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
        case .killOfUnknownTask(let key): .of(("framework_id", key.framework.value), ("task_id", key.task.value))
        }
    }

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
        }
    }
}
