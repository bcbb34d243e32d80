// An example framework: runs N shell tasks through the SchedulerDriver and keeps them running
// across master failovers. Prints one line per event so a human (or mesos-local) can follow.
import ArgumentParser
import Foundation
import Logging
import MesosBus
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
    @Option(help: "Framework name.") var name = "example-framework"
    @Option(name: .customLong("zk_session_timeout")) var zkSessionTimeout = "10secs"
    @Option(name: .customLong("log_level")) var logLevel = "warning"
    @Option(help: "File with the framework's principal and secret, for masters that authenticate frameworks.") var credential: String?
    @Option(help: "Port the scheduler listens on for the master (0: any free port).") var port = 0
    @Option(name: .customLong("advertise_port"), help: "Port the master should use to reach the scheduler (default: --port).") var advertisePort: Int?
    @Option(name: .customLong("registration_backoff_factor"), help: "(Re)registration waits a random time up to this after a leader change.") var registrationBackoffFactor = "2secs"

    func run() async throws {
        try DaemonLogging.bootstrap(level: logLevel)
        let timeout = try MesosDuration.flag(zkSessionTimeout, name: "zk_session_timeout")
        let loaded = try credential.map { try CredentialsFile.load($0) }
        let driver = SchedulerDriver(
            framework: FrameworkInfo(user: ProcessInfo.processInfo.environment["USER"] ?? "root", name: name, failoverTimeout: 3600),
            master: master, sessionTimeout: timeout,
            registrationBackoffFactor: try MesosDuration.flag(registrationBackoffFactor, name: "registration_backoff_factor"),
            credential: loaded?.first, logger: Logger(label: "example-framework"))
        let signals = TerminationSignals { _ in Task { await driver.stop(); Foundation.exit(0) } }
        try await driver.start(port: port, advertisePort: advertisePort)
        var launched = 0
        var states: [String: TaskState] = [:]
        func say(_ line: String) {
            print("\(ISO8601DateFormatter().string(from: Date())) \(line)")
            fflush(nil)
        }
        for await event in driver.events {
            switch event {
            case .registered(let id, let master): say("REGISTERED framework=\(id.value) master=\(master.pid ?? "?")")
            case .reregistered(let id, let master):
                say("REREGISTERED framework=\(id.value) master=\(master.pid ?? "?")")
                await driver.reconcile()
            case .disconnected: say("DISCONNECTED")
            case .offers(let offers):
                for offer in offers {
                    var available = Resources(offer.resources)
                    var batch: [TaskInfo] = []
                    let need = Resources([Resource(name: "cpus", scalar: taskCPUs), Resource(name: "mem", scalar: taskMem)])
                    while launched < tasks, available.contains(need) {
                        launched += 1
                        available.subtract(need)
                        batch.append(TaskInfo(name: "task-\(launched)", taskID: TaskID(value: "task-\(launched)"), agentID: offer.agentID, resources: need.list, command: CommandInfo(value: command)))
                    }
                    if batch.isEmpty {
                        await driver.decline(offers: [offer.id], filters: Filters(refuseSeconds: 5))
                    } else {
                        say("LAUNCH \(batch.map(\.taskID.value).joined(separator: ",")) on agent=\(offer.agentID.value)")
                        await driver.launch(offers: [offer.id], tasks: batch)
                    }
                }
            case .rescinded(let id): say("RESCINDED offer=\(id.value)")
            case .statusUpdate(let status):
                if states[status.taskID.value] != status.state || status.reason != .reconciliation {
                    say("STATUS task=\(status.taskID.value) state=\(status.state.protoName)\(status.reason.map { " reason=\($0)" } ?? "")")
                }
                let wasAllRunning = states.values.filter { $0 == .running }.count == tasks
                states[status.taskID.value] = status.state
                let running = states.values.filter { $0 == .running }.count
                if running == tasks && !wasAllRunning { say("ALL_RUNNING \(running)") }
            case .agentLost(let id): say("AGENT_LOST agent=\(id.value)")
            case .error(let message):
                say("ERROR \(message)")
                throw ExitCode(1)
            }
        }
        withExtendedLifetime(signals) {}
    }
}
