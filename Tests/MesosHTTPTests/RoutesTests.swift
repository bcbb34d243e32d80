import Foundation
import MesosBus
import Testing
@testable import MesosHTTP

/// The endpoints' decisions as pure functions of a snapshot: no sockets, no daemons.
@Suite struct RoutesTests {
    static let leaderAddress = LeaderAddress(pid: "master@10.0.0.2:5050", hostname: "m2.example", port: 5050, epoch: 7, id: "m2")

    static func snapshot(_ role: MasterSnapshot.Role, leader: LeaderAddress? = leaderAddress) -> MasterSnapshot {
        var s = MasterSnapshot(id: "m1", pid: "master@10.0.0.1:5050", hostname: "m1.example", version: "1.11.0", role: role, startTime: 1000, now: 1060)
        s.leader = leader
        if role == .leader {
            s.pid = leaderAddress.pid
            s.epoch = 7
        }
        s.agents = [
            AgentEntry(id: "a1", hostname: "h1", pid: "slave(1)@10.0.0.5:5051", port: 5051, resources: ["cpus": 2, "mem": 1024], usedResources: ["cpus": 0.5], active: true, health: .healthy),
            AgentEntry(id: "a2", hostname: "h2", pid: "slave(1)@10.0.0.6:5051", port: 5051, resources: ["cpus": 2], active: true, health: .missedPings(2)),
            AgentEntry(id: "a3", hostname: "h3", pid: "", port: 5051, resources: [:], active: false, health: .recovering),
        ]
        s.frameworks = [FrameworkEntry(id: "f1", name: "example", active: true, connected: true)]
        s.tasks = [
            TaskEntry(id: "t1", name: "t1", frameworkID: "f1", agentID: "a1", state: "TASK_RUNNING", resources: ["cpus": 0.5]),
            TaskEntry(id: "t2", name: "t2", frameworkID: "f1", agentID: "a1", state: "TASK_STAGING"),
        ]
        s.counters.tasksLost = 3
        s.counters.droppedMessages = 5
        s.counters.staleEpochDropped = 4
        return s
    }

    static func get(_ uri: String, method: String = "GET", body: String = "", headers: [(name: String, value: String)] = []) -> HTTPRequest {
        HTTPRequest(method: method, uri: uri, headers: headers, body: Array(body.utf8))
    }

    static func response(_ decision: MasterHTTPDecision) -> HTTPResponse? {
        if case .respond(let r) = decision { return r }
        return nil
    }

    static func object(_ r: HTTPResponse?) throws -> [String: Any] {
        let body = try #require(r).body
        return try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
    }

    // MARK: redirect

    @Test func redirectPointsAtTheLeaderOrAnswers503() {
        for path in ["/master/redirect", "/redirect"] {
            for role in [MasterSnapshot.Role.standby, .leader] {
                let r = Self.response(MasterRoutes.decide(Self.get(path), Self.snapshot(role)))
                #expect(r?.status == 307 && r?.header("Location") == "//m2.example:5050", "\(path) \(role)")
            }
            let none = Self.response(MasterRoutes.decide(Self.get(path), Self.snapshot(.standby, leader: nil)))
            #expect(none?.status == 503 && none.map { String(decoding: $0.body, as: UTF8.self) } == "No leader elected")
        }
        #expect(Self.response(MasterRoutes.decide(Self.get("/master/redirect/loop"), Self.snapshot(.standby)))?.status == 404)
    }

    // MARK: state

    @Test func aStandbyRedirectsStateToTheLeadersSamePath() {
        let r = Self.response(MasterRoutes.decide(Self.get("/state?jsonp=cb"), Self.snapshot(.standby)))
        #expect(r?.status == 307)
        #expect(r?.header("Location") == "//m2.example:5050/master/state?jsonp=cb")
        let none = Self.response(MasterRoutes.decide(Self.get("/master/state"), Self.snapshot(.standby, leader: nil)))
        #expect(none?.status == 503)
    }

    @Test func aRecoveringLeaderAnswers503() {
        for path in ["/master/state", "/master/teardown"] {
            let r = Self.response(MasterRoutes.decide(Self.get(path, method: "POST"), Self.snapshot(.recovering)))
            #expect(r?.status == 503 && r.map { String(decoding: $0.body, as: UTF8.self) } == "Master has not finished recovery", "\(path)")
        }
    }

    @Test func theLeadersStateListsAgentsWithHealthFrameworksAndTasks() throws {
        let r = Self.response(MasterRoutes.decide(Self.get("/master/state"), Self.snapshot(.leader)))
        #expect(r?.status == 200 && r?.header("Content-Type") == "application/json")
        let state = try Self.object(r)
        #expect(state["leader"] as? String == "master@10.0.0.2:5050")
        #expect(state["epoch"] as? Double == 7)
        #expect(state["role"] as? String == "leader")
        let slaves = try #require(state["slaves"] as? [[String: Any]])
        #expect(slaves.map { ($0["health"] as? [String: Any])?["state"] as? String } == ["healthy", "missed_pings", "recovering"])
        #expect((slaves[1]["health"] as? [String: Any])?["missed_pings"] as? Double == 2)
        let frameworks = try #require(state["frameworks"] as? [[String: Any]])
        let tasks = try #require(frameworks.first?["tasks"] as? [[String: Any]])
        #expect(tasks.map { $0["state"] as? String } == ["TASK_RUNNING", "TASK_STAGING"])
        #expect(tasks.first?["slave_id"] as? String == "a1")
    }

