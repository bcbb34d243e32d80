// A fault-injection TCP proxy for tests: listens on loopback, forwards every accepted connection to
// one target, and misbehaves on request, per direction, at runtime (pass, delay, blackhole, reset).
//
// One thread accepts; one thread per proxied connection runs a small poll(2) loop over both
// non-blocking sockets, with a queue per direction so delayed bytes keep their order. Every
// thread wakes at least every 50 ms to notice `stop()`, which waits until all of them are gone and
// every descriptor is closed.
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public final class FaultProxy: Sendable {
    /// Which way bytes travel: from the side that connected to the proxy, or back to it.
    public enum Direction: Sendable, CaseIterable, CustomStringConvertible {
        case clientToServer
        case serverToClient

        public var description: String { self == .clientToServer ? "client->server" : "server->client" }
    }

    public enum Mode: Sendable, Equatable, CustomStringConvertible {
        /// Forward as is.
        case pass
        /// Forward every byte this much later (in order).
        case delay(Duration)
        /// Keep connections open but drop every byte (and hide closes), as a network partition does.
        /// New connections are accepted (and, when both directions are blackholed, never forwarded).
        /// When the direction stops being blackholed, connections that lost bytes are reset: their
        /// streams are broken, as a TCP connection that timed out during the partition would be.
        case blackhole
        /// Close every connection with RST (SO_LINGER 0) and reset new ones right after accepting.
        case reset

        public var description: String {
            switch self {
            case .pass: "pass"
            case .delay(let d): "delay(\(d))"
            case .blackhole: "blackhole"
            case .reset: "reset"
            }
        }
    }

    public struct Statistics: Sendable, Equatable {
        public var accepted = 0
        public var open = 0
        public var forwarded: [Direction: Int] = [:]
        public var dropped: [Direction: Int] = [:]
        /// Connections reset (existing ones when `.reset` was set, and new ones refused by it).
        public var resets = 0
    }

    /// The port this proxy listens on (127.0.0.1).
    public var port: Int { core.port }
    public var targetHost: String { core.targetHost }
    public var targetPort: Int { core.targetPort }
    /// `127.0.0.1:port`
    public var address: String { "127.0.0.1:\(port)" }

    private let core: ProxyCore

    /// Listens on 127.0.0.1:`listenPort` (0: a free port) and forwards to `targetHost:targetPort`.
    public init(targetHost: String = "127.0.0.1", targetPort: Int, listenPort: Int = 0) throws {
        core = try ProxyCore(targetHost: targetHost, targetPort: targetPort, listenPort: listenPort)
    }

    /// Stops (the threads hold only the core, so dropping the last reference is enough).
    deinit { core.stop() }

    public func mode(_ direction: Direction) -> Mode { core.mode(direction) }
    /// Sets the mode of one direction, or of both (`direction` nil).
    public func set(_ mode: Mode, _ direction: Direction? = nil) { core.set(mode, direction) }
    /// Blackholes both directions (or one).
    public func blackhole(_ direction: Direction? = nil) { set(.blackhole, direction) }
    /// Resets every connection and new ones (both directions, or one).
    public func reset(_ direction: Direction? = nil) { set(.reset, direction) }
    /// Delays both directions (or one).
    public func delay(_ by: Duration, _ direction: Direction? = nil) { set(.delay(by), direction) }
    /// Both directions back to `.pass` (connections broken by a blackhole are reset).
    public func heal() { set(.pass, nil) }
    public var statistics: Statistics { core.statistics }
    /// Closes the listener and every connection (RST) and returns once every thread has ended.
    public func stop() { core.stop() }

    /// A port that was free a moment ago (bind to 0, read it, close): for daemons that must be told
    /// their port up front. Racy in principle; fine on a test machine.
    public static func freePort() throws -> Int { try ProxyCore.freePort() }

    /// A free port below the kernel's ephemeral range (32768+): no outgoing connection is handed
    /// it, so a daemon restarted on it finds it free again.
    public static func freePortBelowEphemeralRange() throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: 20_000..<32_000)
            if (try? ProxyCore.bindable(port)) == true { return port }
        }
        throw FaultProxyError("no free port in 20000..<32000")
    }
}

final class ProxyCore: Sendable {
    typealias Direction = FaultProxy.Direction
    typealias Mode = FaultProxy.Mode
    typealias Statistics = FaultProxy.Statistics
    let port: Int
    let targetHost: String
    let targetPort: Int

    private let listener: Int32
    private let state = Mutex(State())

    struct State {
        var modes: [Direction: Mode] = [.clientToServer: .pass, .serverToClient: .pass]
        var connections: [ObjectIdentifier: Connection] = [:]
        var threads = 0
        var stopped = false
        var stats = Statistics()
    }

