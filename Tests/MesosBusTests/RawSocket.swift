@testable import MesosBus
import TestSupport

/// A bare blocking TCP client for playing a misbehaving peer: FaultProxy's `Loopback.Socket`,
/// under the name and with the millisecond timeout AuthenticationTests use.
typealias RawSocket = Loopback.Socket

extension Loopback.Socket {
    convenience init(port: Int) throws { try self.init(connectingTo: port) }

    func closedByPeer(timeoutMs: Int32) -> Bool { closedByPeer(within: .milliseconds(timeoutMs)) }
}

extension BusConfiguration {
    /// The default configuration with a connect timeout a loaded test machine cannot miss: a
    /// connect that times out drops the message a test then waits for (no test here measures it).
    static var test: BusConfiguration {
        var configuration = BusConfiguration()
        configuration.connectTimeout = .seconds(30)
        return configuration
    }
}
