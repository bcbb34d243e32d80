// Partitions through fault proxies: agent<->master (both ways and each way alone), agent<->ZooKeeper,
// leading master<->ZooKeeper, scheduler<->master. DESIGN.md "Behaviour that must hold".
import FaultProxy
import Foundation
import Testing
@testable import TestSupport

/// The master's removal budget: `max_agent_ping_timeouts` pings, `agent_ping_timeout` apart.
let pingBudget = Knobs.agentPingTimeout * Knobs.maxAgentPingTimeouts
/// Agents in these tests re-register after this long without pings (so that after a heal a removed
/// agent talks to the master again and is told to shut down), well above the ping budget.
let agentMasterPingTimeout = ["--master_ping_timeout", "5secs"]
/// A ping budget longer than a ZooKeeper cut, for the tests where the master must not remove the agent.
let longPingBudget = ["--agent_ping_timeout", "1secs", "--max_agent_ping_timeouts", "20"]

extension FaultTests {
    @Suite struct PartitionTests {
        /// A leader behind a proxy, one agent behind a proxy, and a framework running 2 tasks.
        func proxiedCluster(_ cluster: Cluster, masterExtra: [String] = []) async throws
            -> (master: Master, toMaster: FaultProxy, agent: Daemon, toAgent: FaultProxy, framework: Daemon, agentID: String)
        {
            let (master, toMaster) = try cluster.startProxiedMaster(extra: ["--log_level", "debug"] + masterExtra)
            try await master.daemon.waitForLog("leading at epoch", timeout: .seconds(20))
            let (agent, toAgent) = try cluster.startProxiedAgent(extra: agentMasterPingTimeout + ["--log_level", "debug"])
            let id = try await cluster.agentID(of: agent)
            let fw = try cluster.startFramework(tasks: 2)
            try await fw.waitForLog("ALL_RUNNING 2", timeout: .seconds(30))
            return (master, toMaster, agent, toAgent, fw, id)
        }

        /// After a cut: the master removed the agent, the framework got TASK_LOST for both tasks,
        /// and once the link works the agent is told to shut down and never re-admitted.
        func expectRemovedAndShutDown(_ cluster: Cluster, master: Master, agent: Daemon, framework: Daemon, agentID: String,
                                      heal: () -> Void, since cut: ContinuousClock.Instant) async throws {
            try await master.daemon.waitForLog("removing agent \(agentID)", timeout: pingBudget + Knobs.margin)
            report("agent \(agentID) removed \(seconds(ContinuousClock.now - cut)) after the cut")
            try await Poll.until("TASK_LOST for both tasks", timeout: Knobs.margin) {
                framework.lines.filter { $0.contains("state=TASK_LOST") }.count == 2
            }
            heal()
            report("healed; proxies: \(cluster.proxies.map { "\($0.port)->\($0.targetPort) \($0.statistics)" })")
            defer { report("proxies: \(cluster.proxies.map { "\($0.port)->\($0.targetPort) \($0.statistics)" })") }
            // The removal's ShutdownMessage was lost in the cut; the healed agent's next message gets another.
            try await agent.waitForLog("shutting down at the master's request", timeout: .seconds(10))
            let status = await agent.waitForExit(timeout: .seconds(10))
            #expect(status != nil, "the removed agent exits")
            #expect(!master.daemon.lines.contains { $0.contains("agent \(agentID) at") && $0.hasSuffix("re-registered") },
                    "a removed agent is never re-admitted")
            #expect(master.daemon.isRunning)
        }

        @Test func agentMasterCutBothWaysRemovesTheAgent() async throws {
            try await withCluster { cluster in
                let c = try await proxiedCluster(cluster)
                let cut = ContinuousClock.now
                c.toMaster.blackhole()
                c.toAgent.blackhole()
                try await expectRemovedAndShutDown(cluster, master: c.master, agent: c.agent, framework: c.framework, agentID: c.agentID,
                                                   heal: { c.toMaster.heal(); c.toAgent.heal() }, since: cut)
            }
        }

