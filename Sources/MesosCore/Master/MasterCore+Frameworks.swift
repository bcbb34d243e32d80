import MesosWire

/// Frameworks: registration, the failover contract (disconnect, `failover_timeout`, scheduler
/// failover fencing, removal), and every call a scheduler makes.
extension MasterCore {
    // MARK: Registration and failover

    mutating func registerFramework(_ fw: FrameworkInfo, from: PID, peer: PeerIdentity) -> [Effect] {
        if let refusal = refusal(for: fw, peer: peer) { return refuseFramework(from, refusal) }
        if let (id, _) = frameworks.first(where: { $0.value.pid == from && $0.value.isConnected }) {
            return [.send(.frameworkRegistered(FrameworkRegisteredMessage(frameworkID: id, masterInfo: info)), to: from)]  // a retry
        }
        let id = FrameworkID(value: newID("F"))
        var stored = fw
        stored.id = id
        frameworks[id] = FrameworkRecord(info: stored, connection: .driver(from), principal: peer.principal, state: .connected, failoverTimeout: timeout(of: fw))
        lastAllocation = nil  // offer to it on the next tick
        return [
            .send(.frameworkRegistered(FrameworkRegisteredMessage(frameworkID: id, masterInfo: info)), to: from),
            .observe(.frameworkRegistered(id, name: fw.name, pid: from)),
        ]
    }

    mutating func reregisterFramework(_ fw: FrameworkInfo, failover: Bool, from: PID, peer: PeerIdentity) -> [Effect] {
        guard let id = fw.id else { return registerFramework(fw, from: from, peer: peer) }
        if let refusal = refusal(for: fw, peer: peer) { return refuseFramework(from, refusal) }
        var effects: [Effect] = []
        if var record = frameworks[id] {
            if record.principal != peer.principal, record.connection != nil {
                return refuseFramework(from, .principalMismatch(claimed: peer.principal, authenticated: record.principal))
            }
            if let old = record.connection, old != .driver(from) {
                // Another scheduler instance. Only an explicit failover takes the framework over
                // (Mesos's `force`); the old instance is told and fenced from then on.
                guard failover else { return refuseFramework(from, .failedOver) }
                metrics.frameworkFailovers += 1
                effects += discardOffers(of: id)
                if record.isConnected { effects += fence(old) }
                effects.append(.observe(.frameworkFailedOver(id, from: old, to: .driver(from))))
            } else {
                // The same scheduler again (a master failover, or it was disconnected): offers it may
                // have missed are rescinded and made anew.
                effects += rescindOffers { $0.frameworkID == id }
                effects.append(.observe(.frameworkReregistered(id, pid: from)))
            }
            record.info = fw
            record.connection = .driver(from)
            record.principal = peer.principal
            record.state = .connected
            record.active = true
            record.nextNotice = nil
            record.failoverTimeout = timeout(of: fw)
            frameworks[id] = record
        } else {
            // Unknown to this master (it has no tasks on any agent that came back): accepted as is.
            frameworks[id] = FrameworkRecord(info: fw, connection: .driver(from), principal: peer.principal, state: .connected, failoverTimeout: timeout(of: fw))
            effects.append(.observe(.frameworkReregistered(id, pid: from)))
        }
        lastAllocation = nil
        return [.send(.frameworkReregistered(FrameworkReregisteredMessage(frameworkID: id, masterInfo: info)), to: from)] + effects
    }

    func refusal(for fw: FrameworkInfo, peer: PeerIdentity) -> FrameworkRefusal? {
        if let id = fw.id, registry.removedFrameworks.contains(id) { return .removed }
        // With authentication, a framework's principal is the one its connection proved.
        if peer.principal != nil || fw.principal != nil, fw.principal != peer.principal {
            return .principalMismatch(claimed: fw.principal, authenticated: peer.principal)
        }
        return nil
    }

    func timeout(of fw: FrameworkInfo) -> Duration { Duration(validatingSeconds: fw.failoverTimeout) ?? .zero }

    private mutating func refuseFramework(_ from: PID, _ refusal: FrameworkRefusal) -> [Effect] {
        [.observe(.frameworkRefused(pid: from, reason: refusal)), .send(.frameworkError(FrameworkErrorMessage(message: refusal.description)), to: from)]
    }

