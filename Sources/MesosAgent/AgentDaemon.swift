import Foundation
import Logging
import MesosBus
import MesosCore
import MesosDaemon
import MesosHA
import MesosWire

public struct AgentOptions: Sendable {
    /// `zk://...`, `file:///...` or `host:port`.
    public var master: String
    public var address = DaemonAddress(port: 5051)
    public var workDir: String
    public var resources = Resources(parsing: "cpus:2;mem:1024")!
    public var sessionTimeout: Duration = .seconds(10)
    /// SIGTERM first; SIGKILL to the task's process group after this.
    public var killGracePeriod: Duration = .seconds(3)
    public var maxFrameSize = FrameCodec.defaultMaxFrameSize
    /// A link whose peer stops reading for this long is closed (its queued messages dropped).
    public var linkWriteTimeout: Duration = .seconds(30)
    /// Authenticates the agent to masters that require it.
    public var credential: Credential?
    public var core = AgentSettings()

    public init(master: String, workDir: String) {
        self.master = master
        self.workDir = workDir
    }
}

/// The agent process: the pure `AgentCore` wired to the leader detector, the bus, the clock and
/// real task processes (`sh -c`, each in its own process group, sandbox per framework and task).
public actor AgentDaemon {
    private let options: AgentOptions
    private let runtime: DaemonRuntime
    private var logger: Logger
    private var core: AgentCore?
    private var detector: (any MasterDetector)?
    private var processes: [TaskKey: pid_t] = [:]
    private var exiting = false

    public init(options: AgentOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        runtime = DaemonRuntime(bus: .daemon(maxFrameSize: options.maxFrameSize, writeTimeout: options.linkWriteTimeout, credential: options.credential), logger: logger)
    }

    public func run() async throws -> Int32 {
        try FileManager.default.createDirectory(atPath: options.workDir + "/tasks", withIntermediateDirectories: true)
        let state = AgentStateFile.read(options.workDir)
        let detector = try MasterDetectors.make(master: options.master, sessionTimeout: options.sessionTimeout, epochFloor: state.epochFloor, logger: logger)
        self.detector = detector
        let pid = try await runtime.start(name: "slave(1)", at: options.address)
        logger[metadataKey: "pid"] = "\(pid)"
        let info = AgentInfo(hostname: options.address.hostname ?? ProcessInfo.processInfo.hostName, port: Int32(pid.port), resources: options.resources.list, id: state.agentID)
        core = AgentCore(info: info, pid: pid, epochFloor: state.epochFloor, seed: UInt64.random(in: 0...UInt64.max), settings: options.core)
        logger.milestone("agent_started", "agent started", [
            "master": "\(options.master)", "resources": "\(options.resources)", "agent_id": "\(state.agentID?.value ?? "none")",
        ])

        runtime.onBusEvents { event in await self.busEvent(event) }
        runtime.onTicks { now in await self.feed(.tick(now: now)) }
        let changes = detector.changes
        Task.detached { for await leader in changes { await self.feed(.leaderDetected(leader)) } }
        await detector.start()
        return await runtime.waitForExit()
    }

    /// SIGTERM: kill the tasks and exit.
    public func terminate() async {
        guard !exiting else { return }
        exiting = true
        logger.milestone("terminating", "terminating: killing \(processes.count) task(s)")
        await killAll()
        await detector?.stop()
        await runtime.bus.shutdown()
        runtime.exit(.terminated)
    }

    private func busEvent(_ event: BusEvent) async {
        switch event {
        case .message(let inbound):
            if case .leaderHint(let hint)? = inbound.envelope.payload { await detector?.hint(hint, from: inbound.envelope.from) }
            feed(.message(inbound))
        case .linkBroken(let peer, _):
            feed(.linkBroken(endpoint: peer))
        }
    }

    private func feed(_ event: AgentCore.Event) {
        guard core != nil else { return }
        for effect in core!.handle(event) { perform(effect) }
    }

    private func perform(_ effect: AgentCore.Effect) {
        switch effect {
        case .send(let payload, let to, let epoch):
            runtime.send(payload, epoch: epoch, to: to)
        case .launch(let key, let task):
            launch(key, task)
        case .kill(let key):
            guard let pid = processes[key] else { return }
            let grace = options.killGracePeriod
            kill(-pid, SIGTERM)
            Task.detached {
                try? await Task.sleep(for: grace)
                kill(-pid, SIGKILL)
            }
        case .persist(let agentID, let floor):
            AgentStateFile.write(AgentStateFile.State(agentID: agentID, epochFloor: floor), to: options.workDir, logger: logger)
        case .observe(let observation):
            logger.observe(observation)
        case .exit(let reason):
            guard !exiting else { return }
            exiting = true
            Task {
                await self.killAll()
                await self.detector?.stop()
                await self.runtime.bus.shutdown()
                self.runtime.exit(reason)
            }
        }
    }

    /// `<work_dir>/tasks/<framework>/<task>`: ids are validated (no `/`, not `.` or `..`).
    private func sandbox(_ key: TaskKey) -> String { options.workDir + "/tasks/" + key.framework.value + "/" + key.task.value }

    private func launch(_ key: TaskKey, _ task: TaskInfo) {
        guard let command = task.command?.value, !command.isEmpty else {
            return feed(.taskFailedToStart(key, reason: "no command"))
        }
        let sandbox = self.sandbox(key)
        do {
            try FileManager.default.createDirectory(atPath: sandbox, withIntermediateDirectories: true)
            var env = ProcessInfo.processInfo.environment
            env["MESOS_TASK_ID"] = key.task.value
            env["MESOS_FRAMEWORK_ID"] = key.framework.value
            env["MESOS_SANDBOX"] = sandbox
            let pid = try ProcessLauncher.spawn(
                "/bin/sh", ["-c", command], environment: env, outputFile: sandbox + "/stdout", errorFile: sandbox + "/stderr", newProcessGroup: true)
            processes[key] = pid
            logger.milestone("task_started", "task \(key) started", ["framework_id": "\(key.framework.value)", "task_id": "\(key.task.value)", "task_pid": "\(pid)"])
            feed(.taskStarted(key))
            Task.detached {
                let code = await ProcessLauncher.exit(of: pid)
                await self.exited(key, code: code)
            }
        } catch {
            feed(.taskFailedToStart(key, reason: "\(error)"))
        }
    }

    private func exited(_ key: TaskKey, code: Int32) {
        processes[key] = nil
        logger.milestone("task_exited", "task \(key) exited", ["framework_id": "\(key.framework.value)", "task_id": "\(key.task.value)", "status": "\(code)"])
        feed(.taskExited(key, code: code))
    }

    private func killAll() async {
        for pid in processes.values { kill(-pid, SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(5)
        while !processes.isEmpty, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
    }
}

/// What an agent remembers across restarts: its id (to re-register as itself) and the newest
/// leader epoch it has seen (never to follow an older leader).
enum AgentStateFile {
    struct State {
        var agentID: AgentID?
        var epochFloor: UInt64 = 0
    }

    static func read(_ dir: String) -> State {
        guard let data = FileManager.default.contents(atPath: dir + "/agent.json"),
            let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return State() }
        return State(agentID: (o["agent_id"] as? String).map(AgentID.init(value:)), epochFloor: (o["epoch_floor"] as? NSNumber)?.uint64Value ?? 0)
    }

    static func write(_ state: State, to dir: String, logger: Logger) {
        var o: [String: Any] = ["epoch_floor": state.epochFloor]
        if let id = state.agentID { o["agent_id"] = id.value }
        do {
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            try AtomicFile.write([UInt8](data), to: dir + "/agent.json")
        } catch {
            logger.milestone("persist_failed", level: .error, "cannot save the agent's state: \(error)", ["path": "\(dir)/agent.json"])
        }
    }
}
