import MesosHA
import MesosWire

public struct AgentConfiguration: Sendable, Hashable {
    /// First (re)registration waits a random time in [0, factor]; each retry doubles the bound.
    public var registrationBackoffFactor: Duration = .seconds(1)
    public var maxRegistrationBackoff: Duration = .seconds(60)
    /// A status update not acknowledged is sent again after this, doubling up to the max.
    public var statusUpdateRetryInterval: Duration = .seconds(10)
    public var maxStatusUpdateRetryInterval: Duration = .seconds(600)
    /// No ping from the leader for this long: re-register (the master may have lost us).
    public var masterPingTimeout: Duration = .seconds(75)

    public init() {}
}

/// A task the agent runs, with what it needs to report it to a new leader.
public struct AgentTask: Sendable, Hashable {
    public var info: TaskInfo
    public var framework: FrameworkInfo
    public var frameworkID: FrameworkID
    public var state: TaskState
    public var latest: TaskStatus?
    public var killRequested = false
}

/// The agent: leader detection results, (re)registration with backoff, tasks, and status
/// updates retried until acknowledged. Pure: events in, effects out; randomness from a
/// seeded generator so tests are repeatable.
public struct AgentCore: Sendable {
    public enum Event: Sendable, Hashable {
        case leaderDetected(Leader?)
        case message(Envelope)
        case tick(now: Duration)
        case taskStarted(TaskID)
        case taskFailedToStart(TaskID, reason: String)
        /// The task's process ended: `code` (exit status, or 128 + signal).
        case taskExited(TaskID, code: Int32)
    }

    public enum Effect: Sendable, Hashable {
        /// To the detected leader, at its epoch.
        case send(Envelope.Payload, to: String, epoch: UInt64)
        case launch(TaskInfo, framework: FrameworkID)
        case kill(TaskID)
        /// Save the agent id (nil: forget it, register anew next time) and the newest epoch seen.
        case persist(agentID: AgentID?, epochFloor: UInt64)
        /// Kill every task and exit: the master removed this agent.
        case shutdown(reason: String)
        case log(LogLevel, String)
    }

    public let configuration: AgentConfiguration
    public private(set) var info: AgentInfo
    public let pid: String
    public private(set) var leader: Leader?
    public private(set) var registered = false
    public private(set) var tasks: [TaskID: AgentTask] = [:]
    public private(set) var droppedMessages: [EpochGuard.DropReason: Int] = [:]
    private var epochFloor: UInt64
    private var now: Duration = .zero
    private var nextAttempt: Duration?
    private var backoff: Duration
    private var lastPing: Duration = .zero
    private var updates: [TaskID: [StatusUpdate]] = [:]
    private var sentAt: [TaskID: (at: Duration, interval: Duration)] = [:]
    private var rng: SplitMix64
    private var shutDown = false

    public init(info: AgentInfo, pid: String, epochFloor: UInt64 = 0, seed: UInt64 = 0, configuration: AgentConfiguration = AgentConfiguration()) {
        self.info = info
        self.pid = pid
        self.epochFloor = epochFloor
        self.configuration = configuration
        self.backoff = configuration.registrationBackoffFactor
        self.rng = SplitMix64(seed: seed)
    }

    public var agentID: AgentID? { info.id }
    /// Status updates not yet acknowledged, per task.
    public var pendingUpdates: Int { updates.values.reduce(0) { $0 + $1.count } }

    public mutating func handle(_ event: Event) -> [Effect] {
        if shutDown { return [] }
        switch event {
        case .leaderDetected(let new):
            return leaderChanged(new)
        case .message(let envelope):
            return receive(envelope)
        case .tick(let t):
            now = t
            return retryRegistration() + retryUpdates() + checkMasterPings()
        case .taskStarted(let id):
            guard tasks[id] != nil else { return [] }
            return update(id, .running, message: "started")
        case .taskFailedToStart(let id, let reason):
            guard tasks[id] != nil else { return [] }
            return update(id, .failed, message: "failed to start: \(reason)")
        case .taskExited(let id, let code):
            guard let task = tasks[id], !task.state.isTerminal else { return [] }
            if task.killRequested { return update(id, .killed, message: "killed") }
            return code == 0 ? update(id, .finished, message: "exited 0") : update(id, .failed, message: "exited with status \(code)")
        }
    }

