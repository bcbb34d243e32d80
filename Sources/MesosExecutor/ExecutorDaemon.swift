import Foundation
import Logging
import MesosBus
import MesosCore
import MesosDaemon
import MesosWire

/// What `mesos-executor` is told by its agent, through the environment (as Mesos).
public struct ExecutorOptions: Sendable {
    public var agent: PID
    public var agentID: AgentID
    public var frameworkID: FrameworkID
    public var executorID: ExecutorID
    /// The sandbox: the task runs here, its output goes to `stdout` and `stderr` here.
    public var directory: String
    public var core = ExecutorSettings()
    /// TLS as its agent's (`LIBPROCESS_SSL_*` is passed on, with the agent's certificate).
    public var tls: TLSContext?

    /// Reads MESOS_SLAVE_PID, MESOS_SLAVE_ID, MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, MESOS_DIRECTORY
    /// (required), MESOS_CHECKPOINT, MESOS_RECOVERY_TIMEOUT, MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD.
    public init(environment env: [String: String]) throws(ExecutorEnvironmentError) {
        func required(_ name: String) throws(ExecutorEnvironmentError) -> String {
            guard let v = env[name], !v.isEmpty else { throw ExecutorEnvironmentError(variable: name, problem: "is not set (mesos-executor is started by mesos-agent)") }
            return v
        }
        let pidText = try required("MESOS_SLAVE_PID")
        guard let agent = PID(pidText) else { throw ExecutorEnvironmentError(variable: "MESOS_SLAVE_PID", problem: "'\(pidText)' is not a pid of the form name@host:port") }
        self.agent = agent
        agentID = AgentID(value: try required("MESOS_SLAVE_ID"))
        frameworkID = FrameworkID(value: try required("MESOS_FRAMEWORK_ID"))
        executorID = ExecutorID(value: try required("MESOS_EXECUTOR_ID"))
        directory = try required("MESOS_DIRECTORY")
        for (name, value) in [("MESOS_SLAVE_ID", agentID.value), ("MESOS_FRAMEWORK_ID", frameworkID.value), ("MESOS_EXECUTOR_ID", executorID.value)] {
            do throws(InvalidValue) { try WireValidation.id(value, field: name) } catch { throw ExecutorEnvironmentError(variable: name, problem: error.problem) }
        }
        core.checkpoint = env["MESOS_CHECKPOINT"] == "1"
        if let t = env["MESOS_RECOVERY_TIMEOUT"] { core.recoveryTimeout = try Self.duration(t, "MESOS_RECOVERY_TIMEOUT") }
        if let t = env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] { core.shutdownGracePeriod = try Self.duration(t, "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD") }
        if let t = env["MESOS_TASK_KILL_GRACE_PERIOD"] { core.killGracePeriod = try Self.duration(t, "MESOS_TASK_KILL_GRACE_PERIOD") }
        do { tls = try TLSContext.fromEnvironment(env) } catch { throw ExecutorEnvironmentError(variable: "LIBPROCESS_SSL_*", problem: "\(error)") }
    }

    private static func duration(_ text: String, _ name: String) throws(ExecutorEnvironmentError) -> Duration {
        do { return try MesosDuration.flag(text, name: name) } catch { throw ExecutorEnvironmentError(variable: name, problem: error.description) }
    }
}

public struct ExecutorEnvironmentError: Error, CustomStringConvertible {
    public var variable: String
    public var problem: String
    public var description: String { "\(variable) \(problem)" }
}

