import MesosCore
import MesosWire
import Testing

/// Drives `AgentCore` with events only. Executors are played by the test: their messages come
/// from `executorPID(...)`, on the agent's host.
struct AgentHarness {
    var core: AgentCore
    var sent: [(Envelope.Payload, PID, UInt64)] = []
    var launched: [ExecutorLaunch] = []
    var destroyed: [ExecutorKey] = []
    var checkpoints: [CheckpointWrite] = []
    /// Every effect in order (for "checkpointed before acknowledged").
    var effects: [AgentCore.Effect] = []
    var observed: [AgentObservation] = []
    var exited: ExitReason?
    var now: Duration = .zero
    /// The agent's disk: every checkpoint write applied, as the shell does.
    let disk: MemoryCheckpointStore

    static let m1 = leader(P.master, epoch: 3)
    static let m2 = leader(P.master2, epoch: 4)
    static let f1 = FrameworkID(value: "f1")
    static let f2 = FrameworkID(value: "f2")
    static let s1 = AgentID(value: "S1")

    init(id: AgentID? = nil, epochFloor: UInt64 = 0, recovering state: AgentRecoveryState = AgentRecoveryState(), disk: MemoryCheckpointStore = MemoryCheckpointStore(),
        configure: (inout AgentSettings) -> Void = { _ in }) {
        self.disk = disk
        var settings = AgentSettings()
        settings.statusUpdateRetryInterval = .seconds(1)
        settings.registrationBackoffFactor = .seconds(1)
        settings.maxRegistrationBackoff = .seconds(8)
        configure(&settings)
        core = AgentCore(info: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 2)], id: id), pid: P.agent, epochFloor: epochFloor, seed: 42, settings: settings)
        feed(.recovered(state))
    }

    mutating func feed(_ event: AgentCore.Event) {
        for effect in core.handle(event) {
            effects.append(effect)
            switch effect {
            case .send(let p, let to, let epoch): sent.append((p, to, epoch))
            case .launchExecutor(let l): launched.append(l)
            case .destroyExecutor(let key): destroyed.append(key)
            case .checkpoint(let w):
                checkpoints.append(w)
                try? AgentCheckpoint.apply(w, to: disk)
            case .observe(let o): observed.append(o)
            case .exit(let reason): exited = reason
            }
        }
    }

    mutating func tick(_ by: Duration) {
        now += by
        feed(.tick(now: now))
    }

    mutating func take() -> [(Envelope.Payload, PID, UInt64)] {
        defer { sent = [] }
        return sent
    }

    mutating func fromMaster(_ leader: Leader, _ payload: Envelope.Payload, epoch: UInt64? = nil) {
        feed(.message(Inbound(envelope(payload, from: leader.pid, epoch: epoch ?? leader.epoch))))
    }

    /// Ticks until a registration goes out; its time.
    mutating func registrationAttempt() -> (Envelope.Payload, Duration)? {
        for _ in 0..<2000 {
            tick(.milliseconds(10))
            if let p = take().first(where: { if case .registerAgent = $0.0 { true } else if case .reregisterAgent = $0.0 { true } else { false } }) {
                return (p.0, now)
            }
        }
        return nil
    }

    mutating func register(with leader: Leader, as id: String = "S1") {
        feed(.leaderDetected(leader))
        _ = registrationAttempt()
        fromMaster(leader, .agentRegistered(AgentRegisteredMessage(agentID: AgentID(value: id))))
    }

    static func framework(_ id: FrameworkID, checkpoint: Bool = false, partitionAware: Bool = false) -> FrameworkInfo {
        FrameworkInfo(user: "u", name: "fw", id: id, checkpoint: checkpoint, capabilities: partitionAware ? [FrameworkInfo.Capability(type: .partitionAware)] : [])
    }

    mutating func run(_ task: String, of framework: FrameworkID = f1, checkpoint: Bool = false, partitionAware: Bool = false, on leader: Leader) {
        let info = TaskInfo(name: task, taskID: TaskID(value: task), agentID: Self.s1, command: CommandInfo(value: "sleep 10"))
        fromMaster(leader, .runTask(RunTaskMessage(frameworkID: framework, framework: Self.framework(framework, checkpoint: checkpoint, partitionAware: partitionAware), task: info, pid: P.scheduler.description)))
    }

    static func executorPID(_ n: Int) -> PID { PID("executor(1)@\(P.agent.host):\(7000 + n)")! }

    mutating func fromExecutor(_ pid: PID, _ payload: Envelope.Payload) {
        feed(.message(Inbound(envelope(payload, from: pid, epoch: 0))))
    }

    /// The executor of `task` registers from `pid`: it gets ExecutorRegistered and its task.
    mutating func executorRegisters(_ task: String, of framework: FrameworkID = f1, from pid: PID) {
        fromExecutor(pid, .registerExecutor(RegisterExecutorMessage(frameworkID: framework, executorID: ExecutorID(value: task))))
    }

    /// The executor of `task` reports `state`; the update it sent.
    @discardableResult
    mutating func executorReports(_ task: String, _ state: TaskState, of framework: FrameworkID = f1, from pid: PID, uuid: UInt8 = 1) -> StatusUpdate {
        let uuid = [UInt8](repeating: uuid, count: 16)
        let status = TaskStatus(taskID: TaskID(value: task), state: state, source: .executor, uuid: uuid)
        let u = StatusUpdate(frameworkID: framework, status: status, timestamp: 1, uuid: uuid, executorID: ExecutorID(value: task))
        fromExecutor(pid, .statusUpdate(StatusUpdateMessage(update: u)))
        return u
    }

    mutating func ack(_ u: StatusUpdate, from leader: Leader) {
        fromMaster(leader, .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: Self.s1, frameworkID: u.frameworkID, taskID: u.status.taskID, uuid: u.uuid)))
    }

    func updates(_ sent: [(Envelope.Payload, PID, UInt64)], to: PID = P.master) -> [StatusUpdate] { sent.filter { $0.1 == to }.compactMap { $0.0.statusUpdate?.update } }
    func sentTo(_ pid: PID, _ sent: [(Envelope.Payload, PID, UInt64)]) -> [String] { sent.filter { $0.1 == pid }.map(\.0.kind) }
}

