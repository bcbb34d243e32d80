import MesosBus

/// What a master shows its operators, copied out of its core at the time of a request: plain
/// values, so that every endpoint is a pure function of one snapshot.
public struct MasterSnapshot: Sendable {
    public enum Role: String, Sendable, Equatable {
        /// Elected and serving.
        case leader
        /// Elected, still reading the registry: leader-only endpoints answer 503.
        case recovering
        /// Not elected (or not yet): leader-only endpoints redirect to the leader, if one is known.
        case standby
    }

    public var id: String
    /// "master@ip:port".
    public var pid: String
    public var hostname: String
    public var version: String
    public var role: Role
    /// This master's epoch while it leads or recovers.
    public var epoch: UInt64?
    /// The leader this master detects (itself when it leads).
    public var leader: LeaderAddress?
    /// Unix seconds.
    public var startTime: Double
    public var electedTime: Double?
    public var now: Double
    public var agents: [AgentEntry] = []
    public var frameworks: [FrameworkEntry] = []
    public var completedFrameworks: [FrameworkEntry] = []
    public var tasks: [TaskEntry] = []
    public var outstandingOffers = 0
    /// The master's bus counters (`bus/...` metrics).
    public var bus = BusStats()
    /// Leaders this master has detected, oldest first (the dashboard's failover history).
    public var leaderHistory: [LeaderChange] = []
    public var counters = MasterCounters()
    /// Flag name and value, as `/master/state` lists them.
    public var flags: [(String, String)] = []

    public init(id: String, pid: String, hostname: String, version: String, role: Role, startTime: Double, now: Double) {
        self.id = id
        self.pid = pid
        self.hostname = hostname
        self.version = version
        self.role = role
        self.startTime = startTime
        self.now = now
    }
}

/// A leader as a follower or standby knows it: where to redirect to.
public struct LeaderAddress: Sendable, Equatable {
    /// "master@ip:port".
    public var pid: String
    /// Its published hostname, or its IP when it published none.
    public var hostname: String
    public var port: Int
    public var epoch: UInt64
    public var id: String

    public init(pid: String, hostname: String, port: Int, epoch: UInt64, id: String = "") {
        self.pid = pid
        self.hostname = hostname
        self.port = port
        self.epoch = epoch
        self.id = id
    }
}

public struct LeaderChange: Sendable, Equatable {
    /// nil: no leader from then on.
    public var leader: LeaderAddress?
    /// Unix seconds at which this master detected it.
    public var at: Double

    public init(leader: LeaderAddress?, at: Double) {
        self.leader = leader
        self.at = at
    }
}

public struct AgentEntry: Sendable, Equatable {
    public enum Health: Sendable, Equatable {
        case healthy
        /// Health-check pings in a row without a pong (removed at `max_agent_ping_timeouts`).
        case missedPings(Int)
        /// Its registration is being written to the registry.
        case admitting
        /// Known from the registry, not re-registered with this leader yet.
        case recovering

        public var name: String {
            switch self {
            case .healthy: "healthy"
            case .missedPings: "missed_pings"
            case .admitting: "admitting"
            case .recovering: "recovering"
            }
        }
    }

    public var id: String
    public var hostname: String
    /// "slave(1)@ip:port" ("" when only the registry knows it).
    public var pid: String
    public var port: Int
    public var resources: [String: Double]
    public var usedResources: [String: Double]
    public var active: Bool
    public var health: Health

    public init(id: String, hostname: String, pid: String, port: Int, resources: [String: Double], usedResources: [String: Double] = [:], active: Bool, health: Health) {
        self.id = id
        self.hostname = hostname
        self.pid = pid
        self.port = port
        self.resources = resources
        self.usedResources = usedResources
        self.active = active
        self.health = health
    }
}

