import MesosHA
import MesosWire

/// What a framework author receives (Mesos's Scheduler callbacks, as values).
public enum SchedulerEvent: Sendable, Hashable {
    case registered(FrameworkID, MasterInfo)
    case reregistered(FrameworkID, MasterInfo)
    /// The leader went away; calls are not delivered until (re)registered again.
    case disconnected
    case offers([Offer])
    case rescinded(OfferID)
    case statusUpdate(TaskStatus)
    case agentLost(AgentID)
    /// Fatal: the master refused the framework. The driver stops.
    case error(String)
}

/// What a framework author asks of the driver.
public enum SchedulerCall: Sendable, Hashable {
    case launch(offers: [OfferID], tasks: [TaskInfo], filters: Filters?)
    case decline(offers: [OfferID], filters: Filters?)
    case kill(TaskID)
    /// Only needed with implicit acknowledgements off.
    case acknowledge(TaskStatus)
    /// Empty: all tasks the master knows of this framework.
    case reconcile([TaskStatus])
    case revive
    /// `failover: true` keeps the framework (its tasks run on) for another scheduler to take over.
    case stop(failover: Bool)
}

/// The scheduler driver: registration and re-registration with the detected leader, calls,
/// and acknowledgements. Pure: events in, effects out.
public struct SchedulerCore: Sendable {
    public enum Event: Sendable, Hashable {
        case leaderDetected(Leader?)
        case message(Envelope)
        case tick(now: Duration)
        case call(SchedulerCall)
    }

    public enum Effect: Sendable, Hashable {
        case send(Envelope.Payload, to: String, epoch: UInt64)
        case event(SchedulerEvent)
        case log(LogLevel, String)
        case stopped
    }

    public private(set) var framework: FrameworkInfo
    public private(set) var leader: Leader?
    public private(set) var registered = false
    public private(set) var droppedMessages: [EpochGuard.DropReason: Int] = [:]
    public let implicitAcknowledgements: Bool
    private let backoffFactor: Duration
    private var backoff: Duration
    private var nextAttempt: Duration?
    private var now: Duration = .zero
    private var registeredOnce = false
    private var stopped = false
    private var rng: SplitMix64

    public init(framework: FrameworkInfo, implicitAcknowledgements: Bool = true, backoffFactor: Duration = .seconds(2), seed: UInt64 = 0) {
        self.framework = framework
        self.implicitAcknowledgements = implicitAcknowledgements
        self.backoffFactor = backoffFactor
        self.backoff = backoffFactor
        self.rng = SplitMix64(seed: seed)
    }

    public var frameworkID: FrameworkID? { framework.id }

    public mutating func handle(_ event: Event) -> [Effect] {
        if stopped { return [] }
        switch event {
        case .leaderDetected(let new):
            guard new != leader else { return [] }
            var effects: [Effect] = []
            if registered { effects.append(.event(.disconnected)) }
            registered = false
            leader = new
            guard let new else { nextAttempt = nil; return effects + [.log(.warning, "no leading master detected")] }
            backoff = backoffFactor
            nextAttempt = now + jitter(backoff)
            return effects + [.log(.info, "new leader detected: \(new)")]
        case .tick(let t):
            now = t
            return retryRegistration()
        case .message(let envelope):
            return receive(envelope)
        case .call(let call):
            return perform(call)
        }
    }

    private mutating func retryRegistration() -> [Effect] {
        guard let leader, !registered, let at = nextAttempt, now >= at else { return [] }
        backoff = min(backoff * 2, .seconds(60))
        nextAttempt = now + jitter(backoff)
        let payload: Envelope.Payload = framework.id == nil
            ? .registerFramework(RegisterFrameworkMessage(framework: framework))
            // failover: a new scheduler instance taking over the framework, not a master change.
            : .reregisterFramework(ReregisterFrameworkMessage(framework: framework, failover: !registeredOnce))
        return [.send(payload, to: leader.pid, epoch: leader.epoch)]
    }

    private mutating func receive(_ envelope: Envelope) -> [Effect] {
        if let drop = EpochGuard.followerDrop(envelope, leader: leader) {
            droppedMessages[drop.reason, default: 0] += 1
            return [.log(drop.level, drop.message)]
        }
        guard let leader else { return [] }
        switch envelope.payload {
        case .frameworkRegistered(let m)?:
            guard !registered else { return [] }
            framework.id = m.frameworkID
            registered = true
            registeredOnce = true
            return [.event(.registered(m.frameworkID, m.masterInfo))]
        case .frameworkReregistered(let m)?:
            guard !registered else { return [] }
            framework.id = m.frameworkID
            registered = true
            registeredOnce = true
            return [.event(.reregistered(m.frameworkID, m.masterInfo))]
        case .resourceOffers(let m)?:
            return registered ? [.event(.offers(m.offers))] : []
        case .rescindOffer(let m)?:
            return [.event(.rescinded(m.offerID))]
        case .statusUpdate(let m)?:
            var status = m.update.status
            if status.agentID == nil { status.agentID = m.update.agentID }
            var effects: [Effect] = [.event(.statusUpdate(status))]
            if implicitAcknowledgements, !m.update.uuid.isEmpty, let agent = status.agentID, let id = framework.id {
                effects.append(.send(.statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: agent, frameworkID: id, taskID: status.taskID, uuid: m.update.uuid)), to: leader.pid, epoch: leader.epoch))
            }
            return effects
        case .lostAgent(let m)?:
            return [.event(.agentLost(m.agentID))]
        case .frameworkError(let m)?:
            stopped = true
            return [.event(.error(m.message)), .stopped]
        default:
            return []
        }
    }

    private mutating func perform(_ call: SchedulerCall) -> [Effect] {
        guard registered, let leader, let id = framework.id else {
            if case .launch(_, let tasks, _) = call {
                // As the Mesos driver: a launch while disconnected is answered with TASK_LOST.
                return tasks.map { .event(.statusUpdate(TaskStatus(taskID: $0.taskID, state: .lost, message: "scheduler driver is not connected to a master", source: .master))) }
            }
            if case .stop = call { stopped = true; return [.stopped] }
            return [.log(.warning, "not registered: dropped \(call)")]
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
            guard let agent = status.agentID, let uuid = status.uuid else { return [] }
            payload = .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: agent, frameworkID: id, taskID: status.taskID, uuid: uuid))
        case .reconcile(let statuses):
            payload = .reconcileTasks(ReconcileTasksMessage(frameworkID: id, statuses: statuses))
        case .revive:
            payload = .reviveOffers(ReviveOffersMessage(frameworkID: id))
        case .stop(let failover):
            stopped = true
            let bye: Envelope.Payload = failover
                ? .deactivateFramework(DeactivateFrameworkMessage(frameworkID: id))
                : .unregisterFramework(UnregisterFrameworkMessage(frameworkID: id))
            return [.send(bye, to: leader.pid, epoch: leader.epoch), .stopped]
        }
        return [.send(payload, to: leader.pid, epoch: leader.epoch)]
    }

    private mutating func jitter(_ bound: Duration) -> Duration {
        .milliseconds(Int64.random(in: 0...max(1, Int64(bound.inSeconds * 1000)), using: &rng))
    }
}
