import MesosBus
import MesosWire
import Testing
@testable import MesosHTTP

/// `POST /api/v1/scheduler`'s checks, translation and rendering: pure, no sockets.
@Suite struct SchedulerAPITests {
    static let leader = LeaderAddress(pid: "master@10.0.0.2:5050", hostname: "m2.example", port: 5050, epoch: 7, id: "m2")

    static func post(_ body: String, contentType: String? = "application/json", headers: [(name: String, value: String)] = []) -> HTTPRequest {
        var h = headers
        if let contentType { h.append(("Content-Type", contentType)) }
        return HTTPRequest(method: "POST", uri: "/api/v1/scheduler", headers: h, body: Array(body.utf8))
    }

    static let subscribe = #"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","failover_timeout":100,"capabilities":[{"type":"PARTITION_AWARE"}]}}}"#

    func response(_ d: SchedulerAPI.Decision) -> HTTPResponse? { if case .respond(let r) = d { r } else { nil } }
    func text(_ r: HTTPResponse?) -> String { r.map { String(decoding: $0.body, as: UTF8.self) } ?? "" }

    @Test func aStandbyRedirectsToTheLeaderAndWithoutOneAnswers503() {
        let r = response(SchedulerAPI.decide(Self.post(Self.subscribe), .standby(leader: Self.leader)))
        #expect(r?.status == 307 && r?.header("Location") == "//m2.example:5050/master/api/v1/scheduler")
        let none = response(SchedulerAPI.decide(Self.post(Self.subscribe), .standby(leader: nil)))
        #expect(none?.status == 503 && text(none) == "No leader elected")
        #expect(response(SchedulerAPI.decide(Self.post(Self.subscribe), .recovering))?.status == 503)
    }

    @Test func methodAndContentTypeAreCheckedAsMesosDoes() {
        var get = Self.post("")
        get.method = "GET"
        let r = response(SchedulerAPI.decide(get, .leading))
        #expect(r?.status == 405 && r?.header("Allow") == "POST")
        #expect(response(SchedulerAPI.decide(Self.post(Self.subscribe, contentType: nil), .leading))?.status == 400)
        let wrong = response(SchedulerAPI.decide(Self.post(Self.subscribe, contentType: "text/plain"), .leading))
        #expect(wrong?.status == 415 && text(wrong) == "Expecting 'Content-Type' of application/json or application/x-protobuf")
        #expect(response(SchedulerAPI.decide(Self.post(Self.subscribe, contentType: "application/recordio"), .leading))?.status == 415)
    }

