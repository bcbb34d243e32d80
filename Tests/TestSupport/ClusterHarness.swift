// A whole cluster of real processes for the ClusterTests and FaultTests (with hooks for fault
// proxies: ports and advertised ports, other ZooKeeper/master URLs per process, extra flags): a throw-away ZooKeeper, N mesos-master,
// M mesos-agent and an example-framework, all on loopback with short timeouts. Everything it
// starts dies with it (also when a test throws): daemons, and the agents' task process groups,
// which outlive a killed agent.
//
// Logs stay in $TMPDIR/cluster-tests/<test>/ after the run (replaced by the next run of the same
// test); a test that throws prints the tail of every log.
import FaultProxy
import Foundation
import MesosWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The timeouts every cluster runs with (DESIGN.md's defaults, scaled down so the suite is fast).
enum Knobs {
    static let sessionTimeout = Duration.seconds(2)
    static let sessionTimeoutFlag = "2secs"
    static let agentPingTimeout = Duration.milliseconds(500)
    static let agentPingTimeoutFlag = "500ms"
    /// Mesos's count (5): a 2.5 s budget, so a loaded machine that holds an agent or the master up
    /// for a second or two does not remove healthy agents mid-test.
    static let maxAgentPingTimeouts = 5
    /// Slack on top of the protocol's own timeouts: a loaded 2-core machine, JVM pauses, backoffs.
    /// Failing a bound means "broken", not "slow"; measured times are printed.
    static let margin = Duration.seconds(8)
}

func report(_ text: String) {
    print("[cluster] \(text)")
    fflush(nil)
}

struct ClusterError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The leader as ZooKeeper shows it (`mesosctl leader`) or as a master's log announces it.
struct LeaderRecord: Sendable, Hashable, CustomStringConvertible {
    var epoch: UInt64
    var pid: String
    var description: String { "\(pid) (epoch \(epoch))" }
}

/// One master process. `slot` names its work directory, which a restart reuses (as a supervisor would).
struct Master {
    let slot: Int
    let daemon: Daemon
}

/// Seconds with millisecond precision, for reports.
func seconds(_ d: Duration) -> String {
    String(format: "%.3f s", d.inSeconds)
}

final class Cluster {
    let zk: ZooKeeperServer
    let directory: URL
    private(set) var masters: [Master] = []
    private(set) var agents: [Daemon] = []
    private(set) var frameworks: [Daemon] = []
    /// The last framework started.
    var framework: Daemon? { frameworks.last }
    /// Other processes (agent swarms), stopped at teardown like the rest.
    private(set) var others: [Daemon] = []
    private(set) var proxies: [FaultProxy] = []
    private var spawned = 0
    private var slots = 0
    private var agentSlots = 0
    private var agentSlot: [ObjectIdentifier: Int] = [:]

    /// Added to the environment of the processes started from now on, by product
    /// (`mesos-master`, `mesos-agent`, `example-framework`, ...): e.g. `LIBPROCESS_SSL_*`.
    var environments: [String: [String: String]] = [:]

    /// The masters' group and registry live under this znode.
    var url: String { "zk://\(zk.connectString)/mesos" }

    init(zk: ZooKeeperServer, name: String) throws {
        self.zk = zk
        let safe = String(name.prefix { $0 != "(" }.map { $0.isLetter || $0.isNumber ? $0 : "-" })
        directory = FileManager.default.temporaryDirectory.appending(path: "cluster-tests/\(safe)")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    private func daemon(_ name: String, _ product: String, _ arguments: [String]) throws -> Daemon {
        spawned += 1
        return try Daemon(
            "\(String(format: "%02d", spawned))-\(name)", executable: product.hasPrefix("/") ? product : Products.path(product),
            arguments: arguments, environment: environments[product] ?? [:],
            logDirectory: directory.appending(path: "logs"))
    }

    // MARK: Starting

    /// Starts `masters` masters (the first one leads), `agents` agents (registered), and with
    /// `tasks` > 0 a framework whose tasks all run; returns once all of that is true.
    /// `taskCPUs`: each agent offers 2 cpus, so 0.8 puts at most two tasks on one agent.
    /// `maxAgentPingTimeouts`: the masters' ping budget (default `Knobs`: 2.5 s); tests whose agents
    /// are down on purpose and must come back raise it, so a loaded machine cannot remove them.
    func start(
        masters: Int, agents: Int, tasks: Int, command: String = "sleep 100000", taskCPUs: Double = 0.1,
        maxAgentPingTimeouts: Int = Knobs.maxAgentPingTimeouts
    ) async throws {
        for i in 0..<masters {
            let master = try startMaster(maxAgentPingTimeouts: maxAgentPingTimeouts)
            if i == 0 {
                try await master.daemon.waitFor("leading", timeout: .seconds(20))
            } else {
                try await master.daemon.waitFor("detector_leader", timeout: .seconds(20))
            }
        }
        for _ in 0..<agents {
            let agent = try startAgent()
            try await agent.waitFor("registered", timeout: .seconds(20))
        }
        if tasks > 0 {
            let fw = try startFramework(tasks: tasks, command: command, taskCPUs: taskCPUs)
            try await fw.waitFor("all_running", ["count": "\(tasks)"], timeout: .seconds(30))
        }
    }

    /// A new master in a new slot, or (with `slot`) a restart reusing that slot's work directory.
    @discardableResult
    func startMaster(
        slot: Int? = nil, zk: String? = nil, port: Int = 0, advertisePort: Int? = nil,
        maxAgentPingTimeouts: Int = Knobs.maxAgentPingTimeouts, extra: [String] = []
    ) throws -> Master {
        let slot = slot ?? { slots += 1; return slots }()
        let daemon = try daemon("master\(slot)", "mesos-master", [
            "--zk", zk ?? url, "--port", "\(port)", "--work_dir", directory.appending(path: "master\(slot)").path,
            "--zk_session_timeout", Knobs.sessionTimeoutFlag, "--agent_ping_timeout", Knobs.agentPingTimeoutFlag,
            "--max_agent_ping_timeouts", "\(maxAgentPingTimeouts)", "--allocation_interval", "200ms", "--log_level", "info",
        ] + (advertisePort.map { ["--advertise_port", "\($0)"] } ?? []) + extra)
        let master = Master(slot: slot, daemon: daemon)
        masters.append(master)
        return master
    }

    /// A master without ZooKeeper on a fixed port (it leads alone); a restart reuses the slot's work directory.
    @discardableResult
    func startStandaloneMaster(slot: Int? = nil, port: Int, extra: [String] = []) throws -> Master {
        let slot = slot ?? { slots += 1; return slots }()
        let daemon = try daemon("master\(slot)", "mesos-master", [
            "--port", "\(port)", "--work_dir", directory.appending(path: "master\(slot)").path,
            "--agent_ping_timeout", Knobs.agentPingTimeoutFlag, "--max_agent_ping_timeouts", "\(Knobs.maxAgentPingTimeouts)",
            "--allocation_interval", "200ms", "--log_level", "info",
        ] + extra)
        let master = Master(slot: slot, daemon: daemon)
        masters.append(master)
        return master
    }

    /// `agents` agents in one `agent-swarm` process (each its own ZooKeeper session, port and work directory).
    @discardableResult
    func startSwarm(agents: Int, extra: [String] = []) throws -> Daemon {
        let swarm = try daemon("swarm", "agent-swarm", [
            "--master", url, "--agents", "\(agents)", "--work_dir", directory.appending(path: "swarm").path,
            "--zk_session_timeout", Knobs.sessionTimeoutFlag, "--registration_backoff_factor", "200ms",
        ] + extra)
        others.append(swarm)
        return swarm
    }

    @discardableResult
    func startAgent(master: String? = nil, port: Int = 0, advertisePort: Int? = nil, slot: Int? = nil, extra: [String] = []) throws -> Daemon {
        let n = slot ?? { agentSlots += 1; return agentSlots }()
        let agent = try daemon("agent\(n)", "mesos-agent", [
            "--master", master ?? url, "--port", "\(port)", "--work_dir", directory.appending(path: "agent\(n)").path,
            "--zk_session_timeout", Knobs.sessionTimeoutFlag, "--registration_backoff_factor", "200ms",
            "--status_update_retry_interval", "1secs", "--log_level", "info",
        ] + (advertisePort.map { ["--advertise_port", "\($0)"] } ?? []) + extra)
        agents.append(agent)
        agentSlot[ObjectIdentifier(agent)] = n
        return agent
    }

    /// The agent started again on its work directory (after it exited or was killed): a new
    /// process, with the old one's checkpoint.
    func restartAgent(_ old: Daemon, master: String? = nil, extra: [String] = []) throws -> Daemon {
        guard let n = agentSlot[ObjectIdentifier(old)] else { throw ClusterError("\(old.name) is not an agent of this cluster") }
        return try startAgent(master: master, slot: n, extra: extra)
    }

    /// The agent's `--work_dir`.
    func workDirectory(of agent: Daemon) -> URL {
        directory.appending(path: "agent\(agentSlot[ObjectIdentifier(agent)] ?? 0)")
    }

    @discardableResult
    func startFramework(tasks: Int, command: String = "sleep 100000", taskCPUs: Double = 0.1, master: String? = nil, extra: [String] = []) throws -> Daemon {
        let fw = try daemon("framework", "example-framework", [
            "--master", master ?? url, "--tasks", "\(tasks)", "--command", command, "--task_cpus", "\(taskCPUs)",
            "--zk_session_timeout", Knobs.sessionTimeoutFlag, "--log_level", "info",
        ] + extra)
        frameworks.append(fw)
        return fw
    }

    /// A fault proxy to 127.0.0.1:`port`, stopped at teardown.
    func proxy(to port: Int) throws -> FaultProxy {
        let proxy = try FaultProxy(targetPort: port)
        proxies.append(proxy)
        return proxy
    }

    /// A master whose bus is reached only through a proxy (`--advertise_port`): agents and frameworks
    /// send to it through `proxy` (client->server is toward the master).
    func startProxiedMaster(zk: String? = nil, extra: [String] = []) throws -> (Master, FaultProxy) {
        let port = try Loopback.freePort()
        let proxy = try proxy(to: port)
        return (try startMaster(zk: zk, port: port, advertisePort: proxy.port, extra: extra), proxy)
    }

    /// An agent the master reaches only through a proxy (client->server is master->agent).
    func startProxiedAgent(master: String? = nil, extra: [String] = []) throws -> (Daemon, FaultProxy) {
        let port = try Loopback.freePort()
        let proxy = try proxy(to: port)
        return (try startAgent(master: master, port: port, advertisePort: proxy.port, extra: extra), proxy)
    }

    /// The framework reached by the master through a proxy (master -> scheduler traffic).
    func startProxiedFramework(tasks: Int, taskCPUs: Double = 0.1) throws -> (Daemon, FaultProxy) {
        let port = try Loopback.freePort()
        let proxy = try proxy(to: port)
        return (try startFramework(tasks: tasks, taskCPUs: taskCPUs, extra: ["--port", "\(port)", "--advertise_port", "\(proxy.port)"]), proxy)
    }

    /// `zk://` through `proxy` (standalone ZooKeeper only).
    func url(through proxy: FaultProxy) -> String { "zk://\(proxy.address)/mesos" }

    /// A proxy to the (standalone) ZooKeeper.
    func zooKeeperProxy() throws -> FaultProxy {
        let port = Int(zk.connectString.split(separator: ":").last ?? "") ?? 0
        return try proxy(to: port)
    }

    // MARK: Who leads

    var liveMasters: [Master] { masters.filter(\.daemon.isRunning) }

    /// The master's bus pid (`master@127.0.0.1:PORT`), from its `listening` milestone.
    func busPID(of daemon: Daemon) async throws -> String {
        try await daemon.waitFor("listening", timeout: .seconds(20))["pid"] ?? ""
    }

    /// A `mesosctl` run (stopped at teardown like the rest), e.g. `mesosctl resolve --master ...`.
    func tool(_ name: String, _ arguments: [String]) throws -> Daemon {
        try process("mesosctl-\(name)", "mesosctl", arguments)
    }

    /// Any other process (a product's name or an absolute path), stopped at teardown like the rest.
    func process(_ name: String, _ executable: String, _ arguments: [String]) throws -> Daemon {
        let process = try daemon(name, executable, arguments)
        others.append(process)
        return process
    }

    /// The leader ZooKeeper shows, asked with `mesosctl leader` (a separate process, as an operator would).
    func leaderInZooKeeper(timeout: String = "5secs") async throws -> LeaderRecord {
        let probe = try daemon("mesosctl-leader", "mesosctl", [
            "leader", "--master", url, "--timeout", timeout, "--zk_session_timeout", Knobs.sessionTimeoutFlag,
        ])
        guard let status = await probe.waitForExit(timeout: .seconds(30)) else {
            throw ClusterError("mesosctl leader did not exit")
        }
        guard status == 0, let json = probe.lines.first(where: { $0.hasPrefix("{\"epoch\"") }),
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
            let epoch = (object["epoch"] as? NSNumber)?.uint64Value, let pid = object["pid"] as? String
        else { throw ClusterError("mesosctl leader found no leader (status \(status)): \(probe.log)") }
        return LeaderRecord(epoch: epoch, pid: pid)
    }

    /// The running master ZooKeeper shows as the leader, once that master says it leads.
    func leader() async throws -> (Master, LeaderRecord) {
        let record = try await leaderInZooKeeper()
        for master in liveMasters {
            guard try await busPID(of: master.daemon) == record.pid else { continue }
            try await master.daemon.waitFor("leading", ["epoch": "\(record.epoch)"], timeout: .seconds(20))
            return (master, record)
        }
        throw ClusterError("ZooKeeper shows \(record) as the leader, which is none of the running masters")
    }

    /// The epoch a master's log last announced it leads at, if any.
    func leadingEpoch(of daemon: Daemon) -> UInt64? {
        daemon.milestones("leading").last?["epoch"].flatMap { UInt64($0) }
    }

    /// Waits until a running master other than `old`'s announces it leads at a newer epoch, and
    /// ZooKeeper agrees; returns it and how long that took from `since`.
    func waitForNewLeader(after old: LeaderRecord, since: ContinuousClock.Instant, timeout: Duration)
        async throws -> (Master, LeaderRecord, Duration)
    {
        var found: (Master, UInt64)?
        var elapsed = Duration.zero
        try await Poll.until("a new leader after \(old)", timeout: timeout, every: .milliseconds(10)) {
            for master in liveMasters {
                if let epoch = leadingEpoch(of: master.daemon), epoch > old.epoch {
                    elapsed = ContinuousClock.now - since
                    found = (master, epoch)
                    return true
                }
            }
            return false
        }
        let (master, epoch) = found!
        let record = LeaderRecord(epoch: epoch, pid: try await busPID(of: master.daemon))
        let inZooKeeper = try await leaderInZooKeeper()
        #expect(inZooKeeper == record, "the new leader's log and ZooKeeper disagree")
        #expect(record.pid != old.pid)
        return (master, record, elapsed)
    }

    // MARK: Agents, framework, tasks

    /// Waits until every running agent has re-registered with `leader`.
    func waitForAgentsReregistered(with leader: LeaderRecord, timeout: Duration = .seconds(20)) async throws {
        for agent in agents where agent.isRunning {
            try await agent.waitFor("reregistered", ["master": leader.pid, "epoch": "\(leader.epoch)"], timeout: timeout)
        }
    }

    /// Waits until the framework printed REREGISTERED naming `leader`.
    func waitForFrameworkReregistered(with leader: LeaderRecord, timeout: Duration = .seconds(20)) async throws {
        let fw = try #require(framework)
        try await fw.waitFor("reregistered", ["master": leader.pid], timeout: timeout)
    }

    /// The agent's tasks ("framework/task") and their process ids, from the `task_started`
    /// milestones of the executors it launched (the executor forks the task).
    func taskPIDs(of agent: Daemon) -> [String: pid_t] {
        var result: [String: pid_t] = [:]
        for e in agent.launchedExecutors {
            if let pid = e.taskPID { result[e.taskKey] = pid }
        }
        return result
    }

    /// Every task of every agent ever started.
    var allTaskPIDs: [String: pid_t] {
        agents.reduce(into: [:]) { all, agent in all.merge(taskPIDs(of: agent)) { a, _ in a } }
    }

    /// Tasks whose process is gone (or a zombie); empty when all run.
    func deadTasks() -> [String] {
        allTaskPIDs.filter { !Self.isTaskRunning($0.value) }.keys.sorted()
    }

    /// A task's `sh -c "sleep ..."` is alive: it exists, is no zombie, and is still our command.
    static func isTaskRunning(_ pid: pid_t) -> Bool {
        guard let stat = readProcFile("/proc/\(pid)/stat"),
            let end = stat.range(of: ") ", options: .backwards), stat[end.upperBound...].first != "Z",
            let cmdline = readProcFile("/proc/\(pid)/cmdline")
        else { return false }
        return cmdline.contains("sleep")
    }

    /// The ensemble member (1-based, in connect-string order) `daemon` has a ZooKeeper connection
    /// to, found from its sockets in /proc (the logs only name the whole connect string).
    func zooKeeperMember(of daemon: Daemon) -> Int? {
        let ports = zk.connectString.split(separator: ",").map { Int($0.split(separator: ":").last ?? "") ?? -1 }
        let fdDirectory = "/proc/\(daemon.pid)/fd"
        let inodes = Set(((try? FileManager.default.contentsOfDirectory(atPath: fdDirectory)) ?? []).compactMap { fd -> String? in
            guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDirectory)/\(fd)"),
                link.hasPrefix("socket:[")
            else { return nil }
            return String(link.dropFirst("socket:[".count).dropLast())
        })
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = readProcFile(table) else { continue }
            for row in text.split(separator: "\n").dropFirst() {
                let columns = row.split(separator: " ")
                // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
                guard columns.count > 9, columns[3] == "01", inodes.contains(String(columns[9])),
                    let remotePort = columns[2].split(separator: ":").last.flatMap({ Int($0, radix: 16) }),
                    let index = ports.firstIndex(of: remotePort)
                else { continue }
                return index + 1
            }
        }
        return nil
    }

    /// Each ensemble member's mode (`leader`, `follower`, `standalone`; `down` if it does not
    /// answer), asked with the `srvr` four-letter word.
    func zooKeeperModes() async throws -> [String] {
        zk.connectString.split(separator: ",").map { server in
            server.split(separator: ":").last.flatMap { Int($0) }.flatMap { ZooKeeperServer.mode(port: $0, timeout: .seconds(2)) } ?? "down"
        }
    }

    /// Status updates the framework printed that report a lost task.
    var lostTaskLines: [String] { framework?.milestones("status", ["state": "TASK_LOST"]).map(\.line) ?? [] }

    // MARK: Teardown

    /// Prints the last lines of every log (for a failing test).
    func dumpLogs(lines count: Int = 25) {
        for daemon in masters.map(\.daemon) + agents + frameworks + others {
            let state = daemon.exitStatus.map { "exited \($0)" } ?? "running"
            report("---- \(daemon.name) (pid \(daemon.pid), \(state)), last \(count) lines of \(daemon.logFile.path)")
            for line in daemon.lines.suffix(count) { print("  \(line)") }
        }
        fflush(nil)
    }

    /// Kills everything this cluster started: task process groups, agents, framework, masters.
    /// Stopped processes are continued first, so nothing lingers half-dead.
    func tearDown() async {
        for proxy in proxies { proxy.stop() }
        let all = masters.map(\.daemon) + agents + frameworks + others
        for daemon in all {
            daemon.signal(SIGKILL)
            daemon.signal(SIGCONT)
        }
        for daemon in all { await daemon.waitForExit(timeout: .seconds(10)) }
        // Executors lead sessions of their own (they outlive a killed agent): each session, with its task.
        for agent in agents { for e in agent.launchedExecutors { e.killSession() } }
        for pid in allTaskPIDs.values where Self.isTaskRunning(pid) { _ = kill(-pid, SIGKILL) }
    }
}

