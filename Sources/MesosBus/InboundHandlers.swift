import Logging
import MesosWire
import NIOCore
import Synchronization

/// Delivers decoded envelopes to the bus's event stream and pushes back on the
/// sockets when the consumer falls behind (autoRead off above the high water mark).
final class InboundSink: Sendable {
    private struct State {
        var pending = 0
        var paused: [ObjectIdentifier: any Channel] = [:]
        var tickWaiting = false
    }
    private let state = Mutex(State())
    private let continuation: AsyncStream<BusEvent>.Continuation
    private let high: Int
    private let low: Int
    let stats: BusStatsCounter

    init(continuation: AsyncStream<BusEvent>.Continuation, high: Int, low: Int, stats: BusStatsCounter) {
        self.continuation = continuation
        self.high = high
        self.low = low
        self.stats = stats
    }

    func deliver(_ envelope: Envelope, peer: PeerIdentity, on channel: any Channel) {
        stats.add(\.messagesReceived)
        let pause = state.withLock { s -> Bool in
            s.pending += 1
            guard s.pending >= high else { return false }
            s.paused[ObjectIdentifier(channel)] = channel
            return true
        }
        if pause {
            stats.add(\.readsPaused)
            channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
        continuation.yield(.message(Inbound(envelope, peer: peer)))
    }

    func consumed() {
        let resume = state.withLock { s -> [any Channel] in
            s.pending -= 1
            guard s.pending <= low, !s.paused.isEmpty else { return [] }
            defer { s.paused.removeAll() }
            return Array(s.paused.values)
        }
        for channel in resume { channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
    }

    func event(_ event: BusEvent) { continuation.yield(event) }

    /// One tick at most waits in the stream: a consumer that fell behind gets one, not a backlog.
    func tick() {
        let yield = state.withLock { s -> Bool in
            defer { s.tickWaiting = true }
            return !s.tickWaiting
        }
        if yield { continuation.yield(.tick) }
    }

    func tickTaken() { state.withLock { $0.tickWaiting = false } }
    func finish() { continuation.finish() }
}

/// Frames in, envelopes out. Bad input (oversized, empty, malformed frame, a partial frame
/// that stalls) closes this connection only, with the reason logged. On an accepted connection it
/// also runs the accepting side of authentication; on a link, authentication answers go to the link.
final class FrameHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    enum Side {
        case accepted(Authenticator, me: @Sendable () -> String)
        case link(Link)
    }

    private var decoder: FrameDecoder
    private var side: Side
    private let sink: InboundSink
    private let logger: Logger
    private let partialFrameTimeout: TimeAmount
    private var rejected = false

    init(codec: FrameCodec, side: Side, sink: InboundSink, logger: Logger, partialFrameTimeout: TimeAmount) {
        self.decoder = FrameDecoder(codec: codec)
        self.side = side
        self.sink = sink
        self.logger = logger
        self.partialFrameTimeout = partialFrameTimeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !rejected else { return }
        let buffer = unwrapInboundIn(data)
        decoder.append(buffer.readableBytesView)
        do {
            while !rejected, let envelope = try decoder.next() { route(envelope, context) }
        } catch {
            reject(context, reason: error.description, cause: error.cause)
        }
    }

    private func route(_ envelope: Envelope, _ context: ChannelHandlerContext) {
        switch side {
        case .accepted(var authenticator, let me):
            let outcome = authenticator.handle(envelope)
            side = .accepted(authenticator, me: me)
            switch outcome {
            case .deliver: sink.deliver(envelope, peer: PeerIdentity(principal: authenticator.principal), on: context.channel)
            case .answer(nil): break
            case .answer(let payload?): answer(payload, from: me(), context)
            case .refuse(let payload, let reason, let cause):
                answer(payload, from: me(), context)
                reject(context, reason: reason, cause: cause)
            }
        case .link(let link):
            if let payload = envelope.payload, payload.isAuthentication {
                link.authentication(payload, on: context.channel)
            } else {
                sink.deliver(envelope, peer: .unauthenticated, on: context.channel)
            }
        }
    }

    private func answer(_ payload: Envelope.Payload, from me: String, _ context: ChannelHandlerContext) {
        guard let frame = try? FrameCodec().encode(Envelope(epoch: 0, from: me, payload: payload)) else { return }
        context.writeAndFlush(NIOAny(ByteBuffer(bytes: frame)), promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            if case .accepted = side { sink.stats.add(\.idleChecks) }
            if decoder.bufferedBytes > 0 {
                reject(context, reason: "partial frame (\(decoder.bufferedBytes) bytes) stalled for \(partialFrameTimeout.nanoseconds / 1_000_000) ms", cause: "partial_frame_stalled")
            } else if case .accepted(let authenticator, _) = side, !authenticator.isSatisfied {
                reject(context, reason: "peer did not authenticate within \(partialFrameTimeout.nanoseconds / 1_000_000) ms", cause: "authentication_timeout")
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error, closing", metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"])
        context.close(promise: nil)
    }

    private func reject(_ context: ChannelHandlerContext, reason: String, cause: String) {
        rejected = true
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
    var isAuthentication: Bool {
        switch self {
        case .authenticate, .authenticationChallenge, .authenticationResponse, .authenticationResult: true
        default: false
        }
    }
}
