// The fault proxy itself, over real loopback sockets (`Loopback.Socket` plays client and server).
import FaultProxy
import Foundation
import MesosWire
import Testing
@testable import TestSupport

/// Every fault test, one at a time: they start real daemons on a 2-core machine.
@Suite(.serialized) struct FaultTests {}

extension Loopback.ReadResult {
    /// `text` arrived.
    static func text(_ text: String) -> Self { .data(Array(text.utf8)) }
}

extension FaultTests {
    @Suite struct ProxyTests {
        /// A server, a proxy to it, and one connection through it (client side, server side).
        func connected(_ proxy: FaultProxy, _ server: Loopback.Socket) throws -> (Loopback.Socket, Loopback.Socket) {
            let client = try Loopback.Socket(connectingTo: proxy.port)
            return (client, try server.accept())
        }

        /// Waits (up to 5 s) until the proxy's statistics satisfy `condition`: the positive sign that it
        /// processed what the test sent, before the test asserts what did not come out.
        func waitForProxy(_ proxy: FaultProxy, _ what: String, _ condition: (FaultProxy.Statistics) -> Bool) throws {
            let deadline = ContinuousClock.now + .seconds(5)
            while !condition(proxy.statistics) {
                guard ContinuousClock.now < deadline else { throw ClusterError("timed out waiting for \(what): \(proxy.statistics)") }
                usleep(2_000)
            }
        }

        @Test func passForwardsBothWaysAndCloses() throws {
            let server = try Loopback.Socket(listeningOn: 0)
            let proxy = try FaultProxy(targetPort: server.port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            try client.write("hello")
            #expect(accepted.read(5) == .text("hello"))
            try accepted.write("world")
            #expect(client.read(5) == .text("world"))
            client.shutdownWrite()
            #expect(accepted.read(1) == .eof)
            #expect(proxy.statistics.forwarded[.clientToServer] == 5)
        }

        /// Shown by order, not by measuring: bytes sent first in the delayed direction are overtaken by
        /// bytes sent after them the other way. The delay (3 s) is longer than the reads' 2 s bound, so a
        /// read that ends in time was not delayed.
        @Test func delayAddsLatencyInOneDirection() throws {
            let server = try Loopback.Socket(listeningOn: 0)
            let proxy = try FaultProxy(targetPort: server.port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            proxy.delay(.seconds(3), .clientToServer)
            let start = ContinuousClock.now
            try client.write("a")
            try client.write("b")
            // Sent after "ab", back the other way: not delayed. The proxy's connection thread read "ab" in
            // the same poll round (it was waiting already), so when "c" is through, "ab" is held back.
            try accepted.write("c")
            #expect(client.read(1) == .text("c"))
            #expect(accepted.read(2, timeout: .milliseconds(1)) == .timeout, "'ab' (sent first, delayed) must not be through when 'c' is")
            // Held, not dropped, and in order.
            #expect(accepted.read(2, timeout: .seconds(10)) == .text("ab"))
            print("[proxy] delayed bytes arrived after \(Int((ContinuousClock.now - start).inSeconds)) s (delay 3 s)")
            // Healed: the next bytes pass within a bound shorter than the delay.
            proxy.heal()
            try client.write("d")
            #expect(accepted.read(1) == .text("d"))
        }

        @Test func blackholeDropsWithoutClosingAndHealResets() throws {
            let server = try Loopback.Socket(listeningOn: 0)
            let proxy = try FaultProxy(targetPort: server.port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            proxy.blackhole()
            try client.write("lost")
            try accepted.write("lost")
            // The proxy read both and dropped them (dropped bytes are never queued): nothing is on its way.
            try waitForProxy(proxy, "both 'lost' dropped") { $0.dropped[.clientToServer] == 4 && $0.dropped[.serverToClient] == 4 }
            #expect(accepted.read(4, timeout: .milliseconds(1)) == .timeout)
            #expect(client.read(4, timeout: .milliseconds(1)) == .timeout)
            // Closes are hidden too: shown at the heal below, where the server side gets the RST with no FIN before it.
            client.shutdownWrite()
            // New connections are accepted, and go nowhere: the proxy drains what they send and never
            // connects to the server for them (it would have before reading anything).
            let late = try Loopback.Socket(connectingTo: proxy.port)
            try late.write("x")
            try waitForProxy(proxy, "the late connection accepted and its 'x' dropped") {
                $0.accepted == 2 && $0.dropped[.clientToServer] == 5
            }
            #expect(late.read(1, timeout: .milliseconds(1)) == .timeout)
            #expect((try? server.accept(timeout: .zero)) == nil)
            #expect(proxy.statistics.forwarded[.clientToServer, default: 0] == 0)
            proxy.heal()
            // Broken streams are reset; fresh connections pass.
            #expect(accepted.read(1) == .reset)
            #expect(late.read(1) == .reset)
            let (fresh, freshAccepted) = try connected(proxy, server)
            try fresh.write("ok")
            #expect(freshAccepted.read(2) == .text("ok"))
        }

        @Test func oneWayBlackhole() throws {
            let server = try Loopback.Socket(listeningOn: 0)
            let proxy = try FaultProxy(targetPort: server.port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            proxy.blackhole(.serverToClient)
            try client.write("up")
            #expect(accepted.read(2) == .text("up"))
            try accepted.write("down")
            try waitForProxy(proxy, "'down' dropped") { $0.dropped[.serverToClient] == 4 }
            #expect(client.read(4, timeout: .milliseconds(1)) == .timeout)
            proxy.heal()
            #expect(client.read(1) == .reset)
        }

        @Test func resetClosesWithRSTAndRefusesUntilHealed() throws {
            let server = try Loopback.Socket(listeningOn: 0)
            let proxy = try FaultProxy(targetPort: server.port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            proxy.reset()
            #expect(client.read(1) == .reset)
            #expect(accepted.read(1) == .reset)
            let refused = try Loopback.Socket(connectingTo: proxy.port)
            #expect(refused.read(1) == .reset)
            proxy.heal()
            let (again, againAccepted) = try connected(proxy, server)
            try again.write("hi")
            #expect(againAccepted.read(2) == .text("hi"))
        }

        @Test func stopClosesEverything() throws {
            let server = try Loopback.Socket(listeningOn: 0)
            let proxy = try FaultProxy(targetPort: server.port)
            // The server side stays open: closing it would send the client a FIN through the proxy before the stop.
            let (client, accepted) = try connected(proxy, server)
            let listening = proxy.port
            proxy.stop()
            #expect(client.read(1) == .reset)
            withExtendedLifetime(accepted) {}
            #expect(proxy.statistics.open == 0)
            #expect((try? Loopback.Socket(connectingTo: listening)) == nil)
        }
    }
}
