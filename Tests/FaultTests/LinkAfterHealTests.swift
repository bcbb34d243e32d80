import FaultProxy
import MesosBus
import MesosWire
import Testing

/// A link whose bytes were swallowed by a blackhole must not stay silently dead after the heal.
@Suite struct LinkAfterHealTests {
    @Test func aLinkBrokenByABlackholeDeliversAgainAfterTheHeal() async throws {
        let a = MessageBus(), b = MessageBus()
        try await a.start(name: "a")
        let real = try await b.start(name: "b")
        let proxy = try FaultProxy(targetPort: real.port)
        let viaProxy = PID(name: "b", host: "127.0.0.1", port: proxy.port)
        var events = b.events.makeAsyncIterator()
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 1, to: viaProxy)
        guard case .message(let first)? = await events.next() else { Issue.record("nothing"); return }
        #expect(first.envelope.epoch == 1)
        proxy.blackhole(.clientToServer)
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 2, to: viaProxy)
        try await Task.sleep(for: .milliseconds(300))
        proxy.heal()
        try await Task.sleep(for: .milliseconds(300))
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 3, to: viaProxy)
        try await Task.sleep(for: .milliseconds(300))
        try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 4, to: viaProxy)
        let got: UInt64? = if case .message(let e)? = await events.next() { e.envelope.epoch } else { nil }
        #expect(got == 3 || got == 4)
        proxy.stop()
        await a.shutdown(); await b.shutdown()
    }
}
