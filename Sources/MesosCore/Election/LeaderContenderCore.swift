/// One master's candidacy. Pure state machine: the shell does the ZooKeeper calls it asks for and
/// feeds back their results.
///
/// Joins the group with an ephemeral sequential znode, then watches only its predecessor (the
/// next lower member), so a leader change wakes one contender, not all. It is elected when no
/// lower member remains, and only above `epochFloor` (the highest epoch ever led, from the registry
/// and the master's work directory): before joining, it moves the group's sequence counter past the
/// floor with non-member "floor markers" (a recreated group restarts its counter at 0), so its own
/// membership znode is never at or below an epoch already led.
public struct LeaderContenderCore: Sendable {
    public enum Event: Sendable, Hashable {
        /// Join, never to lead at or below an epoch already led: the highest the registry records
        /// and the highest this master's work directory records (0 when unknown).
        case start(ledInRegistry: UInt64, ledHere: UInt64)
        /// A floor marker was created with this name (ephemeral sequential, not a member).
        case floorMarkerCreated(String)
        /// Our membership znode was created with this name.
        case joined(String)
        /// The group's children (after joining, or after the predecessor went away).
        case children([String])
        /// The watched predecessor is gone (deleted, or already gone when the watch was set).
        case predecessorGone
        /// Our own znode was deleted by someone else.
        case membershipDeleted
        /// A request failed; `retryable` for connection loss and timeouts.
        case failed(Request, retryable: Bool, error: String)
        /// A delay asked for with `.retry` has passed.
        case retryDue(Request)
        case sessionLost
        case withdraw
    }

    /// The ZooKeeper requests the core makes (also what a failure or retry refers to).
    public enum Request: Sendable, Hashable {
        case createFloorMarker
        case createMembership
        case listChildren
        case watchPredecessor(String)
        /// Watch our own znode, to learn if it is deleted while we lead.
        case watchMembership(String)
        /// Delete a znode of ours (a floor marker, a burnt or withdrawn membership).
        case delete(String)
    }

    public enum Effect: Sendable, Hashable {
        case request(Request)
        /// Feed `.retryDue(request)` after `delay`.
        case retry(Request, after: Duration)
        case observe(ContenderObservation)
        case elected(epoch: UInt64)
        /// Terminal: the candidacy is over (a leading master must exit).
        case lost(LeadershipLoss)
    }

    public enum State: Sendable, Hashable {
        case idle, passingFloor, joining, contending(String), leading(String, epoch: UInt64), done
    }

    public private(set) var state = State.idle
    public private(set) var epochFloor: UInt64 = 0
    public static let retryDelay: Duration = .milliseconds(200)

    public init() {}

    /// Our membership znode's name, once joined.
    public var membership: String? {
        switch state {
        case .contending(let name), .leading(let name, _): name
        default: nil
        }
    }

