import MesosWire

/// Mesos's `--reconfiguration_policy` (src/slave/compatibility.cpp): which changes between the
/// checkpointed `AgentInfo` and this start's may keep the agent's id and its executors. The
/// master takes a re-registering agent's report as the truth, so without this check an agent
/// restarted with fewer resources would keep tasks the master then counts on resources it no
/// longer has.
public enum ReconfigurationPolicy: String, Sendable, Hashable, CaseIterable {
    /// Hostname, port and resources must be what they were (resources in any order).
    case equal
    /// Hostname and port unchanged; resources may be added or grow, never shrink or go.
    case additive

    /// Why `current` may not carry on as `previous`; nil when it may. `comparePort` false: the
    /// agent listens on an ephemeral port (`--port 0`), which changes at every start.
    public func incompatibility(previous: AgentInfo, current: AgentInfo, comparePort: Bool = true) -> String? {
        if previous.hostname != current.hostname {
            return "hostname changed from \(previous.hostname) to \(current.hostname)"
        }
        if comparePort && previous.port != current.port {
            return "port changed from \(previous.port) to \(current.port)"
        }
        let before = Self.totals(previous.resources), now = Self.totals(current.resources)
        switch self {
        case .equal:
            guard before != now else { return nil }
            return "resources changed from \(Self.render(before)) to \(Self.render(now))"
        case .additive:
            for (key, amount) in before.sorted(by: { $0.key < $1.key }) {
                guard let had = now[key] else { return "resource \(key.render) not found (was \(amount))" }
                if had < amount { return "value of scalar resource \(key.render) decreased from \(amount) to \(had)" }
            }
            return nil
        }
    }

    /// Mesos's `Resources` constructor adds up entries of one name and role ('cpus:5;cpus:5' is cpus:10).
    private struct Key: Hashable, Comparable {
        var name: String
        var role: String
        var render: String { role == "*" ? "'\(name)'" : "'\(name)(\(role))'" }
        static func < (a: Key, b: Key) -> Bool { (a.name, a.role) < (b.name, b.role) }
    }

    private static func totals(_ resources: [Resource]) -> [Key: Double] {
        resources.reduce(into: [:]) { $0[Key(name: $1.name, role: $1.role), default: 0] += $1.scalar }
    }

    private static func render(_ totals: [Key: Double]) -> String {
        totals.sorted(by: { $0.key < $1.key }).map { "\($0.key.render):\($0.value)" }.joined(separator: ";")
    }
}
