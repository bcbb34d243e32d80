import Logging
import MesosWire
import NIOCore
import Synchronization

/// The bus's event queue: decoded envelopes in, `BusEvents` out, and back-pressure on the
/// sockets when the consumer falls behind (autoRead off above the high water mark).
///
/// Frame handlers deliver a batch per read cycle (one lock for many messages; the batch array is
/// moved in, not copied, and emptied arrays come back for the next batches); the consumer takes
/// events one at a time from the same queue (each moved out), so an iterator that stops early
/// loses nothing and the next one goes on where it stopped.
///
/// Or, for a consumer that runs on the bus's event loop (`MessageBus.handleEvents(onLoop:)`),
/// no queue: each event goes to its handler on the loop as it comes, with no task to resume.
final class InboundSink: Sendable {
    /// A handler on the loop (a class: taken out of the lock as a reference, a function value
    /// returned through the lock's generic result was wrapped in a new thunk on every delivery).
    private final class DirectHandler: Sendable {
        let handler: @Sendable (BusEvent) -> Void
        let loop: any EventLoop
        init(_ handler: @escaping @Sendable (BusEvent) -> Void, on loop: any EventLoop) {
            self.handler = handler
            self.loop = loop
        }
    }

    /// The direct handler and the events it has yet to take: an event raised while the handler
    /// runs (a write that fails inside it) waits for it to return, so the handler is never
    /// re-entered and sees events in order.
    private struct Direct {
        var to: DirectHandler
        var pending: [BusEvent] = []
        var running = false
    }

    private struct Batch {
        var events: [BusEvent]
        /// All messages (from a connection), or one other event (a tick, a broken link).
        var messages: Bool
    }

    private struct State {
        /// The batch being taken from, and the next event in it.
        var head: [BusEvent] = []
        var headIndex = 0
        var headMessages = true
        var queue = CircularBuffer<Batch>(initialCapacity: 16)
        /// Messages queued (ticks and broken links do not count towards the water marks).
        var pending = 0
        var paused: [ObjectIdentifier: any Channel] = [:]
        var tickWaiting = false
        var finished = false
        var waiters: [(id: UInt64, continuation: UnsafeContinuation<BusEvent?, Never>)] = []
        var nextWaiter: UInt64 = 0
        /// Emptied batch arrays (their capacity), for the frame handlers' next batches.
        var spareArrays: [[BusEvent]] = []
        var direct: Direct?

        /// Moves the next event out (its slot keeps a trivial `.tick`); nil when none is queued.
        mutating func popFirst() -> BusEvent? {
            if headIndex == head.count {
                guard var next = queue.popFirst() else { return nil }
                swap(&next.events, &head)  // no copy: `head` must stay uniquely referenced
                recycle(next.events)
                headMessages = next.messages
                headIndex = 0
            }
            var event = BusEvent.tick
            swap(&event, &head[headIndex])
            headIndex += 1
            if headMessages {
                pending -= 1
            } else if case .tick = event {
                tickWaiting = false
            }
            return event
        }

        mutating func recycle(_ old: consuming [BusEvent]) {
            if spareArrays.count < 8 && old.capacity > 0 && old.capacity <= 4096 {
                old.removeAll(keepingCapacity: true)
                spareArrays.append(old)
            }
        }
    }
    private let state = Mutex(State())
    private let high: Int
    private let low: Int
    let stats: BusStatsCounter

    init(high: Int, low: Int, stats: BusStatsCounter) {
        self.high = high
        self.low = low
        self.stats = stats
    }

    /// What became of a delivered batch.
    enum Delivery {
        case queued
        /// Queued, and the queue reached its high water mark: reading `channel` is paused.
        case queuedAndPaused
        /// In the direct handler's queue: the caller then calls `runDirect`.
        case direct
    }

