import MesosCore
import MesosSimulation
import MesosWire
import Testing

/// DESIGN: "Removals obey `--agent_removal_rate_limit`; after a failover
/// `--recovery_agent_removal_limit` makes the master exit rather than remove too many."
@Suite struct SimulatedRemovalSafetyTests {
    /// Three agents cut from the master at once, 1/2secs: removed one by one, 2 s apart (virtual
    /// time, when each removal is in the registry); their tasks are LOST; all invariants hold.
    @Test func aRateLimitRemovesPartitionedAgentsOneByOne() throws {
        var settings = SimulationSettings()
        settings.agentRemovalRateLimit = RemovalRateLimit(permits: 1, per: .seconds(2))
        let s = Scenario(masters: 1, agents: 3, schedulers: 1, tasksPerScheduler: 3, settings: settings)
        try s.runUntilSteady()
        let agents = ["agent1", "agent2", "agent3"]
        let ids = try agents.map { try #require(s.agentID($0)) }
        for a in agents { s.partition(a, "master1", both: true) }
        var removedAt: [Duration] = []
        for n in 1...3 {
            try s.run(until: "\(n) agent(s) removed", timeout: .seconds(20)) { ($0.registry?.removed.count ?? 0) >= n }
            removedAt.append(s.now)
            #expect(s.registry?.removed.count == n, "one at a time")
        }
        #expect(s.registry.map { Set($0.removed.keys) } == Set(ids))
        let gaps = zip(removedAt.dropFirst(), removedAt).map { $0.0 - $0.1 }
        #expect(gaps.allSatisfy { $0 >= .milliseconds(1950) && $0 <= .milliseconds(2500) }, "\(gaps)")
        #expect(s.leaderCore?.metrics.agentRemovalsScheduled == 3)
        try s.run(until: "every task reported lost", timeout: .seconds(5)) { s in s.statuses(of: "scheduler1").filter { $0.state == .lost }.count >= 3 }
        s.heal()
        try s.run(until: "the removed agents told to shut down", timeout: .seconds(10)) { s in agents.allSatisfy { !s.isAlive($0) } }
        expectNoViolation(s)
    }

    /// Two of three agents cannot reach the masters after a failover, limit 50%: the new leader
    /// exits instead of removing them; once they can, a later leader has all three back.
    @Test func theRecoveryLimitMakesTheLeaderExitAndALaterLeaderKeepsTheAgents() throws {
        var settings = SimulationSettings()
        settings.agentReregisterTimeout = .seconds(3)
        settings.recoveryAgentRemovalLimit = 0.5
        let s = Scenario(masters: 3, agents: 3, schedulers: 1, tasksPerScheduler: 3, settings: settings)
        try s.runUntilSteady()
        let first = try #require(s.leader).name
        for a in ["agent2", "agent3"] {
            for m in ["master1", "master2", "master3"] where m != first { s.partition(a, m, both: true) }
        }
        s.kill(first)
        try s.run(until: "a new leader", timeout: .seconds(10)) { $0.leader.map { $0.name != first } ?? false }
        let second = try #require(s.leader).name
        try s.run(until: "the new leader exits", timeout: .seconds(10)) { !$0.isAlive(second) }
        #expect(s.exits(of: second).last == .recoveryAgentRemovalLimit(missing: 2, registered: 3, limitPercent: 50))
        #expect(s.registry?.removed.isEmpty == true && s.registry?.admitted.count == 3, "nothing removed")
        s.heal()
        try s.run(until: "a third leader with every agent back", timeout: .seconds(20)) { s in
            guard let l = s.leader, l.name != first, l.name != second else { return false }
            return s.leaderCore?.activeAgentIDs.count == 3
        }
        #expect(s.registry?.removed.isEmpty == true)
        #expect(s.runningTasks.count == 3, "the tasks run on")
        expectNoViolation(s)
    }

    /// One partition, two frameworks on the same agent: the PARTITION_AWARE one (scheduler2) is
    /// told TASK_UNREACHABLE with the time, the other TASK_LOST; both keep everything else.
    @Test func aPartitionAwareFrameworkSeesUnreachableAndAnotherLostForTheSamePartition() throws {
        let s = Scenario(masters: 1, agents: 1, schedulers: 2, tasksPerScheduler: 2)
        try s.runUntilSteady()
        let agentID = try #require(s.agentID("agent1"))
        let before = (s.statuses(of: "scheduler1").count, s.statuses(of: "scheduler2").count)
        s.partition("agent1", "master1", both: true)
        try s.run(until: "agent1 removed", timeout: .seconds(10)) { $0.registry?.removed[agentID] != nil }
        try s.run(until: "both told", timeout: .seconds(5)) { s in
            s.statuses(of: "scheduler1").dropFirst(before.0).count >= 2 && s.statuses(of: "scheduler2").dropFirst(before.1).count >= 2
        }
        let plain = s.statuses(of: "scheduler1").dropFirst(before.0), aware = s.statuses(of: "scheduler2").dropFirst(before.1)
        #expect(plain.map(\.state) == [.lost, .lost] && plain.allSatisfy { $0.reason == .agentRemoved })
        #expect(aware.map(\.state) == [.unreachable, .unreachable] && aware.allSatisfy { $0.reason == .agentRemoved && $0.unreachableTime != nil })
        expectNoViolation(s)
    }

    /// Random fault schedules with both safety nets on: every invariant still holds.
    @Test func randomSeedsWithARemovalRateLimitAndARecoveryLimitHoldEveryInvariant() {
        var settings = SimulationSettings()
        settings.agentRemovalRateLimit = RemovalRateLimit(permits: 1, per: .seconds(1))
        settings.recoveryAgentRemovalLimit = 0.5
        for seed in UInt64(1)...25 {
            let result = Simulation.run(seed: seed, settings: settings)
            #expect(result.violations.isEmpty, "seed \(seed): \(result.violations)\n\(result.faults)\n\(result.trace.suffix(40).joined(separator: "\n"))")
        }
    }
}
