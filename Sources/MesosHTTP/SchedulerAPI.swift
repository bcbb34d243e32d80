import MesosBus
import MesosWire

/// The two media types of Mesos's v1 scheduler API (a request's `Content-Type`, the records of
/// a SUBSCRIBE stream as negotiated by `Accept`).
public enum SchedulerMediaType: String, Sendable, Hashable {
    case json = "application/json"
    case protobuf = "application/x-protobuf"
}

extension V1Call: ProtoJSONMessageDecoding {
    public static var rootName: String { "call" }
}

/// `POST /api/v1/scheduler` (Mesos's `Master::Http::scheduler`) as pure functions: the request's
/// checks in Mesos's order with its status codes and messages, the translation of a `Call` into
/// the message a driver would send for it (the master core runs the same rules for both), and
/// the rendering of the core's messages to a framework as `Event`s.
public enum SchedulerAPI {
    /// libprocess serves the master's endpoints under both names.
    public static let paths: Set<String> = ["/api/v1/scheduler", "/master/api/v1/scheduler"]
    /// Mesos's `DEFAULT_HEARTBEAT_INTERVAL` (not configurable).
    public static let heartbeatIntervalSeconds = 15.0

    public enum Leadership: Sendable {
        case leading
        /// Elected, reading the registry.
        case recovering
        case standby(leader: LeaderAddress?)
    }

    public enum Decision: Sendable {
        case respond(HTTPResponse)
        /// Open a stream (200) for this framework, its records in `accept`.
        case subscribe(FrameworkInfo, accept: SchedulerMediaType)
        /// Run this call for the framework if `streamID` is its subscription's: 202, or the core's refusal.
        case call(Envelope.Payload, framework: FrameworkID, streamID: String?)
    }