func key(_ framework: FrameworkID, _ task: String) -> TaskKey { TaskKey(framework: framework, task: TaskID(value: task)) }
func executorKey(_ framework: FrameworkID, _ task: String) -> ExecutorKey { ExecutorKey(framework: framework, executor: ExecutorID(value: task)) }

@Suite struct AgentCoreTests {
    typealias H = AgentHarness

    /// Found by the core fuzzer: a checkpointed agent id the wire refuses was sent in ReregisterAgent.
    @Test func aCheckpointWithValuesTheWireRefusesFailsTheRecovery() {
        var state = AgentRecoveryState()
        state.agent = AgentInfo(hostname: "h", resources: [], id: AgentID(value: "S1 \u{7}"))
        var h = H(recovering: state)
        guard case .recoveryFailed(let path, let problem) = h.exited else {
            Issue.record("expected a failed recovery, got \(String(describing: h.exited))")
            return
        }
        #expect(path == "checkpoint (slave.info.id)")
        #expect(problem == "contains whitespace or control characters")
        h.feed(.leaderDetected(H.m1))
        h.tick(.seconds(5))
        #expect(h.sent.isEmpty, "an agent whose recovery failed registers with no one")
    }

    @Test func masterlessAgentIgnoresMasterMessages() {
        var h = H()
        h.run("t", on: H.m1)
        h.fromMaster(H.m1, .shutdown(ShutdownMessage()))
        #expect(h.launched.isEmpty && h.exited == nil && h.take().isEmpty)
        #expect(h.core.droppedMessages[.noLeader] == 2)
    }

    @Test func registersWithADoublingJitteredBackoffUntilAnswered() {
        var h = H()
        h.feed(.leaderDetected(H.m1))
        guard case .registerAgent? = h.registrationAttempt()?.0 else { Issue.record("no registration"); return }
        // Unanswered: retried; the bound of each wait doubles (1 s, 2 s, 4 s), capped at 8 s.
        var bounds: [Duration] = []
        for _ in 0..<5 {
            bounds.append(h.core.follower.backoff)
            guard h.registrationAttempt() != nil else { Issue.record("no retry"); return }
        }
        #expect(bounds == [.seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
        h.fromMaster(H.m1, .agentRegistered(AgentRegisteredMessage(agentID: H.s1)))
        #expect(h.core.isRegistered && h.core.agentID == H.s1)
        #expect(h.checkpoints.contains { if case .agent(let info) = $0 { info.id == H.s1 } else { false } }, "slave.info written at the first registration")
        #expect(h.observed.contains(.registered(H.s1, H.m1)))
        #expect(h.registrationAttempt() == nil, "no more attempts once registered")
    }

    @Test func rejectsStaleLeadersAndImpostors() {
        var h = H()
        h.register(with: H.m2)
        _ = h.take()
        h.fromMaster(H.m1, .ping(PingAgentMessage(connected: true)))  // deposed leader, epoch 3
        h.fromMaster(leader(P.stranger, epoch: 4), .ping(PingAgentMessage(connected: true)))
        h.fromMaster(H.m2, .ping(PingAgentMessage(connected: true)), epoch: 5)
        #expect(h.take().isEmpty)
        #expect(h.core.droppedMessages == [.staleEpoch: 1, .notFromLeader: 1, .unconfirmedEpoch: 1])
        h.fromMaster(H.m2, .ping(PingAgentMessage(connected: true)))
        #expect(h.take().map { "\($0.0)" } == ["\(Envelope.Payload.pong(PongAgentMessage()))"])
    }

    @Test func neverFollowsALeaderOlderThanOneSeen() {
        var h = H(epochFloor: 4)
        h.feed(.leaderDetected(H.m1))
        #expect(h.core.leader == nil && h.observed.contains(.leaderBelowFloor(H.m1, floor: 4)))
        h.feed(.leaderDetected(H.m2))
        h.feed(.leaderDetected(H.m1))
        #expect(h.core.leader == H.m2)
    }

