// Mesos's v1 scheduler HTTP API with real processes: `curl` SUBSCRIBEs in JSON on the leader's
// bus port and the test reads the RecordIO stream by hand from curl's output; calls go as raw
// HTTP POSTs. A real agent runs the task; a driver-protocol framework shares the master.
import Foundation
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// One `curl` SUBSCRIBE: the response's headers and its body (RecordIO) in files as they arrive.
struct CurlSubscription {
    let curl: Daemon
    let headerFile: URL
    let streamFile: URL

    init(_ cluster: Cluster, name: String, port: Int, body: String) throws {
        headerFile = cluster.directory.appending(path: "\(name).headers")
        streamFile = cluster.directory.appending(path: "\(name).recordio")
        let bodyFile = cluster.directory.appending(path: "\(name).json")
        try Data(body.utf8).write(to: bodyFile)
        curl = try cluster.process(name, "/usr/bin/curl", [
            "-sS", "-N", "-X", "POST", "-H", "Content-Type: application/json", "-H", "Accept: application/json",
            "--data-binary", "@\(bodyFile.path)", "-D", headerFile.path, "-o", streamFile.path, "http://127.0.0.1:\(port)/api/v1/scheduler",
        ])
    }

    /// Response headers, names in lower case.
    var headers: [String: String] {
        let text = (try? String(contentsOf: headerFile, encoding: .utf8)) ?? ""
        var out: [String: String] = [:]
        for line in text.components(separatedBy: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            out[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }

    /// The events so far: RecordIO read by hand (decimal length, "\n", that many bytes of JSON).
    var events: [[String: Any]] {
        let bytes = [UInt8]((try? Data(contentsOf: streamFile)) ?? Data())
        var out: [[String: Any]] = []
        var at = 0
        while true {
            var length = 0
            var digits = 0
            while at < bytes.count, bytes[at] >= 0x30, bytes[at] <= 0x39 {
                length = length * 10 + Int(bytes[at] - 0x30)
                digits += 1
                at += 1
            }
            guard digits > 0, at < bytes.count, bytes[at] == 0x0A, at + 1 + length <= bytes.count else { return out }
            let record = Data(bytes[(at + 1)..<(at + 1 + length)])
            at += 1 + length
            guard let object = (try? JSONSerialization.jsonObject(with: record)) as? [String: Any] else { return out }
            out.append(object)
        }
    }

    func events(_ type: String) -> [[String: Any]] { events.filter { $0["type"] as? String == type } }

    func waitFor(_ what: String, timeout: Duration = .seconds(20), _ match: @escaping ([String: Any]) -> Bool) async throws -> [String: Any] {
        var found: [String: Any]?
        try await Poll.until("\(what) on the stream of \(curl.name)", timeout: timeout, every: .milliseconds(50)) {
            found = events.first(where: match)
            return found != nil
        }
        return found ?? [:]
    }
}

func type(_ t: String) -> ([String: Any]) -> Bool { { $0["type"] as? String == t } }

func value(_ object: Any?, _ path: String...) -> Any? {
    var current = object
    for key in path { current = (current as? [String: Any])?[key] }
    return current
}

@Suite("Mesos v1 scheduler API with real processes", .serialized, .timeLimit(.minutes(4)))
struct V1SchedulerAPITests {
    static func port(_ pid: String) throws -> Int {
        guard let text = pid.split(separator: ":").last, let port = Int(text) else { throw ClusterError("no port in \(pid)") }
        return port
    }

    static func post(_ port: Int, _ body: String, stream: String?) async throws -> HTTPAnswer {
        var headers = ["Content-Type": "application/json"]
        if let stream { headers["Mesos-Stream-Id"] = stream }
        return try await HTTPProbe.request(port: port, "POST", "/api/v1/scheduler", body: body, headers: headers)
    }

    static func subscribeBody(id: String? = nil) -> String {
        let idField = id.map { #","id":{"value":"\#($0)"}"# } ?? ""
        let top = id.map { #""framework_id":{"value":"\#($0)"},"# } ?? ""
        return #"{\#(top)"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"curl-v1","failover_timeout":120\#(idField)}}}"#
    }

    @Test func curlSubscribesLaunchesATaskAcknowledgesAndSurvivesALeaderFailover() async throws {
        try await withCluster { cluster in
            // Two masters, one agent, and a driver-protocol framework with a running task.
            try await cluster.start(masters: 2, agents: 1, tasks: 1)
            let (leader, record) = try await cluster.leader()
            let leaderPort = try Self.port(record.pid)
            let standby = try #require(cluster.liveMasters.first { $0.slot != leader.slot })
            let standbyPort = try Self.port(try await cluster.busPID(of: standby.daemon))

            // A standby points at the leader.
            let redirect = try await Self.post(standbyPort, Self.subscribeBody(), stream: nil)
            #expect(redirect.status == 307 && redirect.headers["location"] == "//\(ProcessInfo.processInfo.hostName):\(leaderPort)/master/api/v1/scheduler", "\(redirect)")

            // SUBSCRIBE: 200, chunked, Mesos-Stream-Id; SUBSCRIBED then HEARTBEAT at once.
            let first = try CurlSubscription(cluster, name: "curl-subscribe-1", port: leaderPort, body: Self.subscribeBody())
            let subscribed = try await first.waitFor("SUBSCRIBED", type("SUBSCRIBED"))
            let frameworkID = try #require(value(subscribed, "subscribed", "framework_id", "value") as? String)
            #expect((value(subscribed, "subscribed", "heartbeat_interval_seconds") as? NSNumber)?.doubleValue == 15)
            #expect(value(subscribed, "subscribed", "master_info", "port") as? NSNumber == NSNumber(value: leaderPort))
            _ = try await first.waitFor("HEARTBEAT", type("HEARTBEAT"))
            let headers = first.headers
            let stream = try #require(headers["mesos-stream-id"])
            #expect(headers["content-type"] == "application/json" && headers["transfer-encoding"] == "chunked", "\(headers)")

            // Bad calls: 400 with Mesos's messages; the stream carries on.
            let kill = #"{"type":"KILL","framework_id":{"value":"\#(frameworkID)"},"kill":{"task_id":{"value":"nope"}}}"#
            #expect(try await Self.post(leaderPort, kill, stream: nil).status == 400)
            #expect(try await Self.post(leaderPort, kill, stream: "not-the-stream").status == 400)
            #expect(try await Self.post(leaderPort, "{not json", stream: stream).status == 400)
            #expect(try await HTTPProbe.request(port: leaderPort, "POST", "/api/v1/scheduler", body: "{}", headers: ["Content-Type": "text/plain"]).status == 415)

            // An offer from the real agent; ACCEPT with LAUNCH; TASK_RUNNING with a uuid; ACKNOWLEDGE.
            let offers = try await first.waitFor("OFFERS", type("OFFERS"))
            let offer = try #require((value(offers, "offers", "offers") as? [[String: Any]])?.first)
            let offerID = try #require(value(offer, "id", "value") as? String)
            let agentID = try #require(value(offer, "agent_id", "value") as? String)
            let accept = #"""
                {"type":"ACCEPT","framework_id":{"value":"\#(frameworkID)"},"accept":{"offer_ids":[{"value":"\#(offerID)"}],
                 "operations":[{"type":"LAUNCH","launch":{"task_infos":[{"name":"v1-task","task_id":{"value":"v1-task"},"agent_id":{"value":"\#(agentID)"},
                 "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}},{"name":"mem","type":"SCALAR","scalar":{"value":32}}],
                 "command":{"value":"sleep 100000"}}]}}]}}
                """#
            let accepted = try await Self.post(leaderPort, accept, stream: stream)
            #expect(accepted.status == 202, "\(accepted)")
            // The agent sends a task's updates in order, each after the previous one is
            // acknowledged: acknowledge each (TASK_STARTING, then TASK_RUNNING) as a scheduler does.
            var acknowledged: Set<String> = []
            try await Poll.until("TASK_RUNNING acknowledged", timeout: .seconds(20), every: .milliseconds(50)) {
                for update in first.events("UPDATE") {
                    guard let uuid = value(update, "update", "status", "uuid") as? String, !acknowledged.contains(uuid) else { continue }
                    let ack = #"{"type":"ACKNOWLEDGE","framework_id":{"value":"\#(frameworkID)"},"acknowledge":{"agent_id":{"value":"\#(agentID)"},"task_id":{"value":"v1-task"},"uuid":"\#(uuid)"}}"#
                    let answer = try await Self.post(leaderPort, ack, stream: stream)
                    #expect(answer.status == 202, "\(answer)")
                    acknowledged.insert(uuid)
                    if value(update, "update", "status", "state") as? String == "TASK_RUNNING" { return true }
                }
                return false
            }
            #expect(acknowledged.count == 2)

            // v1 and driver frameworks on one master: both frameworks, both tasks running.
            let state = try await HTTPProbe.get(port: leaderPort, "/master/state")
            let running2 = OperatorHTTPTests.tasks(state.object)
            #expect(running2.count == 2 && running2.contains("\(frameworkID)/v1-task"), "\(running2)")

            // The leader dies: the stream ends. The new leader takes a re-SUBSCRIBE with the
            // framework id, and the task is still there (reconciliation says TASK_RUNNING).
            let killedAt = ContinuousClock.now
            await leader.daemon.kill()
            #expect(await first.curl.waitForExit(timeout: .seconds(20)) != nil, "curl's stream did not end with its master")
            let (_, newRecord, _) = try await cluster.waitForNewLeader(after: record, since: killedAt, timeout: .seconds(30))
            let newPort = try Self.port(newRecord.pid)
            try await cluster.waitForAgentsReregistered(with: newRecord)
            // A stream id of the deposed leader means nothing here.
            let stale = try await Self.post(newPort, #"{"type":"REVIVE","framework_id":{"value":"\#(frameworkID)"}}"#, stream: stream)
            #expect(stale.status == 400 || stale.status == 403, "\(stale)")

            let second = try CurlSubscription(cluster, name: "curl-subscribe-2", port: newPort, body: Self.subscribeBody(id: frameworkID))
            let again = try await second.waitFor("SUBSCRIBED", type("SUBSCRIBED"))
            #expect(value(again, "subscribed", "framework_id", "value") as? String == frameworkID)
            let stream2 = try #require(second.headers["mesos-stream-id"])
            #expect(stream2 != stream)
            let reconcile = #"{"type":"RECONCILE","framework_id":{"value":"\#(frameworkID)"},"reconcile":{"tasks":[{"task_id":{"value":"v1-task"}}]}}"#
            #expect(try await Self.post(newPort, reconcile, stream: stream2).status == 202)
            let reconciled = try await second.waitFor("a reconciliation update") { value($0, "update", "status", "reason") as? String == "REASON_RECONCILIATION" }
            #expect(value(reconciled, "update", "status", "state") as? String == "TASK_RUNNING")
            #expect(value(reconciled, "update", "status", "uuid") == nil)  // nothing to acknowledge

            // A newer subscription fails the older one over: ERROR "Framework failed over", its stream ends.
            let third = try CurlSubscription(cluster, name: "curl-subscribe-3", port: newPort, body: Self.subscribeBody(id: frameworkID))
            _ = try await third.waitFor("SUBSCRIBED", type("SUBSCRIBED"))
            let error = try await second.waitFor("ERROR", type("ERROR"))
            #expect(value(error, "error", "message") as? String == "Framework failed over")
            #expect(await second.curl.waitForExit(timeout: .seconds(10)) != nil, "the older stream did not end")
            #expect(try await Self.post(newPort, reconcile, stream: stream2).status == 400)

            // TEARDOWN: 202, the stream ends without an ERROR, the task is killed.
            let teardown = #"{"type":"TEARDOWN","framework_id":{"value":"\#(frameworkID)"}}"#
            let streamID3 = try #require(third.headers["mesos-stream-id"])
            #expect(try await Self.post(newPort, teardown, stream: streamID3).status == 202)
            #expect(await third.curl.waitForExit(timeout: .seconds(10)) != nil, "TEARDOWN did not end the stream")
            #expect(third.events("ERROR").isEmpty)
        }
    }

    /// pymesos (PyPI, installed by scripts/setup into .tmp/pymesos-venv) finds the leader through
    /// ZooKeeper, launches a task, gets TASK_RUNNING (acknowledged by the library), and after a
    /// leader SIGKILL re-subscribes with the new leader, which still knows the task.
    @Test func aPymesosSchedulerRunsATaskAndSurvivesALeaderFailover() async throws {
        let python = Products.packageRoot.appending(path: ".tmp/pymesos-venv/bin/python").path
        try #require(FileManager.default.isExecutableFile(atPath: python), "pymesos is installed by scripts/setup")
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 1, tasks: 0)
            let (leader, record) = try await cluster.leader()
            let script = Products.packageRoot.appending(path: "python/tests/pymesos_scheduler.py").path
            let scheduler = try cluster.process("pymesos-scheduler", python, ["-u", script, cluster.url])
            let registered = try await scheduler.waitForLog("event=registered", timeout: .seconds(30))
            let frameworkID = try field(registered, after: "framework_id=")
            _ = try await scheduler.waitForLog("event=status task_id=pymesos-task state=TASK_RUNNING", timeout: .seconds(30))
            let state = try await HTTPProbe.get(port: try Self.port(record.pid), "/master/state")
            #expect(OperatorHTTPTests.tasks(state.object) == ["\(frameworkID)/pymesos-task"], "\(state)")

            let killedAt = ContinuousClock.now
            await leader.daemon.kill()
            let (_, newRecord, _) = try await cluster.waitForNewLeader(after: record, since: killedAt, timeout: .seconds(30))
            try await cluster.waitForAgentsReregistered(with: newRecord)
            _ = try await scheduler.waitForLog("event=reregistered", timeout: .seconds(60))
            _ = try await scheduler.waitForLog("event=status task_id=pymesos-task state=TASK_RUNNING reason=REASON_RECONCILIATION uuid=False", timeout: .seconds(30))
            let after = try await HTTPProbe.get(port: try Self.port(newRecord.pid), "/master/state")
            #expect(OperatorHTTPTests.tasks(after.object) == ["\(frameworkID)/pymesos-task"], "\(after)")
            let frameworks = (after.object?["frameworks"] as? [[String: Any]] ?? []).filter { $0["id"] as? String == frameworkID }
            #expect(frameworks.first?["connected"] as? Bool == true, "\(after)")
            #expect(!scheduler.lines.contains { $0.contains("event=error") }, "\(scheduler.log)")
            #expect(scheduler.isRunning, "\(scheduler.log)")
        }
    }
}
