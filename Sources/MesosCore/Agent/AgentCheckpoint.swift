import MesosWire

/// An executor on an agent: (framework, executor). Command executors take their task's id.
public struct ExecutorKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var framework: FrameworkID
    public var executor: ExecutorID

    public init(framework: FrameworkID, executor: ExecutorID) {
        self.framework = framework
        self.executor = executor
    }

    public static func < (a: ExecutorKey, b: ExecutorKey) -> Bool { (a.framework.value, a.executor.value) < (b.framework.value, b.executor.value) }
    public var description: String { "\(framework.value)/\(executor.value)" }
}

/// A problem with one checkpoint file: which file, and what is wrong with it.
public struct CheckpointError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { "\(path): \(problem)" }
}

/// The directory tree an agent checkpoints into (`<work_dir>/meta`): the real one
/// (`FileCheckpointStore`, in the agent's shell) or the simulator's in-memory disk. Paths are
/// relative to the root and use `/`.
public protocol CheckpointStore {
    /// Replaces `path` whole (parents created): after a crash it holds the old or the new bytes,
    /// never a torn mix (temporary file, fsync, rename, fsync of the directory).
    func write(_ bytes: [UInt8], to path: String) throws(CheckpointError)
    /// The file's bytes; nil when it does not exist.
    func read(_ path: String) throws(CheckpointError) -> [UInt8]?
    /// Names in a directory, sorted; empty when it does not exist.
    func list(_ directory: String) throws(CheckpointError) -> [String]
    /// Points `path` (a symlink) at `target`, replacing it atomically.
    func link(_ path: String, to target: String) throws(CheckpointError)
    /// The target of a symlink; nil when it does not exist.
    func readLink(_ path: String) throws(CheckpointError) -> String?
    /// Removes a file or a directory tree; nothing when it does not exist.
    func remove(_ path: String) throws(CheckpointError)
}

/// One thing the agent checkpoints (an effect of `AgentCore`); `AgentCheckpoint.apply` lays it
/// out as Mesos does (src/slave/paths.cpp).
public enum CheckpointWrite: Sendable, Hashable {
    /// `slaves/<id>/slave.info` and `slaves/latest` -> `<id>` (written at the first registration).
    case agent(AgentInfo)
    /// Removes `slaves/latest`: the next start registers as a new agent.
    case forgetAgent
    /// The newest leader epoch seen (ours, not Mesos's): `epoch_floor`.
    case epochFloor(UInt64)
    /// `frameworks/<fid>/framework.info` and `framework.pid`.
    case framework(agent: AgentID, FrameworkInfo, pid: String)
    /// `executors/<eid>/executor.info`, the run directory and `runs/latest` -> `<run>`.
    case executor(agent: AgentID, ExecutorKey, ExecutorInfo, run: String)
    /// `runs/<run>/pids/forked.pid`: the executor's process id (written by the shell that forks it).
    case forkedPID(agent: AgentID, ExecutorKey, run: String, pid: Int32)
    /// `runs/<run>/pids/libprocess.pid`: the executor's bus PID, once it registered.
    case executorPID(agent: AgentID, ExecutorKey, run: String, PID)
    /// `runs/<run>/tasks/<tid>/task.info`.
    case task(agent: AgentID, ExecutorKey, run: String, MesosTask)
    /// `runs/<run>/tasks/<tid>/task.updates`: the task's whole status-update stream, rewritten
    /// atomically (the stream is short: the pending updates and the last few acknowledged ones).
    case taskUpdates(agent: AgentID, ExecutorKey, run: String, TaskID, [StatusUpdateRecord])
    /// The executor ended and every update of its tasks was acknowledged: `executor.sentinel`,
    /// then its directory is removed.
    case executorCompleted(agent: AgentID, ExecutorKey, run: String)
    /// The framework has no executors left here: its directory is removed.
    case frameworkCompleted(agent: AgentID, FrameworkID)
}

/// What an agent finds in its checkpoint when it starts.
public struct AgentRecoveryState: Sendable, Hashable {
    public struct Framework: Sendable, Hashable {
        public var info: FrameworkInfo
        public var pid: String
        public var executors: [Executor]

        public init(info: FrameworkInfo, pid: String, executors: [Executor]) {
            self.info = info
            self.pid = pid
            self.executors = executors
        }
    }

