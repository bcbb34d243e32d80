import MesosWire

/// What a framework author receives (Mesos's Scheduler callbacks, as values).
public enum SchedulerEvent: Sendable, Hashable {
    /// First registration of a new framework, or a failover of this instance onto an existing one.
    case registered(FrameworkID, MasterInfo)
    /// Re-registered after a leader change (Mesos calls `registered` here, MESOS-786: we tell the
    /// two apart, so a framework knows its tasks are still its own and need only reconciling).
    case reregistered(FrameworkID, MasterInfo)
    /// The leader went away (or considers us disconnected); calls are not delivered until
    /// (re)registered again.
    case disconnected
    case offers([Offer])
    case rescinded(OfferID)
    case statusUpdate(TaskStatus)
    case agentLost(AgentID)
    /// Bytes an executor sent to this framework (best effort, as Mesos).
    case frameworkMessage(executor: ExecutorID, agent: AgentID, data: [UInt8])
    /// An executor exited (`status`: its exit status, -1 when unknown).
    case executorLost(executor: ExecutorID, agent: AgentID, status: Int32)
    /// A message was refused by the master (an invalid value); nothing of it was acted on.
    case refused(kind: String, reason: String)
    /// Fatal: the master refused the framework (failed over, removed, invalid). The driver stops.
    case error(String)
}

/// What a framework author asks of the driver.
public enum SchedulerCall: Sendable, Hashable {
    case launch(offers: [OfferID], tasks: [TaskInfo], filters: Filters?)
    case decline(offers: [OfferID], filters: Filters?)
    case kill(TaskID)
    /// Only with implicit acknowledgements off.
    case acknowledge(TaskStatus)
    /// Empty: all tasks the master knows of this framework.
    case reconcile([TaskStatus])
    case revive
    case suppress
    /// Bytes to one of this framework's executors (best effort: dropped when it does not run).
    case sendFrameworkMessage(executor: ExecutorID, agent: AgentID, data: [UInt8])
    /// `failover: true` keeps the framework (its tasks run on) for another scheduler to take
    /// over within `failover_timeout`; false unregisters it (its tasks are killed).
    case stop(failover: Bool)
    /// Stops the driver without unregistering, deactivating the framework (no offers) as
    /// Mesos's `abort()`.
    case abort
}

/// The scheduler driver's state machine: leader following (through `LeaderFollower`),
/// registration and re-registration, calls and acknowledgements. Pure: events in, effects out.
public struct SchedulerCore: Sendable {
    public enum Event: Sendable, Hashable {
        case leaderDetected(Leader?)
        case message(Inbound)
        /// Our outbound link to endpoint "host:port" broke: what we sent may be lost.
        case linkBroken(endpoint: String)
        case tick(now: Duration)
        case call(SchedulerCall)
    }

    public enum Effect: Sendable, Hashable {
        case send(Envelope.Payload, to: PID, epoch: UInt64)
        case event(SchedulerEvent)
        case observe(SchedulerObservation)
        /// The driver is done; the shell flushes what was sent and shuts down.
        case stopped
    }

    public let settings: SchedulerSettings
    public private(set) var framework: FrameworkInfo
    public private(set) var follower: LeaderFollower
    private var now: Duration = .zero
    /// A new instance with an existing framework id takes the framework over (Mesos's `force`).
    private var failover: Bool
    private var stopped = false

    public init(framework: FrameworkInfo, settings: SchedulerSettings = SchedulerSettings(), seed: UInt64 = 0) {
        self.framework = framework
        self.settings = settings
        self.follower = LeaderFollower(settings: settings.follower, seed: seed)
        self.failover = framework.id != nil
    }

    public var frameworkID: FrameworkID? { framework.id }
    public var leader: Leader? { follower.leader }
    public var isRegistered: Bool { follower.isRegistered }
    public var droppedMessages: [EpochGuard.DropReason: Int] { follower.droppedMessages }

    public mutating func handle(_ event: Event) -> [Effect] {
        if stopped { return [] }
        switch event {
        case .leaderDetected(let new):
            let wasRegistered = follower.isRegistered
            switch follower.leaderDetected(new, now: now) {
            case .unchanged: return []
            case .belowFloor(let l): return [.observe(.leaderBelowFloor(l))]
            case .masterless: return (wasRegistered ? [.event(.disconnected)] : []) + [.observe(.masterless)]
            case .newLeader(let l, _): return (wasRegistered ? [.event(.disconnected)] : []) + [.observe(.leaderDetected(l))]
            }
        case .tick(let t):
            now = max(now, t)
            return retryRegistration()
        case .message(let inbound):
            return receive(inbound)
        case .linkBroken(let endpoint):
            // Calls to the leader may be lost (a decline, an acknowledgement): re-register to
            // resynchronize (the master rescinds what it offered; updates are resent by agents).
            guard follower.isRegistered, let leader = follower.leader, leader.pid.endpoint == endpoint else { return [] }
            follower.reregisterNow(now: now)
            return [.event(.disconnected), .observe(.linkToLeaderBroken(leader))] + retryRegistration()
        case .call(let call):
            return perform(call)
        }
    }

