import MesosCore
import MesosWire
import Testing

/// Mesos's checkpoint layout and its recovery, over the in-memory store.
@Suite struct AgentCheckpointTests {
    static let a = AgentID(value: "S1")
    static let f = FrameworkID(value: "f1")
    static let e = ExecutorKey(framework: f, executor: ExecutorID(value: "t1"))

    static func written() -> MemoryCheckpointStore {
        let store = MemoryCheckpointStore()
        let framework = FrameworkInfo(user: "u", name: "fw", id: f, checkpoint: true)
        let task = MesosTask(name: "t1", taskID: TaskID(value: "t1"), frameworkID: f, agentID: a, state: .staging, executorID: e.executor)
        let u = StatusUpdate(frameworkID: f, status: TaskStatus(taskID: TaskID(value: "t1"), state: .running, uuid: [1]), timestamp: 1, uuid: [1])
        let writes: [CheckpointWrite] = [
            .agent(AgentInfo(hostname: "h", id: a)), .epochFloor(7),
            .framework(agent: a, framework, pid: "scheduler@10.0.0.1:6000"),
            .executor(agent: a, e, ExecutorInfo(executorID: e.executor, frameworkID: f), run: "r1"),
            .forkedPID(agent: a, e, run: "r1", pid: 4242),
            .executorPID(agent: a, e, run: "r1", PID("executor(1)@10.0.0.9:7001")!),
            .task(agent: a, e, run: "r1", task),
            .taskUpdates(agent: a, e, run: "r1", TaskID(value: "t1"), [StatusUpdateRecord(type: .update, update: u), StatusUpdateRecord(type: .ack, uuid: [1])]),
        ]
        for w in writes { try? AgentCheckpoint.apply(w, to: store) }
        return store
    }

    @Test func theLayoutIsMesoss() {
        let store = Self.written()
        #expect(store.links["slaves/latest"] == "S1")
        #expect(store.links["slaves/S1/frameworks/f1/executors/t1/runs/latest"] == "r1")
        for path in [
            "slaves/S1/slave.info", "slaves/S1/frameworks/f1/framework.info", "slaves/S1/frameworks/f1/framework.pid",
            "slaves/S1/frameworks/f1/executors/t1/executor.info", "slaves/S1/frameworks/f1/executors/t1/runs/r1/pids/forked.pid",
            "slaves/S1/frameworks/f1/executors/t1/runs/r1/pids/libprocess.pid", "slaves/S1/frameworks/f1/executors/t1/runs/r1/tasks/t1/task.info",
            "slaves/S1/frameworks/f1/executors/t1/runs/r1/tasks/t1/task.updates",
        ] {
            #expect(store.files[path] != nil, "\(path)")
        }
    }

    @Test func whatIsWrittenIsRecovered() throws {
        let state = try AgentCheckpoint.recover(from: Self.written(), strict: true)
        #expect(state.agent?.id == Self.a && state.epochFloor == 7)
        let e = try #require(state.executors.first)
        #expect(e.key == Self.e && e.run == "r1" && e.forkedPID == 4242 && e.executorPID?.description == "executor(1)@10.0.0.9:7001" && !e.completed)
        #expect(e.tasks.map(\.task.taskID.value) == ["t1"] && e.tasks.first?.records.map(\.type) == [.update, .ack])
        #expect(state.frameworks.first?.pid == "scheduler@10.0.0.1:6000" && state.skipped.isEmpty)
    }

    @Test func aFreshAgentHasAnEmptyState() throws {
        #expect(try AgentCheckpoint.recover(from: MemoryCheckpointStore(), strict: true) == AgentRecoveryState())
    }

    @Test func aCorruptFileIsAnErrorNamingItWhenStrict() {
        let store = Self.written()
        let path = "slaves/S1/frameworks/f1/executors/t1/runs/r1/tasks/t1/task.updates"
        store.corrupt(path)
        #expect {
            try AgentCheckpoint.recover(from: store, strict: true)
        } throws: { ($0 as? CheckpointError)?.path == path }
    }

    @Test func withoutStrictACorruptEntryIsSkippedAndReported() throws {
        let store = Self.written()
        store.corrupt("slaves/S1/frameworks/f1/executors/t1/executor.info")
        let state = try AgentCheckpoint.recover(from: store, strict: false)
        #expect(state.skipped.map(\.path) == ["slaves/S1/frameworks/f1/executors/t1/executor.info"])
        #expect(state.executors.isEmpty && state.unrecoverable.map(\.key) == [Self.e] && state.unrecoverable.first?.forkedPID == 4242,
            "its process is known, so it can be killed")
        #expect(state.agent?.id == Self.a)
    }

    @Test func aTruncatedRecordIsCorruption() {
        let store = Self.written()
        let path = "slaves/S1/slave.info"
        let bytes = store.files[path]!
        try? store.write(Array(bytes.dropLast(3)), to: path)
        #expect {
            try AgentCheckpoint.recover(from: store, strict: true)
        } throws: { e in
            guard let e = e as? CheckpointError else { return false }
            return e.path == path && e.problem.contains("truncated")
        }
    }

    @Test func aCheckpointWithAnInvalidIDIsRefused() {
        let store = Self.written()
        try? store.link("slaves/latest", to: "../../etc")
        #expect(throws: CheckpointError.self) { try AgentCheckpoint.recover(from: store, strict: true) }
        #expect((try? AgentCheckpoint.recover(from: store, strict: false))?.agent == nil)
    }

    @Test func aCompletedExecutorLeavesNothing() throws {
        let store = Self.written()
        try AgentCheckpoint.apply(.executorCompleted(agent: Self.a, Self.e, run: "r1"), to: store)
        try AgentCheckpoint.apply(.frameworkCompleted(agent: Self.a, Self.f), to: store)
        #expect(!store.files.keys.contains { $0.contains("frameworks/") } && !store.links.keys.contains { $0.contains("frameworks/") })
        #expect(try AgentCheckpoint.recover(from: store, strict: true).executors.isEmpty)
    }
}
