/// `/master/state` and `/slave(1)/state` in Mesos's layout (src/master/readonly_handler.cpp,
/// src/slave/http.cpp): the keys tools read, in Mesos's order, plus ours (`epoch`, `role`,
/// `leader_history`, each agent's `health`).
public enum StateJSON {
    static func resources(_ r: [String: Double]) -> JSON {
        var fields: [(String, JSON)] = ["cpus", "gpus", "mem", "disk"].map { ($0, .number(r[$0] ?? 0)) }
        for (name, value) in r.sorted(by: { $0.key < $1.key }) where !["cpus", "gpus", "mem", "disk"].contains(name) {
            fields.append((name, .number(value)))
        }
        return .object(fields)
    }

    static func leader(_ l: LeaderAddress) -> JSON {
        .object([
            ("id", .string(l.id)), ("pid", .string(l.pid)), ("port", .int(l.port)), ("hostname", .string(l.hostname)),
            ("epoch", .int(l.epoch)),
        ])
    }

    static func task(_ t: TaskEntry) -> JSON {
        .object([
            ("id", .string(t.id)), ("name", .string(t.name)), ("framework_id", .string(t.frameworkID)),
            ("executor_id", .string(t.executorID)), ("slave_id", .string(t.agentID)), ("state", .string(t.state)),
            ("resources", resources(t.resources)),
        ])
    }

    static func agent(_ a: AgentEntry) -> JSON {
        var health: [(String, JSON)] = [("state", .string(a.health.name))]
        if case .missedPings(let n) = a.health { health.append(("missed_pings", .int(n))) }
        return .object([
            ("id", .string(a.id)), ("hostname", .string(a.hostname)), ("port", .int(a.port)), ("pid", .string(a.pid)),
            ("resources", resources(a.resources)), ("used_resources", resources(a.usedResources)),
            ("active", .bool(a.active)), ("health", .object(health)),
        ])
    }

    static func framework(_ f: FrameworkEntry, tasks: [TaskEntry]) -> JSON {
        var fields: [(String, JSON)] = [("id", .string(f.id)), ("name", .string(f.name))]
        if let pid = f.pid { fields.append(("pid", .string(pid))) }
        fields += [
            ("hostname", .string(f.hostname)), ("active", .bool(f.active)), ("connected", .bool(f.connected)),
            ("recovered", .bool(f.recovered)), ("user", .string(f.user)), ("failover_timeout", .number(f.failoverTimeout)),
            ("checkpoint", .bool(f.checkpoint)),
        ]
        if let principal = f.principal { fields.append(("principal", .string(principal))) }
        var used: [String: Double] = [:]
        for t in tasks { for (k, v) in t.resources { used[k, default: 0] += v } }
        fields += [
            ("role", .string(f.role)), ("used_resources", resources(used)), ("tasks", .array(tasks.map(task))),
        ]
        return .object(fields)
    }

    public static func master(_ s: MasterSnapshot) -> JSON {
        var fields: [(String, JSON)] = [
            ("version", .string(s.version)), ("start_time", .number(s.startTime)),
        ]
        if let elected = s.electedTime { fields.append(("elected_time", .number(elected))) }
        fields += [
            ("id", .string(s.id)), ("pid", .string(s.pid)), ("hostname", .string(s.hostname)),
            ("role", .string(s.role.rawValue)), ("epoch", s.epoch.map { .int($0) } ?? .null),
            ("activated_slaves", .int(s.agents.filter(\.active).count)),
            ("deactivated_slaves", .int(s.agents.filter { !$0.active }.count)),
            ("unreachable_slaves", .int(0)),
        ]
        if let leader = s.leader {
            fields += [("leader", .string(leader.pid)), ("leader_info", Self.leader(leader))]
        }
        fields += [
            ("leader_history", .array(s.leaderHistory.map { change in
                .object([("at", .number(change.at)), ("leader", change.leader.map(Self.leader) ?? .null)])
            })),
            ("flags", .object(s.flags.map { ($0.0, .string($0.1)) })),
            ("slaves", .array(s.agents.map(agent))),
            ("frameworks", .array(s.frameworks.map { f in framework(f, tasks: s.tasks.filter { $0.frameworkID == f.id }) })),
            ("completed_frameworks", .array(s.completedFrameworks.map { framework($0, tasks: []) })),
            ("orphan_tasks", .array([])), ("unregistered_frameworks", .array([])),
        ]
        return .object(fields)
    }

    public static func agent(_ s: AgentSnapshot) -> JSON {
        var fields: [(String, JSON)] = [
            ("version", .string(s.version)), ("start_time", .number(s.startTime)), ("id", .string(s.id)), ("pid", .string(s.pid)),
            ("hostname", .string(s.hostname)), ("resources", resources(s.resources)),
        ]
        if let master = s.master {
            fields += [("master_hostname", .string(master.hostname)), ("master_pid", .string(master.pid)), ("master_epoch", .int(master.epoch))]
        }
        fields += [
            ("flags", .object(s.flags.map { ($0.0, .string($0.1)) })),
            ("frameworks", .array(s.frameworks.map { f in
                .object([
                    ("id", .string(f.id)), ("name", .string(f.name)), ("user", .string(f.user)), ("checkpoint", .bool(f.checkpoint)),
                    ("executors", .array(f.tasks.map { t in
                        .object([("id", .string(t.executorID)), ("tasks", .array([task(t)]))])
                    })),
                ])
            })),
            ("completed_frameworks", .array([])),
        ]
        return .object(fields)
    }

    public static func version(_ version: String) -> JSON {
        .object([("version", .string(version)), ("build_date", .string("")), ("build_time", .number(0)), ("build_user", .string(""))])
    }
}
