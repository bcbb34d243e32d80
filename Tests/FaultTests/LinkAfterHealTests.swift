import FaultProxy
import MesosBus
import MesosWire
import Testing
import TestSupport

/// A link whose bytes were swallowed by a blackhole must not stay silently dead after the heal.
@Suite struct LinkAfterHealTests {
    @Test func aLinkBrokenByABlackholeDeliversAgainAfterTheHeal() async throws {
        let a = MessageBus(), b = MessageBus()
        try await a.start(name: "a")
        let real = try await b.start(name: "b")
        let proxy = try FaultProxy(targetPort: real.port)
        let viaProxy = PID(name: "b", host: "127.0.0.1", port: proxy.port)
        let received = EventRecorder(b.events), sender = EventRecorder(a.events)
        func epoch(_ arrival: EventRecorder<BusEvent>.Arrival) -> UInt64? {
            if case .message(let inbound) = arrival.event { inbound.envelope.epoch } else { nil }
        }
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 1, to: viaProxy)
        #expect(epoch(try await received.next(within: .seconds(5))) == 1)

        // Epoch 2 goes into the blackhole: the proxy read its frame and dropped it.
        proxy.blackhole(.clientToServer)
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 2, to: viaProxy)
        try await Poll.until("epoch 2's frame dropped by the proxy", timeout: .seconds(5)) {
            proxy.statistics.dropped[.clientToServer, default: 0] > 0
        }

        // The heal resets the connection that lost bytes, and a's link takes that in: it reports the link broken.
        proxy.heal()
        let broken = try await sender.next(within: .seconds(5))
        guard case .linkBroken(let peer, let reason) = broken.event else {
            Issue.record("a: expected the link to \(proxy.address) broken, got \(broken.event)")
            return
        }
        #expect(peer == proxy.address, "\(reason)")

        // The next message is delivered, over a new connection; epoch 2 stays lost (at most once).
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 3, to: viaProxy)
        #expect(epoch(try await received.next(within: .seconds(5))) == 3)
        #expect(proxy.statistics.accepted == 2, "\(proxy.statistics)")
        #expect(received.events.count == 2 && sender.events.count == 1, "b: \(received.events), a: \(sender.events)")
        proxy.stop()
        await a.shutdown(); await b.shutdown()
    }
}
