// libFuzzer target over the cores: the input is a program of events for MasterCore, AgentCore
// and SchedulerCore (well-formed envelopes of every kind whose fields take hostile values: NaN,
// infinities, huge and negative numbers, empty, overlong, duplicate and unknown ids; ticks;
// leadership and registry results; links breaking; scheduler calls). No input may trap, and the
// cores must never send a value a peer would refuse (they forward only what they validated).
// Built and run by scripts/fuzz (libFuzzer provides main).
import MesosCore
import MesosWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = Input(UnsafeBufferPointer(start: data, count: size))
    var world = Cores()
    while !input.isEmpty { world.step(&input) }
    return 0
}

/// Reads the fuzzer's bytes as choices; past the end everything reads as zero.
struct Input {
    let bytes: UnsafeBufferPointer<UInt8>
    var offset = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    var isEmpty: Bool { offset >= bytes.count }

    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func pick<T>(_ options: [T]) -> T { options[Int(byte()) % options.count] }
    mutating func bool() -> Bool { byte() & 1 == 1 }
    mutating func count(_ max: Int = 4) -> Int { Int(byte()) % (max + 1) }

    static let doubles: [Double] = [0, 1, 0.5, 2, 5, -1, -0.0, .nan, .infinity, -.infinity, 1e300, -1e300, .greatestFiniteMagnitude, .leastNonzeroMagnitude, 1e15, 3600]
    mutating func double() -> Double { pick(Self.doubles) }

    static let ids = ["a", "b", "m-S1", "m-S2", "m-F1", "m-O1", "m-O2", "f1", "t1", "task-1", "", ".", "..", "a/b", "x y", "\u{0}", String(repeating: "z", count: 300), "ünï", "m-S1"]
    mutating func id() -> String { pick(Self.ids) }
    mutating func text() -> String { pick(["", "h", "sleep 10", "true", String(repeating: "s", count: 70_000), "\n\t", "finish 5"]) }
    mutating func uint64() -> UInt64 { pick([0, 1, 2, 3, 5, 6, 7, 100, .max, .max - 1]) }
    mutating func int32() -> Int32 { pick([0, 1, 5050, -1, .max, .min, 65536]) }
    mutating func bytes16() -> [UInt8] { pick([[], [1], Array(repeating: 7, count: 16), Array(repeating: 9, count: 100)]) }
    mutating func pidText() -> String { pick([Pids.master, Pids.master2, Pids.agent, Pids.scheduler, "", "x", "a@h:0", "a@h:99999", "a@[::1]:1", String(repeating: "p", count: 600) + "@h:1"]) }

    mutating func resources() -> [Resource] { (0..<count(3)).map { _ in Resource(name: pick(["cpus", "mem", "", "disk"]), scalar: double(), role: pick(["*", ""])) } }
    mutating func framework() -> FrameworkInfo {
        FrameworkInfo(user: text(), name: text(), id: bool() ? FrameworkID(value: id()) : nil, failoverTimeout: double(), checkpoint: bool(),
            principal: bool() ? id() : nil, capabilities: bool() ? [FrameworkInfo.Capability(type: .partitionAware)] : [])
    }
    mutating func agent() -> AgentInfo {
        AgentInfo(hostname: text(), port: int32(), resources: resources(), id: bool() ? AgentID(value: id()) : nil, pid: bool() ? pidText() : nil)
    }
    mutating func state() -> TaskState { pick(TaskState.allCases) }
    mutating func status() -> TaskStatus {
        TaskStatus(taskID: TaskID(value: id()), state: state(), message: bool() ? text() : nil, source: pick([nil, .master, .agent]),
            reason: pick([nil, .reconciliation, .agentRemoved]), agentID: bool() ? AgentID(value: id()) : nil, timestamp: bool() ? double() : nil,
            uuid: bool() ? bytes16() : nil)
    }
    mutating func task() -> TaskInfo {
        TaskInfo(name: text(), taskID: TaskID(value: id()), agentID: AgentID(value: id()), resources: resources(), command: bool() ? CommandInfo(value: text()) : nil)
    }
    mutating func mesosTask() -> MesosTask {
        MesosTask(name: text(), taskID: TaskID(value: id()), frameworkID: FrameworkID(value: id()), agentID: AgentID(value: id()), state: state(), resources: resources(), status: bool() ? status() : nil)
    }
    mutating func executorInfo() -> ExecutorInfo {
        ExecutorInfo(executorID: ExecutorID(value: id()), resources: resources(), command: bool() ? CommandInfo(value: text()) : nil, frameworkID: bool() ? FrameworkID(value: id()) : nil)
    }
    mutating func masterInfo() -> MasterInfo { MasterInfo(id: id(), ip: 1, port: 5050, pid: bool() ? pidText() : nil) }
    mutating func offer() -> Offer {
        Offer(id: OfferID(value: id()), frameworkID: FrameworkID(value: id()), agentID: AgentID(value: id()), hostname: text(), resources: resources())
    }

