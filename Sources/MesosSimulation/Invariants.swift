import MesosCore
import MesosWire

/// The invariants of DESIGN.md, judged against what the simulator knows (`Truth`, the ZooKeeper
/// model), not against what the cores believe.
extension World {
    /// With `Breakage.followerEpochCheck`: a follower that ignores epochs sees every message of
    /// the master it follows as if sent at that master's current epoch.
    func asSeenByABrokenFollower(_ envelope: Envelope, following: Leader?) -> Envelope {
        guard breakage == .followerEpochCheck, let following, envelope.from == following.pid.description else { return envelope }
        var seen = envelope
        seen.epoch = following.epoch
        return seen
    }

    /// Invariant 1: a follower acted on `envelope` (it passed its epoch rules). That is right only
    /// if it came from the master that led at its epoch, at the epoch the follower's own detector
    /// reports, from the leader the follower follows.
    func checkFollowerAccepted(_ envelope: Envelope, by follower: String, following: Leader?, detecting: Leader?) {
        guard let payload = envelope.payload else { return }
        if case .leaderHint = payload { return }
        let what = "\(follower) acted on \(payload.kind) from \(envelope.from) at epoch \(envelope.epoch)"
        guard let following, envelope.epoch == following.epoch, envelope.from == following.pid.description else {
            return violation(.followerActsOnlyOnTheLeader, "\(what), following \(following.map { "\($0)" } ?? "no leader")")
        }
        guard let detecting, detecting.epoch == envelope.epoch else {
            return violation(.followerActsOnlyOnTheLeader, "\(what), while its detector reports \(detecting.map { "\($0)" } ?? "no leader")")
        }
        guard let led = truth.leaderOfEpoch[envelope.epoch], master(pid: envelope.from)?.name == led else {
            return violation(.followerActsOnlyOnTheLeader, "\(what): that master never led at that epoch (\(truth.leaderOfEpoch[envelope.epoch] ?? "nobody") did)")
        }
    }

    /// Invariant 3: a task reported LOST/UNREACHABLE, or finished, to its framework must not be
    /// running; LOST-like reports of a running task are allowed only once its agent was removed.
    func checkStatusUpdate(_ status: TaskStatus, framework: FrameworkID, to scheduler: String) {
        let key = TaskKey(framework: framework, task: status.taskID)
        guard let running = truth.running[key] else { return }
        switch status.state {
        case .finished, .failed, .killed, .error, .dropped, .goneByOperator:
            violation(.noFalseTaskReport, "\(scheduler) was told \(key) is \(status.state.protoName) while it runs on \(running.agent)")
        case .lost, .unreachable, .gone, .unknown:
            let removed = running.agentID.map { id in registry?.removed[id] != nil } ?? false
            if !removed {
                violation(.noFalseTaskReport, "\(scheduler) was told \(key) is \(status.state.protoName) (\(status.reason?.protoName ?? "no reason"): \(status.message ?? "")) while it runs on \(running.agent), which was not removed")
            }
        default:
            break
        }
    }

    /// Whether the healed cluster has converged (invariant 5): one leader, which ZooKeeper names;
    /// every live agent and framework registered with it.
    var converged: Bool { convergenceProblem == nil }

    var convergenceProblem: String? {
        let leaders = masters.filter { $0.isAlive && $0.isLeading }
        guard leaders.count == 1, let leader = leaders.first, let epoch = leader.epoch else {
            return "\(leaders.count) masters leading (\(leaders.map(\.name)))"
        }
        guard let zkLeader, zkLeader.master === leader, zkLeader.epoch == epoch else { return "ZooKeeper does not name \(leader.name) at epoch \(epoch)" }
        guard let core = leader.core else { return "no core" }
        let active = Set(core.activeAgentIDs)
        for agent in agents where agent.isAlive {
            guard let a = agent.core, a.isRegistered, a.leader?.epoch == epoch, let id = a.agentID, active.contains(id) else {
                return "\(agent.name) is not registered with \(leader.name) at epoch \(epoch)"
            }
        }
        let connected = Set(core.connectedFrameworkIDs)
        for scheduler in schedulers where scheduler.isAlive {
            guard let s = scheduler.core, s.isRegistered, s.leader?.epoch == epoch, let id = s.frameworkID, connected.contains(id) else {
                return "\(scheduler.name) is not registered with \(leader.name) at epoch \(epoch)"
            }
        }
        return nil
    }

    /// Invariant 4, once converged and quiet: no agent holds an unacknowledged update, except
    /// for a framework that was removed.
    func checkUpdatesAcknowledged() {
        let removed = Set(registry?.removedFrameworks ?? [])
        for agent in agents where agent.isAlive {
            let pending = agent.pendingUpdateKeys.filter { !removed.contains($0.framework) }
            if !pending.isEmpty {
                violation(.updatesAcknowledged, "\(agent.name) still holds unacknowledged updates of \(pending)")
            }
        }
    }
}

extension World {
    /// Invariant 3c: what the leader believes about tasks matches what runs. A running task the
    /// leader does not know as live is an orphan (its resources leak, kills never reach it); a
    /// task the leader shows RUNNING that runs nowhere is a phantom. Judged twice, a few seconds
    /// apart, on a quiet cluster: only disagreements that persist count (an update in flight is
    /// not one).
    func taskDisagreements() -> Set<String> {
        guard let leader = masters.first(where: { $0.isAlive && $0.isLeading }), let core = leader.core else { return [] }
        var problems = Set<String>()
        let known = Dictionary(core.knownTasks.map { (TaskKey(framework: $0.frameworkID, task: $0.taskID), $0) }, uniquingKeysWith: { a, _ in a })
        let removed = Set(registry?.removedFrameworks ?? [])
        for (key, run) in truth.running.sorted(by: { $0.key < $1.key }) where !removed.contains(key.framework) {
            guard let t = known[key], !t.state.isTerminal, t.agentID == run.agentID else {
                problems.insert("orphan: \(key) runs on \(run.agent) but \(leader.name) has it as \(known[key].map { "\($0.state.protoName) on \($0.agentID.value)" } ?? "unknown")")
                continue
            }
        }
        for (key, t) in known.sorted(by: { $0.key < $1.key }) where t.state == .running && truth.running[key] == nil {
            problems.insert("phantom: \(leader.name) has \(key) RUNNING on \(t.agentID.value), but it runs nowhere")
        }
        return problems
    }
}
