import MesosWire
import ProcessSupport
import Synchronization
import TestSupport
import Testing
@testable import MesosBus

/// A bus out of descriptors (its `DescriptorBudget` spent): its links connect again shortly
/// instead of dropping what they queued. A new leader holds 10,000 agents' connections and opens
/// one more to each for a moment, a return route's offer; at the process's limit those connects
/// failed with EMFILE and their answers were lost.
@Suite(.timeLimit(.minutes(3))) struct DescriptorShortageTests {
    @Test func linksOutOfDescriptorsConnectAgainAndDropNothing() async throws {
        let logs = CapturedLogs()
        // Room for the four agents' connections and one of the master's own at a time.
        let budget = DescriptorBudget(limit: 5)
        var config = BusConfiguration.test
        config.offerReturnRoutes = true
        config.descriptors = budget
        let master = MessageBus(configuration: config, logger: logs.logger("master"))
        try await master.start(name: "master")
        var peers: [MessageBus] = []
        for _ in 0..<4 { peers.append(try await ReturnRouteTests.peerBus(logs)) }
        let agents = peers
        defer { Task { for a in agents { await a.shutdown() }; await master.shutdown() } }
        for a in agents { a.post(.pong(PongAgentMessage()), epoch: 1, to: master.pid!) }
        #expect(await ReturnRouteTests.messages(master, agents.count).count == agents.count)
        #expect(budget.inUse == 4, "the agents' connections are counted")

        let answered = Answered()
        for a in agents {
            Task { if await ReturnRouteTests.messages(a, 1).first?.envelope.epoch == 2 { answered.count.add(1, ordering: .relaxed) } }
        }
        // Four links at once, room for one: three wait until a route is adopted and the master's
        // own connection closes.
        for a in agents { master.post(.ping(PingAgentMessage(connected: true)), epoch: 2, to: a.pid!) }
        let delivered = await Poll.holds(within: .seconds(60)) { answered.count.load(ordering: .relaxed) == agents.count }

        #expect(delivered, "every agent got the master's message (\(answered.count.load(ordering: .relaxed)) of \(agents.count))")
        #expect(master.statistics.connectsDeferred > 0, "the budget held connects back")
        #expect(master.statistics.messagesDropped == 0 && master.statistics.connectsFailed == 0)
        #expect(master.statistics.returnRoutesAdopted == agents.count)
        try await Poll.until("the master's own connections are closed and released", timeout: .seconds(30)) { budget.inUse == 4 }
    }
}

private final class Answered: Sendable {
    let count = Atomic<Int>(0)
}
