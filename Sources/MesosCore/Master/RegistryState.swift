import MesosWire

/// The registry as the master holds it: admitted agents, removed agents (and when), removed
/// framework ids, the highest epoch ever led. The master writes it as `RegistryChange`s (only
/// what changed); the stores lay it out (ZooKeeper: `RegistryLayout`; a file: a snapshot).
public struct RegistryState: Sendable, Hashable {
    public var highestEpoch: UInt64?
    public var admitted: [AgentID: AgentInfo]
    /// Agents removed (never re-admitted), with the wall-clock time of their removal (since the
    /// Unix epoch; zero when not known: format 1 kept no times).
    public var removed: [AgentID: Duration]
    /// Oldest first; bounded by `MasterSettings.maxRemovedFrameworkIDs`.
    public var removedFrameworks: [FrameworkID]

    public init(highestEpoch: UInt64? = nil, admitted: [AgentID: AgentInfo] = [:], removed: [AgentID: Duration] = [:], removedFrameworks: [FrameworkID] = []) {
        self.highestEpoch = highestEpoch
        self.admitted = admitted
        self.removed = removed
        self.removedFrameworks = removedFrameworks
    }

    /// A format-1 registry (one znode, or a standalone master's `registry.pb`). Admitted entries
    /// without an id are dropped; an agent both admitted and removed counts as removed.
    public init(legacy: Registry) {
        var admitted: [AgentID: AgentInfo] = [:]
        for entry in legacy.admitted { if let id = entry.info.id { admitted[id] = entry.info } }
        var removed: [AgentID: Duration] = [:]
        for id in legacy.removed {
            removed[id] = .zero
            admitted[id] = nil
        }
        self.init(highestEpoch: legacy.highestEpoch, admitted: admitted, removed: removed, removedFrameworks: legacy.removedFrameworks)
    }

    /// The state in the meta znode and the agents' znodes (format 2), as read from ZooKeeper or a file.
    public init(meta: RegistryMeta, agents: [RegistryAgent]) {
        self.init(highestEpoch: meta.highestEpoch, removedFrameworks: meta.removedFrameworks)
        for entry in agents { apply(entry.id, .put(entry)) }
    }

    public var meta: RegistryMeta {
        RegistryMeta(format: RegistryLayout.format, highestEpoch: highestEpoch, removedFrameworks: removedFrameworks)
    }

    /// The entry of `id` as its znode holds it (nil: the registry does not know it).
    public func entry(_ id: AgentID) -> RegistryAgent? {
        if let at = removed[id] { return RegistryAgent(id: id, removedTime: TimeInfo(nanoseconds: at.nanosecondsSaturating)) }
        if let info = admitted[id] { return RegistryAgent(id: id, info: info) }
        return nil
    }

    /// Every entry, in id order.
    public var entries: [RegistryAgent] {
        (Set(admitted.keys).union(removed.keys)).sorted { $0.value < $1.value }.compactMap(entry)
    }

    public var snapshot: RegistrySnapshot { RegistrySnapshot(meta: meta, agents: entries) }

    public mutating func apply(_ change: RegistryChange) {
        highestEpoch = change.meta.highestEpoch
        removedFrameworks = change.meta.removedFrameworks
        for (id, entry) in change.agents { apply(id, entry) }
    }

    mutating func apply(_ id: AgentID, _ entry: RegistryChange.Entry) {
        admitted[id] = nil
        removed[id] = nil
        guard case .put(let e) = entry else { return }
        if let t = e.removedTime {
            removed[id] = .nanoseconds(max(0, t.nanoseconds))  // a negative time from storage: "unknown"
        } else if var info = e.info {
            info.id = id
            admitted[id] = info
        }
    }
}

/// What one registry write changes: the meta (always whole: it is small) and the entries of the
/// agents that changed. Writes queued behind one in flight merge into one (later entries win).
public struct RegistryChange: Sendable, Hashable {
    public enum Entry: Sendable, Hashable {
        case put(RegistryAgent)
        /// Forgotten (pruned by the registry's GC).
        case delete
    }

    public var meta: RegistryMeta
    public var agents: [AgentID: Entry]

    public init(meta: RegistryMeta, agents: [AgentID: Entry] = [:]) {
        self.meta = meta
        self.agents = agents
    }

    /// `self` followed by `later`.
    public mutating func merge(_ later: RegistryChange) {
        meta = later.meta
        agents.merge(later.agents) { _, new in new }
    }
}