    /// A payload of any kind, its fields hostile.
    mutating func payload() -> Envelope.Payload {
        switch byte() % 40 {
        case 0: .registerAgent(RegisterAgentMessage(agent: agent()))
        case 1: .reregisterAgent(ReregisterAgentMessage(agent: agent(), tasks: (0..<count()).map { _ in mesosTask() }, frameworks: (0..<count()).map { _ in framework() }))
        case 2: .agentRegistered(AgentRegisteredMessage(agentID: AgentID(value: id()), master: bool() ? masterInfo() : nil))
        case 3: .agentReregistered(AgentReregisteredMessage(agentID: AgentID(value: id()), reconciliations: (0..<count(2)).map { _ in ReconcileTasksMessage(frameworkID: FrameworkID(value: id()), statuses: (0..<count()).map { _ in status() }) }))
        case 4: .ping(PingAgentMessage(connected: bool()))
        case 5: .pong(PongAgentMessage())
        case 6: .shutdown(ShutdownMessage(message: bool() ? text() : nil))
        case 7: .runTask(RunTaskMessage(frameworkID: FrameworkID(value: id()), framework: framework(), task: task(), pid: pidText()))
        case 8: .killTask(KillTaskMessage(frameworkID: FrameworkID(value: id()), taskID: TaskID(value: id())))
        case 9: .shutdownFramework(ShutdownFrameworkMessage(frameworkID: FrameworkID(value: id())))
        case 10: .statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: FrameworkID(value: id()), status: status(), timestamp: double(), uuid: bytes16(), agentID: bool() ? AgentID(value: id()) : nil), pid: bool() ? pidText() : nil))
        case 11: .statusUpdateAck(StatusUpdateAcknowledgementMessage(agentID: AgentID(value: id()), frameworkID: FrameworkID(value: id()), taskID: TaskID(value: id()), uuid: bytes16()))
        case 12: .registerFramework(RegisterFrameworkMessage(framework: framework()))
        case 13: .reregisterFramework(ReregisterFrameworkMessage(framework: framework(), failover: bool()))
        case 14: .frameworkRegistered(FrameworkRegisteredMessage(frameworkID: FrameworkID(value: id()), masterInfo: masterInfo()))
        case 15: .frameworkReregistered(FrameworkReregisteredMessage(frameworkID: FrameworkID(value: id()), masterInfo: masterInfo()))
        case 16: .unregisterFramework(UnregisterFrameworkMessage(frameworkID: FrameworkID(value: id())))
        case 17: .deactivateFramework(DeactivateFrameworkMessage(frameworkID: FrameworkID(value: id())))
        case 18: .resourceOffers(ResourceOffersMessage(offers: (0..<count()).map { _ in offer() }, pids: (0..<count()).map { _ in pidText() }))
        case 19: .rescindOffer(RescindResourceOfferMessage(offerID: OfferID(value: id())))
        case 20: .launchTasks(LaunchTasksMessage(frameworkID: FrameworkID(value: id()), tasks: (0..<count()).map { _ in task() }, offerIDs: (0..<count()).map { _ in OfferID(value: id()) }, filters: bool() ? Filters(refuseSeconds: double()) : nil))
        case 21: .declineOffers(DeclineOffersMessage(frameworkID: FrameworkID(value: id()), offerIDs: (0..<count()).map { _ in OfferID(value: id()) }, filters: bool() ? Filters(refuseSeconds: double()) : nil))
        case 22: .reviveOffers(ReviveOffersMessage(frameworkID: FrameworkID(value: id())))
        case 23: .suppressOffers(SuppressOffersMessage(frameworkID: FrameworkID(value: id())))
        case 24: .reconcileTasks(ReconcileTasksMessage(frameworkID: FrameworkID(value: id()), statuses: (0..<count()).map { _ in status() }))
        case 25: .lostAgent(LostAgentMessage(agentID: AgentID(value: id())))
        case 26: .frameworkError(FrameworkErrorMessage(message: text()))
        case 27: .frameworkDisconnected(FrameworkDisconnectedMessage(reason: bool() ? text() : nil))
        case 28: .messageRefused(MessageRefusedMessage(kind: text(), reason: text()))
        case 29: .registerExecutor(RegisterExecutorMessage(frameworkID: FrameworkID(value: id()), executorID: ExecutorID(value: id())))
        case 30: .executorRegistered(ExecutorRegisteredMessage(
            executorInfo: executorInfo(), frameworkID: FrameworkID(value: id()), frameworkInfo: framework(), agentID: AgentID(value: id()), agentInfo: agent()))
        case 31: .reregisterExecutor(ReregisterExecutorMessage(
            executorID: ExecutorID(value: id()), frameworkID: FrameworkID(value: id()), tasks: (0..<count()).map { _ in task() },
            updates: (0..<count()).map { _ in StatusUpdate(frameworkID: FrameworkID(value: id()), status: status(), timestamp: double(), uuid: bytes16()) }))
        case 32: .executorReregistered(ExecutorReregisteredMessage(agentID: AgentID(value: id()), agentInfo: agent()))
        case 33: .reconnectExecutor(ReconnectExecutorMessage(agentID: AgentID(value: id())))
        case 34: .shutdownExecutor(ShutdownExecutorMessage(executorID: bool() ? ExecutorID(value: id()) : nil, frameworkID: bool() ? FrameworkID(value: id()) : nil))
        case 35: .exitedExecutor(ExitedExecutorMessage(agentID: AgentID(value: id()), frameworkID: FrameworkID(value: id()), executorID: ExecutorID(value: id()), status: int32()))
        case 36: .executorToFramework(ExecutorToFrameworkMessage(agentID: AgentID(value: id()), frameworkID: FrameworkID(value: id()), executorID: ExecutorID(value: id()), data: bytes16()))
        case 37: .frameworkToExecutor(FrameworkToExecutorMessage(agentID: AgentID(value: id()), frameworkID: FrameworkID(value: id()), executorID: ExecutorID(value: id()), data: bytes16()))
        case 38: .unregisterAgent(UnregisterAgentMessage(agentID: AgentID(value: id())))
        default: .leaderHint(LeaderHintMessage(leader: bool() ? masterInfo() : nil, leaderEpoch: bool() ? uint64() : nil, reason: bool() ? text() : nil))
        }
    }

    mutating func envelope() -> Envelope { Envelope(epoch: uint64(), from: pidText(), payload: bool() || bool() ? payload() : nil) }
}

