import Logging
import MesosWire
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

public enum BusEvent: Sendable {
    /// A message from a peer, with what its connection proved; reply to `envelope.from`.
    case message(Inbound)
    /// The outbound link to `peer` ("host:port") broke or could not be made; queued
    /// messages were dropped (like libprocess's ExitedEvent). The next send reconnects.
    case linkBroken(peer: String, reason: String)
    /// The clock ticked (`requestTick()`): queued behind the messages received before it, so a
    /// core judges a timeout only after it has seen what arrived in time (a master busy with a
    /// flood still sees the pongs that came before its next health check). Coalesced: at most
    /// one is waiting.
    case tick
}

/// The message bus of one process: listens on one TCP port, sends length-prefixed
/// Envelopes to peers addressed by PID over lazily made, reused links.
///
/// Delivery is at most once, in order per link; a send to an unreachable peer is dropped
/// and reported as `linkBroken` (callers retry at their own level, as Mesos does). Every
/// peer has its own bounded queue: a peer that stops reading delays nobody else, and its link
/// is closed once nothing could be written to it for `writeTimeout`. Links unused for
/// `idleLinkTimeout` are closed and forgotten, so the table of links stays bounded by the
/// peers in use. All of one bus's sockets run on one event loop.
public final class MessageBus: Sendable {
    public let configuration: BusConfiguration
    public let events: BusEvents
    /// Runs tasks on this bus's event loop (`Task(executorPreference: bus.taskExecutor)`): a
    /// consumer placed there takes events and sends without a thread hop.
    public let taskExecutor: any TaskExecutor
    /// The bus's event loop as an actor's executor (`nonisolated var unownedExecutor`): an actor
    /// that takes `events` in its own methods then handles each without a thread hop, and its
    /// sends are written from the loop at once. (Each event it awaits still resumes through the
    /// global pool and back: the concurrency runtime resumes a continuation there first; see
    /// `handleEvents(onLoop:)`.)
    public nonisolated var serialExecutor: UnownedSerialExecutor { loop.executor.asUnownedSerialExecutor() }

    /// Hands every event to `handler` on the bus's event loop, in order, as it comes, instead of
    /// queueing it for `events` (which then stays empty): for a consumer isolated to the loop
    /// (an actor on `serialExecutor`, whose handler calls it through `assumeIsolated`). No task
    /// is resumed per event: awaiting `events` on the loop cost a wake-up of a pool thread and an
    /// eventfd write on the loop per event, a fifth of a swarm's CPU in a failover. An event raised
    /// while the handler runs comes after it returns; the handler MUST NOT block. There is no
    /// back-pressure beyond the loop's own: the handler runs inside the read. After `shutdown`
    /// nothing more is handed over (but the rest of a batch being handed over). Call before `start`.
    public func handleEvents(onLoop handler: @escaping @Sendable (BusEvent) -> Void) {
        sink.handleDirectly(on: loop, handler)
    }
    private let loop: any EventLoop
    /// The listener's loop: another of the group's where there is one. On `loop` itself, busy with
    /// 10,000 agents' connections after a failover, the listener drained its queue too slowly: the
    /// kernel dropped ~20,000 handshakes per failover (TcpExt ListenOverflows), each costing its
    /// agent a SYN retransmission (1 s, then 3 s, ...). Accepted connections still live on `loop`.
    private let acceptLoop: any EventLoop
    private let logger: Logger
    private let sink: InboundSink
    private let stats = BusStatsCounter()
    /// Outstanding return-route offers of our links (nil unless `offerReturnRoutes`).
    private let offers: ReturnRouteOffers?

    private struct State {
        var pid: PID?
        /// `pid.description`, the `from` of every posted envelope.
        var from = ""
        var server: (any Channel)?
        var links: [Endpoint: Link] = [:]
        /// A master's: the credential each peer proved on its own connection, by the endpoint of
        /// its pid; links to it authenticate with the same (mutual authentication both ways).
        var learned: [Endpoint: Credential] = [:]
        var inbound: [ObjectIdentifier: any Channel] = [:]
        /// The listener's address, when links connect from it (`linksFromListeningPort`).
        var listening: SocketAddress?
        /// An offerer's: accepted connections whose first message came from a pid naming the
        /// connection's own source address, by that address (a link to the pid writes over it).
        var routes: [SocketAddress: any Channel] = [:]
        var shutDown = false
        var sweeper: RepeatedTask?
    }
    private let state = Mutex(State())

