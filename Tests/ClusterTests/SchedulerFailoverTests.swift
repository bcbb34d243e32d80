import Foundation
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The framework failover contract with real processes: a scheduler that goes away keeps its
/// framework for `failover_timeout`; a new instance with the framework's id takes it over (the old
/// one is fenced); a removed framework's id is refused; a master failover inside the window.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct SchedulerFailoverTests {
    /// One master (or `masters`), one agent, a framework with `failover_timeout` and 2 running tasks.
    private func framework(_ cluster: Cluster, failoverTimeout: Double, masters: Int = 1) async throws -> (Daemon, String, [String: pid_t]) {
        try await cluster.start(masters: masters, agents: 1, tasks: 0)
        let fw = try cluster.startFramework(tasks: 2, extra: ["--failover_timeout", "\(failoverTimeout)", "--checkpoint"])
        try await fw.waitFor("all_running", ["count": "2"], timeout: .seconds(30))
        let id = try #require(fw.milestones("registered").first?["framework_id"])
        var pids: [String: pid_t] = [:]
        try await Poll.until("the executors report their tasks' pids", timeout: .seconds(10)) {
            pids = cluster.taskPIDs(of: cluster.agents[0])
            return pids.count == 2
        }
        return (fw, id, pids)
    }

    private func alive(_ pids: [String: pid_t]) -> Int { pids.values.filter(Cluster.isTaskRunning).count }

    @Test func aSchedulerThatDiesKeepsItsTasksForItsFailoverTimeoutThenTheyAreKilled() async throws {
        try await withCluster { cluster in
            let (fw, id, pids) = try await framework(cluster, failoverTimeout: 3)
            let (master, _) = try await cluster.leader()
            let killed = ContinuousClock.now
            await fw.kill()
            try await master.daemon.waitFor("framework_disconnected", ["framework_id": id, "failover_timeout_ms": "3000"], timeout: .seconds(10))
            #expect(alive(pids) == 2, "disconnected, not removed: its tasks run on")
            // Watched all through the failover timeout: both tasks run until the master removes the
            // framework (each look checks the tasks first, then whether the removal was logged).
            var diedEarly = 0, looks = 0
            try await Poll.until("framework_removed with reason failover_timeout", timeout: .seconds(15), every: .milliseconds(50)) {
                let running = alive(pids)
                if !master.daemon.milestones("framework_removed", ["framework_id": id, "reason": "failover_timeout"]).isEmpty { return true }
                looks += 1
                if running != 2 { diedEarly += 1 }
                return false
            }
            #expect(looks > 0 && diedEarly == 0, "tasks not running in \(diedEarly) of \(looks) looks before the removal")
            report("framework removed \(seconds(ContinuousClock.now - killed)) after its scheduler was killed (failover_timeout 3 s)")
            try await Poll.until("its tasks are killed", timeout: .seconds(15)) { alive(pids) == 0 }
            // Its id is refused from now on.
            let late = try cluster.startFramework(tasks: 2, extra: ["--framework_id", id])
            let error = try await late.waitFor("error", timeout: .seconds(20))
            #expect(error["message"] == "Framework has been removed", "\(error.line)")
        }
    }

    @Test func aNewInstanceWithinTheTimeoutTakesTheFrameworkAndItsTasksOver() async throws {
        try await withCluster { cluster in
            let (fw, id, pids) = try await framework(cluster, failoverTimeout: 30)
            await fw.kill()
            let (master, _) = try await cluster.leader()
            try await master.daemon.waitFor("framework_disconnected", ["framework_id": id], timeout: .seconds(10))
            let resumed = try cluster.startFramework(tasks: 2, extra: ["--framework_id", id, "--failover_timeout", "30"])
            try await resumed.waitFor("registered", ["framework_id": id], timeout: .seconds(20))
            try await resumed.waitFor("all_running", ["count": "2"], timeout: .seconds(20))
            try await resumed.waitFor("offers", timeout: .seconds(20))
            #expect(cluster.taskPIDs(of: cluster.agents[0]) == pids && alive(pids) == 2, "the same task processes")
            #expect(resumed.milestones("launch").isEmpty, "nothing launched again")
            #expect(master.daemon.milestones("framework_removed").isEmpty)
        }
    }

    @Test func ofTwoLiveInstancesTheOlderIsToldItFailedOverAndIgnored() async throws {
        try await withCluster { cluster in
            let (old, id, pids) = try await framework(cluster, failoverTimeout: 30)
            let new = try cluster.startFramework(tasks: 2, extra: ["--framework_id", id, "--failover_timeout", "30"])
            try await new.waitFor("registered", ["framework_id": id], timeout: .seconds(20))
            let error = try await old.waitFor("error", timeout: .seconds(20))
            #expect(error["message"] == "Framework failed over", "\(error.line)")
            #expect(await old.waitForExit(timeout: .seconds(10)) == 1)
            let (master, _) = try await cluster.leader()
            try await master.daemon.waitFor("framework_failed_over", ["framework_id": id], timeout: .seconds(10))
            try await new.waitFor("all_running", ["count": "2"], timeout: .seconds(20))
            #expect(alive(pids) == 2)
        }
    }

    @Test func aMasterFailoverInsideTheSchedulersFailoverWindowKeepsTheFramework() async throws {
        try await withCluster { cluster in
            let (fw, id, pids) = try await framework(cluster, failoverTimeout: 30, masters: 2)
            await fw.kill()
            let (old, oldLeader) = try await cluster.leader()
            await old.daemon.kill()
            let (newMaster, newLeader, _) = try await cluster.waitForNewLeader(after: oldLeader, since: .now, timeout: Knobs.sessionTimeout + Knobs.margin)
            try await cluster.agents[0].waitFor("reregistered", ["epoch": "\(newLeader.epoch)"], timeout: .seconds(30))
            // The new leader learned the framework from the agent (a recovered framework).
            try await newMaster.daemon.waitFor("framework_recovered", ["framework_id": id], timeout: .seconds(10))
            let resumed = try cluster.startFramework(tasks: 2, extra: ["--framework_id", id, "--failover_timeout", "30"])
            try await resumed.waitFor("registered", ["framework_id": id, "master": newLeader.pid], timeout: .seconds(20))
            try await resumed.waitFor("all_running", ["count": "2"], timeout: .seconds(20))
            #expect(alive(pids) == 2 && cluster.taskPIDs(of: cluster.agents[0]) == pids)
        }
    }
}