    /// Queues `batch` (messages received on `channel`, in order); `batch` is then an empty array,
    /// often with capacity.
    @discardableResult
    func deliver(_ batch: inout [BusEvent], on channel: any Channel) -> Delivery {
        guard !batch.isEmpty else { return .queued }
        let n = batch.count
        stats.add(\.messagesReceived, n)
        if handDirectly(batch, now: true) {
            batch.removeAll(keepingCapacity: true)
            return .direct
        }
        var handOff = HandOff()
        let pause = state.withLock { s -> Bool in
            // Moved, never copied: the queue's array must stay uniquely referenced (events are
            // moved out of it one by one).
            var next = Batch(events: s.spareArrays.popLast() ?? [], messages: true)
            swap(&next.events, &batch)
            guard !s.finished else { return false }
            s.queue.append(consume next)
            s.pending += n
            Self.handOff(&s, into: &handOff)
            guard s.pending >= high else { return false }
            s.paused[ObjectIdentifier(channel)] = channel
            return true
        }
        if pause {
            stats.add(\.readsPaused)
            channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
        handOff.resume()
        return pause ? .queuedAndPaused : .queued
    }

    /// From now on every event goes to `handler`, on `loop`, instead of the queue.
    func handleDirectly(on loop: any EventLoop, _ handler: @escaping @Sendable (BusEvent) -> Void) {
        state.withLock { $0.direct = Direct(to: DirectHandler(handler, on: loop)) }
    }

    /// Queues `events` for the direct handler, if there is one (then true).
    /// On the loop it joins the handler's queue at once, so events keep the order in which the
    /// loop raised them; `now` (the loop's own I/O and timers: a read, a tick) means the caller
    /// calls `runDirect` next. Otherwise `runDirect` runs from a task of the loop of its own: the
    /// event may come from code the consumer called (a post whose write fails raises a broken link
    /// inside the consumer's own method, which must not be re-entered). From another thread, the
    /// events go through the loop.
    private enum DirectStep { case notDirect, done, run(any EventLoop), hop(any EventLoop) }

    private func handDirectly(_ events: some Collection<BusEvent>, now: Bool) -> Bool {
        let step = state.withLock { s -> DirectStep in
            guard let loop = s.direct?.to.loop else { return .notDirect }
            if s.finished { return .done }  // dropped: the bus is shut down
            guard loop.inEventLoop else { return .hop(loop) }
            s.direct!.pending.append(contentsOf: events)
            return now ? .done : .run(loop)
        }
        switch step {
        case .notDirect: return false
        case .done: break
        case .run(let loop): loop.execute { self.runDirect() }
        case .hop(let loop):
            let events = Array(events)
            loop.execute {
                self.state.withLock { s in if !s.finished { s.direct?.pending.append(contentsOf: events) } }
                self.runDirect()
            }
        }
        return true
    }

    /// Hands what is pending to the direct handler, in order, on the loop; nothing if the handler
    /// is running already (it takes them when it returns). Called outside any access to a frame
    /// handler's batch: the handler may close that connection.
    func runDirect() {
        let direct = state.withLock { s -> DirectHandler? in
            guard let d = s.direct, !d.running, !d.pending.isEmpty, d.to.loop.inEventLoop else { return nil }
            s.direct!.running = true
            return d.to
        }
        guard let direct else { return }
        // Two arrays take turns (the one handed over comes back emptied, with its capacity): no
        // allocation per delivery.
        var taken: [BusEvent] = []
        while true {
            state.withLock { s in
                taken.removeAll(keepingCapacity: true)
                swap(&taken, &s.direct!.pending)
                if s.finished { taken.removeAll(keepingCapacity: true) }
                if taken.isEmpty { s.direct!.running = false }
            }
            if taken.isEmpty { return }
            for event in taken { direct.handler(event) }
        }
    }

    /// Waiting consumers and the events they get, resumed outside the lock (an array only for
    /// more than one waiter).
    private struct HandOff {
        var first: (UnsafeContinuation<BusEvent?, Never>, BusEvent)?
        var more: [(UnsafeContinuation<BusEvent?, Never>, BusEvent)] = []

        func resume() {
            if let (c, e) = first { c.resume(returning: e) }
            for (c, e) in more { c.resume(returning: e) }
        }
    }

    /// Gives waiting consumers the first events (counted as taken).
    private static func handOff(_ s: inout State, into out: inout HandOff) {
        while !s.waiters.isEmpty, let event = s.popFirst() {
            let waiter = (s.waiters.removeFirst().continuation, event)
            if out.first == nil { out.first = waiter } else { out.more.append(waiter) }
        }
    }

    /// Whether back-pressure paused reading `channel` (its messages wait on our consumer).
    func isPaused(_ channel: any Channel) -> Bool {
        state.withLock { $0.paused[ObjectIdentifier(channel)] != nil }
    }

    /// Channels to resume once the consumer caught up (taken under the lock, resumed outside).
    private func resumable(_ s: inout State) -> [any Channel] {
        guard s.pending <= low, !s.paused.isEmpty else { return [] }
        defer { s.paused.removeAll() }
        return Array(s.paused.values)
    }

    private func resume(_ channels: [any Channel]) {
        for channel in channels { channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
    }

    /// The next event, on the caller's executor (no executor switch on the way in or out: a task
    /// on a bus's loop paid a look-up of its executor preference, under a lock, per event).
    /// Waits for one if none is queued; nil once finished and drained (or when the task is cancelled).
    nonisolated(nonsending) func next() async -> BusEvent? {
        // An event is queued (the common case under load): no suspension.
        switch take() {
        case .event(let event): return event
        case .end: return nil
        case .none: break
        }
        let id = state.withLock { s -> UInt64 in
            defer { s.nextWaiter &+= 1 }
            return s.nextWaiter
        }
        let isolation = #isolation  // the caller's
        return await withTaskCancellationHandler(
            operation: {
                await withUnsafeContinuation(isolation: isolation) { (c: UnsafeContinuation<BusEvent?, Never>) in
                    switch take(orWait: { s in s.waiters.append((id, c)) }) {
                    case .event(let event): c.resume(returning: event)
                    case .end: c.resume(returning: nil)
                    case .none: break
                    }
                }
            },
            onCancel: {
                let waiter = state.withLock { s -> UnsafeContinuation<BusEvent?, Never>? in
                    guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.waiters.remove(at: i).continuation
                }
                waiter?.resume(returning: nil)
            },
            isolation: isolation)
    }

    private enum Taken {
        case event(BusEvent)
        /// None, and none will come (finished, or the task is cancelled).
        case end
        /// None yet (`orWait` ran under the same lock).
        case none
    }

    private func take(orWait: (inout State) -> Void = { _ in }) -> Taken {
        var channels: [any Channel] = []
        let taken = state.withLock { s -> Taken in
            if let event = s.popFirst() {
                channels = resumable(&s)
                return .event(event)
            }
            if s.finished || Task.isCancelled { return .end }
            orWait(&s)
            return .none
        }
        if !channels.isEmpty { resume(channels) }
        return taken
    }

    func event(_ event: BusEvent) { enqueue(event) }

    private func enqueue(_ event: BusEvent, onlyIf condition: (inout State) -> Bool = { _ in true }) {
        if handDirectly(CollectionOfOne(event), now: false) { return }
        var handOff = HandOff()
        state.withLock { s in
            guard !s.finished, condition(&s) else { return }
            s.queue.append(Batch(events: [event], messages: false))
            Self.handOff(&s, into: &handOff)
        }
        handOff.resume()
    }

    /// One tick at most waits in the queue: a consumer that fell behind gets one, not a backlog.
    func tick() {
        // From the loop's timers: a direct handler takes it at once.
        if handDirectly(CollectionOfOne(.tick), now: true) { return runDirect() }
        enqueue(.tick) { s in
            defer { s.tickWaiting = true }
            return !s.tickWaiting
        }
    }

    /// Ends the events once what is queued is taken.
    func finish() {
        let waiters = state.withLock { s -> [UnsafeContinuation<BusEvent?, Never>] in
            s.finished = true
            defer { s.waiters = [] }
            return s.waiters.map(\.continuation)
        }
        for w in waiters { w.resume(returning: nil) }
    }
}

/// Frames in, envelopes out. Bad input (oversized, empty, malformed frame, a partial frame
/// that stalls) closes this connection only, with the reason logged. On an accepted connection it
/// also runs the accepting side of authentication; on a link, authentication answers go to the link.
///
/// Frames are decoded in place from each read; the messages of one read cycle go to the sink
/// together at `channelReadComplete` (and before anything that ends the connection).
final class FrameHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// The batch to the sink; a consumer on the loop then takes it, once the access to `batch`
    /// has ended (it may close this connection, whose handler flushes `batch` again) and, during
    /// a read, once the read's frames are decoded (a consumer that closes this connection must not
    /// see frames decoded after that).
    private func deliverBatch(_ context: ChannelHandlerContext) {
        switch sink.deliver(&batch, on: context.channel) {
        case .queued: break
        case .queuedAndPaused: sawPaused = true
        case .direct: if decoding { directRunOwed = true } else { sink.runDirect() }
        }
    }

    enum Side {
        /// `learn`: a peer proved this credential, sending as this `from` (the master's links back to it
        /// authenticate with the same credential).
        case accepted(
            Authenticator, me: @Sendable () -> String, learn: @Sendable (Credential, String) -> Void = { _, _ in },
            routes: ReturnRouteHandling = ReturnRouteHandling())
        case link(Link)
    }

    private var decoder: FrameDecoder
    private var authenticator: Authenticator?
    private let me: @Sendable () -> String
    private let learn: (@Sendable (Credential, String) -> Void)?
    private let routes: ReturnRouteHandling
    private let link: Link?
    /// What this connection proved, once the authenticator is satisfied (nil: not yet).
    private var identity: PeerIdentity?
    /// What the connection's TLS certificate proved (`TLSPeerVerified`, before any frame).
    private var certified = PeerIdentity.unauthenticated
    private let sink: InboundSink
    private let logger: Logger
    private let partialFrameTimeout: TimeAmount
    private var rejected = false
    private var batch: [BusEvent] = []
    /// The last read (its loop's clock), and whether a stall check is scheduled: only while a
    /// partial frame is buffered or the peer has yet to authenticate. Never cancelled (a check
    /// that finds nothing to do just ends): at 10,000 agents every connection's idle timer made
    /// each timer cancel on the loop, which scans the loop's whole schedule, a tenth of the new
    /// leader's CPU in a failover.
    private var lastRead = NIODeadline.uptimeNanoseconds(0)
    private var stallCheckScheduled = false
    /// Back-pressure paused reading since the last stall check (or that check found it paused).
    private var sawPaused = false
    /// Taken out of the pipeline (the protocol sniffer found HTTP): a scheduled check does nothing.
    private var removed = false
    /// Inside `decode`; a consumer on the loop is handed what was delivered once it returns.
    private var decoding = false
    private var directRunOwed = false
    /// Whether `routes.arrived` was told of this connection's first message.
    private var arrivalReported = false

    init(codec: FrameCodec, side: Side, sink: InboundSink, logger: Logger, partialFrameTimeout: TimeAmount) {
        self.decoder = FrameDecoder(codec: codec)
        switch side {
        case .accepted(let authenticator, let me, let learn, let routes):
            self.authenticator = authenticator
            self.me = me
            self.learn = learn
            self.routes = routes
            self.link = nil
            self.identity = authenticator.isSatisfied ? authenticator.identity : nil
        case .link(let link):
            self.authenticator = nil
            self.me = { "" }
            self.learn = nil
            self.routes = ReturnRouteHandling()
            self.link = link
            self.identity = nil
        }
        self.sink = sink
        self.logger = logger
        self.partialFrameTimeout = partialFrameTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { started(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
    }

    func channelActive(context: ChannelHandlerContext) {
        started(context)
        context.fireChannelActive()
    }

    /// The connection is up (added to an active channel, or become active): its time to show
    /// proof of identity starts.
    private func started(_ context: ChannelHandlerContext) {
        lastRead = context.eventLoop.now
        scheduleStallCheck(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !rejected else { return }
        lastRead = context.eventLoop.now
        let buffer = unwrapInboundIn(data)
        decoding = true
        do {
            try buffer.withUnsafeReadableBytes { bytes in
                try decoder.decode(bytes) { envelope in
                    route(envelope, context)
                    return !rejected
                }
            }
        } catch let error as WireError {
            reject(context, reason: error.description, cause: error.cause)
        } catch {
            reject(context, reason: "\(error)", cause: "malformed_frame")
        }
        decoding = false
        if directRunOwed {
            directRunOwed = false
            sink.runDirect()
        }
        if !rejected, decoder.bufferedBytes > 0 { scheduleStallCheck(context) }
    }

    /// Whether the connection waits on its peer: a partial frame, or proof still to come.
    private var waitingOnPeer: Bool {
        decoder.bufferedBytes > 0 || (authenticator.map { !$0.isSatisfied } ?? false)
    }

    /// A check `partialFrameTimeout` after the last read, if the connection waits on its peer
    /// and none is scheduled.
    private func scheduleStallCheck(_ context: ChannelHandlerContext) {
        guard !stallCheckScheduled, !rejected, !removed, waitingOnPeer else { return }
        stallCheckScheduled = true
        context.eventLoop.assumeIsolated().scheduleTask(deadline: lastRead + partialFrameTimeout) {
            self.stallCheck(context)
        }
    }

    /// Closes the connection if nothing came for `partialFrameTimeout` while it waited on its peer
    /// (a partial frame stalled, or no proof of identity); else checks again later, if it still waits.
    private func stallCheck(_ context: ChannelHandlerContext) {
        stallCheckScheduled = false
        guard !rejected, !removed, context.channel.isActive, waitingOnPeer else { return }
        if link == nil { sink.stats.add(\.idleChecks) }
        // While back-pressure has reading paused, the partial frame waits on us, not on the peer;
        // and the first check after a pause gives the peer a whole timeout from then (the check
        // may run after the resume but before the resumed read, `lastRead` still from before).
        let paused = sink.isPaused(context.channel)
        if paused || sawPaused { lastRead = context.eventLoop.now }
        sawPaused = paused
        guard !paused, context.eventLoop.now - lastRead >= partialFrameTimeout else { return scheduleStallCheck(context) }
        if decoder.bufferedBytes > 0 {
            reject(context, reason: "partial frame (\(decoder.bufferedBytes) bytes) stalled for \(partialFrameTimeout.nanoseconds / 1_000_000) ms", cause: "partial_frame_stalled")
        } else {
            reject(context, reason: "peer did not authenticate within \(partialFrameTimeout.nanoseconds / 1_000_000) ms", cause: "authentication_timeout")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // A link that carries the peer's messages too (a return route) is in use while they come.
        if let link, !batch.isEmpty { link.lastPost.store(DispatchTimeSource.uptimeNanoseconds, ordering: .relaxed) }
        deliverBatch(context)
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deliverBatch(context)
        context.fireChannelInactive()
    }

    private func route(_ envelope: Envelope, _ context: ChannelHandlerContext) {
        let isAuthentication = envelope.payload?.isAuthentication ?? false
        // The common case: a message from a peer that needs (or needed) no more proof.
        if let identity, !isAuthentication {
            if !arrivalReported {
                arrivalReported = true
                routes.arrived(envelope.from, context.channel)
            }
            if let route = envelope.payload?.returnRoute {
                return returnRoute(route, from: envelope.from, context)
            }
            batch.append(.message(Inbound(envelope, peer: identity)))
            return
        }
        if let link {
            if isAuthentication, let payload = envelope.payload {
                deliverBatch(context)  // what came before stays before
                link.authentication(payload, on: context.channel)
            } else if case .returnRouteDecline(let m)? = envelope.payload {
                link.returnRoute(m.nonce, claimedOn: nil, reason: "the peer declined: \(m.reason ?? "no reason given")")
            } else if envelope.payload?.returnRoute != nil {
                return  // offers and claims are for accepted connections
            } else {
                // A link's peer answers on its own connection, unless it writes over ours (its
                // return route): then this is what its connection proved.
                let roles = link.provedMaster ? certified.roles.union([.master]) : certified.roles
                batch.append(.message(Inbound(envelope, peer: PeerIdentity(principal: certified.principal, roles: roles))))
            }
            return
        }
        guard var authenticator else { return }
        let outcome = authenticator.handle(envelope)
        self.authenticator = authenticator
        switch outcome {
        case .deliver:
            batch.append(.message(Inbound(envelope, peer: proven(authenticator))))
        case .answer(nil): break
        case .answer(let payload?):
            answer(payload, from: me(), context)
            if case .authenticationResponse = envelope.payload, let proved = authenticator.proved { learn?(proved.credential, proved.from) }
        case .refuse(let payload, let reason, let cause):
            answer(payload, from: me(), context)
            reject(context, reason: reason, cause: cause)
        }
        if authenticator.isSatisfied { identity = proven(authenticator) }
    }

    /// An offer or claim of a return route on an accepted connection (the peer proved what it had
    /// to). Kept in order: what came before is delivered first.
    private func returnRoute(_ payload: Envelope.Payload, from: String, _ context: ChannelHandlerContext) {
        switch payload {
        case .returnRouteClaim(let m):
            deliverBatch(context)
            routes.claimed(m.nonce, context.channel)
        case .returnRouteOffer(let m):
            // Delivered before the claim goes out: the offering link wrote them before its offer,
            // and what it writes over the claimed connection must come after them.
            deliverBatch(context)
            if !routes.offered(from, m.nonce) {
                let decline = ReturnRouteDeclineMessage(nonce: m.nonce, reason: "no link of ours to \(from) is up")
                answer(.returnRouteDecline(decline), from: me(), context)
            }
        default:
            break  // a decline belongs on a link
        }
    }

    /// What the connection proved: its certificate's roles and the principal of the secret it
    /// proved (or else its certificate's principal).
    private func proven(_ authenticator: Authenticator) -> PeerIdentity {
        let proved = authenticator.identity
        return PeerIdentity(principal: proved.principal ?? certified.principal, roles: proved.roles.union(certified.roles))
    }

    private func answer(_ payload: Envelope.Payload, from me: String, _ context: ChannelHandlerContext) {
        guard let frame = try? FrameCodec().encode(Envelope(epoch: 0, from: me, payload: payload)) else { return }
        context.writeAndFlush(NIOAny(ByteBuffer(bytes: frame)), promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let verified = event as? TLSPeerVerified {
            certified = verified.identity
            if let authenticator, identity != nil { identity = proven(authenticator) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error, closing", metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"])
        deliverBatch(context)
        context.close(promise: nil)
    }

    private func reject(_ context: ChannelHandlerContext, reason: String, cause: String) {
        rejected = true
        deliverBatch(context)  // what came before the bad input is delivered
        sink.stats.add(\.connectionsRejected)
        logger.warning(
            "closing connection: \(reason)",
            metadata: ["event": "connection_rejected", "cause": "\(cause)", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        context.close(promise: nil)
    }
}

extension WireError {
    /// A stable key for logs and counters.
    var cause: String {
        switch self {
        case .malformed: "malformed_frame"
        case .invalidUTF8: "invalid_utf8"
        case .missingField: "missing_field"
        case .unknownEnumValue: "unknown_enum_value"
        case .frameTooLarge: "frame_too_large"
        case .emptyFrame: "empty_frame"
        }
    }
}

extension Envelope.Payload {
    /// Itself, when it is a return-route message (for the bus, never delivered).
    var returnRoute: Envelope.Payload? {
        switch self {
        case .returnRouteOffer, .returnRouteClaim, .returnRouteDecline: self
        default: nil
        }
    }

    var isAuthentication: Bool {
        switch self {
        case .authenticate, .authenticationChallenge, .authenticationResponse, .authenticationResult: true
        default: false
        }
    }
}
