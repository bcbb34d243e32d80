import MesosWire

/// Executors: registration, re-registration after a restart, their updates, their end; recovery
/// from the checkpoint; stopping (Mesos's src/slave/slave.cpp).
extension AgentCore {
    // MARK: Messages from executors

    mutating func fromExecutor(_ payload: Envelope.Payload, _ fromText: String) -> [Effect] {
        guard let from = PID(fromText) else { return [.observe(.executorMessageRefused(from: fromText, kind: payload.kind, reason: "the sender is not a pid"))] }
        do {
            try MessageValidation.validate(payload)
        } catch {
            return [.observe(.executorMessageRefused(from: fromText, kind: payload.kind, reason: error.description))]
        }
        switch payload {
        case .registerExecutor(let m):
            return registerExecutor(ExecutorKey(framework: m.frameworkID, executor: m.executorID), from: from)
        case .reregisterExecutor(let m):
            return reregisterExecutor(m, from: from)
        case .statusUpdate(let m):
            guard let executorID = m.update.executorID else {
                return [.observe(.executorMessageRefused(from: fromText, kind: payload.kind, reason: "an executor's update names its executor"))]
            }
            let key = ExecutorKey(framework: m.update.frameworkID, executor: executorID)
            guard let e = executors[key], e.pid == from, e.state == .running || e.state == .terminating else {
                return [.observe(.executorMessageRefused(from: fromText, kind: payload.kind, reason: "not from the registered executor \(key)"))]
            }
            return executorUpdate(m.update, from: e)
        case .executorToFramework(var m):
            let key = ExecutorKey(framework: m.frameworkID, executor: m.executorID)
            guard let e = executors[key], e.pid == from, let agentID else {
                return [.observe(.executorMessageRefused(from: fromText, kind: payload.kind, reason: "not from the registered executor \(key)"))]
            }
            guard follower.isRegistered, let leader = follower.leader else { return [.observe(.frameworkMessageDropped(e.key))] }
            m.agentID = agentID
            return [.send(.executorToFramework(m), to: leader.pid, epoch: leader.epoch)]
        default:
            return []
        }
    }

    private mutating func registerExecutor(_ key: ExecutorKey, from: PID) -> [Effect] {
        let shutdown: Effect = .send(.shutdownExecutor(ShutdownExecutorMessage()), to: from, epoch: 0)
        // While recovering, only re-registrations (as Mesos).
        guard phase == .running, let agentID else { return [.observe(.executorMessageRefused(from: from.description, kind: "register_executor", reason: "the agent is recovering")), shutdown] }
        // Executors run on this host and listen on its address.
        guard from.host == pid.host else {
            return [.observe(.executorMessageRefused(from: from.description, kind: "register_executor", reason: "executors listen on \(pid.host)")), shutdown]
        }
        guard var e = executors[key], e.state == .registering, !e.recovered, e.pid == nil, let framework = frameworks[key.framework] else {
            return [.observe(.executorMessageRefused(from: from.description, kind: "register_executor", reason: "no executor \(key) is waiting to register")), shutdown]
        }
        e.pid = from
        e.state = .running
        e.deadline = nil
        let queued = e.queued
        e.queued = []
        executors[key] = e
        var effects: [Effect] = [.observe(.executorRegistered(key, from))]
        if e.checkpoint { effects.append(.checkpoint(.executorPID(agent: agentID, key, run: e.run, from))) }
        effects.append(.send(.executorRegistered(ExecutorRegisteredMessage(executorInfo: e.info, frameworkID: key.framework, frameworkInfo: framework.info, agentID: agentID, agentInfo: info)), to: from, epoch: 0))
        for tid in queued {
            guard let t = tasks[TaskKey(framework: key.framework, task: tid)] else { continue }
            effects.append(.send(.runTask(RunTaskMessage(frameworkID: key.framework, framework: framework.info, task: t.info, pid: framework.pid)), to: from, epoch: 0))
        }
        return effects
    }

