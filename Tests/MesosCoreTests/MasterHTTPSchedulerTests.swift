import MesosCore
import MesosWire
import Testing

/// v1 (HTTP) schedulers are frameworks like any other; only their connection differs: the
/// master's messages to them are `.event`s on their subscription's stream.
@Suite struct MasterHTTPSchedulerTests {
    static let info = FrameworkInfo(user: "u", name: "v1", failoverTimeout: 10)

    func events(_ h: MasterHarness, on stream: StreamID) -> [Envelope.Payload] { h.streamed.filter { $0.1 == stream }.map(\.0) }

    /// A subscribed v1 framework with a running task on an agent.
    func subscribedWithTask() -> (MasterHarness, FrameworkID, StreamID, AgentID) {
        var h = MasterHarness()
        h.lead()
        guard case .subscribed(let stream) = h.subscribe(Self.info),
            case .frameworkRegistered(let m)? = h.streamed.first?.0
        else {
            Issue.record("not subscribed")
            return (h, FrameworkID(value: "?"), StreamID(value: "?", epoch: 0), AgentID(value: "?"))
        }
        let agent = h.registerAgent()
        h.tick(h.core.settings.allocationInterval)
        h.answerPings()
        guard let offer = events(h, on: stream).compactMap({ $0.offers }).first?.offers.first else {
            Issue.record("no offer on the stream")
            return (h, m.frameworkID, stream, agent)
        }
        let task = TaskInfo(name: "t1", taskID: TaskID(value: "t1"), agentID: agent, resources: [Resource(name: "cpus", scalar: 1)], command: CommandInfo(value: "sleep 10"))
        #expect(h.call(.launchTasks(LaunchTasksMessage(frameworkID: m.frameworkID, tasks: [task], offerIDs: [offer.id])), framework: m.frameworkID, stream: stream.value) == .accepted)
        #expect(payloads(h.take(), to: P.agent) { if case .runTask(let r) = $0 { r.task.taskID } else { nil } } == [TaskID(value: "t1")])
        return (h, m.frameworkID, stream, agent)
    }

    @Test func subscribeOpensAStreamBoundToTheEpochAndSendsSubscribed() {
        var h = MasterHarness()
        h.lead()
        guard case .subscribed(let stream) = h.subscribe(Self.info) else { Issue.record("refused"); return }
        #expect(stream.epoch == h.epoch && stream.value.contains("e\(h.epoch)"))
        guard case .frameworkRegistered(let m)? = events(h, on: stream).first else { Issue.record("no SUBSCRIBED"); return }
        #expect(h.core.framework(m.frameworkID)?.connected == true)
        #expect(h.observed.contains(.frameworkSubscribed(m.frameworkID, name: "v1", stream: stream)))
        #expect(h.sent.isEmpty)  // nothing over the bus
    }

    @Test func aStandbyOrRecoveringMasterOpensNoStream() {
        var h = MasterHarness()
        #expect(h.subscribe(Self.info) == .refused(status: 503, message: "Master has not finished recovery"))
        #expect(h.streamed.isEmpty && h.core.frameworkIDs.isEmpty)
    }

