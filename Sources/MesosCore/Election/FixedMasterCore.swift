import MesosWire

/// `--master=host:port`: that master is the leader. Its epoch is learned from the LeaderHint it
/// answers our first message with (a master answers a wrong epoch with a hint carrying its own).
///
/// Only hints from that master count: the sender and the hint's leader must both be the
/// configured endpoint (`host` resolved by the shell, so `localhost:5050` matches the
/// `master@127.0.0.1:5050` the master announces). Epochs never go back.
public struct FixedMasterCore: Sendable, Hashable {
    public private(set) var leader: Leader

    /// - master: the configured master, host already resolved to the address it announces.
    public init(master: PID) { leader = Leader(epoch: 0, pid: master) }

    /// A LeaderHint received from `sender`: the new leader to report, or nil when nothing changes.
    public mutating func hint(_ hint: LeaderHintMessage, from sender: String) -> Leader? {
        guard let from = PID(sender), from.endpoint == leader.pid.endpoint,
            let info = hint.leader, let announced = info.pid.flatMap(PID.init), announced == from,
            let epoch = hint.leaderEpoch, epoch >= leader.epoch, epoch != leader.epoch || from != leader.pid
        else { return nil }
        leader = Leader(epoch: epoch, pid: from, info: info)
        return leader
    }
}
