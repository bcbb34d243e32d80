/// What `MasterCore` is configured with. Defaults are Mesos's (`mesos-master --help`).
public struct MasterSettings: Sendable, Hashable {
    /// `--agent_ping_timeout` (15secs): time between health-check pings to an agent; one
    /// unanswered ping counts one timeout.
    public var agentPingTimeout: Duration = .seconds(15)
    /// `--max_agent_ping_timeouts` (5): consecutive unanswered pings after which an agent is
    /// removed and its tasks are LOST.
    public var maxAgentPingTimeouts = 5
    /// `--allocation_interval` (1secs): how often resources are offered.
    public var allocationInterval: Duration = .seconds(1)
    /// `--agent_reregister_timeout` (10mins): after a failover, agents of the registry that have
    /// not re-registered by then are removed.
    public var agentReregisterTimeout: Duration = .seconds(600)
    /// `--max_completed_frameworks` (50): removed frameworks kept for `/master/state`.
    public var maxCompletedFrameworks = 50
    /// Removed framework ids kept in the registry, so that no leader lets them register again.
    public var maxRemovedFrameworkIDs = 1000
    /// Pids of removed agents remembered (to answer their messages with a shutdown), oldest
    /// forgotten first.
    public var maxRemovedAgentPIDs = 100_000
    /// `--agent_removal_rate_limit` (`--slave_removal_rate_limit`; unset: no limit): removals of
    /// agents that missed their health checks are spaced `interval` apart.
    public var agentRemovalRateLimit: RemovalRateLimit?
    /// `--recovery_agent_removal_limit` (100%), as a fraction: after a failover, when more than
    /// this share of the registry's agents did not re-register within `agentReregisterTimeout`,
    /// the master exits instead of removing them (the next leader tries again).
    public var recoveryAgentRemovalLimit: Double = 1.0
    /// `--registry_gc_interval` (15mins): how often removed agents are pruned from the registry.
    public var registryGCInterval: Duration = .seconds(15 * 60)
    /// `--registry_max_agent_age` (2weeks): removed agents older than this are forgotten.
    public var registryMaxAgentAge: Duration = .seconds(14 * 86_400)
    /// `--registry_max_agent_count` (102400): removed agents kept at most (oldest forgotten first).
    public var registryMaxAgentCount = 102_400
    /// Peers prove their role (TLS certificates, `urn:mesos:role:`): agents' messages are acted on
    /// only from connections proven as agents, schedulers' only from ones proven as schedulers.
    /// Set when TLS is on without downgrade (`LIBPROCESS_SSL_*`).
    public var requirePeerRoles = false
    /// Registrations held while the registry is recovered, in bytes of their frames
    /// (`RecoveryBacklog`; 10,000 agents re-registering with a few tasks each send about 20 MB).
    /// Above it they are dropped, as Mesos drops them all, and their senders retry on their backoff.
    public var recoveryBacklogLimit = 64 * 1024 * 1024
    public init() {}
}

/// `N/DURATION` (Mesos's `--slave_removal_rate_limit`, e.g. `1/20mins`): at most `permits`
/// removals per `duration`, evenly spaced.
public struct RemovalRateLimit: Sendable, Hashable, CustomStringConvertible {
    public let permits: Int
    public let duration: Duration

    /// nil unless `permits` >= 1 and `duration` > 0.
    public init?(permits: Int, per duration: Duration) {
        guard permits >= 1, duration > .zero else { return nil }
        self.permits = permits
        self.duration = duration
    }

    /// The spacing of removals.
    public var interval: Duration { duration / permits }
    public var description: String { "\(permits)/\(duration)" }
}