    /// Listens on 127.0.0.1:`listenPort` (0: a free port) and forwards to `targetHost:targetPort`.
    init(targetHost: String = "127.0.0.1", targetPort: Int, listenPort: Int = 0) throws {
        self.targetHost = targetHost
        self.targetPort = targetPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FaultProxyError("socket: \(errnoText())") }
        setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        var address = Self.sockaddr(host: "127.0.0.1", port: listenPort)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            let text = errnoText()
            close(fd)
            throw FaultProxyError("bind/listen 127.0.0.1:\(listenPort): \(text)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        listener = fd
        port = Self.localPort(fd)
        state.withLock { $0.threads = 1 }
        Thread.detachNewThread { [self] in acceptLoop() }
    }


    // MARK: Control

    func mode(_ direction: Direction) -> Mode { state.withLock { $0.modes[direction]! } }

    /// Sets the mode of one direction, or of both (`direction` nil).
    func set(_ mode: Mode, _ direction: Direction? = nil) {
        let connections = state.withLock { s -> [Connection] in
            for d in direction.map({ [$0] }) ?? Direction.allCases { s.modes[d] = mode }
            if mode == .reset { s.stats.resets += s.connections.count }
            return Array(s.connections.values)
        }
        let modes = state.withLock { $0.modes }
        for c in connections { c.modesChanged(modes) }
    }


    var statistics: Statistics { state.withLock { $0.stats } }

    /// Closes the listener and every connection (RST) and returns once every thread has ended.
    func stop() {
        let connections = state.withLock { s -> [Connection] in
            s.stopped = true
            return Array(s.connections.values)
        }
        for c in connections { c.abort(rst: true) }
        let deadline = ContinuousClock.now + .seconds(5)
        while state.withLock({ $0.threads }) > 0, ContinuousClock.now < deadline { usleep(2_000) }
    }

    // MARK: Accepting

    private func acceptLoop() {
        defer {
            close(listener)
            state.withLock { $0.threads -= 1 }
        }
        while !state.withLock({ $0.stopped }) {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 1, 50)
            guard ready > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            setOption(client, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            let (modes, stopped) = state.withLock { s -> ([Direction: Mode], Bool) in
                if !s.stopped { s.stats.accepted += 1 }
                return (s.modes, s.stopped)
            }
            if stopped || modes.values.contains(.reset) {
                if !stopped { state.withLock { $0.stats.resets += 1 } }
                Self.closeWithRST(client)
                continue
            }
            let drainOnly = modes.values.allSatisfy { $0 == .blackhole }
            let connection = Connection(proxy: self, client: client, drainOnly: drainOnly)
            state.withLock {
                $0.connections[ObjectIdentifier(connection)] = connection
                $0.threads += 1
                $0.stats.open += 1
            }
            Thread.detachNewThread { [self] in
                connection.run()
                state.withLock {
                    $0.connections.removeValue(forKey: ObjectIdentifier(connection))
                    $0.threads -= 1
                    $0.stats.open -= 1
                }
            }
        }
    }

    func currentMode(_ direction: Direction) -> Mode { state.withLock { $0.modes[direction]! } }

    func count(_ direction: Direction, forwarded: Int = 0, dropped: Int = 0) {
        state.withLock {
            $0.stats.forwarded[direction, default: 0] += forwarded
            $0.stats.dropped[direction, default: 0] += dropped
        }
    }

    // MARK: Sockets

    static func sockaddr(host: String, port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = inet_addr(host)
        return a
    }

    static func localPort(_ fd: Int32) -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A blocking connect; -1 when refused.
    static func connect(host: String, port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = sockaddr(host: host, port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            return -1
        }
        setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        return fd
    }

    /// close(2) with SO_LINGER 0: the peer gets an RST instead of a FIN.
    static func closeWithRST(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    static func bindable(_ port: Int) throws -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FaultProxyError("socket: \(errnoText())") }
        defer { close(fd) }
        var address = sockaddr(host: "127.0.0.1", port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FaultProxyError("socket: \(errnoText())") }
        defer { close(fd) }
        var address = sockaddr(host: "127.0.0.1", port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw FaultProxyError("bind: \(errnoText())") }
        return localPort(fd)
    }
}

public struct FaultProxyError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

func errnoText() -> String { String(cString: strerror(errno)) }

func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
    var v = value
    setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
}

/// One proxied connection, run by its own thread (`run`); other threads only flag it.
final class Connection: Sendable {
    private let proxy: ProxyCore
    private let client: Int32
    private let drainOnly: Bool
    private let flags = Mutex(Flags())

    struct Flags {
        var abort: Bool?  // nil: keep going; true: close with RST; false: close normally
        var dropped: Set<FaultProxy.Direction> = []
    }

    init(proxy: ProxyCore, client: Int32, drainOnly: Bool) {
        self.proxy = proxy
        self.client = client
        self.drainOnly = drainOnly
    }

    func abort(rst: Bool) { flags.withLock { if $0.abort == nil || rst { $0.abort = rst } } }

