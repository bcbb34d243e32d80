import MesosHA
import MesosWire
import Testing
@testable import MesosAgent

struct AgentHarness {
    var core: AgentCore
    var sent: [(Envelope.Payload, String, UInt64)] = []
    var launched: [TaskID] = []
    var killed: [TaskID] = []
    var persisted: [(AgentID?, UInt64)] = []
    var shutdown: String?
    var now: Duration = .zero

    static let m1 = Leader(epoch: 3, pid: "master@10.0.0.1:5050")
    static let m2 = Leader(epoch: 4, pid: "master@10.0.0.2:5050")

    init(id: AgentID? = nil) {
        var config = AgentConfiguration()
        config.statusUpdateRetryInterval = .seconds(1)
        core = AgentCore(info: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 2)], id: id), pid: "slave(1)@10.0.0.9:5051", seed: 42, configuration: config)
    }

    mutating func feed(_ event: AgentCore.Event) {
        for effect in core.handle(event) {
            switch effect {
            case .send(let p, let to, let epoch): sent.append((p, to, epoch))
            case .launch(let t, _): launched.append(t.taskID)
            case .kill(let id): killed.append(id)
            case .persist(let id, let floor): persisted.append((id, floor))
            case .shutdown(let reason): shutdown = reason
            case .log: break
            }
        }
    }

    mutating func tick(_ by: Duration) {
        now += by
        feed(.tick(now: now))
    }

    mutating func take() -> [(Envelope.Payload, String, UInt64)] {
        defer { sent = [] }
        return sent
    }

    mutating func fromMaster(_ leader: Leader, _ payload: Envelope.Payload, epoch: UInt64? = nil) {
        feed(.message(Envelope(epoch: epoch ?? leader.epoch, from: leader.pid, payload: payload)))
    }

    /// Ticks until a registration goes out (backoff is random but bounded).
    mutating func registrationAttempt() -> Envelope.Payload? {
        for _ in 0..<200 {
            tick(.milliseconds(50))
            if let p = take().first(where: { if case .registerAgent = $0.0 { true } else if case .reregisterAgent = $0.0 { true } else { false } }) {
                return p.0
            }
        }
        return nil
    }

    mutating func register(with leader: Leader, as id: String = "S1") {
        feed(.leaderDetected(leader))
        _ = registrationAttempt()
        fromMaster(leader, .agentRegistered(AgentRegisteredMessage(agentID: AgentID(value: id))))
    }

    mutating func run(_ task: String, on leader: Leader) {
        let info = TaskInfo(name: task, taskID: TaskID(value: task), agentID: AgentID(value: "S1"), command: CommandInfo(value: "sleep 10"))
        fromMaster(leader, .runTask(RunTaskMessage(frameworkID: FrameworkID(value: "f1"), framework: FrameworkInfo(user: "u", name: "fw", id: FrameworkID(value: "f1")), task: info, pid: "sched@h:1")))
    }
}

@Suite struct AgentCoreTests {
    @Test func masterlessAgentIgnoresMasterMessages() {
        var h = AgentHarness()
        h.fromMaster(AgentHarness.m1, .runTask(RunTaskMessage(frameworkID: FrameworkID(value: "f"), framework: FrameworkInfo(user: "u", name: "n"), task: TaskInfo(name: "t", taskID: TaskID(value: "t"), agentID: AgentID(value: "a")), pid: "s@h:1")))
        h.fromMaster(AgentHarness.m1, .shutdown(ShutdownMessage()))
        #expect(h.launched.isEmpty && h.shutdown == nil && h.take().isEmpty)
        #expect(h.core.droppedMessages[.noLeader] == 2)
    }

    @Test func registersWithJitteredBackoffUntilAnswered() {
        var h = AgentHarness()
        h.feed(.leaderDetected(AgentHarness.m1))
        guard case .registerAgent? = h.registrationAttempt() else { Issue.record("no registration"); return }
        // Unanswered: retried, later and later.
        guard case .registerAgent? = h.registrationAttempt() else { Issue.record("no retry"); return }
        h.fromMaster(AgentHarness.m1, .agentRegistered(AgentRegisteredMessage(agentID: AgentID(value: "S1"))))
        #expect(h.core.registered && h.core.agentID?.value == "S1")
        #expect(h.persisted.last?.0?.value == "S1")
        for _ in 0..<100 { h.tick(.milliseconds(100)) }
        #expect(!h.take().contains { if case .registerAgent = $0.0 { true } else { false } })
    }