/// The `mesos-executor` process: the pure `ExecutorCore` wired to a bus (listening on the
/// agent's address), the clock and the task's process (`sh -c`, in its own process group of the
/// executor's session, in the sandbox).
public actor ExecutorDaemon {
    private let options: ExecutorOptions
    private let runtime: DaemonRuntime
    private var logger: Logger
    private var core: ExecutorCore?
    private var taskPID: pid_t?

    public init(options: ExecutorOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        var bus = BusConfiguration.daemon(maxFrameSize: FrameCodec.defaultMaxFrameSize, tls: options.tls, peerRoles: [.agent])
        // The link to the agent is how the executor learns that its agent died: never evicted.
        bus.idleLinkTimeout = .hours(24 * 365)
        runtime = DaemonRuntime(bus: bus, logger: logger)
    }

    public func run() async throws -> Int32 {
        let pid = try await runtime.start(name: "executor(1)", host: options.agent.host, port: 0)
        logger[metadataKey: "executor_id"] = "\(options.executorID.value)"
        core = ExecutorCore(agent: options.agent, agentID: options.agentID, frameworkID: options.frameworkID, executorID: options.executorID,
            seed: UInt64.random(in: 0...UInt64.max), settings: options.core)
        logger.milestone("executor_started", "executor started", ["executor_pid": "\(pid)", "agent": "\(options.agent)", "checkpoint": "\(options.core.checkpoint)"])
        runtime.onBusEvents { event in await self.busEvent(event) }
        // Its timers are seconds long (grace periods, the recovery timeout): one tick a second,
        // and a wake-up at the core's next deadline, instead of 20 a second in every executor.
        runtime.onTicks(every: .seconds(1)) { now in await self.feed(.tick(now: now)) }
        feed(.started(now: runtime.clock.now))
        return await runtime.waitForExit()
    }

    /// SIGTERM to the executor itself: as a shutdown from the agent.
    public func terminate() { feed(.shutdownRequested) }

    private func busEvent(_ event: BusEvent) {
        switch event {
        case .message(let inbound): feed(.message(inbound))
        case .linkBroken(let peer, _): feed(.linkBroken(endpoint: peer))
        case .tick: break  // handled by the runtime (onTicks)
        }
    }

    private func feed(_ event: ExecutorCore.Event) {
        guard core != nil else { return }
        // The time first, so that a timer an event starts (a kill's grace) starts now, not at
        // the last coarse tick.
        if case .tick = event {} else { for effect in core!.handle(.tick(now: runtime.clock.now)) { perform(effect) } }
        for effect in core!.handle(event) { perform(effect) }
        if let deadline = core?.nextDeadline { runtime.wake(at: deadline) }
    }

    private func perform(_ effect: ExecutorCore.Effect) {
        switch effect {
        case .send(let payload, let to):
            runtime.send(payload, epoch: 0, to: to)
        case .launchTask(let task):
            launch(task)
        case .signalTask(let signal):
            guard let pid = taskPID else { return }
            kill(-pid, signal == .kill ? SIGKILL : SIGTERM)
        case .observe(let o):
            logger.observe(o)
        case .exit(let reason):
            // Never leave the task behind (it only outlives a SIGKILL that has not landed yet).
            if let pid = taskPID { kill(-pid, SIGKILL) }
            Task {
                await self.runtime.bus.flush()
                await self.runtime.bus.shutdown()
                self.runtime.exit(reason)
            }
        }
    }

    private func launch(_ task: TaskInfo) {
        let command = task.command?.value ?? ""  // the core launches only tasks with a command
        var env = ProcessInfo.processInfo.environment
        for name in ["MESOS_SLAVE_PID", "MESOS_RECOVERY_TIMEOUT", "MESOS_CHECKPOINT", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "MESOS_TASK_KILL_GRACE_PERIOD"] { env[name] = nil }
        env["MESOS_TASK_ID"] = task.taskID.value
        env["MESOS_SANDBOX"] = options.directory
        do {
            let pid = try ProcessLauncher.spawn(
                "/bin/sh", ["-c", command], environment: env, outputFile: options.directory + "/stdout", errorFile: options.directory + "/stderr",
                truncateOutput: false, newProcessGroup: true, workingDirectory: options.directory)
            taskPID = pid
            feed(.taskStarted(pid: pid))
            Task.detached {
                let ending = await ProcessLauncher.ending(of: pid)
                await self.taskExited(ending)
            }
        } catch {
            feed(.taskFailedToStart(reason: "\(error)"))
        }
    }

    private func taskExited(_ ending: ProcessLauncher.Ending?) {
        taskPID = nil
        switch ending {
        case .exited(let code)?: feed(.taskExited(.exited(code)))
        case .signaled(let signal)?: feed(.taskExited(.signaled(signal)))
        case nil: feed(.taskExited(.unknown))
        }
    }
}