    private mutating func reregisterExecutor(_ m: ReregisterExecutorMessage, from: PID) -> [Effect] {
        let key = ExecutorKey(framework: m.frameworkID, executor: m.executorID)
        guard let agentID, var e = executors[key], e.recovered, e.state == .registering else {
            return [.observe(.executorMessageRefused(from: from.description, kind: "reregister_executor", reason: "no executor \(key) is waiting to re-register")),
                    .send(.shutdownExecutor(ShutdownExecutorMessage()), to: from, epoch: 0)]
        }
        // The checkpoint holds the PID it registered with: only that process may take it back.
        guard e.pid == from else {
            return [.observe(.executorMessageRefused(from: from.description, kind: "reregister_executor", reason: "executor \(key) registered as \(e.pid.map { "\($0)" } ?? "nothing")"))]
        }
        e.state = .running
        e.deadline = nil
        executors[key] = e
        var effects: [Effect] = [
            .observe(.executorReregistered(key, from)),
            .send(.executorReregistered(ExecutorReregisteredMessage(agentID: agentID, agentInfo: info)), to: from, epoch: 0),
        ]
        for u in m.updates where u.frameworkID == key.framework && u.executorID == key.executor {
            effects += executorUpdate(u, from: e)
        }
        // Handed to the executor while the agent went down, and the executor never got it.
        let carried = Set(m.tasks.map(\.taskID))
        for (tkey, t) in tasks.sorted(by: { $0.key < $1.key }) where t.executor == key && t.state == .staging && !carried.contains(tkey.task) {
            let partitionAware = frameworks[key.framework]?.isPartitionAware == true
            effects += update(tkey, partitionAware ? .dropped : .lost, message: "Task launched during agent restart", reason: .agentRestarted)
        }
        // Nothing left for it to run (its task was launched during the restart and never reached
        // it, or is unknown here): shut it down, as Mesos.
        if m.tasks.isEmpty, m.updates.isEmpty, !tasks.values.contains(where: { $0.executor == key && !$0.state.isTerminal }) {
            effects += shutdownExecutor(key, why: "it has no task to run after the agent restarted")
        }
        return effects + finishReconnectingIfDone()
    }