    private mutating func retryRegistration() -> [Effect] {
        guard let leader = follower.registrationDue(now: now) else { return [] }
        let payload: Envelope.Payload = framework.id == nil
            ? .registerFramework(RegisterFrameworkMessage(framework: framework))
            : .reregisterFramework(ReregisterFrameworkMessage(framework: framework, failover: failover))
        return [.send(payload, to: leader.pid, epoch: leader.epoch)]
    }

    private mutating func receive(_ inbound: Inbound) -> [Effect] {
        let envelope = inbound.envelope
        if let reason = follower.admit(inbound) {
            return [.observe(.messageDropped(from: envelope.from, epoch: envelope.epoch, reason: reason))]
        }
        guard let leader = follower.leader, let payload = envelope.payload else { return [] }
        do {
            try MessageValidation.validate(payload)
        } catch {
            return [.observe(.messageRefused(kind: payload.kind, reason: error.description))]
        }
        switch payload {
        case .frameworkRegistered(let m):
            return registered(m.frameworkID, m.masterInfo, again: false)
        case .frameworkReregistered(let m):
            // A new instance taking a framework over is `registered`; a reconnect is `reregistered`.
            return registered(m.frameworkID, m.masterInfo, again: !failover)
        case .resourceOffers(let m):
            return follower.isRegistered ? [.event(.offers(m.offers))] : []
        case .rescindOffer(let m):
            return [.event(.rescinded(m.offerID))]
        case .statusUpdate(let m):
            var status = m.update.status
            if status.agentID == nil { status.agentID = m.update.agentID }
            var effects: [Effect] = [.event(.statusUpdate(status))]
            if settings.implicitAcknowledgements, !m.update.uuid.isEmpty, let agent = status.agentID, let id = framework.id {
                effects.append(.send(.statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: agent, frameworkID: id, taskID: status.taskID, uuid: m.update.uuid)), to: leader.pid, epoch: leader.epoch))
            }
            return effects
        case .lostAgent(let m):
            return [.event(.agentLost(m.agentID))]
        case .executorToFramework(let m):
            guard m.frameworkID == framework.id else { return [] }
            return [.event(.frameworkMessage(executor: m.executorID, agent: m.agentID, data: m.data))]
        case .exitedExecutor(let m):
            guard m.frameworkID == framework.id else { return [] }
            return [.event(.executorLost(executor: m.executorID, agent: m.agentID, status: m.status))]
        case .frameworkDisconnected(let m):
            // The master lost its link to us: re-register at once (same instance, no failover).
            guard follower.isRegistered else { return [] }
            follower.reregisterNow(now: now)
            return [.event(.disconnected), .observe(.toldDisconnected(m.reason ?? ""))] + retryRegistration()
        case .messageRefused(let m):
            return [.event(.refused(kind: m.kind, reason: m.reason)), .observe(.messageRefused(kind: m.kind, reason: m.reason))]
        case .frameworkError(let m):
            stopped = true
            return [.observe(.error(m.message)), .event(.error(m.message)), .stopped]
        default:
            return []
        }
    }

    private mutating func registered(_ id: FrameworkID, _ master: MasterInfo, again: Bool) -> [Effect] {
        guard !follower.isRegistered, let leader = follower.leader else { return [] }  // a duplicate answer
        if let mine = framework.id, mine != id {
            return [.observe(.messageRefused(kind: "framework_registered", reason: "the master names this framework \(id.value), not \(mine.value)"))]
        }
        framework.id = id
        follower.registered()
        failover = false
        return [.observe(again ? .reregistered(id, leader) : .registered(id, leader)), .event(again ? .reregistered(id, master) : .registered(id, master))]
    }

    private mutating func perform(_ call: SchedulerCall) -> [Effect] {
        guard follower.isRegistered, let leader = follower.leader, let id = framework.id else {
            switch call {
            case .launch(_, let tasks, _):
                // As Mesos's driver: a launch while disconnected is answered with TASK_LOST.
                return tasks.map { .event(.statusUpdate(TaskStatus(taskID: $0.taskID, state: .lost, message: "scheduler driver is not connected to a master", source: .master, reason: .masterDisconnected))) }
            case .stop, .abort:
                stopped = true
                return [.stopped]
            default:
                return [.observe(.callDropped(call.name))]
            }
        }
        let payload: Envelope.Payload
        switch call {
        case .launch(let offers, let tasks, let filters):
            payload = .launchTasks(LaunchTasksMessage(frameworkID: id, tasks: tasks, offerIDs: offers, filters: filters))
        case .decline(let offers, let filters):
            payload = .declineOffers(DeclineOffersMessage(frameworkID: id, offerIDs: offers, filters: filters))
        case .kill(let task):
            payload = .killTask(KillTaskMessage(frameworkID: id, taskID: task))
        case .acknowledge(let status):
            guard !settings.implicitAcknowledgements else { return [.observe(.callDropped("acknowledge (implicit acknowledgements are on)"))] }
            guard let agent = status.agentID, let uuid = status.uuid, !uuid.isEmpty else { return [] }  // master-made updates need none
            payload = .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: agent, frameworkID: id, taskID: status.taskID, uuid: uuid))
        case .reconcile(let statuses):
            payload = .reconcileTasks(ReconcileTasksMessage(frameworkID: id, statuses: statuses))
        case .revive:
            payload = .reviveOffers(ReviveOffersMessage(frameworkID: id))
        case .suppress:
            payload = .suppressOffers(SuppressOffersMessage(frameworkID: id))
        case .sendFrameworkMessage(let executor, let agent, let data):
            payload = .frameworkToExecutor(FrameworkToExecutorMessage(agentID: agent, frameworkID: id, executorID: executor, data: data))
        case .stop(let failover):
            stopped = true
            // With failover the framework stays: the master notices our link close and waits
            // `failover_timeout` for a new instance. Without, it is unregistered (tasks killed).
            return (failover ? [] : [.send(.unregisterFramework(UnregisterFrameworkMessage(frameworkID: id)), to: leader.pid, epoch: leader.epoch)]) + [.stopped]
        case .abort:
            stopped = true
            return [.send(.deactivateFramework(DeactivateFrameworkMessage(frameworkID: id)), to: leader.pid, epoch: leader.epoch), .stopped]
        }
        return [.send(payload, to: leader.pid, epoch: leader.epoch)]
    }
}