    @Test func updatesGoToTheStreamAndAcknowledgementsReachTheAgent() {
        var (h, fw, stream, _) = subscribedWithTask()
        let running = TaskStatus(taskID: TaskID(value: "t1"), state: .running, source: .executor, uuid: [9])
        h.message(.statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: fw, status: running, timestamp: 1, uuid: [9]))), from: P.agent)
        #expect(events(h, on: stream).compactMap { $0.statusUpdate?.update.status.state } == [.running])
        let ack = StatusUpdateAcknowledgementMessage(agentID: h.core.activeAgentIDs[0], frameworkID: fw, taskID: TaskID(value: "t1"), uuid: [9])
        #expect(h.call(.statusUpdateAck(ack), framework: fw, stream: stream.value) == .accepted)
        #expect(payloads(h.take(), to: P.agent) { if case .statusUpdateAck(let m) = $0 { m.uuid } else { nil } } == [[UInt8(9)]])
    }

    @Test func callsNeedTheCurrentStreamIDOfAnHTTPFramework() {
        var (h, fw, stream, _) = subscribedWithTask()
        let kill = Envelope.Payload.killTask(KillTaskMessage(frameworkID: fw, taskID: TaskID(value: "t1")))
        #expect(h.call(kill, framework: fw, stream: nil) == .refused(status: 400, message: "All non-subscribe calls should include the 'Mesos-Stream-Id' header"))
        guard case .refused(400, let wrong) = h.call(kill, framework: fw, stream: "m-e4-s1") else { Issue.record("accepted"); return }
        #expect(wrong.contains("didn't match the stream ID"))
        #expect(h.call(kill, framework: FrameworkID(value: "nope"), stream: stream.value) == .refused(status: 400, message: "Framework cannot be found"))
        #expect(h.take().isEmpty)  // none of them reached the agent
        #expect(h.call(kill, framework: fw, stream: stream.value) == .accepted)
        #expect(payloads(h.take(), to: P.agent) { if case .killTask(let m) = $0 { m.taskID } else { nil } } == [TaskID(value: "t1")])
    }

    @Test func aCallOfADriverFrameworkOverHTTPIsRefused() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        #expect(h.call(.reviveOffers(ReviveOffersMessage(frameworkID: fw)), framework: fw, stream: "x") == .refused(status: 403, message: "Framework is not connected via HTTP"))
    }

    @Test func invalidValuesAreRefusedWhereTheyEnterTheCore() {
        var (h, fw, stream, _) = subscribedWithTask()
        let bad = Envelope.Payload.declineOffers(DeclineOffersMessage(frameworkID: fw, offerIDs: [OfferID(value: "o")], filters: Filters(refuseSeconds: .nan)))
        guard case .refused(400, let why) = h.call(bad, framework: fw, stream: stream.value) else { Issue.record("accepted"); return }
        #expect(why.hasPrefix("Failed to validate scheduler::Call"))
        guard case .refused(400, _) = h.subscribe(FrameworkInfo(user: "u", name: "x", failoverTimeout: -1)) else { Issue.record("a negative failover_timeout accepted"); return }
    }

    @Test func aBrokenStreamDisconnectsAndTheFailoverTimeoutRemovesTheFramework() {
        var (h, fw, stream, _) = subscribedWithTask()
        h.feed(.streamClosed(stream))
        #expect(h.core.framework(fw)?.connected == false)
        #expect(h.call(.reviveOffers(ReviveOffersMessage(frameworkID: fw)), framework: fw, stream: stream.value) == .refused(status: 403, message: "Framework is not subscribed"))
        for _ in 0..<10 {
            h.tick(.seconds(1))
            h.answerPings()
        }
        #expect(h.observed.contains(.frameworkRemoved(fw, reason: .failoverTimeout)))
        #expect(h.core.knownTasks.isEmpty)
    }

    @Test func aResubscribeKeepsTheTasksAndFencesTheOlderStream() {
        var (h, fw, old, _) = subscribedWithTask()
        var again = Self.info
        again.id = fw
        guard case .subscribed(let new) = h.subscribe(again) else { Issue.record("refused"); return }
        #expect(new != old)
        #expect(events(h, on: old).compactMap(\.frameworkError) == ["Framework failed over"])
        #expect(h.closedStreams == [old])
        #expect(events(h, on: new).contains { if case .frameworkRegistered(let m) = $0 { m.frameworkID == fw } else { false } })
        #expect(h.core.knownTasks.map(\.taskID) == [TaskID(value: "t1")])
        #expect(h.observed.contains(.frameworkFailedOver(fw, from: .http(old), to: .http(new))))
        // The old stream's calls are refused; its end changes nothing.
        guard case .refused(400, _) = h.call(.reviveOffers(ReviveOffersMessage(frameworkID: fw)), framework: fw, stream: old.value) else { Issue.record("old stream accepted"); return }
        h.feed(.streamClosed(old))
        #expect(h.core.framework(fw)?.connected == true)
    }

    @Test func aV1SubscribeFailsOverADriverSchedulerAndADriverFailoverFencesAStream() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        var info = Self.info
        info.id = fw
        guard case .subscribed(let stream) = h.subscribe(info) else { Issue.record("refused"); return }
        #expect(payloads(h.take(), to: P.scheduler) { $0.frameworkError } == ["Framework failed over"])
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: fw), failover: true)), from: P.scheduler2)
        #expect(events(h, on: stream).compactMap(\.frameworkError) == ["Framework failed over"])
        #expect(h.closedStreams == [stream])
        #expect(h.core.framework(fw)?.pid == P.scheduler2)
    }

    @Test func teardownRemovesTheFrameworkAndEndsItsStreamWithoutAnError() {
        var (h, fw, stream, _) = subscribedWithTask()
        #expect(h.call(.unregisterFramework(UnregisterFrameworkMessage(frameworkID: fw)), framework: fw, stream: stream.value) == .accepted)
        #expect(h.closedStreams == [stream])
        #expect(events(h, on: stream).compactMap(\.frameworkError).isEmpty)
        #expect(payloads(h.take(), to: P.agent) { if case .shutdownFramework(let m) = $0 { m.frameworkID } else { nil } } == [fw])
        var again = Self.info
        again.id = fw
        guard case .subscribed(let refusedStream) = h.subscribe(again) else { Issue.record("no stream"); return }
        #expect(events(h, on: refusedStream).compactMap(\.frameworkError) == ["Framework has been removed"])
        #expect(h.closedStreams == [stream, refusedStream])
    }
}