    /// Mesos's Slave::statusUpdate for an executor's update: checkpointed, acknowledged to the
    /// executor at once, forwarded to the master.
    private mutating func executorUpdate(_ incoming: StatusUpdate, from e: AgentExecutor) -> [Effect] {
        let key = TaskKey(framework: incoming.frameworkID, task: incoming.status.taskID)
        guard let executorPID = e.pid, let agentID else { return [] }
        let ack: Effect = .send(.statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: agentID, frameworkID: key.framework, taskID: key.task, uuid: incoming.uuid)), to: executorPID, epoch: 0)
        guard let task = tasks[key], task.executor == e.key else {
            return [.observe(.executorMessageRefused(from: executorPID.description, kind: "status_update", reason: "task \(key) is not executor \(e.key)'s"))]
        }
        if streams[key]?.has(incoming.uuid) == true { return [ack] }  // a duplicate: acknowledged again
        if task.state.isTerminal { return [.observe(.updateAfterTerminal(key, incoming.status.state)), ack] }
        var u = incoming
        u.agentID = agentID
        u.status.agentID = agentID
        u.status.uuid = u.uuid
        u.status.source = .executor
        tasks[key]?.state = u.status.state
        tasks[key]?.latest = u.status
        return enqueue(key, u) + [ack]
    }

    // MARK: Executor lifecycle

    /// Kills an executor's session (Mesos's containerizer destroy); its tasks end when it is gone.
    mutating func destroy(_ key: ExecutorKey) -> [Effect] {
        guard let e = executors[key], e.state != .terminated else { return [] }
        executors[key]?.state = .terminating
        executors[key]?.deadline = nil
        return [.destroyExecutor(key)]
    }

    /// Mesos's _shutdownExecutor: ask a registered executor to end its task; one that has not
    /// registered is killed.
    mutating func shutdownExecutor(_ key: ExecutorKey, why: String) -> [Effect] {
        guard let e = executors[key] else { return [] }
        switch e.state {
        case .running:
            guard let to = e.pid else { return destroy(key) }
            executors[key]?.state = .terminating
            executors[key]?.deadline = now + settings.executorShutdownGracePeriod
            return [.observe(.shuttingDownExecutor(key, why: why)), .send(.shutdownExecutor(ShutdownExecutorMessage(executorID: key.executor, frameworkID: key.framework)), to: to, epoch: 0)]
        case .registering:
            return destroy(key)
        case .terminating, .terminated:
            return []
        }
    }

    /// Mesos's executorTerminated: the live tasks of a gone executor get a terminal update.
    mutating func executorTerminated(_ key: ExecutorKey, status: Int32?) -> [Effect] {
        guard var e = executors[key], e.state != .terminated else { return [] }
        e.state = .terminated
        e.deadline = nil
        executors[key] = e
        // Whatever it left in its session (its task, when it was killed alone) goes with it, as
        // Mesos's containerizer destroys the container of an executor that exited.
        var effects: [Effect] = [.observe(.executorExited(key, status: status)), .destroyExecutor(key)]
        let termination = e.termination ?? Termination(
            state: .failed, reason: .executorTerminated,
            message: "Executor \(key.executor.value) terminated" + (status.map { " (\(TaskExit(shellCode: $0)))" } ?? ""))
        for (tkey, t) in tasks.sorted(by: { $0.key < $1.key }) where t.executor == key && !t.state.isTerminal {
            effects += update(tkey, termination.state, message: termination.message, reason: termination.reason)
        }
        // The framework hears of it (its scheduler's `executorLost`), best effort as Mesos.
        if phase == .running, follower.isRegistered, let leader = follower.leader, let agentID {
            effects.append(.send(.exitedExecutor(ExitedExecutorMessage(agentID: agentID, frameworkID: key.framework, executorID: key.executor, status: status ?? -1)), to: leader.pid, epoch: leader.epoch))
        }
        return effects + completeIfDone(key) + finishReconnectingIfDone() + stopIfDone()
    }

    /// An ended executor whose tasks' updates were all acknowledged is forgotten (and its
    /// checkpoint removed), then its framework when it has no executors left.
    mutating func completeIfDone(_ key: ExecutorKey) -> [Effect] {
        guard let e = executors[key], e.state == .terminated, !tasks.values.contains(where: { $0.executor == key }) else { return [] }
        executors[key] = nil
        var effects: [Effect] = []
        if e.checkpoint, let agentID { effects.append(.checkpoint(.executorCompleted(agent: agentID, key, run: e.run))) }
        if !executors.keys.contains(where: { $0.framework == key.framework }), let f = frameworks.removeValue(forKey: key.framework) {
            if f.checkpoint, let agentID { effects.append(.checkpoint(.frameworkCompleted(agent: agentID, key.framework))) }
        }
        return effects
    }

    /// Registration and re-registration deadlines of executors; shutdown grace periods.
    mutating func executorTimers() -> [Effect] {
        var effects: [Effect] = []
        for (key, e) in executors.sorted(by: { $0.key < $1.key }) {
            guard let deadline = e.deadline, now >= deadline else { continue }
            switch e.state {
            case .registering where e.recovered:
                continue  // the recovery deadline (phaseTimers) covers these
            case .registering:
                executors[key]?.termination = Termination(state: .failed, reason: .executorRegistrationTimeout, message: "Executor did not register within \(settings.executorRegistrationTimeout)")
                effects += [.observe(.executorRegistrationTimedOut(key))] + destroy(key)
            case .terminating:
                effects += [.observe(.executorShutdownTimedOut(key))] + [.destroyExecutor(key)]
                executors[key]?.deadline = nil
            default:
                executors[key]?.deadline = nil
            }
        }
        return effects
    }

    // MARK: Recovery

    /// Mesos's Slave::recover and _recover: the checkpointed agent id, frameworks, executors,
    /// tasks and update streams; live executors are asked to reconnect (or, with
    /// `--recover=cleanup`, killed); dead ones end their tasks.
    mutating func recover(_ checkpointed: AgentRecoveryState) -> [Effect] {
        // A checkpoint holds what the agent will send: values the wire would refuse (a hand-edited
        // or hostile file) make the recovery fail here, not a peer refuse our messages later.
        do throws(InvalidValue) {
            try Self.validate(checkpointed)
        } catch {
            exited = true
            return [.exit(.recoveryFailed(path: "checkpoint (\(error.field))", problem: error.problem))]
        }
        var state = checkpointed
        var effects: [Effect] = []
        // Mesos's Slave::recover: this start's hostname, port and resources against the
        // checkpointed ones, by --reconfiguration_policy. After a reboot an incompatible agent
        // starts as a new one (its executors died with the host); otherwise it refuses to start.
        if let previous = state.agent, let id = previous.id,
            let problem = settings.reconfigurationPolicy.incompatibility(previous: previous, current: info, comparePort: !settings.ephemeralPort)
        {
            guard state.rebooted else {
                exited = true
                return [.exit(.recoveryFailed(path: "agent info", problem: "Incompatible agent info detected (--reconfiguration_policy=\(settings.reconfigurationPolicy.rawValue)): \(problem); to keep the agent id, restore the flags or set --reconfiguration_policy to a more permissive value"))]
            }
            effects += [.observe(.recoveringAsNewAgent(previous: id, reason: problem)), .checkpoint(.forgetAgent)]
            info.id = nil
            var fresh = AgentRecoveryState()
            fresh.epochFloor = state.epochFloor
            fresh.rebooted = true
            state = fresh
        }
        for problem in state.skipped { effects.append(.observe(.checkpointEntrySkipped(path: problem.path, problem: problem.problem))) }
        if state.epochFloor > follower.epochFloor { follower.raiseFloor(to: state.epochFloor) }
        for u in state.unrecoverable {
            effects.append(.observe(.executorUnrecoverable(u.key)))
            if u.forkedPID != nil { effects.append(.destroyExecutor(u.key)) }
        }
        if let recovered = state.agent?.id {
            info.id = recovered
            // Resources and address come from this start's flags; the id from the checkpoint.
            effects.append(.checkpoint(.agent(info)))
        }
        var live = 0
        for f in state.frameworks {
            guard let fid = f.info.id else { continue }
            frameworks[fid] = AgentFramework(info: f.info, pid: f.pid)
            for r in f.executors where r.key.framework == fid {
                live += recoverExecutor(r, &effects)
            }
            if !executors.keys.contains(where: { $0.framework == fid }) {
                frameworks[fid] = nil
                if let agentID { effects.append(.checkpoint(.frameworkCompleted(agent: agentID, fid))) }
            }
        }
        effects.append(.observe(.recovered(agentID, executors: executors.count, live: live)))
        if settings.recover == .cleanup {
            phase = .cleaningUp(executors: live)
            for key in executors.keys.sorted() where executors[key]?.state == .registering {
                effects += destroy(key)
            }
            return effects + stopIfDone()
        }
        let waiting = executors.values.filter { $0.state == .registering && $0.recovered }
        if waiting.isEmpty {
            phase = .running
            return effects + [.observe(.reconnected(executors: 0, timedOut: 0))] + retryRegistration()
        }
        phase = .reconnecting(until: now + settings.executorReregistrationTimeout)
        for e in waiting.sorted(by: { $0.key < $1.key }) {
            guard let to = e.pid, let agentID else { continue }
            effects.append(.send(.reconnectExecutor(ReconnectExecutorMessage(agentID: agentID)), to: to, epoch: 0))
        }
        return effects
    }

    /// One executor of the checkpoint: 1 when it is live and waits to re-register.
    private mutating func recoverExecutor(_ r: AgentRecoveryState.Executor, _ effects: inout [Effect]) -> Int {
        guard let agentID else { return 0 }
        var e = AgentExecutor(key: r.key, info: r.info, run: r.run, checkpoint: true, state: .registering, pid: r.executorPID, recovered: true)
        for t in r.tasks {
            guard t.task.frameworkID == r.key.framework else { continue }
            let key = TaskKey(framework: t.task.frameworkID, task: t.task.taskID)
            let (stream, latest) = UpdateStream.recovered(from: t.records, checkpointAt: StreamLocation(agent: agentID, executor: r.key, run: r.run), retry: settings.statusUpdateRetryInterval)
            let state = latest?.state ?? t.task.state
            if state.isTerminal && stream.pending.isEmpty { continue }  // done before the restart
            let info = TaskInfo(name: t.task.name, taskID: t.task.taskID, agentID: agentID, resources: t.task.resources)
            tasks[key] = AgentTask(info: info, frameworkID: key.framework, executorID: r.key.executor, state: state, latest: latest)
            streams[key] = stream
        }
        let hasTasks = tasks.values.contains { $0.executor == r.key }
        if let problem = r.corrupt.first, !r.completed {
            // Part of its checkpoint is unreadable (--strict=false): it cannot be trusted to be
            // recovered; it is killed, and its known tasks end FAILED once it is gone.
            e.termination = Termination(state: .failed, reason: .executorTerminated, message: "Executor \(r.key.executor.value) killed: its checkpoint is corrupt (\(problem))")
            executors[r.key] = e
            effects.append(.observe(.executorUnrecoverable(r.key)))
            effects += r.alive ? destroy(r.key) : executorTerminated(r.key, status: nil)
            return 0
        }
        if r.completed || (!r.alive && !hasTasks) {
            executors[r.key] = e
            executors[r.key]?.state = .terminated
            effects += completeIfDone(r.key)
            return 0
        }
        if !r.alive {
            e.termination = Termination(state: .failed, reason: .executorTerminated, message: "Executor \(r.key.executor.value) terminated while the agent was down")
            executors[r.key] = e
            effects += executorTerminated(r.key, status: nil)
            return 0
        }
        executors[r.key] = e
        if r.executorPID == nil {
            // It never registered before the restart: nothing can reconnect to it.
            let termination = reregistrationTimeout(r.key.framework)
            executors[r.key]?.termination = termination
            effects += [.observe(.executorUnrecoverable(r.key))] + destroy(r.key)
            return 0
        }
        return 1
    }

    private func reregistrationTimeout(_ framework: FrameworkID) -> Termination {
        let partitionAware = frameworks[framework]?.isPartitionAware == true
        return Termination(state: partitionAware ? .gone : .lost, reason: .executorReregistrationTimeout, message: "Executor did not reregister within \(settings.executorReregistrationTimeout)")
    }

    /// Every checkpointed executor came back: on to the master without waiting out the timeout
    /// (Mesos waits the whole `executor_reregistration_timeout`, MESOS-7539).
    mutating func finishReconnectingIfDone() -> [Effect] {
        guard case .reconnecting = phase, !executors.values.contains(where: { $0.state == .registering && $0.recovered }) else { return [] }
        phase = .running
        return [.observe(.reconnected(executors: executors.values.filter { $0.state == .running }.count, timedOut: 0))] + retryRegistration()
    }

    mutating func phaseTimers() -> [Effect] {
        switch phase {
        case .reconnecting(let until) where now >= until:
            var effects: [Effect] = []
            var timedOut = 0
            for key in executors.keys.sorted() {
                guard let e = executors[key], e.state == .registering, e.recovered else { continue }
                timedOut += 1
                let termination = reregistrationTimeout(key.framework)
                executors[key]?.termination = termination
                effects += [.observe(.executorReregistrationTimedOut(key))] + destroy(key)
            }
            phase = .running
            return effects + [.observe(.reconnected(executors: executors.values.filter { $0.state == .running }.count, timedOut: timedOut))] + retryRegistration()
        case .stopping(_, let until) where now >= until:
            var effects: [Effect] = []
            for key in executors.keys.sorted() where executors[key]?.state != .terminated && stopsWith(key) {
                effects.append(.destroyExecutor(key))
                executors[key]?.state = .terminated
            }
            return effects + stopIfDone(force: true)
        default:
            return []
        }
    }

    /// Every value of a recovered checkpoint as the wire checks it.
    static func validate(_ state: AgentRecoveryState) throws(InvalidValue) {
        if let id = state.agent?.id { try WireValidation.id(id.value, field: "slave.info.id") }
        for (i, fw) in state.frameworks.enumerated() {
            try MessageValidation.framework(fw.info, "frameworks[\(i)].framework.info")
            for (j, e) in fw.executors.enumerated() {
                let f = "frameworks[\(i)].executors[\(j)]"
                try WireValidation.id(e.key.framework.value, field: f + ".framework_id")
                try WireValidation.id(e.key.executor.value, field: f + ".executor_id")
                try MessageValidation.executor(e.info, f + ".executor.info")
                for (k, t) in e.tasks.enumerated() {
                    try MessageValidation.task(t.task, f + ".tasks[\(k)].task")
                    for (n, r) in t.records.enumerated() {
                        if let u = r.update { try MessageValidation.update(u, f + ".tasks[\(k)].task.updates[\(n)]") }
                    }
                }
            }
        }
    }

    // MARK: Stopping

    /// SIGTERM (`all` false: only executors of frameworks that do not checkpoint are shut down),
    /// SIGUSR1 or a shutdown from the master (`all`): executors are shut down, then exit.
    mutating func stop(_ reason: ExitReason, unregister: Bool, all: Bool) -> [Effect] {
        if case .stopping = phase { return [] }
        var effects: [Effect] = [.observe(.stopping(reason.key, checkpointedExecutorsKept: all ? 0 : executors.values.filter { $0.checkpoint && $0.state != .terminated }.count))]
        if unregister, let agentID, follower.isRegistered, let leader = follower.leader {
            effects.append(.send(.unregisterAgent(UnregisterAgentMessage(agentID: agentID)), to: leader.pid, epoch: leader.epoch))
        }
        phase = .stopping(reason, until: now + settings.executorShutdownGracePeriod + .seconds(1))
        stopAll = all
        // Gone for good (SIGUSR1, removed by the master): the id is forgotten at the exit, not
        // before, so executors still ending are recovered if the agent dies meanwhile.
        forgetOnExit = unregister || { if case .shutDownByMaster = reason { true } else { false } }()
        for key in executors.keys.sorted() where stopsWith(key) {
            effects += shutdownExecutor(key, why: "the agent is stopping")
        }
        return effects + stopIfDone()
    }

    private func stopsWith(_ key: ExecutorKey) -> Bool {
        stopAll || executors[key]?.checkpoint == false
    }

    /// Exits once no executor that has to end is still running (or the grace period is over).
    mutating func stopIfDone(force: Bool = false) -> [Effect] {
        switch phase {
        case .stopping(let reason, _):
            guard force || !executors.keys.contains(where: { executors[$0]?.state != .terminated && stopsWith($0) }) else { return [] }
            exited = true
            return (forgetOnExit ? [.checkpoint(.forgetAgent)] : []) + [.exit(reason)]
        case .cleaningUp(let n):
            guard !executors.values.contains(where: { $0.state != .terminated }) else { return [] }
            exited = true
            return [.exit(.recoveryCleanedUp(executors: n))]
        default:
            return []
        }
    }
}
