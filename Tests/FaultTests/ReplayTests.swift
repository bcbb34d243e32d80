// Replayed, stale and wrong-type envelopes sent straight to a running master from a bus of our own.
import Foundation
import MesosBus
import MesosWire
import Synchronization
import Testing
@testable import TestSupport

final class Inbox: Sendable {
    private let envelopes = Mutex<[Envelope]>([])
    func add(_ e: Envelope) { envelopes.withLock { $0.append(e) } }
    var all: [Envelope] { envelopes.withLock { $0 } }
}

extension FaultTests {
    @Suite struct ReplayTests {
        @Test func replayedStaleAndWrongTypeFramesLeaveTheMasterServing() async throws {
            try await withCluster { cluster in
                try await cluster.start(masters: 1, agents: 1, tasks: 2)
                let (leader, record) = try await cluster.leader()
                let masterPID = try #require(PID(record.pid))
                let agentID = try await cluster.agentID(of: cluster.agents[0])

                let bus = MessageBus()
                let me = try await bus.start(name: "slave(1)")
                let inbox = Inbox()
                let listener = Task { for await event in bus.events { if case .message(let e) = event { inbox.add(e.envelope) } } }
                defer { listener.cancel() }

                // A registration as an agent sends it, replayed at an old epoch: answered with a hint.
                let registration = Envelope.Payload.registerAgent(RegisterAgentMessage(
                    agent: AgentInfo(hostname: "replayer", port: Int32(me.port), resources: Resources(parsing: "cpus:1;mem:64")!.list, pid: me.description)))
                for _ in 0..<3 { try await bus.send(registration, epoch: record.epoch - 1, to: masterPID) }
                try await bus.send(registration, epoch: 0, to: masterPID)
                try await Poll.until("a LeaderHint for the stale registration", timeout: .seconds(10)) {
                    inbox.all.contains { if case .leaderHint(let h)? = $0.payload { h.leaderEpoch == record.epoch } else { false } }
                }
                #expect(!inbox.all.contains { if case .agentRegistered? = $0.payload { true } else { false } }, "a stale registration is not admitted")

                // Duplicate status update acknowledgements, and message kinds a master never gets.
                let ack = Envelope.Payload.statusUpdateAck(StatusUpdateAcknowledgementMessage(
                    agentID: AgentID(value: agentID), frameworkID: FrameworkID(value: "no-such-framework"),
                    taskID: TaskID(value: "task-1"), uuid: Array(repeating: 7, count: 16)))
                for _ in 0..<2 { try await bus.send(ack, epoch: record.epoch, to: masterPID) }
                try await bus.send(.ping(PingAgentMessage(connected: true)), epoch: record.epoch, to: masterPID)
                try await bus.send(.shutdown(ShutdownMessage(message: "replayed")), epoch: record.epoch, to: masterPID)
                try await bus.send(.agentRegistered(AgentRegisteredMessage(agentID: AgentID(value: agentID))), epoch: record.epoch, to: masterPID)
                try await bus.send(Envelope(epoch: record.epoch, from: me.description, payload: nil), to: masterPID)
                // Positive signal that the master processed all of them: an answer to a last message.
                try await bus.send(registration, epoch: record.epoch - 1, to: masterPID)
                try await Poll.until("the hint answering the last message", timeout: .seconds(10)) {
                    inbox.all.filter { if case .leaderHint? = $0.payload { true } else { false } }.count >= 5
                }
                // Each was refused or ignored with its own milestone, none acted on.
                #expect(leader.daemon.milestones("unexpected_message", ["from": me.description]).map { $0["kind"] ?? "" }.sorted() == ["agent_registered", "ping", "shutdown"])
                #expect(leader.daemon.milestones("call_refused", ["from": me.description, "kind": "status_update_ack"]).count == 2)
                await bus.shutdown()

                // The master keeps serving: a new agent registers, the old one and the tasks are fine.
                #expect(leader.daemon.isRunning)
                let second = try cluster.startAgent()
                try await second.waitFor("registered", ["master": record.pid, "epoch": "\(record.epoch)"], timeout: .seconds(20))
                #expect(leader.daemon.milestones("agent_removed").isEmpty)
                #expect(cluster.deadTasks().isEmpty)
                #expect(cluster.lostTaskLines.isEmpty)
                #expect(try await cluster.leaderInZooKeeper() == record)
            }
        }
    }
}
