/// One master's candidacy. Pure state machine (the shell does the ZooKeeper calls).
///
/// Joins the group with an ephemeral sequential znode, then watches only its
/// predecessor (the next lower member), so a leader change wakes one contender, not all.
/// It is elected when no lower member remains, and only above `epochFloor`: a sequence
/// at or below an epoch already led (a recreated group restarts its counter) is
/// abandoned for a fresh, higher one.
public struct LeaderContenderCore: Sendable {
    public enum Event: Sendable, Hashable {
        case start
        /// Our membership znode was created with this name.
        case joined(String)
        /// The group's children (after joining, or after the predecessor went away).
        case children([String])
        /// The watched predecessor is gone (deleted, or already gone when the watch was set).
        case predecessorGone
        /// Our own znode was deleted by someone else.
        case membershipDeleted
        case sessionLost
        case withdraw
    }

    public enum Effect: Sendable, Hashable {
        case createMembership
        case listChildren
        case watchPredecessor(String)
        /// Watch our own znode, to learn if it is deleted while we lead.
        case watchMembership(String)
        case deleteMembership(String)
        case elected(epoch: UInt64)
        /// Terminal: the candidacy is over (a leading master must exit).
        case lost(reason: String)
    }

    public enum State: Sendable, Hashable {
        case idle, joining, contending(String), leading(String, epoch: UInt64), done
    }

    public private(set) var state = State.idle
    public let epochFloor: UInt64

    public init(epochFloor: UInt64 = 0) { self.epochFloor = epochFloor }

    public mutating func handle(_ event: Event) -> [Effect] {
        switch (event, state) {
        case (.start, .idle):
            state = .joining
            return [.createMembership]
        case (.joined(let name), .joining):
            guard let sequence = LeaderGroup.sequence(of: name) else { return lose("created znode \(name) has no sequence") }
            if sequence <= epochFloor {
                // Burn this sequence: deleting and creating again moves the counter up.
                return [.deleteMembership(name), .createMembership]
            }
            state = .contending(name)
            return [.listChildren]
        case (.children(let names), .contending(let mine)):
            let members = LeaderGroup.members(names)
            guard let me = members.firstIndex(where: { $0.name == mine }) else { return lose("membership znode \(mine) is gone") }
            if me == 0 {
                let epoch = members[me].sequence
                state = .leading(mine, epoch: epoch)
                return [.watchMembership(mine), .elected(epoch: epoch)]
            }
            return [.watchPredecessor(members[me - 1].name)]
        case (.predecessorGone, .contending):
            return [.listChildren]
        case (.membershipDeleted, .contending(let mine)), (.membershipDeleted, .leading(let mine, _)):
            return lose("membership znode \(mine) was deleted")
        case (.sessionLost, .joining), (.sessionLost, .contending), (.sessionLost, .leading):
            return lose("ZooKeeper session expired")
        case (.withdraw, .contending(let mine)), (.withdraw, .leading(let mine, _)):
            state = .done
            return [.deleteMembership(mine)]
        case (.joined(let name), .done):
            return [.deleteMembership(name)]  // withdrew while the create was in flight
        case (.withdraw, .idle), (.withdraw, .joining):
            state = .done
            return []
        default:
            return []  // late results of superseded requests
        }
    }

    private mutating func lose(_ reason: String) -> [Effect] {
        state = .done
        return [.lost(reason: reason)]
    }
}
