// A 3-server ZooKeeper ensemble losing one member during traffic, and losing its quorum.
import Foundation
import Testing
@testable import TestSupport

extension FaultTests {
    @Suite struct EnsembleTests {
        @Test func memberKilledAndRestartedWhileTasksLaunchLosesNothing() async throws {
            try await withCluster(.ensemble(size: 3)) { cluster in
                try await cluster.start(masters: 2, agents: 2, tasks: 0)
                let (leader, record) = try await cluster.leader()
                let member = cluster.zooKeeperMember(of: leader.daemon) ?? 1
                let fw = try cluster.startFramework(tasks: 8)
                try await fw.waitFor("registered", timeout: .seconds(20))
                let daemons = cluster.masters.map(\.daemon) + cluster.agents + [fw]
                let affected = daemons.filter { cluster.zooKeeperMember(of: $0) == member }
                let before = Dictionary(uniqueKeysWithValues: affected.map { ($0.name, $0.milestones("zk_session_connected")) })
                report("killing ZooKeeper member \(member) (the leading master's) while the framework launches 8 tasks")
                await cluster.zk.stopMember(member)
                try await fw.waitFor("all_running", ["count": "8"], timeout: .seconds(30))
                // Positive signal that nothing expired: every session on the killed member is back, the same session.
                for daemon in affected {
                    let seen = before[daemon.name] ?? []
                    let again = try await daemon.waitFor("zk_session_connected", moreThan: seen.count, timeout: Knobs.sessionTimeout + Knobs.margin)
                    #expect(again["session"] == seen.last?["session"], "\(daemon.name) kept its ZooKeeper session")
                }
                try await cluster.zk.startMember(member)
                #expect(cluster.masters.allSatisfy { $0.daemon.isRunning }, "no master exited")
                #expect(try await cluster.leaderInZooKeeper() == record, "the same leader at the same epoch")
                #expect(cluster.allTaskPIDs.count == 8)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
                #expect(cluster.agents.allSatisfy { $0.milestones("masterless").isEmpty })
            }
        }

        @Test func quorumLostThenRestoredRecoversWithSupervisedMasters() async throws {
            try await withCluster(.ensemble(size: 3)) { cluster in
                try await cluster.start(masters: 2, agents: 1, tasks: 2)
                let (_, oldLeader) = try await cluster.leader()
                let agent = cluster.agents[0]
                let tasks = cluster.allTaskPIDs
                let original = cluster.masters

                let lost = ContinuousClock.now
                await cluster.zk.stopMember(1)
                await cluster.zk.stopMember(2)
                // The supervisor restarts exiting masters all along; the originals must all exit.
                try await Poll.until("every master exited", timeout: Knobs.sessionTimeout * 3 + Knobs.margin, every: .milliseconds(500)) {
                    try cluster.superviseMasters()
                    return original.allSatisfy { !$0.daemon.isRunning }
                }
                report("quorum lost: the masters exited after \(seconds(ContinuousClock.now - lost))")
                for master in original {
                    #expect(master.daemon.exitStatus == 1)
                    let reason = master.daemon.milestones("exit").last?["reason"]
                    #expect(reason == "lost_leadership" || reason == "candidacy_lost", "\(master.daemon.name): \(reason ?? "no exit milestone")")
                }
                try await agent.waitFor("masterless", timeout: Knobs.sessionTimeout * 2 + Knobs.margin)
                #expect(cluster.deadTasks().isEmpty, "tasks run on while the agent is master-less")

                let restored = ContinuousClock.now
                try await cluster.zk.startMember(1)
                try await cluster.zk.startMember(2)
                var newLeader: LeaderRecord?
                try await Poll.until("a new leader after the quorum came back", timeout: Knobs.sessionTimeout * 3 + Knobs.margin * 2, every: .milliseconds(500)) {
                    try cluster.superviseMasters()
                    for master in cluster.liveMasters {
                        if let epoch = cluster.leadingEpoch(of: master.daemon), epoch > oldLeader.epoch {
                            newLeader = LeaderRecord(epoch: epoch, pid: try await cluster.busPID(of: master.daemon))
                            return true
                        }
                    }
                    return false
                }
                let leader = try #require(newLeader)
                report("quorum back: \(leader) leads after \(seconds(ContinuousClock.now - restored))")
                try await cluster.waitForAgentsReregistered(with: leader, timeout: .seconds(30))
                try await cluster.waitForFrameworkReregistered(with: leader, timeout: .seconds(30))
                #expect(cluster.allTaskPIDs == tasks)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty, "\(cluster.lostTaskLines)")
            }
        }
    }
}
