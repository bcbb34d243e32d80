import Foundation
import MesosWire
import NIOCore
import TestSupport
import Testing
@testable import MesosBus

/// One port, two protocols: frames and HTTP/1.1 on a bus's listening port, told apart by the
/// first byte; bad HTTP input closes only its own connection, with `event=http_rejected`.
@Suite(.timeLimit(.minutes(3))) struct HTTPSniffingTests {
    /// A bus that answers every request with its method and path, and one more bus to send frames from.
    static func withServer(timeout: TimeAmount = .seconds(10), _ body: (MessageBus, MessageBus, CapturedLogs) async throws -> Void) async throws {
        let logs = CapturedLogs()
        let service = HTTPService()
        service.serve { request in .text(request.path == "/missing" ? 404 : 200, "\(request.method) \(request.path) \(request.body.count)") }
        var config = BusConfiguration.test
        config.http = service
        config.partialFrameTimeout = timeout
        let server = MessageBus(configuration: config, logger: logs.logger("server"))
        try await server.start(name: "master")
        let client = MessageBus(configuration: .test)
        try await client.start(name: "slave(1)")
        do { try await body(server, client, logs) } catch {
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown(); await server.shutdown()
    }

    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T { try await HTTPProbe.blocking(body) }

    /// Sends `request` on a new connection and reads the whole answer (the server closes: `Connection: close`).
    static func exchange(_ port: Int, _ request: String) async throws -> String {
        try await blocking {
            let socket = try RawSocket(port: port)
            try socket.write(request)
            return String(decoding: try socket.readToEnd(timeout: .seconds(5)), as: UTF8.self)
        }
    }

    static func readAll(_ socket: RawSocket) async throws -> String {
        try await blocking { String(decoding: try socket.readToEnd(timeout: .seconds(5)), as: UTF8.self) }
    }

    static func get(_ path: String) -> String { "GET \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n" }

    /// A frame sent by `client` arrives at `server` (the frame side of the port still works).
    static func frameArrives(_ client: MessageBus, _ server: MessageBus, epoch: UInt64) async throws {
        try await client.send(.pong(PongAgentMessage()), epoch: epoch, to: server.pid!)
        for await event in server.events {
            if case .message(let inbound) = event, inbound.envelope.epoch == epoch { return }
        }
        Issue.record("no frame arrived")
    }

    @Test func theFirstByteTellsFramesFromHTTP() {
        let max = FrameCodec.defaultMaxFrameSize
        for method in ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            #expect(WireProtocol.sniff(firstByte: Array(method.utf8)[0], maxFrameSize: max) == .http, "\(method)")
        }
        // Frame headers: the top byte of a length up to 16 MiB is 0 or 1.
        for length in [1, 255, 65_536, max] {
            #expect(WireProtocol.sniff(firstByte: UInt8(length >> 24), maxFrameSize: max) == .frames, "\(length)")
        }
        #expect(WireProtocol.sniff(firstByte: UInt8(ascii: "g"), maxFrameSize: max) == .frames, "not a method: a frame error")
        #expect(WireProtocol.sniff(firstByte: UInt8(ascii: "G"), maxFrameSize: Int(UInt32.max)) == .frames, "frames of 1 GiB and more: frames only")
    }

    @Test func framesAndHTTPShareOnePort() async throws {
        try await Self.withServer { server, client, _ in
            let port = server.pid!.port
            try await Self.frameArrives(client, server, epoch: 1)
            let answer = try await Self.exchange(port, Self.get("/health"))
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
            #expect(answer.hasSuffix("GET /health 0"))
            let head = try await Self.exchange(port, "HEAD /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: 14\r\n") && head.hasSuffix("\r\n\r\n"), "HEAD: no body: \(head)")
            let missing = try await Self.exchange(port, Self.get("/missing"))
            #expect(missing.hasPrefix("HTTP/1.1 404"), "\(missing)")
            let post = try await Self.exchange(port, "POST /master/teardown HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5\r\n\r\nab=cd")
            #expect(post.hasSuffix("POST /master/teardown 5"), "\(post)")
            try await Self.frameArrives(client, server, epoch: 2)
            #expect(server.statistics.connectionsRejected == 0)
        }
    }

    @Test func keptAliveConnectionsArePipelinedInOrder() async throws {
        try await Self.withServer { server, _, _ in
            let socket = try RawSocket(port: server.pid!.port)
            try socket.write("GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\nGET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            let all = try await Self.readAll(socket)
            let order = ["GET /a 0", "GET /b 0", "GET /c 0"].map { all.range(of: $0)?.lowerBound }
            #expect(order.allSatisfy { $0 != nil } && order.map { $0! } == order.map { $0! }.sorted(), "\(all)")
        }
    }

    @Test func aMalformedRequestClosesOnlyItsConnection() async throws {
        try await Self.withServer { server, client, logs in
            let port = server.pid!.port
            let other = try RawSocket(port: port)  // a second client, mid-way through its request
            try other.write("GET /health HTTP/1.1\r\nHost: t\r\n")
            let answer = try await Self.exchange(port, "GET / HTTP/1.1\r\nthis is no header\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
            #expect(logs.lines.withLock { $0.contains { $0.contains("http_rejected") && $0.contains("malformed_request") } })
            try other.write("Connection: close\r\n\r\n")
            let served = try await Self.readAll(other)
            #expect(served.hasSuffix("GET /health 0"), "the other client is served: \(served)")
            try await Self.frameArrives(client, server, epoch: 3)
        }
    }

    @Test func hugeHeadersAreRefused() async throws {
        try await Self.withServer { server, _, logs in
            let port = server.pid!.port
            // Over our limit (16 KiB) but within the parser's: 431 from the handler.
            let big = try await Self.exchange(port, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: \(String(repeating: "a", count: 20_000))\r\n\r\n")
            #expect(big.hasPrefix("HTTP/1.1 431"), "\(big.prefix(80))")
            // Far over (1 MiB of headers, never ending): the parser gives up; the connection is closed.
            let socket = try RawSocket(port: port)
            let flood = "GET / HTTP/1.1\r\nHost: t\r\n" + String(repeating: "X-Filler: \(String(repeating: "b", count: 1000))\r\n", count: 1000)
            _ = try? await Self.blocking { try socket.write(flood) }  // the server may close before it is all sent
            _ = try? await Self.readAll(socket)
            let causes = logs.lines.withLock { $0.filter { $0.contains("http_rejected") } }
            #expect(causes.contains { $0.contains("headers_too_large") }, "\(causes)")
            #expect(causes.contains { $0.contains("header_overflow") }, "\(causes)")
            #expect(try await Self.exchange(port, Self.get("/after")).hasSuffix("GET /after 0"))
        }
    }

    @Test func aSlowClientIsClosedAfterTheRequestTimeout() async throws {
        try await Self.withServer(timeout: .seconds(1)) { server, client, logs in
            let port = server.pid!.port
            let slow = try RawSocket(port: port)
            try slow.write("GET /slow HTTP/1.1\r\nHost: t\r\n")  // and never the blank line
            #expect(try await Self.blocking { slow.closedByPeer(within: .seconds(5)) }, "the slow client is closed")
            #expect(logs.lines.withLock { $0.contains { $0.contains("http_rejected") && $0.contains("request_timeout") } })
            #expect(try await Self.exchange(port, Self.get("/fast")).hasSuffix("GET /fast 0"))
            try await Self.frameArrives(client, server, epoch: 4)
        }
    }

    @Test func aBodyOverTheLimitIsRefused() async throws {
        try await Self.withServer { server, _, logs in
            let answer = try await Self.exchange(server.pid!.port, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer)")
            #expect(logs.lines.withLock { $0.contains { $0.contains("http_rejected") && $0.contains("body_too_large") } })
        }
    }
}

/// On a bus that requires credentials, an HTTP connection is not the frame handler's to judge:
/// once the sniffer takes the frame handler out, its proof-of-identity check does nothing.
@Suite(.timeLimit(.minutes(3))) struct HTTPWithCredentialsTests {
    @Test func aKeptAliveHTTPConnectionIsNotRejectedForNeverAuthenticating() async throws {
        let logs = CapturedLogs()
        let service = HTTPService()
        service.serve { request in .text(200, "\(request.method) \(request.path)") }
        var config = BusConfiguration.test
        config.http = service
        config.requiredCredentials = [Credential(principal: "agent", secret: "s")]
        // Long enough for a loaded machine to answer the request before its own deadline (the
        // HTTP side's request timeout is the same setting).
        config.partialFrameTimeout = .seconds(2)
        let server = MessageBus(configuration: config, logger: logs.logger("server"))
        try await server.start(name: "master")
        let port = server.pid!.port
        let answer = try await HTTPProbe.blocking { () -> String in
            let http = try RawSocket(port: port)
            try http.write("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")  // kept alive
            guard case .data(let bytes) = http.read(4096, timeout: .seconds(30)) else { return "" }
            // A frames connection opened after the HTTP one that stalls in its first frame: its
            // rejection shows that the HTTP connection's time to authenticate has passed too.
            let stalled = try RawSocket(port: port)
            try stalled.write([0, 0, 0, 100, 1, 2, 3])
            _ = stalled.closedByPeer(within: .seconds(30))
            _ = http  // open until here
            return String(decoding: bytes, as: UTF8.self)
        }
        await server.shutdown()
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        #expect(server.statistics.connectionsRejected == 1, "only the stalled frames connection: \(logs.all)")
        #expect(logs.lines.withLock { $0.contains { $0.contains("partial_frame_stalled") } })
        #expect(!logs.lines.withLock { $0.contains { $0.contains("authentication_timeout") } }, "\(logs.all)")
    }
}
