// Bugs a real cluster meets in its first week, with real processes (the tests that need
// them; the others are core and simulator tests).
import FaultProxy
import Foundation
import MesosBus
import MesosWire
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("First-week bugs with real processes", .serialized, .timeLimit(.minutes(5)))
struct FirstWeekTests {
    /// Two frameworks whose tasks are both named task-1 and task-2, on one agent: both run all
    /// their tasks; one framework's tasks finishing and the other's being killed reach only their own.
    @Test func twoFrameworksWithTheSameTaskNamesShareAnAgent() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 1, agents: 1, tasks: 0)
            let go = cluster.directory.appending(path: "go").path
            let finishing = try cluster.startFramework(tasks: 2, command: "while [ ! -e \(go) ]; do sleep 0.05; done", extra: ["--name", "finishing"])
            let killed = try cluster.startFramework(tasks: 2, extra: ["--name", "killed", "--stop_on_sigterm_without_failover"])
            for fw in [finishing, killed] { try await fw.waitFor("all_running", ["count": "2"], timeout: .seconds(30)) }
            let pids = cluster.taskPIDs(of: cluster.agents[0])
            #expect(pids.count == 4 && Set(pids.keys.map { $0.split(separator: "/").last.map(String.init) ?? "" }) == ["task-1", "task-2"], "\(pids)")

            // The first framework's tasks finish: only it hears so.
            try Data().write(to: URL(fileURLWithPath: go))
            for task in ["task-1", "task-2"] { try await finishing.waitFor("status", ["task_id": task, "state": "TASK_FINISHED"], timeout: .seconds(20)) }
            // The second unregisters: its tasks are killed on the agent; it hears of nothing finishing.
            killed.signal(SIGTERM)
            let killedID = try await killed.waitFor("registered")["framework_id"] ?? ""
            try await Poll.until("the second framework's tasks killed", timeout: .seconds(20)) {
                pids.filter { $0.key.hasPrefix(killedID + "/") }.allSatisfy { !Cluster.isTaskRunning($0.value) }
            }
            #expect(killed.milestones("status", ["state": "TASK_FINISHED"]).isEmpty, "the finishing framework's updates went to it alone")
            #expect(finishing.milestones("status", ["state": "TASK_KILLED"]).isEmpty)
            // Each task's end reached the agent from its own executor.
            for task in ["task-1", "task-2"] {
                try await cluster.agents[0].waitFor("status_update", ["framework_id": killedID, "task_id": task, "state": "TASK_KILLED"], timeout: .seconds(10))
            }
            #expect(cluster.agents[0].milestones("status_update", ["state": "TASK_FINISHED"]).count == 2)
            #expect(cluster.agents[0].milestones("status_update", ["state": "TASK_KILLED"]).count == 2)
        }
    }

    /// `mesos-master` without `--zk`, stopped and started again on the same work directory, leads
    /// again (one epoch up) and keeps its agents.
    @Test func aStandaloneMasterRestartsOnItsWorkDirectoryAndKeepsItsAgents() async throws {
        try await withCluster { cluster in
            let port = try Loopback.freePortBelowEphemeralRange()
            let first = try cluster.startStandaloneMaster(port: port)
            try await first.daemon.waitFor("leading", ["epoch": "1"], timeout: .seconds(20))
            let agent = try cluster.startAgent(master: "127.0.0.1:\(port)")
            let id = try await cluster.agentID(of: agent)
            let fw = try cluster.startFramework(tasks: 2, master: "127.0.0.1:\(port)")
            try await fw.waitFor("all_running", ["count": "2"], timeout: .seconds(30))
            let tasks = cluster.allTaskPIDs

            first.daemon.signal(SIGTERM)
            #expect(await first.daemon.waitForExit() == 0)
            let second = try cluster.startStandaloneMaster(slot: first.slot, port: port)
            try await second.daemon.waitFor("leading", ["epoch": "2", "agents_expected": "1"], timeout: .seconds(20))
            try await agent.waitFor("reregistered", ["agent_id": id, "epoch": "2"], timeout: .seconds(30))
            try await second.daemon.waitFor("agent_reregistered", ["agent_id": id], timeout: .seconds(10))
            try await fw.waitFor("reregistered", timeout: .seconds(30))
            #expect(cluster.allTaskPIDs == tasks && cluster.deadTasks().isEmpty)
            #expect(second.daemon.milestones("exit").isEmpty)
        }
    }

    /// A framework whose scheduler accepts the connection and stops reading: the master's link to it
    /// stalls and is closed, while 100 agents stay healthy for three times the ping budget (before,
    /// one outbox waited on that link and held up every agent's pings).
    @Test func aPeerThatStopsReadingCostsOnlyItsOwnMessages() async throws {
        try await withCluster { cluster in
            // Ping budget 3 s (6 x 500 ms: a loaded machine can hold a swarm of 100 agents up for
            // over 1.5 s), the stuck link closed after 10 s: pings that waited behind that link (the
            // old bug) would miss the budget three times over.
            let pingBudgetCount = 6
            let master = try cluster.startMaster(maxAgentPingTimeouts: pingBudgetCount, extra: ["--link_write_timeout", "10secs"])
            try await master.daemon.waitFor("leading", timeout: .seconds(20))
            let masterPID = try #require(PID(try await cluster.busPID(of: master.daemon)))
            let epoch = try #require(cluster.leadingEpoch(of: master.daemon))
            let swarm = try cluster.startSwarm(agents: 100)
            try await Poll.until("100 agents registered", timeout: .seconds(60)) { swarm.lines.filter { $0.contains(" registered epoch=") }.count >= 100 }

            // The stuck scheduler: a listening socket that accepts nothing (peers connect, the kernel
            // completes the handshake) with a small receive buffer, so the master's writes pile up quickly.
            let stuck = try Loopback.Socket(listeningOn: 0, receiveBuffer: 4096)
            let bus = MessageBus()
            let me = try await bus.start(name: "stuck-scheduler-probe")
            let stuckPID = PID(name: "scheduler-stuck", host: "127.0.0.1", port: stuck.port)
            try await bus.send(Envelope(epoch: epoch, from: stuckPID.description, payload: .registerFramework(RegisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "stuck")))), to: masterPID)
            let frameworkID = try #require(try await master.daemon.waitFor("framework_registered", ["scheduler": stuckPID.description])["framework_id"])
            // Ask for a flood of answers to the stuck scheduler (reconciling thousands of unknown tasks).
            let statuses = (0..<5000).map { TaskStatus(taskID: TaskID(value: "t\($0)"), state: .running) }
            let start = ContinuousClock.now
            for _ in 0..<20 {
                try await bus.send(Envelope(epoch: epoch, from: stuckPID.description, payload: .reconcileTasks(ReconcileTasksMessage(frameworkID: FrameworkID(value: frameworkID), statuses: statuses))), to: masterPID)
            }
            try await master.daemon.waitFor("link_stalled", ["peer": "127.0.0.1:\(stuck.port)"], timeout: .seconds(60))
            report("the master closed its link to the stuck scheduler after \(seconds(ContinuousClock.now - start))")
            // Three ping budgets later every agent is still there: the positive signal is the master's
            // pings answered all along, i.e. no removal and every agent still registered.
            let budget = Knobs.agentPingTimeout * pingBudgetCount
            let pingsBefore = swarm.lines.count
            try await Task.sleep(for: budget * 3)  // the span the agents must stay healthy, not a wait for an outcome
            #expect(master.daemon.milestones("agent_removed").isEmpty, "an agent was removed while a peer stalled")
            #expect(!swarm.lines.dropFirst(pingsBefore).contains { $0.contains(" masterless") || $0.contains(" shutdown") })
            #expect(master.daemon.isRunning && swarm.isRunning)
            _ = me
            await bus.shutdown()
        }
    }
}
