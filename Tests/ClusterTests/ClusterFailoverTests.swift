// The cluster rules of DESIGN.md ("Behaviour that must hold") with real processes: a real
// ZooKeeper, mesos-master / mesos-agent / example-framework binaries talking real TCP, tasks as
// real `sh -c "sleep ..."` processes. Session timeout 2 s, agent pings 500 ms x 5.
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
            // The point of withdrawing: no waiting for ZooKeeper to expire the session (the time it
            // takes is measured by Benchmarks/failover-bench.sh, not asserted here).
            #expect(await old.daemon.waitForExit() == 0)
            #expect(!old.daemon.milestones("exit", ["reason": "terminated"]).isEmpty)

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
            try await cluster.waitForAgentsReregistered(with: newLeader)
            try await cluster.waitForFrameworkReregistered(with: newLeader)

            // The old leader wakes up believing it leads: it pings, offers, then learns its session is gone.
            let continued = ContinuousClock.now
            old.daemon.signal(SIGCONT)
            let status = await old.daemon.waitForExit(timeout: Knobs.sessionTimeout + Knobs.margin)
            report("deposed leader exited \(status.map(String.init) ?? "never") \(seconds(ContinuousClock.now - continued)) after SIGCONT")
            #expect(status == 1)
            #expect(!old.daemon.milestones("exit", ["reason": "lost_leadership"]).isEmpty)

            // Whatever the deposed leader said on waking was dropped as stale, never acted on.
            let agentDrops = agent.milestones("message_dropped", ["from": oldLeader.pid])
            #expect(agentDrops.allSatisfy { $0["reason"] == "stale_epoch" }, "\(agentDrops)")
            // And a message in its name at its epoch (what it would send) is dropped as stale by the
            // agent, which says so: the positive signal that the rule was applied.
            let bus = MessageBus()
            _ = try await bus.start(name: "deposed-probe")
            let agentPID = try #require(PID(try await agent.waitFor("listening")["pid"] ?? ""))
            let before = agent.milestones("message_dropped", ["from": oldLeader.pid, "reason": "stale_epoch"]).count
            try await bus.send(Envelope(epoch: oldLeader.epoch, from: oldLeader.pid, payload: .shutdown(ShutdownMessage(message: "deposed"))), to: agentPID)
            try await agent.waitFor("message_dropped", ["from": oldLeader.pid, "reason": "stale_epoch"], moreThan: before)
            await bus.shutdown()
            report("messages in the deposed leader's name dropped as stale by the agent: \(before + 1)")

            // The agent registered only with the new leader after detecting it; never shut down.
            let registrations = agent.milestones.filter { ["registered", "reregistered"].contains($0.event) }.compactMap { $0["master"] }
            #expect(registrations.last == newLeader.pid && !registrations.dropFirst().contains(oldLeader.pid), "\(registrations)")
            #expect(agent.milestones("exit").isEmpty)
            let fwMasters = fw.milestones.filter { ["registered", "reregistered"].contains($0.event) }.compactMap { $0["master"] }
            #expect(fwMasters.last == newLeader.pid, "\(fwMasters)")

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
                let reason = master.daemon.milestones("exit").last?["reason"]
                #expect(reason == "lost_leadership" || reason == "candidacy_lost", "\(master.daemon.name): \(reason ?? "no exit milestone")")
            }
            report("ZooKeeper paused: both masters exited after \(seconds(ContinuousClock.now - paused))")
            try await agent.waitFor("masterless", timeout: Knobs.sessionTimeout * 2 + Knobs.margin)
            try await fw.waitFor("disconnected", timeout: Knobs.sessionTimeout * 2 + Knobs.margin)
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
            let agentID = try await cluster.agentID(of: agent)
            let tasks = cluster.allTaskPIDs

            let stopped = ContinuousClock.now
            agent.signal(SIGSTOP)
            let pings = Knobs.agentPingTimeout * Knobs.maxAgentPingTimeouts
            try await master.daemon.waitFor("agent_removed", ["agent_id": agentID, "reason": "missed_pings"], timeout: pings + Knobs.margin)
            let removedAfter = ContinuousClock.now - stopped
            for task in tasks.keys.sorted() {
                let id = String(task.split(separator: "/").last ?? "")
                try await fw.waitFor("status", ["task_id": id, "state": "TASK_LOST", "reason": "REASON_AGENT_REMOVED"], timeout: Knobs.margin)
            }
            try await fw.waitFor("agent_lost", ["agent_id": agentID], timeout: Knobs.margin)
            report("stopped agent removed after \(seconds(removedAfter)) (\(Knobs.maxAgentPingTimeouts) x \(Knobs.agentPingTimeout) pings); framework told after \(seconds(ContinuousClock.now - stopped))")

            // Woken up, whatever it tries next (ping replies, re-registration) earns a ShutdownMessage.
            agent.signal(SIGCONT)
            try await agent.waitFor("exit", ["reason": "shut_down_by_master"], timeout: Knobs.sessionTimeout + Knobs.margin)
            #expect(await agent.waitForExit() == 0)
            try await Poll.until("the removed agent's tasks are killed", timeout: .seconds(10)) { cluster.deadTasks().count == tasks.count }

            #expect(master.daemon.milestones("agent_reregistered", ["agent_id": agentID]).isEmpty, "the removed agent was admitted again")
            #expect(agent.milestones("registered").count == 1 && agent.milestones("reregistered").isEmpty, "it never re-registered")
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
            // Everyone connected to the killed member must get its session back on another member:
            // the same session id again is the positive signal that it survived (no expiry follows).
            let daemons = cluster.masters.map(\.daemon) + [agent, fw]
            let affected = daemons.filter { cluster.zooKeeperMember(of: $0) == member }
            let before = Dictionary(uniqueKeysWithValues: affected.map { ($0.name, $0.milestones("zk_session_connected")) })

            let killed = ContinuousClock.now
            await cluster.zk.stopMember(member)
            for daemon in affected {
                let seen = before[daemon.name] ?? []
                let again = try await daemon.waitFor("zk_session_connected", moreThan: seen.count, timeout: Knobs.sessionTimeout + Knobs.margin)
                #expect(again["session"] == seen.last?["session"], "\(daemon.name) kept its ZooKeeper session")
            }
            report("ZooKeeper member \(member) (\(server)) killed: \(affected.map(\.name)) reconnected with their sessions after \(seconds(ContinuousClock.now - killed))")

            #expect(cluster.masters.allSatisfy { $0.daemon.isRunning }, "no master exited")
            #expect(daemons.allSatisfy { $0.milestones("exit").isEmpty && $0.milestones("zk_session_expired").isEmpty })
            #expect(try await cluster.leaderInZooKeeper() == record, "the same leader at the same epoch")
            #expect(cluster.masters.filter { !$0.daemon.milestones("elected").isEmpty }.count == 1, "no re-election")
            #expect(agent.milestones("masterless").isEmpty && agent.milestones("reregistered").isEmpty)
            #expect(fw.milestones("disconnected").isEmpty && fw.milestones("reregistered").isEmpty)
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
            for task in ["task-1", "task-2"] { try await agent.waitFor("status_update", ["task_id": task, "state": "TASK_FINISHED"], timeout: .seconds(10)) }
            // Still following the stopped leader: the updates went into its socket buffer, unacknowledged.
            let beforeNewLeader = agent.milestones("leader_detected").last?["master"] == oldLeader.pid
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
                    fw.milestones("status", ["task_id": task, "state": "TASK_FINISHED"]).contains { $0["reason"] == nil }
                }
            }
            report("the agent's TASK_FINISHED of both tasks reached the framework through \(newLeader) \(seconds(ContinuousClock.now - finished)) after the agent re-registered (retried every 1 s, doubling)")
            #expect(await old.daemon.waitForExit(timeout: Knobs.margin) == 1)
            #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            #expect(fw.milestones("status", ["state": "TASK_FAILED"]).isEmpty)
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
            #expect(leader.daemon.milestones("framework_registered").isEmpty, "nothing was registered at a wrong epoch")
            await bus.shutdown()
        }
    }
}

/// The LeaderHint in a bus event, or a failure naming what came instead.
private func leaderHint(_ event: BusEvent) throws -> (from: String, hint: LeaderHintMessage) {
    guard case .message(let inbound) = event else { throw ClusterError("expected a message, got \(event)") }
    let envelope = inbound.envelope
    guard case .leaderHint(let hint)? = envelope.payload else {
        throw ClusterError("expected a leaderHint from \(envelope.from), got \(String(describing: envelope.payload))")
    }
    return (envelope.from, hint)
}