    public struct Executor: Sendable, Hashable {
        public var key: ExecutorKey
        public var info: ExecutorInfo
        public var run: String
        public var forkedPID: Int32?
        public var executorPID: PID?
        /// The sentinel is there: it ended and all its updates were acknowledged.
        public var completed: Bool
        public var tasks: [Task]
        /// Entries of its checkpoint skipped with `--strict=false` (a task's files): it cannot be
        /// trusted to be recovered and is killed; its tasks that are known end FAILED.
        public var corrupt: [CheckpointError] = []
        /// Whether its process still runs: filled in by the shell, which can look.
        public var alive = false

        public init(
            key: ExecutorKey, info: ExecutorInfo, run: String, forkedPID: Int32?, executorPID: PID?, completed: Bool, tasks: [Task],
            corrupt: [CheckpointError] = [], alive: Bool = false
        ) {
            self.key = key
            self.info = info
            self.run = run
            self.forkedPID = forkedPID
            self.executorPID = executorPID
            self.completed = completed
            self.tasks = tasks
            self.corrupt = corrupt
            self.alive = alive
        }
    }

    public struct Task: Sendable, Hashable {
        public var task: MesosTask
        public var records: [StatusUpdateRecord]

        public init(task: MesosTask, records: [StatusUpdateRecord]) {
            self.task = task
            self.records = records
        }
    }

    public var agent: AgentInfo?
    public var epochFloor: UInt64 = 0
    /// The host rebooted since the checkpoint was written (its boot id differs): the process ids
    /// in it name other processes now, so no executor is alive.
    public var rebooted = false
    public var frameworks: [Framework] = []
    /// Executors whose checkpoint is unusable (`--strict=false`): their processes, when known, are
    /// killed, since nothing can manage them.
    public var unrecoverable: [(key: ExecutorKey, forkedPID: Int32?)] = []
    /// Entries skipped with `--strict=false`, each with what is wrong.
    public var skipped: [CheckpointError] = []

    public init() {}

    public static func == (a: AgentRecoveryState, b: AgentRecoveryState) -> Bool {
        a.agent == b.agent && a.epochFloor == b.epochFloor && a.frameworks == b.frameworks && a.skipped == b.skipped
            && a.unrecoverable.map { "\($0.key)/\($0.forkedPID ?? -1)" } == b.unrecoverable.map { "\($0.key)/\($0.forkedPID ?? -1)" }
    }

    public func hash(into h: inout Hasher) {
        h.combine(agent)
        h.combine(frameworks)
    }

    public var executors: [Executor] { frameworks.flatMap(\.executors) }
}

/// Mesos's checkpoint layout under `<work_dir>/meta` and its recovery (src/slave/paths.cpp,
/// src/slave/state.cpp). Files holding protobufs are length-prefixed records (a 4-byte
/// little-endian length, then the message), as Mesos writes them; every file is written whole
/// and atomically, so an incomplete record is corruption, never a crash mid-write.
public enum AgentCheckpoint {
    public static let latest = "latest"

    public static func agentDir(_ a: AgentID) -> String { "slaves/\(a.value)" }
    public static func agentInfo(_ a: AgentID) -> String { agentDir(a) + "/slave.info" }
    public static func frameworkDir(_ a: AgentID, _ f: FrameworkID) -> String { agentDir(a) + "/frameworks/\(f.value)" }
    public static func executorDir(_ a: AgentID, _ e: ExecutorKey) -> String { frameworkDir(a, e.framework) + "/executors/\(e.executor.value)" }
    public static func runDir(_ a: AgentID, _ e: ExecutorKey, _ run: String) -> String { executorDir(a, e) + "/runs/\(run)" }
    public static func taskDir(_ a: AgentID, _ e: ExecutorKey, _ run: String, _ t: TaskID) -> String { runDir(a, e, run) + "/tasks/\(t.value)" }
    public static let epochFloorFile = "epoch_floor"
    public static let bootIDFile = "boot_id"

