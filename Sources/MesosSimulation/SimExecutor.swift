import MesosCore
import MesosWire

/// A simulated `mesos-executor`: the real `ExecutorCore`, its task a simulated process. It is a
/// process of its own: it outlives its agent (checkpointing frameworks), and an agent that
/// restarts finds it by its process id. Killing it alone leaves its task running (as a process
/// whose parent died) until its agent destroys the executor's session.
final class SimExecutor: SimNode {
    let agent: SimAgent
    let launch: ExecutorLaunch
    let processID: Int32
    private(set) var core: ExecutorCore?
    /// The task's process: runs (also after the executor died, until its session is destroyed).
    private(set) var taskRunning = false
    private var taskRun = 0
    var key: ExecutorKey { launch.key }
    var taskKey: TaskKey { TaskKey(framework: launch.key.framework, task: launch.task.taskID) }

    init(world: World, agent: SimAgent, launch: ExecutorLaunch, processID: Int32, port: Int) {
        self.agent = agent
        self.launch = launch
        self.processID = processID
        super.init(world: world, name: "\(agent.name)/executor-\(launch.key)", pid: PID(name: "executor(1)", host: agent.pid.host, port: port))
    }

    override func started() {
        var settings = ExecutorSettings()
        settings.checkpoint = launch.framework.checkpoint
        settings.recoveryTimeout = world.settings.recoveryTimeout
        settings.shutdownGracePeriod = .seconds(1)
        settings.killGracePeriod = .milliseconds(300)
        core = ExecutorCore(agent: agent.pid, agentID: launch.agentID, frameworkID: launch.key.framework, executorID: launch.key.executor, seed: world.rng.next(), settings: settings)
        world.trace("\(name): started (process \(processID))")
        feed(.started(now: world.now))
    }

    override func stopped() { world.trace("\(name): died\(taskRunning ? " (its task runs on)" : "")") }
    override func tick() { feed(.tick(now: world.now)) }
    override func linkBroken(_ endpoint: String) { feed(.linkBroken(endpoint: endpoint)) }
    override func deliver(_ envelope: Envelope) { feed(.message(Inbound(envelope))) }

    /// The agent killed the executor's session: the executor and its task.
    func destroySession() {
        endTask(code: 137, report: false)
        die()
    }

    private func feed(_ event: ExecutorCore.Event) {
        guard isAlive, core != nil else { return }
        for effect in core!.handle(event) { perform(effect) }
    }

    private func perform(_ effect: ExecutorCore.Effect) {
        switch effect {
        case .send(let payload, let to):
            world.network.send(from: self, to: to, Envelope(epoch: 0, from: pid.description, payload: payload))
        case .launchTask(let task):
            guard !taskRunning else { return }
            if let other = world.truth.running[taskKey] {
                world.violation(.taskRunsOnce, "\(taskKey) started by \(name) while it runs on \(other.agent)")
            }
            taskRunning = true
            taskRun += 1
            let run = taskRun
            world.truth.running[taskKey] = (agent.name, launch.agentID)
            world.trace("\(name): task \(taskKey) started")
            world.after(.milliseconds(5)) { [unowned self] in
                guard taskRunning, run == taskRun else { return }
                whenRunning { self.feed(.taskStarted(pid: self.processID + 1)) }
            }
            // Tasks whose command is "finish N" end on their own after N milliseconds.
            if let command = task.command?.value, command.hasPrefix("finish "), let ms = Int64(command.dropFirst(7)) {
                world.after(.milliseconds(ms)) { [unowned self] in if run == taskRun { endTask(code: 0, report: true) } }
            }
        case .signalTask(let signal):
            let run = taskRun
            world.after(signal == .kill ? .milliseconds(1) : .milliseconds(20)) { [unowned self] in
                if run == taskRun { endTask(code: signal == .kill ? 137 : 143, report: true) }
            }
        case .observe(let o):
            world.trace("\(name): \(o.event) \(o.fields.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        case .exit(let reason):
            world.trace("\(name): exit \(reason.key)")
            if taskRunning { endTask(code: 137, report: false) }  // a shell never leaves its child behind on exit
            die()
        }
    }

    private func endTask(code: Int32, report: Bool) {
        guard taskRunning else { return }
        taskRunning = false
        taskRun += 1
        world.truth.running[taskKey] = nil
        world.trace("\(name): task \(taskKey) exited \(code)")
        if report { whenRunning { self.feed(.taskExited(TaskExit(shellCode: code))) } }
    }
}
