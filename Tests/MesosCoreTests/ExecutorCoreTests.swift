import MesosCore
import MesosWire
import Testing

/// Drives `ExecutorCore` (Mesos's command executor) with events only.
struct ExecutorHarness {
    var core: ExecutorCore
    var sent: [(Envelope.Payload, PID)] = []
    var launched: [TaskInfo] = []
    var signals: [ExecutorCore.TaskSignal] = []
    var observed: [ExecutorObservation] = []
    var exited: ExitReason?
    var now: Duration = .zero

    static let agent = P.agent
    static let restartedAgent = PID("slave(1)@10.0.0.9:5052")!
    static let agentID = AgentID(value: "S1")
    static let f1 = FrameworkID(value: "f1")

    init(checkpoint: Bool, killingState: Bool = false) {
        var settings = ExecutorSettings()
        settings.checkpoint = checkpoint
        settings.recoveryTimeout = .seconds(10)
        settings.killGracePeriod = .seconds(3)
        core = ExecutorCore(agent: Self.agent, agentID: Self.agentID, frameworkID: Self.f1, executorID: ExecutorID(value: "t1"), seed: 7, settings: settings)
        let framework = FrameworkInfo(user: "u", name: "fw", id: Self.f1, checkpoint: checkpoint, capabilities: killingState ? [FrameworkInfo.Capability(type: .taskKillingState)] : [])
        self.framework = framework
        feed(.started(now: .zero))
        fromAgent(.executorRegistered(ExecutorRegisteredMessage(
            executorInfo: ExecutorInfo(executorID: ExecutorID(value: "t1")), frameworkID: Self.f1, frameworkInfo: framework, agentID: Self.agentID,
            agentInfo: AgentInfo(hostname: "h", id: Self.agentID))))
    }

    let framework: FrameworkInfo

    mutating func feed(_ event: ExecutorCore.Event) {
        for effect in core.handle(event) {
            switch effect {
            case .send(let p, let to): sent.append((p, to))
            case .launchTask(let t): launched.append(t)
            case .signalTask(let s): signals.append(s)
            case .observe(let o): observed.append(o)
            case .exit(let r): exited = r
            }
        }
    }

    mutating func fromAgent(_ payload: Envelope.Payload, pid: PID = agent) {
        feed(.message(Inbound(envelope(payload, from: pid, epoch: 0))))
    }

    mutating func tick(_ by: Duration) {
        now += by
        feed(.tick(now: now))
    }

    mutating func take() -> [(Envelope.Payload, PID)] {
        defer { sent = [] }
        return sent
    }

    mutating func runTask(_ id: String = "t1") {
        fromAgent(.runTask(RunTaskMessage(frameworkID: Self.f1, framework: framework, task: TaskInfo(name: id, taskID: TaskID(value: id), agentID: Self.agentID, command: CommandInfo(value: "sleep 100")), pid: P.scheduler.description)))
    }

    func states(_ sent: [(Envelope.Payload, PID)]) -> [TaskState] { sent.compactMap { $0.0.statusUpdate?.update.status.state } }

    mutating func ackAll() {
        for u in core.unacknowledged {
            fromAgent(.statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: Self.agentID, frameworkID: Self.f1, taskID: u.status.taskID, uuid: u.uuid)), pid: core.agent)
        }
    }
}

@Suite struct ExecutorCoreTests {
    typealias H = ExecutorHarness

    @Test func registersThenRunsItsTaskAndExitsOnceTheAgentHasTheLastUpdate() {
        var h = H(checkpoint: false)
        #expect(h.take().first.map { $0.0.kind == "register_executor" && $0.1 == H.agent } == true)
        h.runTask()
        #expect(h.launched.map(\.taskID.value) == ["t1"] && h.states(h.take()) == [.starting])
        h.feed(.taskStarted(pid: 99))
        h.feed(.taskExited(.exited(0)))
        let sent = h.take()
        #expect(h.states(sent) == [.running, .finished])
        #expect(sent.last?.0.statusUpdate?.update.status.message == "Command exited with status 0")
        #expect(sent.allSatisfy { $0.0.statusUpdate?.update.executorID?.value == "t1" && $0.0.statusUpdate?.update.status.source == .executor })
        #expect(h.exited == nil, "waits for the agent's acknowledgements")
        h.ackAll()
        #expect(h.exited == .taskCompleted)
    }

    @Test func aFailingCommandReportsItsExitStatus() {
        var h = H(checkpoint: false)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.feed(.taskExited(.exited(3)))
        let last = h.take().last?.0.statusUpdate?.update.status
        #expect(last?.state == .failed && last?.message == "Command exited with status 3")
    }

