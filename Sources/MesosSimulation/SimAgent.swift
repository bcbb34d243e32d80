import MesosCore
import MesosWire

/// A simulated `mesos-agent`: the real `AgentCore` and `LeaderDetectorCore`, tasks as simulated
/// processes. What it persists (its id, the newest epoch seen) survives restarts; its tasks die
/// with it (no checkpointed executors in this model yet).
final class SimAgent: SimNode {
    let slot: Int
    private(set) var core: AgentCore?
    private var detector: SimDetector!
    private var client: SimZKClient!
    /// The work directory: survives restarts.
    private(set) var persistedID: AgentID?
    private(set) var persistedFloor: UInt64 = 0
    /// Running task processes: when each ends on its own (nil: never).
    private var processes: [TaskKey: Int] = [:]
    private var nextProcess = 0
    private(set) var exits: [ExitReason] = []
    /// Master messages this process's core dropped, by reason, over all its runs.
    private(set) var drops: [EpochGuard.DropReason: Int] = [:]

    init(world: World, slot: Int) {
        self.slot = slot
        super.init(world: world, name: "agent\(slot)", pid: PID(name: "slave(1)", host: "10.0.2.\(slot)", port: 5051))
    }

    var detectedLeader: Leader? { detector.leader }

    override func started() {
        var settings = AgentSettings()
        settings.registrationBackoffFactor = world.settings.registrationBackoff
        settings.maxRegistrationBackoff = world.settings.registrationBackoff * 16
        settings.statusUpdateRetryInterval = world.settings.statusUpdateRetry
        settings.masterPingTimeout = world.settings.masterPingTimeout
        let info = AgentInfo(hostname: name, port: Int32(pid.port), resources: [Resource(name: "cpus", scalar: 4), Resource(name: "mem", scalar: 4096)], id: persistedID)
        core = AgentCore(info: info, pid: pid, epochFloor: persistedFloor, seed: world.rng.next(), settings: settings)
        client = SimZKClient(world: world, node: self, timeout: world.settings.sessionTimeout)
        detector = SimDetector(world: world, node: self, client: client, epochFloor: persistedFloor) { [unowned self] leader in feed(.leaderDetected(leader)) }
        client.onEvent = { [unowned self] event in detector.sessionEvent(event) }
        client.start()
        world.trace("\(name): started (incarnation \(incarnation), agent id \(persistedID?.value ?? "none"))")
    }

    override func stopped() {
        client.kill()
        endAllTasks()
        world.trace("\(name): died")
    }

    override func terminate() {
        guard isAlive else { return }
        client.close()
        world.trace("\(name): terminated")
        die()
    }

    override func tick() { feed(.tick(now: world.now)) }
    override func linkBroken(_ endpoint: String) { feed(.linkBroken(endpoint: endpoint)) }

    override func deliver(_ envelope: Envelope) {
        guard let core else { return }
        let before = core.droppedMessages
        feed(.message(Inbound(world.asSeenByABrokenFollower(envelope, following: core.leader))))
        guard let after = self.core else { return }
        var dropped = false
        for (reason, n) in after.droppedMessages where n > before[reason] ?? 0 {
            drops[reason, default: 0] += n - (before[reason] ?? 0)
            dropped = true
        }
        if dropped { return }
        world.checkFollowerAccepted(envelope, by: name, following: after.leader, detecting: detector.leader)
    }

    private func feed(_ event: AgentCore.Event) {
        guard isAlive, core != nil else { return }
        for effect in core!.handle(event) { perform(effect) }
    }

    private func perform(_ effect: AgentCore.Effect) {
        switch effect {
        case .send(let payload, let to, let epoch):
            world.network.send(from: self, to: to, Envelope(epoch: epoch, from: pid.description, payload: payload))
        case .launch(let key, let task):
            nextProcess += 1
            let process = nextProcess
            processes[key] = process
            world.truth.running[key] = (name, core?.agentID)
            world.trace("\(name): task \(key) started")
            let run = incarnation
            world.after(.milliseconds(5)) { [unowned self] in
                guard run == incarnation, processes[key] == process else { return }
                whenRunning { self.feed(.taskStarted(key)) }
            }
            // Tasks whose command is "finish N" end on their own after N milliseconds.
            if let command = task.command?.value, command.hasPrefix("finish "), let ms = Int64(command.dropFirst(7)) {
                world.after(.milliseconds(ms)) { [unowned self] in processExited(key, process: process, code: 0, run: run) }
            }
        case .kill(let key):
            guard let process = processes[key] else { return }
            let run = incarnation
            world.after(.milliseconds(20)) { [unowned self] in processExited(key, process: process, code: 143, run: run) }
        case .persist(let id, let floor):
            persistedID = id
            persistedFloor = floor
        case .observe(let o):
            world.trace("\(name): \(o.event) \(o.fields.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        case .exit(let reason):
            exits.append(reason)
            world.trace("\(name): exit \(reason.key) (\(reason))")
            client.close()
            die()
        }
    }

    private func processExited(_ key: TaskKey, process: Int, code: Int32, run: Int) {
        guard run == incarnation, isAlive, processes[key] == process else { return }
        processes[key] = nil
        world.truth.running[key] = nil
        world.trace("\(name): task \(key) exited \(code)")
        whenRunning { self.feed(.taskExited(key, code: code)) }
    }

    private func endAllTasks() {
        for key in processes.keys { world.truth.running[key] = nil }
        processes = [:]
    }

    var pendingUpdateKeys: [TaskKey] { core?.pendingUpdateKeys ?? [] }
}
