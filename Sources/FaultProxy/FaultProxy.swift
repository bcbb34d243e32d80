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

    /// A port that was free a moment ago: `Loopback.freePort()`.
    public static func freePort() throws -> Int { try Loopback.freePort() }

    /// A free port below the kernel's ephemeral range: `Loopback.freePortBelowEphemeralRange()`.
    public static func freePortBelowEphemeralRange() throws -> Int { try Loopback.freePortBelowEphemeralRange() }
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
        let fd = try Loopback.listen(port: listenPort)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        listener = fd
        port = Loopback.localPort(fd)
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
            guard Loopback.ready(listener, Int16(POLLIN), within: .milliseconds(50)) else { continue }
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

    /// close(2) with SO_LINGER 0: the peer gets an RST instead of a FIN.
    static func closeWithRST(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
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
            upstream = (try? Loopback.connect(port: proxy.targetPort, host: proxy.targetHost)) ?? -1
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
            let ready = poll(&fds, nfds_t(fds.count), Loopback.pollTimeout(timeout))
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

// MARK: - Loopback sockets

/// Blocking TCP sockets on 127.0.0.1, for the proxy and for whatever plays a peer in tests and
/// benchmarks: listen (accepting nothing by itself, optionally with a small receive buffer),
/// connect, reads with a timeout, writes, free ports. The functions on descriptors leave closing
/// them to the caller; a `Loopback.Socket` owns its descriptor and closes it when it goes.
public enum Loopback {
    /// How a read ended.
    public enum ReadResult: Sendable, Equatable {
        /// The bytes that arrived (also when the peer closed after them).
        case data([UInt8])
        /// Nothing arrived in time.
        case timeout
        /// The peer closed (FIN) before sending anything.
        case eof
        /// The connection was reset (RST).
        case reset
    }

    /// A socket bound to 127.0.0.1:`port` (0: a free port) and not listening: it holds the port, and
    /// connecting to it is refused. `receiveBuffer`: SO_RCVBUF, set before binding.
    public static func bind(port: Int = 0, receiveBuffer: Int32? = nil) throws -> Int32 {
        try bound(port: port, reuseAddress: false, receiveBuffer: receiveBuffer)
    }

    /// A socket listening on 127.0.0.1:`port` (0: a free port; SO_REUSEADDR, so a restarted listener
    /// gets its port back). Nothing accepts by itself: peers connect (the kernel completes the
    /// handshake) and their bytes wait in the buffers; a small `receiveBuffer` (SO_RCVBUF, inherited
    /// by accepted connections) fills quickly.
    public static func listen(port: Int = 0, receiveBuffer: Int32? = nil) throws -> Int32 {
        let fd = try bound(port: port, reuseAddress: true, receiveBuffer: receiveBuffer)
        guard Glibc.listen(fd, 128) == 0 else { throw closing(fd, "listen on 127.0.0.1:\(port)") }
        return fd
    }

    /// A blocking connection to `host`:`port` (TCP_NODELAY); throws when it is refused.
    public static func connect(port: Int, host: String = "127.0.0.1") throws -> Int32 {
        let fd = try tcpSocket()
        guard withAddress(host: host, port: port, { Glibc.connect(fd, $0, $1) }) == 0 else {
            throw closing(fd, "connect to \(host):\(port)")
        }
        setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        return fd
    }

    /// The local port of a bound socket.
    public static func localPort(_ fd: Int32) -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Writes all of `bytes` (no SIGPIPE); throws when the connection is gone.
    public static func write(_ fd: Int32, _ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw FaultProxyError("send: \(errnoText())") }
            sent += n
        }
    }

    /// Reads what arrives within `timeout`, until `count` bytes or a close.
    public static func read(_ fd: Int32, _ count: Int, timeout: Duration) -> ReadResult {
        var bytes: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while bytes.count < count {
            let left = deadline - ContinuousClock.now
            guard left > .zero, ready(fd, Int16(POLLIN), within: left) else { break }
            var buffer = [UInt8](repeating: 0, count: min(count - bytes.count, 64 * 1024))
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 { return errno == ECONNRESET ? .reset : .eof }
            if n == 0 { return bytes.isEmpty ? .eof : .data(bytes) }
            bytes += buffer[..<n]
        }
        return bytes.isEmpty ? .timeout : .data(bytes)
    }

    /// Whether `fd` is ready for `events` (POLLIN, POLLOUT) within `timeout`.
    public static func ready(_ fd: Int32, _ events: Int16, within timeout: Duration) -> Bool {
        var p = pollfd(fd: fd, events: events, revents: 0)
        return poll(&p, 1, pollTimeout(timeout)) > 0
    }

    /// poll(2)'s timeout for `duration`: whole milliseconds, at least 1 for any positive duration.
    static func pollTimeout(_ duration: Duration) -> Int32 {
        guard duration > .zero else { return 0 }
        return Int32(min(Double(Int32.max), max(1, duration / .milliseconds(1))))
    }

    /// A port that was free a moment ago (bind to 0, read it, close): for daemons that must be told
    /// their port up front. Racy in principle; fine on a test machine.
    public static func freePort() throws -> Int {
        let fd = try bind()
        defer { close(fd) }
        return localPort(fd)
    }

    /// A free port below the kernel's ephemeral range (32768+): no outgoing connection is handed
    /// it, so a daemon restarted on it finds it free again.
    public static func freePortBelowEphemeralRange() throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: 20_000..<32_000)
            if let fd = try? bind(port: port) {
                close(fd)
                return port
            }
        }
        throw FaultProxyError("no free port in 20000..<32000")
    }

    private static func bound(port: Int, reuseAddress: Bool, receiveBuffer: Int32?) throws -> Int32 {
        let fd = try tcpSocket()
        if reuseAddress { setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1) }
        if let receiveBuffer { setOption(fd, SOL_SOCKET, SO_RCVBUF, receiveBuffer) }
        guard withAddress(port: port, { Glibc.bind(fd, $0, $1) }) == 0 else { throw closing(fd, "bind 127.0.0.1:\(port)") }
        return fd
    }

    private static func tcpSocket() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FaultProxyError("socket: \(errnoText())") }
        return fd
    }

    /// `body` with `host`:`port` as a socket address and its length.
    private static func withAddress(host: String = "127.0.0.1", port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// Closes `fd` after a failed `what`, and returns the error to throw (with errno's text).
    private static func closing(_ fd: Int32, _ what: String) -> FaultProxyError {
        let text = errnoText()
        close(fd)
        return FaultProxyError("\(what): \(text)")
    }

    /// One blocking loopback socket, closed when this object goes.
    public final class Socket: Sendable {
        public let fd: Int32
        /// The local port (a listener's: the one peers connect to).
        public let port: Int

        /// Takes `fd` over.
        public init(fd: Int32) {
            self.fd = fd
            port = Loopback.localPort(fd)
        }

        /// Listening on 127.0.0.1:`port` (0: a free port), accepting only through `accept` (see `Loopback.listen`).
        public convenience init(listeningOn port: Int, receiveBuffer: Int32? = nil) throws {
            self.init(fd: try Loopback.listen(port: port, receiveBuffer: receiveBuffer))
        }

        /// Bound to 127.0.0.1:`port` (0: a free port), not listening: connecting to it is refused.
        public convenience init(boundTo port: Int) throws {
            self.init(fd: try Loopback.bind(port: port))
        }

        /// Connected to `host`:`port`.
        public convenience init(connectingTo port: Int, host: String = "127.0.0.1") throws {
            self.init(fd: try Loopback.connect(port: port, host: host))
        }

        deinit { close(fd) }

        /// The next connection to this listener, waiting up to `timeout` for it.
        public func accept(timeout: Duration = .seconds(2)) throws -> Socket {
            guard Loopback.ready(fd, Int16(POLLIN), within: timeout) else { throw FaultProxyError("nothing to accept within \(timeout)") }
            let client = Glibc.accept(fd, nil, nil)
            guard client >= 0 else { throw FaultProxyError("accept: \(errnoText())") }
            return Socket(fd: client)
        }

        public func write(_ bytes: [UInt8]) throws { try Loopback.write(fd, bytes) }
        public func write(_ text: String) throws { try Loopback.write(fd, Array(text.utf8)) }

        /// Reads what arrives within `timeout`, until `count` bytes or a close.
        public func read(_ count: Int, timeout: Duration = .seconds(2)) -> ReadResult {
            Loopback.read(fd, count, timeout: timeout)
        }

        /// Everything until the peer closes; throws if it does not within `timeout`, or resets.
        public func readToEnd(timeout: Duration) throws -> [UInt8] {
            var all: [UInt8] = []
            let deadline = ContinuousClock.now + timeout
            while true {
                switch read(64 * 1024, timeout: deadline - ContinuousClock.now) {
                case .data(let bytes): all += bytes
                case .eof: return all
                case .timeout: throw FaultProxyError("no close within \(timeout) (\(all.count) bytes read)")
                case .reset: throw FaultProxyError("reset after \(all.count) bytes")
                }
            }
        }

        /// True when the peer closed (EOF or reset) within `timeout`, before sending anything.
        public func closedByPeer(within timeout: Duration) -> Bool {
            switch read(1, timeout: timeout) {
            case .eof, .reset: true
            case .data, .timeout: false
            }
        }

        /// Half-closes: the peer reads EOF, and this side can still read.
        public func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }
    }
}