    /// Runs a scheduler's call on `id` only when it comes from the framework's current scheduler
    /// (its pid, its principal) while connected. Anything else is refused and counted.
    mutating func call(_ id: FrameworkID, from: PID, peer: PeerIdentity, _ payload: Envelope.Payload, _ body: (inout MasterCore) -> [Effect]) -> [Effect] {
        guard let fw = frameworks[id] else {
            if registry.removedFrameworks.contains(id) {
                return refusedCall(from, payload, "Framework has been removed", error: FrameworkRefusal.removed.description)
            }
            return refusedCall(from, payload, "framework \(id.value) is not registered", error: nil)
        }
        guard fw.pid == from else {
            // An older instance after a failover (or a stranger): fenced.
            return refusedCall(from, payload, "not from framework \(id.value)'s scheduler", error: FrameworkRefusal.failedOver.description)
        }
        guard fw.principal == peer.principal else {
            return refusedCall(from, payload, "the connection's principal may not speak for framework \(id.value)", error: nil)
        }
        guard fw.isConnected else {
            // Its scheduler is there after all: ask it to re-register (its failover timer runs meanwhile).
            return [.send(.frameworkDisconnected(FrameworkDisconnectedMessage(reason: "framework \(id.value) is disconnected; re-register")), to: from)]
        }
        return body(&self)
    }

    private mutating func refusedCall(_ from: PID, _ payload: Envelope.Payload, _ reason: String, error: String?) -> [Effect] {
        metrics.invalidMessages += 1
        var effects: [Effect] = [.observe(.callRefused(from: from, kind: payload.kind, reason: reason))]
        if let error {
            effects.append(.send(.frameworkError(FrameworkErrorMessage(message: error)), to: from))
        } else {
            effects.append(.send(.messageRefused(MessageRefusedMessage(kind: payload.kind, reason: reason)), to: from))
        }
        return effects
    }

    /// The link to a scheduler broke: its framework is disconnected (offers rescinded, no new
    /// ones) and its failover timer starts. The notice below reconnects the link if the scheduler
    /// is still there (a reset, not a crash); it then re-registers and carries on.
    mutating func linkBroken(_ endpoint: String) -> [Effect] {
        guard isLeading else { return [] }
        var effects: [Effect] = []
        for (id, fw) in frameworks.sorted(by: { $0.key.value < $1.key.value }) where fw.isConnected && fw.pid?.endpoint == endpoint {
            effects += discardOffers(of: id)
            frameworks[id]?.state = .disconnected(since: now)
            frameworks[id]?.nextNotice = Notice(at: now, backoff: Self.firstNoticeBackoff)
            effects.append(.observe(.frameworkDisconnected(id, failoverTimeout: fw.failoverTimeout)))
            effects += noticeDisconnected(id)
        }
        return effects
    }

    static let firstNoticeBackoff: Duration = .seconds(1)
    static let maxNoticeBackoff: Duration = .seconds(30)

    /// Tells a disconnected framework's scheduler so, again and again with a doubling pause (each
    /// attempt reconnects the link; a scheduler that is there re-registers and carries on).
    private mutating func noticeDisconnected(_ id: FrameworkID) -> [Effect] {
        guard let fw = frameworks[id], case .disconnected = fw.state, let to = fw.pid, let notice = fw.nextNotice, now >= notice.at else { return [] }
        frameworks[id]?.nextNotice = Notice(at: now + notice.backoff, backoff: min(notice.backoff * 2, Self.maxNoticeBackoff))
        return [.send(.frameworkDisconnected(FrameworkDisconnectedMessage(reason: "the master's link to the scheduler broke; re-register")), to: to)]
    }

    mutating func expireDisconnectedFrameworks() -> [Effect] {
        var effects: [Effect] = []
        for (id, fw) in frameworks.sorted(by: { $0.key.value < $1.key.value }) {
            let since: Duration
            switch fw.state {
            case .connected: continue
            case .disconnected(let s), .recovered(let s): since = s
            }
            if now - since >= fw.failoverTimeout {
                effects += removeFramework(id, reason: .failoverTimeout)
            } else {
                effects += noticeDisconnected(id)
            }
        }
        return effects
    }

