// Failover latency of the HA cluster: real ZooKeeper, 3 mesos-master processes (each reaching
// ZooKeeper through its own blackhole-able proxy), M agents in agent-swarm processes, and an
// in-process framework with running tasks. For each failover kind (leader SIGTERM, SIGKILL, cut
// from ZooKeeper) it records, from the moment of the fault: new leader elected (seen by the
// harness's own ZooKeeper detector), first and all agents re-registered (agent-swarm's
// millisecond timestamps), framework re-registered and first offer from the new leader (the
// in-process SchedulerDriver), tasks lost. Run through Benchmarks/failover-bench.sh.
import ArgumentParser
import Foundation
import Logging
import MesosCore
import MesosDaemon
import MesosHA
import MesosWire
import ProcessSupport
import ZooKeeper

@main
struct FailoverBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover-bench", abstract: "Failover latency of the HA cluster, and the ZooKeeper floor.",
        subcommands: [Run.self, Floor.self])
}

enum Kind: String, CaseIterable, ExpressibleByArgument {
    case term, kill, cut
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Failovers of each kind for each agent count; one JSON line per failover.")

    @Option(help: "ZooKeeper client ports on 127.0.0.1, comma-separated (one per server).") var zkPorts: String
    @Option(help: "Label of this ZooKeeper setup in the results (standalone, ensemble3).") var zkLabel = "standalone"
    @Option(help: "Directory with mesos-master and agent-swarm.") var bin: String
    @Option(help: "Agent counts, comma-separated.") var agents = "1,10"
    @Option(help: "Failovers of each kind per agent count.") var rounds = 2
    @Option(help: "Failover kinds, comma-separated: term, kill, cut.") var kinds = "term,kill,cut"
    @Option(help: "ZooKeeper session timeout of every process (Mesos units).") var sessionTimeout = "2secs"
    @Option(help: "Agents' --registration_backoff_factor.") var agentBackoff = "1secs"
    @Option(help: "Agents per agent-swarm process.") var agentsPerProcess = 250
    @Option(help: "Tasks (one per agent) = min(agents, this).") var maxTasks = 100
    @Option(help: "Work directory (logs, work dirs).") var work: String
    @Option(help: "Where the agents' work directories go (default: under --work). The swarms' agents share one disk; on a tmpfs their checkpoint writes cost what they would on hosts of their own.") var agentsWork = ""
    @Option(help: "Append one JSON object per failover here.") var out: String
    @Option(help: "Pause after a failover is complete and the old leader is back as a standby.") var settle = "1secs"
    @Option(help: "Extra agent-swarm flags, space-separated (e.g. --shared_detector=false --tick_interval=50ms).") var swarmFlags = ""
    @Option(help: "Extra mesos-master flags, space-separated (e.g. --return_routes=true).") var masterFlags = ""
    @Option(help: "Niceness of the agent-swarm processes (0: the masters' own). Above 0 they yield the CPU to the masters, as agents on their own machines would.") var swarmNice = 0
    @Option(help: "ZooKeeper server process ids, comma-separated (their CPU time per failover goes into the records).") var zkPids = ""

    func run() async throws {
        let ports = zkPorts.split(separator: ",").compactMap { Int($0) }
        guard !ports.isEmpty else { throw ValidationError("--zk-ports") }
        guard let timeout = MesosDuration(parsing: sessionTimeout)?.duration, let settle = MesosDuration(parsing: settle)?.duration else {
            throw ValidationError("bad duration")
        }
        let kinds = try self.kinds.split(separator: ",").map { k -> Kind in
            guard let kind = Kind(rawValue: String(k)) else { throw ValidationError("unknown kind \(k)") }
            return kind
        }
        let sink = JSONLines(path: out)
        // Stopped by hand (or by a timeout's SIGTERM): stop the cluster too, then exit as signalled.
        let signals = TerminationSignals { signo in
            say("  signal \(signo): stopping the cluster")
            Children.stopAll()
            Foundation.exit(128 + signo)
        }
        defer { withExtendedLifetime(signals) {} }
        for m in agents.split(separator: ",").compactMap({ Int($0) }) {
            let config = ClusterConfig(
                bin: bin, zkServers: ports, zkLabel: zkLabel, agents: m, agentsPerProcess: agentsPerProcess, tasks: min(m, maxTasks),
                sessionTimeout: sessionTimeout, sessionTimeoutDuration: timeout, agentBackoff: agentBackoff,
                work: "\(work)/\(zkLabel)-M\(m)", path: "/failover-bench/\(zkLabel)-M\(m)-\(UInt32.random(in: 0...UInt32.max))",
                extraMasterFlags: masterFlags.split(separator: " ").map(String.init), zkPids: zkPids.split(separator: ",").compactMap { pid_t($0) },
                swarmFlags: swarmFlags.split(separator: " ").map(String.init), swarmNice: swarmNice,
                agentsWork: agentsWork.isEmpty ? nil : "\(agentsWork)/\(zkLabel)-M\(m)")
            say("\(zkLabel), M=\(m): starting the cluster (\(config.work))")
            let cluster = try Cluster(config)
            do {
                try await cluster.start()
                for round in 1...rounds {
                    for kind in kinds {
                        var record = try await failover(cluster, kind: kind, round: round, timeout: timeout)
                        record["zk"] = zkLabel
                        record["agents"] = m
                        record["tasks_expected"] = config.tasks
                        record["session_timeout_ms"] = Int(timeout.inSeconds * 1000)
                        record["type"] = "failover"
                        sink.append(record)
                        try await restore(cluster, settle: settle)
                    }
                }
            } catch {
                say("  M=\(m) aborted: \(error)")
                sink.append(["type": "error", "zk": zkLabel, "agents": m, "error": "\(error)"])
            }
            say("  stopping the cluster")
            await cluster.stop()
        }
    }