    @Test func aKillIsSIGTERMThenSIGKILLAfterTheGracePeriod() {
        var h = H(checkpoint: false)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        _ = h.take()
        #expect(h.core.nextDeadline == nil, "no timer runs while the task runs")
        h.fromAgent(.killTask(KillTaskMessage(frameworkID: H.f1, taskID: TaskID(value: "t1"))))
        #expect(h.signals == [.terminate] && h.states(h.take()).isEmpty, "no TASK_KILLING without the capability")
        #expect(h.core.nextDeadline == h.now + .seconds(3), "the shell wakes for the escalation")
        h.tick(.seconds(2))
        #expect(h.signals == [.terminate])
        h.tick(.seconds(2))
        #expect(h.signals == [.terminate, .kill])
        h.feed(.taskExited(.signaled(9)))
        #expect(h.states(h.take()) == [.killed])
    }

    @Test func frameworksWithTheKillingCapabilityGetTaskKilling() {
        var h = H(checkpoint: false, killingState: true)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        _ = h.take()
        h.fromAgent(.killTask(KillTaskMessage(frameworkID: H.f1, taskID: TaskID(value: "t1"))))
        #expect(h.states(h.take()) == [.killing])
    }

    @Test func aSecondTaskIsRefused() {
        var h = H(checkpoint: false)
        h.runTask()
        _ = h.take()
        h.runTask("t2")
        let u = h.take().compactMap { $0.0.statusUpdate?.update.status }
        #expect(u.map { "\($0.taskID.value):\($0.state.protoName)" } == ["t2:TASK_FAILED"] && h.launched.count == 1)
    }

    /// Without checkpointing, an executor does not outlive its agent: it kills its task and exits.
    @Test func losingTheAgentWithoutCheckpointingKillsTheTask() {
        var h = H(checkpoint: false)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.feed(.linkBroken(endpoint: H.agent.endpoint))
        #expect(h.signals == [.terminate])
        h.feed(.taskExited(.signaled(15)))
        if case .agentGone? = h.exited {} else { Issue.record("exit \(String(describing: h.exited))") }
    }

    /// With checkpointing it waits for the restarted agent, keeps its updates, and hands them
    /// over when the agent asks it to reconnect.
    @Test func withCheckpointingItWaitsForTheRestartedAgentAndHandsOverItsUpdates() {
        var h = H(checkpoint: true)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.ackAll()
        _ = h.take()
        h.feed(.linkBroken(endpoint: H.agent.endpoint))
        #expect(h.signals.isEmpty && h.exited == nil)
        // The task ends while the agent is down: its update is kept.
        h.feed(.taskExited(.exited(0)))
        #expect(h.take().isEmpty && h.exited == nil)
        // Someone else claiming to be the agent: refused (another agent id, or another host).
        h.fromAgent(.reconnectExecutor(ReconnectExecutorMessage(agentID: AgentID(value: "S2"))), pid: H.restartedAgent)
        h.fromAgent(.reconnectExecutor(ReconnectExecutorMessage(agentID: H.agentID)), pid: P.stranger)
        #expect(h.take().isEmpty)
        #expect(h.observed.filter { if case .messageRefused(_, "reconnect_executor", _) = $0 { true } else { false } }.count == 2)
        h.fromAgent(.reconnectExecutor(ReconnectExecutorMessage(agentID: H.agentID)), pid: H.restartedAgent)
        guard case .reregisterExecutor(let m)? = h.take().first(where: { $0.1 == H.restartedAgent })?.0 else { Issue.record("no re-registration"); return }
        #expect(m.updates.map(\.status.state) == [.finished] && m.tasks.map(\.taskID.value) == ["t1"])
        h.fromAgent(.executorReregistered(ExecutorReregisteredMessage(agentID: H.agentID, agentInfo: AgentInfo(hostname: "h", id: H.agentID))), pid: H.restartedAgent)
        h.ackAll()
        #expect(h.exited == .taskCompleted)
    }

    @Test func anAgentThatDoesNotComeBackWithinTheRecoveryTimeoutEndsTheTask() {
        var h = H(checkpoint: true)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.feed(.linkBroken(endpoint: H.agent.endpoint))
        #expect(h.core.nextDeadline == h.now + .seconds(10), "the shell wakes for the recovery timeout")
        h.tick(.seconds(9))
        #expect(h.signals.isEmpty)
        h.tick(.seconds(2))
        #expect(h.signals == [.terminate] && h.observed.contains(.recoveryTimedOut(.seconds(10))))
        h.feed(.taskExited(.signaled(15)))
        if case .agentGone? = h.exited {} else { Issue.record("exit \(String(describing: h.exited))") }
    }

