import MesosCore
import MesosWire

/// The simulated cluster's timeouts (DESIGN.md's defaults scaled down, as the cluster tests do).
public struct SimulationSettings: Sendable, Hashable {
    public var sessionTimeout: Duration = .seconds(2)
    public var agentPingTimeout: Duration = .milliseconds(500)
    public var maxAgentPingTimeouts = 3
    public var allocationInterval: Duration = .milliseconds(200)
    public var agentReregisterTimeout: Duration = .seconds(10)
    /// `--agent_removal_rate_limit` (nil: none).
    public var agentRemovalRateLimit: RemovalRateLimit?
    /// `--recovery_agent_removal_limit`, as a fraction.
    public var recoveryAgentRemovalLimit = 1.0
    public var registrationBackoff: Duration = .milliseconds(200)
    public var statusUpdateRetry: Duration = .seconds(1)
    public var masterPingTimeout: Duration = .seconds(4)
    public var failoverTimeout: Double = 8
    /// How long checkpointed executors wait for their agent to come back (`--recovery_timeout`).
    public var recoveryTimeout: Duration = .seconds(10)
    /// `--executor_reregistration_timeout`.
    public var executorReregistrationTimeout: Duration = .seconds(1)
    public var tick: Duration = .milliseconds(100)
    /// Faults are drawn in [settle, settle + faultWindow); everything heals after.
    public var settle: Duration = .seconds(8)
    public var faultWindow: Duration = .seconds(30)
    /// After the heal, the cluster must converge within this.
    public var livenessBound: Duration = .seconds(45)

    public init() {}
}

/// A process of the simulated cluster (master, agent or scheduler), with its lifecycle.
class SimNode {
    unowned let world: World
    let name: String
    let pid: PID
    private(set) var isAlive = false
    private(set) var isPaused = false
    /// Bumped at every start: messages and timers of an earlier run of the process are void.
    private(set) var incarnation = 0
    private var pausedWork: [() -> Void] = []

    init(world: World, name: String, pid: PID) {
        self.world = world
        self.name = name
        self.pid = pid
    }

    /// Runs `work` now, or when the process resumes (SIGSTOP'ed), or never (dead).
    func whenRunning(_ work: @escaping () -> Void) {
        guard isAlive else { return }
        if isPaused { pausedWork.append(work) } else { work() }
    }

    func start() {
        incarnation += 1
        isAlive = true
        isPaused = false
        pausedWork = []
        let run = incarnation
        world.after(world.settings.tick) { self.tickLoop(run) }
        started()
    }

    private func tickLoop(_ run: Int) {
        guard isAlive, run == incarnation else { return }
        if !isPaused { tick() }
        world.after(world.settings.tick) { self.tickLoop(run) }
    }

    /// SIGKILL, or an exit the process decided itself.
    func die() {
        guard isAlive else { return }
        isAlive = false
        isPaused = false
        pausedWork = []
        stopped()
    }

    func pause() { if isAlive { isPaused = true } }

    func resume() {
        guard isAlive, isPaused else { return }
        isPaused = false
        let work = pausedWork
        pausedWork = []
        for w in work where isAlive && !isPaused { w() }
    }

    // Overridden by the node kinds.
    func started() {}
    func stopped() {}
    func tick() {}
    func deliver(_ envelope: Envelope) {}
    func linkBroken(_ endpoint: String) {}
    /// SIGTERM.
    func terminate() { die() }
}

/// Everything the simulator knows for sure, to judge the cores by (not their own beliefs).
struct Truth {
    /// Which master led at each epoch (a master leads once it is in the leading phase).
    var leaderOfEpoch: [UInt64: String] = [:]
    var highestLeadingEpoch: UInt64 = 0
    /// Task processes running now, and on which agent (by agent node name and its agent id).
    var running: [TaskKey: (agent: String, agentID: AgentID?)] = [:]
}

