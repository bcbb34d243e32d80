/// How loudly a shell logs an observation.
public enum ObservationLevel: Int, Sendable, Hashable, Comparable, CaseIterable {
    case debug, info, warning, error, critical

    public static func < (a: ObservationLevel, b: ObservationLevel) -> Bool { a.rawValue < b.rawValue }
}

/// One `key=value` of a milestone. Values are plain text; the shell quotes them when needed.
public struct MilestoneField: Sendable, Hashable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// A typed milestone a core reports instead of logging (the shells log each once).
///
/// `event` is a stable key: shells print it as `event=<key>`, and tests, `agent-swarm`, the
/// benchmark harness and `scripts/mesos-local` match those keys and `fields`, never `message`,
/// which is for people and may change.
public protocol Milestone: Sendable {
    var event: String { get }
    var level: ObservationLevel { get }
    var fields: [MilestoneField] { get }
    var message: String { get }
}

extension Array where Element == MilestoneField {
    /// `fields("epoch", 5, "pid", pid)`.
    static func of(_ pairs: (String, any CustomStringConvertible)...) -> [MilestoneField] {
        pairs.map { MilestoneField($0.0, $0.1.description) }
    }
}
