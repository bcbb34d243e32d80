import MesosWire

/// Agents: registration (written to the registry before the answer), re-registration (which
/// rebuilds the task table after a failover and reconciles both ways), health checks, removal.
extension MasterCore {
    /// The agent `from` speaks for, if the connection's principal is the one it registered with.
    func agent(speakingAs from: PID, peer: PeerIdentity) -> AgentID? {
        guard let id = agentByPID[from], let record = agents[id], record.principal == peer.principal else { return nil }
        return id
    }

    mutating func registerAgent(_ agentInfo: AgentInfo, from: PID, peer: PeerIdentity) -> [Effect] {
        if let id = agentByPID[from], let agent = agents[id] {
            guard agent.principal == peer.principal else { return refuseAgent(from, "principal does not match the agent's registration") }
            // A retry of a registration in progress or done: answer again once it is stored.
            return agent.isActive ? [.send(.agentRegistered(AgentRegisteredMessage(agentID: id, master: info)), to: from)] : []
        }
        removedAgentPIDs.remove(from)  // a new agent on a removed one's address (its id is new)
        let id = AgentID(value: newID("S"))
        var stored = agentInfo
        stored.id = id
        stored.pid = from.description
        agents[id] = AgentRecord(info: stored, pid: from, principal: peer.principal, state: .admitting(reregistered: false))
        agentByPID[from] = id
        registry.admitted[id] = stored
        touchRegistry(id)
        return store(.admit(id))
    }

    mutating func reregisterAgent(_ m: ReregisterAgentMessage, from: PID, peer: PeerIdentity) -> [Effect] {
        guard let id = m.agent.id else { return [] }  // validated
        if registry.removed[id] != nil {
            removedAgentPIDs.insert(from)
            return [
                .observe(.removedAgentToldToShutDown(pid: from)),
                .send(.shutdown(ShutdownMessage(message: "agent \(id.value) was removed from the cluster; it may not re-register")), to: from),
            ]
        }
        if let existing = agents[id], existing.principal != peer.principal {
            return refuseAgent(from, "principal does not match agent \(id.value)'s registration")
        }
        if let other = agentByPID[from], other != id {
            return refuseAgent(from, "pid \(from) belongs to agent \(other.value)")
        }
        var stored = m.agent
        stored.pid = from.description
        let known = agents[id]
        if let known, known.pid != from { agentByPID[known.pid] = nil }
        var record = known ?? AgentRecord(info: stored, pid: from, principal: peer.principal, state: .admitting(reregistered: true))
        record.info = stored
        record.pid = from
        agentByPID[from] = id

        var effects: [Effect] = []
        // The agent's report is the truth about its tasks: tasks of removed frameworks are shut
        // down; the rest rebuild the table (after a failover) or refresh it.
        var reported: Set<TaskKey> = []
        var removedFrameworks: Set<FrameworkID> = []
        for task in m.tasks where task.agentID == id {
            let key = TaskKey(framework: task.frameworkID, task: task.taskID)
            if registry.removedFrameworks.contains(task.frameworkID) {
                removedFrameworks.insert(task.frameworkID)
                continue
            }
            reported.insert(key)
            setTask(key, task)
        }
        for fid in removedFrameworks.sorted(by: { $0.value < $1.value }) {
            effects.append(.send(.shutdownFramework(ShutdownFrameworkMessage(frameworkID: fid)), to: from))
        }
        for fw in m.frameworks {
            guard let fid = fw.id, frameworks[fid] == nil, !registry.removedFrameworks.contains(fid) else { continue }
            // Mesos's recovered framework: its scheduler has `failover_timeout` from the failover to come back.
            let timeout = Duration(validatingSeconds: fw.failoverTimeout) ?? .zero
            frameworks[fid] = FrameworkRecord(info: fw, connection: nil, principal: fw.principal, state: .recovered(since: leadingSince ?? now), failoverTimeout: timeout)
            effects.append(.observe(.frameworkRecovered(fid, fromAgent: id)))
        }
        // Tasks we know that the agent did not report: ask it (Mesos's reconcileKnownSlave); it
        // answers each unknown one with a terminal update. Kills it may have missed go again.
        let unreported = (tasksByAgent[id] ?? []).subtracting(reported).sorted()
        var byFramework: [FrameworkID: [TaskStatus]] = [:]
        for key in unreported {
            guard let task = tasks[key], !task.state.isTerminal else { continue }
            byFramework[key.framework, default: []].append(
                TaskStatus(taskID: key.task, state: task.state, message: "Reconciliation request", source: .master, reason: .reconciliation, agentID: id))
        }
        record.reconciliations = byFramework.sorted { $0.key.value < $1.key.value }.map { ReconcileTasksMessage(frameworkID: $0.key, statuses: $0.value) }
        if !unreported.isEmpty { effects.append(.observe(.tasksReconciledWithAgent(id, count: unreported.count))) }
        agents[id] = record

        // A retry while its admission (or removal) is being written: the answer comes when it is stored.
        if let known, case .admitting = known.state { return effects }
        // In the registry as it is (the usual case after a failover): nothing to write.
        if registry.admitted[id] == stored { return effects + admitted(id, reregistered: true) }
        registry.admitted[id] = stored  // new, or e.g. a new pid: keep the registry current
        touchRegistry(id)
        agents[id]?.state = .admitting(reregistered: true)
        return effects + store(.admit(id))
    }

