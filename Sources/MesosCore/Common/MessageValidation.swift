import MesosWire

/// Every value of a decoded payload that a core acts on, checked before it does (ids, text,
/// resources, counts, seconds, pids). Decoding already refused malformed protobuf; this refuses
/// well-formed values no core may act on (NaN, negative, huge, empty ids, overlong strings...).
public enum MessageValidation {
    public static func validate(_ payload: Envelope.Payload) throws(InvalidValue) {
        switch payload {
        case .registerAgent(let m): try agent(m.agent, "agent")
        case .reregisterAgent(let m):
            try agent(m.agent, "agent")
            guard m.agent.id != nil else { throw InvalidValue("agent.id", "is missing in a re-registration") }
            try V.count(m.tasks.count, field: "tasks")
            for t in m.tasks { try task(t, "tasks") }
            try V.count(m.frameworks.count, field: "frameworks")
            for f in m.frameworks { try framework(f, "frameworks") }
        case .agentRegistered(let m): try V.id(m.agentID.value, field: "agent_id")
        case .agentReregistered(let m):
            try V.id(m.agentID.value, field: "agent_id")
            try V.count(m.reconciliations.count, field: "reconciliations")
            for r in m.reconciliations { try reconcile(r, "reconciliations") }
        case .runTask(let m):
            try V.id(m.frameworkID.value, field: "framework_id")
            try framework(m.framework, "framework")
            try taskInfo(m.task, "task")
            _ = try V.pid(m.pid, field: "pid")
        case .killTask(let m):
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.id(m.taskID.value, field: "task_id")
        case .shutdownFramework(let m): try V.id(m.frameworkID.value, field: "framework_id")
        case .statusUpdate(let m):
            try update(m.update, "update")
            _ = try V.pid(m.pid, field: "pid")
        case .statusUpdateAck(let m):
            try V.id(m.agentID.value, field: "agent_id")
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.id(m.taskID.value, field: "task_id")
            try uuid(m.uuid, "uuid")
        case .registerFramework(let m): try framework(m.framework, "framework")
        case .reregisterFramework(let m):
            try framework(m.framework, "framework")
            guard m.framework.id != nil else { throw InvalidValue("framework.id", "is missing in a re-registration") }
        case .frameworkRegistered(let m): try V.id(m.frameworkID.value, field: "framework_id")
        case .frameworkReregistered(let m): try V.id(m.frameworkID.value, field: "framework_id")
        case .unregisterFramework(let m): try V.id(m.frameworkID.value, field: "framework_id")
        case .deactivateFramework(let m): try V.id(m.frameworkID.value, field: "framework_id")
        case .resourceOffers(let m):
            try V.count(m.offers.count, field: "offers")
            for o in m.offers { try offer(o, "offers") }
        case .rescindOffer(let m): try V.id(m.offerID.value, field: "offer_id")
        case .launchTasks(let m):
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.count(m.tasks.count, field: "tasks")
            try V.count(m.offerIDs.count, field: "offer_ids")
            for o in m.offerIDs { try V.id(o.value, field: "offer_ids") }
            try filters(m.filters)
            // Task contents are checked per task: a bad task gets TASK_ERROR, the others launch.
        case .declineOffers(let m):
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.count(m.offerIDs.count, field: "offer_ids")
            for o in m.offerIDs { try V.id(o.value, field: "offer_ids") }
            try filters(m.filters)
        case .reviveOffers(let m): try V.id(m.frameworkID.value, field: "framework_id")
        case .suppressOffers(let m): try V.id(m.frameworkID.value, field: "framework_id")
        case .reconcileTasks(let m): try reconcile(m, "")
        case .lostAgent(let m): try V.id(m.agentID.value, field: "agent_id")
        case .frameworkError(let m): try V.text(m.message, field: "message")
        case .frameworkDisconnected(let m): try V.text(m.reason, field: "reason")
        case .messageRefused(let m):
            try V.text(m.kind, field: "kind")
            try V.text(m.reason, field: "reason")
        case .shutdown(let m): try V.text(m.message, field: "message")
        case .leaderHint(let m):
            if let info = m.leader { try masterInfo(info, "leader") }
            try V.text(m.reason, field: "reason")
        case .unregisterAgent(let m): try V.id(m.agentID.value, field: "agent_id")
        case .registerExecutor(let m):
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.id(m.executorID.value, field: "executor_id")
        case .executorRegistered(let m):
            try executor(m.executorInfo, "executor_info")
            try V.id(m.frameworkID.value, field: "framework_id")
            try framework(m.frameworkInfo, "framework_info")
            try V.id(m.agentID.value, field: "agent_id")
            try agent(m.agentInfo, "agent_info")
        case .reregisterExecutor(let m):
            try V.id(m.executorID.value, field: "executor_id")
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.count(m.tasks.count, field: "tasks")
            for t in m.tasks { try taskInfo(t, "tasks") }
            try V.count(m.updates.count, field: "updates")
            for u in m.updates { try update(u, "updates") }
        case .executorReregistered(let m):
            try V.id(m.agentID.value, field: "agent_id")
            try agent(m.agentInfo, "agent_info")
        case .reconnectExecutor(let m): try V.id(m.agentID.value, field: "agent_id")
        case .shutdownExecutor(let m):
            if let e = m.executorID { try V.id(e.value, field: "executor_id") }
            if let f = m.frameworkID { try V.id(f.value, field: "framework_id") }
        case .exitedExecutor(let m):
            try V.id(m.agentID.value, field: "agent_id")
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.id(m.executorID.value, field: "executor_id")
        case .executorToFramework(let m):
            try V.id(m.agentID.value, field: "agent_id")
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.id(m.executorID.value, field: "executor_id")
            try data(m.data, "data")
        case .frameworkToExecutor(let m):
            try V.id(m.agentID.value, field: "agent_id")
            try V.id(m.frameworkID.value, field: "framework_id")
            try V.id(m.executorID.value, field: "executor_id")
            try data(m.data, "data")
        case .ping, .pong, .authenticate, .authenticationChallenge, .authenticationResponse, .authenticationResult,
             .returnRouteOffer, .returnRouteClaim, .returnRouteDecline:
            break
        }
    }

