import Logging
import MesosWire
import NIOCore
import NIOPosix
import Synchronization

/// One outbound TCP connection to a peer endpoint: connected lazily on the first send,
/// reconnected lazily on the first send after it broke. Frames keep their send order.
/// All state lives on `loop`; methods other than `init` must run there.
final class Link: @unchecked Sendable {
    private enum State {
        case idle
        case connecting(pending: CircularBuffer<ByteBuffer>, bytes: Int)
        /// Connected, proving our credential; frames wait until the peer accepts it.
        case authenticating(any Channel, Authenticatee, pending: CircularBuffer<ByteBuffer>, bytes: Int)
        case connected(any Channel)
        case closed
    }

    let endpoint: Endpoint
    let loop: any EventLoop
    private let configuration: BusConfiguration
    private let sink: InboundSink
    private let logger: Logger
    private let me: @Sendable () -> String
    private var state = State.idle
    private var waiters: [EventLoopPromise<Void>] = []
    private var flushScheduled = false
    /// Readable from any thread: while set, senders queue without waiting for the loop.
    let accepting = Atomic<Bool>(true)

    init(
        endpoint: Endpoint, loop: any EventLoop, configuration: BusConfiguration, sink: InboundSink, logger: Logger,
        me: @escaping @Sendable () -> String
    ) {
        self.me = me
        self.endpoint = endpoint
        self.loop = loop
        self.configuration = configuration
        self.sink = sink
        self.logger = logger
    }

    /// Queues a frame. The future completes when the caller may send more (back-pressure);
    /// it never fails: an unreachable peer drops the frame and reports `linkBroken`.
    func send(_ frame: ByteBuffer) -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        switch state {
        case .closed:
            sink.stats.add(\.messagesDropped)
            return loop.makeSucceededVoidFuture()
        case .idle:
            var pending = CircularBuffer<ByteBuffer>()
            pending.append(frame)
            state = .connecting(pending: pending, bytes: frame.readableBytes)
            connect()
            return loop.makeSucceededVoidFuture()
        case .connecting(var pending, let bytes):
            state = .idle  // drop the enum's reference first, or each append copies the whole queue
            pending.append(frame)
            state = .connecting(pending: pending, bytes: bytes + frame.readableBytes)
            return bytes + frame.readableBytes > configuration.writeBufferWaterMark.high ? wait() : loop.makeSucceededVoidFuture()
        case .authenticating(let channel, let authenticatee, var pending, let bytes):
            state = .idle
            pending.append(frame)
            state = .authenticating(channel, authenticatee, pending: pending, bytes: bytes + frame.readableBytes)
            return bytes + frame.readableBytes > configuration.writeBufferWaterMark.high ? wait() : loop.makeSucceededVoidFuture()
        case .connected(let channel):
            channel.write(frame, promise: nil)
            sink.stats.add(\.messagesSent)
            scheduleFlush(channel)
            return channel.isWritable ? loop.makeSucceededVoidFuture() : wait()
        }
    }

    func close() {
        loop.preconditionInEventLoop()
        switch state {
        case .connected(let channel): channel.close(promise: nil)
        case .connecting(let pending, _): sink.stats.add(\.messagesDropped, pending.count)
        case .authenticating(let channel, _, let pending, _):
            channel.close(promise: nil)
            sink.stats.add(\.messagesDropped, pending.count)
        case .idle, .closed: break
        }
        state = .closed
        releaseWaiters()
    }

    private func wait() -> EventLoopFuture<Void> {
        accepting.store(false, ordering: .relaxed)
        let promise = loop.makePromise(of: Void.self)
        waiters.append(promise)
        return promise.futureResult
    }

    private func releaseWaiters() {
        accepting.store(true, ordering: .relaxed)
        let w = waiters
        waiters = []
        for p in w { p.succeed() }
    }

    private func scheduleFlush(_ channel: any Channel) {
        guard !flushScheduled else { return }
        flushScheduled = true
        // Coalesce: sends already queued on this loop are written before one flush.
        loop.execute {
            self.flushScheduled = false
            channel.flush()
        }
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
                        FrameHandler(
                            codec: configuration.codec, side: .link(self), sink: sink, logger: logger,
                            partialFrameTimeout: configuration.partialFrameTimeout),
                        LinkHandler(link: self),
                    ])
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .whenComplete { result in self.connected(result) }
    }

    private func connected(_ result: Result<any Channel, any Error>) {
        guard case .connecting(let pending, _) = state else {
            if case .success(let channel) = result { channel.close(promise: nil) }  // closed meanwhile
            return
        }
        switch result {
        case .success(let channel):
            if let credential = configuration.credential {
                let authenticatee = Authenticatee(credential: credential)
                state = .authenticating(channel, authenticatee, pending: pending, bytes: 0)
                write(authenticatee.opening, on: channel)
                return
            }
            becomeConnected(channel, pending)
        case .failure(let error):
            state = .idle
            sink.stats.add(\.connectsFailed)
            sink.stats.add(\.messagesDropped, pending.count)
            logger.warning("cannot connect to peer; dropped \(pending.count) message(s)", metadata: ["peer": "\(endpoint)", "error": "\(error)"])
            releaseWaiters()
            sink.event(.linkBroken(peer: endpoint.description, reason: "connect failed: \(error)"))
        }
    }

    private func becomeConnected(_ channel: any Channel, _ pending: CircularBuffer<ByteBuffer>) {
        state = .connected(channel)
        for frame in pending { channel.write(frame, promise: nil) }
        sink.stats.add(\.messagesSent, pending.count)
        channel.flush()
        if channel.isWritable { releaseWaiters() }
    }

    private func write(_ payload: Envelope.Payload, on channel: any Channel) {
        guard let frame = try? FrameCodec().encode(Envelope(epoch: 0, from: me(), payload: payload)) else { return }
        channel.writeAndFlush(ByteBuffer(bytes: frame), promise: nil)
    }

    /// An authentication answer arrived on `channel` (from its FrameHandler, on our loop).
    func authentication(_ payload: Envelope.Payload, on channel: any Channel) {
        loop.preconditionInEventLoop()
        guard case .authenticating(let current, var authenticatee, let pending, let bytes) = state, current === channel else { return }
        switch authenticatee.handle(payload) {
        case .send(let answer):
            state = .authenticating(channel, authenticatee, pending: pending, bytes: bytes)
            write(answer, on: channel)
        case .authenticated:
            logger.debug("authenticated to peer", metadata: ["peer": "\(endpoint)", "principal": "\(authenticatee.credential.principal)"])
            becomeConnected(channel, pending)
        case .failed(let reason):
            state = .idle
            sink.stats.add(\.messagesDropped, pending.count)
            logger.error("\(reason); dropped \(pending.count) message(s)", metadata: ["peer": "\(endpoint)"])
            channel.close(promise: nil)
            releaseWaiters()
            sink.event(.linkBroken(peer: endpoint.description, reason: reason))
        case .ignore:
            break
        }
    }

    fileprivate func writabilityChanged(_ channel: any Channel) {
        if channel.isWritable { releaseWaiters() }
    }

    fileprivate func inactive(_ channel: any Channel) {
        switch state {
        case .connected(let current) where current === channel: break
        case .authenticating(let current, _, let pending, _) where current === channel:
            sink.stats.add(\.messagesDropped, pending.count)
        default: return
        }
        state = .idle
        releaseWaiters()
        logger.info("link to peer closed", metadata: ["peer": "\(endpoint)"])
        sink.event(.linkBroken(peer: endpoint.description, reason: "connection closed"))
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