    private mutating func refuseAgent(_ from: PID, _ reason: String) -> [Effect] {
        metrics.invalidMessages += 1
        return [
            .observe(.agentRefused(pid: from, reason: reason)),
            .send(.messageRefused(MessageRefusedMessage(kind: "register_agent", reason: reason)), to: from),
        ]
    }

    /// The admission of `id` is in the registry: answer it and start pinging.
    mutating func admitted(_ id: AgentID, reregistered: Bool? = nil) -> [Effect] {
        guard var agent = agents[id] else { return [] }
        let again: Bool
        if case .admitting(let r) = agent.state { again = reregistered ?? r } else { again = reregistered ?? true }
        if agent.state == .active {
            // A retry of an agent already answered (its answer is on the way: after a failover at
            // 10,000 agents each re-registered 3-4 times): it is answered again, and its health
            // checks go on as scheduled rather than with a fresh ping (and pong) each time. Its
            // message is a sign of life, as a pong is.
            agent.pongSinceLastPing = true
        } else {
            agent.lastPing = nil
        }
        agent.missedPings = 0
        agent.state = .active
        if agent.removalScheduled {
            agent.removalScheduled = false
            removalQueue.removeAll { $0 == id }
        }
        let reconciliations = agent.reconciliations
        agent.reconciliations = []
        agents[id] = agent
        recoveringAgents.remove(id)
        let payload: Envelope.Payload
        if again {
            metrics.agentReregistrations += 1
            payload = .agentReregistered(AgentReregisteredMessage(agentID: id, master: info, reconciliations: reconciliations))
        } else {
            metrics.agentRegistrations += 1
            payload = .agentRegistered(AgentRegisteredMessage(agentID: id, master: info))
        }
        let live = (tasksByAgent[id] ?? []).filter { tasks[$0]?.state.isTerminal == false }.count
        let observed: MasterObservation = again ? .agentReregistered(id, pid: agent.pid, tasks: live) : .agentRegistered(id, pid: agent.pid)
        var effects: [Effect] = [.send(payload, to: agent.pid), .observe(observed)]
        // Kills asked for while it could not be told.
        for key in pendingKills.filter({ tasks[$0]?.agentID == id && tasks[$0]?.state.isTerminal == false }).sorted() {
            effects.append(.send(.killTask(KillTaskMessage(frameworkID: key.framework, taskID: key.task)), to: agent.pid))
        }
        return effects + checkAgent(id)  // its first ping now
    }

    // MARK: Health

    /// The health checks that are due, in the order their pings went out (a deterministic core:
    /// the same events give the same effects in the same order). A tick touches only the agents
    /// whose check is due, not all of them: at 10,000 agents and a tick every 50 ms, sorting and
    /// copying every agent's record on each tick took a third of the leader's CPU.
    mutating func checkAgents() -> [Effect] {
        var effects: [Effect] = []
        while let (due, id) = pingSchedule.popDue(now) {
            // A stale entry (removed, re-admitted or pinged since) is skipped; the current one is queued.
            guard let last = agents[id]?.lastPing, last + settings.agentPingTimeout == due else { continue }
            effects += checkAgent(id)
        }
        return effects + removeScheduled()
    }