    private typealias V = WireValidation

    static func agent(_ a: AgentInfo, _ f: String) throws(InvalidValue) {
        try V.text(a.hostname, field: f + ".hostname")
        guard !a.hostname.isEmpty else { throw InvalidValue(f + ".hostname", "is empty") }
        guard (0...65535).contains(a.port) else { throw InvalidValue(f + ".port", "\(a.port) is not a port") }
        try V.resources(a.resources, field: f + ".resources")
        if let id = a.id { try V.id(id.value, field: f + ".id") }
        _ = try V.pid(a.pid, field: f + ".pid")
    }

    public static func framework(_ fw: FrameworkInfo, _ f: String) throws(InvalidValue) {
        try V.text(fw.user, field: f + ".user")
        try V.text(fw.name, field: f + ".name")
        if let id = fw.id { try V.id(id.value, field: f + ".id") }
        _ = try V.seconds(fw.failoverTimeout, field: f + ".failover_timeout")
        try V.text(fw.role, field: f + ".role")
        try V.text(fw.hostname, field: f + ".hostname")
        try V.text(fw.principal, field: f + ".principal")
        try V.text(fw.webuiUrl, field: f + ".webui_url")
        try V.count(fw.capabilities.count, field: f + ".capabilities")
    }

    /// A task a framework asks to launch (its own TASK_ERROR when invalid).
    public static func taskInfo(_ t: TaskInfo, _ f: String) throws(InvalidValue) {
        try V.text(t.name, field: f + ".name")
        try V.id(t.taskID.value, field: f + ".task_id")
        try V.id(t.agentID.value, field: f + ".agent_id")
        try V.resources(t.resources, field: f + ".resources")
        if let c = t.command {
            try V.text(c.value, field: f + ".command.value")
            try V.count(c.arguments.count, field: f + ".command.arguments")
            for a in c.arguments { try V.text(a, field: f + ".command.arguments") }
        }
    }

    static func task(_ t: MesosTask, _ f: String) throws(InvalidValue) {
        try V.text(t.name, field: f + ".name")
        try V.id(t.taskID.value, field: f + ".task_id")
        try V.id(t.frameworkID.value, field: f + ".framework_id")
        try V.id(t.agentID.value, field: f + ".agent_id")
        try V.resources(t.resources, field: f + ".resources")
        if let s = t.status { try status(s, f + ".status") }
        if let e = t.executorID { try V.id(e.value, field: f + ".executor_id") }
    }

