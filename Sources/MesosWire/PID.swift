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
        guard text.utf8.count <= Self.maxLength else { return nil }
        // Every message's sender is parsed: printable ASCII (the usual case) is parsed on its bytes.
        // The general path below looked up Unicode properties per scalar and walked Characters,
        // which showed up in a profile of a master with 10,000 agents.
        guard let pid = Self.printableASCII(text) ?? Self.parsedScalars(text) else { return nil }
        self = pid
    }

    /// The general parse, for any text (`init` takes it for text that is not printable ASCII).
    static func parsedScalars(_ text: String) -> PID? {
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
        return PID(name: name, host: host, port: port)
    }

    /// `text` parsed when it is all printable ASCII (no whitespace, no control characters), with
    /// the answer `parsedScalars` gives; nil (not `.some(nil)`) when it is not all printable ASCII.
    static func printableASCII(_ text: String) -> PID?? {
        var text = text
        return text.withUTF8 { bytes -> PID?? in
            var at = -1, colon = -1
            for (i, b) in bytes.enumerated() {
                guard b >= 0x21 && b <= 0x7E else { return nil }
                if b == UInt8(ascii: "@") { at = i; colon = -1 } else if b == UInt8(ascii: ":") { colon = i }
            }
            guard at > 0 else { return .some(nil) }
            let name = String(decoding: UnsafeBufferPointer(rebasing: bytes[..<at]), as: UTF8.self)
            var hostStart = at + 1
            let hostEnd: Int, portStart: Int
            if hostStart < bytes.count, bytes[hostStart] == UInt8(ascii: "[") {  // [IPv6]:port
                guard let close = bytes[hostStart...].firstIndex(of: UInt8(ascii: "]")), close + 1 < bytes.count,
                    bytes[close + 1] == UInt8(ascii: ":")
                else { return .some(nil) }
                hostStart += 1
                hostEnd = close
                portStart = close + 2
            } else {
                guard colon > at else { return .some(nil) }
                hostEnd = colon
                portStart = colon + 1
            }
            guard hostEnd > hostStart, portStart <= bytes.count,
                let port = Int(String(decoding: UnsafeBufferPointer(rebasing: bytes[portStart...]), as: UTF8.self)), (1...65535).contains(port)
            else { return .some(nil) }
            let host = String(decoding: UnsafeBufferPointer(rebasing: bytes[hostStart..<hostEnd]), as: UTF8.self)
            return .some(PID(name: name, host: host, port: port))
        }
    }

    public var description: String {
        host.utf8.contains(UInt8(ascii: ":")) ? "\(name)@[\(host)]:\(port)" : "\(name)@\(host):\(port)"
    }

    /// The same process address with another name (one socket serves many named processes).
    public func named(_ other: String) -> PID { PID(name: other, host: host, port: port) }

    /// The transport address, "host:port" ("[v6]:port"): links are per endpoint, whatever the process name.
    public var endpoint: String { host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
