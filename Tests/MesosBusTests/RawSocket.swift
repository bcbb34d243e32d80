import TestSupport

/// A bare blocking TCP client for playing a misbehaving peer: FaultProxy's `Loopback.Socket`,
/// under the name and with the millisecond timeout AuthenticationTests use.
typealias RawSocket = Loopback.Socket

extension Loopback.Socket {
    convenience init(port: Int) throws { try self.init(connectingTo: port) }

    func closedByPeer(timeoutMs: Int32) -> Bool { closedByPeer(within: .milliseconds(timeoutMs)) }
}
