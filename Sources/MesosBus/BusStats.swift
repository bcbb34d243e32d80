import Synchronization

/// Counters a daemon exposes and tests assert on.
public struct BusStats: Sendable, Hashable {
    public var messagesSent = 0
    public var messagesReceived = 0
    /// Messages dropped because their peer was unreachable or the link broke before sending.
    public var messagesDropped = 0
    /// Connections closed because the peer sent bad input.
    public var connectionsRejected = 0
    public var connectsFailed = 0
}

final class BusStatsCounter: Sendable {
    private let stats = Mutex(BusStats())
    func add(_ field: WritableKeyPath<BusStats, Int>, _ n: Int = 1) { stats.withLock { $0[keyPath: field] += n } }
    var snapshot: BusStats { stats.withLock { $0 } }
}
