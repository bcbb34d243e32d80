import FaultProxy
import Foundation

/// An HTTP/1.1 answer as a raw client read it.
public struct HTTPAnswer: Sendable, CustomStringConvertible {
    public let status: Int
    /// Header names in lower case.
    public let headers: [String: String]
    public let body: String

    /// The body as a JSON object, nil if it is none.
    public var object: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] }
    public var description: String { "\(status) \(headers) \(body.prefix(300))" }
}

/// A bare HTTP client over a loopback socket (no URLSession: it would follow redirects and
/// pool connections): one request per connection, `Connection: close`, read to the end.
public enum HTTPProbe {
    /// Runs blocking socket calls on a thread of their own: daemons in this process answer on
    /// the cooperative pool, which a blocked test must not hold.
    public static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    public static func request(
        port: Int, _ method: String = "GET", _ path: String, body: String = "", headers: [String: String] = [:], timeout: Duration = .seconds(10)
    ) async throws -> HTTPAnswer {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { text += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + body
        let request = text
        let raw = try await blocking {
            let socket = try Loopback.Socket(connectingTo: port)
            try socket.write(request)
            return try socket.readToEnd(timeout: timeout)
        }
        return try parse(String(decoding: raw, as: UTF8.self))
    }

    public static func get(port: Int, _ path: String) async throws -> HTTPAnswer { try await request(port: port, "GET", path) }

    static func parse(_ raw: String) throws -> HTTPAnswer {
        guard let end = raw.range(of: "\r\n\r\n") else { throw HTTPProbeError("no HTTP head in \(raw.prefix(200))") }
        let lines = raw[..<end.lowerBound].components(separatedBy: "\r\n")
        let statusLine = lines.first?.split(separator: " ") ?? []
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            throw HTTPProbeError("bad status line: \(lines.first ?? "")")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPAnswer(status: status, headers: headers, body: String(raw[end.upperBound...]))
    }
}

public struct HTTPProbeError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
