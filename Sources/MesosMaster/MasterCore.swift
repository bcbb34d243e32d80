import MesosHA
import MesosWire

public struct MasterConfiguration: Sendable, Hashable {
    /// Time between pings to an agent; one unanswered ping counts one timeout.
    public var agentPingTimeout: Duration = .seconds(15)
    /// Consecutive unanswered pings after which an agent is removed and its tasks are LOST.
    public var maxAgentPingTimeouts = 5
    /// How often resources are offered.
    public var allocationInterval: Duration = .seconds(1)
    /// After a failover, agents of the registry that have not re-registered by then are removed.
    public var agentReregisterTimeout: Duration = .seconds(600)

    public init() {}
}

/// The master: registration, health checks, offers, tasks and the registry. A pure state
/// machine: events in (messages, ticks of a clock, ZooKeeper results), effects out (sends,
/// fenced registry writes, exit). The shell stamps outgoing messages with the epoch.
public struct MasterCore: Sendable {
    public enum Event: Sendable, Hashable {
        /// Our candidacy won at `epoch` (contender).
        case elected(epoch: UInt64)
        /// The leader our detector sees; a master leads only when it sees itself.
        case leaderDetected(Leader?)
        case candidacyLost(reason: String)
        /// The registry read from ZooKeeper after election (nil: none yet).
        case registryLoaded(Registry?)
        /// A fenced registry write of `token` is in ZooKeeper.
        case registryStored(token: Int)
        case message(Envelope)
        /// An outbound link to "host:port" broke.
        case linkBroken(peer: String)
        /// The clock; time only moves on ticks.
        case tick(now: Duration)
    }

    public enum Effect: Sendable, Hashable {
        case send(Envelope.Payload, to: String)
        case loadRegistry
        /// Write `registry`, fenced by our own leader znode, then report `registryStored(token)`.
        case storeRegistry(Registry, token: Int)
        case exit(code: Int32, reason: String)
        case log(LogLevel, String)
    }

    public enum Phase: Sendable, Hashable {
        case standby
        case recovering(epoch: UInt64)
        case leading(epoch: UInt64)
        case exited
    }

    struct AgentRecord: Sendable, Hashable {
        var info: AgentInfo
        var pid: String
        var active = false  // false while its admission or removal is being written
        var lastPing: Duration?
        var pongSinceLastPing = true
        var missedPings = 0
    }

    struct FrameworkRecord: Sendable, Hashable {
        var info: FrameworkInfo
        var pid: String
        var active = true
        var refusedUntil: [AgentID: Duration] = [:]
    }

    struct TaskKey: Sendable, Hashable {
        var framework: FrameworkID
        var task: TaskID
    }

    enum PendingWrite: Sendable, Hashable {
        case epoch
        case admit(AgentID, reregistered: Bool)
        case remove(AgentID, reason: String)
        case expireUnreregistered([AgentID])
    }

    public let configuration: MasterConfiguration
    public let info: MasterInfo
    public private(set) var phase = Phase.standby
    private var electedEpoch: UInt64?
    private var detected: Leader?
    private var now: Duration = .zero
    private var registry = Registry()
    private var nextToken = 0
    private var pendingWrites: [Int: PendingWrite] = [:]
    /// Agents whose admission is being written to the registry.
    private var admitting: Set<AgentID> = []
    private var agents: [AgentID: AgentRecord] = [:]
    private var agentByPID: [String: AgentID] = [:]
    private var removedPIDs: Set<String> = []
    private var frameworks: [FrameworkID: FrameworkRecord] = [:]
    private var tasks: [TaskKey: MesosTask] = [:]
    private var offers: [OfferID: Offer] = [:]
    private var nextID = 0
    private var reregisterDeadline: Duration?
    private var lastAllocation: Duration?
    private var allocationCursor = 0

    public init(info: MasterInfo, configuration: MasterConfiguration = MasterConfiguration()) {
        precondition(info.pid != nil, "MasterInfo needs the master's pid")
        self.info = info
        self.configuration = configuration
    }

    var pid: String { info.pid! }
    public var epoch: UInt64? {
        switch phase {
        case .leading(let e), .recovering(let e): e
        default: nil
        }
    }

