import MesosCore
import MesosWire
import Testing

@Suite struct MasterLeadershipTests {
    @Test func standbyAnswersEverythingWithAHintToTheLeader() {
        var h = MasterHarness()
        h.feed(.leaderDetected(leader(P.master2, epoch: 3)))
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h"))), from: P.agent, epoch: 3)
        let sent = h.take()
        #expect(sent.count == 1 && sent[0].1 == P.agent)
        guard case .leaderHint(let hint) = sent[0].0 else { Issue.record("not a hint"); return }
        #expect(hint.leaderEpoch == 3 && hint.leader?.pid == P.master2.description)
        #expect(h.core.phase == .standby)
        #expect(h.core.metrics.droppedMessages[.notLeading] == 1)
    }

    @Test func leadsOnlyWhenElectedAndDetectingItself() {
        var h = MasterHarness()
        h.feed(.elected(epoch: 5))
        #expect(h.core.phase == .standby)
        h.feed(.leaderDetected(leader(P.master2, epoch: 4)))
        #expect(h.core.phase == .standby)
        h.feed(.leaderDetected(leader(P.master, epoch: 5)))
        #expect(h.core.phase == .leading(epoch: 5))
        #expect(h.registry?.highestEpoch == 5)
        #expect(h.observed.contains(.leading(epoch: 5, agentsExpected: 0)))
    }

    @Test func refusesToLeadAtAnEpochAlreadyLed() {
        var h = MasterHarness(epoch: 5, registry: Registry(highestEpoch: 9))
        h.lead()
        #expect(h.core.phase == .exited)
        #expect(h.exited == .epochAlreadyLed(epoch: 5, highest: 9))
    }

    @Test func commitsSuicideWhenAnotherLeaderOrNoLeaderIsDetected() {
        var a = MasterHarness()
        a.lead()
        a.feed(.leaderDetected(leader(P.master2, epoch: 6)))
        #expect(a.exited == .lostLeadership(.otherLeaderDetected(leader(P.master2, epoch: 6))))

        var b = MasterHarness()
        b.lead()
        b.feed(.leaderDetected(nil))
        #expect(b.exited == .lostLeadership(.otherLeaderDetected(nil)))

        var c = MasterHarness()
        c.lead()
        c.feed(.candidacyLost(.sessionExpired))
        #expect(c.exited == .lostLeadership(.sessionExpired))
        #expect(c.exited?.code == 1)

        var standby = MasterHarness()
        standby.feed(.candidacyLost(.sessionExpired))
        #expect(standby.exited == .candidacyLost(.sessionExpired))
    }

