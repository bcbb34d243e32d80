import MesosCore
import MesosWire
import Testing

struct SchedulerHarness {
    var core: SchedulerCore
    var sent: [(Envelope.Payload, PID, UInt64)] = []
    var events: [SchedulerEvent] = []
    var stopped = false
    var now: Duration = .zero
    static let m1 = leader(P.master, epoch: 3)
    static let m2 = leader(P.master2, epoch: 5)

    init(id: FrameworkID? = nil, implicitAcknowledgements: Bool = true) {
        var settings = SchedulerSettings()
        settings.registrationBackoffFactor = .milliseconds(200)
        settings.implicitAcknowledgements = implicitAcknowledgements
        core = SchedulerCore(framework: FrameworkInfo(user: "u", name: "fw", id: id), settings: settings, seed: 7)
    }

    mutating func feed(_ e: SchedulerCore.Event) {
        for effect in core.handle(e) {
            switch effect {
            case .send(let p, let to, let epoch): sent.append((p, to, epoch))
            case .event(let ev): events.append(ev)
            case .observe: break
            case .stopped: stopped = true
            }
        }
    }

    mutating func tickUntilSent() -> (Envelope.Payload, PID, UInt64)? {
        for _ in 0..<100 {
            now += .milliseconds(20)
            feed(.tick(now: now))
            if let s = sent.popLast() { return s }
        }
        return nil
    }

    mutating func from(_ l: Leader, _ p: Envelope.Payload, epoch: UInt64? = nil) {
        feed(.message(Inbound(envelope(p, from: l.pid, epoch: epoch ?? l.epoch))))
    }

    mutating func registered(with l: Leader = m1, id: String = "f1") {
        feed(.leaderDetected(l))
        _ = tickUntilSent()
        from(l, .frameworkRegistered(FrameworkRegisteredMessage(frameworkID: FrameworkID(value: id), masterInfo: l.info!)))
        sent = []
    }
}

@Suite struct SchedulerCoreTests {
    @Test func registersThenReregistersWithANewLeader() {
        var h = SchedulerHarness()
        h.feed(.leaderDetected(SchedulerHarness.m1))
        guard case .registerFramework? = h.tickUntilSent()?.0 else { Issue.record("no registration"); return }
        h.from(SchedulerHarness.m1, .frameworkRegistered(FrameworkRegisteredMessage(frameworkID: FrameworkID(value: "f1"), masterInfo: SchedulerHarness.m1.info!)))
        #expect(h.events == [.registered(FrameworkID(value: "f1"), SchedulerHarness.m1.info!)])
        h.feed(.leaderDetected(nil))
        #expect(h.events.last == .disconnected)
        h.feed(.leaderDetected(SchedulerHarness.m2))
        guard let (payload, to, epoch) = h.tickUntilSent(), case .reregisterFramework(let m) = payload else { Issue.record("no re-registration"); return }
        #expect(to == P.master2 && epoch == 5 && m.framework.id?.value == "f1" && m.failover == false)
        h.from(SchedulerHarness.m2, .frameworkReregistered(FrameworkReregisteredMessage(frameworkID: FrameworkID(value: "f1"), masterInfo: SchedulerHarness.m2.info!)))
        #expect(h.events.last == .reregistered(FrameworkID(value: "f1"), SchedulerHarness.m2.info!))
    }

    /// A new scheduler instance given an existing framework id fails over onto it.
    @Test func aNewInstanceWithAFrameworkIDFailsOver() {
        var h = SchedulerHarness(id: FrameworkID(value: "f1"))
        h.feed(.leaderDetected(SchedulerHarness.m1))
        guard case .reregisterFramework(let m)? = h.tickUntilSent()?.0 else { Issue.record("no re-registration"); return }
        #expect(m.failover == true)
        h.from(SchedulerHarness.m1, .frameworkReregistered(FrameworkReregisteredMessage(frameworkID: FrameworkID(value: "f1"), masterInfo: SchedulerHarness.m1.info!)))
        #expect(h.events == [.registered(FrameworkID(value: "f1"), SchedulerHarness.m1.info!)], "a failover is `registered`, as in Mesos")
    }

    @Test func dropsMessagesFromDeposedLeaders() {
        var h = SchedulerHarness()
        h.feed(.leaderDetected(SchedulerHarness.m2))
        h.from(SchedulerHarness.m1, .frameworkRegistered(FrameworkRegisteredMessage(frameworkID: FrameworkID(value: "f1"), masterInfo: SchedulerHarness.m1.info!)))
        #expect(h.events.isEmpty && h.core.droppedMessages[.staleEpoch] == 1)
    }