    // Read-only views for the shell's logs and the tests.
    public var activeAgentIDs: [AgentID] { agents.filter(\.value.active).map(\.key).sorted { $0.value < $1.value } }
    public var removedAgentIDs: [AgentID] { registry.removed }
    public var frameworkIDs: [FrameworkID] { frameworks.keys.sorted { $0.value < $1.value } }
    public var knownTasks: [MesosTask] { tasks.values.sorted { $0.taskID.value < $1.taskID.value } }
    public var outstandingOffers: [Offer] { offers.values.sorted { $0.id.value < $1.id.value } }

    public mutating func handle(_ event: Event) -> [Effect] {
        if phase == .exited { return [] }
        switch event {
        case .elected(let epoch):
            electedEpoch = epoch
            return maybeStartRecovery()
        case .leaderDetected(let leader):
            detected = leader
            switch phase {
            case .leading(let e), .recovering(let e):
                if leader?.pid != pid || leader?.epoch != e {
                    let who = leader.map { "\($0)" } ?? "no leader"
                    return suicide("lost leadership: ZooKeeper shows \(who), not us at epoch \(e)")
                }
                return []
            default:
                return maybeStartRecovery()
            }
        case .candidacyLost(let reason):
            switch phase {
            case .standby: return suicide("candidacy lost while standing by: \(reason)")
            default: return suicide("lost leadership: \(reason)")
            }
        case .registryLoaded(let loaded):
            guard case .recovering(let epoch) = phase else { return [] }
            registry = loaded ?? Registry()
            if let highest = registry.highestEpoch, highest >= epoch {
                return suicide("refusing to lead at epoch \(epoch): epoch \(highest) was already led (was the group recreated?)")
            }
            registry.highestEpoch = epoch
            return store(.epoch)
        case .registryStored(let token):
            guard let write = pendingWrites.removeValue(forKey: token) else { return [] }
            return completed(write)
        case .message(let envelope):
            return receive(envelope)
        case .linkBroken(let peer):
            // Links are one-way: the scheduler may be fine and only have lost what we sent (a cut,
            // a reset). Its offers may be lost, so they go back to the pool and are offered again on
            // a new connection; the framework stays registered. (A scheduler that is gone costs one
            // refused connection per allocation round until it re-registers or is torn down.)
            var effects: [Effect] = []
            for (id, fw) in frameworks where fw.active && endpoint(of: fw.pid) == peer {
                effects += rescindOffers { $0.frameworkID == id }
                effects.append(.log(.info, "link to framework \(id.value) at \(fw.pid) broke; its offers are rescinded"))
            }
            return effects
        case .tick(let t):
            now = t
            guard case .leading = phase else { return [] }
            return checkAgents() + expireUnreregistered() + allocateIfDue()
        }
    }

    // MARK: Leadership

    private mutating func maybeStartRecovery() -> [Effect] {
        guard phase == .standby, let epoch = electedEpoch, let leader = detected, leader.pid == pid, leader.epoch == epoch else { return [] }
        phase = .recovering(epoch: epoch)
        return [.log(.info, "elected leader at epoch \(epoch); recovering the registry"), .loadRegistry]
    }

    private mutating func suicide(_ reason: String) -> [Effect] {
        phase = .exited
        return [.log(.error, "\(reason); committing suicide"), .exit(code: 1, reason: reason)]
    }

    private mutating func store(_ write: PendingWrite) -> [Effect] {
        if case .admit(let id, _) = write { admitting.insert(id) }
        nextToken += 1
        pendingWrites[nextToken] = write
        return [.storeRegistry(registry, token: nextToken)]
    }

