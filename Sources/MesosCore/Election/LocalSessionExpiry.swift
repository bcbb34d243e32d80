/// The local half of ZooKeeper session expiry. A client disconnected for the whole negotiated
/// session timeout counts its session as expired: the servers have expired it by then, but the C
/// client only learns that when it reconnects, which a partitioned client never does. Without this,
/// a master cut from ZooKeeper would go on leading (and an agent on following) indefinitely.
///
/// Pure: the shell reports connects and disconnects with its clock's time, arms a timer for the
/// `Deadline` it gets, and asks `isDue` when the timer fires (a reconnect meanwhile cancels it).
public struct LocalSessionExpiry: Sendable, Hashable {
    public struct Deadline: Sendable, Hashable {
        public let at: Duration
        let generation: UInt64
    }

    /// The timeout the server granted (before the first connect: the one asked for).
    public private(set) var timeout: Duration
    public private(set) var disconnectedSince: Duration?
    private var generation: UInt64 = 0

    public init(requestedTimeout: Duration) { timeout = requestedTimeout }

    public mutating func connected(negotiatedTimeout: Duration) {
        timeout = negotiatedTimeout
        disconnectedSince = nil
        generation &+= 1
    }

    /// A disconnect at `now`; repeated disconnects keep the first one's deadline.
    public mutating func disconnected(at now: Duration) -> Deadline {
        let since = disconnectedSince ?? now
        if disconnectedSince == nil {
            disconnectedSince = now
            generation &+= 1
        }
        return Deadline(at: since + timeout, generation: generation)
    }

    /// Whether the session now counts as expired for `deadline` (false when reconnected since).
    public func isDue(_ deadline: Deadline, now: Duration) -> Bool {
        deadline.generation == generation && disconnectedSince != nil && now >= deadline.at
    }

    /// The session is gone (locally or as the server said): the next connect starts a new one.
    public mutating func expired() {
        disconnectedSince = nil
        generation &+= 1
    }
}
