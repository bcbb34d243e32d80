import MesosWire

/// A value from the network that a core refuses, with the field it came in. Refusals are
/// answered to the sender (a `MessageRefusedMessage`, a registration error, or TASK_ERROR) and
/// counted; nothing of the refused message is acted on.
public struct InvalidValue: Error, Sendable, Hashable, CustomStringConvertible {
    public var field: String
    public var problem: String

    public init(_ field: String, _ problem: String) {
        self.field = field
        self.problem = problem
    }

    public var description: String { "\(field): \(problem)" }
}

/// Limits on what a peer may send, checked where a message enters a core.
public enum WireLimits {
    /// Longest id (agent, framework, task, offer): ids become file names and log fields.
    public static let maxIDLength = 255
    /// Longest free text (names, hostnames, messages, commands).
    public static let maxTextLength = 64 * 1024
    /// Largest resource amount (a million cpus or exabytes of memory are not real).
    public static let maxResourceAmount = 1e15
    /// Most resources, tasks, offers or statuses in one message.
    public static let maxItems = 10_000
}

public enum WireValidation {
    /// Mesos's id rules: non-empty, at most `maxIDLength` bytes, printable, no `/`, not `.` or `..`
    /// (task and framework ids become directory names in sandboxes).
    public static func id(_ value: String, field: String) throws(InvalidValue) {
        guard !value.isEmpty else { throw InvalidValue(field, "is empty") }
        guard value.utf8.count <= WireLimits.maxIDLength else { throw InvalidValue(field, "is longer than \(WireLimits.maxIDLength) bytes") }
        // On the bytes: a '/' is a path separator whatever follows it (as a Character, '/' with a
        // combining mark after it is not equal to "/"), and printable ASCII, the usual id, needs no
        // look-up of Unicode properties (a profile of a 10,000-agent master showed them).
        var printableASCII = true
        for byte in value.utf8 {
            if byte == UInt8(ascii: "/") { throw InvalidValue(field, "may not be '.', '..' or contain '/'") }
            if byte < 0x21 || byte > 0x7E { printableASCII = false }
        }
        guard value != ".", value != ".." else { throw InvalidValue(field, "may not be '.', '..' or contain '/'") }
        guard printableASCII || !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == " " }) else {
            throw InvalidValue(field, "contains whitespace or control characters")
        }
    }

    public static func text(_ value: String?, field: String) throws(InvalidValue) {
        guard let value else { return }
        guard value.utf8.count <= WireLimits.maxTextLength else { throw InvalidValue(field, "is longer than \(WireLimits.maxTextLength) bytes") }
    }

    public static func count(_ n: Int, field: String) throws(InvalidValue) {
        guard n <= WireLimits.maxItems else { throw InvalidValue(field, "has \(n) entries, more than \(WireLimits.maxItems)") }
    }

    /// Resources: finite, non-negative, at most `maxResourceAmount`, named.
    public static func resources(_ list: [Resource], field: String) throws(InvalidValue) {
        try count(list.count, field: field)
        for r in list {
            guard !r.name.isEmpty, r.name.utf8.count <= WireLimits.maxIDLength else { throw InvalidValue(field, "a resource has an empty or overlong name") }
            guard r.scalar.isFinite, r.scalar >= 0, r.scalar <= WireLimits.maxResourceAmount else {
                throw InvalidValue(field, "\(r.name) is \(r.scalar); amounts must be finite numbers in [0, \(WireLimits.maxResourceAmount)]")
            }
            try text(r.role, field: field + ".role")
        }
    }

    /// Seconds from a peer (filters, failover timeouts): finite, >= 0, at most a century.
    public static func seconds(_ value: Double, field: String) throws(InvalidValue) -> Duration {
        guard let d = Duration(validatingSeconds: value) else {
            throw InvalidValue(field, "\(value) is not a finite number of seconds in [0, \(Int(Duration.maxWireSeconds))]")
        }
        return d
    }

    public static func pid(_ value: String?, field: String) throws(InvalidValue) -> PID? {
        guard let value else { return nil }
        guard let pid = PID(value) else { throw InvalidValue(field, "is not a pid of the form name@host:port") }
        return pid
    }
}
