import MesosCore
import MesosWire
import Testing

/// Removal safety nets (`--agent_removal_rate_limit`, `--recovery_agent_removal_limit`) and the
/// registry's GC (`--registry_gc_interval`, `--registry_max_agent_age`, `--registry_max_agent_count`).
@Suite struct MasterRemovalSafetyTests {
    static let agent3 = PID("slave(1)@10.0.0.11:5051")!

    static func removals(_ observed: [MasterObservation]) -> [AgentID] {
        observed.compactMap { if case .agentRemoved(let id, _) = $0 { id } else { nil } }
    }

    /// Three agents stop answering at once: with 1/2secs they are removed one at a time, 2 s apart.
    @Test func theRateLimitSpacesRemovalsForMissedHealthChecks() {
        var settings = MasterSettings.fast
        settings.agentRemovalRateLimit = RemovalRateLimit(permits: 1, per: .seconds(2))
        var h = MasterHarness(settings: settings)
        h.lead()
        let ids = [h.registerAgent(P.agent), h.registerAgent(P.agent2), h.registerAgent(Self.agent3)]
        h.answerPings()
        var removedAt: [(AgentID, Duration)] = []
        for _ in 0..<100 {
            h.observed = []
            h.tick(.milliseconds(100))
            for id in Self.removals(h.observed) { removedAt.append((id, h.now)) }
        }
        #expect(removedAt.map(\.0) == ids.sorted { $0.value < $1.value }, "each removed once, in the order they failed")
        let gaps = zip(removedAt.dropFirst(), removedAt).map { $0.1 - $1.1 }
        #expect(gaps.count == 2 && gaps.allSatisfy { $0 >= .seconds(2) && $0 < .milliseconds(2100) }, "\(gaps)")
        #expect(h.core.metrics.agentRemovalsScheduled == 3 && h.core.metrics.agentRemovals == 3)
        #expect(h.registry.map { Set($0.removed.keys) } == Set(ids))
    }

    /// The same failure without a limit: all three go in the same tick (what the limit changes).
    @Test func withoutALimitAllFailedAgentsAreRemovedAtOnce() {
        var h = MasterHarness()
        h.lead()
        _ = [h.registerAgent(P.agent), h.registerAgent(P.agent2), h.registerAgent(Self.agent3)]
        h.answerPings()
        var removalTicks: Set<Duration> = []
        for _ in 0..<100 {
            h.observed = []
            h.tick(.milliseconds(100))
            if !Self.removals(h.observed).isEmpty { removalTicks.insert(h.now) }
        }
        #expect(h.core.metrics.agentRemovals == 3 && removalTicks.count == 1)
        #expect(h.core.metrics.agentRemovalsScheduled == 0)
    }

    /// An agent whose removal waits for a permit and answers a ping meanwhile stays.
    @Test func aPongCancelsAScheduledRemoval() {
        var settings = MasterSettings.fast
        settings.agentRemovalRateLimit = RemovalRateLimit(permits: 1, per: .seconds(30))
        var h = MasterHarness(settings: settings)
        h.lead()
        let first = h.registerAgent(P.agent), second = h.registerAgent(P.agent2)
        h.answerPings()
        _ = h.take()
        for _ in 0..<60 where h.core.metrics.agentRemovals == 0 { h.tick(.milliseconds(100)) }
        #expect(Self.removals(h.observed) == [first])
        #expect(h.observed.contains(.agentRemovalScheduled(second, queued: 2)), "queued behind agent1, which took the first permit")
        // agent2 is back: it answers the pings it gets from now on.
        h.message(.pong(PongAgentMessage()), from: P.agent2)
        #expect(h.observed.last == .agentRemovalCanceled(second))
        for _ in 0..<60 {
            _ = h.take()
            h.tick(.seconds(1))
            h.message(.pong(PongAgentMessage()), from: P.agent2)
        }
        #expect(h.core.activeAgentIDs == [second], "a minute on, past the 30 s permit, it is still there")
        #expect(h.core.metrics.agentRemovalsCanceled == 1 && Self.removals(h.observed) == [first])
    }