    /// Registrations that arrive while the registry is recovered get no answer then (no
    /// connection to the sender) and are answered once the master leads, the latest of each sender
    /// once; Mesos drops them and the sender waits for its next attempt.
    @Test func aRecoveringMasterAnswersRegistrationsOnceItLeads() {
        var h = MasterHarness()
        h.holdWrites = true
        h.lead()
        #expect(h.core.phase == .recovering(epoch: 5))
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "first"))), from: P.agent, epoch: 5)
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "retry"))), from: P.agent, epoch: 5)
        h.message(.registerFramework(RegisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw"))), from: P.scheduler, epoch: 5)
        #expect(h.take().isEmpty)
        #expect(h.core.metrics.droppedTotal == 0)
        h.holdWrites = false
        h.releaseWrites()
        #expect(h.core.phase == .leading(epoch: 5))
        #expect(h.observed.contains(.recoveryBacklogReplayed(count: 2)))
        #expect(h.core.metrics.heldDuringRecovery == 2)
        let sent = h.take()
        #expect(payloads(sent, to: P.agent) { if case .agentRegistered(let m) = $0 { m.agentID } else { nil } }.count == 1)
        #expect(h.core.activeAgents.map(\.hostname) == ["retry"], "the sender's latest registration")
        #expect(payloads(sent, to: P.scheduler) { if case .frameworkRegistered(let m) = $0 { m.frameworkID } else { nil } }.count == 1)
    }

    /// What is not a registration, an invalid one, a message for another epoch, and registrations
    /// beyond the backlog's limit (in frame bytes) are dropped as Mesos drops them: no answer, then
    /// or later.
    @Test func aRecoveringMasterDropsWhatItDoesNotHold() {
        let first = RegisterAgentMessage(agent: AgentInfo(hostname: "h"))
        var settings = MasterSettings.fast
        settings.recoveryBacklogLimit = try! FrameEncoder().prepare(envelope(.registerAgent(first), from: P.agent, epoch: 5))  // room for it alone
        var h = MasterHarness(settings: settings)
        h.holdWrites = true
        h.lead()
        h.message(.registerAgent(first), from: P.agent, epoch: 5)  // held
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: ""))), from: P.scheduler2, epoch: 5)  // invalid (no hostname)
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h2"))), from: P.agent2, epoch: 5)  // over the limit
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h3"))), from: P.stranger, epoch: 4)  // another epoch
        h.message(.reviveOffers(ReviveOffersMessage(frameworkID: FrameworkID(value: "f"))), from: P.scheduler, epoch: 5)  // not a registration
        #expect(h.take().isEmpty)
        #expect(h.core.metrics.droppedMessages[.notLeading] == 4)
        #expect(h.observed.filter { if case .messageDropped(_, .notLeading) = $0 { true } else { false } }.count == 4)
        h.holdWrites = false
        h.releaseWrites()
        #expect(h.core.phase == .leading(epoch: 5))
        #expect(h.observed.contains(.recoveryBacklogReplayed(count: 1)))
        #expect(Set(h.take().map(\.1)) == [P.agent], "only the held registration is answered")
    }

    @Test func leaderHintsMessagesForAnotherEpoch() {
        var h = MasterHarness()
        h.lead()
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h"))), from: P.agent, epoch: 4)
        guard case .leaderHint(let hint)? = h.take().first?.0 else { Issue.record("no hint"); return }
        #expect(hint.leaderEpoch == 5 && hint.leader?.pid == P.master.description)
    }

    @Test func aRegistryWriteRefusedMeansExitingAsDeposed() {
        var h = MasterHarness()
        h.lead()
        h.feed(.registryStoreFailed(fenced: true, reason: "our leader znode is gone"))
        #expect(h.exited == .registryWriteFenced("our leader znode is gone"))
    }

    /// A standalone master leads one epoch above the highest its registry records, so a restart on
    /// the same work directory leads again (issue: "epoch 1 was already led") and keeps its agents.
    @Test func standaloneMasterRestartsAboveItsLastEpochWithItsAgents() {
        let agent = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 1)], id: AgentID(value: "m-S1"), pid: P.agent.description)
        var h = MasterHarness(registry: Registry(admitted: [Registry.Agent(info: agent)], highestEpoch: 3))
        h.feed(.startStandalone)
        #expect(h.core.phase == .leading(epoch: 4))
        #expect(h.registry?.highestEpoch == 4)
        #expect(h.core.recoveringAgentCount == 1)
        // Its agent re-registers as itself.
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: agent)), from: P.agent, epoch: 4)
        #expect(payloads(h.take(), to: P.agent) { if case .agentReregistered(let m) = $0 { m.agentID } else { nil } } == [AgentID(value: "m-S1")])

        var fresh = MasterHarness(registry: nil)
        fresh.feed(.startStandalone)
        #expect(fresh.core.phase == .leading(epoch: 1))
    }
}

@Suite struct MasterAgentTests {
    @Test func registrationIsWrittenToTheRegistryBeforeTheReply() {
        var h = MasterHarness()
        h.lead()
        let id = h.registerAgent()
        #expect(h.registry.map { Array($0.admitted.keys) } == [id])
        #expect(h.core.activeAgentIDs == [id])
        #expect(h.observed.contains(.agentRegistered(id, pid: P.agent)))
    }