    /// One agent's health check: a ping when one is due, its removal (or its place in the removal
    /// queue) after too many unanswered. Admission calls it for the new agent alone, so admitting
    /// the N-th agent costs the same as the first (a check of every agent there made a failover's
    /// re-registration quadratic in the cluster's size).
    private mutating func checkAgent(_ id: AgentID) -> [Effect] {
        guard var a = agents[id], a.isActive else { return [] }
        if let last = a.lastPing, now - last < settings.agentPingTimeout { return [] }
        var effects: [Effect] = []
        if a.lastPing != nil { a.missedPings = a.pongSinceLastPing ? 0 : a.missedPings + 1 }
        if a.missedPings >= settings.maxAgentPingTimeouts {
            if settings.agentRemovalRateLimit == nil {
                agents[id] = a
                return remove(id, reason: .missedPings(count: a.missedPings, timeout: settings.agentPingTimeout))
            }
            if !a.removalScheduled {
                // Mesos's slave removal limiter: it waits for a permit, pinged meanwhile.
                a.removalScheduled = true
                removalQueue.append(id)
                metrics.agentRemovalsScheduled += 1
                effects.append(.observe(.agentRemovalScheduled(id, queued: removalQueue.count)))
            }
        }
        a.lastPing = now
        a.pongSinceLastPing = false
        agents[id] = a
        pingSchedule.append(due: now + settings.agentPingTimeout, id)
        effects.append(.send(.ping(PingAgentMessage(connected: true)), to: a.pid))
        return effects
    }

    /// `--agent_removal_rate_limit`: the scheduled removals whose permit is due, one per interval.
    mutating func removeScheduled() -> [Effect] {
        guard let limit = settings.agentRemovalRateLimit else { return [] }
        var effects: [Effect] = []
        while let id = removalQueue.first {
            guard let agent = agents[id], agent.isActive, agent.removalScheduled else {
                removalQueue.removeFirst()
                continue
            }
            if let last = lastRemovalPermit, now - last < limit.interval { break }
            removalQueue.removeFirst()
            lastRemovalPermit = now
            agents[id]?.removalScheduled = false
            effects += remove(id, reason: .missedPings(count: agent.missedPings, timeout: settings.agentPingTimeout))
        }
        while let id = notReregisteredQueue.first {
            guard agents[id] == nil, registry.admitted[id] != nil else {
                notReregisteredQueue.removeFirst()  // it came back meanwhile (or is gone already)
                continue
            }
            if let last = lastRemovalPermit, now - last < limit.interval { break }
            notReregisteredQueue.removeFirst()
            lastRemovalPermit = now
            effects += expire([id])
        }
        return effects
    }

    /// A pong from an agent whose removal waits for a permit: it is healthy again.
    mutating func cancelScheduledRemoval(_ id: AgentID) -> [Effect] {
        guard agents[id]?.removalScheduled == true else { return [] }
        agents[id]?.removalScheduled = false
        agents[id]?.missedPings = 0
        removalQueue.removeAll { $0 == id }
        metrics.agentRemovalsCanceled += 1
        return [.observe(.agentRemovalCanceled(id))]
    }

    mutating func remove(_ id: AgentID, reason: AgentRemovalReason) -> [Effect] {
        agents[id]?.state = .admitting(reregistered: true)  // inactive until the removal is stored
        registry.admitted[id] = nil
        if registry.removed[id] == nil { registry.removed[id] = wallNow }
        touchRegistry(id)
        return [.observe(.agentRemoved(id, reason: reason))] + rescindOffers { $0.agentID == id } + store(.remove(id, reason: reason))
    }

