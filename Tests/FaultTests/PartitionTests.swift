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
            try await master.daemon.waitFor("leading", timeout: .seconds(20))
            let (agent, toAgent) = try cluster.startProxiedAgent(extra: agentMasterPingTimeout + ["--log_level", "debug"])
            let id = try await cluster.agentID(of: agent)
            let fw = try cluster.startFramework(tasks: 2)
            try await fw.waitFor("all_running", ["count": "2"], timeout: .seconds(30))
            return (master, toMaster, agent, toAgent, fw, id)
        }

        /// After a cut: the master removed the agent, the framework got TASK_LOST for both tasks,
        /// and once the link works the agent is told to shut down and never re-admitted.
        func expectRemovedAndShutDown(_ cluster: Cluster, master: Master, agent: Daemon, framework: Daemon, agentID: String,
                                      heal: () -> Void, since cut: ContinuousClock.Instant) async throws {
            try await master.daemon.waitFor("agent_removed", ["agent_id": agentID, "reason": "missed_pings"], timeout: pingBudget + Knobs.margin)
            report("agent \(agentID) removed \(seconds(ContinuousClock.now - cut)) after the cut")
            try await Poll.until("TASK_LOST for both tasks", timeout: Knobs.margin) {
                framework.milestones("status", ["state": "TASK_LOST"]).count == 2
            }
            heal()
            report("healed; proxies: \(cluster.proxies.map { "\($0.port)->\($0.targetPort) \($0.statistics)" })")
            defer { report("proxies: \(cluster.proxies.map { "\($0.port)->\($0.targetPort) \($0.statistics)" })") }
            // The removal's ShutdownMessage was lost in the cut; the healed agent's next message gets another.
            try await agent.waitFor("exit", ["reason": "shut_down_by_master"], timeout: .seconds(10))
            let status = await agent.waitForExit(timeout: .seconds(10))
            #expect(status != nil, "the removed agent exits")
            #expect(master.daemon.milestones("agent_reregistered", ["agent_id": agentID]).isEmpty, "a removed agent is never re-admitted")
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
                try await master.daemon.waitFor("leading", timeout: .seconds(20))
                let zkProxy = try cluster.zooKeeperProxy()
                let agent = try cluster.startAgent(master: cluster.url(through: zkProxy), extra: ["--log_level", "debug"])
                let id = try await cluster.agentID(of: agent)
                let fw = try cluster.startFramework(tasks: 2)
                try await fw.waitFor("all_running", ["count": "2"], timeout: .seconds(30))
                let tasks = cluster.allTaskPIDs
                let masterPID = try await cluster.busPID(of: master.daemon)

                let cut = ContinuousClock.now
                zkProxy.blackhole()
                try await agent.waitFor("masterless", timeout: Knobs.sessionTimeout + Knobs.margin)
                report("agent master-less \(seconds(ContinuousClock.now - cut)) after the ZooKeeper cut")
                // The master keeps pinging; the agent ignores it (and says so).
                try await agent.waitFor("message_dropped", ["from": masterPID, "reason": "no_leader"], timeout: .seconds(5))
                #expect(agent.milestones("reregistered").isEmpty, "no registration while master-less")

                let healed = ContinuousClock.now
                zkProxy.heal()
                try await agent.waitFor("reregistered", ["master": masterPID], timeout: .seconds(30))
                report("agent re-registered \(seconds(ContinuousClock.now - healed)) after healing")
                try await master.daemon.waitFor("agent_reregistered", ["agent_id": id], timeout: .seconds(5))
                #expect(master.daemon.milestones("agent_removed").isEmpty)
                #expect(cluster.allTaskPIDs == tasks)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }

        @Test func leaderCutFromZooKeeperIsReplacedAndCommitsSuicide() async throws {
            try await withCluster { cluster in
                let zkProxy = try cluster.zooKeeperProxy()
                let old = try cluster.startMaster(zk: cluster.url(through: zkProxy))
                try await old.daemon.waitFor("leading", timeout: .seconds(20))
                let standby = try cluster.startMaster()
                try await standby.daemon.waitFor("detector_leader", timeout: .seconds(20))
                for _ in 0..<2 { try await cluster.startAgent().waitFor("registered", timeout: .seconds(20)) }
                let fw = try cluster.startFramework(tasks: 3)
                try await fw.waitFor("all_running", ["count": "3"], timeout: .seconds(30))
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
                #expect(!old.daemon.milestones("exit", ["reason": "lost_leadership"]).isEmpty)
                report("old leader exited \(seconds(ContinuousClock.now - cut)) after the cut")
                try await cluster.waitForAgentsReregistered(with: newRecord)
                try await cluster.waitForFrameworkReregistered(with: newRecord)
                zkProxy.heal()
                #expect(cluster.allTaskPIDs == tasks)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }

        /// One agent with 2 cpus, a framework of 3 one-cpu tasks: two run, the third waits for room.
        /// Killing a task's process then makes room, and the third is launched: proof that offers
        /// reach the scheduler and its calls reach the master.
        func waitingFramework(_ cluster: Cluster, proxied: Bool) async throws -> (Daemon, FaultProxy?) {
            try await cluster.startAgent(extra: ["--resources", "cpus:2;mem:1024"]).waitFor("registered", timeout: .seconds(20))
            let (fw, proxy): (Daemon, FaultProxy?) = proxied
                ? try cluster.startProxiedFramework(tasks: 3, taskCPUs: 1)
                : (try cluster.startFramework(tasks: 3, taskCPUs: 1), nil)
            for task in ["task-1", "task-2"] { try await fw.waitFor("status", ["task_id": task, "state": "TASK_RUNNING"], timeout: .seconds(30)) }
            return (fw, proxy)
        }

        func expectTheThirdTaskLaunchedAfterMakingRoom(_ cluster: Cluster, _ fw: Daemon) async throws {
            let victim = try #require(cluster.allTaskPIDs.first { $0.key.hasSuffix("/task-1") }?.value)
            _ = kill(victim, SIGKILL)
            try await fw.waitFor("status", ["task_id": "task-1", "state": "TASK_FAILED"], timeout: .seconds(20))
            try await fw.waitFor("status", ["task_id": "task-3", "state": "TASK_RUNNING"], timeout: .seconds(20))
        }

        @Test func schedulerCutFromTheMasterKeepsItsTasks() async throws {
            try await withCluster { cluster in
                // Frameworks and agents both reach the master through its proxy: the ping budget is
                // made longer than the cut so that only the scheduler's side matters here.
                let (master, toMaster) = try cluster.startProxiedMaster(extra: longPingBudget)
                try await master.daemon.waitFor("leading", timeout: .seconds(20))
                let (fw, _) = try await waitingFramework(cluster, proxied: false)
                let tasks = cluster.allTaskPIDs

                // Scheduler -> master reset (its link breaks), then a silent cut of 2 s.
                toMaster.reset()
                try await Poll.until("the reset reached the connections", timeout: .seconds(10)) { toMaster.statistics.resets > 0 }
                toMaster.heal()
                toMaster.blackhole()
                try await Task.sleep(for: .seconds(2))  // the length of the cut, not a wait for an outcome
                toMaster.heal()
                // The framework keeps working after the heal.
                try await expectTheThirdTaskLaunchedAfterMakingRoom(cluster, fw)
                #expect(fw.isRunning && fw.milestones("error").isEmpty)
                #expect(master.daemon.isRunning && master.daemon.milestones("agent_removed").isEmpty)
                let kept = tasks.filter { $0.key.hasSuffix("/task-2") }
                #expect(kept.count == 1 && kept.allSatisfy { Cluster.isTaskRunning($0.value) }, "task-2 runs on in the same process")
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }

        /// The master's link to the scheduler breaks: the framework is disconnected (its offers go
        /// back to the pool), told so on a new connection, re-registers and carries on.
        @Test func masterToSchedulerCutDisconnectsTheFrameworkUntilItReregisters() async throws {
            try await withCluster { cluster in
                let master = try cluster.startMaster()
                try await master.daemon.waitFor("leading", timeout: .seconds(20))
                let (fw, proxy) = try await waitingFramework(cluster, proxied: true)
                let toScheduler = try #require(proxy)
                let tasks = cluster.allTaskPIDs
                let frameworkID = try await fw.waitFor("registered")["framework_id"] ?? ""

                toScheduler.blackhole()
                try await Task.sleep(for: .seconds(2))  // the length of the cut
                toScheduler.heal()
                toScheduler.reset()
                try await master.daemon.waitFor("framework_disconnected", ["framework_id": frameworkID], timeout: .seconds(15))
                toScheduler.heal()
                try await fw.waitFor("reregistered", ["framework_id": frameworkID], timeout: .seconds(15))
                #expect(toScheduler.statistics.accepted > 1, "the master reconnected to the scheduler")
                try await expectTheThirdTaskLaunchedAfterMakingRoom(cluster, fw)
                #expect(fw.isRunning && master.daemon.isRunning)
                #expect(master.daemon.milestones("framework_removed").isEmpty)
                let kept = tasks.filter { $0.key.hasSuffix("/task-2") }
                #expect(kept.count == 1 && kept.allSatisfy { Cluster.isTaskRunning($0.value) }, "task-2 runs on in the same process")
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }
    }
}
