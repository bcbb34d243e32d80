import MesosWire

/// The master: leadership, registration, health checks, offers, tasks, frameworks and the
/// registry. A pure state machine: events in (messages, ticks of a clock, ZooKeeper results),
/// effects out (sends, fenced registry writes, observations, exit). The shell stamps outgoing
/// messages with `epoch` and carries the effects out; it decides nothing.
///
/// Rules it owns (DESIGN.md): a master leads only when elected *and* detecting itself, never at
/// an epoch already led; it exits when it loses leadership; agents missing health checks are
/// removed (tasks LOST, or UNREACHABLE for partition-aware frameworks) and never re-admitted;
/// frameworks whose scheduler is gone are removed after their `failover_timeout`; a scheduler
/// failover fences the old instance; tasks are identified by (framework, task).
public struct MasterCore: Sendable {
    public enum Event: Sendable, Hashable {
        /// Our candidacy won at `epoch` (contender).
        case elected(epoch: UInt64)
        /// No ZooKeeper: lead alone, one epoch above the highest in the local registry.
        case startStandalone
        /// The leader our detector sees; a master leads only when it sees itself.
        case leaderDetected(Leader?)
        case candidacyLost(LeadershipLoss)
        /// The registry read after election (nil: none yet).
        case registryLoaded(RegistryState?)
        case registryLoadFailed(String)
        /// A fenced registry write of `token` is stored.
        case registryStored(token: Int)
        /// A fenced registry write was refused (another master leads) or failed for good.
        case registryStoreFailed(fenced: Bool, reason: String)
        case message(Inbound)
        /// The outbound link to endpoint "host:port" broke (or could not be made).
        case linkBroken(endpoint: String)
        /// The clock; time only moves on ticks.
        case tick(now: Duration)
        /// An operator tears a framework down (`POST /master/teardown`).
        case teardown(FrameworkID)
        /// A v1 scheduler API event stream ended (its client went away, or the shell ended it).
        case streamClosed(StreamID)
    }

    public enum Effect: Sendable, Hashable {
        case send(Envelope.Payload, to: PID)
        /// A message to a framework whose scheduler speaks Mesos's v1 HTTP API: the shell renders
        /// it as an `Event` on that subscription's stream (messages with no v1 event are dropped).
        case event(Envelope.Payload, stream: StreamID)
        /// End that event stream, after the events before it.
        case closeStream(StreamID)
        case loadRegistry
        /// Write `change` to the registry, fenced by our own leader znode, then report
        /// `registryStored(token)`.
        case storeRegistry(RegistryChange, token: Int)
        case observe(MasterObservation)
        case exit(ExitReason)
    }

    public enum Phase: Sendable, Hashable {
        case standby
        /// Standalone, reading the local registry to pick its epoch.
        case startingStandalone
        case recovering(epoch: UInt64)
        case leading(epoch: UInt64)
        case exited
    }

    enum AgentState: Sendable, Hashable {
        /// Its admission (registration) is being written to the registry.
        case admitting(reregistered: Bool)
        case active
    }

    struct AgentRecord: Sendable, Hashable {
        var info: AgentInfo
        var pid: PID
        var principal: String?
        var state: AgentState
        var lastPing: Duration?
        var pongSinceLastPing = true
        var missedPings = 0
        /// Missed its health checks; waits in `removalQueue` for a permit of the rate limit.
        var removalScheduled = false
        /// Re-registrations answered while the admission write was pending carry these.
        var reconciliations: [ReconcileTasksMessage] = []

        var isActive: Bool { state == .active }
    }

    enum FrameworkState: Sendable, Hashable {
        case connected
        /// Its scheduler is gone (link broken) since then; removed after `failover_timeout`.
        case disconnected(since: Duration)
        /// Learned from a re-registering agent after a failover; its scheduler has not come back.
        case recovered(since: Duration)
    }

    struct FrameworkRecord: Sendable, Hashable {
        var info: FrameworkInfo
        /// How its scheduler is reached; nil for a framework recovered from agents.
        var connection: FrameworkConnection?
        var principal: String?
        var state: FrameworkState
        /// False after a deactivation (the driver's abort): no offers until it re-registers.
        var active = true
        var suppressed = false
        var refusedUntil: [AgentID: Duration] = [:]
        var failoverTimeout: Duration
        /// While disconnected: when to tell its scheduler again (the notice may not get through).
        var nextNotice: Notice?