    /// An agent's retries of a re-registration already answered are answered again, without a
    /// fresh ping each: one ping per agent, and the health checks keep their schedule.
    @Test func aRetriedReregistrationIsAnsweredAgainWithoutAnotherPing() {
        let agent = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 1)], id: AgentID(value: "m-S1"), pid: P.agent.description)
        var h = MasterHarness(registry: Registry(admitted: [Registry.Agent(info: agent)], highestEpoch: 3))
        h.feed(.startStandalone)
        func pings(_ sent: [(Envelope.Payload, PID)]) -> Int { payloads(sent, to: P.agent) { if case .ping = $0 { 1 } else { nil } }.count }
        func answers(_ sent: [(Envelope.Payload, PID)]) -> Int { payloads(sent, to: P.agent) { if case .agentReregistered = $0 { 1 } else { nil } }.count }
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: agent)), from: P.agent, epoch: 4)
        let first = h.take()
        #expect(answers(first) == 1 && pings(first) == 1, "the first re-registration: an answer and the first ping")
        for _ in 0..<3 {
            h.message(.reregisterAgent(ReregisterAgentMessage(agent: agent)), from: P.agent, epoch: 4)
            let retry = h.take()
            #expect(answers(retry) == 1 && pings(retry) == 0, "a retry: answered again, no ping")
        }
        #expect(h.core.activeAgentIDs == [AgentID(value: "m-S1")])
    }

    @Test func failoverRebuildsTasksFromReregisteringAgents() {
        let admitted = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 4)], id: AgentID(value: "old-S1"), pid: P.agent.description)
        var h = MasterHarness(registry: Registry(admitted: [Registry.Agent(info: admitted)], highestEpoch: 4))
        h.lead()
        let task = MesosTask(name: "t", taskID: TaskID(value: "t1"), frameworkID: FrameworkID(value: "f1"), agentID: AgentID(value: "old-S1"), state: .running, resources: [Resource(name: "cpus", scalar: 1)])
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: admitted, tasks: [task], frameworks: [FrameworkInfo(user: "u", name: "fw", id: FrameworkID(value: "f1"), failoverTimeout: 60)])), from: P.agent)
        #expect(payloads(h.take(), to: P.agent) { if case .agentReregistered(let m) = $0 { m.agentID.value } else { nil } } == ["old-S1"])
        #expect(h.core.knownTasks.map(\.taskID.value) == ["t1"])
        #expect(h.registryWrites == 1, "only the epoch is written: the agent is in the registry as it is")
        #expect(h.observed.contains(.frameworkRecovered(FrameworkID(value: "f1"), fromAgent: AgentID(value: "old-S1"))))
        // The framework re-registers and can kill the task it still has.
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: FrameworkID(value: "f1")), failover: false)), from: P.scheduler)
        _ = h.take()
        h.message(.killTask(KillTaskMessage(frameworkID: FrameworkID(value: "f1"), taskID: TaskID(value: "t1"))), from: P.scheduler)
        #expect(h.take().map(\.1) == [P.agent])
    }

    @Test func admittingAnAgentPingsItAndNoOther() {
        var h = MasterHarness()
        h.lead()
        _ = h.registerAgent(P.agent)
        h.answerPings()
        h.tick(.milliseconds(500))  // no ping is due yet
        _ = h.take()
        h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h2"))), from: P.agent2)
        let sent = h.take()
        #expect(sent.contains { if case .agentRegistered = $0.0 { $0.1 == P.agent2 } else { false } })
        #expect(sent.filter { $0.0.isPing }.map(\.1) == [P.agent2], "the new agent's first ping; the other's comes with a tick")
    }

    @Test func aTickPingsTheAgentsWhoseCheckIsDueInTheOrderTheirPingsWentOut() {
        var h = MasterHarness()  // pings every second
        h.lead()
        _ = h.registerAgent(P.agent2)  // pinged at 0
        h.tick(.milliseconds(500))
        _ = h.registerAgent(P.agent)  // pinged at 0.5
        h.answerPings()
        _ = h.take()
        h.tick(.milliseconds(500))  // 1.0: only agent2's check is due
        #expect(h.take().filter { $0.0.isPing }.map(\.1) == [P.agent2])
        h.answerPings()
        h.tick(.milliseconds(500))  // 1.5: agent's
        #expect(h.take().filter { $0.0.isPing }.map(\.1) == [P.agent])
        h.answerPings()
        h.tick(.seconds(5))  // both overdue: in the order of their last pings
        #expect(h.take().filter { $0.0.isPing }.map(\.1) == [P.agent2, P.agent])
    }

    @Test func agentMissingPingsIsRemovedAfterTheConfiguredCount() {
        var h = MasterHarness()
        h.lead()
        let agent = h.registerAgent()
        h.answerPings()
        for _ in 0..<5 {  // healthy for a while
            h.tick(.seconds(1))
            h.answerPings()
        }
        #expect(h.core.activeAgentIDs == [agent])
        _ = h.take()
        h.tick(.seconds(1))  // ping 1 sent, never answered
        h.tick(.seconds(1))  // ping 1 timed out
        h.tick(.seconds(1))  // ping 2 timed out
        #expect(h.core.activeAgentIDs == [agent])
        h.tick(.seconds(1))  // ping 3 timed out: removed
        #expect(h.core.activeAgentIDs == [])
        #expect(h.registry.map { Array($0.removed.keys) } == [agent])
        #expect(h.registry?.admitted.isEmpty == true)
        #expect(h.observed.contains(.agentRemoved(agent, reason: .missedPings(count: 3, timeout: .seconds(1)))))
    }

    @Test func removedAgentGetsShutdownForAnyMessageAndCannotReregister() {
        var h = MasterHarness()
        h.lead()
        _ = h.registerFramework()
        let agent = h.registerAgent()
        for _ in 0..<5 { h.tick(.seconds(1)) }
        let removal = h.take()
        #expect(removal.contains { $0.0.isShutdown && $0.1 == P.agent })
        #expect(removal.contains { if case .lostAgent(let m) = $0.0 { m.agentID == agent && $0.1 == P.scheduler } else { false } })
        h.message(.pong(PongAgentMessage()), from: P.agent)
        #expect(h.take().first?.0.isShutdown == true, "a late pong is answered with a shutdown")
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: AgentInfo(hostname: "h", id: agent))), from: PID("slave(1)@10.0.0.9:7777")!)
        #expect(h.take().first?.0.isShutdown == true, "a removed agent may not re-register")
        #expect(h.core.activeAgentIDs == [])
    }

    /// After a removal, the operator restarts the agent (it forgot its id): a new registration from
    /// the same address is a new agent, not a message of the removed one.
    @Test func aNewAgentOnARemovedAgentsAddressRegisters() {
        var h = MasterHarness()
        h.lead()
        let old = h.registerAgent()
        for _ in 0..<5 { h.tick(.seconds(1)) }
        #expect(h.core.activeAgentIDs.isEmpty)
        let new = h.registerAgent()
        #expect(new != old && h.core.activeAgentIDs == [new])
    }

    @Test func lostTasksAreLostForOrdinaryFrameworksAndUnreachableForPartitionAwareOnes() {
        var h = MasterHarness()
        h.lead()
        let plain = h.registerFramework(P.scheduler)
        let aware = h.registerFramework(P.scheduler2, partitionAware: true)
        _ = h.registerAgent()
        let first = h.offer(to: P.scheduler) ?? h.offer(to: P.scheduler)
        guard let first else { Issue.record("no offer"); return }
        h.launch("t1", framework: plain, offer: first)
        guard let second = h.offer(to: P.scheduler2) else { Issue.record("no offer for the second framework"); return }
        h.launch("t1", framework: aware, offer: second, from: P.scheduler2)
        _ = h.take()
        for _ in 0..<5 { h.tick(.seconds(1)) }  // pings never answered: removed
        let sent = h.take()
        let toPlain = payloads(sent, to: P.scheduler) { $0.statusUpdate?.update.status }
        let toAware = payloads(sent, to: P.scheduler2) { $0.statusUpdate?.update.status }
        #expect(toPlain.map(\.state) == [.lost] && toPlain.first?.reason == .agentRemoved && toPlain.first?.source == .master)
        #expect(toAware.map(\.state) == [.unreachable] && toAware.first?.reason == .agentRemoved && toAware.first?.source == .master)
        // Both learn when it became unreachable: the removal time the registry records (Mesos's __removeSlave).
        let removedAt = h.registry?.removed.values.first.map { TimeInfo(nanoseconds: $0.nanosecondsSaturating) }
        #expect(removedAt != nil && toAware.first?.unreachableTime == removedAt && toPlain.first?.unreachableTime == removedAt)
    }

    /// Mesos's reconcileKnownSlave: a re-registering agent that no longer reports a task the
    /// master knows is asked about it (and answers with a terminal update).
    @Test func aReregisteringAgentIsAskedAboutTasksItDidNotReport() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agentID = h.registerAgent()
        guard let offer = h.offer() else { Issue.record("no offer"); return }
        h.launch("t1", framework: fw, offer: offer)
        _ = h.take()
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 4), Resource(name: "mem", scalar: 1024)], id: agentID))), from: P.agent)
        let answers = payloads(h.take(), to: P.agent) { if case .agentReregistered(let m) = $0 { m } else { nil } }
        #expect(answers.first?.reconciliations.map(\.frameworkID) == [fw])
        #expect(answers.first?.reconciliations.first?.statuses.map(\.taskID.value) == ["t1"])
    }

    @Test func aKillWhileTheAgentsAdmissionIsWrittenIsSentWhenItIsStored() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agentID = h.registerAgent()
        guard let offer = h.offer() else { Issue.record("no offer"); return }
        h.launch("t1", framework: fw, offer: offer)
        // The agent comes back from a new address: inactive until the registry has it.
        h.holdWrites = true
        let moved = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 4), Resource(name: "mem", scalar: 1024)], id: agentID)
        let task = MesosTask(name: "t1", taskID: TaskID(value: "t1"), frameworkID: fw, agentID: agentID, state: .running)
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: moved, tasks: [task])), from: P.agent2)
        _ = h.take()
        h.message(.killTask(KillTaskMessage(frameworkID: fw, taskID: TaskID(value: "t1"))), from: P.scheduler)
        #expect(h.take().isEmpty, "held while the agent is not active")
        h.releaseWrites()
        let kills = payloads(h.take(), to: P.agent2) { if case .killTask(let m) = $0 { m.taskID.value } else { nil } }
        #expect(kills == ["t1"])
    }

    @Test func anAgentPrincipalSpeaksOnlyForItsOwnAgent() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let a = h.registerAgent(P.agent, principal: "agent-a")
        _ = h.registerAgent(P.agent2, principal: "agent-b")
        guard let offer = h.offer() else { Issue.record("no offer"); return }
        h.launch("t1", framework: fw, offer: offer)
        _ = h.take()
        // Principal b claims agent a's pid and reports its task finished: not acted on.
        let status = TaskStatus(taskID: TaskID(value: "t1"), state: .finished, agentID: a, uuid: [1])
        h.message(.statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: fw, status: status, timestamp: 1, uuid: [1], agentID: a))), from: P.agent, principal: "agent-b")
        #expect(h.take().isEmpty)
        #expect(h.core.knownTasks.first?.state == .staging)
        // b re-registering as agent a is refused with the reason.
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: AgentInfo(hostname: "h", id: a))), from: P.agent, principal: "agent-b")
        #expect(h.take().first?.0.refused?.reason.contains("principal") == true)
    }
}

