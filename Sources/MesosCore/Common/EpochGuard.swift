import MesosWire

/// The envelope acceptance rules of DESIGN.md, in one place. Pure: no I/O, no clock.
///
/// - An agent or scheduler accepts a message only from the leader it detects through
///   ZooKeeper, at exactly that leader's epoch (and, when masters must prove who they are, only
///   on a connection authenticated as a master). Master-less, it accepts nothing.
/// - A leading master accepts agent and scheduler messages only when they are addressed
///   to its own epoch; the others are answered with a LeaderHint. When peers must prove their
///   role (TLS certificates), an agent's message only on a connection proven as an agent, a
///   scheduler's only on one proven as a scheduler.
/// - A standby master serves nothing but hints.
/// - LeaderHint is advisory and accepted from anyone: it never changes who the receiver
///   believes leads (only ZooKeeper, or the one configured master, does that).
public enum EpochGuard {
    public enum Role: Sendable, Hashable {
        /// An agent or scheduler: `detected` nil while master-less.
        case follower(detected: Leader?, requireMasterIdentity: Bool = false)
        case leadingMaster(epoch: UInt64, requirePeerRoles: Bool = false)
        case standbyMaster
    }

    public enum Verdict: Sendable, Hashable {
        case accept
        /// Drop without reply; the reason is for counters and debug logs.
        case drop(DropReason)
        /// Drop and answer the sender with a LeaderHint.
        case answerWithHint(DropReason)
    }

    /// Why a message was not acted on. The raw values are stable keys (logs, metrics, tests).
    public enum DropReason: String, Sendable, Hashable, CaseIterable, Comparable {
        /// Follower: no leader detected; every master message is ignored.
        case noLeader = "no_leader"
        /// Follower: from a leader older than the one detected (a deposed master still talking).
        case staleEpoch = "stale_epoch"
        /// Follower: an epoch not confirmed by ZooKeeper yet; the detector will catch up.
        case unconfirmedEpoch = "unconfirmed_epoch"
        /// Follower: right epoch, wrong sender.
        case notFromLeader = "not_from_leader"
        /// Follower: the connection did not prove it is a master.
        case unauthenticatedMaster = "unauthenticated_master"
        /// Master: the connection did not prove the role of this message's sender (agent, scheduler).
        case wrongPeerRole = "wrong_peer_role"
        /// Master: addressed to a superseded (or future) epoch.
        case wrongEpoch = "wrong_epoch"
        /// Master: this master does not lead.
        case notLeading = "not_leading"
        /// Any: a newer peer's message kind this build does not know.
        case unknownPayload = "unknown_payload"
        /// Any: `from` is not a valid pid, so there is nobody to answer.
        case malformedSender = "malformed_sender"

        public static func < (a: DropReason, b: DropReason) -> Bool { a.rawValue < b.rawValue }

        /// For people.
        public var explanation: String {
            switch self {
            case .noLeader: "no leader detected"
            case .staleEpoch: "epoch older than the detected leader's"
            case .unconfirmedEpoch: "epoch newer than the detected leader's (not confirmed by ZooKeeper yet)"
            case .notFromLeader: "sender is not the detected leader"
            case .unauthenticatedMaster: "the connection is not authenticated as a master"
            case .wrongPeerRole: "the connection is not authenticated in the role of this message's sender"
            case .wrongEpoch: "addressed to another leader epoch"
            case .notLeading: "this master is not the leader"
            case .unknownPayload: "unknown message kind"
            case .malformedSender: "the sender's pid is malformed"
            }
        }
    }

    public static func check(_ inbound: Inbound, as role: Role) -> Verdict {
        let envelope = inbound.envelope
        guard let payload = envelope.payload else { return .drop(.unknownPayload) }
        guard let from = PID(envelope.from) else { return .drop(.malformedSender) }
        if case .leaderHint = payload { return .accept }
        switch role {
        case .follower(let detected, let requireMasterIdentity):
            guard let leader = detected else { return .drop(.noLeader) }
            if envelope.epoch < leader.epoch { return .drop(.staleEpoch) }
            if envelope.epoch > leader.epoch { return .drop(.unconfirmedEpoch) }
            if from != leader.pid { return .drop(.notFromLeader) }
            if requireMasterIdentity && !inbound.peer.roles.contains(.master) { return .drop(.unauthenticatedMaster) }
            return .accept
        case .leadingMaster(let epoch, let requirePeerRoles):
            guard envelope.epoch == epoch else { return .answerWithHint(.wrongEpoch) }
            if requirePeerRoles, let role = payload.senderRoleAtMaster, !inbound.peer.roles.contains(role) { return .drop(.wrongPeerRole) }
            return .accept
        case .standbyMaster:
            return .answerWithHint(.notLeading)
        }
    }
}