    @Test func acknowledgesUpdatesWithAUUIDOnly() {
        var h = SchedulerHarness()
        h.registered()
        let status = TaskStatus(taskID: TaskID(value: "t"), state: .running, agentID: AgentID(value: "a"), uuid: [9])
        h.from(SchedulerHarness.m1, .statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: FrameworkID(value: "f1"), status: status, timestamp: 1, uuid: [9]))))
        guard case .statusUpdateAck(let ack)? = h.sent.last?.0 else { Issue.record("no ack"); return }
        #expect(ack.uuid == [9] && ack.agentID.value == "a")
        h.sent = []
        h.from(SchedulerHarness.m1, .statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: FrameworkID(value: "f1"), status: status, timestamp: 1, uuid: []))))
        #expect(h.sent.isEmpty)
    }

    @Test func explicitAcknowledgementsAreSentOnlyWhenAsked() {
        var h = SchedulerHarness(implicitAcknowledgements: false)
        h.registered()
        let status = TaskStatus(taskID: TaskID(value: "t"), state: .running, agentID: AgentID(value: "a"), uuid: [9])
        h.from(SchedulerHarness.m1, .statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: FrameworkID(value: "f1"), status: status, timestamp: 1, uuid: [9]))))
        #expect(h.sent.isEmpty)
        h.feed(.call(.acknowledge(status)))
        guard case .statusUpdateAck(let ack)? = h.sent.last?.0 else { Issue.record("no ack"); return }
        #expect(ack.uuid == [9])
    }

    @Test func launchWhileDisconnectedIsLost() {
        var h = SchedulerHarness()
        h.feed(.call(.launch(offers: [OfferID(value: "o")], tasks: [TaskInfo(name: "t", taskID: TaskID(value: "t"), agentID: AgentID(value: "a"))], filters: nil)))
        guard case .statusUpdate(let s)? = h.events.first else { Issue.record("no update"); return }
        #expect(s.state == .lost && h.sent.isEmpty)
    }

    @Test func frameworkErrorStopsTheDriver() {
        var h = SchedulerHarness()
        h.feed(.leaderDetected(SchedulerHarness.m1))
        h.from(SchedulerHarness.m1, .frameworkError(FrameworkErrorMessage(message: "Framework failed over")))
        #expect(h.events == [.error("Framework failed over")] && h.stopped)
        h.feed(.leaderDetected(SchedulerHarness.m2))
        #expect(h.tickUntilSent() == nil)
    }

    @Test func toldItIsDisconnectedItReregistersAtOnce() {
        var h = SchedulerHarness()
        h.registered()
        h.from(SchedulerHarness.m1, .frameworkDisconnected(FrameworkDisconnectedMessage(reason: "link broke")))
        #expect(h.events.last == .disconnected)
        guard case .reregisterFramework(let m)? = h.sent.last?.0 else { Issue.record("no re-registration"); return }
        #expect(m.failover == false && m.framework.id?.value == "f1")
    }

    @Test func aBrokenLinkToTheLeaderMeansReregistering() {
        var h = SchedulerHarness()
        h.registered()
        h.feed(.linkBroken(endpoint: P.master.endpoint))
        #expect(h.events.last == .disconnected)
        guard case .reregisterFramework(let m)? = h.sent.last?.0 else { Issue.record("no re-registration"); return }
        #expect(m.failover == false)
    }

    @Test func stopWithFailoverSendsNothingAndStopWithoutUnregisters() {
        var a = SchedulerHarness()
        a.registered()
        a.feed(.call(.stop(failover: true)))
        #expect(a.sent.isEmpty && a.stopped)

        var b = SchedulerHarness()
        b.registered()
        b.feed(.call(.stop(failover: false)))
        guard case .unregisterFramework(let m)? = b.sent.last?.0 else { Issue.record("no unregister"); return }
        #expect(m.frameworkID.value == "f1" && b.stopped)

        var c = SchedulerHarness()
        c.registered()
        c.feed(.call(.abort))
        guard case .deactivateFramework? = c.sent.last?.0 else { Issue.record("no deactivate"); return }
        #expect(c.stopped)
    }

    @Test func suppressAndReviveAreSent() {
        var h = SchedulerHarness()
        h.registered()
        h.feed(.call(.suppress))
        h.feed(.call(.revive))
        #expect(h.sent.map(\.0.kind) == ["suppress_offers", "revive_offers"])
    }
}

@Suite struct SchedulerExecutorMessageTests {
    @Test func frameworkMessagesAndExecutorExitsAreEventsAndMessagesToExecutorsGoToTheLeader() {
        var h = SchedulerHarness()
        h.registered()
        let f1 = FrameworkID(value: "f1"), a = AgentID(value: "S1"), e = ExecutorID(value: "t1")
        h.feed(.call(.sendFrameworkMessage(executor: e, agent: a, data: [7])))
        #expect(h.sent.count == 1 && h.sent.first?.1 == P.master)
        if case .frameworkToExecutor(let m)? = h.sent.first?.0 { #expect(m.frameworkID == f1 && m.executorID == e && m.data == [7]) } else { Issue.record("\(h.sent)") }
        h.from(SchedulerHarness.m1, .executorToFramework(ExecutorToFrameworkMessage(agentID: a, frameworkID: f1, executorID: e, data: [8])))
        h.from(SchedulerHarness.m1, .exitedExecutor(ExitedExecutorMessage(agentID: a, frameworkID: f1, executorID: e, status: 1)))
        // Another framework's: not ours.
        h.from(SchedulerHarness.m1, .exitedExecutor(ExitedExecutorMessage(agentID: a, frameworkID: FrameworkID(value: "f2"), executorID: e, status: 1)))
        #expect(h.events.suffix(2) == [.frameworkMessage(executor: e, agent: a, data: [8]), .executorLost(executor: e, agent: a, status: 1)])
        #expect(h.events.count == 3)
    }
}