    static func registry(agents n: Int) -> Registry {
        Registry(admitted: (1...n).map { Registry.Agent(info: AgentInfo(hostname: "h\($0)", id: AgentID(value: "old-S\($0)"), pid: "slave(1)@10.0.1.\($0):5051")) }, highestEpoch: 4)
    }

    static func reregister(_ h: inout MasterHarness, _ i: Int) {
        let pid = PID("slave(1)@10.0.1.\(i):5051")!
        h.message(.reregisterAgent(ReregisterAgentMessage(agent: AgentInfo(hostname: "h\(i)", id: AgentID(value: "old-S\(i)"), pid: pid.description))), from: pid)
    }

    /// 3 of 4 agents missing after the failover, with a 50% limit: the master exits, and the
    /// registry still has every agent for the next leader.
    @Test func tooManyAgentsMissingAfterAFailoverMakesTheMasterExitInsteadOfRemovingThem() {
        var settings = MasterSettings.fast
        settings.recoveryAgentRemovalLimit = 0.5
        var h = MasterHarness(registry: Self.registry(agents: 4), settings: settings)
        h.lead()
        Self.reregister(&h, 1)
        #expect(h.core.activeAgentIDs == [AgentID(value: "old-S1")])
        h.tick(.seconds(59))
        #expect(h.exited == nil)
        h.tick(.seconds(1))
        #expect(h.exited == .recoveryAgentRemovalLimit(missing: 3, registered: 4, limitPercent: 50))
        #expect(h.exited?.key == "recovery_agent_removal_limit")
        #expect(h.exited?.description.hasPrefix("Post-recovery agent removal limit exceeded") == true)
        #expect(h.registry?.admitted.count == 4 && h.registry?.removed.isEmpty == true, "nothing removed: the next leader tries again")
        #expect(Self.removals(h.observed).isEmpty)
    }

    /// At the limit (2 of 4 = 50%, not more): the missing agents are removed as usual.
    @Test func agentsMissingWithinTheLimitAreRemoved() {
        var settings = MasterSettings.fast
        settings.recoveryAgentRemovalLimit = 0.5
        var h = MasterHarness(registry: Self.registry(agents: 4), settings: settings)
        h.lead()
        Self.reregister(&h, 1)
        Self.reregister(&h, 2)
        h.tick(.seconds(60))
        #expect(h.exited == nil)
        #expect(h.registry.map { Set($0.removed.keys) } == [AgentID(value: "old-S3"), AgentID(value: "old-S4")])
    }

    /// After a failover, with 1/2secs: the three agents that did not re-register within the timeout
    /// are removed through the same limiter, one per permit (Mesos's recoveredSlavesTimeout), and
    /// one that re-registers while it waits for its permit is kept.
    @Test func afterAFailoverTheRateLimitSpacesTheRemovalsOfAgentsThatDidNotComeBack() {
        var settings = MasterSettings.fast
        settings.agentRemovalRateLimit = RemovalRateLimit(permits: 1, per: .seconds(2))
        var h = MasterHarness(registry: Self.registry(agents: 4), settings: settings)
        h.lead()
        Self.reregister(&h, 1)
        h.tick(.seconds(59))
        h.answerPings()
        #expect(h.registry?.removed.isEmpty == true)
        var removedAt: [AgentID: Duration] = [:]
        for step in 0..<100 {
            h.tick(.milliseconds(100))
            h.answerPings()
            if step == 15 { Self.reregister(&h, 4) }  // at 60.6 s: back before its permit (at 62 s for the third)
            for id in (h.registry?.removed.keys).map(Array.init) ?? [] where removedAt[id] == nil { removedAt[id] = h.now }
        }
        let (s2, s3, s4) = (AgentID(value: "old-S2"), AgentID(value: "old-S3"), AgentID(value: "old-S4"))
        #expect(h.observed.contains(.agentRemovalScheduled(s4, queued: 3, afterFailover: true)))
        #expect(Set(removedAt.keys) == [s2, s3], "\(removedAt)")
        if let a = removedAt[s2], let b = removedAt[s3] { #expect(b - a >= .seconds(2) && b - a < .milliseconds(2100), "\(b - a)") }
        #expect(h.core.activeAgentIDs.contains(s4) && h.core.activeAgentIDs.contains(AgentID(value: "old-S1")))
        #expect(h.core.metrics.agentRemovalsScheduled == 3)
        #expect(h.exited == nil)
    }

    /// The default, 100%: even when no agent comes back, they are removed and the master stays.
    @Test func byDefaultEvenAllAgentsMissingAreRemoved() {
        var h = MasterHarness(registry: Self.registry(agents: 4))
        h.lead()
        h.tick(.seconds(60))
        #expect(h.exited == nil)
        #expect(h.registry?.removed.count == 4 && h.registry?.admitted.isEmpty == true)
    }
}

@Suite struct RegistryGCTests {
    /// Removed agents at wall-clock seconds `times`, and one admitted agent (never pruned).
    static func harness(_ times: [Int64], settings: (inout MasterSettings) -> Void) -> MasterHarness {
        var s = MasterSettings.fast
        s.registryGCInterval = .seconds(10)
        settings(&s)
        var h = MasterHarness(settings: s, wallClockOrigin: .seconds(1000))
        var state = RegistryState(highestEpoch: 4, admitted: [AgentID(value: "live"): AgentInfo(hostname: "h", id: AgentID(value: "live"))])
        for (i, t) in times.enumerated() { state.removed[AgentID(value: "gone-\(i)")] = .seconds(t) }
        h.registry = state
        h.lead()
        return h
    }