    private mutating func completed(_ write: PendingWrite) -> [Effect] {
        switch write {
        case .epoch:
            guard case .recovering(let epoch) = phase else { return [] }
            phase = .leading(epoch: epoch)
            reregisterDeadline = registry.admitted.isEmpty ? nil : now + configuration.agentReregisterTimeout
            return [.log(.info, "leading at epoch \(epoch) with \(registry.admitted.count) agent(s) expected to re-register")]
        case .admit(let id, let reregistered):
            admitting.remove(id)
            guard var agent = agents[id] else { return [] }
            agent.active = true
            agent.lastPing = nil
            agents[id] = agent
            let payload: Envelope.Payload = reregistered
                ? .agentReregistered(AgentReregisteredMessage(agentID: id, master: info))
                : .agentRegistered(AgentRegisteredMessage(agentID: id, master: info))
            return [.send(payload, to: agent.pid), .log(.info, "agent \(id.value) at \(agent.pid) \(reregistered ? "re-registered" : "registered")")]
                + checkAgents()  // its first ping now
        case .remove(let id, let reason):
            return removed(id, reason: reason)
        case .expireUnreregistered(let ids):
            return ids.flatMap { removed($0, reason: "did not re-register within \(configuration.agentReregisterTimeout) after failover") }
        }
    }

    // MARK: Messages

    private mutating func receive(_ envelope: Envelope) -> [Effect] {
        let role: EpochGuard.Role = if case .leading(let e) = phase { .leadingMaster(epoch: e) } else { .standbyMaster }
        switch EpochGuard.check(envelope, as: role) {
        case .accept: break
        case .drop(let reason):
            return [.log(.debug, "dropped message from \(envelope.from): \(reason.rawValue)")]
        case .answerWithHint(let reason):
            if case .recovering = phase {
                return [.send(.leaderHint(hint("elected; recovering the registry, retry shortly")), to: envelope.from)]
            }
            return [.send(.leaderHint(hint(reason.rawValue)), to: envelope.from)]
        }
        let from = envelope.from
        if removedPIDs.contains(from) {
            if case .leaderHint = envelope.payload { return [] }
            return [
                .log(.info, "message from removed agent \(from): telling it to shut down"),
                .send(.shutdown(ShutdownMessage(message: "this agent was removed from the cluster")), to: from),
            ]
        }
        switch envelope.payload {
        case .registerAgent(let m)?: return registerAgent(m.agent, from: from)
        case .reregisterAgent(let m)?: return reregisterAgent(m, from: from)
        case .pong?:
            if let id = agentByPID[from], agents[id]?.active == true { agents[id]!.pongSinceLastPing = true }
            return []
        case .statusUpdate(let m)?: return statusUpdate(m, from: from)
        case .statusUpdateAck(let m)?: return acknowledge(m, from: from)
        case .registerFramework(let m)?: return registerFramework(m.framework, from: from)
        case .reregisterFramework(let m)?: return reregisterFramework(m.framework, from: from)
        case .unregisterFramework(let m)?: return unregisterFramework(m.frameworkID, from: from)
        case .deactivateFramework(let m)?:
            guard frameworks[m.frameworkID]?.pid == from else { return [] }
            frameworks[m.frameworkID]!.active = false
            return rescindOffers { $0.frameworkID == m.frameworkID }
        case .launchTasks(let m)?: return launch(m, from: from)
        case .declineOffers(let m)?:
            return decline(m.offerIDs, framework: m.frameworkID, refuse: m.filters?.refuseSeconds ?? Filters().refuseSeconds, from: from)
        case .reviveOffers(let m)?:
            if frameworks[m.frameworkID]?.pid == from { frameworks[m.frameworkID]!.refusedUntil = [:] }
            return []
        case .killTask(let m)?: return kill(m, from: from)
        case .reconcileTasks(let m)?: return reconcile(m, from: from)
        case .leaderHint?: return []
        default:
            return [.log(.warning, "unexpected message \(String(describing: envelope.payload).prefix(60)) from \(from)")]
        }
    }

    private func hint(_ reason: String) -> LeaderHintMessage {
        if case .leading(let e) = phase { return LeaderHintMessage(leader: info, leaderEpoch: e, reason: reason) }
        return LeaderHintMessage(leader: detected?.info, leaderEpoch: detected?.epoch, reason: reason)
    }

    private mutating func newID(_ kind: String) -> String {
        nextID += 1
        return "\(info.id)-\(kind)\(nextID)"
    }

