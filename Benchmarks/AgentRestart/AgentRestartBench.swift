import ArgumentParser
import Foundation
import MesosDaemon
import ProcessSupport

/// Agent restart with N running checkpointed tasks: SIGKILL (or SIGTERM) the agent, start it
/// again on its work directory, and time from the signal until every executor re-registered with
/// the restarted agent and until the agent re-registered with the master. Side by side in the
/// same run: the same restart of an agent with no tasks (the restart's own floor).
///
///     Benchmarks/agent-restart-bench.sh [--tasks 100] [--rounds 10]
@main
struct AgentRestartBench: AsyncParsableCommand {
    @Option(help: "Running tasks on the agent.") var tasks = 100
    @Option(help: "Restarts of each kind.") var rounds = 10
    @Option(help: "Where the products are (release build).") var bin: String
    @Option(help: "Results (JSON).") var json: String?
    @Option(help: "Work directory.") var work = FileManager.default.temporaryDirectory.appending(path: "agent-restart-bench").path

    func run() async throws {
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let zk = try await ZooKeeperServer.start()
        defer { Task { await zk.kill() } }
        var rows: [[String: Any]] = []
        for (label, n) in [("no tasks (floor)", 0), ("\(tasks) tasks", tasks)] {
            for signal in [SIGKILL, SIGTERM] {
                let samples = try await measure(tasks: n, signal: signal, zk: zk)
                let executors = samples.map(\.executors).sorted(), registered = samples.map(\.registered).sorted()
                let row: [String: Any] = [
                    "tasks": n, "signal": signal == SIGKILL ? "SIGKILL" : "SIGTERM", "rounds": samples.count,
                    "executors_reregistered_ms": ["p50": percentile(executors, 0.5), "p99": percentile(executors, 0.99)],
                    "agent_reregistered_ms": ["p50": percentile(registered, 0.5), "p99": percentile(registered, 0.99)],
                    "same_task_pids": samples.allSatisfy(\.samePIDs), "executor_cpu_ms_per_restart": samples.map(\.executorCPU).reduce(0, +) / Double(max(1, samples.count)),
                ]
                rows.append(row)
                print("\(label), \(row["signal"]!): executors re-registered p50 \(fmt(percentile(executors, 0.5))) ms p99 \(fmt(percentile(executors, 0.99))) ms; "
                    + "agent re-registered p50 \(fmt(percentile(registered, 0.5))) ms p99 \(fmt(percentile(registered, 0.99))) ms; same task pids: \(samples.allSatisfy(\.samePIDs))")
            }
        }
        if let json {
            let doc: [String: Any] = ["benchmark": "agent-restart", "tasks": tasks, "rounds": rounds, "date": ISO8601DateFormatter().string(from: Date()), "rows": rows]
            try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: json))
        }
    }

    struct Sample {
        var executors: Double
        var registered: Double
        var samePIDs: Bool
        var executorCPU: Double
    }

    func measure(tasks n: Int, signal: Int32, zk: ZooKeeperServer) async throws -> [Sample] {
        let dir = URL(fileURLWithPath: work).appending(path: "\(n)-\(signal)")
        let logs = dir.appending(path: "logs")
        let url = "zk://\(zk.connectString)/bench-\(n)-\(signal)"
        let master = try Daemon("master", executable: bin + "/mesos-master", arguments: [
            "--zk", url, "--port", "0", "--work_dir", dir.appending(path: "master").path, "--zk_session_timeout", "2secs",
            "--allocation_interval", "100ms", "--log_level", "info",
        ], logDirectory: logs)
        defer { master.signal(SIGKILL) }
        try await master.waitFor("leading", timeout: .seconds(20))
        let agentArgs = [
            "--master", url, "--port", "0", "--work_dir", dir.appending(path: "agent").path, "--zk_session_timeout", "2secs",
            "--resources", "cpus:\(max(1, n));mem:\(max(1024, n * 64))", "--registration_backoff_factor", "10ms", "--log_level", "info",
        ]
        var agent = try Daemon("agent-0", executable: bin + "/mesos-agent", arguments: agentArgs, logDirectory: logs)
        var agents = [agent]
        defer {
            for a in agents { a.signal(SIGKILL) }
            for a in agents { for e in a.launchedExecutors { e.killSession() } }
        }
        try await agent.waitFor("registered", timeout: .seconds(20))
        var framework: Daemon?
        if n > 0 {
            let fw = try Daemon("framework", executable: bin + "/example-framework", arguments: [
                "--master", url, "--tasks", "\(n)", "--command", "sleep 100000", "--task_cpus", "0.5", "--task_mem", "16", "--checkpoint",
                "--zk_session_timeout", "2secs", "--log_level", "info",
            ], logDirectory: logs)
            framework = fw
            try await fw.waitFor("all_running", ["count": "\(n)"], timeout: .seconds(120))
        }
        defer { framework?.signal(SIGKILL) }
        var samples: [Sample] = []
        for round in 1...rounds {
            let before = taskPIDs(agents)
            let cpuBefore = executorCPU(agents)
            let t0 = Date()
            agent.signal(signal)
            _ = await agent.waitForExit(timeout: .seconds(30))
            agent = try Daemon("agent-\(round)", executable: bin + "/mesos-agent", arguments: agentArgs, logDirectory: logs)
            agents.append(agent)
            let reconnected = try await agent.waitFor("executors_reconnected", ["executors": "\(n)", "timed_out": "0"], timeout: .seconds(60))
            let registered = try await agent.waitFor("reregistered", timeout: .seconds(60))
            guard let tr = timestamp(reconnected.line), let tg = timestamp(registered.line) else { throw ValidationError("no timestamps in the agent's log") }
            let after = taskPIDs(agents)
            guard before == after, after.count == n else { throw ValidationError("round \(round): the task processes changed across the restart (\(before.count) before, \(after.count) after)") }
            samples.append(Sample(
                executors: tr.timeIntervalSince(t0) * 1000, registered: tg.timeIntervalSince(t0) * 1000,
                samePIDs: before == after && after.count == n, executorCPU: executorCPU(agents) - cpuBefore))
            try await Task.sleep(for: .milliseconds(300))
        }
        return samples
    }

    /// Task pids from the executors' own logs.
    func taskPIDs(_ agents: [Daemon]) -> [String: pid_t] {
        var pids: [String: pid_t] = [:]
        for a in agents { for e in a.launchedExecutors { if let p = e.taskPID { pids[e.taskKey] = p } } }
        return pids
    }

    /// CPU time (user + system, ms) of the live executor processes, from /proc.
    func executorCPU(_ agents: [Daemon]) -> Double {
        var total = 0.0
        for a in agents {
            for e in a.launchedExecutors { total += Double(ProcessProbe.cpuMilliseconds(e.process) ?? 0) }
        }
        return total
    }

    func timestamp(_ line: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return line.split(separator: " ").first.flatMap { f.date(from: String($0)) }
    }

    func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = p * Double(sorted.count - 1)
        let lo = Int(rank.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - Double(lo))
    }

    func fmt(_ v: Double) -> String { String(format: "%.0f", v) }
}