    @Test func aLaunchedTaskGetsItsOwnExecutorWhichGetsTheTaskOnceRegistered() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", on: H.m1)
        #expect(h.launched.map(\.key) == [executorKey(H.f1, "t1")], "a command executor per task, named after it")
        #expect(h.launched.first?.task.taskID.value == "t1")
        _ = h.take()
        h.executorRegisters("t1", from: H.executorPID(1))
        #expect(h.sentTo(H.executorPID(1), h.take()) == ["executor_registered", "run_task"])
        #expect(h.core.executors[executorKey(H.f1, "t1")]?.state == .running)
    }

    @Test func anExecutorsUpdateIsOnDiskBeforeTheExecutorIsAcknowledgedAndItIsForwarded() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", checkpoint: true, on: H.m1)
        h.executorRegisters("t1", from: H.executorPID(1))
        h.effects = []
        let running = h.executorReports("t1", .running, from: H.executorPID(1))
        let order = h.effects.compactMap { e -> String? in
            switch e {
            case .checkpoint(.taskUpdates): "checkpoint"
            case .send(.statusUpdateAck(let a), let to, _) where to == H.executorPID(1) && a.uuid == running.uuid: "ack-to-executor"
            case .send(.statusUpdate(let m), let to, _) where to == P.master && m.update.uuid == running.uuid: "forward"
            default: nil
            }
        }
        #expect(order.first == "checkpoint" && order.contains("ack-to-executor") && order.contains("forward"), "\(order)")
        #expect(order.firstIndex(of: "checkpoint")! < order.firstIndex(of: "ack-to-executor")!)
        // A duplicate (the executor re-sends it after a reconnect) is acknowledged again, not forwarded again.
        _ = h.take()
        h.executorReports("t1", .running, from: H.executorPID(1))
        let again = h.take()
        #expect(h.sentTo(H.executorPID(1), again) == ["status_update_ack"] && h.updates(again).isEmpty)
    }

    @Test func frameworksThatDoNotCheckpointLeaveNothingOnDisk() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", on: H.m1)
        h.executorRegisters("t1", from: H.executorPID(1))
        h.executorReports("t1", .running, from: H.executorPID(1))
        #expect(h.checkpoints.allSatisfy { if case .agent = $0 { true } else if case .epochFloor = $0 { true } else { false } }, "\(h.checkpoints)")
        #expect(h.disk.files.keys.sorted() == ["epoch_floor", "slaves/S1/slave.info"])
    }

    @Test func executorMessagesFromAnotherHostOrPIDAreRefused() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", on: H.m1)
        _ = h.take()
        let foreign = PID("executor(1)@10.9.9.9:7001")!
        h.executorRegisters("t1", from: foreign)
        #expect(h.sentTo(foreign, h.take()) == ["shutdown_executor"])
        #expect(h.core.executors[executorKey(H.f1, "t1")]?.state == .registering)
        h.executorRegisters("t1", from: H.executorPID(1))
        _ = h.take()
        // Another local process claiming to be that executor: refused, its update not taken.
        h.executorReports("t1", .finished, from: H.executorPID(2))
        #expect(h.take().isEmpty && h.core.tasks[key(H.f1, "t1")]?.state == .staging)
        #expect(h.observed.contains { if case .executorMessageRefused(let from, "status_update", _) = $0 { from == H.executorPID(2).description } else { false } })
    }

    @Test func updatesAreRetriedAcrossFailoverUntilAcknowledged() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", on: H.m1)
        h.executorRegisters("t1", from: H.executorPID(1))
        _ = h.take()
        let first = h.executorReports("t1", .running, from: H.executorPID(1))
        #expect(h.updates(h.take()).map(\.uuid) == [first.uuid])
        // Not acknowledged: sent again.
        h.tick(.seconds(1))
        #expect(h.updates(h.take()).map(\.uuid) == [first.uuid])
        // Failover: master-less (nothing sent), then a new leader; re-registration carries the task.
        h.feed(.leaderDetected(nil))
        h.tick(.seconds(5))
        #expect(h.take().isEmpty)
        h.feed(.leaderDetected(H.m2))
        guard case .reregisterAgent(let re)? = h.registrationAttempt()?.0 else { Issue.record("no re-registration"); return }
        #expect(re.tasks.map(\.taskID.value) == ["t1"] && re.tasks.first?.state == .running && re.agent.id == H.s1)
        #expect(re.tasks.first?.executorID?.value == "t1")
        h.fromMaster(H.m2, .agentReregistered(AgentReregisteredMessage(agentID: H.s1)))
        #expect(h.take().contains { $0.0.statusUpdate?.update.uuid == first.uuid && $0.2 == 4 })
        // Acknowledged: no more retries.
        h.ack(first, from: H.m2)
        #expect(h.core.pendingUpdates == 0)
        h.tick(.seconds(30))
        #expect(h.updates(h.take()).isEmpty)
    }

    @Test func updatesOfOneTaskGoInOrderAndTheTaskIsDoneWhenTheLastIsAcknowledged() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", on: H.m1)
        h.executorRegisters("t1", from: H.executorPID(1))
        _ = h.take()
        let running = h.executorReports("t1", .running, from: H.executorPID(1), uuid: 1)
        let finished = h.executorReports("t1", .finished, from: H.executorPID(1), uuid: 2)
        #expect(h.updates(h.take()).map(\.status.state) == [.running], "FINISHED waits for RUNNING's acknowledgement")
        h.ack(running, from: H.m1)
        #expect(h.updates(h.take()).map(\.uuid) == [finished.uuid])
        h.ack(finished, from: H.m1)
        #expect(h.core.tasks.isEmpty)
        // Its executor exits: forgotten, with its framework.
        h.feed(.executorExited(executorKey(H.f1, "t1"), status: 0))
        #expect(h.core.executors.isEmpty && h.core.frameworks.isEmpty)
    }

    /// Two frameworks, both with a task named `task-1`: both run; a kill and an acknowledgement
    /// reach only their own framework's task.
    @Test func tasksAreIdentifiedByFrameworkAndTask() {
        var h = H()
        h.register(with: H.m1)
        h.run("task-1", of: H.f1, on: H.m1)
        h.run("task-1", of: H.f2, on: H.m1)
        #expect(h.launched.map(\.key) == [executorKey(H.f1, "task-1"), executorKey(H.f2, "task-1")])
        h.executorRegisters("task-1", of: H.f1, from: H.executorPID(1))
        h.executorRegisters("task-1", of: H.f2, from: H.executorPID(2))
        _ = h.take()
        h.fromMaster(H.m1, .killTask(KillTaskMessage(frameworkID: H.f2, taskID: TaskID(value: "task-1"))))
        #expect(h.sentTo(H.executorPID(2), h.sent) == ["kill_task"] && h.sentTo(H.executorPID(1), h.sent).isEmpty)
        _ = h.take()
        let r1 = h.executorReports("task-1", .running, of: H.f1, from: H.executorPID(1), uuid: 1)
        let k2 = h.executorReports("task-1", .killed, of: H.f2, from: H.executorPID(2), uuid: 2)
        #expect(h.updates(h.take()).map { "\($0.frameworkID.value):\($0.status.state.protoName)" } == ["f1:TASK_RUNNING", "f2:TASK_KILLED"])
        h.ack(k2, from: H.m1)
        #expect(h.core.tasks.keys.sorted() == [key(H.f1, "task-1")])
        #expect(h.core.pendingUpdateKeys == [key(H.f1, "task-1")])
        _ = r1
    }

    @Test func aKillBeforeTheExecutorRegisteredEndsTheTaskAndTheExecutor() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", on: H.m1)
        _ = h.take()
        h.fromMaster(H.m1, .killTask(KillTaskMessage(frameworkID: H.f1, taskID: TaskID(value: "t1"))))
        let u = h.updates(h.take())
        #expect(u.map(\.status.state) == [.killed] && u.first?.status.reason == .taskKilledDuringLaunch)
        #expect(h.destroyed == [executorKey(H.f1, "t1")])
    }

    @Test func anExecutorThatNeverRegistersIsKilledAndItsTaskFails() {
        var h = H { $0.executorRegistrationTimeout = .seconds(5) }
        h.register(with: H.m1)
        h.run("t1", on: H.m1)
        _ = h.take()
        h.tick(.seconds(4))
        #expect(h.destroyed.isEmpty)
        h.tick(.seconds(2))
        #expect(h.destroyed == [executorKey(H.f1, "t1")])
        h.feed(.executorExited(executorKey(H.f1, "t1"), status: 137))
        let u = h.updates(h.take())
        #expect(u.map(\.status.state) == [.failed] && u.first?.status.reason == .executorRegistrationTimeout)
    }

    @Test func anExecutorThatDiesTakesItsTaskWithItAsFailed() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", on: H.m1)
        h.executorRegisters("t1", from: H.executorPID(1))
        let running = h.executorReports("t1", .running, from: H.executorPID(1))
        h.ack(running, from: H.m1)
        _ = h.take()
        h.feed(.executorExited(executorKey(H.f1, "t1"), status: 137))
        #expect(h.destroyed == [executorKey(H.f1, "t1")], "whatever it left in its session is killed too")
        let u = h.updates(h.take())
        #expect(u.map(\.status.state) == [.failed] && u.first?.status.reason == .executorTerminated)
        #expect(u.first?.status.message?.contains("terminated with signal SIGKILL") == true, "\(u.first?.status.message ?? "")")
    }

    @Test func tasksTheMasterAsksAboutThatTheAgentLacksAreReportedLost() {
        var h = H()
        h.register(with: H.m1)
        h.run("known", on: H.m1)
        _ = h.take()
        h.feed(.leaderDetected(H.m2))
        _ = h.registrationAttempt()
        let ask = ReconcileTasksMessage(frameworkID: H.f1, statuses: [
            TaskStatus(taskID: TaskID(value: "known"), state: .staging), TaskStatus(taskID: TaskID(value: "gone"), state: .running),
        ])
        h.fromMaster(H.m2, .agentReregistered(AgentReregisteredMessage(agentID: H.s1, reconciliations: [ask])))
        let updates = h.updates(h.take(), to: P.master2)
        #expect(updates.map { "\($0.status.taskID.value):\($0.status.state.protoName)" } == ["gone:TASK_LOST"])
        #expect(updates.first?.status.reason == .reconciliation && updates.first?.uuid.isEmpty == false, "a reliable update, acknowledged like any other")
    }

    @Test func aKillOfATaskTheAgentDoesNotHaveIsAnsweredLost() {
        var h = H()
        h.register(with: H.m1)
        h.fromMaster(H.m1, .killTask(KillTaskMessage(frameworkID: H.f1, taskID: TaskID(value: "nope"))))
        #expect(h.updates(h.take()).map(\.status.state) == [.lost])
    }

    @Test func invalidMasterMessagesAreRefusedAndNotActedOn() {
        var h = H()
        h.register(with: H.m1)
        _ = h.take()
        let info = TaskInfo(name: "t", taskID: TaskID(value: "../etc"), agentID: H.s1, resources: [Resource(name: "cpus", scalar: .nan)], command: CommandInfo(value: "true"))
        h.fromMaster(H.m1, .runTask(RunTaskMessage(frameworkID: H.f1, framework: FrameworkInfo(user: "u", name: "fw"), task: info, pid: P.scheduler.description)))
        #expect(h.launched.isEmpty)
        #expect(h.take().first?.0.refused?.kind == "run_task")
    }

    @Test func shutdownByTheMasterForgetsTheAgentShutsDownExecutorsThenExits() {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", checkpoint: true, on: H.m1)
        h.executorRegisters("t1", from: H.executorPID(1))
        _ = h.take()
        h.fromMaster(H.m1, .shutdown(ShutdownMessage(message: "agent removed")))
        #expect(h.sentTo(H.executorPID(1), h.take()) == ["shutdown_executor"])
        #expect(h.exited == nil && !h.checkpoints.contains(.forgetAgent), "waits for its executors, still recoverable meanwhile")
        h.feed(.executorExited(executorKey(H.f1, "t1"), status: 0))
        #expect(h.exited == .shutDownByMaster("agent removed"))
        #expect(h.checkpoints.last == .forgetAgent && h.disk.links["slaves/latest"] == nil, "the next start registers anew")
        h.fromMaster(H.m1, .ping(PingAgentMessage(connected: true)))
        #expect(h.take().isEmpty)
    }

    /// SIGTERM: executors of frameworks that checkpoint keep running for the next start; the
    /// others are shut down, then the agent exits.
    @Test func sigtermKeepsCheckpointedExecutorsRunning() {
        var h = H()
        h.register(with: H.m1)
        h.run("kept", checkpoint: true, on: H.m1)
        h.run("ended", checkpoint: false, on: H.m1)
        h.executorRegisters("kept", from: H.executorPID(1))
        h.executorRegisters("ended", from: H.executorPID(2))
        _ = h.take()
        h.feed(.shutdownRequested(forGood: false))
        let sent = h.take()
        #expect(h.sentTo(H.executorPID(2), sent) == ["shutdown_executor"] && h.sentTo(H.executorPID(1), sent).isEmpty)
        #expect(!sent.contains { $0.1 == P.master && $0.0.kind == "unregister_agent" })
        #expect(h.exited == nil)
        h.feed(.executorExited(executorKey(H.f1, "ended"), status: 0))
        #expect(h.exited == .terminated && h.destroyed.allSatisfy { $0 != executorKey(H.f1, "kept") })
    }

    /// SIGUSR1: unregister, shut every executor down, forget the agent id.
    @Test func sigusr1UnregistersAndShutsDownEveryExecutor() {
        var h = H()
        h.register(with: H.m1)
        h.run("kept", checkpoint: true, on: H.m1)
        h.executorRegisters("kept", from: H.executorPID(1))
        _ = h.take()
        h.feed(.shutdownRequested(forGood: true))
        let sent = h.take()
        #expect(sent.contains { $0.1 == P.master && $0.0.kind == "unregister_agent" })
        #expect(h.sentTo(H.executorPID(1), sent) == ["shutdown_executor"])
        // It does not answer: killed after the grace period, then the agent forgets its id and exits.
        h.tick(.seconds(7))
        #expect(h.destroyed.contains(executorKey(H.f1, "kept")) && h.exited == .shutDownForGood)
        #expect(h.checkpoints.last == .forgetAgent)
    }

    /// What a broken link may have lost (or the master restarted on the same address): re-register,
    /// after the random wait in [0, registration_backoff_factor] a detection gets.
    @Test func aBrokenLinkToTheLeaderMeansReregistering() {
        var h = H()
        h.register(with: H.m1)
        _ = h.take()
        h.feed(.linkBroken(endpoint: P.stranger.endpoint))
        #expect(h.take().isEmpty, "another peer's link is not the leader's")
        let brokenAt = h.now
        h.feed(.linkBroken(endpoint: P.master.endpoint))
        #expect(h.observed.contains(.linkToLeaderBroken(H.m1)))
        guard let (payload, at) = h.registrationAttempt() else { Issue.record("no re-registration"); return }
        guard case .reregisterAgent = payload else { Issue.record("sent \(payload.kind)"); return }
        #expect(at - brokenAt <= .seconds(1), "within the backoff factor")
    }

    /// A leader that went away breaks every agent's link before their detectors name the next
    /// one: the wait lets a detection in between send the re-registration to the new leader only.
    @Test func aNewLeaderDetectedWhileWaitingAfterABrokenLinkGetsTheOnlyReregistration() {
        var h = H()
        h.register(with: H.m1)
        _ = h.take()
        h.feed(.linkBroken(endpoint: P.master.endpoint))
        h.feed(.leaderDetected(H.m2))
        var sent: [(Envelope.Payload, PID, UInt64)] = []
        for _ in 0..<300 {  // 3 s: the new leader's wait (at most 1 s) and a retry's
            h.tick(.milliseconds(10))
            sent += h.take()
        }
        #expect(h.sentTo(P.master, sent).isEmpty, "nothing to the leader that went away")
        #expect(h.sentTo(P.master2, sent).first == "reregister_agent")
    }

    @Test func noPingsForTooLongMeansReregistering() {
        var h = H()
        h.register(with: H.m1)
        _ = h.take()
        h.tick(.seconds(76))
        #expect(h.observed.contains(.masterPingsMissed(.seconds(75))))
        #expect(h.take().contains { if case .reregisterAgent = $0.0 { true } else { false } })
    }
}