    public init(
        configuration: BusConfiguration = BusConfiguration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "mesos.bus")
    ) {
        self.configuration = configuration
        _ = MemoryPolicy.applied
        let loop = group.next()
        self.loop = loop
        // Picked without `next()`: taking a second loop from the round-robin would put the next
        // bus of the process on this bus's loop (two buses in one process shared one thread).
        self.acceptLoop = group.makeIterator().first { $0 !== loop } ?? loop
        self.taskExecutor = EventLoopTaskExecutor(loop)
        self.logger = logger
        self.sink = InboundSink(high: configuration.inboundHighWater, low: configuration.inboundLowWater, stats: stats)
        self.events = BusEvents(sink: sink)
        self.offers = configuration.offerReturnRoutes ? ReturnRouteOffers() : nil
    }

    /// Sends from synchronous code (the daemons' cores): queued on the peer's link, sent in
    /// posting order. Never waits; an oversized message or a full queue is dropped, counted and
    /// logged. Fills in `from` with this bus's PID.
    public func post(_ payload: Envelope.Payload, epoch: UInt64, to peer: PID) {
        let me = state.withLock { $0.from }
        guard !me.isEmpty else { return logger.warning("not started: dropped a message to \(peer)") }
        do {
            try enqueue(Envelope(epoch: epoch, from: me, payload: payload), to: peer)
        } catch BusError.shutDown {
            // Expected while a daemon exits (a core may still answer what was in flight): counted,
            // not warned about once per message.
            stats.add(\.messagesDropped)
            logger.debug("cannot send to \(peer): the bus has been shut down")
        } catch {
            stats.add(\.messagesDropped)
            logger.warning("cannot send to \(peer): \(error)")
        }
    }

    /// This process's address; nil before `start`.
    public var pid: PID? { state.withLock { $0.pid } }
    public var statistics: BusStats { stats.snapshot }
    /// Links currently open or connecting (idle ones are evicted).
    public var linkCount: Int { state.withLock { $0.links.count } }
    /// The links held now (for tests: a forgotten link must be freed).
    var currentLinks: [Link] { state.withLock { Array($0.links.values) } }
    /// Connections accepted and still open.
    public var acceptedConnectionCount: Int { state.withLock { $0.inbound.count } }

    /// Binds `host:port` (port 0: any free port) and serves as `name@advertiseHost:advertisePort`
    /// (each defaulting to what was bound; e.g. a proxy or NAT in front of this process).
    @discardableResult
    public func start(name: String, host: String = "127.0.0.1", port: Int = 0, advertiseHost: String? = nil, advertisePort: Int? = nil) async throws -> PID {
        if state.withLock({ $0.pid != nil || $0.shutDown }) { throw BusError.alreadyStarted }
        // An offerer (a master) connects from ephemeral ports: its links to peers never share an
        // address pair with the peers' links to it (nor open simultaneously as one connection).
        // Under TLS a connection's source address proves nothing (the certificate does): no binding.
        var shared = configuration.linksFromListeningPort && !configuration.offerReturnRoutes && configuration.tls == nil
        let server = try await ServerBootstrap(group: acceptLoop, childGroup: loop)
            // A master's agents all connect at once after a failover: 256 pending connections overflowed at
            // 10,000 agents (dropped SYNs, 2 s connect timeouts, lost registrations). The kernel caps
            // this at net.core.somaxconn (4096 by default).
            .serverChannelOption(ChannelOptions.backlog, value: 4096)
            // Accepts per wake-up of the listener (NIO's default: 4).
            .serverChannelOption(ChannelOptions.maxMessagesPerRead, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [weak self] channel in
                guard let self else { return channel.close() }
                self.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try self.configuration.configure(channel)
                    try self.installFramePipeline(on: channel)
                }
            }
            .bind(host: host, port: port)
            .get()
        guard let bound = server.localAddress?.port else {
            try? await server.close()
            throw BusError.connectFailed(peer: "\(host):\(port)", reason: "no local port after bind")
        }
        if shared {
            // SO_REUSEPORT only once bound and listening, so our links can connect from the port:
            // the bind itself failed with "address in use" if any socket held the port (set
            // before it, a second process on the same port would have shared it).
            do {
                try await server.setOption(ChannelOptions.socketOption(.so_reuseport), value: 1).get()
            } catch {
                // Links then connect from ephemeral ports (the peer proves us by a nonce).
                shared = false
                logger.warning(
                    "cannot set SO_REUSEPORT on the listener: links connect from other ports: \(error)",
                    metadata: ["event": "reuseport_unavailable"])
            }
        }
        let pid = PID(name: name, host: advertiseHost ?? host, port: advertisePort ?? bound)
        let sweepEvery = TimeAmount.nanoseconds(max(configuration.idleLinkTimeout.nanoseconds / 2, 1_000_000))
        let ok = state.withLock { s -> Bool in
            guard s.pid == nil, !s.shutDown else { return false }
            s.pid = pid
            s.from = pid.description
            s.server = server
            s.listening = shared ? server.localAddress : nil
            s.sweeper = loop.scheduleRepeatedTask(initialDelay: sweepEvery, delay: sweepEvery) { [weak self] _ in self?.evictIdleLinks() }
            return true
        }
        if !ok {
            try? await server.close()
            throw BusError.alreadyStarted
        }
        logger.debug("listening", metadata: ["pid": "\(pid)"])
        return pid
    }

    /// The pipeline of an accepted connection: the frame handler (decode, authenticate, deliver,
    /// and close a connection whose partial frame or proof of identity stalls). The one place the server sets it up
    /// (on the channel's loop, from the child channel initialiser).
    func installFramePipeline(on channel: any Channel) throws {
        let configuration = self.configuration
        var arrivals: @Sendable (String, any Channel) -> Void = { _, _ in }
        // Under TLS the peer is proved by its certificate (checked when our link connects to its
        // pid), not by an address it connected from: no route by source.
        if offers != nil, configuration.tls == nil { arrivals = { [weak self] from, channel in self?.arrived(from: from, on: channel) } }
        let frames: [any RemovableChannelHandler] = [
            FrameHandler(
                codec: configuration.codec,
                side: .accepted(
                    Authenticator(credentials: configuration.requiredCredentials, own: configuration.credential),
                    me: { [weak self] in self?.pid?.description ?? "" }, learn: { [weak self] credential, from in self?.learn(credential, from: from) },
                    routes: ReturnRouteHandling(
                        claimed: { [weak self] nonce, channel in self?.returnRouteClaimed(nonce, on: channel) },
                        offered: { [weak self] from, nonce in self?.returnRouteOffered(by: from, nonce: nonce) ?? false },
                        arrived: arrivals)),
                sink: sink, logger: logger, partialFrameTimeout: configuration.partialFrameTimeout),
        ]
        // With HTTP configured, a sniffer in front picks frames or HTTP by the first byte; with TLS,
        // one in front of that starts TLS (or serves a plaintext peer, in downgrade mode).
        var handlers = ProtocolSniffer.pipeline(frames, configuration, logger, sink.stats)
        if let tls = configuration.tls {
            handlers.insert(TLSServerSniffer(tls: tls, peerRoles: configuration.peerRoles, logger: logger, stats: sink.stats), at: 0)
        }
        try channel.pipeline.syncOperations.addHandlers(handlers)
    }

    /// Sends `envelope` to `peer`. Returns once the frame is queued and the link's backlog is
    /// below its high water mark (back-pressure); never waits for the peer to read it.
    public nonisolated(nonsending) func send(_ envelope: Envelope, to peer: PID) async throws {
        let link = try enqueue(envelope, to: peer)
        if let wait = link.belowHighWater() {
            stats.add(\.sendsHeldBack)
            try await wait.get()
        }
    }

    /// Fills in `from` with this bus's PID.
    public nonisolated(nonsending) func send(_ payload: Envelope.Payload, epoch: UInt64, to peer: PID) async throws {
        guard let me = pid else { throw BusError.notStarted }
        try await send(Envelope(epoch: epoch, from: me.description, payload: payload), to: peer)
    }

    /// Returns once everything sent or posted so far is written to its socket (or dropped).
    public func flush() async {
        let links = state.withLock { Array($0.links.values) }
        for link in links { try? await link.flushed().get() }
    }

    /// Encodes `envelope` into the peer's link (its outgoing buffer).
    @discardableResult
    private func enqueue(_ envelope: Envelope, to peer: PID) throws -> Link {
        let endpoint = Endpoint(peer)
        while true {
            let link = try self.link(to: endpoint, name: peer.name)
            let posted: Link.Posted
            do {
                posted = try link.post(envelope)
            } catch {
                if case .frameTooLarge(let length, let max) = error { throw BusError.frameTooLarge(bytes: length, max: max) }
                throw error
            }
            if posted != .retired { return link }
            // Evicted meanwhile: forget it and post to a new one.
            state.withLock { s in if s.links[endpoint] === link { s.links[endpoint] = nil } }
        }
    }

    /// Queues a `.tick` event behind what was received so far (nothing if one is still waiting).
    /// Goes through the event loop, so it also comes after the messages of a read in progress.
    public func requestTick() {
        let sink = self.sink
        loop.execute { sink.tick() }
    }

    /// A `.tick` (as `requestTick`) every `interval` from the bus's event loop's own timer, until
    /// cancelled. No task, thread or hop per timer: the 500 agents of a swarm process each slept
    /// in a task of their own, and dispatch's timer thread took 8% of the swarm's CPU in a failover.
    public func scheduleTicks(every interval: Duration) -> BusTimer {
        let sink = self.sink, step = TimeAmount.nanoseconds(max(interval.nanosecondsSaturating, 1))
        let task = loop.scheduleRepeatedTask(initialDelay: step, delay: step) { _ in sink.tick() }
        return BusTimer { task.cancel() }
    }

    /// One `.tick` after `delay` (at once if it is not positive), from the event loop's timer.
    @discardableResult
    public func scheduleTick(after delay: Duration) -> BusTimer {
        guard delay > .zero else {
            requestTick()
            return BusTimer {}
        }
        let sink = self.sink
        let scheduled = loop.scheduleTask(in: .nanoseconds(delay.nanosecondsSaturating)) { sink.tick() }
        return BusTimer { scheduled.cancel() }
    }

    /// Stops listening, closes every connection and ends `events`. Idempotent.
    public func shutdown() async {
        let (server, links, inbound, sweeper) = state.withLock { s in
            s.shutDown = true
            defer { s.links = [:]; s.inbound = [:]; s.server = nil; s.sweeper = nil }
            return (s.server, Array(s.links.values), Array(s.inbound.values), s.sweeper)
        }
        sweeper?.cancel()
        try? await server?.close()
        // Everything in one turn of the loop, then one wait for every close: a master with 10,000
        // agents took 8.7 s to exit on SIGTERM closing them one hop at a time, while the new leader
        // needed the cores to recover.
        for link in links { link.retire() }
        let closed = try? await loop.submit { () -> [EventLoopFuture<Void>] in
            for link in links { link.close() }
            return inbound.map { channel in
                channel.close(promise: nil)
                return channel.closeFuture
            }
        }.get()
        if let closed { try? await EventLoopFuture.andAllComplete(closed, on: loop).get() }
        sink.finish()
    }

    /// Without TLS or with, links authenticate (HMAC) when there is a secret to prove: a master's
    /// with the secret the peer proved on its own connection, an agent's or scheduler's to a master
    /// (a pid named `master`) with its credential; links to others (executors) do not.
    private func link(to endpoint: Endpoint, name: String) throws -> Link {
        try state.withLock { s in
            if s.shutDown { throw BusError.shutDown }
            if let link = s.links[endpoint] { return link }
            var peerConnection: (@Sendable (SocketAddress) -> (any Channel)?)?
            if offers != nil { peerConnection = { [weak self] address in self?.state.withLock { $0.routes[address] } } }
            let credential = configuration.requiredCredentials != nil ? s.learned[endpoint] : name == "master" ? configuration.credential : nil
            let link = Link(
                endpoint: endpoint, loop: loop, configuration: configuration, credential: credential, sink: sink, logger: logger,
                offers: offers, source: name == "master" ? s.listening : nil,
                peerConnection: peerConnection,
                me: { [weak self] in self?.pid?.description ?? "" })
            s.links[endpoint] = link
            return link
        }
    }

    /// A peer proved `credential` on its connection, as `from`: a master's links to it authenticate
    /// with it from now on (a link made before, without it, is closed: the next post makes a new one).
    private func learn(_ credential: Credential, from: String) {
        guard configuration.requiredCredentials != nil, let pid = PID(from) else { return }
        let endpoint = Endpoint(pid)
        let stale = state.withLock { s -> Link? in
            guard s.learned[endpoint] != credential else { return nil }
            if s.learned.count >= Self.maxLearned { s.learned.removeAll(keepingCapacity: true) }
            s.learned[endpoint] = credential
            guard let link = s.links[endpoint], link.credential != credential else { return nil }
            link.retire()
            s.links[endpoint] = nil
            return link
        }
        if let stale { stale.loop.execute { stale.close() } }
    }

    /// A peer claimed one of our links' return-route offers on `channel` (its connection to us; on our loop).
    private func returnRouteClaimed(_ nonce: [UInt8], on channel: any Channel) {
        guard let link = offers?.take(nonce) else {
            stats.add(\.returnRouteClaimsUnknown)
            return logger.debug("ignored a return-route claim naming no offer of ours", metadata: ["event": "return_route_claim_unknown"])
        }
        link.returnRoute(nonce, claimedOn: channel, reason: nil)
    }

    /// `from` offered to write to us over our link to it: our link claims it when it is up (on our loop).
    private func returnRouteOffered(by from: String, nonce: [UInt8]) -> Bool {
        guard let pid = PID(from) else { return false }
        let link = state.withLock { $0.links[Endpoint(pid)] }
        return link?.claimReturnRoute(nonce) ?? false
    }

    /// The first message on an accepted connection came from `from`: when that pid names the
    /// connection's own source address, links to the pid write over this connection (on our loop).
    private func arrived(from: String, on channel: any Channel) {
        guard let pid = PID(from), let source = channel.remoteAddress,
            let named = try? SocketAddress(ipAddress: pid.host, port: pid.port), named == source
        else { return }
        state.withLock { $0.routes[source] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.state.withLock { s in if s.routes[source] === channel { s.routes[source] = nil } }
        }
    }

    /// Learned credentials kept at most (a master's peers; forgotten all at once beyond it, then learned again).
    static let maxLearned = 200_000

    /// Closes and forgets links nobody posted to for `idleLinkTimeout` (not reported as broken).
    private func evictIdleLinks() {
        let now = DispatchTimeSource.uptimeNanoseconds
        let limit = UInt64(max(0, configuration.idleLinkTimeout.nanoseconds))
        let idle = state.withLock { s -> [Link] in
            let old = s.links.filter { now &- $0.value.lastPost.load(ordering: .relaxed) > limit }
            var evicted: [Link] = []
            for (endpoint, link) in old where link.retireIfIdle() {
                s.links[endpoint] = nil
                evicted.append(link)
            }
            return evicted
        }
        for link in idle {
            stats.add(\.linksEvicted)
            link.loop.execute { link.close() }
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
        stats.add(\.connectionsAccepted)
        let descriptors = configuration.descriptors
        descriptors.count()
        channel.closeFuture.whenComplete { [weak self] _ in
            descriptors.release()
            self?.state.withLock { _ = $0.inbound.removeValue(forKey: id) }
        }
    }
}