    // MARK: Leader and registration

    private mutating func leaderChanged(_ new: Leader?) -> [Effect] {
        guard new != leader else { return [] }
        if let new, new.epoch < epochFloor {
            return [.log(.warning, "ignoring leader \(new): epoch below \(epochFloor), the newest this agent has seen")]
        }
        leader = new
        registered = false
        guard let new else {
            nextAttempt = nil
            return [.log(.warning, "no leading master detected: master-less, ignoring master messages")]
        }
        var effects: [Effect] = [.log(.info, "new leader detected: \(new)")]
        if new.epoch > epochFloor {
            epochFloor = new.epoch
            effects.append(.persist(agentID: agentID, epochFloor: epochFloor))
        }
        backoff = configuration.registrationBackoffFactor
        nextAttempt = now + jitter(backoff)
        return effects
    }

    private mutating func retryRegistration() -> [Effect] {
        guard let leader, !registered, let at = nextAttempt, now >= at else { return [] }
        backoff = min(backoff * 2, configuration.maxRegistrationBackoff)
        nextAttempt = now + jitter(backoff)
        let payload: Envelope.Payload
        if agentID != nil {
            let frameworks = Dictionary(tasks.values.map { ($0.frameworkID, $0.framework) }, uniquingKeysWith: { a, _ in a })
            payload = .reregisterAgent(ReregisterAgentMessage(
                agent: info, tasks: tasks.values.sorted { $0.info.taskID.value < $1.info.taskID.value }.map(reported),
                frameworks: frameworks.keys.sorted { $0.value < $1.value }.map { frameworks[$0]! }))
        } else {
            payload = .registerAgent(RegisterAgentMessage(agent: info))
        }
        return [.send(payload, to: leader.pid, epoch: leader.epoch)]
    }

    private func reported(_ t: AgentTask) -> MesosTask {
        MesosTask(name: t.info.name, taskID: t.info.taskID, frameworkID: t.frameworkID, agentID: agentID!, state: t.state, resources: t.info.resources, status: t.latest)
    }

    private mutating func checkMasterPings() -> [Effect] {
        guard registered, now - lastPing > configuration.masterPingTimeout else { return [] }
        registered = false
        backoff = configuration.registrationBackoffFactor
        nextAttempt = now
        return [.log(.warning, "no ping from the master for \(configuration.masterPingTimeout): re-registering")] + retryRegistration()
    }

    // MARK: Messages

    private mutating func receive(_ envelope: Envelope) -> [Effect] {
        if let drop = EpochGuard.followerDrop(envelope, leader: leader) {
            droppedMessages[drop.reason, default: 0] += 1
            return [.log(drop.level, drop.message)]
        }
        switch envelope.payload {
        case .agentRegistered(let m)?: return registeredAs(m.agentID)
        case .agentReregistered(let m)?: return registeredAs(m.agentID)
        case .ping?:
            lastPing = now
            return [reply(.pong(PongAgentMessage()))]
        case .runTask(let m)?:
            guard tasks[m.task.taskID] == nil else { return [] }
            tasks[m.task.taskID] = AgentTask(info: m.task, framework: m.framework, frameworkID: m.frameworkID, state: .staging)
            return [.launch(m.task, framework: m.frameworkID)]
        case .killTask(let m)?:
            guard var task = tasks[m.taskID] else {
                return [.log(.info, "kill of unknown task \(m.taskID.value)")]
            }
            guard !task.state.isTerminal else { return [] }
            task.killRequested = true
            tasks[m.taskID] = task
            return [.kill(m.taskID)]
        case .shutdownFramework(let m)?:
            return tasks.values.filter { $0.frameworkID == m.frameworkID && !$0.state.isTerminal }.flatMap { t -> [Effect] in
                tasks[t.info.taskID]!.killRequested = true
                return [.kill(t.info.taskID)]
            }
        case .statusUpdateAck(let m)?:
            return acknowledged(m.taskID, uuid: m.uuid)
        case .shutdown(let m)?:
            shutDown = true
            info.id = nil
            let reason = m.message ?? "told to shut down by the master"
            return [.log(.error, "shutting down: \(reason)"), .persist(agentID: nil, epochFloor: epochFloor), .shutdown(reason: reason)]
        default:
            return []
        }
    }

