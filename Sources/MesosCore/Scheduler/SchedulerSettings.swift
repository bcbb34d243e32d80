/// What `SchedulerCore` is configured with. Defaults are those of Mesos's scheduler driver.
public struct SchedulerSettings: Sendable, Hashable {
    /// The first (re)registration after a leader change waits a random time up to this, each
    /// retry doubling the bound (Mesos's driver: 2secs), spreading many frameworks' registrations.
    public var registrationBackoffFactor: Duration = .seconds(2)
    /// Largest bound of the registration backoff (Mesos: 1mins).
    public var maxRegistrationBackoff: Duration = .seconds(60)
    /// Status updates are acknowledged by the driver after they are delivered (Mesos's default);
    /// false: the framework calls `acknowledge` itself.
    public var implicitAcknowledgements = true
    /// Act on master messages only from connections authenticated as a master.
    public var requireMasterIdentity = false

    public init() {}

    var follower: LeaderFollower.Settings {
        LeaderFollower.Settings(backoffFactor: registrationBackoffFactor, maxBackoff: maxRegistrationBackoff, requireMasterIdentity: requireMasterIdentity)
    }
}
