import MesosWire

/// The leader a process currently detects: the lowest `json.info_` znode of the group.
public struct Leader: Sendable, Hashable, CustomStringConvertible {
    /// The znode's sequence number.
    public var epoch: UInt64
    /// The master's bus address.
    public var pid: PID
    public var info: MasterInfo?

    public init(epoch: UInt64, pid: PID, info: MasterInfo? = nil) {
        self.epoch = epoch
        self.pid = pid
        self.info = info
    }

    public var description: String { "\(pid) (epoch \(epoch))" }
}
