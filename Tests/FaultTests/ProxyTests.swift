// The fault proxy itself, over real loopback sockets.
import FaultProxy
import Foundation
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Every fault test, one at a time: they start real daemons on a 2-core machine.
@Suite(.serialized) struct FaultTests {}

/// A blocking loopback socket with timed reads, for playing client and server.
final class Sock {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    static func listener() -> (Sock, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 16)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (Sock(fd: fd), Int(UInt16(bigEndian: a.sin_port)))
    }

    static func connect(_ port: Int) throws -> Sock {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 { close(fd); throw ClusterError("connect to \(port): errno \(errno)") }
        return Sock(fd: fd)
    }

    func accept(timeoutMs: Int32 = 2000) throws -> Sock {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMs) > 0 else { throw ClusterError("nothing to accept") }
        return Sock(fd: Glibc.accept(fd, nil, nil))
    }

    func send(_ text: String) { _ = Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

    enum ReadResult: Equatable { case data(String), timeout, eof, reset }

    /// Reads what arrives within `timeoutMs`, until `count` bytes or a close.
    func read(_ count: Int, timeoutMs: Int32 = 2000) -> ReadResult {
        var bytes: [UInt8] = []
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutMs))
        while bytes.count < count {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))) > 0 else { break }
            var buffer = [UInt8](repeating: 0, count: count - bytes.count)
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 { return errno == ECONNRESET ? .reset : .eof }
            if n == 0 { return bytes.isEmpty ? .eof : .data(String(decoding: bytes, as: UTF8.self)) }
            bytes += buffer[..<n]
        }
        return bytes.isEmpty ? .timeout : .data(String(decoding: bytes, as: UTF8.self))
    }
}

extension FaultTests {
    @Suite struct ProxyTests {
        /// A server, a proxy to it, and one connection through it (client side, server side).
        func connected(_ proxy: FaultProxy, _ server: Sock) throws -> (Sock, Sock) {
            let client = try Sock.connect(proxy.port)
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
            let (server, port) = Sock.listener()
            let proxy = try FaultProxy(targetPort: port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            client.send("hello")
            #expect(accepted.read(5) == .data("hello"))
            accepted.send("world")
            #expect(client.read(5) == .data("world"))
            shutdown(client.fd, Int32(SHUT_WR))
            #expect(accepted.read(1) == .eof)
            #expect(proxy.statistics.forwarded[.clientToServer] == 5)
        }

        /// Shown by order, not by measuring: bytes sent first in the delayed direction are overtaken by
        /// bytes sent after them the other way. The delay (3 s) is longer than the reads' 2 s bound, so a
        /// read that ends in time was not delayed.
        @Test func delayAddsLatencyInOneDirection() throws {
            let (server, port) = Sock.listener()
            let proxy = try FaultProxy(targetPort: port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            proxy.delay(.seconds(3), .clientToServer)
            let start = ContinuousClock.now
            client.send("a")
            client.send("b")
            // Sent after "ab", back the other way: not delayed. The proxy's connection thread read "ab" in
            // the same poll round (it was waiting already), so when "c" is through, "ab" is held back.
            accepted.send("c")
            #expect(client.read(1) == .data("c"))
            #expect(accepted.read(2, timeoutMs: 1) == .timeout, "'ab' (sent first, delayed) must not be through when 'c' is")
            // Held, not dropped, and in order.
            #expect(accepted.read(2, timeoutMs: 10_000) == .data("ab"))
            print("[proxy] delayed bytes arrived after \((ContinuousClock.now - start).components.seconds) s (delay 3 s)")
            // Healed: the next bytes pass within a bound shorter than the delay.
            proxy.heal()
            client.send("d")
            #expect(accepted.read(1) == .data("d"))
        }

        @Test func blackholeDropsWithoutClosingAndHealResets() throws {
            let (server, port) = Sock.listener()
            let proxy = try FaultProxy(targetPort: port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            proxy.blackhole()
            client.send("lost")
            accepted.send("lost")
            // The proxy read both and dropped them (dropped bytes are never queued): nothing is on its way.
            try waitForProxy(proxy, "both 'lost' dropped") { $0.dropped[.clientToServer] == 4 && $0.dropped[.serverToClient] == 4 }
            #expect(accepted.read(4, timeoutMs: 1) == .timeout)
            #expect(client.read(4, timeoutMs: 1) == .timeout)
            // Closes are hidden too: shown at the heal below, where the server side gets the RST with no FIN before it.
            shutdown(client.fd, Int32(SHUT_WR))
            // New connections are accepted, and go nowhere: the proxy drains what they send and never
            // connects to the server for them (it would have before reading anything).
            let late = try Sock.connect(proxy.port)
            late.send("x")
            try waitForProxy(proxy, "the late connection accepted and its 'x' dropped") {
                $0.accepted == 2 && $0.dropped[.clientToServer] == 5
            }
            #expect(late.read(1, timeoutMs: 1) == .timeout)
            #expect((try? server.accept(timeoutMs: 0)) == nil)
            #expect(proxy.statistics.forwarded[.clientToServer, default: 0] == 0)
            proxy.heal()
            // Broken streams are reset; fresh connections pass.
            #expect(accepted.read(1) == .reset)
            #expect(late.read(1) == .reset)
            let (fresh, freshAccepted) = try connected(proxy, server)
            fresh.send("ok")
            #expect(freshAccepted.read(2) == .data("ok"))
        }

        @Test func oneWayBlackhole() throws {
            let (server, port) = Sock.listener()
            let proxy = try FaultProxy(targetPort: port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            proxy.blackhole(.serverToClient)
            client.send("up")
            #expect(accepted.read(2) == .data("up"))
            accepted.send("down")
            try waitForProxy(proxy, "'down' dropped") { $0.dropped[.serverToClient] == 4 }
            #expect(client.read(4, timeoutMs: 1) == .timeout)
            proxy.heal()
            #expect(client.read(1) == .reset)
        }

        @Test func resetClosesWithRSTAndRefusesUntilHealed() throws {
            let (server, port) = Sock.listener()
            let proxy = try FaultProxy(targetPort: port)
            defer { proxy.stop() }
            let (client, accepted) = try connected(proxy, server)
            proxy.reset()
            #expect(client.read(1) == .reset)
            #expect(accepted.read(1) == .reset)
            let refused = try Sock.connect(proxy.port)
            #expect(refused.read(1) == .reset)
            proxy.heal()
            let (again, againAccepted) = try connected(proxy, server)
            again.send("hi")
            #expect(againAccepted.read(2) == .data("hi"))
        }

        @Test func stopClosesEverything() throws {
            let (server, port) = Sock.listener()
            let proxy = try FaultProxy(targetPort: port)
            // The server side stays open: closing it would send the client a FIN through the proxy before the stop.
            let (client, accepted) = try connected(proxy, server)
            let listening = proxy.port
            proxy.stop()
            #expect(client.read(1) == .reset)
            withExtendedLifetime(accepted) {}
            #expect(proxy.statistics.open == 0)
            #expect((try? Sock.connect(listening)) == nil)
        }
    }
}
