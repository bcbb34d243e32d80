import MesosHA
import MesosWire
import Testing
@testable import MesosMaster

/// Drives the master core with events only: no sockets, no ZooKeeper, no clock.
struct MasterHarness {
    var core: MasterCore
    var registry: Registry?
    var sent: [(Envelope.Payload, String)] = []
    var exited: String?
    var registryWrites = 0
    var now: Duration = .zero
    let epoch: UInt64

    static let masterPID = "master@127.0.0.1:5050"
    static let agentPID = "slave(1)@127.0.0.1:5051"
    static let schedulerPID = "scheduler-1@127.0.0.1:6000"

    init(epoch: UInt64 = 5, registry: Registry? = nil, configuration: MasterConfiguration = MasterConfiguration()) {
        var info = MasterInfo(id: "m1", ip: 16_777_343, port: 5050)
        info.pid = Self.masterPID
        core = MasterCore(info: info, configuration: configuration)
        self.registry = registry
        self.epoch = epoch
    }

    mutating func feed(_ event: MasterCore.Event) {
        var queue = [event]
        while !queue.isEmpty {
            for effect in core.handle(queue.removeFirst()) {
                switch effect {
                case .send(let payload, let to): sent.append((payload, to))
                case .loadRegistry: queue.append(.registryLoaded(registry))
                case .storeRegistry(let r, let token):
                    registry = r
                    registryWrites += 1
                    queue.append(.registryStored(token: token))
                case .exit(_, let reason): exited = reason
                case .log: break
                }
            }
        }
    }

    mutating func lead() {
        feed(.elected(epoch: epoch))
        feed(.leaderDetected(Leader(epoch: epoch, pid: Self.masterPID)))
    }

    mutating func message(_ payload: Envelope.Payload, from: String, epoch: UInt64? = nil) {
        feed(.message(Envelope(epoch: epoch ?? self.epoch, from: from, payload: payload)))
    }

    mutating func tick(_ by: Duration) {
        now += by
        feed(.tick(now: now))
    }

    /// Answers every ping sent so far, as a healthy agent would.
    mutating func answerPings() {
        let pinged = sent.filter { if case .ping = $0.0 { true } else { false } }.map(\.1)
        for pid in pinged { message(.pong(PongAgentMessage()), from: pid) }
    }

    mutating func take() -> [(Envelope.Payload, String)] {
        defer { sent = [] }
        return sent
    }