    @Test func gcForgetsTheOldestRemovedAgentsAboveTheMaximumCount() {
        var h = Self.harness([300, 100, 500, 200, 400]) { $0.registryMaxAgentCount = 2 }
        h.tick(.seconds(9))
        #expect(h.registry?.removed.count == 5, "not before --registry_gc_interval")
        h.tick(.seconds(1))
        #expect(h.registry?.removed == [AgentID(value: "gone-2"): .seconds(500), AgentID(value: "gone-4"): .seconds(400)])
        #expect(h.registry?.admitted.keys.map(\.value) == ["live"])
        #expect(h.observed.contains(.registryPruned(byAge: 0, byCount: 3)))
        let deleted = h.changes.last.map { $0.agents.filter { $0.value == .delete }.keys.map(\.value).sorted() }
        #expect(deleted == ["gone-0", "gone-1", "gone-3"], "the write forgets exactly those znodes")
        h.tick(.seconds(10))
        #expect(h.registry?.removed.count == 2 && h.core.metrics.registryPruned == 3, "the next round has nothing to do")
    }

    @Test func gcForgetsRemovedAgentsOlderThanTheMaximumAge() {
        // At the first GC the wall clock reads 1010 s: ages 910, 610, 410, 110 s.
        var h = Self.harness([100, 400, 600, 900, 0]) { $0.registryMaxAgentAge = .seconds(500) }
        h.tick(.seconds(10))
        #expect(h.registry.map { Set($0.removed.keys.map(\.value)) } == ["gone-2", "gone-3", "gone-4"], "the unknown time (format 1) is never too old")
        #expect(h.observed.contains(.registryPruned(byAge: 2, byCount: 0)))
    }
}

/// Explicit reconciliation of tasks the master does not know, as Mesos's `_reconcileTasks`:
/// agent registered -> TASK_GONE, agent removed -> TASK_UNREACHABLE (with `unreachable_time`),
/// agent unknown -> TASK_UNKNOWN, agent (or, without an agent id, any agent) still expected back
/// -> no answer yet; TASK_LOST instead of each for frameworks that are not PARTITION_AWARE.
@Suite struct MasterReconciliationTests {
    static let recovering = AgentID(value: "old-S1"), removed = AgentID(value: "old-S2"), unknown = AgentID(value: "never-S9")