    /// One failover; returns its record (times in ms after the fault, null when it did not happen in time).
    func failover(_ cluster: Cluster, kind: Kind, round: Int, timeout: Duration) async throws -> [String: Any] {
        cluster.poll()
        guard let old = cluster.currentLeader, let victim = cluster.slot(of: old), let child = victim.child else {
            throw HarnessError("no leader to fail over from")
        }
        guard let framework = cluster.framework else { throw HarnessError("no framework") }
        let eventsBefore = cluster.events.count
        let recordsBefore = framework.recordCount
        let m = cluster.config.agents
        let probe = await cluster.probe(above: old.epoch)
        defer { probe?.cancel() }
        // ZooKeeper's idle request rate (the sessions' pings, the framework), to tell the failover's own requests from it.
        let idleWindow: Int64 = 1000
        let idleStart = FourLetterWords.packetsReceived(ports: cluster.config.zkServers)
        try? await Task.sleep(for: .milliseconds(idleWindow))
        let zkBefore = FourLetterWords.packetsReceived(ports: cluster.config.zkServers)
        let cpuBefore = cluster.cpuSample()
        let overflowsBefore = ListenQueue.overflows()
        let t0 = nowMs()
        switch kind {
        case .term: child.signal(SIGTERM)
        case .kill: child.signal(SIGKILL)
        case .cut: for p in victim.proxies { p.blackhole() }
        }
        var record: [String: Any] = ["kind": kind.rawValue, "round": round, "epoch_from": old.epoch, "victim": victim.index, "load1": loadAverage()]
        func ms(_ at: Int64?) -> Any { at.map { Int($0 - t0) } ?? NSNull() }

        // New leader.
        var new: (at: Int64, leader: Leader)?
        await Poll.holds(within: timeout * 5 + .seconds(20), every: .milliseconds(5)) {
            if let hit = cluster.leaderHistory.first(where: { $0.at >= t0 && ($0.leader?.epoch ?? 0) > old.epoch }), let l = hit.leader { new = (hit.at, l) }
            return new != nil
        }
        guard let new else {
            record["error"] = "no new leader"
            return record
        }
        record["elected_ms"] = ms(new.at)
        record["epoch_to"] = new.leader.epoch
        let epoch = new.leader.epoch

        // Agents, framework, first offer: all progress in parallel; wait for the slowest.
        var reregistered: [Int: Int64] = [:]
        var detected: [Int: Int64] = [:]
        var fwAt: Int64?, offerAt: Int64?
        let newMasterID = new.leader.info?.id
        let deadline = timeout * 5 + .seconds(60) + .milliseconds(100 * m)
        // Each poll reads only the events that came since the last (a scan from the failover's
        // start every 20 ms was a twentieth of the machine's CPU at 10,000 agents).
        var scanned = eventsBefore
        let complete = await Poll.holds(within: deadline, every: .milliseconds(20)) {
            cluster.poll()
            let events = cluster.events
            for e in events[scanned...] where e.epoch == epoch {
                if e.kind == "reregistered" && reregistered[e.agent] == nil { reregistered[e.agent] = e.at }
                if e.kind == "leader" && detected[e.agent] == nil { detected[e.agent] = e.at }
            }
            scanned = events.count
            for r in framework.records(from: recordsBefore) {
                if fwAt == nil, r.kind == .reregistered, newMasterID == nil || r.detail == newMasterID { fwAt = r.at }
                if offerAt == nil, fwAt != nil, r.kind == .offer, newMasterID.map({ r.detail.hasPrefix($0 + "-") }) ?? true { offerAt = r.at }
            }
            return reregistered.count >= m && fwAt != nil && offerAt != nil
        }
        let tDone = nowMs()
        let cpuAfter = cluster.cpuSample()
        if let a = overflowsBefore, let b = ListenQueue.overflows() { record["listen_overflows"] = b - a }
        let zkAfter = FourLetterWords.packetsReceived(ports: cluster.config.zkServers)
        if let idleStart, let zkBefore, let zkAfter {
            let idlePerSecond = Double(zkBefore - idleStart) * 1000 / Double(idleWindow)
            record["zk_idle_requests_per_s"] = idlePerSecond
            record["zk_requests"] = zkAfter - zkBefore
            record["zk_requests_above_idle"] = Int(Double(zkAfter - zkBefore) - idlePerSecond * Double(tDone - t0) / 1000)
        }
        record["measured_ms"] = Int(tDone - t0)
        if let newSlot = cluster.slot(of: new.leader), let newChild = newSlot.child {
            if let a = cpuBefore.masters[newSlot.index], let b = cpuAfter.masters[newSlot.index] { record["leader_cpu_ms"] = b - a }
            record["leader_rss_kib"] = ProcessProbe.residentKiB(newChild.pid) ?? NSNull()
            record["leader_fds"] = ProcessProbe.openDescriptors(newChild.pid) ?? NSNull()
            record["empty_master_rss_kib"] = cluster.emptyMasterRSS ?? NSNull()
            // Counted since it started, as a standby: nearly all of it is this failover's.
            record["leader_bus"] = BusCounters.of(port: newSlot.port) ?? NSNull()
            // A standby's memory: its warm copy of the registry.
            if let standby = cluster.masters.first(where: { $0.index != newSlot.index && $0.index != victim.index })?.child {
                record["standby_rss_kib"] = ProcessProbe.residentKiB(standby.pid) ?? NSNull()
            }
        }
        record["swarms_cpu_ms"] = cpuAfter.swarms - cpuBefore.swarms
        if cpuBefore.zk >= 0 && cpuAfter.zk >= 0 { record["zk_cpu_ms"] = cpuAfter.zk - cpuBefore.zk }
        // Where the agents' time goes: every agent's detector saw the new leader, then re-registration.
        record["all_detected_ms"] = detected.count >= m ? ms(detected.values.max()) : NSNull()
        record["median_detected_ms"] = detected.isEmpty ? NSNull() : ms(detected.values.sorted()[detected.count / 2])
        record["first_agent_ms"] = ms(reregistered.values.min())
        record["all_agents_ms"] = reregistered.count >= m ? ms(reregistered.values.max()) : NSNull()
        record["agents_reregistered"] = reregistered.count
        record["framework_ms"] = ms(fwAt)
        record["first_offer_ms"] = ms(offerAt)
        if !complete { record["incomplete"] = true }
        record["znode_gone_ms"] = ms(probe?.times.znodeGone)
        record["leading_ms"] = ms(probe?.times.registryWritten)

        // The old leader: gone at once (term, kill) or after its session times out (cut: suicide).
        await Poll.holds(within: timeout * 3 + .seconds(10)) { !child.isRunning }
        if let exit = child.exited {
            record["old_leader_exit_ms"] = Int(epochMs(exit.at) - t0)
            record["old_leader_exit_code"] = Int(exit.status)
        } else {
            record["old_leader_exit_ms"] = NSNull()
            await child.stop(SIGKILL)
        }

        // Tasks: lost updates seen by the framework, and processes still alive.
        try? await Task.sleep(for: .milliseconds(500))
        cluster.poll()
        let updates = framework.records(from: recordsBefore).filter { $0.kind == .status }
        record["tasks_lost"] = updates.filter { $0.state == .lost }.count
        record["tasks_terminal"] = updates.filter { $0.state?.isTerminal == true }.count
        let alive = cluster.aliveTasks()
        record["tasks_alive"] = alive.alive
        record["agents_dropped_stale"] = cluster.events[eventsBefore...].filter { $0.kind == "dropped" }.count

        let line = ["znode_gone_ms", "elected_ms", "leading_ms", "first_agent_ms", "all_agents_ms", "framework_ms", "first_offer_ms", "old_leader_exit_ms", "tasks_lost"]
            .map { "\($0.replacingOccurrences(of: "_ms", with: ""))=\(record[$0].map { "\($0)" } ?? "-")" }.joined(separator: " ")
        say("  \(kind.rawValue) #\(round) (epoch \(old.epoch)->\(epoch)): \(line)")
        return record
    }