    mutating func registerAgent(_ pid: String = agentPID, cpus: Double = 4) -> AgentID {
        message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: cpus), Resource(name: "mem", scalar: 1024)]))), from: pid)
        answerPings()
        guard case .agentRegistered(let m)? = take().first(where: { $0.1 == pid })?.0 else { fatalError("agent not registered") }
        return m.agentID
    }

    mutating func registerFramework(_ pid: String = schedulerPID) -> FrameworkID {
        message(.registerFramework(RegisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw"))), from: pid)
        guard case .frameworkRegistered(let m)? = take().first?.0 else { fatalError("framework not registered") }
        return m.frameworkID
    }
}

extension MasterConfiguration {
    /// Pings every second; removal after `maxTimeouts` unanswered ones.
    static func pingingEverySecond(maxTimeouts: Int) -> MasterConfiguration {
        var config = MasterConfiguration()
        config.agentPingTimeout = .seconds(1)
        config.maxAgentPingTimeouts = maxTimeouts
        return config
    }
}

@Suite struct MasterLeadershipTests {
    @Test func standbyAnswersEverythingWithAHintToTheLeader() {
        var h = MasterHarness()
        let other = Leader(epoch: 3, pid: "master@10.0.0.9:5050", info: MasterInfo(id: "m0", ip: 1, port: 5050, pid: "master@10.0.0.9:5050"))
        h.feed(.leaderDetected(other))
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h"))), from: MasterHarness.agentPID, epoch: 3)
        let sent = h.take()
        #expect(sent.count == 1 && sent[0].1 == MasterHarness.agentPID)
        guard case .leaderHint(let hint) = sent[0].0 else { Issue.record("not a hint"); return }
        #expect(hint.leaderEpoch == 3 && hint.leader?.pid == "master@10.0.0.9:5050")
        #expect(h.core.phase == .standby)
    }

    @Test func leadsOnlyWhenElectedAndDetectingItself() {
        var h = MasterHarness()
        h.feed(.elected(epoch: 5))
        #expect(h.core.phase == .standby)
        h.feed(.leaderDetected(Leader(epoch: 4, pid: "master@other:1")))
        #expect(h.core.phase == .standby)
        h.feed(.leaderDetected(Leader(epoch: 5, pid: MasterHarness.masterPID)))
        #expect(h.core.phase == .leading(epoch: 5))
        #expect(h.registry?.highestEpoch == 5)
    }

    @Test func refusesToLeadAtAnEpochAlreadyLed() {
        var h = MasterHarness(epoch: 5, registry: Registry(highestEpoch: 9))
        h.lead()
        #expect(h.core.phase == .exited)
        #expect(h.exited?.contains("epoch 9 was already led") == true)
    }

    @Test func commitsSuicideWhenAnotherLeaderOrNoLeaderIsDetected() {
        var a = MasterHarness()
        a.lead()
        a.feed(.leaderDetected(Leader(epoch: 6, pid: "master@other:1")))
        #expect(a.core.phase == .exited && a.exited?.contains("lost leadership") == true)

        var b = MasterHarness()
        b.lead()
        b.feed(.leaderDetected(nil))
        #expect(b.core.phase == .exited)

        var c = MasterHarness()
        c.lead()
        c.feed(.candidacyLost(reason: "ZooKeeper session expired"))
        #expect(c.exited == "lost leadership: ZooKeeper session expired")
    }

    @Test func leaderHintsMessagesForAnotherEpoch() {
        var h = MasterHarness()
        h.lead()
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h"))), from: MasterHarness.agentPID, epoch: 4)
        guard case .leaderHint(let hint)? = h.take().first?.0 else { Issue.record("no hint"); return }
        #expect(hint.leaderEpoch == 5 && hint.leader?.pid == MasterHarness.masterPID)
    }
}

@Suite struct MasterAgentTests {
    @Test func registrationIsWrittenToTheRegistryBeforeTheReply() {
        var h = MasterHarness()
        h.lead()
        let id = h.registerAgent()
        #expect(h.registry?.admitted.map(\.info.id) == [id])
        #expect(h.core.activeAgentIDs == [id])
    }

    @Test func failoverRebuildsTasksFromReregisteringAgents() {
        let admitted = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 4)], id: AgentID(value: "old-S1"), pid: MasterHarness.agentPID)
        var h = MasterHarness(registry: Registry(admitted: [Registry.Agent(info: admitted)], highestEpoch: 4))
        h.lead()
        let task = MesosTask(name: "t", taskID: TaskID(value: "t1"), frameworkID: FrameworkID(value: "f1"), agentID: AgentID(value: "old-S1"), state: .running, resources: [Resource(name: "cpus", scalar: 1)])
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: admitted, tasks: [task], frameworks: [FrameworkInfo(user: "u", name: "fw", id: FrameworkID(value: "f1"))])), from: MasterHarness.agentPID)
        let sent = h.take()
        #expect(sent.contains { if case .agentReregistered(let m) = $0.0 { m.agentID.value == "old-S1" } else { false } })
        #expect(h.core.knownTasks.map(\.taskID.value) == ["t1"])
        #expect(h.registryWrites == 1, "only the epoch is written: the agent is in the registry as it is")
        // The framework re-registers and can kill the task it still has.
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: FrameworkID(value: "f1")), failover: false)), from: MasterHarness.schedulerPID)
        _ = h.take()
        h.message(.killTask(KillTaskMessage(frameworkID: FrameworkID(value: "f1"), taskID: TaskID(value: "t1"))), from: MasterHarness.schedulerPID)
        #expect(h.take().first?.1 == MasterHarness.agentPID)
    }

    @Test func agentMissingPingsIsRemovedAfterTheConfiguredCount() {
        var h = MasterHarness(configuration: .pingingEverySecond(maxTimeouts: 3))
        h.lead()
        let agent = h.registerAgent()
        h.answerPings()
        for _ in 0..<5 {  // healthy for a while
            h.tick(.seconds(1))
            h.answerPings()
        }
        #expect(h.core.activeAgentIDs == [agent])
        h.tick(.seconds(1))  // ping 1 sent, never answered
        h.tick(.seconds(1))  // ping 1 timed out
        h.tick(.seconds(1))  // ping 2 timed out
        #expect(h.core.activeAgentIDs == [agent])
        h.tick(.seconds(1))  // ping 3 timed out: removed
        #expect(h.core.activeAgentIDs == [])
        #expect(h.registry?.removed == [agent])
        #expect(h.registry?.admitted.isEmpty == true)
    }

    @Test func removedAgentGetsShutdownForAnyMessageAndCannotReregister() {
        var h = MasterHarness(configuration: .pingingEverySecond(maxTimeouts: 1))
        h.lead()
        _ = h.registerFramework()
        let agent = h.registerAgent()
        h.tick(.seconds(1))  // ping (and an offer)
        h.tick(.seconds(1))  // no pong: removed
        let removal = h.take()
        #expect(removal.contains { if case .shutdown = $0.0 { $0.1 == MasterHarness.agentPID } else { false } })
        #expect(removal.contains { if case .lostAgent(let m) = $0.0 { m.agentID == agent && $0.1 == MasterHarness.schedulerPID } else { false } })
        h.message(.pong(PongAgentMessage()), from: MasterHarness.agentPID)
        guard case .shutdown? = h.take().first?.0 else { Issue.record("no shutdown for a late pong"); return }
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: AgentInfo(hostname: "h", id: agent))), from: "slave(1)@127.0.0.1:7777")
        guard case .shutdown? = h.take().first?.0 else { Issue.record("removed agent re-registered"); return }
        #expect(h.core.activeAgentIDs == [])
    }

    @Test func lostTasksAreReportedToTheirFramework() {
        var h = MasterHarness(configuration: .pingingEverySecond(maxTimeouts: 1))
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent()
        h.answerPings()
        h.tick(.seconds(1))
        h.answerPings()
        guard case .resourceOffers(let offers)? = h.take().first(where: { if case .resourceOffers = $0.0 { true } else { false } })?.0 else {
            Issue.record("no offer"); return
        }
        let task = TaskInfo(name: "t", taskID: TaskID(value: "t1"), agentID: agent, resources: [Resource(name: "cpus", scalar: 1)])
        h.message(.launchTasks(LaunchTasksMessage(frameworkID: fw, tasks: [task], offerIDs: [offers.offers[0].id])), from: MasterHarness.schedulerPID)
        _ = h.take()
        h.tick(.seconds(1))  // a ping the agent never answers
        h.tick(.seconds(1))  // its timeout: removed
        let lost = h.take().compactMap { sent -> TaskStatus? in
            if case .statusUpdate(let m) = sent.0, sent.1 == MasterHarness.schedulerPID { m.update.status } else { nil }
        }
        #expect(lost.map(\.state) == [.lost] && lost.first?.reason == .agentRemoved && lost.first?.source == .master)
    }
}

