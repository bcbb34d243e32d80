// Removal safety nets with real processes: `--agent_removal_rate_limit` (SIGSTOPped agents miss
// their health checks and are removed one permit at a time). Order and count are asserted here;
// the 2 s spacing is asserted in virtual time by the simulator and the core tests.
import Foundation
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Agent removal safety nets with real processes", .serialized, .timeLimit(.minutes(3)))
struct RemovalSafetyTests {
    @Test func aRateLimitOf1Per2SecsRemovesThreePartitionedAgentsOneByOne() async throws {
        try await withCluster { cluster in
            let master = try cluster.startMaster(extra: ["--agent_removal_rate_limit", "1/2secs"])
            try await master.daemon.waitFor("leading", timeout: .seconds(20))
            var agents: [Daemon] = []
            for _ in 0..<3 { agents.append(try cluster.startAgent()) }
            var ids: [String] = []
            for agent in agents { ids.append(try await cluster.agentID(of: agent)) }

            for agent in agents { agent.signal(SIGSTOP) }
            let pings = Knobs.agentPingTimeout * Knobs.maxAgentPingTimeouts
            try await master.daemon.waitFor("agent_removed", ["reason": "missed_pings"], moreThan: 2, timeout: pings + .seconds(4) + Knobs.margin)

            let scheduled = master.daemon.milestones("agent_removal_scheduled").compactMap { $0["agent_id"] }
            let removed = master.daemon.milestones("agent_removed").compactMap { $0["agent_id"] }
            #expect(Set(scheduled) == Set(ids) && scheduled.count == 3, "each waited for a permit: \(scheduled)")
            #expect(removed == scheduled, "removed one by one, in the order they failed: \(removed)")
            #expect(master.daemon.milestones("agent_removal_canceled").isEmpty)

            // Woken up, each is told to shut down: removed for good.
            for agent in agents { agent.signal(SIGCONT) }
            for agent in agents { try await agent.waitFor("exit", ["reason": "shut_down_by_master"], timeout: Knobs.sessionTimeout + Knobs.margin) }
            #expect(master.daemon.isRunning)
        }
    }

    /// The same partition (the agent SIGSTOPped past its health checks) as two frameworks see it:
    /// TASK_UNREACHABLE with unreachable_time for the PARTITION_AWARE one, TASK_LOST for the other.
    @Test func aPartitionAwareFrameworkSeesUnreachableAndAnotherLostForTheSamePartition() async throws {
        try await withCluster { cluster in
            let master = try cluster.startMaster()
            try await master.daemon.waitFor("leading", timeout: .seconds(20))
            let agent = try cluster.startAgent()
            let agentID = try await cluster.agentID(of: agent)
            let plain = try cluster.startFramework(tasks: 1)
            try await plain.waitFor("all_running", ["count": "1"], timeout: .seconds(30))
            let aware = try cluster.startFramework(tasks: 1, extra: ["--partition_aware"])
            try await aware.waitFor("all_running", ["count": "1"], timeout: .seconds(30))

            agent.signal(SIGSTOP)
            let pings = Knobs.agentPingTimeout * Knobs.maxAgentPingTimeouts
            try await master.daemon.waitFor("agent_removed", ["agent_id": agentID, "reason": "missed_pings"], timeout: pings + Knobs.margin)
            let lost = try await plain.waitFor("status", ["state": "TASK_LOST", "reason": "REASON_AGENT_REMOVED"], timeout: Knobs.margin)
            let unreachable = try await aware.waitFor("status", ["state": "TASK_UNREACHABLE", "reason": "REASON_AGENT_REMOVED"], timeout: Knobs.margin)
            #expect(unreachable["unreachable_time_ns"].flatMap { Int64($0) }.map { $0 > 1_600_000_000 * 1_000_000_000 } == true, "a wall-clock time: \(unreachable)")
            #expect(lost["agent_id"] == agentID && unreachable["agent_id"] == agentID)
            #expect(plain.milestones("status", ["state": "TASK_UNREACHABLE"]).isEmpty, "the framework that is not partition-aware never sees TASK_UNREACHABLE")
            #expect(aware.milestones("status", ["state": "TASK_LOST"]).isEmpty)

            agent.signal(SIGCONT)
            try await agent.waitFor("exit", ["reason": "shut_down_by_master"], timeout: Knobs.sessionTimeout + Knobs.margin)
        }
    }

    /// After a failover one agent of two (SIGSTOPped) is not back within --agent_reregister_timeout,
    /// above --recovery_agent_removal_limit 40%: the new leader exits instead of removing it. A
    /// later leader, with the agent awake again, gets both back and removes neither.
    @Test func theRecoveryLimitMakesTheLeaderExitAndALaterLeaderKeepsTheAgents() async throws {
        try await withCluster { cluster in
            let flags = ["--recovery_agent_removal_limit", "40%", "--agent_reregister_timeout", "4secs"]
            let first = try cluster.startMaster(extra: flags)
            try await first.daemon.waitFor("leading", timeout: .seconds(20))
            let second = try cluster.startMaster(extra: flags)
            try await second.daemon.waitFor("detector_leader", timeout: .seconds(20))
            let awake = try cluster.startAgent(), sleeper = try cluster.startAgent()
            let awakeID = try await cluster.agentID(of: awake), sleeperID = try await cluster.agentID(of: sleeper)

            sleeper.signal(SIGSTOP)
            first.daemon.signal(SIGKILL)
            try await second.daemon.waitFor("leading", ["agents_expected": "2"], timeout: Knobs.sessionTimeout + Knobs.margin)
            try await second.daemon.waitFor("agent_reregistered", ["agent_id": awakeID], timeout: Knobs.margin)
            try await second.daemon.waitFor("exit", ["reason": "recovery_agent_removal_limit"], timeout: .seconds(4) + Knobs.margin)
            #expect(await second.daemon.waitForExit() == 1)
            #expect(second.daemon.milestones("agent_removed").isEmpty && second.daemon.milestones("agents_not_reregistered").isEmpty, "it removed nobody")

            sleeper.signal(SIGCONT)
            let third = try cluster.startMaster(extra: flags)
            try await third.daemon.waitFor("leading", ["agents_expected": "2"], timeout: Knobs.sessionTimeout + Knobs.margin)
            for id in [awakeID, sleeperID] { try await third.daemon.waitFor("agent_reregistered", ["agent_id": id], timeout: Knobs.sessionTimeout + Knobs.margin) }
            // Both are back before its deadline: nothing is left for it to remove (the core tests show the deadline's rule).
            #expect(third.daemon.milestones("agent_removed").isEmpty)
            #expect(awake.isRunning && sleeper.isRunning && third.daemon.isRunning)
        }
    }
}
