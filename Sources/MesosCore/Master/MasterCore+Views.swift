import MesosWire

/// Read-only views of the master's tables for the shell's operator endpoints (`/master/state`,
/// `/metrics/snapshot`): copies, in key order.
extension MasterCore {
    public struct AgentView: Sendable, Hashable {
        public enum Health: Sendable, Hashable {
            case healthy
            /// Pings in a row without a pong.
            case missedPings(Int)
            /// Its admission is being written to the registry.
            case admitting
            /// In the registry, not re-registered with this leader yet.
            case recovering
        }

        public var info: AgentInfo
        public var pid: PID?
        public var health: Health
        /// The resources of its known, non-terminal tasks.
        public var used: Resources

        public var active: Bool { health != .admitting && health != .recovering }
    }

    public struct FrameworkView: Sendable, Hashable {
        public var info: FrameworkInfo
        public var pid: PID?
        public var principal: String?
        public var connected: Bool
        public var active: Bool
        /// Learned from a re-registering agent; its scheduler has not come back.
        public var recovered: Bool
    }

    /// The leader this master detects (itself once it leads).
    public var detectedLeader: Leader? { detected }

    /// Every agent: registered ones, then those the registry knows that have not re-registered.
    public var agentViews: [AgentView] {
        var views: [AgentView] = agents.sorted { $0.key.value < $1.key.value }.map { id, record in
            var used = Resources()
            for key in tasksByAgent[id, default: []].sorted() {
                if let task = tasks[key], !task.state.isTerminal { used.add(Resources(task.resources)) }
            }
            let health: AgentView.Health =
                switch record.state {
                case .admitting: .admitting
                case .active: record.missedPings > 0 ? .missedPings(record.missedPings) : .healthy
                }
            return AgentView(info: record.info, pid: record.pid, health: health, used: used)
        }
        for (id, info) in registry.admitted.sorted(by: { $0.key.value < $1.key.value }) {
            guard agents[id] == nil, recoveringAgents.contains(id) else { continue }
            views.append(AgentView(info: info, pid: nil, health: .recovering, used: Resources()))
        }
        return views
    }

    public var frameworkViews: [FrameworkView] {
        frameworks.sorted { $0.key.value < $1.key.value }.map { _, f in
            let recovered = if case .recovered = f.state { true } else { false }
            return FrameworkView(info: f.info, pid: f.pid, principal: f.principal, connected: f.isConnected, active: f.active, recovered: recovered)
        }
    }
}