@Suite struct MasterOfferTests {
    @Test func offersLaunchAndStatusUpdatesWithAcknowledgement() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent(cpus: 2)
        h.tick(.seconds(1))
        guard case .resourceOffers(let offers)? = h.take().first(where: { if case .resourceOffers = $0.0 { true } else { false } })?.0 else {
            Issue.record("no offer"); return
        }
        #expect(Resources(offers.offers[0].resources) == Resources([Resource(name: "cpus", scalar: 2), Resource(name: "mem", scalar: 1024)]))
        let task = TaskInfo(name: "t", taskID: TaskID(value: "t1"), agentID: agent, resources: [Resource(name: "cpus", scalar: 1)])
        h.message(.launchTasks(LaunchTasksMessage(frameworkID: fw, tasks: [task], offerIDs: [offers.offers[0].id])), from: MasterHarness.schedulerPID)
        _ = h.take()
        // The rest is offered again on the next allocation.
        h.tick(.seconds(1))
        guard case .resourceOffers(let again)? = h.take().first(where: { if case .resourceOffers = $0.0 { true } else { false } })?.0 else {
            Issue.record("no second offer"); return
        }
        #expect(Resources(again.offers[0].resources).amounts["cpus"] == 1)
        // A status update goes to the framework; its acknowledgement goes back to the agent.
        let status = TaskStatus(taskID: TaskID(value: "t1"), state: .running, agentID: agent, uuid: [1, 2])
        h.message(.statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: fw, status: status, timestamp: 1, uuid: [1, 2], agentID: agent))), from: MasterHarness.agentPID)
        #expect(h.take().first?.1 == MasterHarness.schedulerPID)
        h.message(.statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: agent, frameworkID: fw, taskID: TaskID(value: "t1"), uuid: [1, 2])), from: MasterHarness.schedulerPID)
        #expect(h.take().first?.1 == MasterHarness.agentPID)
        #expect(h.core.knownTasks.first?.state == .running)
    }

    @Test func staleOffersGiveLostUpdatesAndDeclinedAgentsAreFiltered() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent()
        let task = TaskInfo(name: "t", taskID: TaskID(value: "t1"), agentID: agent, resources: [])
        h.message(.launchTasks(LaunchTasksMessage(frameworkID: fw, tasks: [task], offerIDs: [OfferID(value: "nope")])), from: MasterHarness.schedulerPID)
        guard case .statusUpdate(let m)? = h.take().first?.0 else { Issue.record("no update"); return }
        #expect(m.update.status.state == .lost && m.update.status.reason == .invalidOffers && m.update.uuid.isEmpty)

        h.tick(.seconds(1))
        guard case .resourceOffers(let offers)? = h.take().first?.0 else { Issue.record("no offer"); return }
        h.message(.declineOffers(DeclineOffersMessage(frameworkID: fw, offerIDs: [offers.offers[0].id], filters: Filters(refuseSeconds: 10))), from: MasterHarness.schedulerPID)
        h.tick(.seconds(1))
        #expect(h.take().isEmpty)
        h.tick(.seconds(10))
        #expect(!h.take().isEmpty)
    }

    @Test func reconciliationAnswersFromTheTaskTable() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        h.message(.reconcileTasks(ReconcileTasksMessage(frameworkID: fw, statuses: [TaskStatus(taskID: TaskID(value: "ghost"), state: .running)])), from: MasterHarness.schedulerPID)
        guard case .statusUpdate(let m)? = h.take().first?.0 else { Issue.record("no answer"); return }
        #expect(m.update.status.state == .lost && m.update.status.reason == .reconciliation)
    }
}

