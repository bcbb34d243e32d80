import MesosWire
import Testing
@testable import MesosCore

/// The read-only views behind `/master/state`: agents' health, what they use, who leads.
@Suite struct MasterViewsTests {
    @Test func agentHealthFollowsPingsAndRecoveringAgentsAreListed() {
        let admitted = AgentInfo(hostname: "h0", resources: [Resource(name: "cpus", scalar: 2)], id: AgentID(value: "old-S1"), pid: P.agent2.description)
        var h = MasterHarness(registry: Registry(admitted: [Registry.Agent(info: admitted)], highestEpoch: 4))
        h.lead()
        #expect(h.core.detectedLeader?.pid == P.master)
        let agent = h.registerAgent()
        #expect(h.core.agentViews.map(\.health) == [.healthy, .recovering], "the registry's agent has not re-registered yet")
        #expect(h.core.agentViews.map(\.active) == [true, false])
        h.answerPings()
        _ = h.take()
        h.tick(.seconds(1))  // ping sent, never answered
        h.tick(.seconds(1))  // ping timed out
        let missed = h.core.agentViews.first { $0.info.id == agent }?.health
        #expect(missed == .missedPings(h.core.settings.maxAgentPingTimeouts - 1), "one short of removal: \(String(describing: missed))")
        h.answerPings()
        h.tick(.seconds(1))
        #expect(h.core.agentViews.first { $0.info.id == agent }?.health == .healthy, "a pong makes it healthy again")
    }

    @Test func usedResourcesAreThoseOfLiveTasks() {
        var h = MasterHarness()
        h.lead()
        let agent = h.registerAgent(cpus: 4)
        let framework = h.registerFramework()
        guard let offer = h.offer() else { Issue.record("no offer"); return }
        h.launch("t1", framework: framework, offer: offer, cpus: 1.5)
        #expect(h.core.agentViews.first { $0.info.id == agent }?.used.amounts["cpus"] == 1.5)
        let view = h.core.frameworkViews.first
        #expect(view?.info.id == framework && view?.connected == true && view?.active == true && view?.recovered == false)
    }
}