/// Agent restarts: what the checkpoint holds comes back (Mesos's Slave::recover).
@Suite struct AgentRecoveryTests {
    typealias H = AgentHarness

    /// An agent that ran a checkpointed task, its disk, and the running task's RUNNING update
    /// (acknowledged by the master) and a later unacknowledged one when `pending`.
    static func diskAfterARun(pending: TaskState? = nil, partitionAware: Bool = false) -> (MemoryCheckpointStore, StatusUpdate?) {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", checkpoint: true, partitionAware: partitionAware, on: H.m1)
        h.executorRegisters("t1", from: H.executorPID(1))
        h.ack(h.executorReports("t1", .running, from: H.executorPID(1), uuid: 1), from: H.m1)
        let later = pending.map { h.executorReports("t1", $0, from: H.executorPID(1), uuid: 2) }
        try? AgentCheckpoint.apply(.forkedPID(agent: H.s1, executorKey(H.f1, "t1"), run: h.launched[0].run, pid: 4242), to: h.disk)
        return (h.disk, later)
    }

    static func restarted(from disk: MemoryCheckpointStore, alive: Bool, strict: Bool = true, configure: (inout AgentSettings) -> Void = { _ in }) throws -> AgentHarness {
        var state = try AgentCheckpoint.recover(from: disk, strict: strict)
        for f in state.frameworks.indices { for e in state.frameworks[f].executors.indices { state.frameworks[f].executors[e].alive = alive } }
        return H(recovering: state, disk: disk, configure: configure)
    }

