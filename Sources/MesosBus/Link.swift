import Logging
import MesosWire
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// One outbound TCP connection to a peer endpoint, connected lazily on the first frame and
/// again on the first frame after it broke. Frames keep their posting order.
///
/// Posting is safe from any thread: each envelope is encoded straight into the link's outgoing
/// buffer under the inbox lock (frames back to back, no per-frame buffer), and the link's event
/// loop is woken once per batch (on the empty-to-non-empty transition), not once per frame; the
/// loop then writes the whole batch at once. On the loop, `LinkStateMachine` decides; this class
/// only performs its decisions.
final class Link: @unchecked Sendable {  // loop-confined state; `inbox` and atomics shared
    let endpoint: Endpoint
    let loop: any EventLoop
    private let configuration: BusConfiguration
    private let sink: InboundSink
    private let logger: Logger
    private let me: @Sendable () -> String
    /// What this link authenticates with (HMAC), if anything.
    let credential: Credential?
    /// Where this link's return-route offers wait for their claim (nil: it offers none).
    private let offers: ReturnRouteOffers?
    /// The bus's listening address, connected from (`linksFromListeningPort`; nil: any port).
    private let source: SocketAddress?
    /// An offerer's: the peer's own connection to us from the address this link connects to, if
    /// one is open (the peer proved its pid by connecting from it).
    private let peerConnection: (@Sendable (SocketAddress) -> (any Channel)?)?

    /// Frames of at least this many bytes get a buffer of their own (no copy into a batch).
    static let largeFrame = 16 * 1024
    /// Batch buffers hold at most this much; the next one is sized by how full the last was.
    static let batchCapacity = 64 * 1024

    private struct Inbox {
        let encoder: FrameEncoder
        /// The buffer small frames are encoded into, back to back.
        var open: ByteBuffer?
        var openFrames = 0
        var nextCapacity = 1024
        /// Closed batches and large frames, in posting order (all before `open`).
        var chunks: [Chunk] = []
        var scheduled = false
        /// Set when the link is evicted or shut down: posts go to a new link instead.
        var retired = false
        /// Buffers of chunks already handed to the socket, reused once the socket let go of
        /// them (`clear` allocates anew while it still holds one).
        var spares: [ByteBuffer] = []

        var isEmpty: Bool { chunks.isEmpty && open == nil }

        mutating func buffer(_ allocator: ByteBufferAllocator, capacity: Int) -> ByteBuffer {
            guard var buffer = spares.popLast() else { return allocator.buffer(capacity: capacity) }
            buffer.clear(minimumCapacity: capacity)
            return buffer
        }

        mutating func closeOpen() {
            guard let buffer = open else { return }
            chunks.append(Chunk(buffer: buffer, frames: openFrames))
            nextCapacity = min(Link.batchCapacity, max(1024, buffer.readableBytes * 2))
            open = nil
            openFrames = 0
        }
    }
    private let inbox: Mutex<Inbox>
    private let allocator = ByteBufferAllocator()
    /// Spare buffers kept per link: at most this many, each at most `maxSpare` bytes.
    private static let spareCount = 2
    private static let maxSpare = 256 * 1024
    /// Loop-confined: the drained chunk array, kept for its capacity.
    private var spareChunks: [Chunk] = []
    /// Made once (no closure allocated per wake-up). It holds the link unowned (a strong capture
    /// would keep a forgotten link alive; a weak one gave every link a side table, which put each
    /// retain and release of a link, several per message, on the runtime's slow path): `post`
    /// retains the link for each scheduled drain, and the drain releases it.
    private var drain: (@Sendable () -> Void)!
    /// Bytes posted and not yet handed to the socket: senders above the high water mark wait.
    private let backlog = Atomic<Int>(0)
    /// Nanoseconds (uptime) of the last post, for idle eviction.
    let lastPost = Atomic<UInt64>(0)