public struct FrameworkEntry: Sendable, Equatable {
    public var id: String
    public var name: String
    public var user: String
    public var hostname: String
    public var principal: String?
    public var pid: String?
    public var role: String
    public var active: Bool
    public var connected: Bool
    /// Learned from re-registering agents after a failover; its scheduler has not come back.
    public var recovered: Bool
    public var failoverTimeout: Double
    public var checkpoint: Bool

    public init(
        id: String, name: String, user: String = "", hostname: String = "", principal: String? = nil, pid: String? = nil, role: String = "*",
        active: Bool, connected: Bool, recovered: Bool = false, failoverTimeout: Double = 0, checkpoint: Bool = false
    ) {
        self.id = id
        self.name = name
        self.user = user
        self.hostname = hostname
        self.principal = principal
        self.pid = pid
        self.role = role
        self.active = active
        self.connected = connected
        self.recovered = recovered
        self.failoverTimeout = failoverTimeout
        self.checkpoint = checkpoint
    }
}

public struct TaskEntry: Sendable, Equatable {
    public var id: String
    public var name: String
    public var frameworkID: String
    public var agentID: String
    public var executorID: String
    /// "TASK_RUNNING", ...
    public var state: String
    public var resources: [String: Double]

    public init(id: String, name: String, frameworkID: String, agentID: String, executorID: String = "", state: String, resources: [String: Double] = [:]) {
        self.id = id
        self.name = name
        self.frameworkID = frameworkID
        self.agentID = agentID
        self.executorID = executorID
        self.state = state
        self.resources = resources
    }
}

/// The master's counters behind `/metrics/snapshot` (Mesos's names in `MasterMetricsReport`).
public struct MasterCounters: Sendable, Equatable {
    /// Every message dropped by the epoch rules (`master/dropped_messages`).
    public var droppedMessages = 0
    /// Of those: addressed to another epoch (`master/stale_epoch_dropped`).
    public var staleEpochDropped = 0
    public var invalidMessages = 0
    public var tasksLost = 0
    public var slaveRegistrations = 0
    public var slaveReregistrations = 0
    public var slaveRemovals = 0
    public var frameworkRemovals = 0
    public var frameworkFailovers = 0
    public var registryWrites = 0
    /// Registrations received while recovering the registry, answered once leading
    /// (`master/messages_held_during_recovery`; Mesos drops them).
    public var heldDuringRecovery = 0
    /// Changes of the leader this master detected (`master/leader_changes`).
    public var leaderChanges = 0

    public init() {}
}

/// What an agent shows its operators.
public struct AgentSnapshot: Sendable {
    public var id: String
    /// "slave(1)@ip:port".
    public var pid: String
    public var hostname: String
    public var version: String
    /// Still recovering its checkpoint: `/slave(1)/state` answers 503.
    public var recovering: Bool
    public var registered: Bool
    /// The master it follows, and its epoch.
    public var master: LeaderAddress?
    public var startTime: Double
    public var now: Double
    public var resources: [String: Double] = [:]
    public var frameworks: [AgentFrameworkEntry] = []
    public var executorsRunning = 0
    public var droppedMessages = 0
    public var staleEpochDropped = 0
    /// The agent's bus counters (`bus/...` metrics).
    public var bus = BusStats()
    public var flags: [(String, String)] = []

    public init(id: String, pid: String, hostname: String, version: String, recovering: Bool, registered: Bool, startTime: Double, now: Double) {
        self.id = id
        self.pid = pid
        self.hostname = hostname
        self.version = version
        self.recovering = recovering
        self.registered = registered
        self.startTime = startTime
        self.now = now
    }
}

public struct AgentFrameworkEntry: Sendable, Equatable {
    public var id: String
    public var name: String
    public var user: String
    public var checkpoint: Bool
    public var tasks: [TaskEntry]

    public init(id: String, name: String, user: String = "", checkpoint: Bool = false, tasks: [TaskEntry]) {
        self.id = id
        self.name = name
        self.user = user
        self.checkpoint = checkpoint
        self.tasks = tasks
    }
}
