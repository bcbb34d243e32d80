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
    public init() {}
}
