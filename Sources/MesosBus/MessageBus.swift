import Logging
import MesosWire
import NIOCore
import NIOPosix
import Synchronization

public enum BusEvent: Sendable {
    /// A message from a peer; reply to `envelope.from`.
    case message(Envelope)
    /// The outbound link to `peer` ("host:port") broke or could not be made; queued
    /// messages were dropped (like libprocess's ExitedEvent). The next send reconnects.
    case linkBroken(peer: String, reason: String)
}

/// The message bus of one process: listens on one TCP port, sends length-prefixed
/// Envelopes to peers addressed by PID over lazily made, reused links.
///
/// Delivery is at most once, in order per link; a send to an unreachable peer is dropped
/// and reported as `linkBroken` (callers retry at their own level, as Mesos does).
public final class MessageBus: Sendable {
    public let configuration: BusConfiguration
    public let events: BusEvents
    private let group: any EventLoopGroup
    private let logger: Logger
    private let sink: InboundSink
    private let stats = BusStatsCounter()

    private struct State {
        var pid: PID?
        var server: (any Channel)?
        var links: [Endpoint: Link] = [:]
        var inbound: [ObjectIdentifier: any Channel] = [:]
        var shutDown = false
    }
    private let state = Mutex(State())
    private let outbox: AsyncStream<(Envelope, PID)>.Continuation

    public init(
        configuration: BusConfiguration = BusConfiguration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "mesos.bus")
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        let (stream, continuation) = AsyncStream<BusEvent>.makeStream()
        self.sink = InboundSink(
            continuation: continuation, high: configuration.inboundHighWater, low: configuration.inboundLowWater, stats: stats)
        self.events = BusEvents(stream: stream, sink: sink)
        let (posted, outbox) = AsyncStream.makeStream(of: (Envelope, PID).self)
        self.outbox = outbox
        Task { [weak self] in
            for await (envelope, peer) in posted {
                guard let self else { return }
                do { try await self.send(envelope, to: peer) } catch {
                    self.logger.warning("cannot send to \(peer): \(error)")
                }
            }
        }
    }

    /// Sends from synchronous code (the daemons' state machines): queued, sent in posting order,
    /// errors logged. Fills in `from` with this bus's PID.
    public func post(_ payload: Envelope.Payload, epoch: UInt64, to peer: PID) {
        guard let me = pid else { return logger.warning("not started: dropped a message to \(peer)") }
        outbox.yield((Envelope(epoch: epoch, from: me.description, payload: payload), peer))
    }

    /// This process's address; nil before `start`.
    public var pid: PID? { state.withLock { $0.pid } }
    public var statistics: BusStats { stats.snapshot }

    /// Binds `host:port` (port 0: any free port) and serves as `name@advertiseHost:advertisePort`
    /// (each defaulting to what was bound; e.g. a proxy or NAT in front of this process).
    @discardableResult
    public func start(name: String, host: String = "127.0.0.1", port: Int = 0, advertiseHost: String? = nil, advertisePort: Int? = nil) async throws -> PID {
        if state.withLock({ $0.pid != nil || $0.shutDown }) { throw BusError.alreadyStarted }
        let configuration = self.configuration, sink = self.sink, logger = self.logger
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { [weak self] channel in
                self?.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: configuration.partialFrameTimeout),
                        FrameHandler(
                            codec: configuration.codec,
                            side: .accepted(Authenticator(credentials: configuration.requiredCredentials), me: { [weak self] in self?.pid?.description ?? "" }),
                            sink: sink, logger: logger, partialFrameTimeout: configuration.partialFrameTimeout),
                    ])
                }
            }
            .bind(host: host, port: port)
            .get()
        guard let bound = server.localAddress?.port else {
            try? await server.close()
            throw BusError.connectFailed(peer: "\(host):\(port)", reason: "no local port after bind")
        }
        let pid = PID(name: name, host: advertiseHost ?? host, port: advertisePort ?? bound)
        let ok = state.withLock { s -> Bool in
            guard s.pid == nil, !s.shutDown else { return false }
            s.pid = pid
            s.server = server
            return true
        }
        if !ok {
            try? await server.close()
            throw BusError.alreadyStarted
        }
        logger.info("listening", metadata: ["pid": "\(pid)"])
        return pid
    }

    /// Sends `envelope` to `peer`. Returns once the frame is queued and the link is below its
    /// high water mark (back-pressure); never waits for the peer to read it.
    public func send(_ envelope: Envelope, to peer: PID) async throws {
        let frame: [UInt8]
        do {
            frame = try configuration.codec.encode(envelope)
        } catch {
            if case .frameTooLarge(let length, let max) = error { throw BusError.frameTooLarge(bytes: length, max: max) }
            throw error
        }
        let link = try self.link(to: peer.endpoint)
        let buffer = ByteBuffer(bytes: frame)
        if link.accepting.load(ordering: .relaxed) {
            // Fast path: no hop back; the loop runs queued sends in order.
            link.loop.execute { _ = link.send(buffer) }
        } else {
            try await link.loop.flatSubmit { link.send(buffer) }.get()
        }
    }

    /// Fills in `from` with this bus's PID.
    public func send(_ payload: Envelope.Payload, epoch: UInt64, to peer: PID) async throws {
        guard let me = pid else { throw BusError.notStarted }
        try await send(Envelope(epoch: epoch, from: me.description, payload: payload), to: peer)
    }

    /// Stops listening, closes every connection and ends `events`. Idempotent.
    public func shutdown() async {
        let (server, links, inbound) = state.withLock { s in
            s.shutDown = true
            defer { s.links = [:]; s.inbound = [:]; s.server = nil }
            return (s.server, Array(s.links.values), Array(s.inbound.values))
        }
        try? await server?.close()
        for link in links { try? await link.loop.submit { link.close() }.get() }
        for channel in inbound { try? await channel.close() }
        outbox.finish()
        sink.finish()
    }

    private func link(to endpoint: Endpoint) throws -> Link {
        try state.withLock { s in
            if s.shutDown { throw BusError.shutDown }
            if let link = s.links[endpoint] { return link }
            let link = Link(
                endpoint: endpoint, loop: group.next(), configuration: configuration, sink: sink, logger: logger,
                me: { [weak self] in self?.pid?.description ?? "" })
            s.links[endpoint] = link
            return link
        }
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let accepted = state.withLock { s -> Bool in
            guard !s.shutDown else { return false }
            s.inbound[id] = channel
            return true
        }
        guard accepted else { channel.close(promise: nil); return }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.state.withLock { _ = $0.inbound.removeValue(forKey: id) }
        }
    }
}

/// The bus's incoming events. Taking an event out makes room: a slow consumer stops the
/// sockets from being read (TCP back-pressure) instead of buffering without bound.
public struct BusEvents: AsyncSequence, Sendable {
    public typealias Element = BusEvent
    let stream: AsyncStream<BusEvent>
    let sink: InboundSink

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<BusEvent>.AsyncIterator
        let sink: InboundSink
        public mutating func next() async -> BusEvent? {
            let event = await base.next()
            if case .message = event { sink.consumed() }
            return event
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), sink: sink) }
}