    @Test func aLiveExecutorIsAskedToReconnectAndTheAgentRegistersOnlyAfterIt() throws {
        let (disk, _) = Self.diskAfterARun()
        var h = try Self.restarted(from: disk, alive: true)
        #expect(h.core.agentID == H.s1, "the same agent id")
        #expect(h.sentTo(H.executorPID(1), h.take()) == ["reconnect_executor"])
        h.feed(.leaderDetected(H.m1))
        // Re-registration waits for the executor (or its timeout).
        for _ in 0..<15 { h.tick(.milliseconds(100)) }
        #expect(!h.take().contains { if case .reregisterAgent = $0.0 { true } else { false } })
        #expect(!h.core.isRecovered)
        h.fromExecutor(H.executorPID(1), .reregisterExecutor(ReregisterExecutorMessage(executorID: ExecutorID(value: "t1"), frameworkID: H.f1)))
        #expect(h.sentTo(H.executorPID(1), h.take()).contains("executor_reregistered"))
        #expect(h.core.isRecovered && h.observed.contains(.reconnected(executors: 1, timedOut: 0)))
        guard case .reregisterAgent(let re)? = h.registrationAttempt()?.0 else { Issue.record("no re-registration"); return }
        #expect(re.agent.id == H.s1 && re.tasks.map { "\($0.taskID.value):\($0.state.protoName)" } == ["t1:TASK_RUNNING"])
        // A kill afterwards reaches the executor.
        h.fromMaster(H.m1, .agentReregistered(AgentReregisteredMessage(agentID: H.s1)))
        h.fromMaster(H.m1, .killTask(KillTaskMessage(frameworkID: H.f1, taskID: TaskID(value: "t1"))))
        #expect(h.sentTo(H.executorPID(1), h.take()) == ["kill_task"])
    }