    /// The removal is in the registry: tell the agent and the frameworks.
    mutating func removed(_ id: AgentID, reason: AgentRemovalReason) -> [Effect] {
        var effects: [Effect] = []
        metrics.agentRemovals += 1
        recoveringAgents.remove(id)
        if let agent = agents.removeValue(forKey: id) {
            agentByPID[agent.pid] = nil
            removedAgentPIDs.insert(agent.pid)
            effects.append(.send(.shutdown(ShutdownMessage(message: "agent removed: \(reason)")), to: agent.pid))
        }
        for key in (tasksByAgent[id] ?? []).sorted() {
            guard let task = tasks[key] else { continue }
            removeTask(key)
            guard !task.state.isTerminal, let fw = frameworks[task.frameworkID], let to = fw.reachable else { continue }
            metrics.tasksLost += 1
            // Partition-aware frameworks learn the agent is unreachable (or gone, when it said it
            // shut down for good), the others that the task is lost; both get the time it became
            // unreachable (Mesos's __removeSlave).
            let gone = reason == .unregistered
            let state: TaskState = fw.isPartitionAware ? (gone ? .goneByOperator : .unreachable) : .lost
            let why: TaskStatus.Reason = fw.isPartitionAware && gone ? .agentRemovedByOperator : .agentRemoved
            effects.append(deliver(.statusUpdate(masterUpdate(
                task.taskID, task.frameworkID, id, state, why, "agent \(id.value) removed: \(reason)",
                unreachableSince: gone ? nil : registry.removed[id] ?? wallNow)), to: to))
        }
        for (_, fw) in frameworks.sorted(by: { $0.key.value < $1.key.value }) where fw.isConnected {
            if let to = fw.connection { effects.append(deliver(.lostAgent(LostAgentMessage(agentID: id)), to: to)) }
        }
        return effects
    }

    mutating func expireUnreregistered() -> [Effect] {
        guard let deadline = reregisterDeadline, now >= deadline else { return [] }
        reregisterDeadline = nil
        let missing = registry.admitted.keys.filter { agents[$0] == nil }.sorted { $0.value < $1.value }
        recoveringAgents = []
        guard !missing.isEmpty else { return [] }
        // Mesos's --recovery_slave_removal_limit: so many missing is more likely a fault of ours
        // (or of the network) than of the agents; exit, and let the next leader try again.
        if agentsAtRecovery > 0, Double(missing.count) / Double(agentsAtRecovery) > settings.recoveryAgentRemovalLimit {
            return exit(.recoveryAgentRemovalLimit(missing: missing.count, registered: agentsAtRecovery, limitPercent: settings.recoveryAgentRemovalLimit * 100))
        }
        guard settings.agentRemovalRateLimit != nil else {
            return [.observe(.agentsNotReregistered(count: missing.count))] + expire(missing)
        }
        // One at a time, each with a permit of the rate limit; until its turn an agent is still
        // expected back (reconciliation keeps waiting for it, as for any recovering agent).
        recoveringAgents = Set(missing)
        notReregisteredQueue += missing
        metrics.agentRemovalsScheduled += missing.count
        var effects: [Effect] = [.observe(.agentsNotReregistered(count: missing.count))]
        for (n, id) in missing.enumerated() { effects.append(.observe(.agentRemovalScheduled(id, queued: n + 1, afterFailover: true))) }
        return effects + removeScheduled()
    }

    /// Moves agents that never re-registered from admitted to removed in the registry; once stored,
    /// their tasks are LOST (or UNREACHABLE) to their frameworks (`removed`).
    private mutating func expire(_ ids: [AgentID]) -> [Effect] {
        for id in ids {
            registry.admitted[id] = nil
            registry.removed[id] = wallNow
            touchRegistry(id)
        }
        return store(.expireUnreregistered(ids))
    }

    // MARK: Registry GC

    /// `--registry_gc_interval`: forgets removed agents older than `--registry_max_agent_age`,
    /// then the oldest above `--registry_max_agent_count` (Mesos's `Master::_doRegistryGc`).
    /// Removal times unknown (format 1 kept none) count as the oldest for the count, never for the age.
    mutating func collectRegistryGarbage() -> [Effect] {
        guard let due = nextRegistryGC, now >= due else { return [] }
        nextRegistryGC = now + settings.registryGCInterval
        let oldestFirst = registry.removed.sorted { ($0.value, $0.key.value) < ($1.value, $1.key.value) }
        var forget: [AgentID] = []
        for (id, at) in oldestFirst where at > .zero && wallNow - at > settings.registryMaxAgentAge { forget.append(id) }
        let byAge = forget.count
        let forgotten = Set(forget)
        let excess = registry.removed.count - byAge - settings.registryMaxAgentCount
        if excess > 0 { forget += oldestFirst.lazy.map(\.key).filter { !forgotten.contains($0) }.prefix(excess) }
        guard !forget.isEmpty else { return [] }
        for id in forget {
            registry.removed[id] = nil
            touchRegistry(id)
        }
        metrics.registryPruned += forget.count
        return [.observe(.registryPruned(byAge: byAge, byCount: forget.count - byAge))] + store(.pruned)
    }

