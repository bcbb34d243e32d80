import Foundation
import Synchronization

/// A TCP proxy between one master and one ZooKeeper server, to cut that master from ZooKeeper
/// the way a network partition does: `blackhole()` keeps every connection open but silently drops
/// the bytes in both directions (and new connections are accepted and drained, never forwarded),
/// so neither side sees a reset: the server expires the session after the session timeout, the
/// client only notices the silence. `restore()` closes everything held and forwards again.
///
/// Blocking sockets, two threads per connection: a handful of connections, no hot path.
final class BlackholeProxy: Sendable {
    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let state = Mutex(State())

    private struct State {
        var blackholed = false
        var connections: [ObjectIdentifier: ProxyConnection] = [:]
        var closed = false
    }

    /// Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:`upstreamPort`.
    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("proxy socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw HarnessError("proxy bind/listen: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    var isBlackholed: Bool { state.withLock { $0.blackholed } }

    func blackhole() { state.withLock { $0.blackholed = true } }

    /// Forwards again; connections held during the cut are closed (clients reconnect).
    func restore() {
        let held = state.withLock { state -> [ProxyConnection] in
            state.blackholed = false
            defer { state.connections.removeAll() }
            return Array(state.connections.values)
        }
        for c in held { c.shutdown() }
    }

    func stop() {
        let held = state.withLock { state -> [ProxyConnection] in
            state.closed = true
            defer { state.connections.removeAll() }
            return Array(state.connections.values)
        }
        for c in held { c.shutdown() }
        Glibc.shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return  // listener closed
            }
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let (closed, blackholed) = state.withLock { ($0.closed, $0.blackholed) }
            if closed {
                close(client)
                return
            }
            var upstream: Int32 = -1
            if !blackholed {
                upstream = Self.connect(port: upstreamPort)
                if upstream < 0 {
                    close(client)
                    continue
                }
            }
            let connection = ProxyConnection(client: client, upstream: upstream)
            state.withLock { $0.connections[ObjectIdentifier(connection)] = connection }
            connection.run(proxy: self)
        }
    }

    fileprivate func dropping() -> Bool { state.withLock { $0.blackholed } }

    fileprivate func finished(_ connection: ProxyConnection) {
        _ = state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    static func loopback(port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        return a
    }

    static func connect(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = loopback(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            return -1
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }
}

/// One proxied connection: a pump thread per direction (just a drain when accepted during a cut).
/// The last pump to finish closes both descriptors, so no descriptor is closed while in use.
private final class ProxyConnection: Sendable {
    let client: Int32
    let upstream: Int32
    private let pumps = Mutex(0)

    init(client: Int32, upstream: Int32) {
        self.client = client
        self.upstream = upstream
    }

    func run(proxy: BlackholeProxy) {
        if upstream < 0 {
            pumps.withLock { $0 = 1 }
            Thread.detachNewThread { [self] in pump(from: client, to: -1, proxy: proxy) }
        } else {
            pumps.withLock { $0 = 2 }
            Thread.detachNewThread { [self] in pump(from: client, to: upstream, proxy: proxy) }
            Thread.detachNewThread { [self] in pump(from: upstream, to: client, proxy: proxy) }
        }
    }

    func shutdown() {
        Glibc.shutdown(client, Int32(SHUT_RDWR))
        if upstream >= 0 { Glibc.shutdown(upstream, Int32(SHUT_RDWR)) }
    }

    private func pump(from source: Int32, to destination: Int32, proxy: BlackholeProxy) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        loop: while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if destination < 0 || proxy.dropping() { continue }  // the cut: bytes vanish, nothing closes
            var sent = 0
            while sent < n {
                let w = buffer.withUnsafeBytes { write(destination, $0.baseAddress! + sent, n - sent) }
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { break loop }
                sent += w
            }
        }
        // During a cut a close is not passed on either: the other side keeps its half until it gives up.
        if !proxy.dropping() { shutdown() }
        let last = pumps.withLock { count -> Bool in
            count -= 1
            return count == 0
        }
        if last {
            close(client)
            if upstream >= 0 { close(upstream) }
            proxy.finished(self)
        }
    }
}