@Suite struct MasterOfferTests {
    /// As Mesos's allocator: a round's offers to a framework go in one message (pids beside
    /// them), in chunks of `MasterCore.offersPerMessage`.
    @Test func aRoundsOffersReachAFrameworkInOneMessagePerChunk() {
        var h = MasterHarness()
        h.lead()
        _ = h.registerFramework()
        let count = MasterCore.offersPerMessage + 2
        var pids: [PID] = []
        for i in 0..<count {
            let pid = PID("slave(1)@10.1.\(i / 250).\(i % 250):5051")!
            pids.append(pid)
            _ = h.registerAgent(pid)
        }
        h.tick(h.core.settings.allocationInterval)
        let messages = payloads(h.take(), to: P.scheduler) { $0.offers }
        #expect(messages.map(\.offers.count) == [MasterCore.offersPerMessage, 2])
        #expect(messages.allSatisfy { $0.pids.count == $0.offers.count })
        #expect(Set(messages.flatMap(\.pids)) == Set(pids.map(\.description)), "every agent offered once, its pid beside its offer")
        let pidOfAgent = Dictionary(uniqueKeysWithValues: h.core.agentViews.compactMap { v in v.info.id.map { ($0, v.pid?.description) } })
        #expect(messages.allSatisfy { m in zip(m.offers, m.pids).allSatisfy { pidOfAgent[$0.agentID] == $1 } })
    }

