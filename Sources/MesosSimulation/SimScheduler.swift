import MesosCore
import MesosWire

/// A simulated framework: the real `SchedulerCore` and `LeaderDetectorCore`, and a small
/// scheduler that keeps `wanted` tasks (some finishing on their own) launched on its offers.
/// Task ids are `task-N` in every framework (tasks are told apart by framework). A restart with
/// its framework id is a scheduler failover; after a fatal error it starts as a new framework.
final class SimScheduler: SimNode {
    let slot: Int
    private(set) var core: SchedulerCore?
    private var detector: SimDetector!
    private var client: SimZKClient!
    /// What a restarted scheduler resumes (nil: register a new framework).
    private(set) var persistedFrameworkID: FrameworkID?
    private(set) var stoppedForGood = false
    /// What the framework does.
    struct Plan {
        /// Tasks it keeps launched.
        var wanted = 3
        /// Every other task finishes on its own, and now and then one is killed (random runs);
        /// scenario tests keep theirs running.
        var finiteTasks = true
        /// nil: every other scheduler is PARTITION_AWARE.
        var partitionAware: Bool? = nil
        /// nil: odd-numbered schedulers checkpoint (their tasks survive agent restarts).
        var checkpoint: Bool? = nil
    }

    let plan: Plan
    var wanted: Int { plan.wanted }
    var finiteTasks: Bool { plan.finiteTasks }
    private var nextTask = 0
    private(set) var states: [TaskID: TaskState] = [:]
    /// Every scheduler event this process got, in order (for the scenario tests).
    private(set) var events: [SchedulerEvent] = []

    init(world: World, slot: Int, plan: Plan) {
        self.slot = slot
        self.plan = plan
        super.init(world: world, name: "scheduler\(slot)", pid: PID(name: "scheduler", host: "10.0.3.\(slot)", port: 6000))
    }

    var frameworkID: FrameworkID? { core?.frameworkID }
    var isRegistered: Bool { core?.isRegistered ?? false }

    override func started() {
        var settings = SchedulerSettings()
        settings.registrationBackoffFactor = world.settings.registrationBackoff
        settings.maxRegistrationBackoff = world.settings.registrationBackoff * 16
        let info = FrameworkInfo(user: "sim", name: name, id: persistedFrameworkID, failoverTimeout: world.settings.failoverTimeout, checkpoint: plan.checkpoint ?? (slot % 2 == 1),
            capabilities: (plan.partitionAware ?? (slot % 2 == 0)) ? [FrameworkInfo.Capability(type: .partitionAware)] : [])
        core = SchedulerCore(framework: info, settings: settings, seed: world.rng.next())
        stoppedForGood = false
        states = [:]
        events = []
        client = SimZKClient(world: world, node: self, timeout: world.settings.sessionTimeout)
        detector = SimDetector(world: world, node: self, client: client, epochFloor: 0) { [unowned self] leader in feed(.leaderDetected(leader)) }
        client.onEvent = { [unowned self] event in detector.sessionEvent(event) }
        client.start()
        world.trace("\(name): started (incarnation \(incarnation), framework \(persistedFrameworkID?.value ?? "new"))")
    }

    override func stopped() {
        client.kill()
        world.trace("\(name): died")
    }

    override func tick() { feed(.tick(now: world.now)) }
    override func linkBroken(_ endpoint: String) { feed(.linkBroken(endpoint: endpoint)) }

    override func deliver(_ envelope: Envelope) {
        guard let core else { return }
        let before = core.droppedMessages.values.reduce(0, +)
        feed(.message(Inbound(world.asSeenByABrokenFollower(envelope, following: core.leader))))
        guard let after = self.core, after.droppedMessages.values.reduce(0, +) == before else { return }
        world.checkFollowerAccepted(envelope, by: name, following: after.leader, detecting: detector.leader)
    }

    private func feed(_ event: SchedulerCore.Event) {
        guard isAlive, core != nil else { return }
        for effect in core!.handle(event) { perform(effect) }
    }

    private func perform(_ effect: SchedulerCore.Effect) {
        switch effect {
        case .send(let payload, let to, let epoch):
            world.network.send(from: self, to: to, Envelope(epoch: epoch, from: pid.description, payload: payload))
        case .event(let event):
            handle(event)
        case .observe(let o):
            world.trace("\(name): \(o.event) \(o.fields.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        case .stopped:
            stoppedForGood = true
            world.trace("\(name): driver stopped")
            die()
        }
    }

    private func handle(_ event: SchedulerEvent) {
        events.append(event)
        switch event {
        case .registered(let id, _), .reregistered(let id, _):
            persistedFrameworkID = id
            feed(.call(.reconcile([])))
        case .offers(let offers):
            for offer in offers {
                let active = states.values.filter { !$0.isTerminal }.count
                guard active < wanted else {
                    feed(.call(.decline(offers: [offer.id], filters: Filters(refuseSeconds: 1))))
                    continue
                }
                nextTask += 1
                let id = TaskID(value: "task-\(nextTask)")
                // Every other task finishes on its own after a while; the rest run until killed.
                let command = finiteTasks && nextTask % 2 == 0 ? "finish \(world.random(500...8000))" : "sleep"
                let task = TaskInfo(name: id.value, taskID: id, agentID: offer.agentID, resources: [Resource(name: "cpus", scalar: 0.5)], command: CommandInfo(value: command))
                states[id] = .staging
                feed(.call(.launch(offers: [offer.id], tasks: [task], filters: Filters(refuseSeconds: 0))))
            }
        case .statusUpdate(let status):
            world.trace("\(name): status \(status.taskID.value) \(status.state.protoName)\(status.reason.map { " \($0.protoName)" } ?? "")")
            if let id = frameworkID { world.checkStatusUpdate(status, framework: id, to: name) }
            states[status.taskID] = status.state
            // Now and then a running task is killed by its framework.
            if finiteTasks && status.state == .running && world.chance(0.1) { feed(.call(.kill(status.taskID))) }
        case .error(let message):
            world.trace("\(name): framework error: \(message)")
            if message == FrameworkRefusal.removed.description || message == FrameworkRefusal.failedOver.description { persistedFrameworkID = nil }
        case .disconnected, .rescinded, .agentLost, .refused, .frameworkMessage, .executorLost:
            break
        }
    }
}