    static func failedOver() -> (MasterHarness, aware: FrameworkID, plain: FrameworkID, live: AgentID) {
        var h = MasterHarness(wallClockOrigin: .seconds(1000))
        h.registry = RegistryState(
            highestEpoch: 4, admitted: [recovering: AgentInfo(hostname: "h", id: recovering, pid: "slave(1)@10.0.3.1:5051")], removed: [removed: .seconds(500)])
        h.lead()
        let plain = h.registerFramework(P.scheduler)
        let aware = h.registerFramework(P.scheduler2, partitionAware: true)
        let live = h.registerAgent()
        _ = h.take()
        return (h, aware, plain, live)
    }

    static func ask(_ h: inout MasterHarness, _ fw: FrameworkID, from: PID, agent: AgentID?) -> [TaskStatus] {
        h.message(.reconcileTasks(ReconcileTasksMessage(frameworkID: fw, statuses: [TaskStatus(taskID: TaskID(value: "ghost"), state: .running, agentID: agent)])), from: from)
        return payloads(h.take(), to: from) { $0.statusUpdate?.update.status }
    }

    @Test func aPartitionAwareFrameworkGetsMesossDistinctions() {
        var (h, aware, _, live) = Self.failedOver()
        let gone = Self.ask(&h, aware, from: P.scheduler2, agent: live)
        #expect(gone.map(\.state) == [.gone] && gone.first?.message == "Reconciliation: Task is unknown to the agent")
        let unreachable = Self.ask(&h, aware, from: P.scheduler2, agent: Self.removed)
        #expect(unreachable.map(\.state) == [.unreachable] && unreachable.first?.unreachableTime == TimeInfo(nanoseconds: 500_000_000_000))
        #expect(Self.ask(&h, aware, from: P.scheduler2, agent: Self.unknown).map(\.state) == [.unknown])
        #expect(Self.ask(&h, aware, from: P.scheduler2, agent: Self.recovering).isEmpty, "its agent may still come back")
        #expect(Self.ask(&h, aware, from: P.scheduler2, agent: nil).isEmpty, "some agent may still come back")
        for status in gone + unreachable {
            #expect(status.reason == .reconciliation && status.source == .master && status.uuid == nil)
        }
        // The window closes: the recovering agent is removed, and the answers follow.
        h.tick(.seconds(60))
        #expect(Self.ask(&h, aware, from: P.scheduler2, agent: Self.recovering).map(\.state) == [.unreachable])
        #expect(Self.ask(&h, aware, from: P.scheduler2, agent: nil).map(\.state) == [.unknown])
    }

    @Test func otherFrameworksGetTaskLostForEachOfThem() {
        var (h, _, plain, live) = Self.failedOver()
        #expect(Self.ask(&h, plain, from: P.scheduler, agent: live).map(\.state) == [.lost])
        let unreachable = Self.ask(&h, plain, from: P.scheduler, agent: Self.removed)
        #expect(unreachable.map(\.state) == [.lost] && unreachable.first?.unreachableTime == TimeInfo(nanoseconds: 500_000_000_000), "with the time, as Mesos")
        #expect(Self.ask(&h, plain, from: P.scheduler, agent: Self.unknown).map(\.state) == [.lost])
        #expect(Self.ask(&h, plain, from: P.scheduler, agent: Self.recovering).isEmpty)
    }

    @Test func reasonAndStateNumbersAreMesoss() {
        #expect(TaskState.unreachable.rawValue == 10 && TaskState.gone.rawValue == 11 && TaskState.goneByOperator.rawValue == 12 && TaskState.unknown.rawValue == 13)
        #expect(TaskStatus.Reason.reconciliation.rawValue == 9 && TaskStatus.Reason.agentRemoved.rawValue == 11 && TaskStatus.Reason.agentRemovedByOperator.rawValue == 31)
        #expect(FrameworkInfo.Capability.Kind.partitionAware.rawValue == 5)
        // FrameworkInfo.capabilities is Mesos's field 10 (tag 0x52), Capability.type field 1.
        let bytes = FrameworkInfo(user: "u", name: "n", capabilities: [FrameworkInfo.Capability(type: .partitionAware)]).serializedBytes()
        #expect(Array(bytes.suffix(4)) == [0x52, 0x02, 0x08, 0x05], "\(bytes)")
    }
}