    /// Removes a framework for good: its offers go, its tasks are killed on their agents (their
    /// terminal updates are then acknowledged by the master), and its id may never register again.
    mutating func removeFramework(_ id: FrameworkID, reason: FrameworkRemovalReason) -> [Effect] {
        guard let fw = frameworks.removeValue(forKey: id) else { return [] }
        metrics.frameworkRemovals += 1
        var effects: [Effect] = [.observe(.frameworkRemoved(id, reason: reason))]
        effects += discardOffers(of: id)
        let keys = tasks.keys.filter { $0.framework == id }.sorted()
        var agentsWithTasks: Set<AgentID> = []
        for key in keys {
            if let task = tasks[key] { agentsWithTasks.insert(task.agentID) }
            removeTask(key)
        }
        for agentID in agentsWithTasks.sorted(by: { $0.value < $1.value }) {
            if let agent = agents[agentID] { effects.append(.send(.shutdownFramework(ShutdownFrameworkMessage(frameworkID: id)), to: agent.pid)) }
        }
        if let to = fw.reachable {
            if reason == .teardownByOperator { effects.append(deliver(.frameworkError(FrameworkErrorMessage(message: FrameworkRefusal.removed.description)), to: to)) }
            if case .http(let stream) = to { effects.append(.closeStream(stream)) }  // Mesos: TEARDOWN ends the stream with no event
        }
        completedFrameworks.append(fw.info)
        if completedFrameworks.count > settings.maxCompletedFrameworks { completedFrameworks.removeFirst(completedFrameworks.count - settings.maxCompletedFrameworks) }
        registry.removedFrameworks.append(id)
        if registry.removedFrameworks.count > settings.maxRemovedFrameworkIDs {
            registry.removedFrameworks.removeFirst(registry.removedFrameworks.count - settings.maxRemovedFrameworkIDs)
        }
        return effects + store(.frameworkRemoved)
    }

    mutating func deactivate(_ id: FrameworkID) -> [Effect] {
        frameworks[id]?.active = false
        return rescindOffers { $0.frameworkID == id }
    }

    mutating func suppress(_ id: FrameworkID) -> [Effect] {
        frameworks[id]?.suppressed = true
        return []
    }

    /// Best effort, as Mesos: to the agent if it is registered and active.
    mutating func frameworkToExecutor(_ m: FrameworkToExecutorMessage) -> [Effect] {
        guard let agent = agents[m.agentID], agent.isActive else { return [] }
        return [.send(.frameworkToExecutor(m), to: agent.pid)]
    }

    mutating func revive(_ id: FrameworkID) -> [Effect] {
        frameworks[id]?.refusedUntil = [:]
        frameworks[id]?.suppressed = false
        lastAllocation = nil
        return []
    }

    // MARK: Tasks

    mutating func launch(_ m: LaunchTasksMessage, replyTo from: FrameworkConnection) -> [Effect] {
        guard let framework = frameworks[m.frameworkID] else { return [] }
        let used = m.offerIDs.compactMap { offers[$0] }
        let valid = used.count == m.offerIDs.count && !used.isEmpty
            && used.allSatisfy { $0.frameworkID == m.frameworkID && $0.agentID == used[0].agentID }
        for id in m.offerIDs { removeOffer(id) }
        var effects: [Effect] = []
        guard valid, let agentID = used.first?.agentID, let agent = agents[agentID], agent.isActive else {
            // A task id already in use stays as it is (a replayed launch must not make a running task LOST).
            for task in m.tasks where tasks[TaskKey(framework: m.frameworkID, task: task.taskID)] == nil {
                effects.append(deliver(.statusUpdate(masterUpdate(task.taskID, m.frameworkID, task.agentID, .lost, .invalidOffers, "invalid or stale offers")), to: from))
            }
            return effects
        }
        var offered = Resources(used.flatMap(\.resources))
        for task in m.tasks {
            let key = TaskKey(framework: m.frameworkID, task: task.taskID)
            let problem: String?
            do {
                try MessageValidation.taskInfo(task, "task")
                let need = Resources(task.resources)
                if task.agentID != agentID { problem = "task names agent \(task.agentID.value), not the offers' agent" }
                else if !offered.contains(need) { problem = "task does not fit the offered resources" }
                else if tasks[key] != nil { problem = "task id \(task.taskID.value) is already in use by this framework" }
                else if task.command?.value?.isEmpty != false { problem = "task has no command" }
                else { problem = nil }
            } catch {
                problem = error.description
            }
            if let problem {
                effects.append(deliver(.statusUpdate(masterUpdate(task.taskID, m.frameworkID, task.agentID, .error, .taskInvalid, problem)), to: from))
                continue
            }
            offered.subtract(Resources(task.resources))
            setTask(key, MesosTask(name: task.name, taskID: task.taskID, frameworkID: m.frameworkID, agentID: agentID, state: .staging, resources: task.resources))
            // A v1 HTTP scheduler has no pid (Mesos sends none); the agent gets the master's.
            let schedulerPID = if case .driver(let pid) = from { pid } else { self.pid }
            effects.append(.send(.runTask(RunTaskMessage(frameworkID: m.frameworkID, framework: framework.info, task: task, pid: schedulerPID.description)), to: agent.pid))
        }
        if let filters = m.filters, !offered.isEmpty { refuseAgent(agentID, for: m.frameworkID, seconds: filters.refuseSeconds) }
        return effects
    }