    /// Carries out one write on `store`.
    public static func apply(_ write: CheckpointWrite, to store: some CheckpointStore) throws(CheckpointError) {
        switch write {
        case .agent(let info):
            guard let id = info.id else { return }
            try store.write(record(info), to: agentInfo(id))
            try store.link("slaves/" + latest, to: id.value)
        case .forgetAgent:
            try store.remove("slaves/" + latest)
        case .epochFloor(let floor):
            try store.write(Array("\(floor)".utf8), to: epochFloorFile)
        case .framework(let a, let info, let pid):
            guard let fid = info.id else { return }
            try store.write(record(info), to: frameworkDir(a, fid) + "/framework.info")
            try store.write(Array(pid.utf8), to: frameworkDir(a, fid) + "/framework.pid")
        case .executor(let a, let key, let info, let run):
            try store.write(record(info), to: executorDir(a, key) + "/executor.info")
            try store.write(Array("1".utf8), to: executorDir(a, key) + "/executor_generated_for_command_task")
            try store.link(executorDir(a, key) + "/runs/" + latest, to: run)
        case .forkedPID(let a, let key, let run, let pid):
            try store.write(Array("\(pid)".utf8), to: runDir(a, key, run) + "/pids/forked.pid")
        case .executorPID(let a, let key, let run, let pid):
            try store.write(Array(pid.description.utf8), to: runDir(a, key, run) + "/pids/libprocess.pid")
        case .task(let a, let key, let run, let task):
            try store.write(record(task), to: taskDir(a, key, run, task.taskID) + "/task.info")
        case .taskUpdates(let a, let key, let run, let tid, let records):
            try store.write(records.flatMap { record($0) }, to: taskDir(a, key, run, tid) + "/task.updates")
        case .executorCompleted(let a, let key, let run):
            try store.write([], to: runDir(a, key, run) + "/executor.sentinel")
            try store.remove(executorDir(a, key))
        case .frameworkCompleted(let a, let fid):
            try store.remove(frameworkDir(a, fid))
        }
    }

    /// Reads the checkpoint. Missing or empty files are a fresh state (as Mesos); a file that
    /// cannot be parsed is an error naming it with `strict`, and is skipped (and reported in
    /// `skipped`) without.
    /// `bootID`: this boot's id (nil when unknown); a checkpoint from another boot has no live
    /// executors (Mesos's state::recover).
    public static func recover(from store: some CheckpointStore, strict: Bool, bootID: String? = nil) throws(CheckpointError) -> AgentRecoveryState {
        var state = try recoverFiles(from: store, strict: strict)
        if let current = bootID, !current.isEmpty, let stored = try store.read(bootIDFile).map({ String(decoding: $0, as: UTF8.self).trimmingSpaces }), stored != current {
            state.rebooted = true
            for f in state.frameworks.indices { for e in state.frameworks[f].executors.indices { state.frameworks[f].executors[e].forkedPID = nil } }
            state.unrecoverable = state.unrecoverable.map { ($0.key, nil) }
        }
        return state
    }

    private static func recoverFiles(from store: some CheckpointStore, strict: Bool) throws(CheckpointError) -> AgentRecoveryState {
        var state = AgentRecoveryState()
        var problems = Problems(strict: strict)
        if let bytes = try store.read(epochFloorFile) {
            if let floor = UInt64(String(decoding: bytes, as: UTF8.self).trimmingSpaces) {
                state.epochFloor = floor
            } else {
                try problems.add(CheckpointError(path: epochFloorFile, problem: "is not a number"))
            }
        }
        guard let latestID = try store.readLink("slaves/" + latest) else { return state }
        let agentID = AgentID(value: latestID)
        do throws(InvalidValue) {
            try WireValidation.id(latestID, field: "slaves/latest")
        } catch {
            try problems.add(CheckpointError(path: "slaves/latest", problem: "points at \(latestID), which is not an agent id"))
            state.skipped = problems.skipped
            return state
        }
        let infoPath = agentInfo(agentID)
        guard let infoBytes = try store.read(infoPath), !infoBytes.isEmpty else {
            state.skipped = problems.skipped
            return state
        }
        do throws(CheckpointError) {
            var info: AgentInfo = try single(infoBytes, path: infoPath)
            try valid(infoPath) { () throws(InvalidValue) in try MessageValidation.agent(info, "agent") }
            guard info.id == agentID else { throw CheckpointError(path: infoPath, problem: "names agent \(info.id?.value ?? "none"), not \(agentID.value)") }
            info.id = agentID
            state.agent = info
        } catch {
            try problems.add(error)
            // Its executors may still run: they are found by their pids, to be killed.
            state.unrecoverable = orphans(agentID, store)
            state.skipped = problems.skipped
            return state
        }

        for fname in try store.list(agentDir(agentID) + "/frameworks") {
            guard try validName(fname, in: agentDir(agentID) + "/frameworks", &problems) else { continue }
            let fid = FrameworkID(value: fname)
            let dir = frameworkDir(agentID, fid)
            let executors = try recoverExecutors(agentID, fid, store, &problems)
            do throws(CheckpointError) {
                guard let bytes = try store.read(dir + "/framework.info"), !bytes.isEmpty else {
                    throw CheckpointError(path: dir + "/framework.info", problem: "is missing")
                }
                var info: FrameworkInfo = try single(bytes, path: dir + "/framework.info")
                try valid(dir + "/framework.info") { () throws(InvalidValue) in try MessageValidation.framework(info, "framework") }
                if info.id == nil { info.id = fid }
                guard info.id == fid else { throw CheckpointError(path: dir + "/framework.info", problem: "names framework \(info.id?.value ?? "none"), not \(fid.value)") }
                let pid = try store.read(dir + "/framework.pid").map { String(decoding: $0, as: UTF8.self) } ?? ""
                state.frameworks.append(.init(info: info, pid: pid, executors: executors.filter { $0.key.framework == fid }))
            } catch {
                try problems.add(error)
                state.unrecoverable += executors.map { ($0.key, $0.forkedPID) }
            }
        }
        state.unrecoverable += problems.unrecoverable
        state.skipped = problems.skipped
        return state
    }