        var isConnected: Bool { state == .connected }
        var wantsOffers: Bool { isConnected && active && !suppressed && connection != nil }
        /// The driver-protocol scheduler's pid (nil for a v1 HTTP scheduler).
        var pid: PID? { if case .driver(let pid)? = connection { pid } else { nil } }
        /// Where messages to its scheduler go, while it is connected.
        var reachable: FrameworkConnection? { isConnected ? connection : nil }
        var isPartitionAware: Bool { info.capabilities.contains { $0.type == .partitionAware } }
    }

    struct Notice: Sendable, Hashable {
        var at: Duration
        var backoff: Duration
    }

    enum PendingWrite: Sendable, Hashable {
        case epoch
        case admit(AgentID)
        case remove(AgentID, reason: AgentRemovalReason)
        case expireUnreregistered([AgentID])
        case frameworkRemoved
        case pruned
    }

    public let settings: MasterSettings
    public let info: MasterInfo
    public let pid: PID
    public internal(set) var phase = Phase.standby
    public internal(set) var metrics = MasterMetrics()
    var electedEpoch: UInt64?
    var detected: Leader?
    var now: Duration = .zero
    var leadingSince: Duration?
    var registry = RegistryState()
    /// Agents whose registry entry changed since the last write asked for.
    var registryTouched: Set<AgentID> = []
    /// The wall-clock time (since the Unix epoch) at this core's time zero: removal times in the
    /// registry and `unreachable_time` are wall-clock, as Mesos's.
    public let wallClockOrigin: Duration
    var nextToken = 0
    var pendingWrites: [Int: PendingWrite] = [:]
    var agents: [AgentID: AgentRecord] = [:]
    var agentByPID: [PID: AgentID] = [:]
    /// Registry agents that have not re-registered since this master started leading.
    var recoveringAgents: Set<AgentID> = []
    var removedAgentPIDs = BoundedSet<PID>(capacity: 1)
    var frameworks: [FrameworkID: FrameworkRecord] = [:]
    var completedFrameworks: [FrameworkInfo] = []
    var tasks: [TaskKey: MesosTask] = [:]
    var tasksByAgent: [AgentID: Set<TaskKey>] = [:]
    /// Kills asked for while the task's agent could not be told (resent when it re-registers).
    var pendingKills: Set<TaskKey> = []
    var offers: [OfferID: Offer] = [:]
    var offerByAgent: [AgentID: OfferID] = [:]
    var nextID = 0
    var nextStream = 0
    var reregisterDeadline: Duration?
    /// Registry agents expected back when this master started leading (`--recovery_agent_removal_limit`'s base).
    var agentsAtRecovery = 0
    /// Registrations received while recovering, acted on once leading.
    var recoveryBacklog = RecoveryBacklog()
    /// Due times of the agents' health checks (`checkAgents`).
    var pingSchedule = PingSchedule()
    /// Agents that missed their health checks, waiting for a permit (`--agent_removal_rate_limit`), oldest first.
    var removalQueue: [AgentID] = []
    /// Agents of the registry that did not re-register within `agentReregisterTimeout` after a
    /// failover, each waiting for a permit of `--agent_removal_rate_limit` (Mesos's
    /// recoveredSlavesTimeout removes them through the same limiter); one that re-registers
    /// meanwhile is kept.
    var notReregisteredQueue: [AgentID] = []
    var lastRemovalPermit: Duration?
    var nextRegistryGC: Duration?
    var lastAllocation: Duration?
    var allocationCursor = 0

    /// - info: this master's MasterInfo; `pid` is the bus address it carries.
    /// - wallClockOrigin: the wall-clock time (since the Unix epoch) at the time zero of the ticks.
    public init(info: MasterInfo, pid: PID, settings: MasterSettings = MasterSettings(), wallClockOrigin: Duration = .zero) {
        self.wallClockOrigin = wallClockOrigin
        var info = info
        info.pid = pid.description
        self.info = info
        self.pid = pid
        self.settings = settings
        removedAgentPIDs = BoundedSet(capacity: settings.maxRemovedAgentPIDs)
    }

    public var epoch: UInt64? {
        switch phase {
        case .leading(let e), .recovering(let e): e
        default: nil
        }
    }

    public var isLeading: Bool { if case .leading = phase { true } else { false } }

