import Foundation
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Agent restarts with real processes (issue: tasks survive agent restarts): checkpointed
/// executors outlive a SIGKILLed or SIGTERMed agent and the restarted agent takes them back;
/// what happened while it was down is reported; `--recover=cleanup`, corrupt checkpoints,
/// SIGUSR1, frameworks that do not checkpoint.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct AgentRestartTests {
    /// One master, one agent, and a checkpointing framework with `tasks` running tasks; their pids.
    private func runningCheckpointedTasks(_ cluster: Cluster, tasks: Int = 2, command: String = "sleep 100000", masters: Int = 1, extra: [String] = []) async throws -> (Daemon, Daemon, [String: pid_t]) {
        // A 30 s ping budget: these agents are down on purpose (twice in some tests) and must come back
        // as the same agent; on a loaded machine 1.5 s is not enough for two restarts.
        try await cluster.start(masters: masters, agents: 1, tasks: 0, maxAgentPingTimeouts: 60)
        let fw = try cluster.startFramework(tasks: tasks, command: command, extra: ["--checkpoint", "--stop_on_sigterm_without_failover"] + extra)
        try await fw.waitFor("all_running", ["count": "\(tasks)"], timeout: .seconds(30))
        let agent = cluster.agents[0]
        var pids: [String: pid_t] = [:]
        try await Poll.until("the executors report their tasks' pids", timeout: .seconds(10)) {
            pids = cluster.taskPIDs(of: agent)
            return pids.count == tasks
        }
        return (agent, fw, pids)
    }

    private func alive(_ pids: [String: pid_t]) -> [String] { pids.filter { Cluster.isTaskRunning($0.value) }.keys.sorted() }

    /// The restarted agent re-registered with every executor back; the master knows its tasks.
    private func waitForRecovery(_ agent: Daemon, executors: Int, cluster: Cluster) async throws {
        try await agent.waitFor("executors_reconnected", ["executors": "\(executors)", "timed_out": "0"], timeout: .seconds(20))
        try await agent.waitFor("reregistered", timeout: .seconds(20))
        let (leader, _) = try await cluster.leader()
        try await leader.daemon.waitFor("agent_reregistered", ["tasks": "\(executors)"], moreThan: 0, timeout: .seconds(20))
    }

    /// After the kill, the framework hears TASK_KILLED for every task and the processes are gone.
    private func killAll(_ fw: Daemon, _ pids: [String: pid_t]) async throws {
        fw.signal(SIGTERM)  // --stop_on_sigterm_without_failover: unregister, the master kills the tasks
        try await Poll.until("every task process gone", timeout: .seconds(20)) { alive(pids).isEmpty }
    }

    @Test func sigkillOfTheAgentLeavesCheckpointedTasksRunningAndTheRestartedAgentTakesThemBack() async throws {
        try await withCluster { cluster in
            let (agent, fw, pids) = try await runningCheckpointedTasks(cluster)
            let agentID = try await cluster.agentID(of: agent)
            await agent.kill()
            #expect(alive(pids) == pids.keys.sorted(), "the tasks outlive the agent")
            let restarted = try cluster.restartAgent(agent)
            try await waitForRecovery(restarted, executors: 2, cluster: cluster)
            #expect(alive(pids) == pids.keys.sorted(), "the same processes run")
            #expect(restarted.milestones("executor_launched").isEmpty, "nothing was launched again")
            #expect(restarted.milestones("reregistered").first?["agent_id"] == agentID, "the same agent id")
            // A kill afterwards (KillTask, from the framework) reaches them through the restarted agent.
            fw.signal(SIGUSR1)
            for task in ["task-1", "task-2"] { try await fw.waitFor("status", ["task_id": task, "state": "TASK_KILLED"], timeout: .seconds(20)) }
            try await Poll.until("every task process gone", timeout: .seconds(10)) { alive(pids).isEmpty }
            // What the framework heard of each task, in order: it never saw anything but RUNNING before the kill.
            for task in ["task-1", "task-2"] {
                let states = fw.milestones("status", ["task_id": task]).compactMap { $0["state"] }
                #expect(states.last == "TASK_KILLED" && states.dropLast().allSatisfy { $0 == "TASK_RUNNING" || $0 == "TASK_STARTING" }, "\(task): \(states)")
            }
        }
    }

    @Test func sigtermOfTheAgentLeavesCheckpointedTasksRunningToo() async throws {
        try await withCluster { cluster in
            let (agent, fw, pids) = try await runningCheckpointedTasks(cluster)
            agent.signal(SIGTERM)
            #expect(await agent.waitForExit(timeout: .seconds(15)) == 0)
            #expect(agent.milestones("stopping", ["checkpointed_executors_kept": "2"]).count == 1)
            #expect(alive(pids) == pids.keys.sorted())
            let restarted = try cluster.restartAgent(agent)
            try await waitForRecovery(restarted, executors: 2, cluster: cluster)
            #expect(alive(pids) == pids.keys.sorted())
            try await killAll(fw, pids)
        }
    }

    @Test func aTaskThatEndsWhileTheAgentIsDownIsReportedAfterTheRestartWithItsExitStatus() async throws {
        try await withCluster { cluster in
            let go = cluster.directory.appending(path: "go").path
            let (agent, fw, pids) = try await runningCheckpointedTasks(cluster, tasks: 1, command: "while [ ! -e \(go) ]; do sleep 0.05; done; exit 3")
            await agent.kill()
            try Data().write(to: URL(fileURLWithPath: go))
            let executor = try #require(agent.launchedExecutors.first)
            try await executor.waitFor("task_exited", ["status": "exited with status 3"], timeout: .seconds(10))
            let restarted = try cluster.restartAgent(agent)
            try await restarted.waitFor("executors_reconnected", ["executors": "1", "timed_out": "0"], timeout: .seconds(20))
            let failed = try await fw.waitFor("status", ["task_id": "task-1", "state": "TASK_FAILED"], timeout: .seconds(20))
            #expect(failed["reason"] == nil, "the command's own failure, not a lost executor: \(failed.line)")
            let update = try await restarted.waitFor("status_update", ["task_id": "task-1", "state": "TASK_FAILED"])
            #expect(update["source"] == "SOURCE_EXECUTOR" && update.line.contains("Command exited with status 3"), "\(update.line)")
            #expect(alive(pids).isEmpty)
        }
    }

    @Test func anExecutorKilledWhileTheAgentIsDownFailsItsTaskAfterTheRestart() async throws {
        try await withCluster { cluster in
            let (agent, fw, pids) = try await runningCheckpointedTasks(cluster, tasks: 1)
            await agent.kill()
            let executor = try #require(agent.launchedExecutors.first)
            kill(executor.process, SIGKILL)
            try await Poll.until("the executor process gone", timeout: .seconds(10)) { !executor.isRunning }
            let restarted = try cluster.restartAgent(agent)
            let failed = try await fw.waitFor("status", ["task_id": "task-1", "state": "TASK_FAILED"], timeout: .seconds(20))
            #expect(failed["reason"] == "REASON_EXECUTOR_TERMINATED", "\(failed.line)")
            try await Poll.until("the task left behind by its executor is killed", timeout: .seconds(10)) { alive(pids).isEmpty }
            #expect(restarted.milestones("recovered", ["executors": "1", "live": "0"]).count == 1)
        }
    }

    /// An executor that is alive but does not answer (SIGSTOP) after the restart: killed after
    /// `--executor_reregistration_timeout`, its task LOST with REASON_EXECUTOR_REREGISTRATION_TIMEOUT.
    @Test func anExecutorThatDoesNotReregisterInTimeIsKilledAndItsTaskLost() async throws {
        try await withCluster { cluster in
            let (agent, fw, pids) = try await runningCheckpointedTasks(cluster, tasks: 1)
            await agent.kill()
            let executor = try #require(agent.launchedExecutors.first)
            kill(executor.process, SIGSTOP)
            let restarted = try cluster.restartAgent(agent, extra: ["--executor_reregistration_timeout", "1secs"])
            try await restarted.waitFor("executors_reconnected", ["executors": "0", "timed_out": "1"], timeout: .seconds(20))
            let lost = try await fw.waitFor("status", ["task_id": "task-1", "state": "TASK_LOST"], timeout: .seconds(20))
            #expect(lost["reason"] == "REASON_EXECUTOR_REREGISTRATION_TIMEOUT", "\(lost.line)")
            try await Poll.until("the stopped executor and its task are killed", timeout: .seconds(10)) { alive(pids).isEmpty && !executor.isRunning }
        }
    }

    @Test func aMasterFailoverWhileTheAgentIsDownFindsTheTasksWhenItComesBack() async throws {
        try await withCluster { cluster in
            let (agent, fw, pids) = try await runningCheckpointedTasks(cluster, masters: 2)
            await agent.kill()
            let (old, oldLeader) = try await cluster.leader()
            await old.daemon.kill()
            let (_, newLeader, _) = try await cluster.waitForNewLeader(after: oldLeader, since: .now, timeout: Knobs.sessionTimeout + Knobs.margin)
            try await cluster.waitForFrameworkReregistered(with: newLeader)
            let restarted = try cluster.restartAgent(agent)
            try await restarted.waitFor("reregistered", ["epoch": "\(newLeader.epoch)"], timeout: .seconds(30))
            let (leader, _) = try await cluster.leader()
            try await leader.daemon.waitFor("agent_reregistered", ["tasks": "2"], timeout: .seconds(10))
            #expect(alive(pids) == pids.keys.sorted())
            fw.signal(SIGUSR1)
            for task in ["task-1", "task-2"] { try await fw.waitFor("status", ["task_id": task, "state": "TASK_KILLED"], timeout: .seconds(20)) }
            #expect(fw.milestones("status").filter { ["TASK_LOST", "TASK_FAILED"].contains($0["state"] ?? "") }.isEmpty)
        }
    }

    @Test func recoverCleanupKillsTheCheckpointedExecutorsAndExits() async throws {
        try await withCluster { cluster in
            let (agent, _, pids) = try await runningCheckpointedTasks(cluster)
            await agent.kill()
            let restarted = try cluster.restartAgent(agent, extra: ["--recover", "cleanup"])
            #expect(await restarted.waitForExit(timeout: .seconds(20)) == 0)
            #expect(restarted.milestones("exit", ["reason": "recovery_cleaned_up"]).count == 1)
            try await Poll.until("its executors' tasks are gone", timeout: .seconds(10)) { alive(pids).isEmpty }
        }
    }

    @Test func aCorruptCheckpointStopsAStrictAgentAndIsSkippedByALenientOne() async throws {
        try await withCluster { cluster in
            let (agent, _, pids) = try await runningCheckpointedTasks(cluster, tasks: 1)
            await agent.kill()
            let meta = cluster.workDirectory(of: agent).appending(path: "meta").path
            let updates = try #require(FileManager.default.enumerator(atPath: meta)?.compactMap { $0 as? String }.first { $0.hasSuffix("task.updates") })
            let path = meta + "/" + updates
            try Data([0xff, 0xff, 0xff, 0x7f, 1, 2, 3]).write(to: URL(fileURLWithPath: path))

            let strict = try cluster.restartAgent(agent)
            #expect(await strict.waitForExit(timeout: .seconds(20)) == 1)
            let failure = try #require(strict.milestones("recovery_failed").first)
            #expect(failure["path"] == path, "\(failure.line)")
            #expect(alive(pids).count == 1, "a refused start touches nothing")

            // Without --strict: the entry is skipped and reported; its executor cannot be trusted to
            // be recovered, so it is killed and the task reported FAILED once it is gone.
            let fw = try #require(cluster.framework)
            let lenient = try cluster.restartAgent(agent, extra: ["--strict=false"])
            let skipped = try await lenient.waitFor("checkpoint_entry_skipped", timeout: .seconds(20))
            #expect(skipped["path"].map { path.hasSuffix($0) } == true, "\(skipped.line)")
            try await lenient.waitFor("reregistered", timeout: .seconds(20))
            let failed = try await fw.waitFor("status", ["task_id": "task-1", "state": "TASK_FAILED"], timeout: .seconds(20))
            #expect(alive(pids).isEmpty, "reported only once its process is gone: \(failed.line)")
            #expect(fw.milestones("status", ["task_id": "task-1", "state": "TASK_LOST"]).isEmpty)
        }
    }

    /// `--reconfiguration_policy`: restarted with fewer resources (equal, the default) the agent
    /// refuses to start and touches nothing; with more resources under `additive` it takes its
    /// tasks back as the same agent.
    @Test func anAgentRestartedWithOtherResourcesRefusesToRecoverUnlessThePolicyAllowsTheChange() async throws {
        try await withCluster { cluster in
            let (agent, _, pids) = try await runningCheckpointedTasks(cluster, tasks: 1)
            let agentID = try await cluster.agentID(of: agent)
            await agent.kill()

            let shrunk = try cluster.restartAgent(agent, extra: ["--resources", "cpus:1;mem:1024"])
            #expect(await shrunk.waitForExit(timeout: .seconds(20)) == 1)
            let exit = try #require(shrunk.milestones("exit").first)
            #expect(exit["reason"] == "recovery_failed", "\(exit.line)")
            #expect(shrunk.milestones("reregistered").isEmpty && shrunk.milestones("registered").isEmpty)
            #expect(alive(pids).count == 1, "a refused start touches nothing")

            let grown = try cluster.restartAgent(agent, extra: ["--resources", "cpus:4;mem:1024", "--reconfiguration_policy", "additive"])
            try await waitForRecovery(grown, executors: 1, cluster: cluster)
            #expect(grown.milestones("reregistered").first?["agent_id"] == agentID, "the same agent id")
            #expect(alive(pids).count == 1, "the same process runs")
        }
    }

    @Test func sigusr1ShutsTheAgentDownForGood() async throws {
        try await withCluster { cluster in
            let (agent, fw, pids) = try await runningCheckpointedTasks(cluster)
            let agentID = try await cluster.agentID(of: agent)
            agent.signal(SIGUSR1)
            #expect(await agent.waitForExit(timeout: .seconds(20)) == 0)
            #expect(agent.milestones("exit", ["reason": "shut_down_for_good"]).count == 1)
            try await Poll.until("its executors and tasks are killed", timeout: .seconds(10)) { alive(pids).isEmpty }
            let (leader, _) = try await cluster.leader()
            try await leader.daemon.waitFor("agent_removed", ["agent_id": agentID, "reason": "unregistered"], timeout: .seconds(10))
            for task in ["task-1", "task-2"] { try await fw.waitFor("status", ["task_id": task, "state": "TASK_LOST"], timeout: .seconds(10)) }
            // Started again, it is a new agent: the old id is not taken back.
            let again = try cluster.restartAgent(agent)
            let registered = try await again.waitFor("registered", timeout: .seconds(20))
            #expect(registered["agent_id"] != agentID)
        }
    }

    /// Frameworks without checkpointing: their tasks end with the agent, as in Mesos.
    @Test func tasksOfFrameworksThatDoNotCheckpointAreKilledWhenTheAgentStops() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 1, agents: 1, tasks: 2)
            let agent = cluster.agents[0]
            var pids: [String: pid_t] = [:]
            try await Poll.until("the executors report their tasks' pids", timeout: .seconds(10)) {
                pids = cluster.taskPIDs(of: agent)
                return pids.count == 2
            }
            agent.signal(SIGTERM)
            #expect(await agent.waitForExit(timeout: .seconds(20)) == 0)
            try await Poll.until("their tasks are killed", timeout: .seconds(10)) { alive(pids).isEmpty }
        }
    }
}
