import MesosWire

/// The leader a process currently detects: the lowest `json.info_` znode of the group.
public struct Leader: Sendable, Hashable, CustomStringConvertible {
    /// The znode's sequence number.
    public var epoch: UInt64
    /// The master's bus address ("master@host:port").
    public var pid: String
    public var info: MasterInfo?

    public init(epoch: UInt64, pid: String, info: MasterInfo? = nil) {
        self.epoch = epoch
        self.pid = pid
        self.info = info
    }

    public var description: String { "\(pid) (epoch \(epoch))" }
}

/// The envelope acceptance rules of DESIGN.md, in one place. Pure: no I/O, no clock.
///
/// - An agent or scheduler accepts a message only from the leader it detects through
///   ZooKeeper, at exactly that leader's epoch. Master-less, it accepts nothing.
/// - A leading master accepts agent and scheduler messages only when they are addressed
///   to its own epoch; the others are answered with a LeaderHint.
/// - A standby master serves nothing but hints.
/// - LeaderHint is advisory and accepted from anyone: it never changes who the receiver
///   believes leads (only ZooKeeper does that).
public enum EpochGuard {
    public enum Role: Sendable, Hashable {
        /// An agent or scheduler: `nil` while master-less.
        case follower(detected: Leader?)
        case leadingMaster(epoch: UInt64)
        case standbyMaster
    }

    public enum Verdict: Sendable, Hashable {
        case accept
        /// Drop without reply; the reason is for counters and debug logs.
        case drop(DropReason)
        /// Drop and answer the sender with a LeaderHint.
        case answerWithHint(DropReason)
    }

    public enum DropReason: String, Sendable, Hashable, CaseIterable {
        /// Follower: no leader detected; every master message is ignored.
        case noLeader = "no leader detected"
        /// Follower: from a leader older than the one detected (a deposed master still talking).
        case staleEpoch = "epoch older than the detected leader's"
        /// Follower: an epoch not confirmed by ZooKeeper yet; the detector will catch up.
        case unconfirmedEpoch = "epoch newer than the detected leader's (not confirmed by ZooKeeper yet)"
        /// Follower: right epoch, wrong sender.
        case notFromLeader = "sender is not the detected leader"
        /// Master: addressed to a superseded (or future) epoch.
        case wrongEpoch = "addressed to another leader epoch"
        /// Master: this master does not lead.
        case notLeading = "this master is not the leader"
        /// Any: a newer peer's message kind this build does not know.
        case unknownPayload = "unknown message kind"
    }

    public static func check(_ envelope: Envelope, as role: Role) -> Verdict {
        guard let payload = envelope.payload else { return .drop(.unknownPayload) }
        if case .leaderHint = payload { return .accept }
        switch role {
        case .follower(let detected):
            guard let leader = detected else { return .drop(.noLeader) }
            if envelope.epoch < leader.epoch { return .drop(.staleEpoch) }
            if envelope.epoch > leader.epoch { return .drop(.unconfirmedEpoch) }
            if envelope.from != leader.pid { return .drop(.notFromLeader) }
            return .accept
        case .leadingMaster(let epoch):
            return envelope.epoch == epoch ? .accept : .answerWithHint(.wrongEpoch)
        case .standbyMaster:
            return .answerWithHint(.notLeading)
        }
    }
}

extension EpochGuard {
    /// An agent's or scheduler's drop of `envelope`, if it must be dropped, with how loudly to log
    /// it: a deposed or impostor master still talking is a warning; master-less drops are expected.
    public static func followerDrop(_ envelope: Envelope, leader: Leader?) -> (reason: DropReason, level: LogLevel, message: String)? {
        switch check(envelope, as: .follower(detected: leader)) {
        case .accept: return nil
        case .drop(let reason), .answerWithHint(let reason):
            let level: LogLevel = reason == .staleEpoch || reason == .notFromLeader ? .warning : .debug
            return (reason, level, "dropped message from \(envelope.from) at epoch \(envelope.epoch): \(reason.rawValue)")
        }
    }
}