    @Test func jsonpWrapsTheAnswer() {
        let r = Self.response(MasterRoutes.decide(Self.get("/metrics/snapshot?jsonp=show"), Self.snapshot(.leader)))
        let body = r.map { String(decoding: $0.body, as: UTF8.self) } ?? ""
        #expect(r?.header("Content-Type") == "text/javascript" && body.hasPrefix("show({") && body.hasSuffix("});"))
    }

    // MARK: metrics

    @Test func metricsUseMesossNamesAndElectedIsOneOnlyOnTheLeader() throws {
        let leader = try Self.object(Self.response(MasterRoutes.decide(Self.get("/metrics/snapshot"), Self.snapshot(.leader))))
        let standby = try Self.object(Self.response(MasterRoutes.decide(Self.get("/metrics/snapshot"), Self.snapshot(.standby))))
        #expect(leader["master/elected"] as? Double == 1)
        #expect(standby["master/elected"] as? Double == 0)
        #expect(Set(leader.keys) == Set(standby.keys), "a standby publishes the same keys")
        #expect(leader["master/uptime_secs"] as? Double == 60)
        #expect(leader["master/slaves_active"] as? Double == 2)
        #expect(leader["master/slaves_disconnected"] as? Double == 2, "missing pings and recovering")
        #expect(leader["master/tasks_running"] as? Double == 1)
        #expect(leader["master/tasks_staging"] as? Double == 1)
        #expect(leader["master/tasks_lost"] as? Double == 3)
        #expect(leader["master/dropped_messages"] as? Double == 5)
        #expect(leader["master/stale_epoch_dropped"] as? Double == 4)
        #expect(leader["master/epoch"] as? Double == 7)
        #expect(leader["master/cpus_total"] as? Double == 4)
        #expect(leader["master/cpus_used"] as? Double == 0.5)
        for key in ["master/frameworks_active", "master/slaves_connected", "master/leader_changes"] {
            #expect(leader[key] != nil, "\(key)")
        }
    }

    @Test func theBusCountersArePublishedByMastersAndAgents() throws {
        var master = Self.snapshot(.leader)
        master.bus.messagesReceived = 12
        master.bus.connectionsRejected = 3
        master.bus.linksStalled = 2
        master.bus.returnRoutesAdopted = 9
        let m = try Self.object(Self.response(MasterRoutes.decide(Self.get("/metrics/snapshot"), master)))
        #expect(m["bus/messages_received"] as? Double == 12)
        #expect(m["bus/connections_rejected"] as? Double == 3)
        #expect(m["bus/links_stalled"] as? Double == 2)
        #expect(m["bus/return_routes_adopted"] as? Double == 9)
        var agent = AgentSnapshot(id: "a1", pid: "slave(1)@10.0.0.5:5051", hostname: "h1", version: "1.11.0", recovering: false, registered: true, startTime: 10, now: 15)
        agent.bus.messagesDropped = 4
        let a = try Self.object(AgentRoutes.respond(Self.get("/metrics/snapshot"), agent))
        #expect(a["bus/messages_dropped"] as? Double == 4)
        #expect(a["bus/tls_handshakes"] as? Double == 0)
    }

    @Test func prometheusTextCarriesTheSameValues() {
        let exporter = PrometheusExporter()
        var s = Self.snapshot(.leader)
        let first = String(decoding: MasterRoutes.prometheus(MasterMetricsReport.values(s), exporter).body, as: UTF8.self)
        #expect(first.contains("# TYPE mesos_master_elected gauge\nmesos_master_elected 1.0\n"))
        #expect(first.contains("# TYPE mesos_master_tasks_lost counter\nmesos_master_tasks_lost 3\n"))
        s.counters.tasksLost = 5
        s.role = .standby
        let second = String(decoding: MasterRoutes.prometheus(MasterMetricsReport.values(s), exporter).body, as: UTF8.self)
        #expect(second.contains("mesos_master_tasks_lost 5\n"), "a counter follows the master's count")
        #expect(second.contains("mesos_master_elected 0.0\n"))
        #expect(PrometheusExporter.prometheusName("master/slave_removals/reason_unhealthy") == "mesos_master_slave_removals_reason_unhealthy")
    }

    // MARK: teardown