/// A /proc file read to its end. Foundation stops after the first short read, which for a
/// procfs table is one page (/proc/net/tcp with a few dozen sockets is longer).
func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        bytes += buffer[..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The text after `prefix` in `line` up to the next space.
func field(_ line: String, after prefix: String) throws -> String {
    guard let range = line.range(of: prefix) else { throw ClusterError("no '\(prefix)' in: \(line)") }
    return String(line[range.upperBound...].prefix { $0 != " " })
}

/// Runs `body` with a fresh ZooKeeper (`topology`) and an empty cluster on it; tears both down
/// afterwards, also when `body` throws (then every log's tail is printed).
func withCluster<T>(
    _ topology: ZooKeeperServer.Topology = .standalone, name: String = #function,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (Cluster) async throws -> T
) async throws -> T {
    let started = ContinuousClock.now
    return try await withZooKeeper(topology) { zk in
        let cluster = try Cluster(zk: zk, name: name)
        do {
            let result = try await body(cluster)
            await cluster.tearDown()
            report("\(name): done in \(seconds(ContinuousClock.now - started)); logs in \(cluster.directory.path)")
            return result
        } catch {
            report("\(name) failed: \(error); logs in \(cluster.directory.path)")
            cluster.dumpLogs()
            await cluster.tearDown()
            throw error
        }
    }
}

extension Cluster {
    /// Restarts every master slot whose latest process has exited (the job of a supervisor such as
    /// systemd); returns the restarted slots.
    @discardableResult
    func superviseMasters() throws -> [Int] {
        var latest: [Int: Master] = [:]
        for master in masters { latest[master.slot] = master }
        var restarted: [Int] = []
        for (slot, master) in latest.sorted(by: { $0.key < $1.key }) where !master.daemon.isRunning {
            try startMaster(slot: slot)
            restarted.append(slot)
        }
        return restarted
    }

    /// The agent id from an agent's `registered` milestone.
    func agentID(of agent: Daemon) async throws -> String {
        try await agent.waitFor("registered", timeout: .seconds(20))["agent_id"] ?? ""
    }

    /// The epochs of the leaders an agent (re-)registered with, in log order.
    static func registeredEpochs(of agent: Daemon) -> [UInt64] {
        agent.milestones.filter { $0.event == "registered" || $0.event == "reregistered" }.compactMap { $0["epoch"].flatMap { UInt64($0) } }
    }
}
