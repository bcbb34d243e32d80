/// A process address on the bus, libprocess style: `name@host:port`
/// (e.g. `master@10.0.0.1:5050`, `slave(1)@10.0.0.2:5051`, `scheduler-1@[::1]:40000`).
public struct PID: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    public var name: String
    public var host: String
    public var port: Int

    public init(name: String, host: String, port: Int) {
        self.name = name
        self.host = host
        self.port = port
    }

    /// Longest pid text accepted from a peer.
    public static let maxLength = 512

    /// Parses `name@host:port`; nil for anything else (also over `maxLength`, or with whitespace
    /// or control characters: a pid from the network is never trusted to be printable).
    public init?(_ text: String) {
        guard text.utf8.count <= Self.maxLength, !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }),
            let at = text.lastIndex(of: "@")
        else { return nil }
        let name = String(text[..<at])
        var rest = text[text.index(after: at)...]
        let host: String
        if rest.hasPrefix("[") {  // [IPv6]:port
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            rest = rest.dropFirst()
        } else {
            guard let colon = rest.lastIndex(of: ":") else { return nil }
            host = String(rest[..<colon])
            rest = rest[rest.index(after: colon)...]
        }
        guard !name.isEmpty, !host.isEmpty, let port = Int(rest), (1...65535).contains(port),
            !text.contains(where: { $0.isWhitespace })
        else { return nil }
        self.init(name: name, host: host, port: port)
    }

    public var description: String {
        host.contains(":") ? "\(name)@[\(host)]:\(port)" : "\(name)@\(host):\(port)"
    }

    /// The same process address with another name (one socket serves many named processes).
    public func named(_ other: String) -> PID { PID(name: other, host: host, port: port) }

    /// The transport address, "host:port" ("[v6]:port"): links are per endpoint, whatever the process name.
    public var endpoint: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
