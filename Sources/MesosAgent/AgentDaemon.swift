import Foundation
import Logging
import MesosBus
import MesosDaemon
import MesosHA
import MesosWire

public struct AgentOptions: Sendable {
    /// `zk://...`, `file:///...` or `host:port`.
    public var master: String
    public var ip = "127.0.0.1"
    public var port = 5051
    public var advertiseIP: String?
    /// The port others reach this process at (default: the bound port), e.g. a proxy's.
    public var advertisePort: Int?
    public var hostname: String?
    public var workDir: String
    public var resources = Resources(parsing: "cpus:2;mem:1024")!
    public var sessionTimeout: Duration = .seconds(10)
    /// SIGTERM first; SIGKILL to the task's process group after this.
    public var killGracePeriod: Duration = .seconds(3)
    public var maxFrameSize = FrameCodec.defaultMaxFrameSize
    /// Authenticates the agent to masters that require it.
    public var credential: Credential?
    public var core = AgentConfiguration()

    public init(master: String, workDir: String) {
        self.master = master
        self.workDir = workDir
    }
}

/// The agent process: the pure `AgentCore` wired to the leader detector, the bus, the clock and
/// real task processes (`sh -c`, each in its own process group).
public actor AgentDaemon {
    private let options: AgentOptions
    private var logger: Logger
    private let bus: MessageBus
    private let clock = CoreClock()
    private var core: AgentCore!
    private var detector: (any MasterDetector)?
    private var processes: [TaskID: pid_t] = [:]
    private let exitCode = AsyncStream<Int32>.makeStream()

    public init(options: AgentOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        var config = BusConfiguration()
        config.maxFrameSize = options.maxFrameSize
        config.credential = options.credential
        bus = MessageBus(configuration: config, logger: logger)
    }

    public func run() async throws -> Int32 {
        try FileManager.default.createDirectory(atPath: options.workDir + "/tasks", withIntermediateDirectories: true)
        let state = AgentStateFile.read(options.workDir)
        let detector = try MasterDetectors.make(master: options.master, sessionTimeout: options.sessionTimeout, epochFloor: state.epochFloor, logger: logger)
        self.detector = detector
        let pid = try await bus.start(name: "slave(1)", host: options.ip, port: options.port, advertiseHost: options.advertiseIP, advertisePort: options.advertisePort)
        logger[metadataKey: "pid"] = "\(pid)"
        let info = AgentInfo(hostname: options.hostname ?? ProcessInfo.processInfo.hostName, port: Int32(pid.port), resources: options.resources.list, id: state.agentID, pid: pid.description)
        core = AgentCore(info: info, pid: pid.description, epochFloor: state.epochFloor, seed: UInt64.random(in: 0...UInt64.max), configuration: options.core)
        logger.info("agent started", metadata: ["master": "\(options.master)", "resources": "\(options.resources)", "agent_id": "\(state.agentID?.value ?? "none yet")"])

        let events = bus.events, clock = self.clock, changes = detector.changes
        Task.detached { for await event in events { await self.busEvent(event) } }
        Task.detached { for await leader in changes { await self.feed(.leaderDetected(leader)) } }
        clock.ticks { await self.feed(.tick(now: $0)) }
        await detector.start()
        for await code in exitCode.stream { return code }
        return 1
    }

    /// SIGTERM: kill the tasks and exit.
    public func terminate() async {
        logger.info("terminating: killing \(processes.count) task(s)")
        await killAll()
        await detector?.stop()
        await bus.shutdown()
        exitCode.continuation.yield(0)
    }

    private func busEvent(_ event: BusEvent) async {
        guard case .message(let envelope) = event else { return }
        if case .leaderHint(let hint)? = envelope.payload { await detector?.hint(hint, from: envelope.from) }
        feed(.message(envelope))
    }

    private func feed(_ event: AgentCore.Event) {
        guard core != nil else { return }
        for effect in core.handle(event) { perform(effect) }
    }

    private func perform(_ effect: AgentCore.Effect) {
        switch effect {
        case .send(let payload, let to, let epoch):
            guard let peer = PID(to) else { return logger.warning("cannot send to malformed pid '\(to)'") }
            bus.post(payload, epoch: epoch, to: peer)
        case .launch(let task, let framework):
            launch(task, framework: framework)
        case .kill(let id):
            guard let pid = processes[id] else { return }
            let grace = options.killGracePeriod
            kill(-pid, SIGTERM)
            Task.detached {
                try? await Task.sleep(for: grace)
                kill(-pid, SIGKILL)
            }
        case .persist(let agentID, let floor):
            AgentStateFile.write(AgentStateFile.State(agentID: agentID, epochFloor: floor), to: options.workDir)
        case .shutdown(let reason):
            logger.critical("shutting down at the master's request: \(reason)")
            Task {
                await self.killAll()
                await self.detector?.stop()
                self.exitCode.continuation.yield(0)
            }
        case .log(let level, let message):
            logger.log(level: level.loggerLevel, "\(message)")
        }
    }

    private func launch(_ task: TaskInfo, framework: FrameworkID) {
        let id = task.taskID
        let sandbox = options.workDir + "/tasks/" + id.value.replacingOccurrences(of: "/", with: "_")
        guard let command = task.command?.value, !command.isEmpty else {
            return feed(.taskFailedToStart(id, reason: "no command"))
        }
        do {
            try FileManager.default.createDirectory(atPath: sandbox, withIntermediateDirectories: true)
            var env = ProcessInfo.processInfo.environment
            env["MESOS_TASK_ID"] = id.value
            env["MESOS_FRAMEWORK_ID"] = framework.value
            env["MESOS_SANDBOX"] = sandbox
            let pid = try ProcessLauncher.spawn(
                "/bin/sh", ["-c", command], environment: env, outputFile: sandbox + "/stdout", errorFile: sandbox + "/stderr", newProcessGroup: true)
            processes[id] = pid
            logger.info("task \(id.value) started", metadata: ["task_pid": "\(pid)", "command": "\(command)"])
            feed(.taskStarted(id))
            Task.detached {
                let code = await ProcessLauncher.exit(of: pid)
                await self.exited(id, code: code)
            }
        } catch {
            feed(.taskFailedToStart(id, reason: "\(error)"))
        }
    }

    private func exited(_ id: TaskID, code: Int32) {
        processes[id] = nil
        logger.info("task \(id.value) exited", metadata: ["status": "\(code)"])
        feed(.taskExited(id, code: code))
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

    static func write(_ state: State, to dir: String) {
        var o: [String: Any] = ["epoch_floor": state.epochFloor]
        if let id = state.agentID { o["agent_id"] = id.value }
        guard let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) else { return }
        try? data.write(to: URL(fileURLWithPath: dir + "/agent.json"), options: .atomic)
    }
}
