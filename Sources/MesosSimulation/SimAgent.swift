import MesosCore
import MesosWire

/// A simulated `mesos-agent`: the real `AgentCore` and `LeaderDetectorCore`, the real checkpoint
/// layout and recovery over an in-memory disk that survives restarts, and executors as simulated
/// processes of their own (they outlive the agent when their framework checkpoints).
final class SimAgent: SimNode {
    let slot: Int
    private(set) var core: AgentCore?
    private var detector: SimDetector!
    private var client: SimZKClient!
    /// The work directory: survives restarts.
    let disk = MemoryCheckpointStore()
    /// Executor processes this agent launched, over all its runs (by process id).
    private(set) var executors: [Int32: SimExecutor] = [:]
    private(set) var exits: [ExitReason] = []
    /// Master messages this process's core dropped, by reason, over all its runs.
    private(set) var drops: [EpochGuard.DropReason: Int] = [:]

    init(world: World, slot: Int) {
        self.slot = slot
        super.init(world: world, name: "agent\(slot)", pid: PID(name: "slave(1)", host: "10.0.2.\(slot)", port: 5051))
    }

    var detectedLeader: Leader? { detector.leader }
    var liveExecutors: [SimExecutor] { executors.keys.sorted().compactMap { executors[$0] }.filter(\.isAlive) }

    override func started() {
        var settings = AgentSettings()
        settings.registrationBackoffFactor = world.settings.registrationBackoff
        settings.maxRegistrationBackoff = world.settings.registrationBackoff * 16
        settings.statusUpdateRetryInterval = world.settings.statusUpdateRetry
        settings.masterPingTimeout = world.settings.masterPingTimeout
        settings.executorReregistrationTimeout = world.settings.executorReregistrationTimeout
        settings.executorRegistrationTimeout = .seconds(5)
        settings.executorShutdownGracePeriod = .seconds(1)
        var state: AgentRecoveryState
        do {
            state = try AgentCheckpoint.recover(from: disk, strict: true)
        } catch {
            world.violation(.coreTrapped, "\(name) cannot recover its checkpoint: \(error)")
            die()
            return
        }
        // Which checkpointed executors still run: the shell's look at the process table.
        for (fi, f) in state.frameworks.enumerated() {
            for (ei, e) in f.executors.enumerated() {
                state.frameworks[fi].executors[ei].alive = e.forkedPID.flatMap { executors[$0] }.map { $0.isAlive && $0.key == e.key } ?? false
            }
        }
        if world.breakage == .agentRecovery {
            var forgetful = AgentRecoveryState()
            forgetful.agent = state.agent
            forgetful.epochFloor = state.epochFloor
            state = forgetful
        }
        let info = AgentInfo(hostname: name, port: Int32(pid.port), resources: [Resource(name: "cpus", scalar: 4), Resource(name: "mem", scalar: 4096)], id: state.agent?.id)
        core = AgentCore(info: info, pid: pid, epochFloor: state.epochFloor, seed: world.rng.next(), settings: settings)
        world.trace("\(name): started (incarnation \(incarnation), agent id \(state.agent?.id?.value ?? "none"), \(state.executors.count) checkpointed executor(s))")
        feed(.recovered(state))
        client = SimZKClient(world: world, node: self, timeout: world.settings.sessionTimeout)
        detector = SimDetector(world: world, node: self, client: client, epochFloor: state.epochFloor) { [unowned self] leader in feed(.leaderDetected(leader)) }
        client.onEvent = { [unowned self] event in detector.sessionEvent(event) }
        client.start()
    }

    override func stopped() {
        client?.kill()
        // The kernel closes the agent's connections: its executors see their links break.
        for e in liveExecutors {
            world.after(world.netLatency()) { e.whenRunning { e.linkBroken(self.pid.endpoint) } }
        }
        world.trace("\(name): died")
    }

    override func terminate() {
        guard isAlive else { return }
        world.trace("\(name): SIGTERM")
        feed(.shutdownRequested(forGood: false))
    }

    override func tick() {
        feed(.tick(now: world.now))
        // Executors whose process is gone (the shell reaps children and polls the others).
        guard let core else { return }
        for (key, e) in core.executors.sorted(by: { $0.key < $1.key }) where e.state != .terminated {
            guard let process = executors.values.first(where: { $0.key == key && $0.launch.run == e.run }), !process.isAlive else { continue }
            feed(.executorExited(key, status: nil))
        }
    }

    override func linkBroken(_ endpoint: String) { feed(.linkBroken(endpoint: endpoint)) }

    override func deliver(_ envelope: Envelope) {
        guard let core else { return }
        let before = core.droppedMessages
        let fromExecutor = executors.values.contains { $0.pid.description == envelope.from }
        feed(.message(Inbound(fromExecutor ? envelope : world.asSeenByABrokenFollower(envelope, following: core.leader))))
        guard let after = self.core, !fromExecutor else { return }
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
        case .launchExecutor(let l):
            let process = world.newProcessID()
            let executor = SimExecutor(world: world, agent: self, launch: l, processID: process, port: 7000 + Int(process))
            executors[process] = executor
            world.register(executor)
            if l.framework.checkpoint { checkpoint(.forkedPID(agent: l.agentID, l.key, run: l.run, pid: process)) }
            let run = incarnation
            world.after(.milliseconds(3)) { [unowned self] in if run == incarnation, isAlive { executor.start() } }
        case .destroyExecutor(let key):
            for e in executors.values where e.key == key { e.destroySession() }
        case .checkpoint(let write):
            checkpoint(write)
        case .observe(let o):
            world.trace("\(name): \(o.event) \(o.fields.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        case .exit(let reason):
            exits.append(reason)
            world.trace("\(name): exit \(reason.key) (\(reason))")
            client.close()
            die()
        }
    }

    private func checkpoint(_ write: CheckpointWrite) {
        do { try AgentCheckpoint.apply(write, to: disk) } catch { world.violation(.coreTrapped, "\(name): checkpoint \(write) failed: \(error)") }
    }

    var pendingUpdateKeys: [TaskKey] { core?.pendingUpdateKeys ?? [] }
}
