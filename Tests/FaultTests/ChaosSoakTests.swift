// A bounded chaos soak: leader kills (SIGKILL and SIGTERM), ZooKeeper member kills and short
// master->agent partitions while a framework runs tasks, with a supervisor restarting masters that exit. FAULT_SOAK_SECONDS sets
// its length (default 60).
import FaultProxy
import Foundation
import MesosCore
import MesosHA
import Testing
@testable import TestSupport

extension FaultTests {
    @Suite struct ChaosSoakTests {
        static var duration: Duration {
            .seconds(Int(ProcessInfo.processInfo.environment["FAULT_SOAK_SECONDS"] ?? "") ?? 60)
        }

        @Test func leaderAndZooKeeperChaosLosesNothing() async throws {
            try await withCluster(.ensemble(size: 3)) { cluster in
                try await cluster.start(masters: 3, agents: 0, tasks: 0)
                // Agents behind proxies, for short partitions of the master's traffic to them.
                var agentProxies: [FaultProxy] = []
                for _ in 0..<2 {
                    let (agent, proxy) = try cluster.startProxiedAgent()
                    try await agent.waitFor("registered", timeout: .seconds(20))
                    agentProxies.append(proxy)
                }
                let fw = try cluster.startFramework(tasks: 4)
                try await fw.waitFor("all_running", ["count": "4"], timeout: .seconds(30))
                let tasks = cluster.allTaskPIDs
                #expect(tasks.count == 4)
                let seed = UInt64(ProcessInfo.processInfo.environment["FAULT_SOAK_SEED"] ?? "") ?? UInt64.random(in: 0...UInt64.max)
                report("chaos soak for \(Self.duration), seed \(seed) (FAULT_SOAK_SEED replays it)")
                var generator = SplitMix64(seed: seed)
                let end = ContinuousClock.now + Self.duration
                var actions: [String] = []
                while ContinuousClock.now < end {
                    _ = try cluster.superviseMasters()
                    switch Int.random(in: 0..<4, using: &generator) {
                    case 3:
                        // Shorter than the ping budget (3 × 500 ms): at most two pings are lost, so the
                        // agent must not be removed.
                        let i = Int.random(in: 0..<agentProxies.count, using: &generator)
                        let cut = Int64.random(in: 200...700, using: &generator)
                        agentProxies[i].blackhole()
                        try await Task.sleep(for: .milliseconds(cut))
                        agentProxies[i].heal()
                        actions.append("master->agent\(i + 1) partitioned for \(cut) ms")
                    case 0, 1:
                        guard let (leader, record) = try? await cluster.leader() else { break }
                        let signal = Bool.random(using: &generator) ? SIGKILL : SIGTERM
                        leader.daemon.signal(signal)
                        actions.append("\(signal == SIGKILL ? "SIGKILL" : "SIGTERM") leader \(record)")
                    default:
                        // One member at a time: the ensemble keeps its quorum.
                        let member = Int.random(in: 1...3, using: &generator)
                        await cluster.zk.stopMember(member)
                        try await Task.sleep(for: .milliseconds(Int64.random(in: 300...1500, using: &generator)))
                        try await cluster.zk.startMember(member)
                        actions.append("ZooKeeper member \(member) killed and restarted")
                    }
                    // Let the cluster settle a little (an election takes up to the session timeout).
                    let pause = Duration.milliseconds(Int64.random(in: 2500...4000, using: &generator))
                    let until = ContinuousClock.now + pause
                    while ContinuousClock.now < until {
                        _ = try cluster.superviseMasters()
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
                report("chaos: \(actions.count) actions: \(actions.joined(separator: "; "))")

                // A last leader kill, so everyone must re-register with the final leader.
                _ = try cluster.superviseMasters()
                var final: LeaderRecord?
                try await Poll.until("a leader after the chaos", timeout: .seconds(30), every: .milliseconds(200)) {
                    _ = try cluster.superviseMasters()
                    guard let (leader, record) = try? await cluster.leader() else { return false }
                    let since = ContinuousClock.now
                    leader.daemon.signal(SIGKILL)
                    let (_, next, _) = try await cluster.waitForNewLeader(after: record, since: since, timeout: .seconds(20))
                    final = next
                    return true
                }
                let leader = try #require(final)
                try await cluster.waitForAgentsReregistered(with: leader, timeout: .seconds(30))
                try await cluster.waitForFrameworkReregistered(with: leader, timeout: .seconds(30))

                #expect(cluster.lostTaskLines.isEmpty, "no task was lost: \(cluster.lostTaskLines)")
                #expect(cluster.allTaskPIDs == tasks, "the same task processes")
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.masters.allSatisfy { $0.daemon.milestones("agent_removed").isEmpty }, "no agent was removed")
                for agent in cluster.agents {
                    // An agent only ever follows newer leaders: a stale epoch is never accepted.
                    let epochs = Cluster.registeredEpochs(of: agent)
                    #expect(epochs == epochs.sorted(), "\(agent.name) registered with epochs \(epochs)")
                    #expect(agent.isRunning)
                }
            }
        }
    }
}
