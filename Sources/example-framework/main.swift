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
        commandName: "example-framework", abstract: "Runs N shell tasks on a Mesos cluster and reports every scheduler event.")

    @Option(help: "zk://host:port[,host:port...]/path, file:///path or host:port.") var master: String
    @Option(help: "How many tasks to run.") var tasks = 2
    @Option(help: "The shell command of each task.") var command = "sleep 100000"
    @Option(name: .customLong("task_cpus")) var taskCPUs = 0.1
    @Option(name: .customLong("task_mem")) var taskMem = 32.0
    @Option(name: .customLong("task_prefix"), help: "Task ids are <prefix><n>.") var taskPrefix = "task-"
    @Option(help: "Framework name.") var name = "example-framework"
    @Option(name: .customLong("failover_timeout"), help: "Seconds the master keeps the framework and its tasks after this scheduler goes away.")
    var failoverTimeout = 3600.0
    @Option(name: .customLong("framework_id"), help: "Resume this framework (a scheduler failover) instead of registering a new one.")
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
        let driver = SchedulerDriver(framework: info, master: master, settings: settings, sessionTimeout: timeout, credential: loaded?.first, logger: Logger(label: "example-framework"))
        let failover = !unregisterOnStop
        let signals = TerminationSignals { _ in
            Task {
                say("stopping", ["failover": "\(failover)"])
                await driver.stop(failover: failover)
                Foundation.exit(0)
            }
        }
        try await driver.start(port: port, advertisePort: advertisePort)
        var launched = 0
        var states: [String: TaskState] = [:]
        var allRunning = false
        for await event in driver.events {
            switch event {
            case .registered(let id, let master): say("registered", ["framework_id": id.value, "master": master.pid ?? "?"])
            case .reregistered(let id, let master):
                say("reregistered", ["framework_id": id.value, "master": master.pid ?? "?"])
                await driver.reconcile()
            case .disconnected: say("disconnected")
            case .offers(let offers):
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
                    say("status", fields)
                }
                states[status.taskID.value] = status.state
                let running = states.values.filter { $0 == .running }.count
                if running == tasks && !allRunning { say("all_running", ["count": "\(running)"]) }
                allRunning = running == tasks
            case .agentLost(let id): say("agent_lost", ["agent_id": id.value])
            case .refused(let kind, let reason): say("refused", ["kind": kind, "reason": reason])
            case .error(let message):
                say("error", ["message": message])
                throw ExitCode(1)
            }
        }
        withExtendedLifetime(signals) {}
    }
}

/// One stdout line per event: `<time> event=<key> k=v ...` (values quoted when they need it).
func say(_ event: String, _ fields: [String: String] = [:]) {
    var line = "\(ISO8601DateFormatter().string(from: Date())) event=\(event)"
    for (k, v) in fields.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(MilestoneLogHandler.quoted(v))" }
    print(line)
    fflush(nil)
}