/// A rule of DESIGN.md that a step broke.
public struct Violation: Sendable, Hashable, CustomStringConvertible {
    public enum Rule: String, Sendable, Hashable, CaseIterable {
        case followerActsOnlyOnTheLeader = "1-follower-acts-only-on-the-detected-leader-at-its-epoch"
        case oneLeaderPerEpoch = "2-one-leader-per-epoch-registry-writes-by-the-leader-epochs-grow"
        case noFalseTaskReport = "3-no-task-reported-lost-or-finished-while-it-runs"
        case taskRunsOnce = "3b-a-task-runs-at-most-once"
        case noOrphanTasks = "3c-every-running-task-known-to-the-leader"
        case updatesAcknowledged = "4-every-status-update-acknowledged"
        case liveness = "5-liveness-after-heal"
        case coreTrapped = "no-core-traps"
    }

    public let rule: Rule
    public let time: Duration
    public let detail: String

    public var description: String { "[\(World.format(time))] \(rule.rawValue): \(detail)" }
}

/// The simulated cluster: a virtual clock, the agenda, a seeded generator, the ZooKeeper model,
/// the network, the processes, and the invariants checked as it runs.
final class World {
    let settings: SimulationSettings
    private(set) var now: Duration = .zero
    var rng: SplitMix64
    private var queue = EventQueue()
    private(set) var steps = 0
    var zk: SimZooKeeper!
    var network: SimNetwork!
    var masters: [SimMaster] = []
    var agents: [SimAgent] = []
    var schedulers: [SimScheduler] = []
    private var byEndpoint: [String: SimNode] = [:]
    /// Processes cut from ZooKeeper (by node name).
    var cutFromZooKeeper: Set<String> = []
    var truth = Truth()
    private var lastProcessID: Int32 = 100
    var breakage = Simulation.Breakage.none
    private(set) var violations: [Violation] = []
    private var traceRing: [String] = []
    private var traceHead = 0
    let traceAll: Bool
    private(set) var fullTrace: [String] = []
    static let traceKeep = 400

    let groupPath = "/mesos"

    init(seed: UInt64, settings: SimulationSettings, traceAll: Bool) {
        self.settings = settings
        self.rng = SplitMix64(seed: seed)
        self.traceAll = traceAll
        zk = SimZooKeeper(world: self)
        network = SimNetwork(world: self)
        zk.fencedWriteCommitted = { [unowned self] fence, lowest in
            if fence != lowest {
                violation(.oneLeaderPerEpoch, "a registry write fenced by \(fence) committed while \(lowest ?? "nobody") is the lowest member")
            }
        }
    }

    func register(_ node: SimNode) { byEndpoint[node.pid.endpoint] = node }

    /// A process id for a simulated process (executors and their tasks take two).
    func newProcessID() -> Int32 {
        lastProcessID += 2
        return lastProcessID
    }

    /// Builds the cluster and starts it: masters first, then agents, then schedulers; server-side
    /// session expiry runs all along.
    func bootstrap(masters: Int, agents: Int, schedulers: [SimScheduler.Plan]) {
        self.masters = (0..<masters).map { SimMaster(world: self, slot: $0 + 1) }
        self.agents = (0..<agents).map { SimAgent(world: self, slot: $0 + 1) }
        self.schedulers = schedulers.enumerated().map { SimScheduler(world: self, slot: $0.offset + 1, plan: $0.element) }
        for node in nodes { register(node) }
        func expiryLoop() {
            zk.expireStale()
            after(.milliseconds(100)) { expiryLoop() }
        }
        expiryLoop()
        for (i, m) in self.masters.enumerated() { after(.milliseconds(Int64(10 * i))) { m.start() } }
        for (i, a) in self.agents.enumerated() { after(.milliseconds(Int64(300 + 10 * i))) { a.start() } }
        for (i, s) in self.schedulers.enumerated() { after(.milliseconds(Int64(600 + 10 * i))) { s.start() } }
    }
    func node(at endpoint: String) -> SimNode? { byEndpoint[endpoint] }
    var nodes: [SimNode] { masters as [SimNode] + agents + schedulers }

    // MARK: Time

    func at(_ time: Duration, _ action: @escaping () -> Void) { queue.schedule(at: max(time, now), action) }
    func after(_ delay: Duration, _ action: @escaping () -> Void) { at(now + delay, action) }

