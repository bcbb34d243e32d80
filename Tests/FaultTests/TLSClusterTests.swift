// Trust on the wire with real processes: a cluster over mutual TLS (scripts/gen-certs), and peers
// holding the wrong certificate trying to speak as the leader, as another agent, or as an agent.
import Foundation
import MesosBus
import MesosWire
import Testing
@testable import TestSupport

extension FaultTests {
    @Suite struct TLSClusterTests {
        /// A bus in this test process holding `name`'s certificate (a peer of the cluster, or a forger).
        static func peer(_ certs: TestCertificates, _ name: String) async throws -> MessageBus {
            var config = BusConfiguration()
            config.tls = try TLSContext.fromEnvironment(certs.environment(name))
            let bus = MessageBus(configuration: config)
            try await bus.start(name: "forger")
            return bus
        }

        static func tlsCluster(_ cluster: Cluster, _ certs: TestCertificates) {
            cluster.environments = [
                "mesos-master": certs.environment("master"), "mesos-agent": certs.environment("agent"),
                "example-framework": certs.environment("scheduler"),
            ]
        }

        @Test func aForgedShutdownAndRunTaskWithTheLeadersPidAndEpochFromAPeerWithoutAMasterCertificateAreRefused() async throws {
            let certs = try TestCertificates.make("forged-leader")
            defer { certs.remove() }
            try certs.add("intruder", role: "agent")
            try await withCluster { cluster in
                Self.tlsCluster(cluster, certs)
                try await cluster.start(masters: 1, agents: 1, tasks: 1)
                let agent = cluster.agents[0]
                let (_, leader) = try await cluster.leader()
                let agentPID = try #require(PID(try await cluster.busPID(of: agent)))
                let tasks = cluster.taskPIDs(of: agent)
                #expect(tasks.count == 1)
                let agentID = try await cluster.agentID(of: agent)

                // An agent certificate (it passes the agent's bus: executors hold agent certificates)
                // speaking with the leader's pid and epoch, both world-readable in ZooKeeper.
                let forger = try await Self.peer(certs, "intruder")
                defer { Task { await forger.shutdown() } }
                let task = TaskInfo(
                    name: "forged", taskID: TaskID(value: "forged-1"), agentID: AgentID(value: agentID),
                    resources: [], command: CommandInfo(value: "touch \(cluster.directory.path)/forged-ran"))
                let runTask = RunTaskMessage(
                    frameworkID: FrameworkID(value: "forged-fw"), framework: FrameworkInfo(user: "root", name: "forged"), task: task, pid: leader.pid)
                for payload: Envelope.Payload in [.runTask(runTask), .shutdown(ShutdownMessage(message: "forged"))] {
                    try await forger.send(Envelope(epoch: leader.epoch, from: leader.pid, payload: payload), to: agentPID)
                }
                try await agent.waitFor("message_dropped", ["reason": "unauthenticated_master"], timeout: .seconds(20))
                try await Poll.until("both forged messages dropped", timeout: .seconds(20)) {
                    agent.milestones("message_dropped").filter { $0["reason"] == "unauthenticated_master" }.count == 2
                }

                // A scheduler certificate does not even get onto the agent's bus.
                let scheduler = try await Self.peer(certs, "scheduler")
                defer { Task { await scheduler.shutdown() } }
                try await scheduler.send(Envelope(epoch: leader.epoch, from: leader.pid, payload: .shutdown(ShutdownMessage(message: "forged"))), to: agentPID)
                try await agent.waitFor("connection_rejected", ["cause": "wrong_role"], timeout: .seconds(20))

                #expect(agent.isRunning, "the agent did not shut down")
                #expect(cluster.deadTasks().isEmpty, "its task keeps running")
                #expect(cluster.taskPIDs(of: agent) == tasks, "no task was launched by the forger")
                #expect(!FileManager.default.fileExists(atPath: "\(cluster.directory.path)/forged-ran"))
                #expect(agent.milestones("stopping").isEmpty && agent.milestones("shutting_down_executor").isEmpty)
            }
        }

