import Foundation
import MesosWire
import ProcessSupport
import Testing
@testable import TestSupport

/// `--return_routes=true` with real processes: the master answers agents over the connections they
/// opened, so it holds one socket per agent (about two without), and its messages still arrive.
@Suite struct ReturnRouteClusterTests {
    /// Sockets among a process's open descriptors.
    static func sockets(_ pid: pid_t) throws -> Int {
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
        return fds.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)"))?.hasPrefix("socket:") ?? false }.count
    }

    @Test func aMasterWithReturnRoutesHoldsOneSocketPerAgentAndItsAnswersArrive() async throws {
        try await withCluster { cluster in
            let agents = 50
            let master = try cluster.startMaster(extra: ["--return_routes=true"])
            try await master.daemon.waitFor("leading", timeout: .seconds(20))
            let idle = try Self.sockets(master.daemon.pid)  // its listener and ZooKeeper session
            let swarm = try cluster.startSwarm(agents: agents)
            // An agent logs "registered" only when the master's AgentRegisteredMessage reached it.
            try await Poll.until("\(agents) agents registered", timeout: .seconds(60)) {
                swarm.lines.filter { $0.contains(" registered epoch=") }.count >= agents
            }
            // Each master-to-agent link closes its own connection once the agent's claim arrives.
            var held = 0
            try await Poll.until("the master's own connections to the agents closed", timeout: .seconds(60)) {
                held = try Self.sockets(master.daemon.pid) - idle
                return held <= agents
            }
            #expect(held >= agents, "one socket per agent: \(held) for \(agents) agents")
            #expect(master.daemon.isRunning && swarm.isRunning)
        }
    }

    /// An agent connects to the master from its own port (`--connect_from_listening_port`, on by
    /// default), so the master writes over that connection at once; one started with it off is
    /// proved by an offer's nonce. Both registered: the master's AgentRegisteredMessage reached them.
    @Test func anAgentConnectingFromItsPortIsProvedByItsAddressAndOneWithTheFlagOffByAnOffer() async throws {
        try await withCluster { cluster in
            let master = try cluster.startMaster(extra: ["--return_routes=true"])
            try await master.daemon.waitFor("leading", timeout: .seconds(20))
            let near = try cluster.startAgent()
            let far = try cluster.startAgent(extra: ["--connect_from_listening_port=false"])
            for agent in [near, far] { try await agent.waitFor("registered", timeout: .seconds(30)) }
            let port = try await cluster.busPID(of: master.daemon).split(separator: ":").last.flatMap { Int($0) } ?? 0
            var metrics: [String: Any] = [:]
            try await Poll.until("the master adopted the second agent's connection", timeout: .seconds(30)) {
                metrics = try await HTTPProbe.get(port: port, "/metrics/snapshot").object ?? [:]
                return (metrics["bus/return_routes_adopted"] as? NSNumber)?.intValue == 1
            }
            #expect((metrics["bus/return_routes_by_source"] as? NSNumber)?.intValue == 1, "\(metrics)")
        }
    }
}