    // Loop-confined:
    private var machine: LinkStateMachine
    private var channel: (any Channel)?
    private var authenticatee: Authenticatee?
    private var stallTimer: Scheduled<Void>?
    /// When the current connect began (its retries after a descriptor shortage included).
    private var connectingSince: NIODeadline?
    private var backPressureWaiters: [EventLoopPromise<Void>] = []
    private var flushWaiters: [EventLoopPromise<Void>] = []
    /// The nonce of the return-route offer this link's connection waits on (writes posted after
    /// it are held until it is answered).
    private var offer: [UInt8]?
    /// The peer's own connection this link writes over (a claimed return route), and the handler
    /// that tells this link about its writability and close. Not ours to close.
    private var adopted: (channel: any Channel, handler: LinkHandler)?
    /// The peer proved it holds this link's credential, our own: on an agent's or scheduler's bus
    /// the one other holder is the master (what arrives on this connection comes from a master).
    private(set) var provedMaster = false

    init(
        endpoint: Endpoint, loop: any EventLoop, configuration: BusConfiguration, credential: Credential?, sink: InboundSink, logger: Logger,
        offers: ReturnRouteOffers? = nil, source: SocketAddress? = nil, peerConnection: (@Sendable (SocketAddress) -> (any Channel)?)? = nil,
        me: @escaping @Sendable () -> String
    ) {
        self.endpoint = endpoint
        self.credential = credential
        self.offers = offers
        self.source = source
        self.peerConnection = peerConnection
        self.loop = loop
        self.configuration = configuration
        self.sink = sink
        self.logger = logger
        self.me = me
        machine = LinkStateMachine(maxQueuedBytes: configuration.maxQueuedBytesPerLink)
        inbox = Mutex(Inbox(encoder: FrameEncoder(codec: configuration.codec)))
        lastPost.store(DispatchTimeSource.uptimeNanoseconds, ordering: .relaxed)
        drain = { [unowned(unsafe) self] in
            self.drainInbox()
            Unmanaged.passUnretained(self).release()  // taken by `post`
        }
    }

    // MARK: Any thread

    enum Posted {
        case queued
        /// Dropped (and counted): the link's backlog is at `maxQueuedBytesPerLink`.
        case dropped
        /// The link is retired: the caller posts to a new link.
        case retired
    }

    /// Encodes `envelope` as the link's next frame; throws when the frame is too large to send.
    func post(_ envelope: Envelope) throws(WireError) -> Posted {
        let maxQueued = configuration.maxQueuedBytesPerLink
        let (posted, size, wake) = try inbox.withLock { box throws(WireError) -> (Posted, Int, Bool) in
            guard !box.retired else { return (.retired, 0, false) }
            let size = try box.encoder.prepare(envelope)
            // The backlog (posted, not yet handed to the socket) is bounded, as the queue it feeds.
            let queued = backlog.load(ordering: .relaxed)
            if queued > 0 && queued + size > maxQueued { return (.dropped, size, false) }
            let encoder = box.encoder
            if size >= Self.largeFrame {
                box.closeOpen()
                var buffer = box.buffer(allocator, capacity: size)
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { encoder.write(to: $0.baseAddress!); return size }
                box.chunks.append(Chunk(buffer: buffer, frames: 1))
            } else {
                if let open = box.open, open.writableBytes < size { box.closeOpen() }
                if box.open == nil { box.open = box.buffer(allocator, capacity: max(box.nextCapacity, size)) }
                box.open!.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { encoder.write(to: $0.baseAddress!); return size }
                box.openFrames += 1
            }
            defer { box.scheduled = true }
            return (.queued, size, !box.scheduled)
        }
        switch posted {
        case .queued:
            backlog.add(size, ordering: .relaxed)
            if wake {
                _ = Unmanaged.passRetained(self)  // until the drain ran (`drain`)
                loop.execute(drain)
            }
        case .dropped:
            sink.stats.add(\.messagesDropped)
            sink.stats.add(\.droppedQueueFull)
        case .retired:
            break
        }
        return posted
    }

    /// Completes when the backlog is below the low water mark (back-pressure for `send`).
    func belowHighWater() -> EventLoopFuture<Void>? {
        guard backlog.load(ordering: .relaxed) > configuration.writeBufferWaterMark.high else { return nil }
        return loop.submit { () -> EventLoopFuture<Void> in
            self.drainInbox()
            guard self.backlog.load(ordering: .relaxed) > self.configuration.writeBufferWaterMark.low else { return self.loop.makeSucceededVoidFuture() }
            let p = self.loop.makePromise(of: Void.self)
            self.backPressureWaiters.append(p)
            return p.futureResult
        }.flatMap { $0 }
    }