        @Test func anAgentCertificateCannotActAsAnotherAgentAndASchedulerCertificateCannotSendAgentMessages() async throws {
            let certs = try TestCertificates.make("bindings")
            defer { certs.remove() }
            try certs.add("agent-2", role: "agent")
            try await withCluster { cluster in
                Self.tlsCluster(cluster, certs)
                try await cluster.start(masters: 1, agents: 1, tasks: 0)
                let (master, leader) = try await cluster.leader()
                let masterPID = try #require(PID(leader.pid))
                let victimID = try await cluster.agentID(of: cluster.agents[0])

                // Holding agent-2's certificate, re-register as the agent registered with "agent"'s.
                let other = try await Self.peer(certs, "agent-2")
                defer { Task { await other.shutdown() } }
                let claim = ReregisterAgentMessage(agent: AgentInfo(hostname: "127.0.0.1", port: Int32(other.pid!.port), id: AgentID(value: victimID)))
                try await other.send(.reregisterAgent(claim), epoch: leader.epoch, to: masterPID)
                let refused = try await master.daemon.waitFor("agent_refused", timeout: .seconds(20))
                #expect(refused["agent"] == other.pid!.description)

                // Holding a scheduler certificate, register as an agent.
                let scheduler = try await Self.peer(certs, "scheduler")
                defer { Task { await scheduler.shutdown() } }
                try await scheduler.send(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "127.0.0.1"))), epoch: leader.epoch, to: masterPID)
                try await master.daemon.waitFor("message_dropped", ["reason": "wrong_peer_role"], timeout: .seconds(20))

                #expect(master.daemon.milestones("agent_registered").count == 1, "only the real agent was admitted")
                #expect(master.daemon.milestones("agent_reregistered").isEmpty, "nobody took over the real agent's id")
                #expect(cluster.agents[0].isRunning)
            }
        }

        @Test func withoutTLSAForgedShutdownFromAPeerThatCannotProveTheAgentsSecretIsRefused() async throws {
            try await withCluster { cluster in
                let dir = cluster.directory
                let credentials = dir.appending(path: "credentials.json")
                try Data(#"{"credentials":[{"principal":"agent","secret":"agent-secret-31"},{"principal":"fw","secret":"fw-secret-32"}]}"#.utf8).write(to: credentials)
                let agentCredential = dir.appending(path: "agent.credential")
                try Data("agent agent-secret-31\n".utf8).write(to: agentCredential)
                let frameworkCredential = dir.appending(path: "fw.credential")
                try Data("fw fw-secret-32\n".utf8).write(to: frameworkCredential)
                let master = try cluster.startMaster(extra: ["--credentials", credentials.path, "--authenticate_agents", "--authenticate_frameworks"])
                try await master.daemon.waitFor("leading", timeout: .seconds(20))
                let agent = try cluster.startAgent(extra: ["--credential", agentCredential.path])
                try await agent.waitFor("registered", timeout: .seconds(20))
                // The master's own messages are acted on: its links prove the agent's secret (a task runs).
                let fw = try cluster.startFramework(tasks: 1, extra: ["--credential", frameworkCredential.path])
                try await fw.waitFor("all_running", ["count": "1"], timeout: .seconds(30))
                let (_, leader) = try await cluster.leader()
                let agentPID = try #require(PID(try await cluster.busPID(of: agent)))
                let tasks = cluster.taskPIDs(of: agent)

                let forger = MessageBus()
                try await forger.start(name: "forger")
                defer { Task { await forger.shutdown() } }
                try await forger.send(Envelope(epoch: leader.epoch, from: leader.pid, payload: .shutdown(ShutdownMessage(message: "forged"))), to: agentPID)
                try await agent.waitFor("message_dropped", ["reason": "unauthenticated_master"], timeout: .seconds(20))
                #expect(agent.isRunning && agent.milestones("stopping").isEmpty, "the agent did not shut down")
                #expect(cluster.deadTasks().isEmpty && cluster.taskPIDs(of: agent) == tasks, "its task keeps running")
            }
        }
    }
}
