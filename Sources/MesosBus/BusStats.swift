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
    /// Connects tried again later because this process was out of file descriptors (the link
    /// kept its queue; after `connectTimeout` of that the connect fails).
    public var connectsDeferred = 0
    /// Of `messagesDropped`: dropped because their link's queue was full.
    public var droppedQueueFull = 0
    /// Links closed because the peer stopped reading for `writeTimeout`.
    public var linksStalled = 0
    /// Idle links closed and forgotten.
    public var linksEvicted = 0
    public var connectionsAccepted = 0
    /// Stall checks of accepted connections that came due while one waited on its peer (a
    /// partial frame, or proof of identity still to come): each closes the connection only when
    /// nothing came for `partialFrameTimeout`.
    public var idleChecks = 0
    /// `send` calls that waited for a link's backlog to drain (back-pressure on the sender).
    public var sendsHeldBack = 0
    /// Times reading was paused because the consumer fell behind (back-pressure on the sockets).
    public var readsPaused = 0
    /// TLS handshakes completed (accepted and outbound) whose peer passed the role check.
    public var tlsHandshakes = 0
    /// Accepted plaintext connections where TLS is on (`LIBPROCESS_SSL_SUPPORT_DOWNGRADE`).
    public var plaintextDowngrades = 0
    /// Offerer: links that write over the peer's own connection (a claimed return route).
    public var returnRoutesAdopted = 0
    /// Offerer: links that write over the peer's own connection from the start, its source address
    /// being the peer's pid (`linksFromListeningPort`; no offer, no connection of ours).
    public var returnRoutesBySource = 0
    /// Links whose connect from the listening port found that address pair taken (an earlier
    /// connection to the same peer in TIME_WAIT) and connected from an ephemeral port instead.
    public var linkSourcePortsTaken = 0
    /// Offerer: offers declined, or not answered within `returnRouteTimeout` (the link kept its own connection).
    public var returnRoutesDeclined = 0
    /// Peer: offers claimed on this bus's own link to the offerer.
    public var returnRoutesClaimed = 0
    /// Offerer: claims naming no offer outstanding (late, repeated or forged), ignored.
    public var returnRouteClaimsUnknown = 0

    public init() {}
}

final class BusStatsCounter: Sendable {
    private let stats = Mutex(BusStats())
    func add(_ field: WritableKeyPath<BusStats, Int>, _ n: Int = 1) { stats.withLock { $0[keyPath: field] += n } }
    var snapshot: BusStats { stats.withLock { $0 } }
}