    private mutating func registerAgent(_ agentInfo: AgentInfo, from: String) -> [Effect] {
        guard Resources(agentInfo.resources).isValid else {
            return [.log(.warning, "refusing agent \(from): its resources are not finite, non-negative numbers")]
        }
        if let id = agentByPID[from], let agent = agents[id] {
            // A retry of a registration in progress or done: answer again once it is stored.
            return agent.active ? [.send(.agentRegistered(AgentRegisteredMessage(agentID: id, master: info)), to: from)] : []
        }
        let id = AgentID(value: newID("S"))
        var stored = agentInfo
        stored.id = id
        stored.pid = from
        agents[id] = AgentRecord(info: stored, pid: from)
        agentByPID[from] = id
        registry.admitted.append(Registry.Agent(info: stored))
        return store(.admit(id, reregistered: false))
    }

    private mutating func reregisterAgent(_ m: ReregisterAgentMessage, from: String) -> [Effect] {
        guard let id = m.agent.id else { return registerAgent(m.agent, from: from) }
        guard Resources(m.agent.resources).isValid else {
            return [.log(.warning, "refusing agent \(from): its resources are not finite, non-negative numbers")]
        }
        if registry.removed.contains(id) {
            removedPIDs.insert(from)
            return [
                .log(.info, "removed agent \(id.value) at \(from) tried to re-register: telling it to shut down"),
                .send(.shutdown(ShutdownMessage(message: "agent \(id.value) was removed from the cluster; it may not re-register")), to: from),
            ]
        }
        if let old = agents[id], old.pid != from { agentByPID[old.pid] = nil }
        var stored = m.agent
        stored.pid = from
        let wasActive = agents[id]?.active ?? false
        var record = agents[id] ?? AgentRecord(info: stored, pid: from)
        record.info = stored
        record.pid = from
        agents[id] = record
        agentByPID[from] = id
        // The agent's tasks are the truth: a new leader rebuilds its task table from them.
        for task in m.tasks where task.agentID == id {
            tasks[TaskKey(framework: task.frameworkID, task: task.taskID)] = task
        }
        for fw in m.frameworks {
            if let fid = fw.id, frameworks[fid] == nil { frameworks[fid] = FrameworkRecord(info: fw, pid: "", active: false) }
        }
        // A retry while its admission is being written: the answer comes when it is stored.
        if admitting.contains(id) { return [] }
        if let i = registry.admitted.firstIndex(where: { $0.info.id == id }) {
            // Already in the registry as it is (the usual case after a failover): nothing to write.
            if wasActive || registry.admitted[i].info == stored { return completed(.admit(id, reregistered: true)) }
            registry.admitted[i].info = stored  // e.g. a new pid: keep the registry current
        } else {
            registry.admitted.append(Registry.Agent(info: stored))
        }
        agents[id]!.active = false
        return store(.admit(id, reregistered: true))
    }

    private mutating func registerFramework(_ fw: FrameworkInfo, from: String) -> [Effect] {
        if let (id, _) = frameworks.first(where: { $0.value.pid == from && $0.value.active }) {
            return [.send(.frameworkRegistered(FrameworkRegisteredMessage(frameworkID: id, masterInfo: info)), to: from)]
        }
        let id = FrameworkID(value: newID("F"))
        var stored = fw
        stored.id = id
        frameworks[id] = FrameworkRecord(info: stored, pid: from)
        lastAllocation = nil  // offer to it on the next tick
        return [
            .send(.frameworkRegistered(FrameworkRegisteredMessage(frameworkID: id, masterInfo: info)), to: from),
            .log(.info, "framework \(id.value) (\(fw.name)) registered from \(from)"),
        ]
    }

    private mutating func reregisterFramework(_ fw: FrameworkInfo, from: String) -> [Effect] {
        guard let id = fw.id else { return registerFramework(fw, from: from) }
        var record = frameworks[id] ?? FrameworkRecord(info: fw, pid: from)
        record.info = fw
        record.pid = from
        record.active = true
        frameworks[id] = record
        lastAllocation = nil
        return [
            .send(.frameworkReregistered(FrameworkReregisteredMessage(frameworkID: id, masterInfo: info)), to: from),
            .log(.info, "framework \(id.value) (\(fw.name)) re-registered from \(from)"),
        ]
    }

