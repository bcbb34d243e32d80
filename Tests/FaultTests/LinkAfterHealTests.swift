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
        do {
            try await exercise(a, b, proxy)
        } catch {
            proxy.stop(); await a.shutdown(); await b.shutdown()
            throw error
        }
        proxy.stop(); await a.shutdown(); await b.shutdown()
    }

    // The waits are generous (positive signals only): the suite runs beside real-process tests.
    private func exercise(_ a: MessageBus, _ b: MessageBus, _ proxy: FaultProxy) async throws {
        let viaProxy = PID(name: "b", host: "127.0.0.1", port: proxy.port)
        let received = EventRecorder(b.events), sender = EventRecorder(a.events)
        func epoch(_ arrival: EventRecorder<BusEvent>.Arrival) -> UInt64? {
            if case .message(let inbound) = arrival.event { inbound.envelope.epoch } else { nil }
        }
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 1, to: viaProxy)
        #expect(epoch(try await received.next("b receives epoch 1", within: .seconds(30))) == 1)

        // Epoch 2 goes into the blackhole: the proxy read its frame and dropped it.
        proxy.blackhole(.clientToServer)
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 2, to: viaProxy)
        try await Poll.until("epoch 2's frame dropped by the proxy", timeout: .seconds(30)) {
            proxy.statistics.dropped[.clientToServer, default: 0] > 0
        }

        // The heal resets the connection that lost bytes, and a's link takes that in: it reports the link broken.
        proxy.heal()
        let broken = try await sender.next("a's link reported broken after the heal", within: .seconds(30))
        guard case .linkBroken(let peer, let reason) = broken.event else {
            Issue.record("a: expected the link to \(proxy.address) broken, got \(broken.event)")
            return
        }
        #expect(peer == proxy.address, "\(reason)")

        // The next message is delivered, over a new connection; epoch 2 stays lost (at most once).
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 3, to: viaProxy)
        #expect(epoch(try await received.next("b receives epoch 3 over a new connection", within: .seconds(30))) == 3)
        #expect(proxy.statistics.accepted == 2, "\(proxy.statistics)")
        #expect(received.events.count == 2 && sender.events.count == 1, "b: \(received.events), a: \(sender.events)")
    }
}
