import Foundation
import Logging
import MesosCore
import MesosScheduler
import MesosWire
import Synchronization

/// The benchmark's framework, in-process: a `SchedulerDriver` that launches one task per agent
/// (up to `taskCount`), declines every other offer for an hour (a new leader does not know the
/// filter, so its first offers show up at once), and timestamps every event it receives.
final class BenchFramework: Sendable {
    struct Record: Sendable {
        enum Kind: Sendable { case registered, reregistered, disconnected, offer, status, agentLost, error }
        var at: Int64
        var kind: Kind
        /// registered/reregistered: the master's id; offer: the offer id; status: "task state".
        var detail: String
        var state: TaskState?
        var task: String?
    }

    let driver: SchedulerDriver
    let taskCount: Int
    private let state = Mutex(State())

    private struct State {
        var records: [Record] = []
        var launched = 0
        var taskStates: [String: TaskState] = [:]
        var usedAgents: Set<String> = []
    }

    init(master: String, taskCount: Int, command: String, sessionTimeout: Duration, logger: Logger) {
        self.taskCount = taskCount
        driver = SchedulerDriver(
            framework: FrameworkInfo(user: ProcessInfo.processInfo.environment["USER"] ?? "root", name: "failover-bench", failoverTimeout: 3600),
            master: master, sessionTimeout: sessionTimeout, logger: logger)
        let driver = self.driver
        Task.detached { [self] in
            for await event in driver.events { await handle(event, command: command) }
        }
    }

    func start() async throws { try await driver.start() }
    func stop() async { await driver.stop(failover: false) }

    var records: [Record] { state.withLock { $0.records } }
    var recordCount: Int { state.withLock { $0.records.count } }
    func records(from index: Int) -> [Record] { state.withLock { Array($0.records[min(index, $0.records.count)...]) } }
    var taskStates: [String: TaskState] { state.withLock { $0.taskStates } }
    var runningTasks: Int { state.withLock { $0.taskStates.values.filter { $0 == .running }.count } }

    private func record(_ kind: Record.Kind, _ detail: String, state taskState: TaskState? = nil, task: String? = nil) {
        let r = Record(at: nowMs(), kind: kind, detail: detail, state: taskState, task: task)
        state.withLock { $0.records.append(r) }
    }

    private func handle(_ event: SchedulerEvent, command: String) async {
        switch event {
        case .registered(_, let master): record(.registered, master.id)
        case .reregistered(_, let master):
            record(.reregistered, master.id)
            await driver.reconcile()
        case .disconnected: record(.disconnected, "")
        case .offers(let offers):
            for offer in offers {
                record(.offer, offer.id.value)
                let need = Resources([Resource(name: "cpus", scalar: 0.1), Resource(name: "mem", scalar: 16)])
                let task: TaskInfo? = state.withLock { s in
                    guard s.launched < taskCount, !s.usedAgents.contains(offer.agentID.value), Resources(offer.resources).contains(need) else { return nil }
                    s.launched += 1
                    s.usedAgents.insert(offer.agentID.value)
                    let id = "task-\(s.launched)"
                    s.taskStates[id] = .staging
                    return TaskInfo(name: id, taskID: TaskID(value: id), agentID: offer.agentID, resources: need.list, command: CommandInfo(value: command))
                }
                if let task {
                    await driver.launch(offers: [offer.id], tasks: [task], filters: Filters(refuseSeconds: 3600))
                } else {
                    await driver.decline(offers: [offer.id], filters: Filters(refuseSeconds: 3600))
                }
            }
        case .rescinded, .frameworkMessage, .executorLost: break
        case .statusUpdate(let status):
            state.withLock { $0.taskStates[status.taskID.value] = status.state }
            record(.status, "\(status.taskID.value) \(status.state.protoName)", state: status.state, task: status.taskID.value)
        case .agentLost(let id): record(.agentLost, id.value)
        case .refused(let kind, let reason): record(.error, "\(kind) refused: \(reason)")
        case .error(let message): record(.error, message)
        }
    }
}