    private mutating func unregisterFramework(_ id: FrameworkID, from: String) -> [Effect] {
        guard frameworks[id]?.pid == from else { return [] }
        frameworks[id] = nil
        var effects = rescindOffers { $0.frameworkID == id }
        let agentsWithTasks = Set(tasks.values.filter { $0.frameworkID == id }.map(\.agentID))
        for agentID in agentsWithTasks {
            if let agent = agents[agentID] { effects.append(.send(.shutdownFramework(ShutdownFrameworkMessage(frameworkID: id)), to: agent.pid)) }
        }
        tasks = tasks.filter { $0.key.framework != id }
        return effects + [.log(.info, "framework \(id.value) unregistered")]
    }

    // MARK: Tasks

    private mutating func launch(_ m: LaunchTasksMessage, from: String) -> [Effect] {
        guard let framework = frameworks[m.frameworkID], framework.pid == from else {
            return [.send(.frameworkError(FrameworkErrorMessage(message: "framework \(m.frameworkID.value) is not registered")), to: from)]
        }
        let used = m.offerIDs.compactMap { offers[$0] }
        let valid = used.count == m.offerIDs.count && !used.isEmpty
            && used.allSatisfy { $0.frameworkID == m.frameworkID && $0.agentID == used[0].agentID }
        for id in m.offerIDs { offers[id] = nil }
        var effects: [Effect] = []
        guard valid, let agentID = used.first?.agentID, let agent = agents[agentID], agent.active else {
            for task in m.tasks {
                effects.append(.send(.statusUpdate(masterUpdate(task.taskID, m.frameworkID, task.agentID, .lost, .invalidOffers, "invalid or stale offers")), to: from))
            }
            return effects
        }
        var offered = Resources(used.flatMap(\.resources))
        for task in m.tasks {
            let need = Resources(task.resources)
            guard task.agentID == agentID, need.isValid, offered.contains(need),
                tasks[TaskKey(framework: m.frameworkID, task: task.taskID)] == nil
            else {
                effects.append(.send(.statusUpdate(masterUpdate(task.taskID, m.frameworkID, task.agentID, .error, .invalidOffers, "task does not fit the offer or reuses a task id")), to: from))
                continue
            }
            offered.subtract(need)
            tasks[TaskKey(framework: m.frameworkID, task: task.taskID)] = MesosTask(
                name: task.name, taskID: task.taskID, frameworkID: m.frameworkID, agentID: agentID, state: .staging, resources: task.resources)
            effects.append(.send(.runTask(RunTaskMessage(frameworkID: m.frameworkID, framework: framework.info, task: task, pid: from)), to: agent.pid))
        }
        if let refuse = m.filters?.refuseSeconds, !offered.isEmpty { refuseAgent(agentID, for: m.frameworkID, seconds: refuse) }
        return effects
    }

    private mutating func decline(_ ids: [OfferID], framework: FrameworkID, refuse: Double, from: String) -> [Effect] {
        guard frameworks[framework]?.pid == from else { return [] }
        for id in ids {
            guard let offer = offers[id], offer.frameworkID == framework else { continue }
            offers[id] = nil
            refuseAgent(offer.agentID, for: framework, seconds: refuse)
        }
        return []
    }

    private mutating func refuseAgent(_ agent: AgentID, for framework: FrameworkID, seconds: Double) {
        guard seconds > 0 else { return }
        frameworks[framework]?.refusedUntil[agent] = now + .milliseconds(Int64(seconds * 1000))
    }

    private mutating func kill(_ m: KillTaskMessage, from: String) -> [Effect] {
        guard frameworks[m.frameworkID]?.pid == from else { return [] }
        guard let task = tasks[TaskKey(framework: m.frameworkID, task: m.taskID)], let agent = agents[task.agentID] else {
            return [.send(.statusUpdate(masterUpdate(m.taskID, m.frameworkID, nil, .lost, .reconciliation, "task unknown to the master")), to: from)]
        }
        return [.send(.killTask(m), to: agent.pid)]
    }