    @Test func teardownChecksLeaderMethodFormAndFramework() {
        let s = Self.snapshot(.leader)
        func status(_ r: HTTPRequest, _ s: MasterSnapshot = Self.snapshot(.leader)) -> Int? { Self.response(MasterRoutes.decide(r, s))?.status }
        #expect(status(Self.get("/master/teardown", method: "POST", body: "frameworkId=f1"), Self.snapshot(.standby)) == 307)
        #expect(status(Self.get("/master/teardown", method: "POST", body: "frameworkId=f1"), Self.snapshot(.standby, leader: nil)) == 503)
        let get = Self.response(MasterRoutes.decide(Self.get("/master/teardown"), s))
        #expect(get?.status == 405 && get?.header("Allow") == "POST")
        #expect(status(Self.get("/master/teardown", method: "POST", body: "")) == 400)
        #expect(status(Self.get("/master/teardown", method: "POST", body: "frameworkId=%zz")) == 400)
        #expect(status(Self.get("/master/teardown", method: "POST", body: "frameworkId=nope")) == 400)
        guard case .teardown(let id) = MasterRoutes.decide(Self.get("/teardown", method: "POST", body: "frameworkId=f1"), s) else {
            Issue.record("not torn down")
            return
        }
        #expect(id == "f1")
    }

    @Test func teardownHonoursAuthentication() {
        let s = Self.snapshot(.leader)
        let credentials = [Credential(principal: "ops", secret: "pw")]
        let basic = { (user: String, pass: String) in [(name: "Authorization", value: "Basic " + Data("\(user):\(pass)".utf8).base64EncodedString())] }
        let body = "frameworkId=f1"
        let none = Self.response(MasterRoutes.decide(Self.get("/master/teardown", method: "POST", body: body), s, readwriteCredentials: credentials))
        #expect(none?.status == 401 && none?.header("WWW-Authenticate") != nil)
        let wrong = Self.response(MasterRoutes.decide(Self.get("/master/teardown", method: "POST", body: body, headers: basic("ops", "guess")), s, readwriteCredentials: credentials))
        #expect(wrong?.status == 401)
        guard case .teardown = MasterRoutes.decide(Self.get("/master/teardown", method: "POST", body: body, headers: basic("ops", "pw")), s, readwriteCredentials: credentials) else {
            Issue.record("the right credentials are refused")
            return
        }
    }

    // MARK: the rest

    @Test func healthVersionDashboardAndUnknownPaths() throws {
        for role in [MasterSnapshot.Role.leader, .standby, .recovering] {
            let s = Self.snapshot(role)
            #expect(Self.response(MasterRoutes.decide(Self.get("/health"), s))?.status == 200)
            #expect(Self.response(MasterRoutes.decide(Self.get("/master/health"), s))?.status == 200)
            let version = try Self.object(Self.response(MasterRoutes.decide(Self.get("/version"), s)))
            #expect(version["version"] as? String == "1.11.0")
            let page = Self.response(MasterRoutes.decide(Self.get("/"), s))
            #expect(page?.status == 200 && page?.header("Content-Type")?.hasPrefix("text/html") == true)
            #expect(Self.response(MasterRoutes.decide(Self.get("/nothing/here"), s))?.status == 404)
        }
    }

    @Test func agentEndpoints() throws {
        var s = AgentSnapshot(id: "a1", pid: "slave(1)@10.0.0.5:5051", hostname: "h1", version: "1.11.0", recovering: true, registered: false, startTime: 10, now: 15)
        #expect(AgentRoutes.respond(Self.get("/slave(1)/state"), s).status == 503)
        #expect(AgentRoutes.respond(Self.get("/slave(1)/health"), s).status == 200)
        #expect(AgentRoutes.respond(Self.get("/health"), s).status == 200)
        #expect(AgentRoutes.respond(Self.get("/master/state"), s).status == 404)
        s.recovering = false
        s.registered = true
        s.master = Self.leaderAddress
        s.resources = ["cpus": 2]
        s.frameworks = [AgentFrameworkEntry(id: "f1", name: "example", tasks: [TaskEntry(id: "t1", name: "t1", frameworkID: "f1", agentID: "a1", executorID: "t1", state: "TASK_RUNNING", resources: ["cpus": 0.5])])]
        let state = try Self.object(AgentRoutes.respond(Self.get("/slave(1)/state"), s))
        #expect(state["id"] as? String == "a1" && state["master_epoch"] as? Double == 7)
        let metrics = try Self.object(AgentRoutes.respond(Self.get("/metrics/snapshot"), s))
        #expect(metrics["slave/registered"] as? Double == 1)
        #expect(metrics["slave/tasks_running"] as? Double == 1)
        #expect(metrics["slave/cpus_used"] as? Double == 0.5)
        #expect(metrics["slave/uptime_secs"] as? Double == 5)
    }

    @Test func jsonKeepsKeyOrderAndEscapes() {
        let value = JSON.object([("b", .number(1)), ("a", .string("x\"<\n")), ("c", .array([.bool(true), .null, .number(0.25)]))])
        #expect(value.rendered == #"{"b":1.0,"a":"x\"\u003c\n","c":[true,null,0.25]}"#)
    }
}
