import MesosHA
import MesosWire
import Testing
@testable import MesosScheduler

struct SchedulerHarness {
    var core = SchedulerCore(framework: FrameworkInfo(user: "u", name: "fw"), backoffFactor: .milliseconds(200), seed: 7)
    var sent: [(Envelope.Payload, String, UInt64)] = []
    var events: [SchedulerEvent] = []
    var now: Duration = .zero
    static let m1 = Leader(epoch: 3, pid: "master@h:1", info: MasterInfo(id: "m1", ip: 1, port: 1, pid: "master@h:1"))
    static let m2 = Leader(epoch: 5, pid: "master@h:2", info: MasterInfo(id: "m2", ip: 1, port: 2, pid: "master@h:2"))

    mutating func feed(_ e: SchedulerCore.Event) {
        for effect in core.handle(e) {
            switch effect {
            case .send(let p, let to, let epoch): sent.append((p, to, epoch))
            case .event(let ev): events.append(ev)
            case .log, .stopped: break
            }
        }
    }
    mutating func tickUntilSent() -> (Envelope.Payload, String, UInt64)? {
        for _ in 0..<100 {
            now += .milliseconds(20)
            feed(.tick(now: now))
            if let s = sent.popLast() { return s }
        }
        return nil
    }
    mutating func from(_ l: Leader, _ p: Envelope.Payload, epoch: UInt64? = nil) {
        feed(.message(Envelope(epoch: epoch ?? l.epoch, from: l.pid, payload: p)))
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
        #expect(to == "master@h:2" && epoch == 5 && m.framework.id?.value == "f1" && m.failover == false)
    }

    @Test func dropsMessagesFromDeposedLeaders() {
        var h = SchedulerHarness()
        h.feed(.leaderDetected(SchedulerHarness.m2))
        h.from(SchedulerHarness.m1, .frameworkRegistered(FrameworkRegisteredMessage(frameworkID: FrameworkID(value: "f1"), masterInfo: SchedulerHarness.m1.info!)))
        #expect(h.events.isEmpty && h.core.droppedMessages[.staleEpoch] == 1)
    }

    @Test func acknowledgesUpdatesWithAUUIDOnly() {
        var h = SchedulerHarness()
        h.feed(.leaderDetected(SchedulerHarness.m1))
        _ = h.tickUntilSent()
        h.from(SchedulerHarness.m1, .frameworkRegistered(FrameworkRegisteredMessage(frameworkID: FrameworkID(value: "f1"), masterInfo: SchedulerHarness.m1.info!)))
        let status = TaskStatus(taskID: TaskID(value: "t"), state: .running, agentID: AgentID(value: "a"), uuid: [9])
        h.from(SchedulerHarness.m1, .statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: FrameworkID(value: "f1"), status: status, timestamp: 1, uuid: [9]))))
        guard case .statusUpdateAck(let ack)? = h.sent.last?.0 else { Issue.record("no ack"); return }
        #expect(ack.uuid == [9] && ack.agentID.value == "a")
        h.sent = []
        h.from(SchedulerHarness.m1, .statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: FrameworkID(value: "f1"), status: status, timestamp: 1, uuid: []))))
        #expect(h.sent.isEmpty)
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
        h.from(SchedulerHarness.m1, .frameworkError(FrameworkErrorMessage(message: "no")))
        #expect(h.events == [.error("no")])
        h.feed(.leaderDetected(SchedulerHarness.m2))
        #expect(h.tickUntilSent() == nil)
    }
}