@Suite struct MasterInputValidationTests {
    @Test func agentsWithNonFiniteOrNegativeResourcesAreRefused() {
        var h = MasterHarness()
        h.lead()
        for bad in [Double.nan, -1, .infinity] {
            h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: bad)]))), from: MasterHarness.agentPID)
            #expect(h.take().isEmpty)
        }
        #expect(h.core.activeAgentIDs.isEmpty && h.registry?.admitted.isEmpty == true)
    }

    @Test func tasksAskingForNaNResourcesAreRefused() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent()
        h.tick(.seconds(1))
        guard case .resourceOffers(let offers)? = h.take().first(where: { if case .resourceOffers = $0.0 { true } else { false } })?.0 else {
            Issue.record("no offer"); return
        }
        let task = TaskInfo(name: "t", taskID: TaskID(value: "t1"), agentID: agent, resources: [Resource(name: "cpus", scalar: .nan)])
        h.message(.launchTasks(LaunchTasksMessage(frameworkID: fw, tasks: [task], offerIDs: [offers.offers[0].id])), from: MasterHarness.schedulerPID)
        guard case .statusUpdate(let m)? = h.take().first?.0 else { Issue.record("no update"); return }
        #expect(m.update.status.state == .error)
        #expect(h.core.knownTasks.isEmpty)
    }
}

@Suite struct MasterFrameworkLinkTests {
    @Test func aBrokenLinkRescindsOffersButKeepsTheFramework() {
        var h = MasterHarness()
        h.lead()
        _ = h.registerFramework()
        _ = h.registerAgent()
        h.tick(.seconds(1))
        #expect(h.core.outstandingOffers.count == 1)
        for _ in 0..<5 {
            h.feed(.linkBroken(peer: "127.0.0.1:6000"))
            #expect(h.core.outstandingOffers.isEmpty, "offers that may be lost go back to the pool")
            _ = h.take()
            h.tick(.seconds(1))
            #expect(h.take().contains { if case .resourceOffers = $0.0 { true } else { false } }, "offered again")
        }
    }
}
