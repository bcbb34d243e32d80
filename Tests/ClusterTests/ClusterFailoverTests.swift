// The cluster rules of DESIGN.md ("Behaviour that must hold") with real processes: a real
// ZooKeeper, mesos-master / mesos-agent / example-framework binaries talking real TCP, tasks as
// real `sh -c "sleep ..."` processes. Session timeout 2 s, agent pings 500 ms x 3.
//
// Bounds are generous (Knobs.margin on top of the protocol's own timeouts); measured times are
// printed with a "[cluster]" prefix. Serialized: each test runs a JVM and a handful of daemons,
// and a 2-core machine shared with parallel tests would turn timeouts into flakes.
import Foundation
import MesosBus
import MesosWire
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Cluster failover with real processes", .serialized, .timeLimit(.minutes(3)))
struct ClusterFailoverTests {

    // MARK: 1. Leader SIGKILL

    @Test func killedLeaderIsReplacedWithinTheSessionTimeoutAndTasksKeepRunning() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 1, tasks: 2)
            let (old, oldLeader) = try await cluster.leader()
            let tasks = cluster.allTaskPIDs
            #expect(tasks.count == 2 && cluster.deadTasks().isEmpty, "tasks before the failover: \(tasks)")

            let killed = ContinuousClock.now
            old.daemon.signal(SIGKILL)
            let (_, newLeader, elapsed) = try await cluster.waitForNewLeader(
                after: oldLeader, since: killed, timeout: Knobs.sessionTimeout + Knobs.margin)
            report("SIGKILL failover: \(oldLeader) -> \(newLeader) leading after \(seconds(elapsed)) (session timeout \(Knobs.sessionTimeout))")
            #expect(await old.daemon.waitForExit() == 128 + SIGKILL)

            try await cluster.waitForAgentsReregistered(with: newLeader)
            try await cluster.waitForFrameworkReregistered(with: newLeader)
            report("SIGKILL failover: agent and framework re-registered \(seconds(ContinuousClock.now - killed)) after the kill")

            #expect(cluster.allTaskPIDs == tasks, "no task was started again")
            #expect(cluster.deadTasks().isEmpty, "task processes survive the failover")
            #expect(cluster.lostTaskLines.isEmpty)
            #expect(cluster.agents.allSatisfy { $0.isRunning })
        }
    }

    // MARK: 2. Leader SIGTERM

    @Test func terminatedLeaderHandsOverWellBeforeTheSessionTimeout() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 1, tasks: 2)
            let (old, oldLeader) = try await cluster.leader()
            let tasks = cluster.allTaskPIDs

            let terminated = ContinuousClock.now
            old.daemon.signal(SIGTERM)
            let (_, newLeader, elapsed) = try await cluster.waitForNewLeader(
                after: oldLeader, since: terminated, timeout: Knobs.sessionTimeout + Knobs.margin)
            report("SIGTERM handover: \(oldLeader) -> \(newLeader) leading after \(seconds(elapsed)) (session timeout \(Knobs.sessionTimeout))")
            // The point of withdrawing: no waiting for ZooKeeper to expire the session.
            #expect(elapsed < Knobs.sessionTimeout, "a graceful handover took \(seconds(elapsed))")
            #expect(await old.daemon.waitForExit() == 0)
            #expect(old.daemon.log.contains("terminating: withdrawing from the leader group"))

            try await cluster.waitForAgentsReregistered(with: newLeader)
            try await cluster.waitForFrameworkReregistered(with: newLeader)
            #expect(cluster.allTaskPIDs == tasks)
            #expect(cluster.deadTasks().isEmpty)
            #expect(cluster.lostTaskLines.isEmpty)
        }
    }

    // MARK: 3. Ten consecutive leader kills

    @Test func tenConsecutiveLeaderKillsLoseNoTask() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 3, agents: 2, tasks: 4, taskCPUs: 0.8)
            let tasks = cluster.allTaskPIDs
            #expect(tasks.count == 4)
            #expect(cluster.agents.allSatisfy { cluster.taskPIDs(of: $0).count == 2 }, "two tasks on each agent")
            var (leader, record) = try await cluster.leader()
            var times: [String] = []
            for round in 1...10 {
                let signal = round % 2 == 1 ? SIGKILL : SIGTERM
                let t0 = ContinuousClock.now
                leader.daemon.signal(signal)
                let (next, nextRecord, elapsed) = try await cluster.waitForNewLeader(
                    after: record, since: t0, timeout: Knobs.sessionTimeout + Knobs.margin)
                #expect(await leader.daemon.waitForExit() == (signal == SIGKILL ? 128 + SIGKILL : 0), "round \(round)")
                // A supervisor restarts the dead master with its work directory: three stay up.
                try cluster.startMaster(slot: leader.slot)
                try await cluster.waitForAgentsReregistered(with: nextRecord)
                try await cluster.waitForFrameworkReregistered(with: nextRecord)
                let settled = ContinuousClock.now - t0
                times.append("\(signal == SIGKILL ? "KILL" : "TERM") \(seconds(elapsed))")
                report("round \(round) (\(signal == SIGKILL ? "SIGKILL" : "SIGTERM")): \(record) -> \(nextRecord) in \(seconds(elapsed)); everyone re-registered after \(seconds(settled))")
                #expect(cluster.deadTasks().isEmpty, "round \(round)")
                #expect(cluster.lostTaskLines.isEmpty, "round \(round)")
                (leader, record) = (next, nextRecord)
            }
            report("10 failovers: \(times.joined(separator: ", "))")
            #expect(cluster.liveMasters.count == 3)
            #expect(cluster.allTaskPIDs == tasks, "no task was started again")
            #expect(cluster.deadTasks().isEmpty)
            #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            #expect(cluster.agents.allSatisfy { $0.isRunning })
        }
    }

    // MARK: 4. A deposed leader that keeps talking

    @Test func stoppedLeaderIsDeposedAndCommitsSuicideWhenItWakesUp() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 1, tasks: 2)
            let (old, oldLeader) = try await cluster.leader()
            let agent = cluster.agents[0]
            let fw = try #require(cluster.framework)

            let stopped = ContinuousClock.now
            old.daemon.signal(SIGSTOP)
            let (_, newLeader, elapsed) = try await cluster.waitForNewLeader(
                after: oldLeader, since: stopped, timeout: Knobs.sessionTimeout + Knobs.margin)
            report("SIGSTOP: \(newLeader) leads \(seconds(elapsed)) after the leader was stopped")
            // Only the session's expiry frees the leader znode. The server counts the timeout from the
            // last heartbeat (sent every third of it), not from the stop: so at least about 2/3 of it.
            #expect(elapsed >= Knobs.sessionTimeout / 2, "a stopped leader is only replaced once its session expires")
            try await cluster.waitForAgentsReregistered(with: newLeader)
            try await cluster.waitForFrameworkReregistered(with: newLeader)

            // The old leader wakes up believing it leads: it pings, offers, then learns its session is gone.
            let continued = ContinuousClock.now
            old.daemon.signal(SIGCONT)
            let status = await old.daemon.waitForExit(timeout: Knobs.sessionTimeout + Knobs.margin)
            report("deposed leader exited \(status.map(String.init) ?? "never") \(seconds(ContinuousClock.now - continued)) after SIGCONT")
            #expect(status == 1)
            #expect(old.daemon.log.contains("committing suicide"))
            // Give any message it sent on waking time to arrive before judging the receivers.
            try await Task.sleep(for: .milliseconds(500))

            let stale = "epoch older than the detected leader's"
            let agentDrops = agent.lines.filter { $0.contains(stale) && $0.contains(oldLeader.pid) }.count
            let fwDrops = fw.lines.filter { $0.contains(stale) && $0.contains(oldLeader.pid) }.count
            report("messages of the deposed leader dropped as stale: agent \(agentDrops), framework \(fwDrops)")

            // After the agent detected the new leader, nothing from the old one was accepted.
            let agentLines = agent.lines
            let detected = try #require(agentLines.firstIndex { $0.contains("new leader detected: \(newLeader.pid)") })
            let accepted = agentLines[detected...].filter {
                $0.contains("registered with \(oldLeader.pid)") || $0.contains("shutting down")
            }
            #expect(accepted.isEmpty, "the agent accepted the deposed leader: \(accepted)")
            let fwLines = fw.lines
            let fwSwitched = try #require(fwLines.firstIndex { $0.contains("REREGISTERED") && $0.hasSuffix("master=\(newLeader.pid)") })
            #expect(!fwLines[fwSwitched...].contains { $0.contains("REGISTERED") && $0.hasSuffix("master=\(oldLeader.pid)") })

            #expect(agent.isRunning)
            #expect(cluster.deadTasks().isEmpty)
            #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            #expect(try await cluster.leaderInZooKeeper() == newLeader)
        }
    }

    // MARK: 5. Masters cut from ZooKeeper

    @Test func mastersCutFromZooKeeperExitAndRestartedMastersRecoverTheCluster() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 1, tasks: 2)
            let (_, oldLeader) = try await cluster.leader()
            let agent = cluster.agents[0]
            let fw = try #require(cluster.framework)
            let tasks = cluster.allTaskPIDs
            let slots = cluster.masters.map(\.slot)

            let paused = ContinuousClock.now
            cluster.zk.pause()
            for master in cluster.masters {
                let status = await master.daemon.waitForExit(timeout: Knobs.sessionTimeout * 2 + Knobs.margin)
                #expect(status == 1, "\(master.daemon.name) exits when cut from ZooKeeper")
                #expect(master.daemon.log.contains("committing suicide"))
            }
            report("ZooKeeper paused: both masters exited after \(seconds(ContinuousClock.now - paused))")
            try await agent.waitForLog("no leading master detected: master-less", timeout: Knobs.sessionTimeout * 2 + Knobs.margin)
            try await fw.waitForLog("DISCONNECTED", timeout: Knobs.sessionTimeout * 2 + Knobs.margin)
            report("ZooKeeper paused: agent master-less and framework disconnected after \(seconds(ContinuousClock.now - paused))")
            #expect(agent.isRunning && fw.isRunning)
            #expect(cluster.deadTasks().isEmpty, "tasks run on while the agent is master-less")

            cluster.zk.resume()
            let resumed = ContinuousClock.now
            for slot in slots { try cluster.startMaster(slot: slot) }
            let (_, newLeader, elapsed) = try await cluster.waitForNewLeader(
                after: oldLeader, since: resumed, timeout: Knobs.sessionTimeout + Knobs.margin)
            report("ZooKeeper resumed, masters restarted: \(newLeader) leads after \(seconds(elapsed))")
            try await cluster.waitForAgentsReregistered(with: newLeader)
            try await cluster.waitForFrameworkReregistered(with: newLeader)
            report("cluster recovered \(seconds(ContinuousClock.now - resumed)) after ZooKeeper resumed")

            #expect(cluster.allTaskPIDs == tasks)
            #expect(cluster.deadTasks().isEmpty)
            #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
        }
    }

    // MARK: 6. Agent health checks

    @Test func unresponsiveAgentIsRemovedItsTasksLostAndItIsNeverReadmitted() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 1, agents: 1, tasks: 2)
            let (master, _) = try await cluster.leader()
            let agent = cluster.agents[0]
            let fw = try #require(cluster.framework)
            let agentID = try field(try await agent.waitForLog("registered with master@"), after: " as agent ")
            let tasks = cluster.allTaskPIDs

            let stopped = ContinuousClock.now
            agent.signal(SIGSTOP)
            let pings = Knobs.agentPingTimeout * Knobs.maxAgentPingTimeouts
            try await master.daemon.waitForLog("removing agent \(agentID): missed", timeout: pings + Knobs.margin)
            let removedAfter = ContinuousClock.now - stopped
            for task in tasks.keys.sorted() {
                try await fw.waitForLog("STATUS task=\(task) state=TASK_LOST reason=agentRemoved", timeout: Knobs.margin)
            }
            try await fw.waitForLog("AGENT_LOST agent=\(agentID)", timeout: Knobs.margin)
            report("stopped agent removed after \(seconds(removedAfter)) (\(Knobs.maxAgentPingTimeouts) x \(Knobs.agentPingTimeout) pings); framework told after \(seconds(ContinuousClock.now - stopped))")

            // Woken up, whatever it tries next (ping replies, re-registration) earns a ShutdownMessage.
            agent.signal(SIGCONT)
            try await agent.waitForLog("shutting down at the master's request", timeout: Knobs.sessionTimeout + Knobs.margin)
            #expect(await agent.waitForExit() == 0)
            try await Poll.until("the removed agent's tasks are killed", timeout: .seconds(10)) { cluster.deadTasks().count == tasks.count }

            let masterLines = master.daemon.lines
            let removal = try #require(masterLines.firstIndex { $0.contains("removing agent \(agentID)") })
            #expect(!masterLines[removal...].contains { $0.contains("agent \(agentID) at") }, "the removed agent was admitted again")
            #expect(agent.lines.filter { $0.contains("registered with master@") }.count == 1, "it never re-registered")
            #expect(master.daemon.isRunning)
        }
    }

    // MARK: 7. ZooKeeper ensemble member killed

    @Test func killingOneZooKeeperEnsembleMemberChangesNothingForUsers() async throws {
        try await withCluster(.ensemble(size: 3)) { cluster in
            try await cluster.start(masters: 2, agents: 1, tasks: 2)
            let (leader, record) = try await cluster.leader()
            let agent = cluster.agents[0]
            let fw = try #require(cluster.framework)
            let tasks = cluster.allTaskPIDs

            // Kill the ensemble's leader: the other two elect a new one, and every session (the
            // leading master's too) loses its server for a while and has to reconnect.
            let modes = try await cluster.zooKeeperModes()
            let member = try #require(modes.firstIndex(of: "leader"), "ensemble modes: \(modes)") + 1
            let server = cluster.zk.connectString.split(separator: ",")[member - 1]
            let leaderMember = try #require(cluster.zooKeeperMember(of: leader.daemon), "the leader's ZooKeeper connection")
            report("ensemble \(modes); the leading master is connected to member \(leaderMember); killing member \(member), the ensemble leader")
            let connections = leader.daemon.lines.filter { $0.contains("ZooKeeper session 0x") && $0.contains("connected") }.count

            let killed = ContinuousClock.now
            await cluster.zk.stopMember(member)
            try await Poll.until("the leader's session moved to another member", timeout: Knobs.sessionTimeout + Knobs.margin) {
                leader.daemon.lines.filter { $0.contains("ZooKeeper session 0x") && $0.contains("connected") }.count > connections
            }
            report("ZooKeeper member \(member) (\(server)) killed: the leading master's session reconnected after \(seconds(ContinuousClock.now - killed))")
            // Anything that was going to go wrong (expiry, suicide, re-election) has had its time.
            try await Task.sleep(for: Knobs.sessionTimeout + .seconds(1))

            #expect(cluster.masters.allSatisfy { $0.daemon.isRunning }, "no master exited")
            #expect(!cluster.masters.contains { $0.daemon.log.contains("committing suicide") })
            #expect(!cluster.masters.contains { $0.daemon.log.contains("session expired") })
            #expect(try await cluster.leaderInZooKeeper() == record, "the same leader at the same epoch")
            #expect(cluster.masters.filter { $0.daemon.log.contains("elected leader at epoch") }.count == 1, "no re-election")
            #expect(!agent.log.contains("master-less") && !agent.log.contains("re-registered"))
            #expect(!fw.log.contains("DISCONNECTED") && !fw.log.contains("REREGISTERED"))
            #expect(cluster.allTaskPIDs == tasks)
            #expect(cluster.deadTasks().isEmpty)
            #expect(cluster.lostTaskLines.isEmpty)
            report("ensemble after the kill: \(try await cluster.zooKeeperModes())")
        }
    }

    // MARK: 9. A status update sent to a leader that is going away

    @Test func statusUpdatesSentToAStoppedLeaderAreRetriedToItsSuccessor() async throws {
        try await withCluster { cluster in
            // The tasks finish when the test says so (a file appears), while the leader is stopped.
            let go = cluster.directory.appending(path: "go").path
            try await cluster.start(masters: 2, agents: 1, tasks: 2, command: "while [ ! -e \(go) ]; do sleep 0.05; done")
            let (old, oldLeader) = try await cluster.leader()
            let agent = cluster.agents[0]
            let fw = try #require(cluster.framework)

            old.daemon.signal(SIGSTOP)
            try Data().write(to: URL(fileURLWithPath: go))
            for task in ["task-1", "task-2"] { try await agent.waitForLog("task \(task) exited", timeout: .seconds(10)) }
            // Still following the stopped leader: the updates went into its socket buffer, unacknowledged.
            let beforeNewLeader = !agent.log.contains("new leader detected: master@") || agent.lines.last { $0.contains("new leader detected") }?.contains(oldLeader.pid) == true
            report("tasks finished while the agent \(beforeNewLeader ? "still followed the stopped leader" : "already followed a new leader")")

            let (_, newLeader, _) = try await cluster.waitForNewLeader(
                after: oldLeader, since: .now, timeout: Knobs.sessionTimeout + Knobs.margin)
            try await cluster.waitForAgentsReregistered(with: newLeader)
            old.daemon.signal(SIGCONT)  // its stale forwards and acknowledgements must change nothing
            let finished = ContinuousClock.now
            // The agent's own update (no reason; a reconciliation answer of the new leader, which
            // learnt the state from the re-registration, carries reason=reconciliation and is no ack).
            for task in ["task-1", "task-2"] {
                try await Poll.until("the agent's TASK_FINISHED of \(task) reached the framework", timeout: .seconds(20)) {
                    fw.lines.contains { $0.hasSuffix("STATUS task=\(task) state=TASK_FINISHED") }
                }
            }
            report("the agent's TASK_FINISHED of both tasks reached the framework through \(newLeader) \(seconds(ContinuousClock.now - finished)) after the agent re-registered (retried every 1 s, doubling)")
            #expect(await old.daemon.waitForExit(timeout: Knobs.margin) == 1)
            #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            #expect(!fw.log.contains("TASK_FAILED"))
        }
    }

    // MARK: 8. A standby answers with a LeaderHint

    @Test func standbyAndWrongEpochAreAnsweredWithLeaderHints() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 0, tasks: 0)
            let (leader, record) = try await cluster.leader()
            let standby = try #require(cluster.liveMasters.first { $0.slot != leader.slot })
            let standbyPID = try #require(PID(try await cluster.busPID(of: standby.daemon)))
            let leaderPID = try #require(PID(record.pid))

            let bus = MessageBus()
            let me = try await bus.start(name: "hint-probe")
            let replies = EventRecorder(bus.events)
            let register = Envelope.Payload.registerFramework(
                RegisterFrameworkMessage(framework: FrameworkInfo(user: "test", name: "hint-probe")))

            // A standby serves nothing but hints, naming the leader it detects.
            try await bus.send(register, epoch: 0, to: standbyPID)
            let fromStandby = try leaderHint(try await replies.next(within: .seconds(10)).event)
            #expect(fromStandby.from == standbyPID.description)
            #expect(fromStandby.hint.leader?.pid == record.pid)
            #expect(fromStandby.hint.leaderEpoch == record.epoch)
            report("standby \(standbyPID) answered \(me) with a hint: leader \(fromStandby.hint.leader?.pid ?? "?") epoch \(fromStandby.hint.leaderEpoch.map(String.init) ?? "?") (\(fromStandby.hint.reason ?? ""))")

            // The leader answers a message addressed to another epoch with a hint naming itself.
            try await bus.send(register, epoch: 0, to: leaderPID)
            let fromLeader = try leaderHint(try await replies.next(within: .seconds(10)).event)
            #expect(fromLeader.from == record.pid)
            #expect(fromLeader.hint.leader?.pid == record.pid)
            #expect(fromLeader.hint.leaderEpoch == record.epoch)
            #expect(!leader.daemon.log.contains("hint-probe) registered"), "nothing was registered at a wrong epoch")
            await bus.shutdown()
        }
    }
}

/// The LeaderHint in a bus event, or a failure naming what came instead.
private func leaderHint(_ event: BusEvent) throws -> (from: String, hint: LeaderHintMessage) {
    guard case .message(let envelope) = event else { throw ClusterError("expected a message, got \(event)") }
    guard case .leaderHint(let hint)? = envelope.payload else {
        throw ClusterError("expected a leaderHint from \(envelope.from), got \(String(describing: envelope.payload))")
    }
    return (envelope.from, hint)
}
