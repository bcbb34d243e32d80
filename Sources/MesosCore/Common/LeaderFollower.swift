import MesosWire

/// What agents and schedulers share: following the detected leader, the epoch floor, the
/// (re)registration backoff, and counting the master messages they drop. Embedded in `AgentCore`
/// and `SchedulerCore`; pure.
///
/// - The epoch floor is the newest epoch this follower has seen (persisted by agents): a
///   detected leader below it is ignored, never followed.
/// - Registration attempts are spread: the first waits a random time in [0, factor], each retry
///   doubles the bound up to `maxBackoff` (Mesos's agents and drivers do the same).
/// - Master messages pass `EpochGuard` first; what it drops is counted by reason.
public struct LeaderFollower: Sendable {
    public struct Settings: Sendable, Hashable {
        public var backoffFactor: Duration
        public var maxBackoff: Duration
        /// Act on master messages only from connections authenticated as a master.
        public var requireMasterIdentity: Bool

        public init(backoffFactor: Duration, maxBackoff: Duration, requireMasterIdentity: Bool = false) {
            self.backoffFactor = backoffFactor
            self.maxBackoff = maxBackoff
            self.requireMasterIdentity = requireMasterIdentity
        }
    }

    public enum Change: Sendable, Hashable {
        case unchanged
        /// Below the floor: ignored (still following the previous leader, or none).
        case belowFloor(Leader)
        case masterless
        case newLeader(Leader, floorRaised: Bool)
    }

    public let settings: Settings
    public private(set) var leader: Leader?
    public private(set) var epochFloor: UInt64
    public private(set) var isRegistered = false
    public private(set) var droppedMessages: [EpochGuard.DropReason: Int] = [:]
    /// The bound of the next registration attempt's random wait (doubles per attempt).
    public private(set) var backoff: Duration
    public private(set) var nextAttempt: Duration?
    private var rng: SplitMix64

    public init(settings: Settings, epochFloor: UInt64 = 0, seed: UInt64) {
        self.settings = settings
        self.epochFloor = epochFloor
        self.backoff = settings.backoffFactor
        self.rng = SplitMix64(seed: seed)
    }

    /// A new detection result at `now`. A new leader means registering anew with it.
    public mutating func leaderDetected(_ new: Leader?, now: Duration) -> Change {
        guard new != leader else { return .unchanged }
        if let new, new.epoch < epochFloor { return .belowFloor(new) }
        leader = new
        isRegistered = false
        guard let new else {
            nextAttempt = nil
            return .masterless
        }
        let raised = new.epoch > epochFloor
        epochFloor = max(epochFloor, new.epoch)
        backoff = settings.backoffFactor
        nextAttempt = now + jitter(backoff)
        return .newLeader(new, floorRaised: raised)
    }

    /// Nil when `inbound` may be acted on; otherwise the reason it is dropped (counted).
    public mutating func admit(_ inbound: Inbound) -> EpochGuard.DropReason? {
        switch EpochGuard.check(inbound, as: .follower(detected: leader, requireMasterIdentity: settings.requireMasterIdentity)) {
        case .accept: return nil
        case .drop(let reason), .answerWithHint(let reason):
            droppedMessages[reason, default: 0] += 1
            return reason
        }
    }

    /// The leader to send a (re)registration to, when an attempt is due at `now`; the next
    /// attempt is then scheduled with a doubled bound.
    public mutating func registrationDue(now: Duration) -> Leader? {
        guard let leader, !isRegistered, let at = nextAttempt, now >= at else { return nil }
        backoff = min(backoff * 2, settings.maxBackoff)
        nextAttempt = now + jitter(backoff)
        return leader
    }

    /// The leader accepted our registration.
    public mutating func registered() {
        isRegistered = true
        nextAttempt = nil
    }

    /// The registration may be lost (no pings from the master): try again at once.
    public mutating func reregisterNow(now: Duration) { reregister(at: now) }

    /// The link to the leader broke: register again after a random wait in [0, factor], as after
    /// a detection. A leader that went away breaks every follower's link at once; at once, they all
    /// connected to its dead address just before their detectors named the next leader (10,000
    /// refused connects in the first second of a failover, on a machine the new leader shares).
    public mutating func reregisterSoon(now: Duration) { reregister(at: now + jitter(settings.backoffFactor)) }

    /// Not registered any more: the next attempt at `at`, its retries from the first bound again.
    private mutating func reregister(at: Duration) {
        isRegistered = false
        backoff = settings.backoffFactor
        nextAttempt = at
    }

    /// A uniformly random duration in [0, bound] at millisecond resolution (1 ms at least).
    public mutating func jitter(_ bound: Duration) -> Duration {
        .milliseconds(Int64.random(in: 0...max(1, bound.milliseconds), using: &rng))
    }

    /// Random bytes (status update uuids), from the same seeded generator: repeatable in tests.
    /// The floor read back from disk at start (never lowers it).
    public mutating func raiseFloor(to floor: UInt64) { epochFloor = max(epochFloor, floor) }

    public mutating func randomBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }
}