    private func reply(_ payload: Envelope.Payload) -> Effect {
        .send(payload, to: leader!.pid, epoch: leader!.epoch)
    }

    private mutating func registeredAs(_ id: AgentID) -> [Effect] {
        let first = agentID == nil
        info.id = id
        registered = true
        lastPing = now
        nextAttempt = nil
        var effects: [Effect] = [.log(.info, "\(first ? "registered" : "re-registered") with \(leader!) as agent \(id.value)")]
        if first { effects.append(.persist(agentID: id, epochFloor: epochFloor)) }
        // Unacknowledged updates go again at once to the new leader.
        for taskID in updates.keys.sorted(by: { $0.value < $1.value }) {
            sentAt[taskID] = nil
            effects += sendHead(taskID)
        }
        return effects
    }

    // MARK: Status updates

    private mutating func update(_ id: TaskID, _ state: TaskState, message: String) -> [Effect] {
        guard var task = tasks[id] else { return [] }
        let uuid = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let status = TaskStatus(taskID: id, state: state, message: message, source: .agent, agentID: agentID, timestamp: now.inSeconds, uuid: uuid)
        task.state = state
        task.latest = status
        tasks[id] = task
        updates[id, default: []].append(StatusUpdate(frameworkID: task.frameworkID, status: status, timestamp: now.inSeconds, uuid: uuid, agentID: agentID))
        return updates[id]!.count == 1 ? sendHead(id) : []
    }

    /// Updates of one task go in order: the next only after the previous is acknowledged.
    private mutating func sendHead(_ id: TaskID) -> [Effect] {
        guard registered, let leader, var head = updates[id]?.first, sentAt[id] == nil else { return [] }
        head.agentID = agentID
        head.status.agentID = agentID
        sentAt[id] = (now, configuration.statusUpdateRetryInterval)
        return [.send(.statusUpdate(StatusUpdateMessage(update: head, pid: pid)), to: leader.pid, epoch: leader.epoch)]
    }

    private mutating func retryUpdates() -> [Effect] {
        guard registered, let leader else { return [] }
        var effects: [Effect] = []
        for (id, sent) in sentAt.sorted(by: { $0.key.value < $1.key.value }) where now - sent.at >= sent.interval {
            guard var head = updates[id]?.first else { continue }
            head.agentID = agentID
            sentAt[id] = (now, min(sent.interval * 2, configuration.maxStatusUpdateRetryInterval))
            effects.append(.send(.statusUpdate(StatusUpdateMessage(update: head, pid: pid)), to: leader.pid, epoch: leader.epoch))
        }
        return effects
    }

    private mutating func acknowledged(_ id: TaskID, uuid: [UInt8]) -> [Effect] {
        guard let head = updates[id]?.first, head.uuid == uuid else { return [] }  // duplicate or stale ack
        updates[id]!.removeFirst()
        sentAt[id] = nil
        if updates[id]!.isEmpty {
            updates[id] = nil
            if tasks[id]?.state.isTerminal == true { tasks[id] = nil }
            return []
        }
        return sendHead(id)
    }

    private mutating func jitter(_ bound: Duration) -> Duration {
        let ms = max(1, Int64(bound.inSeconds * 1000))
        return .milliseconds(Int64.random(in: 0...ms, using: &rng))
    }
}