    @Test func offersLaunchAndStatusUpdatesWithAcknowledgement() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent(cpus: 2)
        guard let offer = h.offer() else { Issue.record("no offer"); return }
        #expect(Resources(offer.resources) == Resources([Resource(name: "cpus", scalar: 2), Resource(name: "mem", scalar: 1024)]))
        h.launch("t1", framework: fw, offer: offer)
        #expect(payloads(h.take(), to: P.agent) { if case .runTask(let m) = $0 { m.task.taskID.value } else { nil } } == ["t1"])
        // The rest is offered again on the next allocation.
        guard let again = h.offer() else { Issue.record("no second offer"); return }
        #expect(Resources(again.resources).amounts["cpus"] == 1)
        // A status update goes to the framework; its acknowledgement goes back to the agent.
        let status = TaskStatus(taskID: TaskID(value: "t1"), state: .running, agentID: agent, uuid: [1, 2])
        h.message(.statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: fw, status: status, timestamp: 1, uuid: [1, 2], agentID: agent))), from: P.agent)
        #expect(h.take().map(\.1) == [P.scheduler])
        h.message(.statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: agent, frameworkID: fw, taskID: TaskID(value: "t1"), uuid: [1, 2])), from: P.scheduler)
        #expect(h.take().map(\.1) == [P.agent])
        #expect(h.core.knownTasks.first?.state == .running)
    }

    /// Task ids are unique per framework only: two frameworks may both run `task-1` on one agent.
    @Test func twoFrameworksMayUseTheSameTaskID() {
        var h = MasterHarness()
        h.lead()
        let f1 = h.registerFramework(P.scheduler)
        let f2 = h.registerFramework(P.scheduler2)
        _ = h.registerAgent(cpus: 4)
        var launched: Set<FrameworkID> = []
        for _ in 0..<4 {
            let sent = { () -> [(Envelope.Payload, PID)] in h.tick(.seconds(1)); h.answerPings(); return h.take() }()
            for (framework, scheduler) in [(f1, P.scheduler), (f2, P.scheduler2)] where !launched.contains(framework) {
                if let offer = payloads(sent, to: scheduler, { $0.offers }).first?.offers.first {
                    h.launch("task-1", framework: framework, offer: offer, from: scheduler)
                    launched.insert(framework)
                }
            }
        }
        #expect(launched == [f1, f2])
        #expect(!h.take().contains { $0.0.statusUpdate?.update.status.state == .error }, "neither launch is refused")
        #expect(h.core.knownTasks.map { "\($0.frameworkID.value)/\($0.taskID.value)" } == [f1, f2].map { "\($0.value)/task-1" })
    }

    @Test func staleOffersGiveLostUpdatesAndDeclinedAgentsAreFiltered() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent()
        let task = TaskInfo(name: "t", taskID: TaskID(value: "t1"), agentID: agent, resources: [])
        h.message(.launchTasks(LaunchTasksMessage(frameworkID: fw, tasks: [task], offerIDs: [OfferID(value: "nope")])), from: P.scheduler)
        guard let m = h.take().first?.0.statusUpdate else { Issue.record("no update"); return }
        #expect(m.update.status.state == .lost && m.update.status.reason == .invalidOffers && m.update.uuid.isEmpty)

        guard let offer = h.offer() else { Issue.record("no offer"); return }
        h.message(.declineOffers(DeclineOffersMessage(frameworkID: fw, offerIDs: [offer.id], filters: Filters(refuseSeconds: 10))), from: P.scheduler)
        #expect(h.offer() == nil)
        h.tick(.seconds(10))
        #expect(h.offer() != nil)
    }

    @Test func invalidFiltersAreRefusedWithTheReason() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        _ = h.registerAgent()
        guard let offer = h.offer() else { Issue.record("no offer"); return }
        for bad in [Double.nan, -1, .infinity, 1e300] {
            h.message(.declineOffers(DeclineOffersMessage(frameworkID: fw, offerIDs: [offer.id], filters: Filters(refuseSeconds: bad))), from: P.scheduler)
            let refused = h.take().first?.0.refused
            #expect(refused?.kind == "decline_offers" && refused?.reason.contains("filters.refuse_seconds") == true, "\(bad)")
        }
        #expect(h.core.outstandingOffers.map(\.id) == [offer.id], "nothing of a refused message is acted on")
        #expect(h.core.metrics.invalidMessages == 4)
    }

    @Test func reconciliationAnswersFromTheTaskTable() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        h.message(.reconcileTasks(ReconcileTasksMessage(frameworkID: fw, statuses: [TaskStatus(taskID: TaskID(value: "ghost"), state: .running)])), from: P.scheduler)
        guard let m = h.take().first?.0.statusUpdate else { Issue.record("no answer"); return }
        #expect(m.update.status.state == .lost && m.update.status.reason == .reconciliation)
    }
}