    /// SIGUSR1 on the agent: it is gone for good (Mesos's unregisterSlave).
    mutating func unregisterAgent(_ m: UnregisterAgentMessage, from: PID, peer: PeerIdentity) -> [Effect] {
        guard let id = agent(speakingAs: from, peer: peer), id == m.agentID, agents[id]?.isActive == true else { return [] }
        return remove(id, reason: .unregistered)
    }

    /// Executor -> framework, best effort: dropped when the framework is not connected.
    mutating func executorToFramework(_ m: ExecutorToFrameworkMessage, from: PID, peer: PeerIdentity) -> [Effect] {
        guard let id = agent(speakingAs: from, peer: peer), id == m.agentID, agents[id]?.isActive == true else { return [] }
        guard let to = frameworks[m.frameworkID]?.reachable else { return [] }
        return [deliver(.executorToFramework(m), to: to)]
    }

    // MARK: Status updates from agents

    mutating func statusUpdate(_ m: StatusUpdateMessage, from: PID, peer: PeerIdentity) -> [Effect] {
        guard let agentID = agent(speakingAs: from, peer: peer), agents[agentID]?.isActive == true else {
            return []  // from an unregistered agent: it retries after registering
        }
        let fid = m.update.frameworkID
        let key = TaskKey(framework: fid, task: m.update.status.taskID)
        if registry.removedFrameworks.contains(fid) || (frameworks[fid] == nil && tasks[key] == nil && m.update.status.state.isTerminal) {
            // Its framework is gone: nobody will acknowledge it, so the master does (the agent stops retrying).
            return [.send(.statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: agentID, frameworkID: fid, taskID: key.task, uuid: m.update.uuid)), to: from)]
        }
        if var task = tasks[key], task.agentID == agentID {
            task.state = m.update.status.state
            task.status = m.update.status
            tasks[key] = task
            if task.state.isTerminal { pendingKills.remove(key) }
        }
        guard let to = frameworks[fid]?.reachable else {
            return []  // the agent retries until the framework is back and acknowledges
        }
        var forwarded = m
        forwarded.pid = from.description
        return [deliver(.statusUpdate(forwarded), to: to)]
    }

    mutating func setTask(_ key: TaskKey, _ task: MesosTask) {
        if let old = tasks[key], old.agentID != task.agentID { tasksByAgent[old.agentID]?.remove(key) }
        tasks[key] = task
        tasksByAgent[task.agentID, default: []].insert(key)
    }

    mutating func removeTask(_ key: TaskKey) {
        guard let task = tasks.removeValue(forKey: key) else { return }
        tasksByAgent[task.agentID]?.remove(key)
        if tasksByAgent[task.agentID]?.isEmpty == true { tasksByAgent[task.agentID] = nil }
        pendingKills.remove(key)
    }
}

/// When each agent's next health check is due, in order: every ping waits the same
/// `agentPingTimeout`, so checks fall due in the order the pings went out and a FIFO is enough.
/// Entries go stale when their agent is pinged again or removed (checked when popped).
struct PingSchedule: Sendable {
    private var entries: [(due: Duration, id: AgentID)] = []
    private var head = 0

    mutating func append(due: Duration, _ id: AgentID) { entries.append((due, id)) }

    /// The first entry due at `now`, removed; nil when none is.
    mutating func popDue(_ now: Duration) -> (due: Duration, id: AgentID)? {
        guard head < entries.count, entries[head].due <= now else { return nil }
        let entry = entries[head]
        head += 1
        if head == entries.count {
            entries.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= entries.count {
            entries.removeFirst(head)
            head = 0
        }
        return entry
    }
}