    private mutating func statusUpdate(_ m: StatusUpdateMessage, from: String) -> [Effect] {
        guard let agentID = agentByPID[from], agents[agentID]?.active == true else {
            return [.log(.debug, "status update from unregistered agent \(from) dropped (it retries after registering)")]
        }
        let key = TaskKey(framework: m.update.frameworkID, task: m.update.status.taskID)
        if var task = tasks[key] {
            task.state = m.update.status.state
            task.status = m.update.status
            tasks[key] = task
        }
        guard let fw = frameworks[m.update.frameworkID], fw.active, !fw.pid.isEmpty else {
            return []  // the agent retries until the framework is back and acknowledges
        }
        var forwarded = m
        forwarded.pid = from
        return [.send(.statusUpdate(forwarded), to: fw.pid)]
    }

    private mutating func acknowledge(_ m: StatusUpdateAcknowledgementMessage, from: String) -> [Effect] {
        guard frameworks[m.frameworkID]?.pid == from, let agent = agents[m.agentID] else { return [] }
        let key = TaskKey(framework: m.frameworkID, task: m.taskID)
        if let task = tasks[key], task.state.isTerminal, task.status?.uuid == m.uuid { tasks[key] = nil }
        return [.send(.statusUpdateAck(m), to: agent.pid)]
    }

    private mutating func reconcile(_ m: ReconcileTasksMessage, from: String) -> [Effect] {
        guard frameworks[m.frameworkID]?.pid == from else { return [] }
        var effects: [Effect] = []
        if m.statuses.isEmpty {
            for task in tasks.values where task.frameworkID == m.frameworkID {
                effects.append(.send(.statusUpdate(masterUpdate(task.taskID, m.frameworkID, task.agentID, task.state, .reconciliation, "reconciliation")), to: from))
            }
            return effects
        }
        for status in m.statuses {
            if let task = tasks[TaskKey(framework: m.frameworkID, task: status.taskID)] {
                effects.append(.send(.statusUpdate(masterUpdate(task.taskID, m.frameworkID, task.agentID, task.state, .reconciliation, "reconciliation")), to: from))
            } else if let agentID = status.agentID, registry.removed.contains(agentID) {
                effects.append(.send(.statusUpdate(masterUpdate(status.taskID, m.frameworkID, agentID, .lost, .agentRemoved, "agent removed")), to: from))
            } else if let agentID = status.agentID, registry.admitted.contains(where: { $0.info.id == agentID }), agents[agentID]?.active != true {
                continue  // the agent may still re-register: no answer yet, as Mesos
            } else {
                effects.append(.send(.statusUpdate(masterUpdate(status.taskID, m.frameworkID, status.agentID, .lost, .reconciliation, "task unknown")), to: from))
            }
        }
        return effects
    }

    /// A status update the master makes itself: no uuid, so no acknowledgement is expected.
    private func masterUpdate(_ task: TaskID, _ fw: FrameworkID, _ agent: AgentID?, _ state: TaskState, _ reason: TaskStatus.Reason, _ message: String) -> StatusUpdateMessage {
        let status = TaskStatus(taskID: task, state: state, message: message, source: .master, reason: reason, agentID: agent, timestamp: now.inSeconds)
        return StatusUpdateMessage(update: StatusUpdate(frameworkID: fw, status: status, timestamp: now.inSeconds, uuid: [], agentID: agent))
    }

    // MARK: Agents' health

    private mutating func checkAgents() -> [Effect] {
        var effects: [Effect] = []
        for (id, agent) in agents where agent.active {
            if let last = agent.lastPing, now - last < configuration.agentPingTimeout { continue }
            var a = agent
            if a.lastPing != nil { a.missedPings = a.pongSinceLastPing ? 0 : a.missedPings + 1 }
            if a.missedPings >= configuration.maxAgentPingTimeouts {
                agents[id] = a
                effects += remove(id, reason: "missed \(a.missedPings) consecutive pings (\(configuration.agentPingTimeout) each)")
                continue
            }
            a.lastPing = now
            a.pongSinceLastPing = false
            agents[id] = a
            effects.append(.send(.ping(PingAgentMessage(connected: true)), to: a.pid))
        }
        return effects
    }