    /// Brings the deposed master back as a standby (as a supervisor would) and waits for 3 members.
    func restore(_ cluster: Cluster, settle: Duration) async throws {
        for slot in cluster.masters where slot.child?.isRunning != true {
            for p in slot.proxies { p.heal() }
            try slot.start(cluster.config)
        }
        guard await Poll.holds(within: .seconds(60), { await cluster.members() == 3 }) else {
            throw HarnessError("the restarted master did not rejoin")
        }
        try? await Task.sleep(for: settle)
    }
}

func loadAverage() -> Double {
    guard let s = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8), let first = s.split(separator: " ").first else { return -1 }
    return Double(first) ?? -1
}

struct Floor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The ZooKeeper floor: one ephemeral znode deleted by one session -> the watch of another session fires.")

    @Option(help: "ZooKeeper connect string.") var zk: String
    @Option(help: "Label of this ZooKeeper setup.") var zkLabel = "standalone"
    @Option var count = 50
    @Option(help: "Session timeout (Mesos units).") var sessionTimeout = "2secs"
    @Option(help: "Append the JSON result here.") var out: String

    func run() async throws {
        guard let timeout = MesosDuration(parsing: sessionTimeout)?.duration else { throw ValidationError("bad duration") }
        var logger = Logger(label: "floor")
        logger.logLevel = .critical
        let a = ZooKeeperSession(servers: zk, sessionTimeout: timeout, logger: logger)
        let b = ZooKeeperSession(servers: zk, sessionTimeout: timeout, logger: logger)
        a.start()
        b.start()
        guard await Poll.holds(within: .seconds(30), { a.isConnected && b.isConnected }) else { throw HarnessError("not connected") }
        let path = "/failover-floor-\(UInt32.random(in: 0...UInt32.max))"
        try await a.createPath(path)
        var deleteUs: [Double] = [], closeUs: [Double] = []
        for i in -10..<count {  // the first 10 warm up the server's JIT and are not counted
            let node = "\(path)/n\(i + 10)"
            try await a.create(node, mode: .ephemeral)
            let (_, watch) = try await b.watchExists(node)
            let fired = Task { (try? await watch.event()).map { ($0, nowUs()) } }  // stamped when the watch fires
            let t0 = nowUs()
            try await a.delete(node)
            guard let (event, t1) = await fired.value, event == .deleted else { throw HarnessError("the watch did not fire with .deleted") }
            if i >= 0 { deleteUs.append(Double(t1 - t0)) }
        }
        // The same through a session close (what a gracefully stopping process does last).
        for i in 0..<min(count, 20) {
            let c = ZooKeeperSession(servers: zk, sessionTimeout: timeout, logger: logger)
            c.start()
            guard await Poll.holds(within: .seconds(30), every: .milliseconds(2), { c.isConnected }) else { throw HarnessError("not connected") }
            let node = "\(path)/c\(i)"
            try await c.create(node, mode: .ephemeral)
            let (_, watch) = try await b.watchExists(node)
            let fired = Task { (try? await watch.event()).map { _ in nowUs() } }
            let t0 = nowUs()
            await c.close()
            guard let t1 = await fired.value else { throw HarnessError("the watch did not fire") }
            closeUs.append(Double(t1 - t0))
        }
        try? await a.delete(path)
        await a.close()
        await b.close()
        let sink = JSONLines(path: out)
        for (variant, samples) in [("delete", deleteUs), ("close", closeUs)] {
            let s = samples.sorted()
            sink.append(["type": "floor", "impl": "swift-zookeeper", "zk": zkLabel, "variant": variant, "samples_us": s.map { Int($0) }])
            say("floor \(zkLabel) \(variant): p50 \(String(format: "%.2f", percentile(s, 0.5) / 1000)) ms, p90 \(String(format: "%.2f", percentile(s, 0.9) / 1000)) ms, max \(String(format: "%.2f", percentile(s, 1) / 1000)) ms (n=\(s.count))")
        }
    }
}