/// Tasks the master does not know may run on agents still expected to re-register after a
/// failover: no answer until that window closes (Mesos), never a false TASK_LOST.
@Suite struct MasterReregistrationWindowTests {
    static let admitted = AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 4)], id: AgentID(value: "old-S1"), pid: P.agent.description)

    func failedOver() -> (MasterHarness, FrameworkID) {
        var h = MasterHarness(registry: Registry(admitted: [Registry.Agent(info: Self.admitted)], highestEpoch: 4))
        h.lead()
        let fw = FrameworkID(value: "f1")
        h.message(.reregisterFramework(ReregisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "fw", id: fw, failoverTimeout: 600), failover: false)), from: P.scheduler)
        _ = h.take()
        return (h, fw)
    }

    @Test func killOfAnUnknownTaskIsNotAnsweredWhileAgentsMayComeBack() {
        var (h, fw) = failedOver()
        h.message(.killTask(KillTaskMessage(frameworkID: fw, taskID: TaskID(value: "t1"))), from: P.scheduler)
        h.message(.reconcileTasks(ReconcileTasksMessage(frameworkID: fw, statuses: [TaskStatus(taskID: TaskID(value: "t1"), state: .running)])), from: P.scheduler)
        h.message(.reconcileTasks(ReconcileTasksMessage(frameworkID: fw, statuses: [TaskStatus(taskID: TaskID(value: "t1"), state: .running, agentID: AgentID(value: "old-S1"))])), from: P.scheduler)
        #expect(h.take().isEmpty)
        #expect(h.core.recoveringAgentCount == 1)
        // The window closes (the agent never came back): now it is lost.
        h.tick(.seconds(61))
        _ = h.take()
        h.message(.killTask(KillTaskMessage(frameworkID: fw, taskID: TaskID(value: "t1"))), from: P.scheduler)
        #expect(h.take().compactMap { $0.0.statusUpdate?.update.status.state } == [.lost])
    }

    @Test func theAgentComingBackAnswersForItsTasks() {
        var (h, fw) = failedOver()
        let task = MesosTask(name: "t", taskID: TaskID(value: "t1"), frameworkID: fw, agentID: AgentID(value: "old-S1"), state: .running)
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: Self.admitted, tasks: [task])), from: P.agent)
        _ = h.take()
        h.message(.reconcileTasks(ReconcileTasksMessage(frameworkID: fw, statuses: [TaskStatus(taskID: TaskID(value: "t1"), state: .lost)])), from: P.scheduler)
        #expect(h.take().compactMap { $0.0.statusUpdate?.update.status.state } == [.running])
    }
}

