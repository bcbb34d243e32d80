import FaultProxy
import Foundation
import Logging
import MesosCore
import MesosDaemon
import MesosHA
import MesosWire
import ProcessSupport
import Synchronization
import ZooKeeper

/// One agent event printed by agent-swarm: `<epoch_ms> agent=<i> <kind> key=value...`.
struct AgentEvent: Sendable {
    var at: Int64
    var agent: Int
    var kind: String
    var fields: [String: String]

    init?(line: String) {
        let parts = line.split(separator: " ")
        guard parts.count >= 3, let at = Int64(parts[0]), parts[1].hasPrefix("agent="), let agent = Int(parts[1].dropFirst(6)) else { return nil }
        self.at = at
        self.agent = agent
        kind = String(parts[2])
        var fields: [String: String] = [:]
        for p in parts.dropFirst(3) {
            guard let eq = p.firstIndex(of: "=") else { continue }
            fields[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        self.fields = fields
    }

    var epoch: UInt64? { fields["epoch"].flatMap { UInt64($0) } }
}

struct ClusterConfig: Sendable {
    var bin: String
    var zkServers: [Int]  // client ports of the ZooKeeper servers on 127.0.0.1
    var zkLabel: String
    var agents: Int
    var agentsPerProcess: Int
    var tasks: Int
    var sessionTimeout: String
    var sessionTimeoutDuration: Duration
    var agentBackoff: String
    var work: String
    var path: String
    var extraMasterFlags: [String]
    var zkPids: [pid_t] = []
    var swarmFlags: [String] = []
    /// Niceness of the swarm processes (`nice -n`; 0: not niced).
    var swarmNice = 0
    /// The agents' work directories (nil: `<work>/agents`).
    var agentsWork: String?
}

/// A master process: its port and work directory stay across restarts; it reaches ZooKeeper only
/// through its own proxies (one per server), which the "cut" failover blackholes.
final class MasterSlot: @unchecked Sendable {  // driven by the harness task only
    let index: Int
    let port: Int
    let workDir: String
    let proxies: [FaultProxy]
    var child: Daemon?

    init(index: Int, config: ClusterConfig) throws {
        self.index = index
        port = try Loopback.freePort()
        workDir = "\(config.work)/master\(index)"
        proxies = try config.zkServers.map { try FaultProxy(targetPort: $0) }
    }

    var pid: String { "master@127.0.0.1:\(port)" }

    func start(_ config: ClusterConfig) throws {
        let zk = "zk://" + proxies.map(\.address).joined(separator: ",") + config.path
        child = try Daemon(
            "master\(index)", executable: config.bin + "/mesos-master",
            arguments: ["--zk", zk, "--port", "\(port)", "--work_dir", workDir, "--zk_session_timeout", config.sessionTimeout] + config.extraMasterFlags,
            logDirectory: URL(fileURLWithPath: config.work))
        if let child { Children.daemon(child.pid) }
    }
}

/// A whole cluster for one agent count: 3 masters, the agents in swarm processes, the in-process
/// framework, and the harness's own leader detector (timestamps every leader change).
final class Cluster: @unchecked Sendable {  // driven by the harness task only
    let config: ClusterConfig
    let masters: [MasterSlot]
    private(set) var swarms: [Daemon] = []
    /// The resident memory of a master holding no agents (the fewest KiB of the three, sampled
    /// before any agent starts): the baseline of the leader's memory per agent. Not a standby's
    /// later on: a standby keeps a warm copy of the registry, which grows with the agents.
    private(set) var emptyMasterRSS: Int?
    private(set) var events: [AgentEvent] = []
    private(set) var framework: BenchFramework?
    private let leaders = LeaderLog()
    private var detector: (any MasterDetector)?
    private var session: ZooKeeperSession?
    let logger: Logger

    var zkDirect: String { "zk://" + config.zkServers.map { "127.0.0.1:\($0)" }.joined(separator: ",") + config.path }

    init(_ config: ClusterConfig) throws {
        self.config = config
        try FileManager.default.createDirectory(atPath: config.work, withIntermediateDirectories: true)
        masters = try (1...3).map { try MasterSlot(index: $0, config: config) }
        var logger = Logger(label: "failover-bench")
        logger.logLevel = .critical
        self.logger = logger
    }

    // MARK: Observation

    var leaderHistory: [(at: Int64, leader: Leader?)] { leaders.history }
    var currentLeader: Leader? { leaders.history.last?.leader ?? nil }

    /// Reads whatever the swarms printed since the last call.
    @discardableResult
    func poll() -> Int {
        var n = 0
        for swarm in swarms {
            for line in swarm.newLines() {
                if let e = AgentEvent(line: line) {
                    if e.kind == "task_started", let pid = e.fields["pid"].flatMap({ pid_t($0) }) { Children.task(pid) }
                    events.append(e)
                    n += 1
                }
            }
        }
        return n
    }

    /// Starts watching, before a fault, for (a) the leader's znode to vanish and (b) the registry to
    /// be written with an epoch above `epoch` (a new leader has recovered and serves). Each result is
    /// the time the watch fired; nil if it did not within the probe's life.
    func probe(above epoch: UInt64) async -> Probe? {
        guard let session, let children = try? await session.children(config.path),
            let leader = LeaderGroup.members(children).first
        else { return nil }
        let probe = Probe()
        guard let (stat, watch) = try? await session.watchExists(config.path + "/" + leader.name), stat != nil else { return nil }
        probe.add(Task {
            if (try? await watch.event()) == .deleted { probe.set(\.znodeGone, nowMs()) }
        })
        let registry = RegistryLayout(groupPath: config.path).metaPath
        probe.add(Task {
            var fired: Int64?
            while !Task.isCancelled {
                guard let (data, _, watch) = try? await session.watchData(registry) else { return }
                if let r = try? RegistryMeta(serializedBytes: data), (r.highestEpoch ?? 0) > epoch {
                    if let fired { probe.set(\.registryWritten, fired) }
                    return
                }
                guard let event = try? await watch.event(), event == .dataChanged else { return }
                fired = nowMs()
            }
        })
        return probe
    }

    func members() async -> Int {
        guard let session, let children = try? await session.children(String(config.path)) else { return -1 }
        return LeaderGroup.members(children).count
    }

    // MARK: Life cycle

    func start() async throws {
        let t0 = nowMs()
        let session = ZooKeeperSession(servers: config.zkServers.map { "127.0.0.1:\($0)" }.joined(separator: ","), sessionTimeout: config.sessionTimeoutDuration, logger: logger)
        self.session = session
        session.start()
        guard await Poll.holds(within: .seconds(30), { session.isConnected }) else { throw HarnessError("harness session did not connect") }
        try await session.createPath(config.path)

        let detector = try MasterDetectors.make(master: zkDirect, sessionTimeout: config.sessionTimeoutDuration, logger: logger)
        self.detector = detector
        let changes = detector.changes
        Task.detached { [leaders] in
            for await leader in changes {
                let at = nowMs()
                leaders.append(at, leader)
            }
        }
        await detector.start()

        for m in masters { try m.start(config) }
        guard await Poll.holds(within: .seconds(60), { currentLeader != nil }) else { throw HarnessError("no leader elected") }
        guard await Poll.holds(within: .seconds(30), { await members() == 3 }) else { throw HarnessError("3 masters did not join") }
        say("  masters up, leader \(currentLeader!) (\(nowMs() - t0) ms)")
        emptyMasterRSS = masters.compactMap { $0.child.flatMap { ProcessProbe.residentKiB($0.pid) } }.min()

        let processes = (config.agents + config.agentsPerProcess - 1) / config.agentsPerProcess
        for p in 0..<processes {
            let first = p * config.agentsPerProcess
            let count = min(config.agentsPerProcess, config.agents - first)
            let arguments = ["--master", zkDirect, "--agents", "\(count)", "--first_index", "\(first)", "--work_dir", config.agentsWork ?? "\(config.work)/agents",
                 "--zk_session_timeout", config.sessionTimeout, "--registration_backoff_factor", config.agentBackoff,
                 "--resources", "cpus:2;mem:1024"] + config.swarmFlags
            // nice execs agent-swarm: the pid is the swarm's.
            let niced = config.swarmNice > 0
            let swarm = try Daemon(
                "swarm\(p)", executable: niced ? "/usr/bin/nice" : config.bin + "/agent-swarm",
                arguments: niced ? ["-n", "\(config.swarmNice)", config.bin + "/agent-swarm"] + arguments : arguments,
                logDirectory: URL(fileURLWithPath: config.work))
            Children.swarm(swarm.pid)
            swarms.append(swarm)
        }
        let registered = await Poll.holds(within: .seconds(60 + config.agents / 5)) {
            poll()
            return Set(events.filter { $0.kind == "registered" }.map(\.agent)).count >= config.agents
        }
        guard registered else { throw HarnessError("only \(Set(events.filter { $0.kind == "registered" }.map(\.agent)).count) of \(config.agents) agents registered") }
        say("  \(config.agents) agents registered (\(nowMs() - t0) ms)")

        let framework = BenchFramework(master: zkDirect, taskCount: config.tasks, command: "sleep 100000", sessionTimeout: config.sessionTimeoutDuration, logger: logger)
        self.framework = framework
        try await framework.start()
        guard await Poll.holds(within: .seconds(60 + config.tasks / 5), { framework.runningTasks >= config.tasks }) else {
            throw HarnessError("only \(framework.runningTasks) of \(config.tasks) tasks running")
        }
        poll()
        say("  framework running \(config.tasks) tasks (\(nowMs() - t0) ms)")
    }

    func stop() async {
        await framework?.stop()
        await withTaskGroup(of: Void.self) { group in
            for s in swarms { group.addTask { await s.stop(SIGTERM, timeout: .seconds(30)) } }
            for m in masters { if let c = m.child { group.addTask { await c.stop(SIGKILL) } } }
        }
        // Leftover tasks (a swarm that had to be killed leaves its tasks running).
        for e in events where e.kind == "task_started" {
            if let pid = e.fields["pid"].flatMap({ Int32($0) }) { kill(-pid, SIGKILL) }
        }
        for m in masters { for p in m.proxies { p.stop() } }
        await detector?.stop()
        await session?.close()
    }

    /// Task processes the agents started that are still alive.
    func aliveTasks() -> (alive: Int, started: Int) {
        var pids: [String: Int32] = [:]
        for e in events where e.kind == "task_started" {
            if let task = e.fields["task"], let pid = e.fields["pid"].flatMap({ Int32($0) }) { pids[task] = pid }
        }
        let alive = pids.values.filter { kill($0, 0) == 0 }.count
        return (alive, pids.count)
    }

    /// CPU time so far (ms) of each running master (by slot index), of all swarms together and of
    /// the ZooKeeper servers (-1 when their pids are not known).
    func cpuSample() -> (masters: [Int: Int64], swarms: Int64, zk: Int64) {
        var masters: [Int: Int64] = [:]
        for m in self.masters { if let c = m.child, c.isRunning, let t = ProcessProbe.cpuMilliseconds(c.pid) { masters[m.index] = t } }
        let swarms = self.swarms.compactMap { ProcessProbe.cpuMilliseconds($0.pid) }.reduce(0, +)
        let zk = config.zkPids.isEmpty ? -1 : config.zkPids.compactMap { ProcessProbe.cpuMilliseconds($0) }.reduce(0, +)
        return (masters, swarms, zk)
    }

    func slot(of leader: Leader) -> MasterSlot? { masters.first { $0.pid == leader.pid.description } }
}

/// Every leader change the harness's detector reported, with its time.
final class LeaderLog: Sendable {
    private let entries = Mutex<[(at: Int64, leader: Leader?)]>([])
    var history: [(at: Int64, leader: Leader?)] { entries.withLock { $0 } }
    func append(_ at: Int64, _ leader: Leader?) { entries.withLock { $0.append((at, leader)) } }
}

/// What `Cluster.probe` saw, in epoch milliseconds.
final class Probe: Sendable {
    struct Times: Sendable {
        var znodeGone: Int64?
        var registryWritten: Int64?
    }
    private let state = Mutex(Times())
    private let tasks = Mutex<[Task<Void, Never>]>([])

    var times: Times { state.withLock { $0 } }
    func set(_ key: WritableKeyPath<Times, Int64?> & Sendable, _ at: Int64) { state.withLock { if $0[keyPath: key] == nil { $0[keyPath: key] = at } } }
    func add(_ task: Task<Void, Never>) { tasks.withLock { $0.append(task) } }
    func cancel() { for t in tasks.withLock({ $0 }) { t.cancel() } }
}