    @Test func updatesTheExecutorKeptWhileTheAgentWasDownAreForwardedAfterRecovery() throws {
        let (disk, _) = Self.diskAfterARun()
        var h = try Self.restarted(from: disk, alive: true)
        _ = h.take()
        let status = TaskStatus(taskID: TaskID(value: "t1"), state: .finished, message: "Command exited with status 0", source: .executor, uuid: [UInt8](repeating: 9, count: 16))
        let u = StatusUpdate(frameworkID: H.f1, status: status, timestamp: 5, uuid: status.uuid!, executorID: ExecutorID(value: "t1"))
        h.fromExecutor(H.executorPID(1), .reregisterExecutor(ReregisterExecutorMessage(executorID: ExecutorID(value: "t1"), frameworkID: H.f1, updates: [u])))
        #expect(h.sentTo(H.executorPID(1), h.take()) == ["executor_reregistered", "status_update_ack"])
        h.register(with: H.m1)
        let forwarded = h.updates(h.take())
        #expect(forwarded.map(\.uuid) == [u.uuid] && forwarded.first?.status.message == "Command exited with status 0")
    }

    @Test func anUnacknowledgedUpdateFromTheCheckpointGoesToTheMasterAfterRecovery() throws {
        let (disk, finished) = Self.diskAfterARun(pending: .finished)
        var h = try Self.restarted(from: disk, alive: false)
        h.register(with: H.m1)
        #expect(h.updates(h.take()).map(\.uuid) == [finished!.uuid], "no TASK_FAILED: the task had finished, its update is replayed")
        h.ack(finished!, from: H.m1)
        #expect(h.core.tasks.isEmpty && h.core.executors.isEmpty)
        #expect(h.checkpoints.contains { if case .executorCompleted = $0 { true } else { false } })
    }

    @Test func anExecutorThatDiedWhileTheAgentWasDownFailsItsTask() throws {
        let (disk, _) = Self.diskAfterARun()
        var h = try Self.restarted(from: disk, alive: false)
        #expect(h.destroyed == [executorKey(H.f1, "t1")], "leftovers of its session are killed")
        h.register(with: H.m1)
        let u = h.updates(h.take())
        #expect(u.map(\.status.state) == [.failed] && u.first?.status.reason == .executorTerminated)
        #expect(u.first?.status.message?.contains("while the agent was down") == true)
    }

    @Test func anExecutorThatDoesNotReregisterInTimeIsKilledAndItsTaskIsLost() throws {
        let (disk, _) = Self.diskAfterARun(partitionAware: true)
        var h = try Self.restarted(from: disk, alive: true)
        h.feed(.leaderDetected(H.m1))
        h.tick(.milliseconds(1500))
        #expect(h.destroyed.isEmpty && !h.core.isRecovered)
        h.tick(.milliseconds(600))
        #expect(h.destroyed == [executorKey(H.f1, "t1")] && h.core.isRecovered)
        #expect(h.observed.contains(.reconnected(executors: 0, timedOut: 1)))
        h.feed(.executorExited(executorKey(H.f1, "t1"), status: nil))
        h.fromMaster(H.m1, .agentReregistered(AgentReregisteredMessage(agentID: H.s1)))
        let u = h.updates(h.take())
        #expect(u.map(\.status.state) == [.gone], "TASK_GONE for a partition-aware framework (TASK_LOST otherwise)")
        #expect(u.first?.status.reason == .executorReregistrationTimeout)
    }

