import MesosWire

/// Who leads, from the group's children. Pure state machine: the shell feeds it
/// ZooKeeper results and carries out the effects it returns.
///
/// Never reports a leader older than the newest epoch it has reported (or was told of,
/// see `epochFloor`): a lagging server after a reconnect, or a recreated group whose
/// sequence restarted, must not bring back a deposed master.
public struct LeaderDetectorCore: Sendable {
    public enum Event: Sendable, Hashable {
        /// The session is (re)connected: start over.
        case connected
        /// The group's children, read with a children watch set.
        case children([String])
        /// The data of a member znode (nil: it vanished before we read it).
        case memberData(name: String, data: [UInt8]?)
        /// The session expired (really or by the local timeout): nothing is known.
        case sessionLost
    }

    public enum Effect: Sendable, Hashable {
        case listChildrenAndWatch
        case readMember(String)
        /// The detected leader changed (nil: no leader).
        case report(Leader?)
        case warn(String)
    }

    public private(set) var leader: Leader?
    /// The highest epoch ever reported; leaders below it are ignored.
    public private(set) var epochFloor: UInt64
    private var reading: String?

    public init(epochFloor: UInt64 = 0) { self.epochFloor = epochFloor }

    public mutating func handle(_ event: Event) -> [Effect] {
        switch event {
        case .connected:
            reading = nil
            return [.listChildrenAndWatch]
        case .sessionLost:
            reading = nil
            return set(nil)
        case .children(let names):
            guard let lowest = LeaderGroup.members(names).first else {
                reading = nil
                return set(nil)
            }
            if lowest.sequence == leader?.epoch { reading = nil; return [] }
            if lowest.sequence < epochFloor {
                reading = nil
                return set(nil) + [.warn("ignoring \(lowest.name): epoch \(lowest.sequence) is below the newest known epoch \(epochFloor)")]
            }
            reading = lowest.name
            return [.readMember(lowest.name)]
        case .memberData(let name, let data):
            guard name == reading else { return [] }  // superseded by a newer children list
            reading = nil
            guard let data else { return [] }  // vanished; the children watch fires next
            guard let sequence = LeaderGroup.sequence(of: name) else { return [] }
            do {
                let info = try MasterInfoJSON.decode(data)
                guard let pid = info.pid else { return set(nil) + [.warn("\(name): MasterInfo has no pid; cannot reach this leader")] }
                return set(Leader(epoch: sequence, pid: pid, info: info))
            } catch {
                return set(nil) + [.warn("\(name): \(error.description)")]
            }
        }
    }

    private mutating func set(_ new: Leader?) -> [Effect] {
        guard new != leader else { return [] }
        leader = new
        if let new { epochFloor = max(epochFloor, new.epoch) }
        return [.report(new)]
    }
}