        @Test func pingsNeverArriveRemovesTheAgent() async throws {
            try await withCluster { cluster in
                let c = try await proxiedCluster(cluster)
                let cut = ContinuousClock.now
                c.toAgent.blackhole(.clientToServer)  // master -> agent
                try await expectRemovedAndShutDown(cluster, master: c.master, agent: c.agent, framework: c.framework, agentID: c.agentID,
                                                   heal: { c.toAgent.heal() }, since: cut)
            }
        }

        @Test func pongsNeverArriveRemovesTheAgent() async throws {
            try await withCluster { cluster in
                let c = try await proxiedCluster(cluster)
                let cut = ContinuousClock.now
                // agent -> master (the framework's calls to the master share this proxy; it only gets updates here).
                c.toMaster.blackhole(.clientToServer)
                try await expectRemovedAndShutDown(cluster, master: c.master, agent: c.agent, framework: c.framework, agentID: c.agentID,
                                                   heal: { c.toMaster.heal() }, since: cut)
            }
        }

        @Test func agentCutFromZooKeeperIsMasterlessThenReregistersWithItsTasks() async throws {
            try await withCluster { cluster in
                let master = try cluster.startMaster(extra: longPingBudget)
                try await master.daemon.waitForLog("leading at epoch", timeout: .seconds(20))
                let zkProxy = try cluster.zooKeeperProxy()
                let agent = try cluster.startAgent(master: cluster.url(through: zkProxy), extra: ["--log_level", "debug"])
                let id = try await cluster.agentID(of: agent)
                let fw = try cluster.startFramework(tasks: 2)
                try await fw.waitForLog("ALL_RUNNING 2", timeout: .seconds(30))
                let tasks = cluster.allTaskPIDs

                let cut = ContinuousClock.now
                zkProxy.blackhole()
                try await agent.waitForLog("master-less", timeout: Knobs.sessionTimeout + Knobs.margin)
                report("agent master-less \(seconds(ContinuousClock.now - cut)) after the ZooKeeper cut")
                let masterless = agent.lines.count
                // The master keeps pinging; the agent ignores it.
                try await Poll.until("the agent ignoring the master's pings", timeout: .seconds(5)) {
                    agent.lines.dropFirst(masterless).contains { $0.contains("dropped message from master@") && $0.contains("no leader detected") }
                }
                #expect(!agent.lines.dropFirst(masterless).contains { $0.contains("registered with master@") })

                let healed = ContinuousClock.now
                zkProxy.heal()
                try await Poll.until("the agent re-registered", timeout: .seconds(30)) {
                    agent.lines.dropFirst(masterless).contains { $0.contains("re-registered with master@") }
                }
                report("agent re-registered \(seconds(ContinuousClock.now - healed)) after healing")
                try await master.daemon.waitForLog("agent \(id) at", timeout: .seconds(5))
                #expect(master.daemon.lines.contains { $0.contains("agent \(id) at") && $0.hasSuffix("re-registered") })
                #expect(!master.daemon.log.contains("removing agent"))
                #expect(cluster.allTaskPIDs == tasks)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }

        @Test func leaderCutFromZooKeeperIsReplacedAndCommitsSuicide() async throws {
            try await withCluster { cluster in
                let zkProxy = try cluster.zooKeeperProxy()
                let old = try cluster.startMaster(zk: cluster.url(through: zkProxy))
                try await old.daemon.waitForLog("leading at epoch", timeout: .seconds(20))
                let standby = try cluster.startMaster()
                try await standby.daemon.waitForLog("detected leader", timeout: .seconds(20))
                for _ in 0..<2 { try await cluster.startAgent().waitForLog("registered with master@", timeout: .seconds(20)) }
                let fw = try cluster.startFramework(tasks: 3)
                try await fw.waitForLog("ALL_RUNNING 3", timeout: .seconds(30))
                let (leader, record) = try await cluster.leader()
                #expect(leader.slot == old.slot)
                let tasks = cluster.allTaskPIDs

                let cut = ContinuousClock.now
                zkProxy.blackhole()
                let (successor, newRecord, elapsed) = try await cluster.waitForNewLeader(
                    after: record, since: cut, timeout: Knobs.sessionTimeout * 2 + Knobs.margin)
                #expect(successor.slot == standby.slot)
                report("\(newRecord) leads \(seconds(elapsed)) after the old leader was cut from ZooKeeper")
                let status = await old.daemon.waitForExit(timeout: Knobs.sessionTimeout * 2 + Knobs.margin)
                #expect(status == 1)
                #expect(old.daemon.log.contains("committing suicide"))
                report("old leader exited \(seconds(ContinuousClock.now - cut)) after the cut")
                try await cluster.waitForAgentsReregistered(with: newRecord)
                try await cluster.waitForFrameworkReregistered(with: newRecord)
                zkProxy.heal()
                #expect(cluster.allTaskPIDs == tasks)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }

        @Test func schedulerCutFromTheMasterKeepsItsTasks() async throws {
            try await withCluster { cluster in
                // Frameworks and agents both reach the master through its proxy: the ping budget is
                // made longer than the cut so that only the scheduler's side matters here.
                let (master, toMaster) = try cluster.startProxiedMaster(extra: longPingBudget)
                try await master.daemon.waitForLog("leading at epoch", timeout: .seconds(20))
                try await cluster.startAgent().waitForLog("registered with master@", timeout: .seconds(20))
                let fw = try cluster.startFramework(tasks: 2)
                try await fw.waitForLog("ALL_RUNNING 2", timeout: .seconds(30))
                let tasks = cluster.allTaskPIDs

                // Scheduler -> master reset: its calls (declines) fail, its link breaks.
                toMaster.reset()
                try await Task.sleep(for: .seconds(2))
                toMaster.heal()
                // And a silent cut (blackhole) of the same length.
                let offersBefore = fw.lines.count
                toMaster.blackhole()
                try await Task.sleep(for: .seconds(2))
                toMaster.heal()
                // The framework keeps working: it still gets offers (and declines them) after the heal.
                try await Poll.until("the framework still gets offers", timeout: .seconds(15)) {
                    master.daemon.lines.count > 0 && fw.isRunning && fw.lines.count >= offersBefore
                }
                try await Task.sleep(for: .seconds(2))
                #expect(fw.isRunning)
                #expect(!fw.log.contains("ERROR"))
                #expect(master.daemon.isRunning)
                #expect(!master.daemon.log.contains("removing agent"))
                #expect(cluster.allTaskPIDs == tasks)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }

        @Test func masterToSchedulerCutLosesOffersButNotTheFramework() async throws {
            try await withCluster { cluster in
                let master = try cluster.startMaster()
                try await master.daemon.waitForLog("leading at epoch", timeout: .seconds(20))
                try await cluster.startAgent().waitForLog("registered with master@", timeout: .seconds(20))
                let (fw, toScheduler) = try cluster.startProxiedFramework(tasks: 2)
                try await fw.waitForLog("ALL_RUNNING 2", timeout: .seconds(30))
                let tasks = cluster.allTaskPIDs

                // Offers and updates to the scheduler vanish for 2 s, then the connection is reset.
                toScheduler.blackhole()
                try await Task.sleep(for: .seconds(2))
                toScheduler.heal()
                // The master gives the possibly lost offers back and offers again on a new connection:
                // a task launched now still runs.
                let before = fw.lines.count
                toScheduler.reset()
                try await Task.sleep(for: .milliseconds(300))
                toScheduler.heal()
                try await Poll.until("offers reach the scheduler again", timeout: .seconds(15)) {
                    master.daemon.lines.contains { $0.contains("rescind") } || fw.lines.count > before || toScheduler.statistics.accepted > 1
                }
                #expect(toScheduler.statistics.accepted > 1, "the master reconnected to the scheduler")
                #expect(fw.isRunning && master.daemon.isRunning)
                #expect(master.daemon.log.contains("offers are rescinded"), "the possibly lost offers went back to the pool")
                #expect(cluster.allTaskPIDs == tasks)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }
    }
}
