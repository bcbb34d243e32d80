import MesosCore
import MesosWire
import Testing

struct AgentHarness {
    var core: AgentCore
    var sent: [(Envelope.Payload, PID, UInt64)] = []
    var launched: [TaskKey] = []
    var killed: [TaskKey] = []
    var persisted: [(AgentID?, UInt64)] = []
    var observed: [AgentObservation] = []
    var exited: ExitReason?
    var now: Duration = .zero

    static let m1 = leader(P.master, epoch: 3)
    static let m2 = leader(P.master2, epoch: 4)
    static let f1 = FrameworkID(value: "f1")
    static let f2 = FrameworkID(value: "f2")

    init(id: AgentID? = nil, epochFloor: UInt64 = 0) {
        var settings = AgentSettings()
        settings.statusUpdateRetryInterval = .seconds(1)
        settings.registrationBackoffFactor = .seconds(1)
        settings.maxRegistrationBackoff = .seconds(8)
        core = AgentCore(info: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 2)], id: id), pid: P.agent, epochFloor: epochFloor, seed: 42, settings: settings)
    }

    mutating func feed(_ event: AgentCore.Event) {
        for effect in core.handle(event) {
            switch effect {
            case .send(let p, let to, let epoch): sent.append((p, to, epoch))
            case .launch(let key, _): launched.append(key)
            case .kill(let key): killed.append(key)
            case .persist(let id, let floor): persisted.append((id, floor))
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

    mutating func run(_ task: String, of framework: FrameworkID = f1, on leader: Leader) {
        let info = TaskInfo(name: task, taskID: TaskID(value: task), agentID: AgentID(value: "S1"), command: CommandInfo(value: "sleep 10"))
        fromMaster(leader, .runTask(RunTaskMessage(frameworkID: framework, framework: FrameworkInfo(user: "u", name: "fw", id: framework), task: info, pid: P.scheduler.description)))
    }

    func updates(_ sent: [(Envelope.Payload, PID, UInt64)]) -> [StatusUpdate] { sent.compactMap { $0.0.statusUpdate?.update } }
}

func key(_ framework: FrameworkID, _ task: String) -> TaskKey { TaskKey(framework: framework, task: TaskID(value: task)) }

@Suite struct AgentCoreTests {
    @Test func masterlessAgentIgnoresMasterMessages() {
        var h = AgentHarness()
        h.run("t", on: AgentHarness.m1)
        h.fromMaster(AgentHarness.m1, .shutdown(ShutdownMessage()))
        #expect(h.launched.isEmpty && h.exited == nil && h.take().isEmpty)
        #expect(h.core.droppedMessages[.noLeader] == 2)
    }

    @Test func registersWithADoublingJitteredBackoffUntilAnswered() {
        var h = AgentHarness()
        h.feed(.leaderDetected(AgentHarness.m1))
        guard case .registerAgent? = h.registrationAttempt()?.0 else { Issue.record("no registration"); return }
        // Unanswered: retried; the bound of each wait doubles (1 s, 2 s, 4 s), capped at 8 s.
        var bounds: [Duration] = []
        for _ in 0..<5 {
            bounds.append(h.core.follower.backoff)
            guard h.registrationAttempt() != nil else { Issue.record("no retry"); return }
        }
        #expect(bounds == [.seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
        h.fromMaster(AgentHarness.m1, .agentRegistered(AgentRegisteredMessage(agentID: AgentID(value: "S1"))))
        #expect(h.core.isRegistered && h.core.agentID?.value == "S1")
        #expect(h.persisted.last?.0?.value == "S1")
        #expect(h.observed.contains(.registered(AgentID(value: "S1"), AgentHarness.m1)))
        #expect(h.registrationAttempt() == nil, "no more attempts once registered")
    }

    @Test func rejectsStaleLeadersAndImpostors() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m2)
        _ = h.take()
        h.fromMaster(AgentHarness.m1, .ping(PingAgentMessage(connected: true)))  // deposed leader, epoch 3
        h.fromMaster(leader(P.stranger, epoch: 4), .ping(PingAgentMessage(connected: true)))
        h.fromMaster(AgentHarness.m2, .ping(PingAgentMessage(connected: true)), epoch: 5)
        #expect(h.take().isEmpty)
        #expect(h.core.droppedMessages == [.staleEpoch: 1, .notFromLeader: 1, .unconfirmedEpoch: 1])
        h.fromMaster(AgentHarness.m2, .ping(PingAgentMessage(connected: true)))
        #expect(h.take().map { "\($0.0)" } == ["\(Envelope.Payload.pong(PongAgentMessage()))"])
    }

    @Test func neverFollowsALeaderOlderThanOneSeen() {
        var h = AgentHarness(epochFloor: 4)
        h.feed(.leaderDetected(AgentHarness.m1))
        #expect(h.core.leader == nil && h.observed == [.leaderBelowFloor(AgentHarness.m1, floor: 4)])
        h.feed(.leaderDetected(AgentHarness.m2))
        h.feed(.leaderDetected(AgentHarness.m1))
        #expect(h.core.leader == AgentHarness.m2)
    }

    @Test func statusUpdatesAreRetriedAcrossFailoverUntilAcknowledged() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.run("t1", on: AgentHarness.m1)
        #expect(h.launched == [key(AgentHarness.f1, "t1")])
        h.feed(.taskStarted(key(AgentHarness.f1, "t1")))
        guard let first = h.updates(h.take()).last else { Issue.record("no update"); return }
        #expect(first.status.state == .running && first.uuid.count == 16)
        // Not acknowledged: sent again.
        h.tick(.seconds(1))
        #expect(h.updates(h.take()).map(\.uuid) == [first.uuid])
        // Failover: master-less (nothing sent), then a new leader; re-registration carries the task.
        h.feed(.leaderDetected(nil))
        h.tick(.seconds(5))
        #expect(h.take().isEmpty)
        h.feed(.leaderDetected(AgentHarness.m2))
        guard case .reregisterAgent(let re)? = h.registrationAttempt()?.0 else { Issue.record("no re-registration"); return }
        #expect(re.tasks.map(\.taskID.value) == ["t1"] && re.tasks.first?.state == .running && re.agent.id?.value == "S1")
        h.fromMaster(AgentHarness.m2, .agentReregistered(AgentReregisteredMessage(agentID: AgentID(value: "S1"))))
        let resent = h.take()
        #expect(resent.contains { $0.0.statusUpdate?.update.uuid == first.uuid && $0.2 == 4 })
        // Acknowledged: no more retries.
        h.fromMaster(AgentHarness.m2, .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: "S1"), frameworkID: AgentHarness.f1, taskID: TaskID(value: "t1"), uuid: first.uuid)))
        #expect(h.core.pendingUpdates == 0)
        h.tick(.seconds(30))
        #expect(h.updates(h.take()).isEmpty)
    }

    @Test func updatesOfOneTaskGoInOrder() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.run("t1", on: AgentHarness.m1)
        let t1 = key(AgentHarness.f1, "t1")
        h.feed(.taskStarted(t1))
        h.feed(.taskExited(t1, code: 0))
        let updates = h.updates(h.take())
        #expect(updates.map(\.status.state) == [.running])  // FINISHED waits for RUNNING's ack
        h.fromMaster(AgentHarness.m1, .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: "S1"), frameworkID: AgentHarness.f1, taskID: TaskID(value: "t1"), uuid: updates[0].uuid)))
        guard let fin = h.updates(h.take()).first else { Issue.record("no FINISHED"); return }
        #expect(fin.status.state == .finished)
        h.fromMaster(AgentHarness.m1, .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: "S1"), frameworkID: AgentHarness.f1, taskID: TaskID(value: "t1"), uuid: fin.uuid)))
        #expect(h.core.tasks.isEmpty)
    }

    /// Two frameworks, both with a task named `task-1`: both run; a kill and an acknowledgement
    /// reach only their own framework's task.
    @Test func tasksAreIdentifiedByFrameworkAndTask() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.run("task-1", of: AgentHarness.f1, on: AgentHarness.m1)
        h.run("task-1", of: AgentHarness.f2, on: AgentHarness.m1)
        #expect(h.launched == [key(AgentHarness.f1, "task-1"), key(AgentHarness.f2, "task-1")])
        h.fromMaster(AgentHarness.m1, .killTask(KillTaskMessage(frameworkID: AgentHarness.f2, taskID: TaskID(value: "task-1"))))
        #expect(h.killed == [key(AgentHarness.f2, "task-1")])
        h.feed(.taskStarted(key(AgentHarness.f1, "task-1")))
        h.feed(.taskExited(key(AgentHarness.f2, "task-1"), code: 143))
        let updates = h.updates(h.take())
        #expect(updates.map { "\($0.frameworkID.value):\($0.status.state.protoName)" } == ["f1:TASK_RUNNING", "f2:TASK_KILLED"])
        h.fromMaster(AgentHarness.m1, .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: "S1"), frameworkID: AgentHarness.f2, taskID: TaskID(value: "task-1"), uuid: updates[1].uuid)))
        #expect(h.core.tasks.keys.sorted() == [key(AgentHarness.f1, "task-1")])
        #expect(h.core.pendingUpdateKeys == [key(AgentHarness.f1, "task-1")])
    }

    @Test func killedTasksReportKilled() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.run("t1", on: AgentHarness.m1)
        h.fromMaster(AgentHarness.m1, .killTask(KillTaskMessage(frameworkID: AgentHarness.f1, taskID: TaskID(value: "t1"))))
        #expect(h.killed == [key(AgentHarness.f1, "t1")])
        h.feed(.taskExited(key(AgentHarness.f1, "t1"), code: 143))
        #expect(h.core.tasks[key(AgentHarness.f1, "t1")]?.state == .killed)
    }

    @Test func tasksTheMasterAsksAboutThatTheAgentLacksAreReportedLost() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.run("known", on: AgentHarness.m1)
        _ = h.take()
        h.feed(.leaderDetected(AgentHarness.m2))
        _ = h.registrationAttempt()
        let ask = ReconcileTasksMessage(frameworkID: AgentHarness.f1, statuses: [
            TaskStatus(taskID: TaskID(value: "known"), state: .staging), TaskStatus(taskID: TaskID(value: "gone"), state: .running),
        ])
        h.fromMaster(AgentHarness.m2, .agentReregistered(AgentReregisteredMessage(agentID: AgentID(value: "S1"), reconciliations: [ask])))
        let updates = h.updates(h.take())
        #expect(updates.map { "\($0.status.taskID.value):\($0.status.state.protoName)" } == ["gone:TASK_LOST"])
        #expect(updates.first?.status.reason == .reconciliation && updates.first?.uuid.isEmpty == false, "a reliable update, acknowledged like any other")
    }

    @Test func aKillOfATaskTheAgentDoesNotHaveIsAnsweredLost() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.fromMaster(AgentHarness.m1, .killTask(KillTaskMessage(frameworkID: AgentHarness.f1, taskID: TaskID(value: "nope"))))
        #expect(h.updates(h.take()).map(\.status.state) == [.lost])
    }

    @Test func invalidMasterMessagesAreRefusedAndNotActedOn() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        _ = h.take()
        let info = TaskInfo(name: "t", taskID: TaskID(value: "../etc"), agentID: AgentID(value: "S1"), resources: [Resource(name: "cpus", scalar: .nan)], command: CommandInfo(value: "true"))
        h.fromMaster(AgentHarness.m1, .runTask(RunTaskMessage(frameworkID: AgentHarness.f1, framework: FrameworkInfo(user: "u", name: "fw"), task: info, pid: P.scheduler.description)))
        #expect(h.launched.isEmpty)
        #expect(h.take().first?.0.refused?.kind == "run_task")
    }

    @Test func shutdownForgetsTheAgentIDAndStops() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.fromMaster(AgentHarness.m1, .shutdown(ShutdownMessage(message: "agent removed")))
        #expect(h.exited == .shutDownByMaster("agent removed"))
        #expect(h.persisted.last.map { $0.0 == nil } == true)
        h.fromMaster(AgentHarness.m1, .ping(PingAgentMessage(connected: true)))
        #expect(h.take().isEmpty)
    }

    /// What was sent on a broken link may be lost (or the master restarted on the same address):
    /// re-register at once, as Mesos agents do when their master's link exits.
    @Test func aBrokenLinkToTheLeaderMeansReregistering() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        _ = h.take()
        h.feed(.linkBroken(endpoint: P.stranger.endpoint))
        #expect(h.take().isEmpty, "another peer's link is not the leader's")
        h.feed(.linkBroken(endpoint: P.master.endpoint))
        #expect(h.take().contains { if case .reregisterAgent = $0.0 { $0.1 == P.master } else { false } })
        #expect(h.observed.contains(.linkToLeaderBroken(AgentHarness.m1)))
    }

    @Test func noPingsForTooLongMeansReregistering() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        _ = h.take()
        h.tick(.seconds(76))
        #expect(h.observed.contains(.masterPingsMissed(.seconds(75))))
        #expect(h.take().contains { if case .reregisterAgent = $0.0 { true } else { false } })
    }
}
