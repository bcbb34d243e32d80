/// Counters the master keeps (Mesos's `master/...` metrics are read from these and the state).
public struct MasterMetrics: Sendable, Hashable {
    /// Messages dropped by the epoch rules, by reason (`master/dropped_messages` is their sum).
    public var droppedMessages: [EpochGuard.DropReason: Int] = [:]
    /// Messages refused for an invalid value or an unbound sender.
    public var invalidMessages = 0
    public var unexpectedMessages = 0
    public var agentRegistrations = 0
    public var agentReregistrations = 0
    public var agentRemovals = 0
    /// Mesos's `master/slave_unreachable_scheduled` / `_canceled`: removals that waited for the
    /// rate limit, and those called off because the agent answered meanwhile.
    public var agentRemovalsScheduled = 0
    public var agentRemovalsCanceled = 0
    /// Removed agents the registry's GC forgot.
    public var registryPruned = 0
    public var frameworkRemovals = 0
    public var frameworkFailovers = 0
    public var tasksLost = 0
    public var registryWrites = 0
    /// Registrations received while recovering the registry and acted on once leading
    /// (`RecoveryBacklog`).
    public var heldDuringRecovery = 0

    public var droppedTotal: Int { droppedMessages.values.reduce(0, +) }
}
