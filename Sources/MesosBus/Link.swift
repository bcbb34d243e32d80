import Logging
import MesosWire
import NIOCore
import NIOPosix
import Synchronization

/// One outbound TCP connection to a peer endpoint, connected lazily on the first frame and
/// again on the first frame after it broke. Frames keep their posting order.
///
/// Posting is safe from any thread: frames go into a small locked inbox, and the link's event
/// loop is woken once per batch (on the empty-to-non-empty transition), not once per frame. On
/// the loop, `LinkStateMachine` decides; this class only performs its decisions.
final class Link: @unchecked Sendable {  // loop-confined state; `inbox` and atomics shared
    let endpoint: Endpoint
    let loop: any EventLoop
    private let configuration: BusConfiguration
    private let sink: InboundSink
    private let logger: Logger
    private let me: @Sendable () -> String

    private struct Inbox {
        var frames: [ByteBuffer] = []
        var bytes = 0
        var scheduled = false
        /// Set when the link is evicted or shut down: posts go to a new link instead.
        var retired = false
    }
    private let inbox = Mutex(Inbox())
    /// Bytes posted and not yet handed to the socket: senders above the high water mark wait.
    private let backlog = Atomic<Int>(0)
    /// Nanoseconds (uptime) of the last post, for idle eviction.
    let lastPost = Atomic<UInt64>(0)

    // Loop-confined:
    private var machine: LinkStateMachine
    private var channel: (any Channel)?
    private var authenticatee: Authenticatee?
    private var stallTimer: Scheduled<Void>?
    private var backPressureWaiters: [EventLoopPromise<Void>] = []
    private var flushWaiters: [EventLoopPromise<Void>] = []

    init(endpoint: Endpoint, loop: any EventLoop, configuration: BusConfiguration, sink: InboundSink, logger: Logger, me: @escaping @Sendable () -> String) {
        self.endpoint = endpoint
        self.loop = loop
        self.configuration = configuration
        self.sink = sink
        self.logger = logger
        self.me = me
        machine = LinkStateMachine(maxQueuedBytes: configuration.maxQueuedBytesPerLink)
        lastPost.store(DispatchTimeSource.uptimeNanoseconds, ordering: .relaxed)
    }

    // MARK: Any thread

    /// Queues a frame; false when the link is retired (the caller posts to a new link).
    func post(_ frame: ByteBuffer) -> Bool {
        let n = frame.readableBytes
        let wake = inbox.withLock { box -> Bool? in
            guard !box.retired else { return nil }
            box.frames.append(frame)
            box.bytes += n
            defer { box.scheduled = true }
            return !box.scheduled
        }
        guard let wake else { return false }
        backlog.add(n, ordering: .relaxed)
        lastPost.store(DispatchTimeSource.uptimeNanoseconds, ordering: .relaxed)
        if wake { loop.execute { self.drainInbox() } }
        return true
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

    /// Stops taking posts if nothing is waiting to be drained (idle eviction); false otherwise.
    func retireIfIdle() -> Bool {
        inbox.withLock { box in
            guard box.frames.isEmpty, !box.scheduled else { return false }
            box.retired = true
            return true
        }
    }

    // MARK: On the loop

    private func drainInbox() {
        loop.preconditionInEventLoop()
        let frames = inbox.withLock { box -> [ByteBuffer] in
            box.scheduled = false
            box.bytes = 0
            defer { box.frames.removeAll(keepingCapacity: true) }
            return box.frames
        }
        guard !frames.isEmpty else { return }
        var wrote = false
        for frame in frames {
            switch machine.enqueue(frame, channelWritable: channel?.isWritable ?? false) {
            case .write:
                channel?.write(frame, promise: nil)
                sent(frame)
                wrote = true
            case .connect:
                connect()
            case .queued:
                break
            case .dropped(let reason):
                dropped(frame.readableBytes, count: 1, reason: reason.rawValue)
            }
        }
        if wrote { channel?.flush() }
        writeQueued()
    }

    private func sent(_ frame: ByteBuffer) {
        sink.stats.add(\.messagesSent)
        released(frame.readableBytes)
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
        while let frame = machine.nextFrame(channelWritable: channel.isWritable) {
            channel.write(frame, promise: nil)
            sent(frame)
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

    private func connect() {
        let sink = self.sink, configuration = self.configuration, logger = self.logger
        ClientBootstrap(group: loop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: configuration.writeBufferWaterMark)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Peers answer on their own links, but whatever arrives here is decoded too.
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: configuration.partialFrameTimeout),
                        FrameHandler(codec: configuration.codec, side: .link(self), sink: sink, logger: logger, partialFrameTimeout: configuration.partialFrameTimeout),
                        LinkHandler(link: self),
                    ])
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .whenComplete { result in self.connected(result) }
    }

    private func connected(_ result: Result<any Channel, any Error>) {
        switch result {
        case .success(let channel):
            guard machine.state == .connecting else {
                channel.close(promise: nil)  // closed meanwhile
                return
            }
            self.channel = channel
            let id = ObjectIdentifier(channel)
            if let credential = configuration.credential {
                machine.connected(id, authenticate: true)
                let authenticatee = Authenticatee(credential: credential)
                self.authenticatee = authenticatee
                write(authenticatee.opening, on: channel)
            } else {
                machine.connected(id, authenticate: false)
                writeQueued()
            }
        case .failure(let error):
            sink.stats.add(\.connectsFailed)
            dropQueue("connect failed: \(error)") { $0.broken(nil) }
            logger.warning("cannot connect to peer: \(error)", metadata: ["event": "connect_failed", "peer": "\(endpoint)"])
            sink.event(.linkBroken(peer: endpoint.description, reason: "connect failed: \(error)"))
        }
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
            _ = machine.authenticated(ObjectIdentifier(channel))
            writeQueued()
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
        dropQueue(reason) { $0.broken(id) }
        channel.close(promise: nil)
        sink.event(.linkBroken(peer: endpoint.description, reason: reason))
    }

    fileprivate func inactive(_ channel: any Channel) {
        guard dropQueue("connection closed", { $0.broken(ObjectIdentifier(channel)) }) else { return }
        if self.channel === channel { self.channel = nil }
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
        channel?.close(promise: nil)
        channel = nil
        let w = backPressureWaiters
        backPressureWaiters = []
        for p in w { p.succeed() }
    }
}

private final class LinkHandler: ChannelInboundHandler {
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
