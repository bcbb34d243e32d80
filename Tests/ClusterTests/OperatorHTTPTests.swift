// The operator surface with real processes: HTTP/1.1 on the masters' and agents' bus ports
// (a raw loopback client, no redirect following), beside the frames the cluster runs on.
import FaultProxy
import Foundation
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Operator HTTP endpoints with real processes", .serialized, .timeLimit(.minutes(3)))
struct OperatorHTTPTests {
    static func port(_ pid: String) throws -> Int {
        guard let text = pid.split(separator: ":").last, let port = Int(text) else { throw ClusterError("no port in \(pid)") }
        return port
    }

    static func metric(_ answer: HTTPAnswer, _ name: String) -> Double? { (answer.object?[name] as? NSNumber)?.doubleValue }

    /// Tasks `/master/state` lists in `state` (framework id / task id).
    static func tasks(_ state: [String: Any]?, in taskState: String = "TASK_RUNNING") -> Set<String> {
        let frameworks = state?["frameworks"] as? [[String: Any]] ?? []
        return Set(frameworks.flatMap { f in
            (f["tasks"] as? [[String: Any]] ?? []).filter { $0["state"] as? String == taskState }.map { "\($0["framework_id"] ?? "")/\($0["id"] ?? "")" }
        })
    }

    @Test func mastersAndAgentsAnswerHTTPOnTheirBusPorts() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 1, tasks: 1)
            let (leader, record) = try await cluster.leader()
            let standby = try #require(cluster.liveMasters.first { $0.slot != leader.slot })
            let leaderPort = try Self.port(record.pid)
            let standbyPort = try Self.port(try await cluster.busPID(of: standby.daemon))
            let agentPort = try Self.port(try await cluster.busPID(of: cluster.agents[0]))

            for port in [leaderPort, standbyPort, agentPort] {
                #expect(try await HTTPProbe.get(port: port, "/health").status == 200, "\(port)")
                let version = try await HTTPProbe.get(port: port, "/version")
                #expect(version.status == 200 && version.object?["version"] as? String == "1.11.0")
                #expect(try await HTTPProbe.get(port: port, "/no/such/endpoint").status == 404)
            }

            // A standby points at the leader (Mesos's scheme-relative Location, the leader's same path).
            let host = ProcessInfo.processInfo.hostName
            let redirect = try await HTTPProbe.get(port: standbyPort, "/master/redirect")
            #expect(redirect.status == 307 && redirect.headers["location"] == "//\(host):\(leaderPort)", "\(redirect)")
            let state307 = try await HTTPProbe.get(port: standbyPort, "/master/state")
            #expect(state307.status == 307 && state307.headers["location"] == "//\(host):\(leaderPort)/master/state", "\(state307)")

            let state = try await HTTPProbe.get(port: leaderPort, "/master/state")
            #expect(state.status == 200)
            #expect(state.object?["leader"] as? String == record.pid)
            #expect(state.object?["role"] as? String == "leader")
            #expect((state.object?["epoch"] as? NSNumber)?.uint64Value == record.epoch)
            // Each agent with its health (a pong late on a loaded machine shows as missed_pings for a while).
            let health = { (state: [String: Any]?) in ((state?["slaves"] as? [[String: Any]]) ?? []).map { ($0["health"] as? [String: Any])?["state"] as? String ?? "?" } }
            #expect(health(state.object).count == 1 && ["healthy", "missed_pings"].contains(health(state.object).first ?? "?"), "\(state)")
            try await Poll.until("the agent shows healthy", timeout: .seconds(10), every: .milliseconds(100)) {
                health(try await HTTPProbe.get(port: leaderPort, "/master/state").object) == ["healthy"]
            }
            #expect(Self.tasks(state.object).count == 1, "the running task: \(state)")

            let leaderMetrics = try await HTTPProbe.get(port: leaderPort, "/metrics/snapshot")
            let standbyMetrics = try await HTTPProbe.get(port: standbyPort, "/metrics/snapshot")
            #expect(Self.metric(leaderMetrics, "master/elected") == 1)
            #expect(Self.metric(standbyMetrics, "master/elected") == 0)
            #expect(Self.metric(leaderMetrics, "master/slaves_active") == 1)
            #expect(Self.metric(leaderMetrics, "master/tasks_running") == 1)
            #expect(Self.metric(leaderMetrics, "master/epoch") == Double(record.epoch))
            for name in ["master/uptime_secs", "master/slaves_disconnected", "master/frameworks_active", "master/tasks_lost", "master/dropped_messages", "master/stale_epoch_dropped", "master/leader_changes", "bus/connections_rejected", "bus/links_stalled"] {
                #expect(Self.metric(leaderMetrics, name) != nil, "\(name)")
            }
            // The bus's own counters: the leader took the agent's and the scheduler's messages and answered them.
            #expect((Self.metric(leaderMetrics, "bus/messages_received") ?? 0) >= 2 && (Self.metric(leaderMetrics, "bus/messages_sent") ?? 0) >= 2)

            let agentState = try await HTTPProbe.get(port: agentPort, "/slave(1)/state")
            #expect(agentState.status == 200 && (agentState.object?["id"] as? String)?.isEmpty == false, "\(agentState)")
            #expect(agentState.object?["master_pid"] as? String == record.pid)
            let agentMetrics = try await HTTPProbe.get(port: agentPort, "/metrics/snapshot")
            #expect(Self.metric(agentMetrics, "slave/registered") == 1)
            #expect(Self.metric(agentMetrics, "slave/tasks_running") == 1)
            #expect((Self.metric(agentMetrics, "bus/messages_received") ?? 0) >= 1)

            // Prometheus text, read by python3-prometheus-client's own parser.
            let text = try await HTTPProbe.get(port: leaderPort, "/metrics")
            #expect(text.status == 200 && text.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
            let parsed = try await Self.parsePrometheus(text.body, in: cluster.directory)
            #expect(parsed["mesos_master_elected"] == 1, "\(parsed.keys.sorted())")
            #expect(parsed["mesos_master_tasks_running"] == 1)
            // A counter's sample, as the parser names it.
            #expect((parsed["mesos_bus_messages_received_total"] ?? 0) >= 2, "\(parsed.filter { $0.key.contains("bus_messages") })")

            // Frames kept flowing beside all this: the agent is still registered, pinged and healthy.
            #expect(cluster.agents[0].isRunning)
            #expect(leader.daemon.milestones("http_rejected").isEmpty)
        }
    }

    @Test func badHTTPInputClosesOnlyThatConnection() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 1, agents: 1, tasks: 0)
            let (leader, record) = try await cluster.leader()
            let port = try Self.port(record.pid)
            let bad = try await HTTPProbe.blocking {
                let socket = try Loopback.Socket(connectingTo: port)
                try socket.write("GET /master/state HTTP/1.1\r\nno colon here\r\n\r\n")
                return String(decoding: try socket.readToEnd(timeout: .seconds(5)), as: UTF8.self)
            }
            #expect(bad.hasPrefix("HTTP/1.1 400"), "\(bad)")
            try await leader.daemon.waitFor("http_rejected", ["cause": "malformed_request"])
            let huge = try await HTTPProbe.request(port: port, "GET", "/health", headers: ["X-Huge": String(repeating: "h", count: 40_000)])
            #expect(huge.status == 431)
            try await leader.daemon.waitFor("http_rejected", ["cause": "headers_too_large"])
            #expect(try await HTTPProbe.get(port: port, "/health").status == 200, "other clients are served")
            // The agent's frames kept flowing: it is still registered with the same leader.
            #expect(cluster.agents[0].isRunning && cluster.agents[0].milestones("registered").count == 1)
            #expect(cluster.agents[0].milestones("link_to_leader_broken").isEmpty && cluster.agents[0].milestones("reregistered").isEmpty)
        }
    }

    @Test func withoutALeaderRedirectAndStateAnswer503() async throws {
        try await withCluster { cluster in
            // A master that cannot reach ZooKeeper knows no leader (and stays up for its session timeout).
            let nothing = try Loopback.Socket(boundTo: 0)
            let master = try cluster.startMaster(zk: "zk://127.0.0.1:\(nothing.port)/mesos", extra: ["--zk_session_timeout", "60secs"])
            let port = try Self.port(try await cluster.busPID(of: master.daemon))
            // The bus listens a moment before the daemon answers HTTP on it ("Not serving yet").
            try await Poll.until("the master answers /health") { try await HTTPProbe.get(port: port, "/health").status == 200 }
            let redirect = try await HTTPProbe.get(port: port, "/master/redirect")
            #expect(redirect.status == 503 && redirect.body == "No leader elected", "\(redirect)")
            #expect(try await HTTPProbe.get(port: port, "/master/state").status == 503)
            #expect(Self.metric(try await HTTPProbe.get(port: port, "/metrics/snapshot"), "master/elected") == 0)
            #expect(try await HTTPProbe.get(port: port, "/health").status == 200)
        }
    }

    @Test func electedFlipsAtAFailoverAndTheNewLeadersStateListsTheRunningTasks() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 1, tasks: 2)
            let (old, oldRecord) = try await cluster.leader()
            let standby = try #require(cluster.liveMasters.first { $0.slot != old.slot })
            let standbyPort = try Self.port(try await cluster.busPID(of: standby.daemon))
            let before = Self.tasks(try await HTTPProbe.get(port: Self.port(oldRecord.pid), "/master/state").object)
            #expect(before.count == 2)
            #expect(Self.metric(try await HTTPProbe.get(port: standbyPort, "/metrics/snapshot"), "master/elected") == 0)

            let killed = ContinuousClock.now
            old.daemon.signal(SIGKILL)
            let (_, newRecord, _) = try await cluster.waitForNewLeader(after: oldRecord, since: killed, timeout: Knobs.sessionTimeout + Knobs.margin)
            #expect(newRecord.pid == standby.daemon.milestones("listening").first?["pid"])
            try await cluster.waitForAgentsReregistered(with: newRecord)

            let metrics = try await HTTPProbe.get(port: standbyPort, "/metrics/snapshot")
            #expect(Self.metric(metrics, "master/elected") == 1, "the standby leads now")
            #expect(Self.metric(metrics, "master/epoch") == Double(newRecord.epoch))
            #expect((Self.metric(metrics, "master/leader_changes") ?? 0) >= 1)
            // The re-registered agent brought its tasks: the new leader lists both, running.
            let state = try await HTTPProbe.get(port: standbyPort, "/master/state")
            #expect(state.object?["leader"] as? String == newRecord.pid)
            #expect(Self.tasks(state.object) == before, "\(state)")
            let history = (state.object?["leader_history"] as? [[String: Any]] ?? []).compactMap { ($0["leader"] as? [String: Any])?["pid"] as? String }
            #expect(history.suffix(2) == [oldRecord.pid, newRecord.pid], "failover history: \(history)")
        }
    }

    @Test func teardownWithAuthenticationAndMesosctl() async throws {
        try await withCluster { cluster in
            let credentials = cluster.directory.appending(path: "http-credentials")
            try "ops s3cret\n".write(to: credentials, atomically: true, encoding: .utf8)
            try cluster.startMaster(extra: ["--authenticate_http_readwrite", "--http_credentials", credentials.path])
            try await cluster.start(masters: 0, agents: 1, tasks: 1)
            let (leader, record) = try await cluster.leader()
            let port = try Self.port(record.pid)

            // mesosctl finds the leader through ZooKeeper, as mesos-resolve does, and reads its state.
            let resolved = try cluster.tool("resolve", ["resolve", "--master", cluster.url, "--zk_session_timeout", Knobs.sessionTimeoutFlag])
            #expect(await resolved.waitForExit(timeout: .seconds(30)) == 0)
            #expect(resolved.lines.contains(record.pid.split(separator: "@").last.map(String.init) ?? "?"), "\(resolved.log)")
            let stateTool = try cluster.tool("state", ["state", "--master", cluster.url, "--zk_session_timeout", Knobs.sessionTimeoutFlag])
            #expect(await stateTool.waitForExit(timeout: .seconds(30)) == 0)
            let printed = stateTool.lines.first { $0.hasPrefix("{") }.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(printed?["leader"] as? String == record.pid, "\(stateTool.log)")
            let running = Self.tasks(printed)
            #expect(running.count == 1)
            let frameworkID = try #require(running.first?.split(separator: "/").first.map(String.init))

            let form = "frameworkId=\(frameworkID)"
            #expect(try await HTTPProbe.request(port: port, "POST", "/master/teardown", body: form).status == 401)
            let wrong = "Basic " + Data("ops:guess".utf8).base64EncodedString()
            #expect(try await HTTPProbe.request(port: port, "POST", "/master/teardown", body: form, headers: ["Authorization": wrong]).status == 401)
            let right = ["Authorization": "Basic " + Data("ops:s3cret".utf8).base64EncodedString()]
            #expect(try await HTTPProbe.request(port: port, "POST", "/master/teardown", body: "frameworkId=nope", headers: right).status == 400)
            #expect(try await HTTPProbe.request(port: port, "GET", "/master/teardown", headers: right).status == 405)
            #expect(leader.daemon.milestones("framework_removed").isEmpty, "nothing torn down before the right request")
            let done = try await HTTPProbe.request(port: port, "POST", "/master/teardown", body: form, headers: right)
            #expect(done.status == 200, "\(done)")
            try await leader.daemon.waitFor("framework_removed", ["framework_id": frameworkID])

            // Torn down: no longer among the frameworks, its task killed on the agent.
            try await Poll.until("the task is gone", timeout: .seconds(20)) { cluster.deadTasks().count == 1 }
            let after = try await HTTPProbe.get(port: port, "/master/state").object
            #expect((after?["frameworks"] as? [Any])?.isEmpty == true)
            #expect(((after?["completed_frameworks"] as? [[String: Any]]) ?? []).contains { $0["id"] as? String == frameworkID })
        }
    }

    /// Sample name to value, as prometheus_client's text parser reads `text`.
    static func parsePrometheus(_ text: String, in directory: URL) async throws -> [String: Double] {
        let file = directory.appending(path: "metrics.prom")
        try text.write(to: file, atomically: true, encoding: .utf8)
        let script = """
            import sys
            from prometheus_client.parser import text_string_to_metric_families
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                for sample in family.samples:
                    print("SAMPLE", sample.name, sample.value)
            """
        let parser = try Daemon("prometheus-parse", executable: "/usr/bin/python3", arguments: ["-c", script, file.path], logDirectory: directory.appending(path: "logs"))
        let status = await parser.waitForExit(timeout: .seconds(30))
        if status == nil { await parser.kill() }
        #expect(status == 0, "the parser failed: \(parser.log)")
        var samples: [String: Double] = [:]
        for line in parser.lines where line.hasPrefix("SAMPLE ") {
            let parts = line.split(separator: " ")
            if parts.count == 3, let value = Double(parts[2]) { samples[String(parts[1])] = value }
        }
        return samples
    }
}