    @Test func rejectsStaleLeadersAndImpostors() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m2)
        _ = h.take()
        h.fromMaster(AgentHarness.m1, .ping(PingAgentMessage(connected: true)))  // deposed leader, epoch 3
        h.fromMaster(Leader(epoch: 4, pid: "master@evil:1"), .ping(PingAgentMessage(connected: true)))
        h.fromMaster(AgentHarness.m2, .ping(PingAgentMessage(connected: true)), epoch: 5)
        #expect(h.take().isEmpty)
        #expect(h.core.droppedMessages == [.staleEpoch: 1, .notFromLeader: 1, .unconfirmedEpoch: 1])
        h.fromMaster(AgentHarness.m2, .ping(PingAgentMessage(connected: true)))
        #expect(h.take().first.map { "\($0.0)" } == "\(Envelope.Payload.pong(PongAgentMessage()))")
    }

    @Test func neverFollowsALeaderOlderThanOneSeen() {
        var h = AgentHarness()
        h.feed(.leaderDetected(AgentHarness.m2))
        h.feed(.leaderDetected(AgentHarness.m1))
        #expect(h.core.leader == AgentHarness.m2)
    }

    @Test func statusUpdatesAreRetriedAcrossFailoverUntilAcknowledged() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.run("t1", on: AgentHarness.m1)
        #expect(h.launched == [TaskID(value: "t1")])
        h.feed(.taskStarted(TaskID(value: "t1")))
        guard case .statusUpdate(let first)? = h.take().last?.0 else { Issue.record("no update"); return }
        #expect(first.update.status.state == .running && first.update.uuid.count == 16)
        // Not acknowledged: sent again.
        h.tick(.seconds(1))
        #expect(h.take().contains { if case .statusUpdate(let m) = $0.0 { m.update.uuid == first.update.uuid } else { false } })
        // Failover: master-less (nothing sent), then a new leader; re-registration carries the task.
        h.feed(.leaderDetected(nil))
        h.tick(.seconds(5))
        #expect(h.take().isEmpty)
        h.feed(.leaderDetected(AgentHarness.m2))
        guard case .reregisterAgent(let re)? = h.registrationAttempt() else { Issue.record("no re-registration"); return }
        #expect(re.tasks.map(\.taskID.value) == ["t1"] && re.tasks.first?.state == .running && re.agent.id?.value == "S1")
        h.fromMaster(AgentHarness.m2, .agentReregistered(AgentReregisteredMessage(agentID: AgentID(value: "S1"))))
        let resent = h.take()
        #expect(resent.contains { if case .statusUpdate(let m) = $0.0 { m.update.uuid == first.update.uuid && $0.2 == 4 } else { false } })
        // Acknowledged: no more retries.
        h.fromMaster(AgentHarness.m2, .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: "S1"), frameworkID: FrameworkID(value: "f1"), taskID: TaskID(value: "t1"), uuid: first.update.uuid)))
        #expect(h.core.pendingUpdates == 0)
        h.tick(.seconds(30))
        #expect(!h.take().contains { if case .statusUpdate = $0.0 { true } else { false } })
    }

    @Test func updatesOfOneTaskGoInOrder() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.run("t1", on: AgentHarness.m1)
        h.feed(.taskStarted(TaskID(value: "t1")))
        h.feed(.taskExited(TaskID(value: "t1"), code: 0))
        let updates = h.take().compactMap { if case .statusUpdate(let m) = $0.0 { m.update } else { nil } }
        #expect(updates.map(\.status.state) == [.running])  // FINISHED waits for RUNNING's ack
        h.fromMaster(AgentHarness.m1, .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: "S1"), frameworkID: FrameworkID(value: "f1"), taskID: TaskID(value: "t1"), uuid: updates[0].uuid)))
        guard case .statusUpdate(let fin)? = h.take().first?.0 else { Issue.record("no FINISHED"); return }
        #expect(fin.update.status.state == .finished)
        h.fromMaster(AgentHarness.m1, .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: "S1"), frameworkID: FrameworkID(value: "f1"), taskID: TaskID(value: "t1"), uuid: fin.update.uuid)))
        #expect(h.core.tasks.isEmpty)
    }

    @Test func killedTasksReportKilled() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.run("t1", on: AgentHarness.m1)
        h.fromMaster(AgentHarness.m1, .killTask(KillTaskMessage(frameworkID: FrameworkID(value: "f1"), taskID: TaskID(value: "t1"))))
        #expect(h.killed == [TaskID(value: "t1")])
        h.feed(.taskExited(TaskID(value: "t1"), code: 143))
        #expect(h.core.tasks[TaskID(value: "t1")]?.state == .killed)
    }

    @Test func shutdownForgetsTheAgentIDAndStops() {
        var h = AgentHarness()
        h.register(with: AgentHarness.m1)
        h.fromMaster(AgentHarness.m1, .shutdown(ShutdownMessage(message: "agent removed")))
        #expect(h.shutdown == "agent removed")
        #expect(h.persisted.last.map { $0.0 == nil } == true)
        h.fromMaster(AgentHarness.m1, .ping(PingAgentMessage(connected: true)))
        #expect(h.take().isEmpty)
    }
}