enum Pids {
    static let master = "master@10.0.0.1:5050"
    static let master2 = "master@10.0.0.2:5050"
    static let agent = "slave(1)@10.0.0.9:5051"
    static let scheduler = "scheduler-1@10.0.0.20:6000"
}

/// The four cores, driven by the input; every effect they return is checked.
struct Cores {
    var master = MasterCore(info: MasterInfo(id: "m", ip: 1, port: 5050), pid: PID(Pids.master)!)
    var agent = AgentCore(info: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 2)]), pid: PID(Pids.agent)!, seed: 1)
    var executor = ExecutorCore(
        agent: PID(Pids.agent)!, agentID: AgentID(value: "a"), frameworkID: FrameworkID(value: "f"), executorID: ExecutorID(value: "e"), seed: 3)
    var scheduler = SchedulerCore(framework: FrameworkInfo(user: "u", name: "fw"), seed: 2)
    var now: Duration = .zero
    var pendingTokens: [Int] = []

    mutating func step(_ input: inout Input) {
        switch input.byte() % 17 {
        case 0:
            now += .milliseconds(Int64(input.byte()) * 40)
            feedMaster(.tick(now: now))
            feedAgent(.tick(now: now))
            feedScheduler(.tick(now: now))
            feedExecutor(.tick(now: now))
        case 1: feedMaster(.message(Inbound(input.envelope(), peer: PeerIdentity(principal: input.bool() ? input.id() : nil))))
        case 2: feedAgent(.message(Inbound(input.envelope())))
        case 3: feedScheduler(.message(Inbound(input.envelope())))
        case 4:
            let epoch = input.uint64()
            feedMaster(.elected(epoch: epoch))
            feedMaster(.leaderDetected(Leader(epoch: epoch, pid: PID(Pids.master)!)))
        case 5:
            let leader = input.bool() ? Leader(epoch: input.uint64(), pid: PID(input.pick([Pids.master, Pids.master2]))!) : nil
            feedMaster(.leaderDetected(leader))
            feedAgent(.leaderDetected(leader))
            feedScheduler(.leaderDetected(leader))
        case 6:
            let registry = Registry(
                admitted: (0..<input.count(3)).map { _ in Registry.Agent(info: input.agent()) }, removed: (0..<input.count(2)).map { _ in AgentID(value: input.id()) },
                highestEpoch: input.bool() ? input.uint64() : nil, removedFrameworks: (0..<input.count(2)).map { _ in FrameworkID(value: input.id()) })
            feedMaster(.registryLoaded(input.bool() ? RegistryState(legacy: registry) : nil))
        case 7:
            if !pendingTokens.isEmpty { feedMaster(.registryStored(token: pendingTokens.removeFirst())) }
        case 8: feedMaster(.linkBroken(endpoint: input.pick(["10.0.0.20:6000", "10.0.0.9:5051", "x:1"])))
        case 9:
            let key = ExecutorKey(framework: FrameworkID(value: input.id()), executor: ExecutorID(value: input.id()))
            feedAgent(input.pick([
                .executorExited(key, status: input.bool() ? input.int32() : nil), .executorFailedToLaunch(key, reason: input.text()),
                .shutdownRequested(forGood: input.bool()), .linkBroken(endpoint: input.pick(["10.0.0.1:5050", "10.0.0.30:7000", "x:1"])),
            ]))
        case 10:
            let call: SchedulerCall = input.pick([
                .launch(offers: [OfferID(value: input.id())], tasks: [input.task()], filters: Filters(refuseSeconds: input.double())),
                .decline(offers: [OfferID(value: input.id())], filters: nil), .kill(TaskID(value: input.id())), .acknowledge(input.status()),
                .reconcile([input.status()]), .revive, .suppress, .stop(failover: input.bool()), .abort,
            ])
            feedScheduler(.call(call))
        case 11: feedMaster(.teardown(FrameworkID(value: input.id())))
        case 12: feedMaster(input.pick([.candidacyLost(.sessionExpired), .registryLoadFailed("x"), .registryStoreFailed(fenced: input.bool(), reason: "x"), .startStandalone]))
        case 13: feedScheduler(.linkBroken(endpoint: input.pick(["10.0.0.1:5050", "10.0.0.2:5050"])))
        case 14:
            // A recovery state as a checkpoint could describe it (the agent acts on the first only).
            var state = AgentRecoveryState()
            if input.bool() { state.agent = input.agent() }
            state.epochFloor = input.bool() ? input.uint64() : 0
            state.rebooted = input.bool()
            for _ in 0..<input.count(2) {
                let fw = input.framework()
                let executors = (0..<input.count(2)).map { _ in
                    AgentRecoveryState.Executor(
                        key: ExecutorKey(framework: FrameworkID(value: input.id()), executor: ExecutorID(value: input.id())), info: input.executorInfo(),
                        run: input.id(), forkedPID: input.bool() ? input.int32() : nil, executorPID: input.bool() ? PID(input.pidText()) : nil,
                        completed: input.bool(), tasks: (0..<input.count(2)).map { _ in AgentRecoveryState.Task(task: input.mesosTask(), records: []) },
                        alive: input.bool())
                }
                state.frameworks.append(AgentRecoveryState.Framework(info: fw, pid: input.pidText(), executors: executors))
            }
            feedAgent(.recovered(state))
        case 15: feedExecutor(.message(Inbound(input.envelope())))
        default:
            feedExecutor(input.pick([
                .started(now: now), .taskStarted(pid: input.int32()), .taskFailedToStart(reason: input.text()),
                .taskExited(input.pick([.exited(input.int32()), .signaled(input.int32()), .unknown])), .shutdownRequested,
                .linkBroken(endpoint: input.pick(["10.0.0.9:5051", "x:1"])),
            ]))
        }
    }

    mutating func feedExecutor(_ event: ExecutorCore.Event) {
        for effect in executor.handle(event) { if case .send(let payload, _) = effect { sent(payload) } }
    }

    mutating func feedMaster(_ event: MasterCore.Event) {
        for effect in master.handle(event) {
            switch effect {
            case .send(let payload, _): sent(payload)
            case .storeRegistry(_, let token): pendingTokens.append(token)
            default: break
            }
        }
    }

    mutating func feedAgent(_ event: AgentCore.Event) {
        for effect in agent.handle(event) { if case .send(let payload, _, _) = effect { sent(payload) } }
    }

    mutating func feedScheduler(_ event: SchedulerCore.Event) {
        for effect in scheduler.handle(event) { if case .send(let payload, _, _) = effect { sent(payload) } }
    }

    /// Cores forward only what they validated: everything they send passes the peers' checks.
    /// (Refusals quote the refused value's field name and problem only, never the value.)
    func sent(_ payload: Envelope.Payload) {
        do {
            try MessageValidation.validate(payload)
        } catch {
            fatalError("a core sent \(payload.kind) with an invalid value: \(error)")
        }
    }
}

// SwiftPM links executables with `main` aliased to `<product>_main`; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("core_fuzz_main")
public func coreFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return runFuzzerDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) }
}
