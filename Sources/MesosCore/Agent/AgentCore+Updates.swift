import MesosWire

/// Where a task's stream is checkpointed (frameworks that checkpoint).
struct StreamLocation: Sendable, Hashable {
    var agent: AgentID
    var executor: ExecutorKey
    var run: String
}

/// One task's status-update stream (Mesos's TaskStatusUpdateStream): updates the master has not
/// acknowledged, oldest first, of which only the head is in flight; the last few acknowledged
/// ones, to recognise duplicates. Checkpointed whole after every change.
struct UpdateStream: Sendable, Hashable {
    var pending: [StatusUpdate] = []
    var acknowledged: [StatusUpdate] = []
    var sentAt: Duration?
    var interval: Duration
    var location: StreamLocation?

    static let acknowledgedKept = 4

    func has(_ uuid: [UInt8]) -> Bool { pending.contains { $0.uuid == uuid } || acknowledged.contains { $0.uuid == uuid } }

    var records: [StatusUpdateRecord] {
        acknowledged.flatMap { [StatusUpdateRecord(type: .update, update: $0), StatusUpdateRecord(type: .ack, uuid: $0.uuid)] }
            + pending.map { StatusUpdateRecord(type: .update, update: $0) }
    }

    /// A stream replayed from `task.updates` (Mesos's replay): every update, then the
    /// acknowledged ones taken off; the task's latest status.
    static func recovered(from records: [StatusUpdateRecord], checkpointAt location: StreamLocation, retry: Duration) -> (UpdateStream, TaskStatus?) {
        var stream = UpdateStream(interval: retry, location: location)
        let acks = Set(records.compactMap { $0.type == .ack ? $0.uuid : nil })
        var latest: TaskStatus?
        for r in records where r.type == .update {
            guard let u = r.update, !stream.has(u.uuid) else { continue }
            latest = u.status
            if acks.contains(u.uuid) { stream.acknowledged.append(u) } else { stream.pending.append(u) }
        }
        stream.acknowledged = Array(stream.acknowledged.suffix(acknowledgedKept))
        return (stream, latest)
    }
}

extension AgentCore {
    /// An update the agent makes itself (its executor is gone, a task it does not know...).
    mutating func update(_ key: TaskKey, _ state: TaskState, message: String, reason: TaskStatus.Reason? = nil) -> [Effect] {
        guard tasks[key] != nil else { return [] }
        let status = newStatus(key, state, message: message, reason: reason)
        tasks[key]?.state = state
        tasks[key]?.latest = status
        return enqueue(key, StatusUpdate(frameworkID: key.framework, status: status, timestamp: now.inSeconds, uuid: status.uuid ?? [], agentID: agentID, executorID: tasks[key]?.executorID))
    }

    /// A reliable TASK_LOST (TASK_DROPPED for partition-aware frameworks) for a task this agent
    /// does not have.
    mutating func unknownTask(_ key: TaskKey, message: String) -> [Effect] {
        guard streams[key] == nil else { return [] }
        let partitionAware = frameworks[key.framework]?.isPartitionAware == true
        let status = newStatus(key, partitionAware ? .dropped : .lost, message: message, reason: .reconciliation)
        return enqueue(key, StatusUpdate(frameworkID: key.framework, status: status, timestamp: now.inSeconds, uuid: status.uuid ?? [], agentID: agentID))
    }

    private mutating func newStatus(_ key: TaskKey, _ state: TaskState, message: String, reason: TaskStatus.Reason?) -> TaskStatus {
        TaskStatus(taskID: key.task, state: state, message: message, source: .agent, reason: reason, agentID: agentID, timestamp: now.inSeconds, uuid: follower.randomBytes(16))
    }

    /// Appends to the task's stream, checkpointed before anything is sent (the caller's
    /// acknowledgement to the executor comes after this).
    mutating func enqueue(_ key: TaskKey, _ u: StatusUpdate) -> [Effect] {
        if streams[key] == nil {
            var location: StreamLocation?
            if let t = tasks[key], let e = executors[t.executor], e.checkpoint, let agentID {
                location = StreamLocation(agent: agentID, executor: e.key, run: e.run)
            }
            streams[key] = UpdateStream(interval: settings.statusUpdateRetryInterval, location: location)
        }
        streams[key]?.pending.append(u)
        return [.observe(.statusUpdate(key, u.status))] + checkpointStream(key) + (streams[key]?.pending.count == 1 ? sendHead(key) : [])
    }

    private func checkpointStream(_ key: TaskKey) -> [Effect] {
        guard let s = streams[key], let l = s.location else { return [] }
        return [.checkpoint(.taskUpdates(agent: l.agent, l.executor, run: l.run, key.task, s.records))]
    }

    /// Updates of one task go in order: the next only after the previous is acknowledged.
    mutating func sendHead(_ key: TaskKey) -> [Effect] {
        guard phase == .running, follower.isRegistered, let leader = follower.leader, var head = streams[key]?.pending.first, streams[key]?.sentAt == nil else { return [] }
        head.agentID = agentID
        head.status.agentID = agentID
        head.latestState = tasks[key]?.state
        streams[key]?.sentAt = now
        streams[key]?.interval = settings.statusUpdateRetryInterval
        return [.send(.statusUpdate(StatusUpdateMessage(update: head, pid: pid.description)), to: leader.pid, epoch: leader.epoch)]
    }

    mutating func retryUpdates() -> [Effect] {
        guard phase == .running, follower.isRegistered, let leader = follower.leader else { return [] }
        var effects: [Effect] = []
        for (key, s) in streams.sorted(by: { $0.key < $1.key }) {
            guard let at = s.sentAt, now - at >= s.interval, var head = s.pending.first else { continue }
            head.agentID = agentID
            head.status.agentID = agentID
            head.latestState = tasks[key]?.state
            streams[key]?.sentAt = now
            streams[key]?.interval = min(s.interval * 2, settings.maxStatusUpdateRetryInterval)
            effects.append(.send(.statusUpdate(StatusUpdateMessage(update: head, pid: pid.description)), to: leader.pid, epoch: leader.epoch))
        }
        return effects
    }

    mutating func acknowledged(_ key: TaskKey, uuid: [UInt8]) -> [Effect] {
        guard var s = streams[key], let head = s.pending.first, head.uuid == uuid else { return [] }  // duplicate or stale ack
        s.pending.removeFirst()
        s.acknowledged = Array((s.acknowledged + [head]).suffix(UpdateStream.acknowledgedKept))
        s.sentAt = nil
        streams[key] = s
        var effects = checkpointStream(key)
        if s.pending.isEmpty && (tasks[key].map { $0.state.isTerminal } ?? true) {
            // The terminal update is acknowledged: the task is done here.
            streams[key] = nil
            if let task = tasks.removeValue(forKey: key) {
                effects += completeIfDone(task.executor)
            }
            return effects
        }
        return effects + sendHead(key)
    }
}
