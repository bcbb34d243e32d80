// An example framework: runs N shell tasks through the SchedulerDriver and keeps them running
// across master failovers (and its own restarts, with --framework_id). Prints one line per event,
// as `event=<key> field=value ...`, so people and tools (mesos-local, the tests) can follow it.
import ArgumentParser
import Foundation
import Logging
import MesosBus
import MesosCore
import MesosDaemon
import MesosScheduler
import MesosWire

@main
struct ExampleFramework: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "example-framework", abstract: "Runs N shell tasks on a Mesos cluster and reports every scheduler event.",
        discussion: "SIGTERM stops the scheduler (failing over, or unregistering with --stop_on_sigterm_without_failover); SIGUSR1 kills every live task (a KillTask each).")

    @Option(help: "zk://host:port[,host:port...]/path, file:///path or host:port.") var master: String
    @Option(help: "How many tasks to run.") var tasks = 2
    @Option(help: "The shell command of each task.") var command = "sleep 100000"
    @Option(name: .customLong("task_cpus")) var taskCPUs = 0.1
    @Option(name: .customLong("task_mem")) var taskMem = 32.0
    @Option(name: .customLong("task_prefix"), help: "Task ids are <prefix><n>.") var taskPrefix = "task-"
    @Option(help: "Framework name.") var name = "example-framework"
    @Option(name: .customLong("failover_timeout"), help: "Seconds the master keeps the framework and its tasks after this scheduler goes away.")
    var failoverTimeout = 3600.0
    @Option(name: .customLong("framework_id"), help: "Resume this framework (a scheduler failover) instead of registering a new one: its running tasks are adopted (reconciled), nothing new is launched.")
    var frameworkID: String?
    @Flag(help: "Ask agents to checkpoint the tasks, so they survive agent restarts.") var checkpoint = false
    @Flag(name: .customLong("partition_aware"), help: "Declare PARTITION_AWARE: TASK_UNREACHABLE instead of TASK_LOST for partitioned agents.")
    var partitionAware = false
    @Option(name: .customLong("zk_session_timeout")) var zkSessionTimeout = "10secs"
    @Option(name: .customLong("log_level")) var logLevel = "warning"
    @Option(help: "File with the framework's principal and secret, for masters that authenticate frameworks.") var credential: String?
    @Option(help: "Port the scheduler listens on for the master (0: any free port).") var port = 0
    @Option(name: .customLong("advertise_port"), help: "Port the master should use to reach the scheduler (default: --port).") var advertisePort: Int?
    @Option(name: .customLong("registration_backoff_factor"), help: "(Re)registration waits a random time up to this after a leader change.") var registrationBackoffFactor = "2secs"
    @Flag(name: .customLong("stop_on_sigterm_without_failover"), help: "On SIGTERM, unregister the framework (its tasks are killed) instead of leaving it to fail over.")
    var unregisterOnStop = false

    func run() async throws {
        try DaemonLogging.bootstrap(level: logLevel)
        let timeout = try MesosDuration.flag(zkSessionTimeout, name: "zk_session_timeout")
        let loaded = try credential.map { try CredentialsFile.load($0) }
        var settings = SchedulerSettings()
        settings.registrationBackoffFactor = try MesosDuration.flag(registrationBackoffFactor, name: "registration_backoff_factor")
        var info = FrameworkInfo(
            user: ProcessInfo.processInfo.environment["USER"] ?? "root", name: name, id: frameworkID.map(FrameworkID.init(value:)),
            failoverTimeout: failoverTimeout, checkpoint: checkpoint)
        if partitionAware { info.capabilities = [FrameworkInfo.Capability(type: .partitionAware)] }
        let driver = SchedulerDriver(framework: info, master: master, settings: settings, sessionTimeout: timeout, credential: loaded?.first, tls: try TLSContext.fromEnvironment(), logger: Logger(label: "example-framework"))
        let failover = !unregisterOnStop
        let signals = TerminationSignals { _ in
            Task {
                say("stopping", ["failover": "\(failover)"])
                await driver.stop(failover: failover)
                Foundation.exit(0)
            }
        }
        let live = LiveTasks()
        let kills = TerminationSignals([SIGUSR1]) { _ in
            Task {
                let ids = live.ids
                say("killing", ["tasks": ids.joined(separator: ",")])
                for id in ids { await driver.kill(TaskID(value: id)) }
            }
        }
        try await driver.start(port: port, advertisePort: advertisePort)
        // A resumed framework (--framework_id) adopts its running tasks (reconciled when it is
        // registered) and launches nothing new.
        var launched = frameworkID == nil ? 0 : tasks
        var states: [String: TaskState] = [:]
        var allRunning = false
        for await event in driver.events {
            switch event {
            case .registered(let id, let master):
                say("registered", ["framework_id": id.value, "master": master.pid ?? "?"])
                if frameworkID != nil { await driver.reconcile() }
            case .reregistered(let id, let master):
                say("reregistered", ["framework_id": id.value, "master": master.pid ?? "?"])
                await driver.reconcile()
            case .disconnected: say("disconnected")
            case .offers(let offers):
                say("offers", ["count": "\(offers.count)"])
                for offer in offers {
                    var available = Resources(offer.resources)
                    var batch: [TaskInfo] = []
                    let need = Resources([Resource(name: "cpus", scalar: taskCPUs), Resource(name: "mem", scalar: taskMem)])
                    while launched < tasks, available.contains(need) {
                        launched += 1
                        available.subtract(need)
                        let id = "\(taskPrefix)\(launched)"
                        batch.append(TaskInfo(name: id, taskID: TaskID(value: id), agentID: offer.agentID, resources: need.list, command: CommandInfo(value: command)))
                    }
                    if batch.isEmpty {
                        await driver.decline(offers: [offer.id], filters: Filters(refuseSeconds: 5))
                    } else {
                        say("launch", ["tasks": batch.map(\.taskID.value).joined(separator: ","), "agent_id": offer.agentID.value])
                        await driver.launch(offers: [offer.id], tasks: batch)
                    }
                }
            case .rescinded(let id): say("rescinded", ["offer_id": id.value])
            case .statusUpdate(let status):
                if states[status.taskID.value] != status.state || status.reason != .reconciliation {
                    var fields = ["task_id": status.taskID.value, "state": status.state.protoName]
                    if let reason = status.reason { fields["reason"] = reason.protoName }
                    if let agent = status.agentID { fields["agent_id"] = agent.value }
                    if let t = status.unreachableTime { fields["unreachable_time_ns"] = "\(t.nanoseconds)" }
                    say("status", fields)
                }
                states[status.taskID.value] = status.state
                live.set(status.taskID.value, live: !status.state.isTerminal)
                let running = states.values.filter { $0 == .running }.count
                if running == tasks && !allRunning { say("all_running", ["count": "\(running)"]) }
                allRunning = running == tasks
            case .agentLost(let id): say("agent_lost", ["agent_id": id.value])
            case .frameworkMessage(let executor, let agent, let data):
                say("framework_message", ["executor_id": executor.value, "agent_id": agent.value, "bytes": "\(data.count)"])
            case .executorLost(let executor, let agent, let status):
                say("executor_lost", ["executor_id": executor.value, "agent_id": agent.value, "status": "\(status)"])
            case .refused(let kind, let reason): say("refused", ["kind": kind, "reason": reason])
            case .error(let message):
                say("error", ["message": message])
                throw ExitCode(1)
            }
        }
        withExtendedLifetime((signals, kills)) {}
    }
}

/// One stdout line per event: `<time> event=<key> k=v ...` (values quoted when they need it).
func say(_ event: String, _ fields: [String: String] = [:]) {
    var line = "\(ISO8601DateFormatter().string(from: Date())) event=\(event)"
    for (k, v) in fields.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(MilestoneLogHandler.quoted(v))" }
    print(line)
    fflush(nil)
}

/// The tasks not yet terminal, for SIGUSR1's kills.
final class LiveTasks: @unchecked Sendable {  // guarded by lock
    private let lock = NSLock()
    private var set: Set<String> = []
    var ids: [String] { lock.withLock { set.sorted() } }
    func set(_ id: String, live: Bool) { lock.withLock { if live { set.insert(id) } else { set.remove(id) } } }
}
