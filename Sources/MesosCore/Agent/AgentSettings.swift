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
    /// `--recover`: what a restarted agent does with the executors it finds in its checkpoint.
    public var recover = RecoverMode.reconnect
    /// `--executor_registration_timeout` (1mins): a launched executor that has not registered by
    /// then is killed and its task fails (REASON_EXECUTOR_REGISTRATION_TIMEOUT).
    public var executorRegistrationTimeout: Duration = .seconds(60)
    /// `--executor_reregistration_timeout` (2secs, at most 15secs): after a restart, how long
    /// checkpointed executors have to re-register before they are killed and their tasks are
    /// reported gone. The agent re-registers with the master once all are back or this passed.
    public var executorReregistrationTimeout: Duration = .seconds(2)
    /// `--executor_shutdown_grace_period` (5secs): a shut-down executor gets this long to end its
    /// task before it is killed.
    public var executorShutdownGracePeriod: Duration = .seconds(5)

    /// `--reconfiguration_policy` (equal): which changes of hostname, port and resources since
    /// the checkpoint a restarted agent may make and keep its id and executors. An incompatible
    /// change fails the recovery, unless the host rebooted: then the agent starts as a new one.
    public var reconfigurationPolicy = ReconfigurationPolicy.equal
    /// The agent listens on an ephemeral port (`--port 0`): the port changes at every start and is
    /// not compared by the reconfiguration policy.
    public var ephemeralPort = false

    public enum RecoverMode: String, Sendable, Hashable, CaseIterable {
        /// Reconnect to the checkpointed executors that still run.
        case reconnect
        /// Kill them and exit (an incompatible upgrade).
        case cleanup
    }

    public init() {}

    var follower: LeaderFollower.Settings {
        LeaderFollower.Settings(backoffFactor: registrationBackoffFactor, maxBackoff: maxRegistrationBackoff, requireMasterIdentity: requireMasterIdentity)
    }
}
