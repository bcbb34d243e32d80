import Foundation
import Logging
import MesosBus
import MesosCore
import MesosDaemon
import MesosHA
import MesosHTTP
import MesosWire

public struct AgentOptions: Sendable {
    /// `zk://...`, `file:///...` or `host:port`.
    public var master: String
    public var address = DaemonAddress(port: 5051)
    public var workDir: String
    public var resources = Resources(parsing: "cpus:2;mem:1024")!
    public var sessionTimeout: Duration = .seconds(10)
    public var maxFrameSize = FrameCodec.defaultMaxFrameSize
    /// A link whose peer stops reading for this long is closed (its queued messages dropped).
    public var linkWriteTimeout: Duration = .seconds(30)
    /// Links to masters connect from the agent's port (`--connect_from_listening_port`,
    /// `BusConfiguration.linksFromListeningPort`).
    public var connectFromListeningPort = true
    /// Authenticates the agent to masters that require it.
    public var credential: Credential?
    /// TLS on the bus and its HTTP endpoints (`LIBPROCESS_SSL_*`, passed on to executors): only
    /// masters and agents (executors hold their agent's certificate) may connect.
    public var tls: TLSContext?
    /// `--launcher_dir`: where `mesos-executor` is (default: next to this program).
    public var launcherDir: String?
    /// `--strict`: a checkpoint file that cannot be parsed stops the agent (else it is skipped).
    public var strict = true
    /// `--recovery_timeout` (15mins): how long checkpointed executors wait for a restarted agent.
    public var recoveryTimeout: Duration = .seconds(900)
    /// Between SIGTERM and SIGKILL when an executor kills its task (Mesos's command executor: 3secs).
    public var taskKillGracePeriod: Duration = .seconds(3)
    public var core = AgentSettings()
    /// Where the agent's leader detector comes from: nil, a detector (and ZooKeeper session) of
    /// its own; a pool, the pool's detector shared with the process's other followers of the same
    /// `--master` (several agents in one process, as agent-swarm runs them).
    public var detectorPool: DetectorPool?
    /// How often the core's timers are looked at. A registration attempt falls due between two
    /// ticks gets a tick of its own (`DaemonRuntime.wake`), so a coarse interval (many agents in
    /// one process) does not delay registrations; other timers (pings, retries, executors) are
    /// judged up to one interval late.
    public var tickInterval: Duration = .milliseconds(50)
    /// Checkpoint files are fsynced (false: only for many agents of one process on one disk, see
    /// `FileCheckpointStore`).
    public var durableCheckpoints = true

    public init(master: String, workDir: String) {
        self.master = master
        self.workDir = workDir
    }
}

