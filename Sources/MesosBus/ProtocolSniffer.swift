import Logging
import NIOCore
import NIOHTTP1

/// What an accepted connection speaks, told by its first byte.
public enum WireProtocol: Sendable, Equatable {
    case frames
    case http

    /// A frame starts with the top byte of its big-endian length (at most `maxFrameSize`); an
    /// HTTP/1.1 request with its method ("GET", "POST", ...), an uppercase ASCII letter. Read as a
    /// length's top byte such a letter announces at least 1 GiB (0x41 << 24), more than any frame a
    /// bus takes, so the two never overlap; a bus configured for larger frames speaks frames only.
    public static func sniff(firstByte: UInt8, maxFrameSize: Int) -> WireProtocol {
        let methodStart = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(firstByte)
        return methodStart && Int(firstByte) << 24 > maxFrameSize ? .http : .frames
    }
}

/// First in an accepted connection's pipeline when the bus serves HTTP: on the first bytes it
/// leaves the frame handlers behind it as they are (frames), or replaces them with an HTTP/1.1
/// pipeline (NIOHTTP1's decoder and encoder, `HTTPConnectionHandler`); then it steps out.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let service: HTTPService
    private let maxFrameSize: Int
    private let requestTimeout: TimeAmount
    private let frameHandlers: [any RemovableChannelHandler]
    private let logger: Logger
    private let stats: BusStatsCounter

    init(service: HTTPService, maxFrameSize: Int, requestTimeout: TimeAmount, frameHandlers: [any RemovableChannelHandler], logger: Logger, stats: BusStatsCounter) {
        self.service = service
        self.maxFrameSize = maxFrameSize
        self.requestTimeout = requestTimeout
        self.frameHandlers = frameHandlers
        self.logger = logger
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        let pipeline = context.pipeline.syncOperations
        if WireProtocol.sniff(firstByte: first, maxFrameSize: maxFrameSize) == .http {
            do {
                for handler in frameHandlers { pipeline.removeHandler(handler, promise: nil) }
                let deadline = HTTPDeadlineHandler(timeout: requestTimeout, logger: logger, stats: stats)
                try pipeline.addHandlers(
                    [
                        deadline,
                        ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)),
                        HTTPResponseEncoder(),
                        HTTPConnectionHandler(service: service, deadline: deadline, logger: logger, stats: stats),
                    ], position: .after(self))
            } catch {
                logger.warning("cannot serve HTTP: \(error)", metadata: ["event": "http_rejected", "cause": "pipeline"])
                context.close(promise: nil)
                return
            }
        }
        context.fireChannelRead(data)
        pipeline.removeHandler(context: context, promise: nil)
    }
}

extension FrameHandler: RemovableChannelHandler {}