    @Test func messagesFromAnyoneButItsAgentAreRefused() {
        var h = H(checkpoint: false)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.fromAgent(.killTask(KillTaskMessage(frameworkID: H.f1, taskID: TaskID(value: "t1"))), pid: P.stranger)
        h.fromAgent(.shutdownExecutor(ShutdownExecutorMessage()), pid: P.stranger)
        #expect(h.signals.isEmpty && h.exited == nil)
        #expect(h.observed.filter { if case .messageRefused = $0 { true } else { false } }.count == 2)
    }

    @Test func aShutdownKillsTheTaskAndExits() {
        var h = H(checkpoint: true)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.fromAgent(.shutdownExecutor(ShutdownExecutorMessage()))
        #expect(h.signals == [.terminate])
        h.feed(.taskExited(.signaled(15)))
        #expect(h.states(h.take()).last == .killed)
        h.ackAll()
        if case .executorShutDown? = h.exited {} else { Issue.record("exit \(String(describing: h.exited))") }
    }

    /// A restarted agent may ask before the executor noticed the old link break: the ask waits
    /// for the break (a live agent's executor is never taken over by a mere ask).
    @Test func aReconnectWhileTheOldLinkLooksUpWaitsForItToBreak() {
        var h = H(checkpoint: true)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        _ = h.take()
        h.fromAgent(.reconnectExecutor(ReconnectExecutorMessage(agentID: H.agentID)), pid: H.restartedAgent)
        #expect(h.take().isEmpty && h.observed.contains(.reconnectWaiting(H.restartedAgent)))
        h.feed(.linkBroken(endpoint: H.agent.endpoint))
        #expect(h.take().map { "\($0.0.kind)->\($0.1)" } == ["reregister_executor->\(H.restartedAgent)"])
    }

    /// Updates made between ReconnectExecutor and ExecutorReregistered are not lost.
    @Test func updatesMadeWhileReregisteringAreSentOnceReregistered() {
        var h = H(checkpoint: true)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.ackAll()
        h.feed(.linkBroken(endpoint: H.agent.endpoint))
        h.fromAgent(.reconnectExecutor(ReconnectExecutorMessage(agentID: H.agentID)), pid: H.restartedAgent)
        _ = h.take()
        h.feed(.taskExited(.exited(0)))
        #expect(h.states(h.take()).isEmpty, "not registered yet: kept")
        h.fromAgent(.executorReregistered(ExecutorReregisteredMessage(agentID: H.agentID, agentInfo: AgentInfo(hostname: "h", id: H.agentID))), pid: H.restartedAgent)
        #expect(h.states(h.take()) == [.finished])
    }

    /// A shutdown after the task ended waits for the agent to take the last update (bounded).
    @Test func aShutdownWaitsForTheLastUpdateToBeTaken() {
        var h = H(checkpoint: false)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.feed(.taskExited(.exited(0)))
        h.fromAgent(.shutdownExecutor(ShutdownExecutorMessage()))
        #expect(h.exited == nil)
        h.ackAll()
        if case .executorShutDown? = h.exited {} else { Issue.record("exit \(String(describing: h.exited))") }
    }

    /// A kill before the task's process started: no RUNNING after it; SIGTERM once it runs, and
    /// the grace period counted from then.
    @Test func aKillBeforeTheTaskStartedIsCarriedOutWhenItStarts() {
        var h = H(checkpoint: false)
        h.runTask()
        h.fromAgent(.killTask(KillTaskMessage(frameworkID: H.f1, taskID: TaskID(value: "t1"))))
        h.tick(.seconds(5))
        #expect(h.signals.isEmpty)
        h.feed(.taskStarted(pid: 99))
        #expect(h.signals == [.terminate] && !h.states(h.take()).contains(.running))
        h.tick(.seconds(3))
        #expect(h.signals == [.terminate, .kill])
    }

    @Test func aTaskWithoutACommandFails() {
        var h = H(checkpoint: false)
        h.fromAgent(.runTask(RunTaskMessage(frameworkID: H.f1, framework: h.framework, task: TaskInfo(name: "t1", taskID: TaskID(value: "t1"), agentID: H.agentID), pid: P.scheduler.description)))
        #expect(h.launched.isEmpty && h.states(h.take()) == [.failed])
    }

    @Test func anExitStatusThatCannotBeCollectedIsAFailure() {
        var h = H(checkpoint: false)
        h.runTask()
        h.feed(.taskStarted(pid: 99))
        h.feed(.taskExited(.unknown))
        let last = h.take().last?.0.statusUpdate?.update.status
        #expect(last?.state == .failed && last?.message == "Failed to get exit status for Command")
    }
}