extension NIOBSDSocket.Option {
    /// Not among NIO's names.
    static let so_reuseport = NIOBSDSocket.Option(rawValue: SO_REUSEPORT)
}

/// Runs the jobs of tasks that prefer it on one event loop: jobs wait in a small locked queue and
/// the loop is woken once per batch (no closure allocated per job).
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {  // `run` is set in init, then only read
    let loop: any EventLoop
    private let jobs = Mutex<(queue: [UnownedJob], scheduled: Bool)>(([], false))
    /// Loop-confined: the drained queue, kept for its capacity.
    private var spare: [UnownedJob] = []
    private var run: (@Sendable () -> Void)!

    init(_ loop: any EventLoop) {
        self.loop = loop
        run = { [weak self] in self?.runJobs() }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let wake = jobs.withLock { j -> Bool in
            j.queue.append(job)
            defer { j.scheduled = true }
            return !j.scheduled
        }
        if wake { loop.execute(run) }
    }

    private func runJobs() {
        var batch = spare
        spare = []
        jobs.withLock { j in
            j.scheduled = false
            swap(&batch, &j.queue)
        }
        let me = asUnownedTaskExecutor()
        for job in batch { job.runSynchronously(on: me) }
        batch.removeAll(keepingCapacity: true)
        spare = batch
    }
}

/// The bus's incoming events. Taking an event out makes room: a slow consumer stops the
/// sockets from being read (TCP back-pressure) instead of buffering without bound.
///
/// One queue per bus: iterators taken one after the other go on where the last one stopped
/// (nothing is lost when a loop breaks). A task placed on the bus's loop (`taskExecutor`) takes
/// events without a thread hop.
public struct BusEvents: AsyncSequence, Sendable {
    public typealias Element = BusEvent
    public typealias Failure = Never
    let sink: InboundSink

    public struct AsyncIterator: AsyncIteratorProtocol {
        let sink: InboundSink
        public nonisolated(nonsending) mutating func next() async -> BusEvent? { await sink.next() }
        /// `for await` enters here with its caller's isolation (one executor check per event).
        public mutating func next(isolation actor: isolated (any Actor)?) async -> BusEvent? { await sink.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(sink: sink) }
}

/// A tick timer of the bus (`scheduleTicks`, `scheduleTick`); `cancel` stops it (idempotent).
public struct BusTimer: Sendable {
    private let stop: @Sendable () -> Void
    init(_ stop: @escaping @Sendable () -> Void) { self.stop = stop }
    public func cancel() { stop() }
}