extension SchedulerCall {
    var name: String {
        switch self {
        case .launch: "launch"
        case .decline: "decline"
        case .kill: "kill"
        case .acknowledge: "acknowledge"
        case .reconcile: "reconcile"
        case .revive: "revive"
        case .suppress: "suppress"
        case .sendFrameworkMessage: "send_framework_message"
        case .stop: "stop"
        case .abort: "abort"
        }
    }
}

public enum SchedulerObservation: Milestone, Hashable {
    case leaderDetected(Leader)
    case leaderBelowFloor(Leader)
    case masterless
    case registered(FrameworkID, Leader)
    case reregistered(FrameworkID, Leader)
    case toldDisconnected(String)
    case linkToLeaderBroken(Leader)
    case messageDropped(from: String, epoch: UInt64, reason: EpochGuard.DropReason)
    case messageRefused(kind: String, reason: String)
    case callDropped(String)
    case error(String)

    public var event: String {
        switch self {
        case .leaderDetected: "leader_detected"
        case .leaderBelowFloor: "leader_below_floor"
        case .masterless: "masterless"
        case .registered: "framework_registered"
        case .reregistered: "framework_reregistered"
        case .toldDisconnected: "framework_disconnected"
        case .linkToLeaderBroken: "link_to_leader_broken"
        case .messageDropped: "message_dropped"
        case .messageRefused: "message_refused"
        case .callDropped: "call_dropped"
        case .error: "framework_error"
        }
    }

    public var level: ObservationLevel {
        switch self {
        case .leaderDetected, .registered, .reregistered: .info
        case .messageDropped(_, _, let reason): reason == .staleEpoch || reason == .notFromLeader || reason == .unauthenticatedMaster ? .warning : .debug
        case .error: .error
        default: .warning
        }
    }

    public var fields: [MilestoneField] {
        switch self {
        case .leaderDetected(let l), .leaderBelowFloor(let l), .linkToLeaderBroken(let l): .of(("epoch", l.epoch), ("master", l.pid))
        case .masterless, .toldDisconnected, .error: []
        case .registered(let id, let l), .reregistered(let id, let l): .of(("framework_id", id.value), ("epoch", l.epoch), ("master", l.pid))
        case .messageDropped(let from, let epoch, let r): .of(("from", from), ("epoch", epoch), ("reason", r.rawValue))
        case .messageRefused(let kind, _): .of(("kind", kind))
        case .callDropped(let name): .of(("call", name))
        }
    }

    public var message: String {
        switch self {
        case .leaderDetected(let l): "new leader detected: \(l)"
        case .leaderBelowFloor(let l): "ignoring leader \(l): below the newest epoch seen"
        case .masterless: "no leading master detected"
        case .registered(let id, let l): "framework \(id.value) registered with \(l)"
        case .reregistered(let id, let l): "framework \(id.value) re-registered with \(l)"
        case .toldDisconnected(let why): "the master considers this framework disconnected (\(why)): re-registering"
        case .linkToLeaderBroken(let l): "the link to \(l) broke; calls may be lost: re-registering"
        case .messageDropped(let from, let epoch, let r): "dropped message from \(from) at epoch \(epoch): \(r.explanation)"
        case .messageRefused(let kind, let r): "\(kind) refused: \(r)"
        case .callDropped(let name): "not registered: dropped \(name)"
        case .error(let m): "framework error from the master: \(m)"
        }
    }
}