    @Test func recoverCleanupKillsTheExecutorsAndExits() throws {
        let (disk, _) = Self.diskAfterARun()
        var h = try Self.restarted(from: disk, alive: true) { $0.recover = .cleanup }
        #expect(h.destroyed == [executorKey(H.f1, "t1")] && h.exited == nil)
        h.feed(.leaderDetected(H.m1))
        #expect(h.registrationAttempt() == nil, "cleanup never registers")
        h.feed(.executorExited(executorKey(H.f1, "t1"), status: nil))
        #expect(h.exited == .recoveryCleanedUp(executors: 1))
        // The terminal update is on disk for the next start.
        let next = try AgentCheckpoint.recover(from: disk, strict: true)
        let records = next.executors.first?.tasks.first?.records ?? []
        #expect(records.compactMap(\.update?.status.state).last == .failed)
    }

    @Test func aTaskHandedOverDuringTheRestartThatTheExecutorNeverGotIsLostAndTheIdleExecutorShutDown() throws {
        // The agent launched t2's executor and handed it the task just before it died; the executor registered but never got it.
        var h = H()
        h.register(with: H.m1)
        h.run("t1", checkpoint: true, on: H.m1)
        h.executorRegisters("t1", from: H.executorPID(1))
        try AgentCheckpoint.apply(.forkedPID(agent: H.s1, executorKey(H.f1, "t1"), run: h.launched[0].run, pid: 4242), to: h.disk)
        var r = try Self.restarted(from: h.disk, alive: true)
        _ = r.take()
        r.fromExecutor(H.executorPID(1), .reregisterExecutor(ReregisterExecutorMessage(executorID: ExecutorID(value: "t1"), frameworkID: H.f1)))
        #expect(r.sentTo(H.executorPID(1), r.take()) == ["executor_reregistered", "shutdown_executor"])
        r.register(with: H.m1)
        let u = r.updates(r.take())
        #expect(u.map(\.status.state) == [.lost] && u.first?.status.reason == .agentRestarted)
    }

    @Test func anExecutorThatNeverRegisteredBeforeTheRestartIsKilledAndItsTaskLostOnceItIsGone() throws {
        var h = H()
        h.register(with: H.m1)
        h.run("t1", checkpoint: true, on: H.m1)  // launched, never registered: no libprocess.pid
        try AgentCheckpoint.apply(.forkedPID(agent: H.s1, executorKey(H.f1, "t1"), run: h.launched[0].run, pid: 4242), to: h.disk)
        var r = try Self.restarted(from: h.disk, alive: true)
        #expect(r.destroyed == [executorKey(H.f1, "t1")] && r.core.isRecovered)
        r.register(with: H.m1)
        #expect(r.updates(r.take()).isEmpty, "nothing reported while it may still run")
        r.feed(.executorExited(executorKey(H.f1, "t1"), status: nil))
        let u = r.updates(r.take())
        #expect(u.map(\.status.state) == [.lost] && u.first?.status.reason == .executorReregistrationTimeout)
    }

    @Test func whileRecoveringAFreshRegistrationIsRefusedAndAReregistrationFromAnotherPIDToo() throws {
        let (disk, _) = Self.diskAfterARun()
        var h = try Self.restarted(from: disk, alive: true)
        _ = h.take()
        h.executorRegisters("t1", from: H.executorPID(1))
        #expect(h.sentTo(H.executorPID(1), h.take()) == ["shutdown_executor"])
        h.fromExecutor(H.executorPID(9), .reregisterExecutor(ReregisterExecutorMessage(executorID: ExecutorID(value: "t1"), frameworkID: H.f1)))
        #expect(h.sentTo(H.executorPID(9), h.take()).isEmpty && !h.core.isRecovered, "only the pid it registered with may take it back")
    }

    @Test func executorsWhoseCheckpointIsUnusableAreKilled() throws {
        let (disk, _) = Self.diskAfterARun()
        disk.corrupt("slaves/S1/frameworks/f1/executors/t1/executor.info")
        var state = try AgentCheckpoint.recover(from: disk, strict: false)
        #expect(state.unrecoverable.map(\.key) == [executorKey(H.f1, "t1")])
        state.frameworks = []
        let h = H(recovering: state)
        #expect(h.destroyed == [executorKey(H.f1, "t1")])
        #expect(h.observed.contains(.checkpointEntrySkipped(path: "slaves/S1/frameworks/f1/executors/t1/executor.info", problem: state.skipped[0].problem)))
    }

    /// --strict=false and a corrupt task.updates: the executor is killed (it cannot be trusted to
    /// be recovered), and its task is reported FAILED only once it is gone.
    @Test func aCorruptUpdateStreamWithoutStrictKillsTheExecutorThenFailsTheTask() throws {
        let (disk, _) = Self.diskAfterARun()
        let path = "slaves/S1/frameworks/f1/executors/t1/runs/\(disk.links["slaves/S1/frameworks/f1/executors/t1/runs/latest"]!)/tasks/t1/task.updates"
        let good = disk.files[path]!
        try disk.write(good + [0xff, 0xff, 0xff, 0x7f, 1], to: path)
        #expect(throws: CheckpointError.self) { try AgentCheckpoint.recover(from: disk, strict: true) }
        var h = try Self.restarted(from: disk, alive: true, strict: false)
        #expect(h.destroyed == [executorKey(H.f1, "t1")] && h.core.isRecovered)
        h.register(with: H.m1)
        #expect(h.updates(h.take()).isEmpty)
        h.feed(.executorExited(executorKey(H.f1, "t1"), status: nil))
        let u = h.updates(h.take())
        #expect(u.map(\.status.state) == [.failed] && u.first?.status.message?.contains("checkpoint is corrupt") == true)
    }
}

