import Synchronization

/// One HTTP/1.1 request read from the bus's port (see `ProtocolSniffer`), whole: head and body.
public struct HTTPRequest: Sendable {
    public var method: String
    /// As sent: path and query, e.g. `/master/state?jsonp=cb`.
    public var uri: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The client's address ("ip:port"), for logs.
    public var peer: String

    public init(method: String, uri: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [], peer: String = "?") {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.peer = peer
    }

    /// The path without the query.
    public var path: String { String(uri.prefix { $0 != "?" }) }
    /// What follows `?`, nil without one.
    public var query: String? { uri.firstIndex(of: "?").map { String(uri[uri.index(after: $0)...]) } }

    /// The first header of that name (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// The answer to an `HTTPRequest`; `Content-Length` and `Connection` are added by the server.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// A response that stays open: its head goes out at once (chunked, no `Content-Length`),
    /// then each chunk sent to the stream, until the stream or the connection ends.
    public var stream: HTTPResponseStream?

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [], stream: HTTPResponseStream? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
    }

    /// A plain-text answer (`text/plain; charset=utf-8`), as libprocess writes its errors.
    public static func text(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(text.utf8))
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// What answers HTTP on a bus's port. A daemon makes one before its bus (it goes into
/// `BusConfiguration.http`) and sets the responder once it can answer; until then every request
/// gets 503.
public final class HTTPService: Sendable {
    public typealias Responder = @Sendable (HTTPRequest) async -> HTTPResponse

    /// Headers (names and values) beyond this many bytes: 431 and the connection is closed.
    public let maxHeaderBytes: Int
    /// Bodies beyond this many bytes: 413 and the connection is closed.
    public let maxBodyBytes: Int
    private let responder = Mutex<Responder?>(nil)

    public init(maxHeaderBytes: Int = 16 * 1024, maxBodyBytes: Int = 1024 * 1024) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }

    public func serve(_ responder: @escaping Responder) {
        self.responder.withLock { $0 = responder }
    }

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        guard let responder = responder.withLock({ $0 }) else { return .text(503, "Not serving yet") }
        return await responder(request)
    }
}

/// The body of a streaming response (`HTTPResponse.stream`), written by the daemon and carried
/// out by the connection. Chunks sent before the connection takes the stream wait for it. A
/// client that does not read loses its own stream: beyond `maxPendingBytes` unwritten, the
/// connection is closed. `onClose` runs once, when the stream ends for any reason (the
/// daemon's `finish`, the client closing, a failed write).
public final class HTTPResponseStream: Sendable {
    public let maxPendingBytes: Int
    private struct State {
        var buffered: [[UInt8]] = []
        var writer: (@Sendable ([UInt8]) -> Void)?
        var finisher: (@Sendable () -> Void)?
        var pendingBytes = 0
        var ended = false
        var onClose: (@Sendable () -> Void)?
    }
    private let state: Mutex<State>

    public init(maxPendingBytes: Int = 8 * 1024 * 1024, onClose: @escaping @Sendable () -> Void) {
        self.maxPendingBytes = maxPendingBytes
        state = Mutex(State(onClose: onClose))
    }

    /// Queues one chunk; false once the stream has ended (or just ended for a client too slow).
    @discardableResult
    public func send(_ chunk: [UInt8]) -> Bool {
        enum Step { case write(@Sendable ([UInt8]) -> Void), buffered, ended, tooSlow }
        let step: Step = state.withLock { s in
            guard !s.ended else { return .ended }
            s.pendingBytes += chunk.count
            if s.pendingBytes > maxPendingBytes { return .tooSlow }
            if let writer = s.writer { return .write(writer) }
            s.buffered.append(chunk)
            return .buffered
        }
        switch step {
        case .write(let writer):
            writer(chunk)
            return true
        case .buffered: return true
        case .ended: return false
        case .tooSlow:
            finish()
            return false
        }
    }

    /// Ends the stream: the connection writes the chunks queued so far, ends the response and closes.
    public func finish() {
        let (finisher, onClose) = state.withLock { s -> ((@Sendable () -> Void)?, (@Sendable () -> Void)?) in
            guard !s.ended else { return (nil, nil) }
            s.ended = true
            defer { s.onClose = nil }
            return (s.finisher, s.onClose)
        }
        finisher?()
        onClose?()
    }

    public var isEnded: Bool { state.withLock { $0.ended } }

    /// The connection takes the stream: chunks buffered so far go to `writer` now, later ones as
    /// they come; `finisher` ends the response.
    func attach(writer: @escaping @Sendable ([UInt8]) -> Void, finisher: @escaping @Sendable () -> Void) {
        let (buffered, ended) = state.withLock { s -> ([[UInt8]], Bool) in
            s.writer = writer
            s.finisher = finisher
            defer { s.buffered = [] }
            return (s.buffered, s.ended)
        }
        for chunk in buffered { writer(chunk) }
        if ended { finisher() }
    }

    /// `bytes` of the queued chunks are written.
    func written(_ bytes: Int) { state.withLock { $0.pendingBytes -= bytes } }

    /// The connection is gone.
    func connectionClosed() { finish() }
}

extension Credential {
    /// Whether `secret` is this credential's secret (HTTP Basic authentication); constant time in
    /// the secret's length.
    public func matches(secret: String) -> Bool {
        let given = Array(secret.utf8)
        guard given.count == self.secret.count else { return false }
        return zip(given, self.secret).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