    public mutating func handle(_ event: Event) -> [Effect] {
        switch (event, state) {
        case (.start(let registry, let here), .idle):
            // Always through a marker: a fresh group's counter starts at 0, and a member at
            // sequence 0 would be burnt (epoch 0 is never led) after detectors may have read it.
            epochFloor = max(registry, here)
            state = .passingFloor
            return [.request(.createFloorMarker)]
        case (.floorMarkerCreated(let name), .passingFloor):
            let next: Request
            if let sequence = LeaderGroup.floorMarkerSequence(of: name), sequence < epochFloor {
                next = .createFloorMarker
            } else {
                state = .joining
                next = .createMembership
            }
            return [.request(.delete(name)), .request(next)]
        case (.floorMarkerCreated(let name), .done):
            return [.request(.delete(name))]
        case (.joined(let name), .joining):
            guard let sequence = LeaderGroup.sequence(of: name) else {
                return [.request(.delete(name))] + lose(.contenderFailed("created znode \(name) has no sequence"))
            }
            if sequence <= epochFloor {
                // Only if the counter went back meanwhile (the group was recreated): pass the floor again.
                state = .passingFloor
                return [.request(.delete(name)), .observe(.burntSequence(sequence, floor: epochFloor)), .request(.createFloorMarker)]
            }
            state = .contending(name)
            return [.observe(.joined(name)), .request(.listChildren)]
        case (.children(let names), .contending(let mine)):
            let members = LeaderGroup.members(names)
            guard let me = members.firstIndex(where: { $0.name == mine }) else { return lose(.membershipDeleted) }
            if me == 0 {
                let epoch = members[me].sequence
                state = .leading(mine, epoch: epoch)
                return [.request(.watchMembership(mine)), .elected(epoch: epoch)]
            }
            return [.request(.watchPredecessor(members[me - 1].name))]
        case (.predecessorGone, .contending):
            return [.request(.listChildren)]
        case (.membershipDeleted, .contending), (.membershipDeleted, .leading):
            return lose(.membershipDeleted)
        case (.failed(let request, let retryable, let error), _):
            return failed(request, retryable: retryable, error: error)
        case (.retryDue(let request), _):
            return stillWanted(request) ? [.request(request)] : []
        case (.sessionLost, .passingFloor), (.sessionLost, .joining), (.sessionLost, .contending), (.sessionLost, .leading):
            return lose(.sessionExpired)
        case (.withdraw, .contending(let mine)), (.withdraw, .leading(let mine, _)):
            state = .done
            return [.request(.delete(mine))]
        case (.joined(let name), .done):
            return [.request(.delete(name))]  // withdrew while the create was in flight
        case (.withdraw, .idle), (.withdraw, .passingFloor), (.withdraw, .joining):
            state = .done
            return []
        default:
            return []  // late results of superseded requests
        }
    }

    private mutating func failed(_ request: Request, retryable: Bool, error: String) -> [Effect] {
        if case .delete = request { return [.observe(.deleteFailed(error))] }  // it goes with the session
        guard stillWanted(request) else { return [] }
        guard retryable else { return lose(.contenderFailed("\(request) failed: \(error)")) }
        return [.observe(.requestFailed(error, retrying: true)), .retry(request, after: Self.retryDelay)]
    }

    /// Whether a request (to retry) still fits the state.
    private func stillWanted(_ request: Request) -> Bool {
        switch (request, state) {
        case (.createFloorMarker, .passingFloor), (.createMembership, .joining), (.listChildren, .contending),
            (.watchPredecessor, .contending):
            true
        case (.watchMembership(let name), .leading(let mine, _)): name == mine
        default: false
        }
    }

    private mutating func lose(_ loss: LeadershipLoss) -> [Effect] {
        state = .done
        return [.lost(loss)]
    }
}

public enum ContenderObservation: Milestone, Hashable {
    case joined(String)
    case burntSequence(UInt64, floor: UInt64)
    case requestFailed(String, retrying: Bool)
    case deleteFailed(String)

    public var event: String {
        switch self {
        case .joined: "contender_joined"
        case .burntSequence: "contender_burnt_sequence"
        case .requestFailed: "contender_request_failed"
        case .deleteFailed: "contender_delete_failed"
        }
    }

    public var level: ObservationLevel {
        switch self {
        case .joined: .info
        case .burntSequence, .requestFailed, .deleteFailed: .warning
        }
    }

    public var fields: [MilestoneField] {
        switch self {
        case .joined(let name): .of(("znode", name))
        case .burntSequence(let s, let floor): .of(("sequence", s), ("floor", floor))
        case .requestFailed(let e, _): .of(("error", e))
        case .deleteFailed(let e): .of(("error", e))
        }
    }

    public var message: String {
        switch self {
        case .joined(let name): "joined the leader group as \(name)"
        case .burntSequence(let s, let floor): "sequence \(s) is not above the epoch floor \(floor): passing the floor again"
        case .requestFailed(let e, _): "ZooKeeper request failed (\(e)); retrying"
        case .deleteFailed(let e): "deleting a znode failed (\(e)); it goes with the session"
        }
    }
}