@Suite struct MasterInputValidationTests {
    @Test func agentsWithNonFiniteOrNegativeResourcesAreRefusedWithTheReason() {
        var h = MasterHarness()
        h.lead()
        for bad in [Double.nan, -1, .infinity, 1e300] {
            h.message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: bad)]))), from: P.agent)
            let refused = h.take().first?.0.refused
            #expect(refused?.kind == "register_agent" && refused?.reason.contains("agent.resources") == true, "\(bad)")
        }
        #expect(h.core.activeAgentIDs.isEmpty && h.registry?.admitted.isEmpty == true)
    }

    @Test func tasksAskingForNaNResourcesGetTaskError() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent()
        guard let offer = h.offer() else { Issue.record("no offer"); return }
        let task = TaskInfo(name: "t", taskID: TaskID(value: "t1"), agentID: agent, resources: [Resource(name: "cpus", scalar: .nan)], command: CommandInfo(value: "true"))
        h.message(.launchTasks(LaunchTasksMessage(frameworkID: fw, tasks: [task], offerIDs: [offer.id])), from: P.scheduler)
        guard let m = h.take().first?.0.statusUpdate else { Issue.record("no update"); return }
        #expect(m.update.status.state == .error && m.update.status.reason == .taskInvalid)
        #expect(h.core.knownTasks.isEmpty)
    }

    @Test func idsThatCannotBeDirectoryNamesAreRefused() {
        var h = MasterHarness()
        h.lead()
        let fw = h.registerFramework()
        let agent = h.registerAgent()
        // "/\u{301}": a '/' byte under a combining mark (one Character, not equal to "/").
        for bad in ["", ".", "..", "a/b", "a/\u{301}b", "a b", "a\u{85}b", String(repeating: "x", count: 300)] {
            guard let offer = h.offer() else { Issue.record("no offer"); return }
            let task = TaskInfo(name: "t", taskID: TaskID(value: bad), agentID: agent, resources: [Resource(name: "cpus", scalar: 1)], command: CommandInfo(value: "true"))
            h.message(.launchTasks(LaunchTasksMessage(frameworkID: fw, tasks: [task], offerIDs: [offer.id])), from: P.scheduler)
            #expect(h.take().first?.0.statusUpdate?.update.status.state == .error, "'\(bad)'")
        }
        #expect(h.core.knownTasks.isEmpty)
    }
}