    mutating func decline(_ m: DeclineOffersMessage) -> [Effect] {
        let seconds = m.filters?.refuseSeconds ?? Filters().refuseSeconds
        for id in m.offerIDs {
            guard let offer = offers[id], offer.frameworkID == m.frameworkID else { continue }
            removeOffer(id)
            refuseAgent(offer.agentID, for: m.frameworkID, seconds: seconds)
        }
        return []
    }

    private mutating func refuseAgent(_ agent: AgentID, for framework: FrameworkID, seconds: Double) {
        guard let d = Duration(validatingSeconds: seconds), d > .zero else { return }  // validated at entry
        frameworks[framework]?.refusedUntil[agent] = now + d
    }

    mutating func kill(_ m: KillTaskMessage, replyTo from: FrameworkConnection) -> [Effect] {
        let key = TaskKey(framework: m.frameworkID, task: m.taskID)
        guard let task = tasks[key] else {
            // Unknown: while agents are still expected to re-register, the task may be on one of
            // them, so there is no answer yet (as Mesos); afterwards it is lost.
            guard recoveringAgents.isEmpty else { return [] }
            return [deliver(.statusUpdate(masterUpdate(m.taskID, m.frameworkID, nil, .lost, .reconciliation, "Reconciliation: Task is unknown")), to: from)]
        }
        guard let agent = agents[task.agentID], agent.isActive else {
            pendingKills.insert(key)  // sent when its agent re-registers
            return []
        }
        return [.send(.killTask(m), to: agent.pid)]
    }

    mutating func acknowledge(_ m: StatusUpdateAcknowledgementMessage) -> [Effect] {
        guard let agent = agents[m.agentID], agent.isActive else { return [] }
        let key = TaskKey(framework: m.frameworkID, task: m.taskID)
        if let task = tasks[key], task.state.isTerminal, task.status?.uuid == m.uuid { removeTask(key) }
        return [.send(.statusUpdateAck(m), to: agent.pid)]
    }