    static func status(_ s: TaskStatus, _ f: String) throws(InvalidValue) {
        try V.id(s.taskID.value, field: f + ".task_id")
        try V.text(s.message, field: f + ".message")
        if let a = s.agentID { try V.id(a.value, field: f + ".agent_id") }
        if let t = s.timestamp, !t.isFinite { throw InvalidValue(f + ".timestamp", "\(t) is not finite") }
        if let u = s.uuid { try uuid(u, f + ".uuid") }
    }

    static func update(_ u: StatusUpdate, _ f: String) throws(InvalidValue) {
        try V.id(u.frameworkID.value, field: f + ".framework_id")
        try status(u.status, f + ".status")
        guard u.timestamp.isFinite else { throw InvalidValue(f + ".timestamp", "\(u.timestamp) is not finite") }
        try uuid(u.uuid, f + ".uuid")
        if let a = u.agentID { try V.id(a.value, field: f + ".agent_id") }
        if let e = u.executorID { try V.id(e.value, field: f + ".executor_id") }
    }

    static func executor(_ e: ExecutorInfo, _ f: String) throws(InvalidValue) {
        try V.id(e.executorID.value, field: f + ".executor_id")
        try V.resources(e.resources, field: f + ".resources")
        if let fid = e.frameworkID { try V.id(fid.value, field: f + ".framework_id") }
        try V.text(e.name, field: f + ".name")
        try V.text(e.command?.value, field: f + ".command.value")
    }

    /// Framework messages are opaque bytes, bounded like free text.
    static func data(_ bytes: [UInt8], _ f: String) throws(InvalidValue) {
        guard bytes.count <= WireLimits.maxTextLength else { throw InvalidValue(f, "is \(bytes.count) bytes; at most \(WireLimits.maxTextLength)") }
    }

    static func uuid(_ bytes: [UInt8], _ f: String) throws(InvalidValue) {
        guard bytes.count <= 64 else { throw InvalidValue(f, "is \(bytes.count) bytes; at most 64") }
    }

    static func offer(_ o: Offer, _ f: String) throws(InvalidValue) {
        try V.id(o.id.value, field: f + ".id")
        try V.id(o.frameworkID.value, field: f + ".framework_id")
        try V.id(o.agentID.value, field: f + ".agent_id")
        try V.text(o.hostname, field: f + ".hostname")
        try V.resources(o.resources, field: f + ".resources")
    }

    static func filters(_ filters: Filters?) throws(InvalidValue) {
        if let r = filters?.refuseSeconds { _ = try V.seconds(r, field: "filters.refuse_seconds") }
    }

    static func reconcile(_ m: ReconcileTasksMessage, _ f: String) throws(InvalidValue) {
        let p = f.isEmpty ? "" : f + "."
        try V.id(m.frameworkID.value, field: p + "framework_id")
        try V.count(m.statuses.count, field: p + "statuses")
        for s in m.statuses { try status(s, p + "statuses") }
    }

    static func masterInfo(_ m: MasterInfo, _ f: String) throws(InvalidValue) {
        try V.text(m.id, field: f + ".id")
        _ = try V.pid(m.pid, field: f + ".pid")
        try V.text(m.hostname, field: f + ".hostname")
        try V.text(m.version, field: f + ".version")
    }
}

extension Envelope.Payload {
    /// Messages a registered agent sends to masters: from a removed agent's pid they get a
    /// shutdown. (A registration without an id is a new agent, whatever its address.)
    public var isFromRegisteredAgent: Bool {
        switch self {
        case .pong, .statusUpdate, .exitedExecutor, .executorToFramework, .unregisterAgent: true
        default: false
        }
    }

    /// Who may send this message to a master: an agent's messages need a connection proven as an
    /// agent, a scheduler's one proven as a scheduler (`EpochGuard`, when masters require roles).
    public var senderRoleAtMaster: PeerIdentity.Role? {
        switch self {
        case .registerAgent, .reregisterAgent, .pong, .statusUpdate, .exitedExecutor, .executorToFramework, .unregisterAgent:
            .agent
        case .registerFramework, .reregisterFramework, .unregisterFramework, .deactivateFramework, .launchTasks, .declineOffers,
            .reviveOffers, .suppressOffers, .killTask, .reconcileTasks, .statusUpdateAck, .frameworkToExecutor:
            .scheduler
        default: nil
        }
    }
}
