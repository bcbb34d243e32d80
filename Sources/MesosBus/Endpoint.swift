import MesosWire

/// A transport address: links are per host:port, whatever the process name.
struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    var host: String
    var port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init(_ pid: PID) { self.init(host: pid.host, port: pid.port) }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