/// The agent process: the pure `AgentCore` wired to the leader detector, the bus, the clock, the
/// checkpoint under `<work_dir>/meta` and executor processes (`mesos-executor`, each in its own
/// session, sandboxes under `<work_dir>/slaves/...` as Mesos lays them out).
public actor AgentDaemon {
    private let options: AgentOptions
    private let runtime: DaemonRuntime
    /// The agent runs on its bus's event loop: a message, a tick or a leader change is handled
    /// where it arrives, and what it sends is written there (in a swarm of 500 agents per process
    /// the hops to and from the task pool, with their thread wake-ups, were a fifth of the CPU).
    /// Bus events come through `handleEvents(onLoop:)`, called in place: awaiting each one
    /// resumed this actor through the global pool and back.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { runtime.bus.serialExecutor }
    /// Bus events that came before the core existed (the bus listens first), handed to it after
    /// its recovery, as they came.
    private var early: [BusEvent] = []
    /// Leader hints for the detector (async), in the order they came.
    private let hints = AsyncStream.makeStream(of: (LeaderHintMessage, from: String).self)
    private var logger: Logger
    private var core: AgentCore?
    private var detector: (any MasterDetector)?
    private let store: FileCheckpointStore
    /// Executor processes: our children (reaped), or recovered ones (polled through /proc).
    private var executorPIDs: [ExecutorKey: pid_t] = [:]
    private var recoveredPIDs: Set<ExecutorKey> = []
    private var lastPoll: Duration = .zero
    private var exiting = false
    private var halted = false
    private var ticks: BusTimer?
    /// HTTP on the bus's port (`AgentRoutes`), answered from `snapshot()`.
    private let http = HTTPService()
    private let exporter = PrometheusExporter()
    private let startTime = Date().timeIntervalSince1970

    public init(options: AgentOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        store = FileCheckpointStore(root: options.workDir + "/meta", durable: options.durableCheckpoints)
        var bus = BusConfiguration.daemon(maxFrameSize: options.maxFrameSize, writeTimeout: options.linkWriteTimeout, credential: options.credential, tls: options.tls, peerRoles: [.master, .agent])
        bus.linksFromListeningPort = options.connectFromListeningPort
        bus.http = http
        runtime = DaemonRuntime(bus: bus, logger: logger)
    }

    public func run() async throws -> Int32 {
        try FileManager.default.createDirectory(atPath: options.workDir + "/meta", withIntermediateDirectories: true)
        var state: AgentRecoveryState
        let bootID = ProcessProbe.bootID
        do {
            state = try AgentCheckpoint.recover(from: store, strict: options.strict, bootID: bootID.isEmpty ? nil : bootID)
        } catch {
            logger.milestone("recovery_failed", level: .critical, "cannot recover the checkpoint (--strict): \(error)", ["path": "\(store.root)/\(error.path)"])
            runtime.exit(.recoveryFailed(path: "\(store.root)/\(error.path)", problem: error.problem))
            return await runtime.waitForExit()
        }
        // Which checkpointed executors still run (after a reboot the recovery holds no pids).
        for (fi, f) in state.frameworks.enumerated() {
            for (ei, e) in f.executors.enumerated() {
                guard let pid = e.forkedPID else { continue }
                // Known even when it is gone: what it left in its session (its task) is killed.
                executorPIDs[e.key] = pid
                guard ProcessProbe.isRunning(pid, program: "mesos-executor") else { continue }
                state.frameworks[fi].executors[ei].alive = true
                recoveredPIDs.insert(e.key)
            }
        }
        for u in state.unrecoverable {
            if let pid = u.forkedPID { executorPIDs[u.key] = pid }
        }
        do { try store.write(Array(bootID.utf8), to: AgentCheckpoint.bootIDFile) } catch { checkpointFailed(error) }

        let detector = try options.detectorPool?.detector(master: options.master, sessionTimeout: options.sessionTimeout, epochFloor: state.epochFloor, logger: logger)
            ?? MasterDetectors.make(master: options.master, sessionTimeout: options.sessionTimeout, epochFloor: state.epochFloor, logger: logger)
        self.detector = detector
        runtime.bus.handleEvents(onLoop: { [weak self] event in
            self?.assumeIsolated { $0.take(event) }
        })
        let pid = try await runtime.start(name: "slave(1)", at: options.address)
        logger[metadataKey: "pid"] = "\(pid)"
        let info = AgentInfo(hostname: options.address.hostname ?? ProcessInfo.processInfo.hostName, port: Int32(pid.port), resources: options.resources.list, id: state.agent?.id)
        core = AgentCore(info: info, pid: pid, epochFloor: state.epochFloor, seed: UInt64.random(in: 0...UInt64.max), settings: options.core)
        logger.milestone("agent_started", "agent started", [
            "master": "\(options.master)", "resources": "\(options.resources)", "agent_id": "\(state.agent?.id?.value ?? "none")",
        ])

        ticks = runtime.bus.scheduleTicks(every: options.tickInterval)
        http.serve { request in await self.answer(request) }
        feed(.recovered(state))
        let before = early
        early = []
        for event in before { take(event) }
        let changes = detector.changes
        Task { await self.follow(changes) }
        let hints = self.hints.stream
        Task { for await (hint, from) in hints { await detector.hint(hint, from: from) } }
        await detector.start()
        return await runtime.waitForExit()
    }

    /// SIGTERM (`forGood` false): checkpointed executors keep running for the next start.
    /// SIGUSR1 (`forGood`): unregister from the master and kill every executor.
    public func stop(forGood: Bool) {
        feed(.shutdownRequested(forGood: forGood))
    }

    /// A bus event, in order, on this actor's loop (the bus calls it in place).
    private func take(_ event: BusEvent) {
        guard core != nil else {
            early.append(event)
            return
        }
        switch event {
        case .message(let inbound):
            if case .leaderHint(let hint)? = inbound.envelope.payload { hints.continuation.yield((hint, from: inbound.envelope.from)) }
            feed(.message(inbound))
        case .linkBroken(let peer, _):
            feed(.linkBroken(endpoint: peer))
        case .tick:
            tick(runtime.clock.now)
        }
    }

    /// Before the process exits: the loop's timer, the bus, the detector's hints.
    private func closeDown() async {
        ticks?.cancel()
        ticks = nil
        await runtime.bus.shutdown()
        hints.continuation.finish()
    }

    private func follow(_ changes: AsyncStream<Leader?>) async {
        for await leader in changes { feed(.leaderDetected(leader)) }
    }

    private func tick(_ now: Duration) {
        feed(.tick(now: now))
        // Recovered executors are not our children: look for them in /proc twice a second.
        guard now - lastPoll >= .milliseconds(500) else { return }
        lastPoll = now
        for key in recoveredPIDs.sorted() {
            guard let pid = executorPIDs[key], !ProcessProbe.isRunning(pid, program: "mesos-executor") else { continue }
            recoveredPIDs.remove(key)
            logger.milestone("executor_process_gone", "recovered executor \(key) (pid \(pid)) is gone", ["framework_id": "\(key.framework.value)", "executor_id": "\(key.executor.value)", "executor_process": "\(pid)"])
            feed(.executorExited(key, status: nil))  // the core destroys what is left of its session
            executorPIDs[key] = nil
        }
    }

    private func feed(_ event: AgentCore.Event) {
        guard core != nil, !halted else { return }
        for effect in core!.handle(event) {
            perform(effect)
            if halted { return }  // a checkpoint failed: nothing after it is carried out
        }
        if let core, !core.isRegistered, let attempt = core.follower.nextAttempt { runtime.wake(at: attempt) }
    }

    private func perform(_ effect: AgentCore.Effect) {
        switch effect {
        case .send(let payload, let to, let epoch):
            runtime.send(payload, epoch: epoch, to: to)
        case .launchExecutor(let launch):
            self.launch(launch)
        case .destroyExecutor(let key):
            guard let pid = executorPIDs[key] else {
                // No process known for it (it never started, or is long gone): it is gone.
                Task { await self.feed(.executorExited(key, status: nil)) }
                return
            }
            logger.milestone("destroying_executor", "killing executor \(key) (session \(pid))", ["framework_id": "\(key.framework.value)", "executor_id": "\(key.executor.value)", "executor_process": "\(pid)"])
            ProcessProbe.killSession(pid, marks: Self.marks(key))
        case .checkpoint(let write):
            do {
                try AgentCheckpoint.apply(write, to: store)
            } catch {
                // What follows may rest on it (an executor's acknowledgement after its update is
                // on disk): stop here, as Mesos aborts. Executors that checkpoint keep running.
                checkpointFailed(error)
                halted = true
                exiting = true
                Task {
                    await self.closeDown()
                    self.runtime.exit(.checkpointFailed(path: "\(self.store.root)/\(error.path)", problem: error.problem))
                }
            }
        case .observe(let observation):
            logger.observe(observation)
        case .exit(let reason):
            guard !exiting else { return }
            exiting = true
            Task {
                await self.detector?.stop()
                await self.runtime.bus.flush()
                await self.closeDown()
                self.runtime.exit(reason)
            }
        }
    }

    private func answer(_ request: HTTPRequest) -> HTTPResponse {
        guard let core else { return .text(503, "Agent is starting") }
        var s = AgentSnapshot(
            id: core.agentID?.value ?? "", pid: core.pid.description, hostname: core.info.hostname, version: MesosVersion.current,
            recovering: !core.isRecovered, registered: core.isRegistered, startTime: startTime, now: Date().timeIntervalSince1970)
        s.master = core.leader.map { l in
            LeaderAddress(pid: l.pid.description, hostname: l.info?.hostname.flatMap { $0.isEmpty ? nil : $0 } ?? l.pid.host, port: l.pid.port, epoch: l.epoch, id: l.info?.id ?? "")
        }
        s.resources = options.resources.amounts
        s.frameworks = core.frameworks.sorted { $0.key.value < $1.key.value }.map { id, f in
            let tasks = core.tasks.values.filter { $0.frameworkID == id }.sorted { $0.info.taskID.value < $1.info.taskID.value }.map { t in
                TaskEntry(
                    id: t.info.taskID.value, name: t.info.name, frameworkID: id.value, agentID: core.agentID?.value ?? "", executorID: t.executorID.value,
                    state: t.state.protoName, resources: Resources(t.info.resources).amounts)
            }
            return AgentFrameworkEntry(id: id.value, name: f.info.name, user: f.info.user, checkpoint: f.info.checkpoint, tasks: tasks)
        }
        s.executorsRunning = core.executors.count
        s.droppedMessages = core.droppedMessages.values.reduce(0, +)
        s.staleEpochDropped = core.droppedMessages[.staleEpoch, default: 0]
        s.bus = runtime.bus.statistics
        s.flags = [("master", options.master), ("work_dir", options.workDir), ("port", "\(core.pid.port)"), ("resources", "\(options.resources)")]
        return AgentRoutes.respond(request, s, exporter: exporter)
    }

    /// What every process of an executor's session carries in its environment.
    static func marks(_ key: ExecutorKey) -> Set<String> { ["MESOS_FRAMEWORK_ID=\(key.framework.value)", "MESOS_EXECUTOR_ID=\(key.executor.value)"] }

    private func checkpointFailed(_ error: CheckpointError) {
        logger.milestone("checkpoint_failed", level: .error, "cannot checkpoint: \(error)", ["path": "\(store.root)/\(error.path)"])
    }

    /// Mesos's sandbox: `<work_dir>/slaves/<agent>/frameworks/<fid>/executors/<eid>/runs/<run>`.
    private func sandbox(_ l: ExecutorLaunch) -> String {
        options.workDir + "/" + AgentCheckpoint.runDir(l.agentID, l.key, l.run)
    }

    /// `<launcher_dir>/mesos-executor`; by default next to this program (as Mesos's `--launcher_dir`).
    private var launcher: String {
        let dir = options.launcherDir ?? ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map { ($0 as NSString).deletingLastPathComponent } ?? ".")
        return dir + "/mesos-executor"
    }

    private func launch(_ l: ExecutorLaunch) {
        guard let core else { return }
        let directory = sandbox(l)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var env = ProcessInfo.processInfo.environment
            env["MESOS_FRAMEWORK_ID"] = l.key.framework.value
            env["MESOS_EXECUTOR_ID"] = l.key.executor.value
            env["MESOS_SLAVE_ID"] = l.agentID.value
            env["MESOS_AGENT_ID"] = l.agentID.value
            env["MESOS_SLAVE_PID"] = core.pid.description
            env["MESOS_AGENT_ENDPOINT"] = core.pid.endpoint
            env["MESOS_DIRECTORY"] = directory
            env["MESOS_SANDBOX"] = directory
            env["MESOS_CHECKPOINT"] = l.framework.checkpoint ? "1" : "0"
            env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] = "\(options.core.executorShutdownGracePeriod.milliseconds)ms"
            env["MESOS_TASK_KILL_GRACE_PERIOD"] = "\(options.taskKillGracePeriod.milliseconds)ms"
            if l.framework.checkpoint { env["MESOS_RECOVERY_TIMEOUT"] = "\(options.recoveryTimeout.milliseconds)ms" }
            let pid = try ProcessLauncher.spawn(
                launcher, [], environment: env, outputFile: directory + "/stdout", errorFile: directory + "/stderr", newSession: true, workingDirectory: directory)
            executorPIDs[l.key] = pid
            if l.framework.checkpoint {
                do { try AgentCheckpoint.apply(.forkedPID(agent: l.agentID, l.key, run: l.run, pid: pid), to: store) } catch { checkpointFailed(error) }
            }
            logger.milestone("executor_launched", "launched executor \(l.key) as process \(pid)", [
                "framework_id": "\(l.key.framework.value)", "executor_id": "\(l.key.executor.value)", "task_id": "\(l.task.taskID.value)",
                "executor_process": "\(pid)", "directory": "\(directory)", "checkpoint": "\(l.framework.checkpoint)",
            ])
            let key = l.key
            Task.detached {
                let code = await ProcessLauncher.exit(of: pid)
                await self.executorExited(key, pid: pid, code: code)
            }
        } catch {
            feed(.executorFailedToLaunch(l.key, reason: "\(error)"))
        }
    }

    private func executorExited(_ key: ExecutorKey, pid: pid_t, code: Int32) {
        guard executorPIDs[key] == pid else { return }
        feed(.executorExited(key, status: code))  // the core destroys what is left of its session
        executorPIDs[key] = nil
    }
}
