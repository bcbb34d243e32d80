/// What `AgentCore` is configured with. Defaults are Mesos's (`mesos-agent --help`).
public struct AgentSettings: Sendable, Hashable {
    /// `--registration_backoff_factor` (1secs): the first (re)registration after a leader change
    /// waits a random time in [0, factor]; each retry doubles the bound.
    public var registrationBackoffFactor: Duration = .seconds(1)
    /// Largest bound of the registration backoff (Mesos: 1mins).
    public var maxRegistrationBackoff: Duration = .seconds(60)
    /// `--status_update_retry_interval` (10secs): an unacknowledged status update is sent again
    /// after this, doubling up to `maxStatusUpdateRetryInterval`.
    public var statusUpdateRetryInterval: Duration = .seconds(10)
    /// Mesos: 10mins.
    public var maxStatusUpdateRetryInterval: Duration = .seconds(600)
    /// No ping from the leader for this long: re-register (Mesos derives it from the master's
    /// ping timeout and count: 15secs x 5 = 75secs).
    public var masterPingTimeout: Duration = .seconds(75)
    /// Act on master messages only from connections authenticated as a master (TLS roles or
    /// mutual authentication).
    public var requireMasterIdentity = false

    public init() {}

    var follower: LeaderFollower.Settings {
        LeaderFollower.Settings(backoffFactor: registrationBackoffFactor, maxBackoff: maxRegistrationBackoff, requireMasterIdentity: requireMasterIdentity)
    }
}