    /// Completes once everything posted so far is written to the socket (or dropped).
    func flushed() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.drainInbox()
            if self.machine.queuedFrames == 0, let channel = self.channel, self.machine.connection == ObjectIdentifier(channel) {
                return channel.writeAndFlush(ByteBuffer()).recover { _ in }
            }
            if self.machine.queuedFrames == 0 { return self.loop.makeSucceededVoidFuture() }
            let p = self.loop.makePromise(of: Void.self)
            self.flushWaiters.append(p)
            return p.futureResult
        }
    }

    /// Stops taking posts (shutdown).
    func retire() { inbox.withLock { $0.retired = true } }

    /// Stops taking posts if nothing is waiting to be drained or written and no connect is in
    /// progress (idle eviction); false otherwise. On the loop (the bus's sweeper runs there).
    func retireIfIdle() -> Bool {
        loop.preconditionInEventLoop()
        guard machine.canEvict else { return false }
        return inbox.withLock { box in
            guard box.isEmpty, !box.scheduled else { return false }
            box.retired = true
            return true
        }
    }

    // MARK: On the loop

    private func drainInbox() {
        loop.preconditionInEventLoop()
        var chunks = spareChunks
        spareChunks = []
        inbox.withLock { box in
            box.scheduled = false
            box.closeOpen()
            swap(&chunks, &box.chunks)
        }
        guard !chunks.isEmpty else {
            spareChunks = chunks
            return
        }
        lastPost.store(DispatchTimeSource.uptimeNanoseconds, ordering: .relaxed)
        var wrote = false
        for chunk in chunks {
            switch machine.enqueue(chunk.buffer, frames: chunk.frames, channelWritable: channel?.isWritable ?? false) {
            case .write:
                channel?.write(chunk.buffer, promise: nil)
                sent(chunk)
                wrote = true
            case .connect:
                connect()
            case .queued:
                break
            case .dropped(let reason):
                dropped(chunk.readableBytes, count: chunk.frames, reason: reason.rawValue)
            }
        }
        if wrote { channel?.flush() }
        // Most often the socket took them all: the last buffers serve the next batches.
        inbox.withLock { box in
            for chunk in chunks.reversed() where box.spares.count < Self.spareCount && chunk.buffer.capacity <= Self.maxSpare {
                box.spares.append(chunk.buffer)
            }
        }
        chunks.removeAll(keepingCapacity: true)
        spareChunks = chunks
        writeQueued()
    }

    private func sent(_ chunk: Chunk) {
        sink.stats.add(\.messagesSent, chunk.frames)
        released(chunk.readableBytes)
    }

    private func released(_ bytes: Int) {
        let left = backlog.add(-bytes, ordering: .relaxed).newValue
        if left <= configuration.writeBufferWaterMark.low, !backPressureWaiters.isEmpty {
            let w = backPressureWaiters
            backPressureWaiters = []
            for p in w { p.succeed() }
        }
    }

    /// Writes queued frames while the channel takes them.
    private func writeQueued() {
        guard let channel else { return }
        var wrote = false
        while let chunk = machine.nextFrame(channelWritable: channel.isWritable) {
            channel.write(chunk.buffer, promise: nil)
            sent(chunk)
            wrote = true
        }
        if wrote { channel.flush() }
        if machine.queuedFrames == 0, !flushWaiters.isEmpty {
            let w = flushWaiters
            flushWaiters = []
            let done = channel.writeAndFlush(ByteBuffer())
            for p in w { done.whenComplete { _ in p.succeed() } }
        }
    }

    private func dropped(_ bytes: Int, count: Int, reason: String) {
        sink.stats.add(\.messagesDropped, count)
        if reason == LinkStateMachine.DropReason.queueFull.rawValue { sink.stats.add(\.droppedQueueFull, count) }
        released(bytes)
    }

    /// Applies a transition that empties the queue (broken, stalled, closed); the frames it
    /// dropped are counted and logged. False when the transition did not apply.
    @discardableResult
    private func dropQueue(_ reason: String, _ transition: (inout LinkStateMachine) -> Int?) -> Bool {
        let bytes = machine.queuedBytes
        guard let count = transition(&machine) else { return false }
        if count > 0 {
            sink.stats.add(\.messagesDropped, count)
            logger.warning("dropped \(count) queued message(s): \(reason)", metadata: ["event": "messages_dropped", "count": "\(count)", "peer": "\(endpoint)"])
        }
        released(bytes)
        let w = flushWaiters
        flushWaiters = []
        for p in w { p.succeed() }
        return true
    }

    /// `fromListeningPort`: from the bus's listening address, if it has one for this peer.
    private func connect(fromListeningPort: Bool = true) {
        if connectingSince == nil { connectingSince = .now() }
        // An IP address (every pid of a cluster on one network) is connected to as it is: the
        // resolver's getaddrinfo opened /etc/hosts and friends on every connect, a fifth of a new
        // leader's CPU while it linked to 10,000 agents. Names still go through the resolver.
        let address = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port)
        // The peer is connected to us from its pid's own address: that connection proves it, as
        // an answered offer would, without a connection of ours (a new leader connected back to
        // each of its 10,000 agents, and each of them accepted and closed that connection).
        if let address, let peer = peerConnection?(address), adopt(peer) { return }
        guard configuration.descriptors.take() else {
            return connected(.failure(ConnectFailure.budgetSpent(configuration.descriptors.limit)))
        }
        let sink = self.sink, configuration = self.configuration, logger = self.logger
        // Not to ourselves (a connection from an address to itself is TCP's self-connect).
        let from = fromListeningPort ? source.flatMap { s in address.flatMap { $0.protocol == s.protocol && $0 != s ? s : nil } } : nil
        var bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(configuration.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configuration.configure(channel)
                    if let tls = configuration.tls {
                        // An IP address is checked against the certificate's IP SANs (and sent as no SNI).
                        try channel.pipeline.syncOperations.addHandlers([
                            try NIOSSLClientHandler(context: tls.clientContext, serverHostname: address == nil ? self.endpoint.host : nil),
                            TLSPeerVerifier(side: .link(self), settings: tls.settings, peerRoles: configuration.peerRoles, logger: logger, stats: sink.stats),
                        ])
                    }
                    // Peers answer on their own links, but whatever arrives here is decoded too.
                    try channel.pipeline.syncOperations.addHandlers([
                        FrameHandler(codec: configuration.codec, side: .link(self), sink: sink, logger: logger, partialFrameTimeout: configuration.partialFrameTimeout),
                        LinkHandler(link: self),
                    ])
                }
            }
        if let from {
            bootstrap = bootstrap.channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .channelOption(ChannelOptions.socketOption(.so_reuseport), value: 1).bind(to: from)
        }
        let connecting: EventLoopFuture<any Channel>
        if let address {
            connecting = bootstrap.connect(to: address)
        } else {
            connecting = bootstrap.connect(host: endpoint.host, port: endpoint.port)
        }
        connecting.whenComplete { result in self.connected(result, fromListeningPort: from != nil) }
    }

    /// Writes over `peer`, the peer's own connection to us from the address of its pid. On our loop.
    private func adopt(_ peer: any Channel) -> Bool {
        guard peer.isActive, peer.eventLoop === loop, machine.state == .connecting else { return false }
        let handler = LinkHandler(link: self)
        guard (try? peer.pipeline.syncOperations.addHandler(handler)) != nil else { return false }
        connectingSince = nil
        machine.connected(ObjectIdentifier(peer), authenticate: false)
        channel = peer
        adopted = (peer, handler)
        sink.stats.add(\.returnRoutesBySource)
        logger.debug(
            "writing over the peer's connection from its pid's address (return route)",
            metadata: ["event": "return_route_adopted", "proof": "source_address", "peer": "\(endpoint)"])
        writeQueued()
        return true
    }

    private func connected(_ result: Result<any Channel, any Error>, fromListeningPort: Bool = false) {
        switch result {
        case .success(let channel):
            connectingSince = nil
            let descriptors = configuration.descriptors
            channel.closeFuture.whenComplete { _ in descriptors.release() }
            guard machine.state == .connecting else {
                channel.close(promise: nil)  // closed meanwhile
                return
            }
            self.channel = channel
            let id = ObjectIdentifier(channel)
            if configuration.tls != nil {
                // Nothing is written before the handshake is over and the server's role checked.
                machine.connected(id, authenticate: true)
            } else {
                established(channel, id, held: false)
            }
        case .failure(let error):
            if !(error is ConnectFailure) { configuration.descriptors.release() }  // taken, but no socket came of it
            if fromListeningPort, machine.state == .connecting, !Self.isPeersAnswer(error) {
                // The listening port could not be connected from (an earlier connection from this
                // address pair lingers in TIME_WAIT, or the address cannot reach the peer): from
                // any port then; the peer proves us by an offer's nonce instead.
                sink.stats.add(\.linkSourcePortsTaken)
                logger.debug("the listening port's connection to the peer is still taken: connecting from another port", metadata: ["event": "link_source_port_taken", "peer": "\(endpoint)"])
                return connect(fromListeningPort: false)
            }
            if ConnectFailure.isLocalShortage(error), machine.state == .connecting,
                NIODeadline.now() - (connectingSince ?? .now()) < configuration.connectTimeout {
                // This process is out of descriptors (its `DescriptorBudget`, or EMFILE/ENFILE),
                // not the peer unreachable: a new leader holds 10,000 agents' connections and opens
                // its own to each of them for a moment (a return route's offer), and dropping the
                // answers it queued made those agents wait out a registration backoff. Connect
                // again shortly, keeping the queue, until `connectTimeout` has passed.
                sink.stats.add(\.connectsDeferred)
                logger.debug("out of file descriptors, connecting again shortly: \(error)", metadata: ["event": "connect_deferred", "peer": "\(endpoint)"])
                loop.scheduleTask(in: .milliseconds(Int64.random(in: 50...250))) {
                    guard self.machine.state == .connecting else { return }
                    self.connect()
                }
                return
            }
            connectingSince = nil
            sink.stats.add(\.connectsFailed)
            dropQueue("connect failed: \(error)") { $0.broken(nil) }
            logger.warning("cannot connect to peer: \(error)", metadata: ["event": "connect_failed", "peer": "\(endpoint)"])
            sink.event(.linkBroken(peer: endpoint.description, reason: "connect failed: \(error)"))
        }
    }

    /// The peer (or the way to it) refused or did not answer: connecting from another port would
    /// fail the same way. Anything else from a connect from the listening port is taken to be the
    /// port's own failure (EADDRNOTAVAIL: the address pair is in use; EADDRINUSE, EINVAL, EACCES,
    /// EPERM: the address cannot be bound or routed from).
    private static func isPeersAnswer(_ error: any Error) -> Bool {
        if let channel = error as? ChannelError, case .connectTimeout = channel { return true }
        guard let io = error as? IOError else { return false }
        return [ECONNREFUSED, ECONNRESET, ETIMEDOUT, EHOSTUNREACH].contains(io.errnoCode)
    }

    /// The connection is up (TCP, and TLS when configured): authenticate first or start writing.
    /// `held`: the machine already holds writes back (`authenticating`, during the TLS handshake).
    private func established(_ channel: any Channel, _ id: ObjectIdentifier, held: Bool) {
        if !held { machine.connected(id, authenticate: true) }  // writes wait for authentication and the offer
        if let credential {
            let authenticatee = Authenticatee(credential: credential)
            self.authenticatee = authenticatee
            write(authenticatee.opening, on: channel)
        } else {
            ready(channel, id)
        }
    }

    /// The connection is up and authenticated: offer the peer a return route, or start writing.
    private func ready(_ channel: any Channel, _ id: ObjectIdentifier) {
        guard let offers else {
            _ = machine.authenticated(id)
            return writeQueued()
        }
        // What was posted while connecting goes out now, ahead of the offer; only what is posted
        // later waits for the answer. The peer reads this connection in order and delivers what
        // came before the offer before it claims it, so nothing written later over the claimed
        // connection overtakes it. Held until the claim, a new leader's answers to 10,000
        // re-registering agents waited one more round trip each through their busy processes,
        // longer than their registration backoff: each agent re-registered ~4 times.
        for chunk in machine.takeQueued(on: id) {
            channel.write(chunk.buffer, promise: nil)
            sent(chunk)
        }
        let nonce = ConnectionAuthentication.nonce()
        offers.add(nonce, self)
        let wait = configuration.returnRouteTimeout
        _ = loop.scheduleTask(in: wait) {
            self.returnRoute(nonce, claimedOn: nil, reason: "no answer within \(wait.nanoseconds / 1_000_000) ms")
        }
        offer = nonce
        write(.returnRouteOffer(ReturnRouteOfferMessage(nonce: nonce)), on: channel)
    }

    /// The answer to this link's offer `nonce`: claimed on `claim` (the peer's own connection to
    /// us, where a claim arrives), or declined (`claim` nil; also when no answer came in time).
    /// Then the held writes go out, over the claimed connection or our own. On our loop.
    func returnRoute(_ nonce: [UInt8], claimedOn claim: (any Channel)?, reason: String?) {
        loop.preconditionInEventLoop()
        guard offer == nonce, let own = channel, machine.state == .authenticating(ObjectIdentifier(own)) else { return }
        withdrawOffer()
        let id = ObjectIdentifier(own)
        if let claim, claim.isActive, claim.eventLoop === loop {
            let handler = LinkHandler(link: self)
            if (try? claim.pipeline.syncOperations.addHandler(handler)) != nil {
                machine.adopt(from: id, to: ObjectIdentifier(claim))
                channel = claim
                adopted = (claim, handler)
                sink.stats.add(\.returnRoutesAdopted)
                logger.debug("writing over the peer's connection (return route)", metadata: ["event": "return_route_adopted", "peer": "\(endpoint)"])
                own.close(promise: nil)  // its close finds another connection current: not a broken link
                return writeQueued()
            }
        }
        sink.stats.add(\.returnRoutesDeclined)
        logger.debug(
            "keeping our own connection: \(reason ?? "the claimed connection is gone")",
            metadata: ["event": "return_route_declined", "peer": "\(endpoint)"])
        _ = machine.authenticated(id)
        writeQueued()
    }

    /// Forgets the outstanding offer, if any (answered, timed out, or its connection is gone).
    private func withdrawOffer() {
        guard let pending = offer else { return }
        offer = nil
        // Its timer is left to fire and find the offer gone: a cancel scans the loop's whole
        // schedule (10,000 links' timers on a new leader's loop).
        offers?.remove(pending)
    }

    /// A peer offered to write to us over this link's connection (its nonce came on our accepted
    /// connection from it): echo the nonce on this link, after everything posted before. False
    /// when this link is not up and authenticated (the peer goes on over its own connection).
    func claimReturnRoute(_ nonce: [UInt8]) -> Bool {
        loop.preconditionInEventLoop()
        guard case .connected(let id) = machine.state, let channel, ObjectIdentifier(channel) == id, adopted == nil else { return false }
        guard (try? post(Envelope(epoch: 0, from: me(), payload: .returnRouteClaim(ReturnRouteClaimMessage(nonce: nonce))))) == .queued else { return false }
        sink.stats.add(\.returnRoutesClaimed)
        return true
    }

    /// The TLS handshake on `channel` is over and the server passed the role check (from its
    /// `TLSPeerVerifier`, on our loop).
    func tlsEstablished(on channel: any Channel) {
        loop.preconditionInEventLoop()
        let id = ObjectIdentifier(channel)
        guard self.channel === channel, machine.state == .authenticating(id) else { return }
        established(channel, id, held: true)
    }

    private func write(_ payload: Envelope.Payload, on channel: any Channel) {
        guard let frame = try? FrameCodec().encode(Envelope(epoch: 0, from: me(), payload: payload)) else { return }
        channel.writeAndFlush(ByteBuffer(bytes: frame), promise: nil)
    }

    /// An authentication answer arrived on `channel` (from its FrameHandler, on our loop).
    func authentication(_ payload: Envelope.Payload, on channel: any Channel) {
        loop.preconditionInEventLoop()
        guard machine.state == .authenticating(ObjectIdentifier(channel)), var authenticatee else { return }
        let outcome = authenticatee.handle(payload)
        self.authenticatee = authenticatee
        switch outcome {
        case .send(let answer):
            write(answer, on: channel)
        case .authenticated:
            logger.debug("authenticated to peer", metadata: ["peer": "\(endpoint)", "principal": "\(authenticatee.credential.principal)"])
            provedMaster = configuration.requiredCredentials == nil
            ready(channel, ObjectIdentifier(channel))
        case .failed(let reason, let cause):
            dropQueue(reason) { $0.broken(ObjectIdentifier(channel)) }
            logger.error("\(reason)", metadata: ["event": "authentication_failed", "cause": "\(cause)", "peer": "\(endpoint)"])
            self.channel = nil
            channel.close(promise: nil)
            sink.event(.linkBroken(peer: endpoint.description, reason: reason))
        case .ignore:
            break
        }
    }

    fileprivate func writabilityChanged(_ channel: any Channel) {
        guard self.channel === channel else { return }
        if channel.isWritable {
            stallTimer?.cancel()
            stallTimer = nil
            writeQueued()
        } else if stallTimer == nil {
            let id = ObjectIdentifier(channel)
            stallTimer = loop.scheduleTask(in: configuration.writeTimeout) { self.stalled(id) }
        }
    }

    private func stalled(_ id: ObjectIdentifier) {
        stallTimer = nil
        guard let channel, ObjectIdentifier(channel) == id, !channel.isWritable else { return }
        let reason = "the peer stopped reading: nothing could be written for \(configuration.writeTimeout.nanoseconds / 1_000_000) ms"
        sink.stats.add(\.linksStalled)
        logger.warning("closing a stalled link: \(reason)", metadata: ["event": "link_stalled", "peer": "\(endpoint)"])
        self.channel = nil
        adopted = nil
        dropQueue(reason) { $0.broken(id) }
        channel.close(promise: nil)
        sink.event(.linkBroken(peer: endpoint.description, reason: reason))
    }

    fileprivate func inactive(_ channel: any Channel) {
        guard dropQueue("connection closed", { $0.broken(ObjectIdentifier(channel)) }) else { return }
        if self.channel === channel { self.channel = nil }
        if adopted?.channel === channel { adopted = nil }
        withdrawOffer()
        stallTimer?.cancel()
        stallTimer = nil
        logger.info("link to peer closed", metadata: ["peer": "\(endpoint)"])
        sink.event(.linkBroken(peer: endpoint.description, reason: "connection closed"))
    }

    /// Closes for good (shutdown, idle eviction) without reporting a broken link.
    func close() {
        loop.preconditionInEventLoop()
        drainInbox()
        stallTimer?.cancel()
        dropQueue("link closed") { $0.close() }
        withdrawOffer()
        if let adopted {
            // The peer's connection stays: it is the peer's link to us, and it is still in use.
            adopted.channel.pipeline.syncOperations.removeHandler(adopted.handler, promise: nil)  // on its loop: ours
            self.adopted = nil
        } else {
            channel?.close(promise: nil)
        }
        channel = nil
        let w = backPressureWaiters
        backPressureWaiters = []
        for p in w { p.succeed() }
    }
}

final class LinkHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Never
    private let link: Link
    init(link: Link) { self.link = link }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        link.writabilityChanged(context.channel)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        link.inactive(context.channel)
        context.fireChannelInactive()
    }
}

/// Monotonic nanoseconds for timestamps shared across threads.
enum DispatchTimeSource {
    static var uptimeNanoseconds: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// A connect not tried: the bus's `DescriptorBudget` is spent.
enum ConnectFailure: Error, CustomStringConvertible {
    case budgetSpent(Int)

    var description: String {
        switch self {
        case .budgetSpent(let limit): "the bus holds \(limit) sockets, its share of the process's descriptors"
        }
    }

    /// The process or system is out of file descriptors (its budget, EMFILE, ENFILE): nothing
    /// about the peer.
    static func isLocalShortage(_ error: any Error) -> Bool {
        if error is ConnectFailure { return true }
        guard let io = error as? IOError else { return false }
        return io.errnoCode == EMFILE || io.errnoCode == ENFILE
    }
}