    // Read-only views for the shell (state endpoints, logs) and the tests.
    public var activeAgentIDs: [AgentID] { agents.filter(\.value.isActive).map(\.key).sorted { $0.value < $1.value } }
    public var activeAgents: [AgentInfo] { agents.values.filter(\.isActive).map(\.info).sorted { ($0.id?.value ?? "") < ($1.id?.value ?? "") } }
    public var removedAgentIDs: [AgentID] { registry.removed.keys.sorted { $0.value < $1.value } }
    public var registryState: RegistryState { registry }
    /// Now on the wall clock (since the Unix epoch).
    var wallNow: Duration { wallClockOrigin + now }
    public var frameworkIDs: [FrameworkID] { frameworks.keys.sorted { $0.value < $1.value } }
    public var connectedFrameworkIDs: [FrameworkID] { frameworks.filter(\.value.isConnected).map(\.key).sorted { $0.value < $1.value } }
    public var knownTasks: [MesosTask] { tasks.values.sorted { ($0.frameworkID.value, $0.taskID.value) < ($1.frameworkID.value, $1.taskID.value) } }
    public var outstandingOffers: [Offer] { offers.values.sorted { $0.id.value < $1.id.value } }
    public var completed: [FrameworkInfo] { completedFrameworks }
    public var recoveringAgentCount: Int { recoveringAgents.count }

    public func framework(_ id: FrameworkID) -> (info: FrameworkInfo, pid: PID?, connected: Bool, active: Bool)? {
        frameworks[id].map { ($0.info, $0.pid, $0.isConnected, $0.active) }
    }

    public mutating func handle(_ event: Event) -> [Effect] {
        if phase == .exited { return [] }
        switch event {
        case .elected(let epoch):
            electedEpoch = epoch
            return [.observe(.elected(epoch: epoch))] + maybeStartRecovery()
        case .startStandalone:
            guard phase == .standby else { return [] }
            phase = .startingStandalone
            return [.loadRegistry]
        case .leaderDetected(let leader):
            detected = leader
            switch phase {
            case .leading(let e), .recovering(let e):
                if leader?.pid != pid || leader?.epoch != e { return exit(.lostLeadership(.otherLeaderDetected(leader))) }
                return []
            case .standby:
                return maybeStartRecovery()
            default:
                return []
            }
        case .candidacyLost(let loss):
            switch phase {
            case .standby: return exit(.candidacyLost(loss))
            default: return exit(.lostLeadership(loss))
            }
        case .registryLoaded(let loaded):
            return registryLoaded(loaded)
        case .registryLoadFailed(let why):
            return exit(.registryUnavailable("cannot read the registry: \(why)"))
        case .registryStored(let token):
            guard let write = pendingWrites.removeValue(forKey: token) else { return [] }
            return completed(write)
        case .registryStoreFailed(let fenced, let reason):
            return exit(fenced ? .registryWriteFenced(reason) : .registryUnavailable(reason))
        case .message(let inbound):
            return receive(inbound)
        case .linkBroken(let endpoint):
            return linkBroken(endpoint)
        case .tick(let t):
            now = max(now, t)
            guard isLeading else { return [] }
            return checkAgents() + expireUnreregistered() + expireDisconnectedFrameworks() + allocateIfDue() + collectRegistryGarbage()
        case .teardown(let id):
            guard isLeading, frameworks[id] != nil else { return [] }
            return removeFramework(id, reason: .teardownByOperator)
        case .streamClosed(let stream):
            return streamClosed(stream)
        }
    }

    // MARK: Leadership

    private mutating func maybeStartRecovery() -> [Effect] {
        guard phase == .standby, let epoch = electedEpoch, let leader = detected, leader.pid == pid, leader.epoch == epoch else { return [] }
        phase = .recovering(epoch: epoch)
        return [.loadRegistry]
    }

    private mutating func registryLoaded(_ loaded: RegistryState?) -> [Effect] {
        let epoch: UInt64
        switch phase {
        case .startingStandalone:
            // Alone, a master leads one epoch above the highest it (or its predecessor on this
            // work directory) ever led: a restart keeps its agents and registry.
            epoch = (loaded?.highestEpoch ?? 0) &+ 1
            detected = Leader(epoch: epoch, pid: pid, info: info)
            electedEpoch = epoch
            phase = .recovering(epoch: epoch)
        case .recovering(let e):
            epoch = e
        default:
            return []
        }
        registry = loaded ?? RegistryState()
        registryTouched = []
        if let highest = registry.highestEpoch, highest >= epoch { return exit(.epochAlreadyLed(epoch: epoch, highest: highest)) }
        registry.highestEpoch = epoch
        return store(.epoch)
    }