/// Bounds the time a client takes to send a whole request: armed by its first bytes, disarmed by
/// the response; a client that has not finished in `timeout` (a slow or stalled one) is closed
/// with `event=http_rejected cause=request_timeout`. A kept-alive connection that sends nothing
/// for `timeout` after its last response is closed quietly.
final class HTTPDeadlineHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let logger: Logger
    private let stats: BusStatsCounter
    private var timer: Scheduled<Void>?
    /// Bytes of a request have arrived and its response is not written yet.
    private var inRequest = false

    init(timeout: TimeAmount, logger: Logger, stats: BusStatsCounter) {
        self.timeout = timeout
        self.logger = logger
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !inRequest {
            inRequest = true
            arm(context)
        }
        context.fireChannelRead(data)
    }

    /// The response to the current request is written: the next request gets its own `timeout`.
    func responded(_ context: ChannelHandlerContext) {
        inRequest = false
        arm(context)
    }

    /// A streaming response has begun: no deadline while it lasts (the connection ends with it).
    func streaming() {
        inRequest = false
        timer?.cancel()
        timer = nil
    }

    func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel() }
    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.expired(context)
        }
    }

    private func expired(_ context: ChannelHandlerContext) {
        if inRequest {
            stats.add(\.connectionsRejected)
            logger.warning(
                "closing HTTP connection: request not complete within \(timeout.nanoseconds / 1_000_000) ms",
                metadata: ["event": "http_rejected", "cause": "request_timeout", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        } else {
            logger.debug("closing idle HTTP connection", metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        }
        context.close(promise: nil)
    }
}

/// Requests in (head, body up to `maxBodyBytes`, end), one at a time in arrival order, answered
/// by the bus's `HTTPService`. Bad input (a malformed request, headers or a body beyond the
/// limits, too many pipelined requests) gets a 4xx with `Connection: close` when possible, and
/// closes this connection only, with `event=http_rejected cause=...` logged.
final class HTTPConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let maxPipelined = 32

    private let service: HTTPService
    private let deadline: HTTPDeadlineHandler
    private let logger: Logger
    private let stats: BusStatsCounter
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// Requests read while one is being answered (pipelining), answered in order.
    private var queued: [(HTTPRequestHead, [UInt8])] = []
    private var busy = false
    private var closing = false
    /// The response being written is a stream (`HTTPResponse.stream`); the connection ends with it.
    private var stream: HTTPResponseStream?

    init(service: HTTPService, deadline: HTTPDeadlineHandler, logger: Logger, stats: BusStatsCounter) {
        self.service = service
        self.deadline = deadline
        self.logger = logger
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, stream == nil else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            let headerBytes = h.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }
            if headerBytes > service.maxHeaderBytes {
                return reject(context, status: .requestHeaderFieldsTooLarge, cause: "headers_too_large", "\(headerBytes) bytes of headers (limit \(service.maxHeaderBytes))")
            }
            if let length = h.headers.first(name: "content-length").flatMap(Int.init), length > service.maxBodyBytes {
                return reject(context, status: .payloadTooLarge, cause: "body_too_large", "a body of \(length) bytes (limit \(service.maxBodyBytes))")
            }
            head = h
            body = []
        case .body(let chunk):
            guard head != nil else { return }
            if body.count + chunk.readableBytes > service.maxBodyBytes {
                return reject(context, status: .payloadTooLarge, cause: "body_too_large", "a body over \(service.maxBodyBytes) bytes")
            }
            body.append(contentsOf: chunk.readableBytesView)
        case .end:
            guard let h = head else { return }
            head = nil
            if queued.count >= Self.maxPipelined {
                return reject(context, status: .tooManyRequests, cause: "too_many_pipelined", "more than \(Self.maxPipelined) pipelined requests")
            }
            queued.append((h, body))
            body = []
            answerNext(context)
        }
    }

    private func answerNext(_ context: ChannelHandlerContext) {
        guard !busy, !closing, !queued.isEmpty else { return }
        busy = true
        let (head, body) = queued.removeFirst()
        let request = HTTPRequest(
            method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: body,
            peer: context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?")
        let keepAlive = head.isKeepAlive
        let version = head.version
        let headOnly = head.method == .HEAD
        let service = self.service
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        Task {
            let response = await service.respond(to: request)
            loop.execute {
                let (handler, context) = bound.value
                handler.write(response, version: version, keepAlive: keepAlive, headOnly: headOnly, context)
            }
        }
    }

    /// `headOnly` (a HEAD request): the head as for GET, without the body.
    private func write(_ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, headOnly: Bool, _ context: ChannelHandlerContext) {
        guard !closing, context.channel.isActive else {
            response.stream?.connectionClosed()
            return
        }
        if let stream = response.stream { return writeStream(response, stream, version: version, context) }
        var headers = HTTPHeaders(response.headers.map { ($0.name, $0.value) })
        headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.count)")
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !response.body.isEmpty, !headOnly {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: response.body)))), promise: nil)
        }
        busy = false
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            if queued.isEmpty { deadline.responded(contextOf: context) } else { answerNext(context) }
        } else {
            closing = true
            closeAfter(context.writeAndFlush(wrapOutboundOut(.end(nil))), context)
        }
    }

    /// A streaming response: the head at once (chunked), then each chunk of the stream as it
    /// comes, flushed; the stream's end ends the response and the connection.
    private func writeStream(_ response: HTTPResponse, _ stream: HTTPResponseStream, version: HTTPVersion, _ context: ChannelHandlerContext) {
        self.stream = stream
        deadline.streaming()
        var headers = HTTPHeaders(response.headers.map { ($0.name, $0.value) })
        headers.remove(name: "Content-Length")
        headers.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
        headers.replaceOrAdd(name: "Connection", value: "close")
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers))), promise: nil)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        stream.attach(
            writer: { chunk in
                loop.execute {
                    let (handler, context) = bound.value
                    guard handler.stream === stream, context.channel.isActive else { return }
                    let promise = loop.makePromise(of: Void.self)
                    promise.futureResult.whenComplete { result in
                        stream.written(chunk.count)
                        if case .failure = result { stream.connectionClosed() }
                    }
                    context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: chunk)))), promise: promise)
                }
            },
            finisher: {
                loop.execute {
                    let (handler, context) = bound.value
                    guard handler.stream === stream, !handler.closing else { return }
                    handler.closing = true
                    guard context.channel.isActive else { return }
                    handler.closeAfter(context.writeAndFlush(handler.wrapOutboundOut(.end(nil))), context)
                }
            })
    }

    func channelInactive(context: ChannelHandlerContext) {
        stream?.connectionClosed()
        context.fireChannelInactive()
    }

    private func closeAfter(_ write: EventLoopFuture<Void>, _ context: ChannelHandlerContext) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        write.whenComplete { _ in bound.value.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parse = error as? HTTPParserError else {
            logger.debug("HTTP connection error, closing", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        if case .headerOverflow = parse {
            reject(context, status: .requestHeaderFieldsTooLarge, cause: "header_overflow", "headers beyond the parser's limit")
        } else {
            reject(context, status: .badRequest, cause: "malformed_request", "\(parse)")
        }
    }

    private func reject(_ context: ChannelHandlerContext, status: HTTPResponseStatus, cause: String, _ reason: String) {
        guard !closing else { return }
        closing = true
        stats.add(\.connectionsRejected)
        logger.warning(
            "closing HTTP connection: \(reason)",
            metadata: ["event": "http_rejected", "cause": "\(cause)", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        guard !busy else { return context.close(promise: nil) }  // a response is on its way: no second one
        var headers = HTTPHeaders([("Content-Length", "0"), ("Connection", "close")])
        headers.replaceOrAdd(name: "Content-Type", value: "text/plain; charset=utf-8")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        closeAfter(context.writeAndFlush(wrapOutboundOut(.end(nil))), context)
    }
}

extension HTTPDeadlineHandler {
    /// `responded(_:)` for the deadline's own context (the connection handler holds only the handler).
    func responded(contextOf other: ChannelHandlerContext) {
        guard let own = try? other.pipeline.syncOperations.context(handlerType: HTTPDeadlineHandler.self) else { return }
        responded(own)
    }
}

extension ProtocolSniffer {
    /// An accepted connection's handlers: the frame handlers alone, or behind a sniffer when the
    /// bus serves HTTP too.
    static func pipeline(_ frames: [any RemovableChannelHandler], _ configuration: BusConfiguration, _ logger: Logger, _ stats: BusStatsCounter) -> [any ChannelHandler] {
        guard let http = configuration.http else { return frames }
        let sniffer = ProtocolSniffer(
            service: http, maxFrameSize: configuration.maxFrameSize, requestTimeout: configuration.partialFrameTimeout,
            frameHandlers: frames, logger: logger, stats: stats)
        return [sniffer] + frames
    }
}