    func modesChanged(_ modes: [FaultProxy.Direction: FaultProxy.Mode]) {
        flags.withLock { f in
            if modes.values.contains(.reset) { f.abort = true }
            if drainOnly && !modes.values.allSatisfy({ $0 == .blackhole }) { f.abort = true }
            for d in f.dropped where modes[d] != .blackhole { f.abort = true }
        }
    }

    private struct Chunk {
        var due: ContinuousClock.Instant
        var bytes: [UInt8]  // empty: end of stream (shutdown the write side)
    }

    private struct Pipe {
        let direction: FaultProxy.Direction
        let source: Int32
        let destination: Int32
        var queue: [Chunk] = []
        var queued = 0
        var readClosed = false
        var writeClosed = false
    }

    func run() {
        var upstream: Int32 = -1
        if !drainOnly {
            upstream = ProxyCore.connect(host: proxy.targetHost, port: proxy.targetPort)
            if upstream < 0 {
                ProxyCore.closeWithRST(client)
                return
            }
        }
        for fd in [client, upstream] where fd >= 0 { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        var pipes = [Pipe(direction: .clientToServer, source: client, destination: upstream)]
        if upstream >= 0 { pipes.append(Pipe(direction: .serverToClient, source: upstream, destination: client)) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var rst = true
        loop: while true {
            if let abort = flags.withLock({ $0.abort }) {
                rst = abort
                break
            }
            let now = ContinuousClock.now
            // Write what is due.
            for i in pipes.indices {
                while let head = pipes[i].queue.first, head.due <= now, !pipes[i].writeClosed {
                    if head.bytes.isEmpty {
                        shutdown(pipes[i].destination, Int32(SHUT_WR))
                        pipes[i].writeClosed = true
                        pipes[i].queue.removeFirst()
                        break
                    }
                    let n = head.bytes.withUnsafeBytes { write(pipes[i].destination, $0.baseAddress, $0.count) }
                    if n < 0 {
                        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { break }
                        rst = true
                        break loop
                    }
                    proxy.count(pipes[i].direction, forwarded: n)
                    pipes[i].queued -= n
                    if n == head.bytes.count {
                        pipes[i].queue.removeFirst()
                    } else {
                        pipes[i].queue[0].bytes.removeFirst(n)
                        break
                    }
                }
            }
            if pipes.allSatisfy({ $0.readClosed && $0.queue.isEmpty }) {
                rst = false
                break
            }
            // Wait for input, writability of what is due, or the next deadline (at most 50 ms).
            var fds: [pollfd] = []
            var owners: [(Int, Bool)] = []  // (pipe, isRead)
            var timeout = Duration.milliseconds(50)
            for (i, p) in pipes.enumerated() {
                if !p.readClosed && p.queued < 4 << 20 {
                    fds.append(pollfd(fd: p.source, events: Int16(POLLIN), revents: 0))
                    owners.append((i, true))
                }
                if let head = p.queue.first, !p.writeClosed {
                    if head.due <= now {
                        fds.append(pollfd(fd: p.destination, events: Int16(POLLOUT), revents: 0))
                        owners.append((i, false))
                    } else {
                        timeout = min(timeout, head.due - now)
                    }
                }
            }
            let ms = Int32(max(1, (timeout.components.seconds * 1000) + timeout.components.attoseconds / 1_000_000_000_000_000))
            let ready = poll(&fds, nfds_t(fds.count), ms)
            guard ready > 0 else { continue }
            for (k, pfd) in fds.enumerated() where owners[k].1 && pfd.revents != 0 {
                let i = owners[k].0
                let n = buffer.withUnsafeMutableBytes { read(pipes[i].source, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                    rst = true  // the peer reset: pass that on
                    break loop
                }
                let mode = drainOnly ? .blackhole : proxy.currentMode(pipes[i].direction)
                let received = ContinuousClock.now
                if n == 0 {
                    pipes[i].readClosed = true
                    // A blackhole hides the close too: the other side keeps waiting.
                    if mode != .blackhole && pipes[i].destination >= 0 {
                        let due = max(received + mode.latency, pipes[i].queue.last?.due ?? received)
                        pipes[i].queue.append(Chunk(due: due, bytes: []))
                    }
                    continue
                }
                switch mode {
                case .blackhole, .reset:
                    // Flag the loss before counting it: a heal seen after the count must break this connection.
                    flags.withLock { _ = $0.dropped.insert(pipes[i].direction) }
                    proxy.count(pipes[i].direction, dropped: n)
                case .pass, .delay:
                    let due = max(received + mode.latency, pipes[i].queue.last?.due ?? received)
                    pipes[i].queue.append(Chunk(due: due, bytes: Array(buffer[..<n])))
                    pipes[i].queued += n
                }
            }
        }
        for fd in [client, upstream] where fd >= 0 {
            if rst { ProxyCore.closeWithRST(fd) } else { close(fd) }
        }
    }
}

extension FaultProxy.Mode {
    var latency: Duration {
        if case .delay(let d) = self { return d }
        return .zero
    }
}
