// Many agents in one process, for benchmarks: K `AgentDaemon`s, each with its own bus port, TCP
// connection to the master and work directory, as K real agents would have; they share one leader
// detector (one ZooKeeper session and group watch, `DetectorPool`, as Mesos shares one per process
// among its schedulers) unless `--shared_detector=false` gives each its own session. Prints one line per agent event on stdout with a millisecond wall-clock timestamp:
//
//     <epoch_ms> agent=<i> <event> [key=value ...]
//
// events: started, leader epoch=N pid=P, masterless, registered epoch=N id=ID,
// reregistered epoch=N id=ID, task_started task=T pid=P, task_exited task=T status=S,
// dropped reason=R, shutdown, exited code=C; warnings and errors as `log level=L msg=...`.
// SIGTERM/SIGINT terminate every agent (killing its tasks) and exit.
import ArgumentParser
import Foundation
import Logging
import MesosAgent
import MesosDaemon
import MesosHA
import MesosWire
import Synchronization

@main
struct AgentSwarm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent-swarm",
        abstract: "Runs K Mesos agents in one process (each with its own ZooKeeper session, port and work directory) and prints their events with millisecond timestamps.")

    @Option(help: "The master: zk://host:port[,host:port...]/path, file:///path or host:port.") var master: String
    @Option(help: "How many agents to run.") var agents = 10
    @Option(name: .customLong("first_index"), help: "Index of the first agent (agent=<i> in the output, agent<i> work directory).") var firstIndex = 0
    @Option(name: .customLong("work_dir"), help: "Each agent works in <work_dir>/agent<i>.") var workDir: String
    @Option(help: "Resources each agent offers.") var resources = "cpus:2;mem:1024"
    @Option(name: .customLong("zk_session_timeout")) var zkSessionTimeout = "10secs"
    @Option(name: .customLong("registration_backoff_factor")) var registrationBackoffFactor = "1secs"
    @Option(name: .customLong("status_update_retry_interval")) var statusUpdateRetryInterval = "10secs"
    @Option(name: .customLong("start_interval"), help: "Pause between starting two agents (spreads the ZooKeeper connects).") var startInterval = "5ms"
    @Option(name: .customLong("shared_detector"), help: "One leader detector (ZooKeeper session) for all agents of the process (false: one per agent).") var sharedDetector = true
    @Option(name: .customLong("tick_interval"), help: "How often each agent's timers are looked at (registrations due in between get a tick of their own).") var tickInterval = "500ms"
    @Option(name: .customLong("checkpoint_fsync"), help: "fsync every checkpoint write (the agents share one disk and one process: their fsyncs, which real agents make each on its own host, would queue up here).") var checkpointFsync = false
    @Option(name: .customLong("log_level"), help: "Agent log messages at this level or above are printed as `log` events (events are printed anyway).") var logLevel = "warning"

    func run() async throws {
        guard let resources = Resources(parsing: resources), !resources.isEmpty else { throw ValidationError("bad --resources") }
        guard let threshold = Logger.Level(rawValue: logLevel.lowercased()) else { throw ValidationError("bad --log_level") }
        func duration(_ text: String, _ flag: String) throws -> Duration { try MesosDuration.flag(text, name: flag) }
        let sessionTimeout = try duration(zkSessionTimeout, "zk_session_timeout")
        let backoff = try duration(registrationBackoffFactor, "registration_backoff_factor")
        let retry = try duration(statusUpdateRetryInterval, "status_update_retry_interval")
        let pause = try duration(startInterval, "start_interval")
        let tick = try duration(tickInterval, "tick_interval")
        let out = EventPrinter()

        var daemons: [AgentDaemon] = []
        for i in firstIndex..<(firstIndex + agents) {
            var options = AgentOptions(master: master, workDir: "\(workDir)/agent\(i)")
            options.address.port = 0
            options.resources = resources
            options.sessionTimeout = sessionTimeout
            options.address.hostname = "swarm-agent-\(i)"
            options.core.registrationBackoffFactor = backoff
            options.core.statusUpdateRetryInterval = retry
            if sharedDetector { options.detectorPool = .shared }
            options.tickInterval = tick
            options.durableCheckpoints = checkpointFsync
            daemons.append(AgentDaemon(options: options, logger: Logger(label: "agent\(i)") { _ in SwarmLogHandler(index: i, threshold: threshold, out: out) }))
        }
        let all = daemons
        let signals = TerminationSignals { _ in
            Task {
                await withTaskGroup(of: Void.self) { group in
                    for d in all { group.addTask { await d.stop(forGood: false) } }
                }
                out.emit(-1, "exited code=0")
                Foundation.exit(0)
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for (offset, daemon) in daemons.enumerated() {
                let i = firstIndex + offset
                group.addTask {
                    out.emit(i, "started")
                    do {
                        let code = try await daemon.run()
                        out.emit(i, "exited code=\(code)")
                    } catch {
                        out.emit(i, "exited code=1 error=\(String(describing: error).replacingOccurrences(of: " ", with: "_"))")
                    }
                }
                if pause > .zero { try? await Task.sleep(for: pause) }
            }
        }
        withExtendedLifetime(signals) {}
    }
}

/// Milliseconds since the epoch (CLOCK_REALTIME): comparable across the processes of one machine.
func epochMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// One line per event on stdout, whole lines only, flushed at once.
final class EventPrinter: Sendable {
    private let lock = Mutex(())

    func emit(_ agent: Int, _ text: String) {
        let line = "\(epochMilliseconds()) agent=\(agent) \(text)\n"
        let bytes = Array(line.utf8)
        lock.withLock { _ in
            var sent = 0
            while sent < bytes.count {
                let n = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress! + sent, $0.count - sent) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                sent += n
            }
        }
    }
}

/// Turns an agent's milestones (`event=` keys and their fields) into swarm events.
struct SwarmLogHandler: LogHandler {
    let index: Int
    let threshold: Logger.Level
    let out: EventPrinter
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = event.metadata ?? [:]
        if let line = Self.event(fields) {
            out.emit(index, line)
        } else if event.level >= threshold {
            out.emit(index, "log level=\(event.level) msg=\(event.message.description.replacingOccurrences(of: "\n", with: " "))")
        }
    }

    static func event(_ m: Logger.Metadata) -> String? {
        func f(_ key: String) -> String { m[key].map { "\($0)" } ?? "?" }
        switch m["event"].map({ "\($0)" }) {
        case "registered": return "registered epoch=\(f("epoch")) master=\(f("master")) id=\(f("agent_id"))"
        case "reregistered": return "reregistered epoch=\(f("epoch")) master=\(f("master")) id=\(f("agent_id"))"
        case "leader_detected":
            return "leader epoch=\(f("epoch")) master=\(f("master"))"
        case "masterless": return "masterless"
        case "task_started": return "task_started task=\(f("task_id")) pid=\(f("task_pid"))"
        case "task_exited": return "task_exited task=\(f("task_id")) status=\(f("status"))"
        case "message_dropped": return "dropped reason=\(f("reason")) epoch=\(f("epoch"))"
        case "exit": return "shutdown reason=\(f("reason"))"
        default: return nil
        }
    }
}
