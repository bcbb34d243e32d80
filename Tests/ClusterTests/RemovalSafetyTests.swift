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
}