    private struct Problems {
        let strict: Bool
        var skipped: [CheckpointError] = []
        var unrecoverable: [(key: ExecutorKey, forkedPID: Int32?)] = []

        mutating func add(_ e: CheckpointError) throws(CheckpointError) {
            if strict { throw e }
            skipped.append(e)
        }
    }

    private static func recoverExecutors(_ a: AgentID, _ fid: FrameworkID, _ store: some CheckpointStore, _ problems: inout Problems) throws(CheckpointError) -> [AgentRecoveryState.Executor] {
        var executors: [AgentRecoveryState.Executor] = []
        for ename in try store.list(frameworkDir(a, fid) + "/executors") {
            guard try validName(ename, in: frameworkDir(a, fid) + "/executors", &problems) else { continue }
            let key = ExecutorKey(framework: fid, executor: ExecutorID(value: ename))
            let dir = executorDir(a, key)
            guard let run = try store.readLink(dir + "/runs/" + latest) else { continue }  // never launched
            guard try validName(run, in: dir + "/runs", &problems) else { continue }
            let runDir = runDir(a, key, run)
            var forked: Int32?
            do throws(CheckpointError) {
                if let bytes = try store.read(runDir + "/pids/forked.pid") {
                    guard let pid = Int32(String(decoding: bytes, as: UTF8.self).trimmingSpaces), pid > 1 else {
                        throw CheckpointError(path: runDir + "/pids/forked.pid", problem: "is not a process id")
                    }
                    forked = pid
                }
                guard let infoBytes = try store.read(dir + "/executor.info"), !infoBytes.isEmpty else {
                    throw CheckpointError(path: dir + "/executor.info", problem: "is missing")
                }
                let info: ExecutorInfo = try single(infoBytes, path: dir + "/executor.info")
                try valid(dir + "/executor.info") { () throws(InvalidValue) in try MessageValidation.executor(info, "executor") }
                var executorPID: PID?
                if let bytes = try store.read(runDir + "/pids/libprocess.pid") {
                    guard let pid = PID(String(decoding: bytes, as: UTF8.self).trimmingSpaces) else {
                        throw CheckpointError(path: runDir + "/pids/libprocess.pid", problem: "is not a pid of the form name@host:port")
                    }
                    executorPID = pid
                }
                let completed = try store.read(runDir + "/executor.sentinel") != nil
                var tasks: [AgentRecoveryState.Task] = []
                var corrupt: [CheckpointError] = []
                for tname in try store.list(runDir + "/tasks") {
                    guard try validName(tname, in: runDir + "/tasks", &problems) else { continue }
                    let tdir = runDir + "/tasks/" + tname
                    do throws(CheckpointError) {
                        guard let bytes = try store.read(tdir + "/task.info"), !bytes.isEmpty else { continue }
                        let task: MesosTask = try single(bytes, path: tdir + "/task.info")
                        try valid(tdir + "/task.info") { () throws(InvalidValue) in try MessageValidation.task(task, "task") }
                        guard task.taskID.value == tname, task.frameworkID == fid else {
                            throw CheckpointError(path: tdir + "/task.info", problem: "describes task \(task.frameworkID.value)/\(task.taskID.value), not \(fid.value)/\(tname)")
                        }
                        var records: [StatusUpdateRecord] = []
                        if let stream = try store.read(tdir + "/task.updates") {
                            // Without --strict, what could be read before the bad record is kept (as Mesos).
                            let (read, bad) = recordsPrefix(stream, path: tdir + "/task.updates") as ([StatusUpdateRecord], CheckpointError?)
                            records = read
                            if let bad {
                                try problems.add(bad)
                                corrupt.append(bad)
                            }
                        }
                        tasks.append(.init(task: task, records: records))
                    } catch {
                        try problems.add(error)
                        corrupt.append(error)
                    }
                }
                executors.append(.init(key: key, info: info, run: run, forkedPID: forked, executorPID: executorPID, completed: completed, tasks: tasks, corrupt: corrupt))
            } catch {
                try problems.add(error)
                problems.unrecoverable.append((key, forked))
            }
        }
        return executors
    }

