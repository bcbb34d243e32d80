import MesosWire

/// Who leads, from the group's children. Pure state machine: the shell feeds it ZooKeeper
/// results and carries out the requests it returns.
///
/// - Never reports a leader older than the newest epoch it has reported (or was told of, see
///   `epochFloor`): a lagging server after a reconnect, or a recreated group whose sequence
///   restarted, must not bring back a deposed master.
/// - Never reports a stale leader: once the lowest member is another znode, the old leader is
///   gone, so "no leader" is reported until the new one's MasterInfo is read.
/// - A read or list that fails is retried with a doubling backoff (up to `maxRetryDelay`) while
///   the session lasts; a session loss reports no leader.
public struct LeaderDetectorCore: Sendable {
    public enum Event: Sendable, Hashable {
        /// The session is (re)connected: start over.
        case connected
        /// The group's children, read with a children watch set.
        case children([String])
        /// The children watch fired: list again.
        case childrenChanged
        /// The group znode does not exist (yet): an exists watch is set on it.
        case groupMissing
        /// The group znode was created.
        case groupCreated
        /// The data of a member znode (nil: it vanished before we read it).
        case memberData(name: String, data: [UInt8]?)
        /// A request failed (connection loss, timeout...): retried after a backoff.
        case failed(Request, error: String)
        case retryDue(Request)
        /// The session expired (really or by the local timeout): nothing is known.
        case sessionLost
    }

    public enum Request: Sendable, Hashable {
        case listChildrenAndWatch
        case watchGroupCreation
        case readMember(String)
    }

    public enum Effect: Sendable, Hashable {
        case request(Request)
        case retry(Request, after: Duration)
        /// The detected leader changed (nil: no leader).
        case report(Leader?)
        case observe(DetectorObservation)
    }

    public private(set) var leader: Leader?
    /// The highest epoch ever reported; leaders below it are ignored.
    public private(set) var epochFloor: UInt64
    private var reading: String?
    private var connected = false
    private var retryDelay: Duration
    public static let firstRetryDelay: Duration = .milliseconds(100)
    public static let maxRetryDelay: Duration = .seconds(5)

    public init(epochFloor: UInt64 = 0) {
        self.epochFloor = epochFloor
        retryDelay = Self.firstRetryDelay
    }

    public mutating func handle(_ event: Event) -> [Effect] {
        switch event {
        case .connected:
            connected = true
            reading = nil
            retryDelay = Self.firstRetryDelay
            return [.request(.listChildrenAndWatch)]
        case .sessionLost:
            connected = false
            reading = nil
            return set(nil)
        case .childrenChanged, .groupCreated:
            guard connected else { return [] }
            return [.request(.listChildrenAndWatch)]
        case .groupMissing:
            reading = nil
            return set(nil) + [.request(.watchGroupCreation)]
        case .children(let names):
            retryDelay = Self.firstRetryDelay
            guard let lowest = LeaderGroup.members(names).first else {
                reading = nil
                return set(nil)
            }
            if lowest.sequence == leader?.epoch { reading = nil; return [] }
            if lowest.sequence < epochFloor {
                reading = nil
                return set(nil) + [.observe(.belowFloor(name: lowest.name, epoch: lowest.sequence, floor: epochFloor))]
            }
            reading = lowest.name
            // The old leader is no longer the lowest member: it is gone. Report that at once.
            return set(nil) + [.request(.readMember(lowest.name))]
        case .memberData(let name, let data):
            guard name == reading else { return [] }  // superseded by a newer children list
            reading = nil
            retryDelay = Self.firstRetryDelay
            guard let data else { return set(nil) }  // vanished: the children watch fires next
            guard let sequence = LeaderGroup.sequence(of: name) else { return [] }
            do {
                let info = try MasterInfoJSON.decode(data)
                guard let text = info.pid, let pid = PID(text) else {
                    return set(nil) + [.observe(.unusableMember(name: name, why: "MasterInfo has no valid pid; cannot reach this leader"))]
                }
                return set(Leader(epoch: sequence, pid: pid, info: info))
            } catch {
                return set(nil) + [.observe(.unusableMember(name: name, why: error.description))]
            }
        case .failed(let request, let error):
            guard connected, wanted(request) else { return [] }
            var effects: [Effect] = [.observe(.requestFailed(error: error, retryIn: retryDelay)), .retry(request, after: retryDelay)]
            if case .readMember = request { effects = set(nil) + effects }
            retryDelay = min(retryDelay * 2, Self.maxRetryDelay)
            return effects
        case .retryDue(let request):
            guard connected, wanted(request) else { return [] }
            return [.request(request)]
        }
    }

    private func wanted(_ request: Request) -> Bool {
        if case .readMember(let name) = request { return name == reading }
        return true
    }

    private mutating func set(_ new: Leader?) -> [Effect] {
        guard new != leader else { return [] }
        leader = new
        if let new { epochFloor = max(epochFloor, new.epoch) }
        return [.report(new)]
    }
}

public enum DetectorObservation: Milestone, Hashable {
    case belowFloor(name: String, epoch: UInt64, floor: UInt64)
    case unusableMember(name: String, why: String)
    case requestFailed(error: String, retryIn: Duration)

    public var event: String {
        switch self {
        case .belowFloor: "detector_below_floor"
        case .unusableMember: "detector_unusable_member"
        case .requestFailed: "detector_request_failed"
        }
    }

    public var level: ObservationLevel {
        switch self {
        case .requestFailed: .info
        default: .warning
        }
    }

    public var fields: [MilestoneField] {
        switch self {
        case .belowFloor(let name, let epoch, let floor): .of(("znode", name), ("epoch", epoch), ("floor", floor))
        case .unusableMember(let name, _): .of(("znode", name))
        case .requestFailed(let error, let delay): .of(("error", error), ("retry_ms", delay.milliseconds))
        }
    }

    public var message: String {
        switch self {
        case .belowFloor(let name, let epoch, let floor): "ignoring \(name): epoch \(epoch) is below the newest known epoch \(floor)"
        case .unusableMember(let name, let why): "\(name): \(why)"
        case .requestFailed(let error, let delay): "reading the leader group failed (\(error)); retrying in \(delay.milliseconds) ms"
        }
    }
}