    mutating func exit(_ reason: ExitReason) -> [Effect] {
        phase = .exited
        recoveryBacklog = RecoveryBacklog()
        return [.exit(reason)]
    }

    mutating func store(_ write: PendingWrite) -> [Effect] {
        nextToken += 1
        pendingWrites[nextToken] = write
        metrics.registryWrites += 1
        var change = RegistryChange(meta: registry.meta)
        for id in registryTouched { change.agents[id] = registry.entry(id).map { .put($0) } ?? .delete }
        registryTouched = []
        return [.storeRegistry(change, token: nextToken)]
    }

    /// `id`'s registry entry changed: the next write carries it.
    mutating func touchRegistry(_ id: AgentID) { registryTouched.insert(id) }

    private mutating func completed(_ write: PendingWrite) -> [Effect] {
        switch write {
        case .epoch:
            guard case .recovering(let epoch) = phase else { return [] }
            phase = .leading(epoch: epoch)
            leadingSince = now
            recoveringAgents = Set(registry.admitted.keys)
            agentsAtRecovery = recoveringAgents.count
            nextRegistryGC = now + settings.registryGCInterval
            reregisterDeadline = recoveringAgents.isEmpty ? nil : now + settings.agentReregisterTimeout
            var effects: [Effect] = [.observe(.leading(epoch: epoch, agentsExpected: recoveringAgents.count))]
            let held = recoveryBacklog.drain()
            if !held.isEmpty {
                metrics.heldDuringRecovery += held.count
                effects.append(.observe(.recoveryBacklogReplayed(count: held.count)))
                for inbound in held { effects += receive(inbound) }
            }
            return effects
        case .admit(let id):
            return admitted(id)
        case .remove(let id, let reason):
            return removed(id, reason: reason)
        case .expireUnreregistered(let ids):
            return ids.flatMap { removed($0, reason: .notReregistered(after: settings.agentReregisterTimeout)) }
        case .frameworkRemoved, .pruned:
            return []
        }
    }

    // MARK: Messages

    private mutating func receive(_ inbound: Inbound) -> [Effect] {
        let envelope = inbound.envelope
        let role: EpochGuard.Role = if case .leading(let e) = phase { .leadingMaster(epoch: e, requirePeerRoles: settings.requirePeerRoles) } else { .standbyMaster }
        switch EpochGuard.check(inbound, as: role) {
        case .accept: break
        case .drop(let reason):
            metrics.droppedMessages[reason, default: 0] += 1
            return [.observe(.messageDropped(from: envelope.from, reason: reason))]
        case .answerWithHint(let reason):
            // Recovering the registry: registrations wait for it (`RecoveryBacklog`); anything
            // else, or more than the backlog holds, is dropped without an answer, as Mesos drops
            // everything ("not recovered yet"), and senders retry on their backoff. A hint would
            // cost a connection to each of the thousands of agents re-registering at once.
            if case .recovering(let epoch) = phase {
                if envelope.epoch == epoch, recoveryBacklog.hold(inbound, limit: settings.recoveryBacklogLimit) { return [] }
                metrics.droppedMessages[reason, default: 0] += 1
                return [.observe(.messageDropped(from: envelope.from, reason: reason))]
            }
            metrics.droppedMessages[reason, default: 0] += 1
            guard let from = PID(envelope.from) else { return [] }
            return [.send(.leaderHint(hint(reason.explanation)), to: from)]
        }
        guard let from = PID(envelope.from), let payload = envelope.payload else { return [] }
        if case .leaderHint = payload { return [] }
        if payload.isFromRegisteredAgent, removedAgentPIDs.contains(from) {
            return [
                .observe(.removedAgentToldToShutDown(pid: from)),
                .send(.shutdown(ShutdownMessage(message: "this agent was removed from the cluster")), to: from),
            ]
        }
        do {
            try MessageValidation.validate(payload)
        } catch {
            switch payload {
            case .registerFramework, .reregisterFramework:
                // A registration error is fatal for that scheduler instance (Mesos: FrameworkErrorMessage).
                metrics.invalidMessages += 1
                return [.observe(.frameworkRefused(pid: from, reason: .invalid(error))), .send(.frameworkError(FrameworkErrorMessage(message: FrameworkRefusal.invalid(error).description)), to: from)]
            default:
                return refuse(payload, from: from, error)
            }
        }
        switch payload {
        case .registerAgent(let m): return registerAgent(m.agent, from: from, peer: inbound.peer)
        case .reregisterAgent(let m): return reregisterAgent(m, from: from, peer: inbound.peer)
        case .pong:
            guard let id = agent(speakingAs: from, peer: inbound.peer), agents[id]?.isActive == true else { return [] }
            agents[id]?.pongSinceLastPing = true
            return cancelScheduledRemoval(id)
        case .statusUpdate(let m): return statusUpdate(m, from: from, peer: inbound.peer)
        case .registerFramework(let m): return registerFramework(m.framework, from: from, peer: inbound.peer)
        case .reregisterFramework(let m): return reregisterFramework(m.framework, failover: m.failover, from: from, peer: inbound.peer)
        case .unregisterFramework(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.removeFramework(m.frameworkID, reason: .unregistered) }
        case .deactivateFramework(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.deactivate(m.frameworkID) }
        case .launchTasks(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.launch(m, replyTo: .driver(from)) }
        case .declineOffers(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.decline(m) }
        case .reviveOffers(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.revive(m.frameworkID) }
        case .suppressOffers(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.suppress(m.frameworkID) }
        case .killTask(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.kill(m, replyTo: .driver(from)) }
        case .reconcileTasks(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.reconcile(m, replyTo: .driver(from)) }
        case .statusUpdateAck(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.acknowledge(m) }
        case .unregisterAgent(let m): return unregisterAgent(m, from: from, peer: inbound.peer)
        case .executorToFramework(let m): return executorToFramework(m, from: from, peer: inbound.peer)
        case .exitedExecutor(let m):
            guard agent(speakingAs: from, peer: inbound.peer) == m.agentID else { return [] }
            var effects: [Effect] = [.observe(.executorExited(agent: m.agentID, framework: m.frameworkID, executor: m.executorID, status: m.status))]
            if let to = frameworks[m.frameworkID]?.reachable { effects.append(deliver(payload, to: to)) }
            return effects
        case .frameworkToExecutor(let m):
            return call(m.frameworkID, from: from, peer: inbound.peer, payload) { core in core.frameworkToExecutor(m) }
        default:
            metrics.unexpectedMessages += 1
            return [.observe(.unexpectedMessage(from: from, kind: payload.kind))]
        }
    }