    public static func decide(_ request: HTTPRequest, _ leadership: Leadership) -> Decision {
        switch leadership {
        case .standby(let leader?):
            return .respond(HTTPResponse(status: 307, headers: [("Location", "//\(leader.hostname):\(leader.port)/master/api/v1/scheduler")]))
        case .standby(nil): return .respond(.text(503, "No leader elected"))
        case .recovering: return .respond(.text(503, "Master has not finished recovery"))
        case .leading: break
        }
        guard request.method == "POST" else {
            return .respond(HTTPResponse(status: 405, headers: [("Allow", "POST"), ("Content-Type", "text/plain; charset=utf-8")], body: Array("Expecting 'POST', received '\(request.method)'".utf8)))
        }
        guard let contentType = request.header("Content-Type")?.trimmingSpaces else {
            return .respond(.text(400, "Expecting 'Content-Type' to be present"))
        }
        guard let media = SchedulerMediaType(rawValue: contentType) else {
            return .respond(.text(415, "Expecting 'Content-Type' of application/json or application/x-protobuf"))
        }
        let call: V1Call
        switch media {
        case .json:
            do { call = try V1Call.decode(json: request.body) } catch { return .respond(.text(400, error.description)) }
        case .protobuf:
            do { call = try V1Call(serializedBytes: request.body) } catch { return .respond(.text(400, "Failed to parse body into Call protobuf: \(error)")) }
        }
        switch translate(call) {
        case .failure(let refusal): return .respond(.text(refusal.status, refusal.message))
        case .success(.subscribe(let info)):
            guard let accept = negotiate(request.header("Accept")) else {
                return .respond(.text(406, "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'"))
            }
            if request.header("Mesos-Stream-Id") != nil {
                return .respond(.text(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header"))
            }
            return .subscribe(info, accept: accept)
        case .success(.call(let payload, let framework)):
            return .call(payload, framework: framework, streamID: request.header("Mesos-Stream-Id"))
        }
    }

    /// `Accept` as Mesos negotiates it: JSON first, then protobuf; none, `*/*` and `application/*`
    /// allow both; `q=0` refuses a type.
    public static func negotiate(_ accept: String?) -> SchedulerMediaType? {
        guard let accept, !accept.trimmingSpaces.isEmpty else { return .json }
        var ranges: [(String, Double)] = []
        for part in accept.split(separator: ",") {
            let items = part.split(separator: ";").map { String($0).trimmingSpaces }
            guard let type = items.first?.lowercased() else { continue }
            var q = 1.0
            for p in items.dropFirst() where p.lowercased().hasPrefix("q=") { q = Double(p.dropFirst(2)) ?? 1.0 }
            ranges.append((type, q))
        }
        func allows(_ media: SchedulerMediaType) -> Bool {
            // The most specific range that matches decides (RFC 7231).
            let exact = ranges.first { $0.0 == media.rawValue }
            let wild = ranges.first { $0.0 == "application/*" } ?? ranges.first { $0.0 == "*/*" }
            guard let q = (exact ?? wild)?.1 else { return false }
            return q > 0
        }
        if allows(.json) { return .json }
        if allows(.protobuf) { return .protobuf }
        return nil
    }

    // MARK: Call -> the driver's message

    public enum Translated: Sendable, Hashable {
        case subscribe(FrameworkInfo)
        case call(Envelope.Payload, framework: FrameworkID)
    }

    public struct Refusal: Error, Sendable, Hashable {
        public var status: Int
        public var message: String
    }

    /// `validation::scheduler::call::validate`, then the message a driver sends for the call.
    public static func translate(_ call: V1Call) -> Result<Translated, Refusal> {
        func invalid(_ why: String) -> Result<Translated, Refusal> { .failure(Refusal(status: 400, message: "Failed to validate scheduler::Call: \(why)")) }
        func missing(_ field: String) -> Result<Translated, Refusal> { invalid("Expecting '\(field)' to be present") }
        guard let type = call.type else { return missing("type") }
        if type == .subscribe {
            guard let subscribe = call.subscribe else { return missing("subscribe") }
            if call.frameworkID != subscribe.frameworkInfo.id { return invalid("'framework_id' differs from 'subscribe.framework_info.id'") }
            return .success(.subscribe(frameworkInfo(subscribe.frameworkInfo)))
        }
        guard let fid = call.frameworkID.map({ FrameworkID(value: $0.value) }) else { return missing("framework_id") }
        func ok(_ payload: Envelope.Payload) -> Result<Translated, Refusal> { .success(.call(payload, framework: fid)) }
        switch type {
        case .teardown: return ok(.unregisterFramework(UnregisterFrameworkMessage(frameworkID: fid)))
        case .accept:
            guard let accept = call.accept else { return missing("accept") }
            let offers = accept.offerIDs.map { OfferID(value: $0.value) }
            let filters = accept.filters.map { Filters(refuseSeconds: $0.refuseSeconds) }
            var tasks: [TaskInfo] = []
            for op in accept.operations {
                guard op.type == .launch else {
                    return .failure(Refusal(status: 400, message: "Failed to validate scheduler::Call: operation \(op.type?.protoName ?? "UNKNOWN") is not supported by this master (LAUNCH only)"))
                }
                guard let launch = op.launch else { return missing("launch") }
                for t in launch.taskInfos {
                    switch taskInfo(t) {
                    case .success(let task): tasks.append(task)
                    case .failure(let why): return invalid(why.message)
                    }
                }
            }
            // ACCEPT with no operations declines the offers (Mesos).
            if accept.operations.isEmpty { return ok(.declineOffers(DeclineOffersMessage(frameworkID: fid, offerIDs: offers, filters: filters))) }
            return ok(.launchTasks(LaunchTasksMessage(frameworkID: fid, tasks: tasks, offerIDs: offers, filters: filters)))
        case .decline:
            guard let decline = call.decline else { return missing("decline") }
            return ok(.declineOffers(DeclineOffersMessage(frameworkID: fid, offerIDs: decline.offerIDs.map { OfferID(value: $0.value) }, filters: decline.filters.map { Filters(refuseSeconds: $0.refuseSeconds) })))
        case .revive: return ok(.reviveOffers(ReviveOffersMessage(frameworkID: fid)))
        case .suppress: return ok(.suppressOffers(SuppressOffersMessage(frameworkID: fid)))
        case .kill:
            guard let kill = call.kill else { return missing("kill") }
            return ok(.killTask(KillTaskMessage(frameworkID: fid, taskID: TaskID(value: kill.taskID.value))))
        case .acknowledge:
            guard let ack = call.acknowledge else { return missing("acknowledge") }
            guard ack.uuid.count == 16 else { return invalid("Not a valid UUID: 'acknowledge.uuid' must be 16 bytes") }
            return ok(.statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: ack.agentID.value), frameworkID: fid, taskID: TaskID(value: ack.taskID.value), uuid: ack.uuid)))
        case .reconcile:
            guard let reconcile = call.reconcile else { return missing("reconcile") }
            let statuses = reconcile.tasks.map { TaskStatus(taskID: TaskID(value: $0.taskID.value), state: .staging, agentID: $0.agentID.map { AgentID(value: $0.value) }) }
            return ok(.reconcileTasks(ReconcileTasksMessage(frameworkID: fid, statuses: statuses)))
        case .message:
            guard let m = call.message else { return missing("message") }
            return ok(.frameworkToExecutor(FrameworkToExecutorMessage(agentID: AgentID(value: m.agentID.value), frameworkID: fid, executorID: ExecutorID(value: m.executorID.value), data: m.data)))
        case .unknown:
            return .failure(Refusal(status: 501, message: "Received an unexpected 'UNKNOWN' call"))
        case .subscribe, .acceptInverseOffers, .declineInverseOffers, .shutdown, .acknowledgeOperationStatus, .reconcileOperations, .request, .updateFramework:
            return .failure(Refusal(status: 501, message: "'\(type.protoName)' calls are not implemented by this master"))
        }
    }

    static func frameworkInfo(_ v: V1FrameworkInfo) -> FrameworkInfo {
        let multiRole = v.capabilities.contains { $0.type == .multiRole }
        return FrameworkInfo(
            user: v.user, name: v.name, id: v.id.map { FrameworkID(value: $0.value) }, failoverTimeout: v.failoverTimeout, checkpoint: v.checkpoint,
            role: multiRole ? (v.roles.first ?? "*") : v.role, hostname: v.hostname, principal: v.principal, webuiUrl: v.webuiUrl,
            capabilities: v.capabilities.compactMap { c in c.type.flatMap { FrameworkInfo.Capability.Kind(rawValue: $0.rawValue) }.map { FrameworkInfo.Capability(type: $0) } })
    }

    static func taskInfo(_ t: V1TaskInfo) -> Result<TaskInfo, Refusal> {
        if t.executor != nil { return .failure(Refusal(status: 400, message: "task \(t.taskID.value): custom executors are not supported (use 'command')")) }
        var resources: [Resource] = []
        for r in t.resources {
            guard r.type == .scalar, let scalar = r.scalar else {
                return .failure(Refusal(status: 400, message: "task \(t.taskID.value): resource '\(r.name)' is not a SCALAR (only scalar resources are offered)"))
            }
            resources.append(Resource(name: r.name, scalar: scalar.value, role: r.allocationInfo?.role ?? r.role))
        }
        let command = t.command.map { CommandInfo(value: $0.value, shell: $0.shell, arguments: $0.arguments) }
        return .success(TaskInfo(name: t.name, taskID: TaskID(value: t.taskID.value), agentID: AgentID(value: t.agentID.value), resources: resources, command: command))
    }

    // MARK: The core's messages -> Events

    /// The event a driver's message to a framework becomes on its v1 stream; nil for messages
    /// that only drivers get (`frameworkDisconnected`, `messageRefused`).
    public static func event(_ payload: Envelope.Payload) -> V1Event? {
        switch payload {
        case .frameworkRegistered(let m): return subscribed(m.frameworkID, m.masterInfo)
        case .frameworkReregistered(let m): return subscribed(m.frameworkID, m.masterInfo)
        case .resourceOffers(let m): return V1Event(type: .offers, offers: V1Event.Offers(offers: m.offers.map(offer)))
        case .rescindOffer(let m): return V1Event(type: .rescind, rescind: V1Event.Rescind(offerID: V1OfferID(value: m.offerID.value)))
        case .statusUpdate(let m): return V1Event(type: .update, update: V1Event.Update(status: status(m.update)))
        case .frameworkError(let m): return V1Event(type: .error, error: V1Event.Error(message: m.message))
        case .executorToFramework(let m):
            return V1Event(type: .message, message: V1Event.Message(agentID: V1AgentID(value: m.agentID.value), executorID: V1ExecutorID(value: m.executorID.value), data: m.data))
        case .exitedExecutor(let m):
            return V1Event(type: .failure, failure: V1Event.Failure(agentID: V1AgentID(value: m.agentID.value), executorID: V1ExecutorID(value: m.executorID.value), status: m.status))
        case .lostAgent(let m): return V1Event(type: .failure, failure: V1Event.Failure(agentID: V1AgentID(value: m.agentID.value)))
        default: return nil
        }
    }

    public static let heartbeat = V1Event(type: .heartbeat)

    /// One event as a RecordIO record of the negotiated type.
    public static func record(_ event: V1Event, as media: SchedulerMediaType) -> [UInt8] {
        RecordIO.encode(media == .json ? event.json.bytes : event.serializedBytes())
    }

    static func subscribed(_ id: FrameworkID, _ info: MasterInfo) -> V1Event {
        V1Event(type: .subscribed, subscribed: V1Event.Subscribed(frameworkID: V1FrameworkID(value: id.value), heartbeatIntervalSeconds: heartbeatIntervalSeconds, masterInfo: masterInfo(info)))
    }

    public static func masterInfo(_ m: MasterInfo) -> V1MasterInfo {
        V1MasterInfo(
            id: m.id, ip: m.ip, port: m.port, pid: m.pid, hostname: m.hostname, version: m.version,
            address: m.address.map { V1Address(hostname: $0.hostname, ip: $0.ip, port: $0.port) })
    }

    static func offer(_ o: Offer) -> V1Offer {
        V1Offer(
            id: V1OfferID(value: o.id.value), frameworkID: V1FrameworkID(value: o.frameworkID.value), agentID: V1AgentID(value: o.agentID.value), hostname: o.hostname,
            resources: o.resources.map { V1Resource(name: $0.name, type: .scalar, scalar: V1Value.Scalar(value: $0.scalar), role: $0.role) })
    }

    static func status(_ u: StatusUpdate) -> V1TaskStatus {
        let s = u.status
        // Only updates that need an acknowledgement carry a uuid (Mesos clears it on the others).
        let uuid = !u.uuid.isEmpty ? u.uuid : (s.uuid?.isEmpty == false ? s.uuid : nil)
        return V1TaskStatus(
            taskID: V1TaskID(value: s.taskID.value), state: V1TaskState(rawValue: s.state.rawValue) ?? .unknown, message: s.message,
            source: s.source.flatMap { V1TaskStatus.Source(rawValue: $0.rawValue) }, reason: s.reason.flatMap { V1TaskStatus.Reason(rawValue: $0.rawValue) },
            agentID: (s.agentID ?? u.agentID).map { V1AgentID(value: $0.value) }, executorID: u.executorID.map { V1ExecutorID(value: $0.value) },
            timestamp: s.timestamp ?? u.timestamp, uuid: uuid, unreachableTime: s.unreachableTime.map { V1TimeInfo(nanoseconds: $0.nanoseconds) })
    }
}

extension String {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
