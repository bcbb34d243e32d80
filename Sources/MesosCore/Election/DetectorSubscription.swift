import MesosWire

/// One follower's view of a detector shared by many followers of one process (Mesos's
/// `DetectorPool`: one ZooKeeper session and one group watch per `--master` URL, whatever the
/// number of agents or schedulers the process hosts). Pure: the pool feeds it every leader the
/// shared detector reports and passes on what it returns.
///
/// - Each follower keeps its own epoch floor (an agent's is checkpointed): a shared report below
///   it is "no leader" for this follower, never that older leader.
/// - A follower hears only changes: the same leader twice is reported once; as a detector of its
///   own, it hears nothing before the first leader is known.
public struct DetectorSubscription: Sendable, Hashable {
    /// What the follower was last told (nil: no leader, or nothing yet).
    public private(set) var leader: Leader?
    /// The newest epoch this follower was told of (or started with).
    public private(set) var epochFloor: UInt64

    public init(epochFloor: UInt64 = 0) {
        self.epochFloor = epochFloor
    }

    /// The shared detector reports `detected`: what this follower is told, if anything.
    public mutating func deliver(_ detected: Leader?) -> Report? {
        var next = detected
        if let l = detected, l.epoch < epochFloor { next = nil }
        guard next != leader else { return nil }
        leader = next
        if let next { epochFloor = max(epochFloor, next.epoch) }
        return Report(leader: next)
    }

    public struct Report: Sendable, Hashable {
        public let leader: Leader?
        public init(leader: Leader?) { self.leader = leader }
    }
}
