import MesosCore
import MesosWire
import Testing

/// The framework failover contract: disconnect, `failover_timeout`, scheduler failover, removal.
@Suite struct MasterFrameworkFailoverTests {
    /// A running task of `fw` on the agent, RUNNING acknowledged.
    func withRunningTask(failoverTimeout: Double = 10) -> (MasterHarness, FrameworkID, AgentID) {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework(failoverTimeout: failoverTimeout)
        let agent = h.registerAgent()
        guard let offer = h.offer() else {
            Issue.record("no offer")
            return (h, fw, agent)
        }
        h.launch("t1", framework: fw, offer: offer)
        _ = h.take()
        return (h, fw, agent)
    }

    @Test func aBrokenLinkDisconnectsTheFrameworkAndItsFailoverTimeoutRemovesIt() {
        var (h, fw, _) = withRunningTask(failoverTimeout: 3)
        h.feed(.linkBroken(endpoint: P.scheduler.endpoint))
        let notice = h.take()
        #expect(notice.contains { if case .frameworkDisconnected = $0.0 { $0.1 == P.scheduler } else { false } })
        #expect(h.core.outstandingOffers.isEmpty)
        #expect(h.observed.contains(.frameworkDisconnected(fw, failoverTimeout: .seconds(3))))
        // No offers while disconnected; still there at 2 s.
        h.tick(.seconds(1))
        h.answerPings()
        h.tick(.seconds(1))
        h.answerPings()
        #expect(payloads(h.take(), to: P.scheduler) { $0.offers }.isEmpty)
        #expect(h.core.frameworkIDs == [fw] && h.core.knownTasks.count == 1)
        // At 3 s: removed, its tasks killed on the agent, its id refused from then on.
        h.tick(.seconds(1))
        let removal = h.take()
        #expect(payloads(removal, to: P.agent) { if case .shutdownFramework(let m) = $0 { m.frameworkID } else { nil } } == [fw])
        #expect(h.core.frameworkIDs.isEmpty && h.core.knownTasks.isEmpty)
        #expect(h.registry?.removedFrameworks == [fw])
        #expect(h.observed.contains(.frameworkRemoved(fw, reason: .failoverTimeout)))
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: fw), failover: true)), from: P.scheduler2)
        #expect(h.take().first?.0.frameworkError == "Framework has been removed")
        // The agent's terminal updates for it are acknowledged by the master (nobody else will).
        let killed = TaskStatus(taskID: TaskID(value: "t1"), state: .killed, uuid: [7])
        h.message(.statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: fw, status: killed, timestamp: 1, uuid: [7]))), from: P.agent)
        let acks = payloads(h.take(), to: P.agent) { if case .statusUpdateAck(let m) = $0 { m.uuid } else { nil } }
        #expect(acks == [[7]])
    }

    @Test func theSameSchedulerReregisteringWithinTheTimeoutKeepsItsTasks() {
        var (h, fw, _) = withRunningTask(failoverTimeout: 3)
        h.feed(.linkBroken(endpoint: P.scheduler.endpoint))
        h.tick(.seconds(2))
        h.answerPings()
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: fw, failoverTimeout: 3), failover: false)), from: P.scheduler)
        #expect(payloads(h.take(), to: P.scheduler) { if case .frameworkReregistered(let m) = $0 { m.frameworkID } else { nil } } == [fw])
        for _ in 0..<5 {
            h.tick(.seconds(1))
            h.answerPings()
        }
        #expect(h.core.frameworkIDs == [fw] && h.core.knownTasks.count == 1)
        #expect(!h.observed.contains { if case .frameworkRemoved = $0 { true } else { false } })
    }

    @Test func aCallFromADisconnectedFrameworksSchedulerAsksItToReregister() {
        var (h, fw, _) = withRunningTask()
        h.feed(.linkBroken(endpoint: P.scheduler.endpoint))
        _ = h.take()
        h.message(.killTask(KillTaskMessage(frameworkID: fw, taskID: TaskID(value: "t1"))), from: P.scheduler)
        let sent = h.take()
        #expect(sent.count == 1 && sent.allSatisfy { if case .frameworkDisconnected = $0.0 { $0.1 == P.scheduler } else { false } })
    }

    @Test func aFailoverFencesTheOldSchedulerInstance() {
        var (h, fw, _) = withRunningTask()
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: fw), failover: true)), from: P.scheduler2)
        let sent = h.take()
        #expect(payloads(sent, to: P.scheduler) { $0.frameworkError } == ["Framework failed over"])
        #expect(payloads(sent, to: P.scheduler2) { if case .frameworkReregistered(let m) = $0 { m.frameworkID } else { nil } } == [fw])
        #expect(h.core.framework(fw)?.pid == P.scheduler2)
        #expect(h.core.knownTasks.count == 1, "the tasks stay with the framework")
        // Anything from the old instance is refused; nothing of it is done.
        h.message(.killTask(KillTaskMessage(frameworkID: fw, taskID: TaskID(value: "t1"))), from: P.scheduler)
        #expect(h.take().map { $0.0.frameworkError } == ["Framework failed over"])
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: fw), failover: false)), from: P.scheduler)
        #expect(h.take().map { $0.0.frameworkError } == ["Framework failed over"], "without failover, the old instance cannot take it back")
        #expect(h.core.framework(fw)?.pid == P.scheduler2)
        #expect(h.core.metrics.frameworkFailovers == 1)
    }

    /// Mesos's `failoverFramework`: the old instance's offers are withdrawn (their resources go back
    /// to the pool), and the next allocation offers them to the new instance.
    @Test func aFailoverDiscardsTheOldInstancesOffersAndTheNewOneIsOfferedTheirResources() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent()
        guard let old = h.offer() else {
            Issue.record("no offer to the first instance")
            return
        }
        #expect(h.core.outstandingOffers.map(\.id) == [old.id])
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: fw), failover: true)), from: P.scheduler2)
        _ = h.take()
        #expect(h.core.outstandingOffers.isEmpty, "the old instance's offer is withdrawn")
        let next = h.offer(to: P.scheduler2)
        #expect(next?.agentID == agent && next?.id != old.id, "\(String(describing: next))")
        // The new instance cannot use the offer made to the old one.
        h.launch("t1", framework: fw, offer: old, from: P.scheduler2)
        let statuses = payloads(h.take(), to: P.scheduler2) { if case .statusUpdate(let m) = $0 { m.update.status.state } else { nil } }
        #expect(statuses == [.lost], "invalid offers: \(statuses)")
        #expect(h.core.knownTasks.isEmpty)
    }

    /// The completed frameworks kept for /master/state are bounded (`maxCompletedFrameworks`), the
    /// oldest dropped first.
    @Test func completedFrameworksAreBoundedAndTheOldestGoFirst() {
        var settings = MasterSettings.fast
        settings.maxCompletedFrameworks = 3
        var h = MasterHarness(settings: settings)
        h.lead()
        var ids: [FrameworkID] = []
        for _ in 0..<5 {
            let fw = h.registerFramework()
            h.message(.unregisterFramework(UnregisterFrameworkMessage(frameworkID: fw)), from: P.scheduler)
            _ = h.take()
            ids.append(fw)
        }
        #expect(Set(ids).count == 5)
        #expect(h.core.completed.map(\.id) == Array(ids.suffix(3)))
    }

    @Test func unregisteringRemovesTheFrameworkAndKillsItsTasks() {
        var (h, fw, _) = withRunningTask()
        h.message(.unregisterFramework(UnregisterFrameworkMessage(frameworkID: fw)), from: P.scheduler)
        #expect(payloads(h.take(), to: P.agent) { if case .shutdownFramework(let m) = $0 { m.frameworkID } else { nil } } == [fw])
        #expect(h.core.frameworkIDs.isEmpty && h.core.completed.map(\.id) == [fw])
        #expect(h.observed.contains(.frameworkRemoved(fw, reason: .unregistered)))
    }

    @Test func anOperatorTeardownRemovesAConnectedFrameworkAndTellsIt() {
        var (h, fw, _) = withRunningTask()
        h.feed(.teardown(fw))
        let sent = h.take()
        #expect(payloads(sent, to: P.scheduler) { $0.frameworkError } == ["Framework has been removed"])
        #expect(payloads(sent, to: P.agent) { if case .shutdownFramework(let m) = $0 { m.frameworkID } else { nil } } == [fw])
    }

    @Test func invalidFailoverTimeoutsAreRegistrationErrors() {
        var h = MasterHarness()
        h.lead()
        for bad in [-1, Double.nan, .infinity, -.infinity] {
            h.message(.registerFramework(RegisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", failoverTimeout: bad))), from: P.scheduler)
            let error = h.take().first?.0.frameworkError
            #expect(error?.contains("framework.failover_timeout") == true, "\(bad)")
        }
        #expect(h.core.frameworkIDs.isEmpty)
    }

    /// Across a master failover: the new leader learns the framework from its agent and removes it
    /// when its scheduler does not come back within `failover_timeout`, counted from the failover.
    @Test func aRecoveredFrameworkIsRemovedIfItsSchedulerDoesNotComeBack() {
        let agent = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 4)], id: AgentID(value: "old-S1"), pid: P.agent.description)
        var h = MasterHarness(registry: Registry(admitted: [Registry.Agent(info: agent)], highestEpoch: 4))
        h.lead()
        let fw = FrameworkID(value: "f1")
        let task = MesosTask(name: "t", taskID: TaskID(value: "t1"), frameworkID: fw, agentID: AgentID(value: "old-S1"), state: .running)
        h.tick(.seconds(2))
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: agent, tasks: [task], frameworks: [FrameworkInfo(user: "u", name: "fw", id: fw, failoverTimeout: 5)])), from: P.agent)
        for _ in 0..<2 {
            h.tick(.seconds(1))
            h.answerPings()
        }
        #expect(h.core.frameworkIDs == [fw], "at 4 s after the failover it is still kept")
        _ = h.take()
        h.tick(.seconds(1))  // 5 s after the failover
        #expect(h.core.frameworkIDs.isEmpty)
        #expect(payloads(h.take(), to: P.agent) { if case .shutdownFramework(let m) = $0 { m.frameworkID } else { nil } } == [fw])
    }

    @Test func aRecoveredFrameworkWhoseSchedulerComesBackIsKept() {
        let agent = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 4)], id: AgentID(value: "old-S1"), pid: P.agent.description)
        var h = MasterHarness(registry: Registry(admitted: [Registry.Agent(info: agent)], highestEpoch: 4))
        h.lead()
        let fw = FrameworkID(value: "f1")
        let task = MesosTask(name: "t", taskID: TaskID(value: "t1"), frameworkID: fw, agentID: AgentID(value: "old-S1"), state: .running)
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: agent, tasks: [task], frameworks: [FrameworkInfo(user: "u", name: "fw", id: fw, failoverTimeout: 5)])), from: P.agent)
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: fw, failoverTimeout: 5), failover: false)), from: P.scheduler)
        for _ in 0..<10 {
            h.tick(.seconds(1))
            h.answerPings()
        }
        #expect(h.core.frameworkIDs == [fw] && h.core.knownTasks.count == 1)
    }

    @Test func aFrameworkPrincipalMustBeTheAuthenticatedOne() {
        var h = MasterHarness()
        h.lead()
        h.message(.registerFramework(RegisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", principal: "alice"))), from: P.scheduler, principal: "mallory")
        #expect(h.take().first?.0.frameworkError?.contains("does not match the authenticated principal") == true)
        h.message(.registerFramework(RegisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", principal: "alice"))), from: P.scheduler, principal: "alice")
        guard case .frameworkRegistered(let m)? = h.take().first?.0 else { Issue.record("not registered"); return }
        // Another principal cannot act for it, even from its pid.
        h.message(.reviveOffers(ReviveOffersMessage(frameworkID: m.frameworkID)), from: P.scheduler, principal: "mallory")
        #expect(h.take().first?.0.refused?.reason.contains("principal") == true)
    }

    @Test func suppressStopsOffersAndReviveResumesThem() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        _ = h.registerAgent()
        h.message(.suppressOffers(SuppressOffersMessage(frameworkID: fw)), from: P.scheduler)
        #expect(h.offer() == nil)
        h.message(.reviveOffers(ReviveOffersMessage(frameworkID: fw)), from: P.scheduler)
        #expect(h.offer() != nil)
    }
}

/// Framework messages both ways and executor exits, through the master (best effort, as Mesos).
@Suite struct MasterExecutorMessageTests {
    @Test func frameworkMessagesGoToTheExecutorsAgentAndBack() {
        var (h, fw, agent) = MasterFrameworkFailoverTests().withRunningTask()
        let executor = ExecutorID(value: "t1")
        h.message(.frameworkToExecutor(FrameworkToExecutorMessage(agentID: agent, frameworkID: fw, executorID: executor, data: [1, 2, 3])), from: P.scheduler)
        #expect(payloads(h.take(), to: P.agent) { if case .frameworkToExecutor(let m) = $0 { m.data } else { nil } } == [[UInt8]([1, 2, 3])])
        h.message(.executorToFramework(ExecutorToFrameworkMessage(agentID: agent, frameworkID: fw, executorID: executor, data: [4])), from: P.agent)
        #expect(payloads(h.take(), to: P.scheduler) { if case .executorToFramework(let m) = $0 { m.data } else { nil } } == [[UInt8]([4])])
        // Another process claiming to be that agent is not forwarded.
        h.message(.executorToFramework(ExecutorToFrameworkMessage(agentID: agent, frameworkID: fw, executorID: executor, data: [5])), from: P.stranger)
        #expect(payloads(h.take(), to: P.scheduler) { if case .executorToFramework(let m) = $0 { m.data } else { nil } }.isEmpty)
    }

    @Test func anExitedExecutorIsToldToItsFramework() {
        var (h, fw, agent) = MasterFrameworkFailoverTests().withRunningTask()
        h.message(.exitedExecutor(ExitedExecutorMessage(agentID: agent, frameworkID: fw, executorID: ExecutorID(value: "t1"), status: 137)), from: P.agent)
        #expect(payloads(h.take(), to: P.scheduler) { if case .exitedExecutor(let m) = $0 { m.status } else { nil } } == [Int32(137)])
        #expect(h.observed.contains(.executorExited(agent: agent, framework: fw, executor: ExecutorID(value: "t1"), status: 137)))
    }

    @Test func anAgentThatUnregistersIsRemovedAndItsTasksAreLost() {
        var (h, fw, agent) = MasterFrameworkFailoverTests().withRunningTask()
        h.message(.unregisterAgent(UnregisterAgentMessage(agentID: agent)), from: P.agent)
        let lost = payloads(h.take(), to: P.scheduler) { $0.statusUpdate?.update.status }
        #expect(lost.map(\.state) == [.lost] && lost.first?.reason == .agentRemoved)
        #expect(h.core.removedAgentIDs == [agent] && h.core.knownTasks.isEmpty)
        #expect(h.observed.contains(.agentRemoved(agent, reason: .unregistered)))
        _ = fw
    }
}