    private func hint(_ reason: String) -> LeaderHintMessage {
        if case .leading(let e) = phase { return LeaderHintMessage(leader: info, leaderEpoch: e, reason: reason) }
        return LeaderHintMessage(leader: detected?.info, leaderEpoch: detected?.epoch, reason: reason)
    }

    /// A message with an invalid value: nothing of it is acted on; the sender is told why.
    mutating func refuse(_ payload: Envelope.Payload, from: PID, _ error: InvalidValue) -> [Effect] {
        metrics.invalidMessages += 1
        return [
            .observe(.messageRefused(from: from, kind: payload.kind, reason: error.description)),
            .send(.messageRefused(MessageRefusedMessage(kind: payload.kind, reason: error.description)), to: from),
        ]
    }

    mutating func newID(_ kind: String) -> String {
        nextID += 1
        return "\(info.id)-\(kind)\(nextID)"
    }

    /// A status update the master makes itself: no uuid, so no acknowledgement is expected.
    func masterUpdate(_ task: TaskID, _ fw: FrameworkID, _ agent: AgentID?, _ state: TaskState, _ reason: TaskStatus.Reason, _ message: String,
        unreachableSince: Duration? = nil) -> StatusUpdateMessage
    {
        let status = TaskStatus(
            taskID: task, state: state, message: message, source: .master, reason: reason, agentID: agent, timestamp: now.inSeconds,
            unreachableTime: unreachableSince.map { TimeInfo(nanoseconds: $0.nanosecondsSaturating) })
        return StatusUpdateMessage(update: StatusUpdate(frameworkID: fw, status: status, timestamp: now.inSeconds, uuid: [], agentID: agent))
    }
}

/// The one key of a task everywhere: task ids are unique per framework only.
public struct TaskKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var framework: FrameworkID
    public var task: TaskID

    public init(framework: FrameworkID, task: TaskID) {
        self.framework = framework
        self.task = task
    }

    public static func < (a: TaskKey, b: TaskKey) -> Bool { (a.framework.value, a.task.value) < (b.framework.value, b.task.value) }
    public var description: String { "\(framework.value)/\(task.value)" }
}