    private mutating func remove(_ id: AgentID, reason: String) -> [Effect] {
        agents[id]?.active = false
        registry.admitted.removeAll { $0.info.id == id }
        if !registry.removed.contains(id) { registry.removed.append(id) }
        return [.log(.warning, "removing agent \(id.value): \(reason)")] + rescindOffers { $0.agentID == id } + store(.remove(id, reason: reason))
    }

    /// The removal is in the registry: tell everyone.
    private mutating func removed(_ id: AgentID, reason: String) -> [Effect] {
        var effects: [Effect] = []
        let agent = agents.removeValue(forKey: id)
        if let agent {
            agentByPID[agent.pid] = nil
            removedPIDs.insert(agent.pid)
            effects.append(.send(.shutdown(ShutdownMessage(message: "agent removed: \(reason)")), to: agent.pid))
        }
        for (key, task) in tasks where task.agentID == id {
            tasks[key] = nil
            guard !task.state.isTerminal, let fw = frameworks[task.frameworkID], fw.active else { continue }
            effects.append(.send(.statusUpdate(masterUpdate(task.taskID, task.frameworkID, id, .lost, .agentRemoved, "agent \(id.value) removed: \(reason)")), to: fw.pid))
        }
        for fw in frameworks.values where fw.active {
            effects.append(.send(.lostAgent(LostAgentMessage(agentID: id)), to: fw.pid))
        }
        return effects
    }

    private mutating func expireUnreregistered() -> [Effect] {
        guard let deadline = reregisterDeadline, now >= deadline else { return [] }
        reregisterDeadline = nil
        let missing = registry.admitted.map { $0.info.id! }.filter { agents[$0] == nil }
        guard !missing.isEmpty else { return [] }
        registry.admitted.removeAll { missing.contains($0.info.id!) }
        registry.removed += missing
        return [.log(.warning, "removing \(missing.count) agent(s) that did not re-register")] + store(.expireUnreregistered(missing))
    }

    // MARK: Offers

    private mutating func rescindOffers(where match: (Offer) -> Bool) -> [Effect] {
        var effects: [Effect] = []
        for (id, offer) in offers where match(offer) {
            offers[id] = nil
            if let fw = frameworks[offer.frameworkID], fw.active {
                effects.append(.send(.rescindOffer(RescindResourceOfferMessage(offerID: id)), to: fw.pid))
            }
        }
        return effects
    }

    private mutating func allocateIfDue() -> [Effect] {
        if let last = lastAllocation, now - last < configuration.allocationInterval { return [] }
        let candidates = frameworks.filter { $0.value.active && !$0.value.pid.isEmpty }.keys.sorted { $0.value < $1.value }
        guard !candidates.isEmpty else { return [] }  // the interval starts with the first real round
        lastAllocation = now
        var effects: [Effect] = []
        for (agentID, agent) in agents.sorted(by: { $0.key.value < $1.key.value }) where agent.active {
            guard !offers.values.contains(where: { $0.agentID == agentID }) else { continue }
            var available = Resources(agent.info.resources)
            for task in tasks.values where task.agentID == agentID && !task.state.isTerminal { available.subtract(Resources(task.resources)) }
            guard !available.isEmpty else { continue }
            for step in 0..<candidates.count {
                let fid = candidates[(allocationCursor + step) % candidates.count]
                if let until = frameworks[fid]!.refusedUntil[agentID], until > now { continue }
                allocationCursor = (allocationCursor + step + 1) % candidates.count
                let offer = Offer(id: OfferID(value: newID("O")), frameworkID: fid, agentID: agentID, hostname: agent.info.hostname, resources: available.list)
                offers[offer.id] = offer
                effects.append(.send(.resourceOffers(ResourceOffersMessage(offers: [offer], pids: [agent.pid])), to: frameworks[fid]!.pid))
                break
            }
        }
        return effects
    }

    private func endpoint(of pid: String) -> String? { pid.split(separator: "@", maxSplits: 1).last.map(String.init) }
}