    /// Runs the agenda until `time` (or until `stop` says so, checked after each step).
    func run(until time: Duration, stop: () -> Bool = { false }) {
        while let next = queue.nextTime, next <= time {
            guard let (t, action) = queue.pop() else { break }
            now = t
            steps += 1
            action()
            if stop() { return }
        }
        now = max(now, time)
    }

    func random(_ range: ClosedRange<Int64>) -> Int64 { Int64.random(in: range, using: &rng) }
    func chance(_ p: Double) -> Bool { Double(rng.next() % 1_000_000) / 1_000_000 < p }

    func netLatency() -> Duration { .microseconds(random(200...3000)) }
    func zkLatency() -> Duration { .microseconds(random(300...2000)) }

    func zkReachable(_ node: SimNode) -> Bool { zk.available && node.isAlive && !cutFromZooKeeper.contains(node.name) }

    // MARK: Trace and violations

    func trace(_ line: String) {
        let text = "[\(Self.format(now))] \(line)"
        if traceAll { fullTrace.append(text) }
        if traceRing.count < Self.traceKeep {
            traceRing.append(text)
        } else {
            traceRing[traceHead] = text
            traceHead = (traceHead + 1) % Self.traceKeep
        }
    }

    var recentTrace: [String] { Array(traceRing[traceHead...] + traceRing[..<traceHead]) }

    func violation(_ rule: Violation.Rule, _ detail: String) {
        let v = Violation(rule: rule, time: now, detail: detail)
        violations.append(v)
        trace("VIOLATION \(v.rule.rawValue): \(detail)")
    }

    static func format(_ d: Duration) -> String {
        let ms = d.milliseconds
        let s = String(ms / 1000), frac = String(ms % 1000)
        return s + "." + String(repeating: "0", count: 3 - frac.count) + frac + "s"
    }

    // MARK: What ZooKeeper holds, for the judges

    /// The registry as a reader finds it in ZooKeeper (nil: none, or unreadable); read again only
    /// when the tree changed (the judges ask after every status update).
    var registry: RegistryState? {
        if let (at, state) = registryCache, at == zk.changes { return state }
        var writer = RegistryWriter(layout: RegistryLayout(groupPath: groupPath))
        let read = Self.registryNodes(zk, writer.layout)
        let state = (try? writer.loaded(root: read.root, meta: read.meta, agents: read.agents)) ?? nil
        registryCache = (zk.changes, state)
        return state
    }
    private var registryCache: (Int, RegistryState?)?

    /// What a registry load reads (`RegistryWriter.loaded`): the old znode, the meta, every agent znode.
    static func registryNodes(_ zk: SimZooKeeper, _ layout: RegistryLayout) -> (root: [UInt8]?, meta: (data: [UInt8], version: Int32)?, agents: [(path: String, data: [UInt8])]) {
        let root = try? zk.getData(layout.root, watch: nil).get().0
        let meta = (try? zk.getData(layout.metaPath, watch: nil).get()).map { (data: $0.0, version: $0.1) }
        var agents: [(path: String, data: [UInt8])] = []
        for bucket in layout.bucketPaths {
            for name in (try? zk.children(bucket, watch: nil).get()) ?? [] {
                if let data = try? zk.getData(bucket + "/" + name, watch: nil).get().0 { agents.append((bucket + "/" + name, data)) }
            }
        }
        return (root, meta, agents)
    }

    /// The master the group's lowest member names.
    var zkLeader: (epoch: UInt64, master: SimMaster)? {
        guard let lowest = LeaderGroup.members(Array(zk.nodes[groupPath]?.children ?? [])).first,
            let data = zk.nodes[groupPath + "/" + lowest.name]?.data, let info = try? MasterInfoJSON.decode(data),
            let master = masters.first(where: { $0.pid.description == info.pid })
        else { return nil }
        return (lowest.sequence, master)
    }

    func master(pid: String) -> SimMaster? { masters.first { $0.pid.description == pid } }
}