    @Test func malformedBodiesAndInvalidCallsGet400() {
        for body in ["{", #"{"type":"SUBSCRIBE"}"#, #"{"type":"KILL","kill":{"task_id":{"value":"t"}}}"#, #"{"subscribe":{}}"#,
            #"{"type":"ACKNOWLEDGE","framework_id":{"value":"f"},"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AQID"}}"#,
            #"{"type":"SUBSCRIBE","framework_id":{"value":"x"},"subscribe":{"framework_info":{"user":"u","name":"n"}}}"#]
        {
            #expect(response(SchedulerAPI.decide(Self.post(body), .leading))?.status == 400, "\(body)")
        }
        let garbage = response(SchedulerAPI.decide(Self.post("\u{1}\u{2}\u{3}", contentType: "application/x-protobuf"), .leading))
        #expect(garbage?.status == 400 && text(garbage).hasPrefix("Failed to parse body into Call protobuf"))
        #expect(response(SchedulerAPI.decide(Self.post(#"{"type":"UNKNOWN","framework_id":{"value":"f"}}"#), .leading))?.status == 501)
    }

    @Test func subscribeNegotiatesAcceptAndRefusesAStreamID() {
        guard case .subscribe(let info, .json) = SchedulerAPI.decide(Self.post(Self.subscribe), .leading) else { Issue.record("not a subscribe"); return }
        #expect(info.user == "u" && info.failoverTimeout == 100 && info.capabilities == [FrameworkInfo.Capability(type: .partitionAware)])
        guard case .subscribe(_, .protobuf) = SchedulerAPI.decide(Self.post(Self.subscribe, headers: [("Accept", "application/x-protobuf")]), .leading) else {
            Issue.record("protobuf not negotiated")
            return
        }
        let refused = response(SchedulerAPI.decide(Self.post(Self.subscribe, headers: [("Accept", "text/html")]), .leading))
        #expect(refused?.status == 406)
        #expect(SchedulerAPI.negotiate("application/json;q=0, */*") == .protobuf)
        #expect(SchedulerAPI.negotiate("*/*") == .json && SchedulerAPI.negotiate(nil) == .json)
        let withID = response(SchedulerAPI.decide(Self.post(Self.subscribe, headers: [("Mesos-Stream-Id", "s")]), .leading))
        #expect(withID?.status == 400 && text(withID) == "Subscribe calls should not include the 'Mesos-Stream-Id' header")
    }

    @Test func callsBecomeTheDriversMessagesWithTheirStreamID() {
        let accept = #"""
            {"type":"ACCEPT","framework_id":{"value":"f"},"accept":{"offer_ids":[{"value":"o1"}],"operations":[{"type":"LAUNCH","launch":{"task_infos":[
              {"name":"t","task_id":{"value":"t1"},"agent_id":{"value":"a1"},"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}],
               "command":{"value":"sleep 5"}}]}}],"filters":{"refuse_seconds":1}}}
            """#
        guard case .call(.launchTasks(let m), let fid, let sid) = SchedulerAPI.decide(Self.post(accept, headers: [("mesos-stream-id", "s1")]), .leading) else {
            Issue.record("not a launch")
            return
        }
        #expect(fid == FrameworkID(value: "f") && sid == "s1")
        #expect(m.offerIDs == [OfferID(value: "o1")] && m.filters == Filters(refuseSeconds: 1))
        #expect(m.tasks == [TaskInfo(name: "t", taskID: TaskID(value: "t1"), agentID: AgentID(value: "a1"), resources: [Resource(name: "cpus", scalar: 0.5)], command: CommandInfo(value: "sleep 5"))])
        guard case .call(.declineOffers, _, _) = SchedulerAPI.decide(Self.post(#"{"type":"ACCEPT","framework_id":{"value":"f"},"accept":{"offer_ids":[{"value":"o"}]}}"#), .leading) else {
            Issue.record("an ACCEPT without operations is not a decline")
            return
        }
        guard case .call(.reviveOffers, _, nil) = SchedulerAPI.decide(Self.post(#"{"type":"REVIVE","framework_id":{"value":"f"}}"#), .leading) else {
            Issue.record("REVIVE without a body")
            return
        }
        let ranges = accept.replacingOccurrences(of: #""type":"SCALAR","scalar":{"value":0.5}"#, with: #""type":"RANGES","ranges":{"range":[{"begin":1,"end":2}]}"#)
        #expect(response(SchedulerAPI.decide(Self.post(ranges), .leading))?.status == 400)
    }

    @Test func theCoresMessagesRenderAsMesosEvents() {
        let info = MasterInfo(id: "m", ip: 16_777_343, port: 5050, hostname: "h", version: "1.11.0")
        let subscribed = SchedulerAPI.event(.frameworkRegistered(FrameworkRegisteredMessage(frameworkID: FrameworkID(value: "f"), masterInfo: info)))
        #expect(subscribed?.json.rendered == #"{"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"f"},"heartbeat_interval_seconds":15.0,"master_info":{"id":"m","ip":16777343,"port":5050,"hostname":"h","version":"1.11.0"}}}"#)
        let offer = Offer(id: OfferID(value: "o"), frameworkID: FrameworkID(value: "f"), agentID: AgentID(value: "a"), hostname: "h", resources: [Resource(name: "cpus", scalar: 2)])
        let offers = SchedulerAPI.event(.resourceOffers(ResourceOffersMessage(offers: [offer], pids: [])))
        #expect(offers?.json.rendered == #"{"type":"OFFERS","offers":{"offers":[{"id":{"value":"o"},"framework_id":{"value":"f"},"agent_id":{"value":"a"},"hostname":"h","resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":2.0}}]}]}}"#)
        // A master-made update (no uuid) carries none: nothing to acknowledge.
        let lost = StatusUpdate(frameworkID: FrameworkID(value: "f"), status: TaskStatus(taskID: TaskID(value: "t"), state: .lost, source: .master, reason: .reconciliation), timestamp: 3, uuid: [])
        let update = SchedulerAPI.event(.statusUpdate(StatusUpdateMessage(update: lost)))
        #expect(update?.update?.status.uuid == nil && update?.update?.status.state == .lost && update?.update?.status.reason == .reconciliation)
        #expect(SchedulerAPI.event(.frameworkError(FrameworkErrorMessage(message: "Framework failed over")))?.json.rendered == #"{"type":"ERROR","error":{"message":"Framework failed over"}}"#)
        #expect(SchedulerAPI.event(.frameworkDisconnected(FrameworkDisconnectedMessage(reason: "x"))) == nil)
        #expect(SchedulerAPI.record(SchedulerAPI.heartbeat, as: .json) == Array("20\n{\"type\":\"HEARTBEAT\"}".utf8))
    }
}