    /// Mesos's reconciliation rules (`Master::reconcile`); TASK_LOST replaces the partition-aware
    /// states for frameworks without PARTITION_AWARE.
    mutating func reconcile(_ m: ReconcileTasksMessage, replyTo from: FrameworkConnection) -> [Effect] {
        guard let fw = frameworks[m.frameworkID] else { return [] }
        func answer(_ status: TaskStatus) -> Effect {
            var s = status
            s.source = .master
            s.reason = .reconciliation
            s.timestamp = now.inSeconds
            if !fw.isPartitionAware, [.gone, .unreachable, .goneByOperator, .unknown].contains(s.state) { s.state = .lost }
            return deliver(.statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: m.frameworkID, status: s, timestamp: now.inSeconds, uuid: [], agentID: s.agentID))), to: from)
        }
        if m.statuses.isEmpty {
            return tasks.values.filter { $0.frameworkID == m.frameworkID }.sorted { $0.taskID.value < $1.taskID.value }.map {
                answer(TaskStatus(taskID: $0.taskID, state: $0.state, message: "Reconciliation: Latest task state", agentID: $0.agentID))
            }
        }
        var effects: [Effect] = []
        for status in m.statuses {
            let id = status.taskID
            if let task = tasks[TaskKey(framework: m.frameworkID, task: id)] {
                effects.append(answer(TaskStatus(taskID: id, state: task.state, message: "Reconciliation: Latest task state", agentID: task.agentID)))
            } else if let agentID = status.agentID {
                if recoveringAgents.contains(agentID) { continue }  // it may still re-register: no answer yet
                if agents[agentID] != nil {
                    effects.append(answer(TaskStatus(taskID: id, state: .gone, message: "Reconciliation: Task is unknown to the agent", agentID: agentID)))
                } else if let at = registry.removed[agentID] {
                    // Mesos's case (4): with the time it was removed (also when the answer becomes TASK_LOST).
                    let time = at > .zero ? TimeInfo(nanoseconds: at.nanosecondsSaturating) : nil
                    effects.append(answer(TaskStatus(taskID: id, state: .unreachable, message: "Reconciliation: Task is unreachable", agentID: agentID, unreachableTime: time)))
                } else {
                    effects.append(answer(TaskStatus(taskID: id, state: .unknown, message: "Reconciliation: Task is unknown", agentID: agentID)))
                }
            } else {
                if !recoveringAgents.isEmpty { continue }  // on some agent still expected back, perhaps
                effects.append(answer(TaskStatus(taskID: id, state: .unknown, message: "Reconciliation: Task is unknown")))
            }
        }
        return effects
    }

    // MARK: Offers

    mutating func removeOffer(_ id: OfferID) {
        guard let offer = offers.removeValue(forKey: id) else { return }
        if offerByAgent[offer.agentID] == id { offerByAgent[offer.agentID] = nil }
    }

    /// Offers go back to the pool, each rescinded with its (connected) framework.
    mutating func rescindOffers(where match: (Offer) -> Bool) -> [Effect] {
        var effects: [Effect] = []
        for (id, offer) in offers.sorted(by: { $0.key.value < $1.key.value }) where match(offer) {
            removeOffer(id)
            if let to = frameworks[offer.frameworkID]?.reachable {
                effects.append(deliver(.rescindOffer(RescindResourceOfferMessage(offerID: id)), to: to))
            }
        }
        return effects
    }

    /// A framework's offers go back to the pool without a message (its scheduler is gone or replaced).
    mutating func discardOffers(of id: FrameworkID) -> [Effect] {
        for (offerID, offer) in offers where offer.frameworkID == id { removeOffer(offerID) }
        return []
    }

    mutating func allocateIfDue() -> [Effect] {
        if let last = lastAllocation, now - last < settings.allocationInterval { return [] }
        let candidates = frameworks.filter(\.value.wantsOffers).keys.sorted { $0.value < $1.value }
        guard !candidates.isEmpty else { return [] }  // the interval starts with the first real round
        lastAllocation = now
        // One message per framework per round (as Mesos's allocator sends them), in chunks its
        // scheduler accepts, instead of one per offer (up to one per agent per round).
        var made: [FrameworkID: [(offer: Offer, pid: PID)]] = [:]
        for (agentID, agent) in agents.sorted(by: { $0.key.value < $1.key.value }) where agent.isActive && offerByAgent[agentID] == nil {
            var available = Resources(agent.info.resources)
            for key in tasksByAgent[agentID] ?? [] {
                if let task = tasks[key], !task.state.isTerminal { available.subtract(Resources(task.resources)) }
            }
            guard !available.isEmpty else { continue }
            for step in 0..<candidates.count {
                let fid = candidates[(allocationCursor + step) % candidates.count]
                guard let fw = frameworks[fid], fw.connection != nil else { continue }
                if let until = fw.refusedUntil[agentID], until > now { continue }
                allocationCursor = (allocationCursor + step + 1) % candidates.count
                let offer = Offer(id: OfferID(value: newID("O")), frameworkID: fid, agentID: agentID, hostname: agent.info.hostname, resources: available.list)
                offers[offer.id] = offer
                offerByAgent[agentID] = offer.id
                made[fid, default: []].append((offer, agent.pid))
                break
            }
        }
        var effects: [Effect] = []
        for fid in candidates {
            guard let list = made[fid], let to = frameworks[fid]?.connection else { continue }
            for start in stride(from: 0, to: list.count, by: Self.offersPerMessage) {
                let chunk = list[start..<min(start + Self.offersPerMessage, list.count)]
                effects.append(deliver(.resourceOffers(ResourceOffersMessage(offers: chunk.map(\.offer), pids: chunk.map(\.pid.description))), to: to))
            }
        }
        return effects
    }

    /// Offers per ResourceOffersMessage: well under what a scheduler accepts in one message
    /// (`WireLimits.maxItems`), and a message of a few hundred KiB.
    public static let offersPerMessage = 1000
}
