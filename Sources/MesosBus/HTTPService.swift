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

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
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

extension Credential {
    /// Whether `secret` is this credential's secret (HTTP Basic authentication); constant time in
    /// the secret's length.
    public func matches(secret: String) -> Bool {
        let given = Array(secret.utf8)
        guard given.count == self.secret.count else { return false }
        return zip(given, self.secret).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