/// `--reconfiguration_policy`: what a restarted agent may change and keep its id and executors.
@Suite struct AgentReconfigurationTests {
    typealias H = AgentHarness

    static func checkpointed(resources: [Resource] = [Resource(name: "cpus", scalar: 2)], hostname: String = "h", port: Int32 = 5051, rebooted: Bool = false) -> AgentRecoveryState {
        var state = AgentRecoveryState()
        state.agent = AgentInfo(hostname: hostname, port: port, resources: resources, id: H.s1)
        state.rebooted = rebooted
        return state
    }

    @Test func theEqualPolicyComparesResourcesAsMesosDoesInAnyOrderAndAddedUp() {
        let p = ReconfigurationPolicy.equal
        let a = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 2), Resource(name: "mem", scalar: 1024)])
        var b = a
        b.resources = [Resource(name: "mem", scalar: 512), Resource(name: "cpus", scalar: 2), Resource(name: "mem", scalar: 512)]
        #expect(p.incompatibility(previous: a, current: b) == nil)
        b.resources = [Resource(name: "cpus", scalar: 2), Resource(name: "mem", scalar: 2048)]
        #expect(p.incompatibility(previous: a, current: b) == "resources changed from 'cpus':2.0;'mem':1024.0 to 'cpus':2.0;'mem':2048.0")
        var moved = a
        moved.hostname = "other"
        #expect(p.incompatibility(previous: a, current: moved) == "hostname changed from h to other")
        var port = a
        port.port = 6000
        #expect(p.incompatibility(previous: a, current: port) == "port changed from 5051 to 6000")
        #expect(p.incompatibility(previous: a, current: port, comparePort: false) == nil)
    }

    @Test func theAdditivePolicyLetsResourcesBeAddedOrGrowButNeverShrinkOrGo() {
        let p = ReconfigurationPolicy.additive
        let a = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 2), Resource(name: "mem", scalar: 1024)])
        var grown = a
        grown.resources = [Resource(name: "cpus", scalar: 4), Resource(name: "mem", scalar: 1024), Resource(name: "disk", scalar: 100)]
        #expect(p.incompatibility(previous: a, current: grown) == nil)
        var shrunk = a
        shrunk.resources = [Resource(name: "cpus", scalar: 1), Resource(name: "mem", scalar: 1024)]
        #expect(p.incompatibility(previous: a, current: shrunk) == "value of scalar resource 'cpus' decreased from 2.0 to 1.0")
        var gone = a
        gone.resources = [Resource(name: "cpus", scalar: 2)]
        #expect(p.incompatibility(previous: a, current: gone) == "resource 'mem' not found (was 1024.0)")
        var otherRole = a
        otherRole.resources = [Resource(name: "cpus", scalar: 2, role: "web"), Resource(name: "mem", scalar: 1024)]
        #expect(p.incompatibility(previous: a, current: otherRole) == "resource 'cpus' not found (was 2.0)")
    }

    @Test func anAgentRestartedWithOtherResourcesRefusesToRecoverUnderTheEqualPolicy() {
        var h = H(id: H.s1, recovering: Self.checkpointed(resources: [Resource(name: "cpus", scalar: 4)]))
        guard case .recoveryFailed(let path, let problem) = h.exited else {
            Issue.record("expected a failed recovery, got \(String(describing: h.exited))")
            return
        }
        #expect(path == "agent info")
        #expect(problem.contains("resources changed from 'cpus':4.0 to 'cpus':2.0"))
        h.feed(.leaderDetected(H.m1))
        h.tick(.seconds(5))
        #expect(h.sent.isEmpty, "an agent whose recovery failed registers with no one")
    }

    @Test func underTheAdditivePolicyAnAgentWithMoreResourcesKeepsItsIdAndReregisters() {
        var h = H(id: H.s1, recovering: Self.checkpointed(resources: [Resource(name: "cpus", scalar: 1)])) { $0.reconfigurationPolicy = .additive }
        #expect(h.exited == nil)
        h.feed(.leaderDetected(H.m1))
        guard case .reregisterAgent(let m)? = h.registrationAttempt()?.0 else { Issue.record("no re-registration"); return }
        #expect(m.agent.id == H.s1 && m.agent.resources == [Resource(name: "cpus", scalar: 2)])
    }

    @Test func afterARebootAnIncompatibleAgentForgetsItsIdAndRegistersAsANewAgent() {
        var h = H(id: H.s1, recovering: Self.checkpointed(resources: [Resource(name: "cpus", scalar: 4)], rebooted: true))
        #expect(h.exited == nil)
        #expect(h.observed.contains(.recoveringAsNewAgent(previous: H.s1, reason: "resources changed from 'cpus':4.0 to 'cpus':2.0")))
        #expect(h.checkpoints.contains(.forgetAgent))
        h.feed(.leaderDetected(H.m1))
        guard case .registerAgent(let m)? = h.registrationAttempt()?.0 else { Issue.record("no registration as a new agent"); return }
        #expect(m.agent.id == nil)
    }

    @Test func anEphemeralPortIsNotComparedButAFixedOneIs() {
        let moved = Self.checkpointed(port: 40000)
        let ephemeral = H(id: H.s1, recovering: moved) { $0.ephemeralPort = true }
        #expect(ephemeral.exited == nil)
        let fixed = H(id: H.s1, recovering: moved)
        guard case .recoveryFailed(_, let problem) = fixed.exited else { Issue.record("expected a failed recovery"); return }
        #expect(problem.contains("port changed from 40000 to 5051"))
    }
}