    /// Names under the checkpoint become ids sent to masters: the same rules as ids from the network.
    private static func validName(_ name: String, in dir: String, _ problems: inout Problems) throws(CheckpointError) -> Bool {
        do throws(InvalidValue) {
            try WireValidation.id(name, field: "name")
            return true
        } catch {
            try problems.add(CheckpointError(path: dir + "/" + name, problem: "is not a valid id: \(error.problem)"))
            return false
        }
    }

    /// What a checkpoint file holds is checked like a value from the network.
    private static func valid(_ path: String, _ check: () throws(InvalidValue) -> Void) throws(CheckpointError) {
        do throws(InvalidValue) { try check() } catch { throw CheckpointError(path: path, problem: "holds an invalid value: \(error)") }
    }

    // MARK: Records

    /// A 4-byte little-endian length, then the message.
    public static func record(_ m: some ProtobufMessage) -> [UInt8] {
        let body = m.serializedBytes()
        let n = UInt32(body.count)
        return [UInt8(n & 0xff), UInt8((n >> 8) & 0xff), UInt8((n >> 16) & 0xff), UInt8(n >> 24)] + body
    }

    public static func records<M: ProtobufMessage>(_ bytes: [UInt8], path: String) throws(CheckpointError) -> [M] {
        let (out, bad): ([M], CheckpointError?) = recordsPrefix(bytes, path: path)
        if let bad { throw bad }
        return out
    }

    /// The records up to the first bad one, and what is wrong with it.
    static func recordsPrefix<M: ProtobufMessage>(_ bytes: [UInt8], path: String) -> ([M], CheckpointError?) {
        var out: [M] = []
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= 4 else { return (out, CheckpointError(path: path, problem: "ends in a truncated record header at byte \(at)")) }
            let n = Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
            at += 4
            guard n <= bytes.count - at else { return (out, CheckpointError(path: path, problem: "ends in a truncated record at byte \(at - 4) (\(n) bytes announced, \(bytes.count - at) there)")) }
            do throws(WireError) {
                let m = try M(serializedBytes: Array(bytes[at..<(at + n)]))
                if let r = m as? StatusUpdateRecord, (r.type == .update && r.update == nil) || (r.type == .ack && r.uuid == nil) {
                    return (out, CheckpointError(path: path, problem: "holds a \(r.type.protoName) record without its \(r.type == .update ? "update" : "uuid") at byte \(at - 4)"))
                }
                out.append(m)
            } catch {
                return (out, CheckpointError(path: path, problem: "record at byte \(at - 4) is not a valid \(M.self): \(error)"))
            }
            at += n
        }
        return (out, nil)
    }

    /// The executors under an agent directory that cannot be recovered, found by their pids alone.
    private static func orphans(_ a: AgentID, _ store: some CheckpointStore) -> [(key: ExecutorKey, forkedPID: Int32?)] {
        var found: [(key: ExecutorKey, forkedPID: Int32?)] = []
        for fname in (try? store.list(agentDir(a) + "/frameworks")) ?? [] where (try? WireValidation.id(fname, field: "")) != nil {
            let fid = FrameworkID(value: fname)
            for ename in (try? store.list(frameworkDir(a, fid) + "/executors")) ?? [] where (try? WireValidation.id(ename, field: "")) != nil {
                let key = ExecutorKey(framework: fid, executor: ExecutorID(value: ename))
                guard let run = (try? store.readLink(executorDir(a, key) + "/runs/" + latest)) ?? nil, (try? WireValidation.id(run, field: "")) != nil,
                    let bytes = (try? store.read(runDir(a, key, run) + "/pids/forked.pid")) ?? nil,
                    let pid = Int32(String(decoding: bytes, as: UTF8.self).trimmingSpaces), pid > 1
                else { continue }
                found.append((key, pid))
            }
        }
        return found
    }

    static func single<M: ProtobufMessage>(_ bytes: [UInt8], path: String) throws(CheckpointError) -> M {
        let all: [M] = try records(bytes, path: path)
        guard all.count == 1 else { throw CheckpointError(path: path, problem: "holds \(all.count) records, not 1") }
        return all[0]
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeLast() }
        return String(s)
    }
}
