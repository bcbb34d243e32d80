import ArgumentParser
import Foundation
import Logging
import MesosAgent
import MesosBus
import MesosCore
import MesosDaemon
import MesosWire

public struct AgentCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mesos-agent",
        abstract: "A Mesos agent (also installed as mesos-slave): detects the leading master, registers, runs tasks as child processes.",
        discussion: "Durations take Mesos units: ns, us, ms, secs, mins, hrs, days, weeks (e.g. 15secs).")

    @Option(help: "The master: zk://[user:pass@]host:port[,host:port...]/path, file:///path, or host:port.") var master: String
    @OptionGroup var network: AddressFlags
    @Option(name: .customLong("work_dir"), help: "Directory for the agent's id, the newest epoch seen and task sandboxes.") var workDir: String
    @Option(help: "Resources offered, e.g. 'cpus:4;mem:2048;disk:10000'.") var resources = "cpus:2;mem:1024"
    @Option(name: .customLong("zk_session_timeout"), help: "ZooKeeper session timeout; cut from ZooKeeper this long, the agent is master-less.") var zkSessionTimeout = "10secs"
    @Option(name: .customLong("registration_backoff_factor"), help: "First (re)registration waits a random time up to this; each retry doubles it (max 1mins).") var registrationBackoffFactor = "1secs"
    @Option(name: .customLong("status_update_retry_interval"), help: "An unacknowledged status update is sent again after this, doubling up to 10mins.") var statusUpdateRetryInterval = "10secs"
    @Option(name: .customLong("master_ping_timeout"), help: "No ping from the leader for this long: re-register.") var masterPingTimeout = "75secs"
    @Option(name: .customLong("executor_shutdown_grace_period"), help: "A shut-down executor gets this long to end its task before it is killed.") var executorShutdownGracePeriod = "5secs"
    @Option(name: .customLong("task_kill_grace_period"), help: "Time between SIGTERM and SIGKILL when an executor kills its task (Mesos's command executor: 3secs).") var taskKillGracePeriod = "3secs"
    @Option(help: "What to do with the checkpointed executors at start: reconnect (carry on with them) or cleanup (kill them and exit).") var recover = "reconnect"
    @Option(name: .customLong("recovery_timeout"), help: "How long checkpointed executors wait for a stopped agent to come back before they kill their tasks.") var recoveryTimeout = "15mins"
    @Option(name: .customLong("executor_registration_timeout"), help: "A launched executor that has not registered by then is killed and its task fails.") var executorRegistrationTimeout = "1mins"
    @Option(name: .customLong("executor_reregistration_timeout"), help: "After a restart, how long checkpointed executors have to re-register before they are killed (at most 15secs).")
    var executorReregistrationTimeout = "2secs"
    @Option(help: "A checkpoint file that cannot be parsed stops the agent (true) or is skipped and reported (false).") var strict = true
    @Option(name: .customLong("reconfiguration_policy"), help: "Which changes of hostname, port and resources since the checkpoint a restarted agent may make and keep its id and executors: equal (none) or additive (resources may be added or grow).")
    var reconfigurationPolicy = "equal"
    @Option(name: .customLong("launcher_dir"), help: "Directory holding mesos-executor (default: this program's directory).") var launcherDir: String?
    @Option(name: .customLong("max_frame_size"), help: "Largest message frame accepted or sent, in bytes.") var maxFrameSize = 16 * 1024 * 1024
    @Option(name: .customLong("link_write_timeout"), help: "A link to a peer that takes nothing for this long (it stopped reading) is closed and its queued messages dropped.")
    var linkWriteTimeout = "30secs"
    @Option(name: .customLong("connect_from_listening_port"), help: "true: connect to masters from the agent's own port (SO_REUSEPORT), so a master with --return_routes writes over that connection at once; another process of the agent's user can then share the port. false: from ephemeral ports (the master proves the connection by a nonce).")
    var connectFromListeningPort = true
    @Option(help: "File with this agent's principal and secret (JSON {\"principal\":..,\"secret\":..} or one line 'principal secret').") var credential: String?
    @Option(name: .customLong("log_level"), help: "trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    public init() {}

    public func run() async throws {
        try DaemonLogging.bootstrap(level: logLevel)
        var options = AgentOptions(master: master, workDir: workDir)
        guard let parsed = Resources(parsing: resources), !parsed.isEmpty else {
            throw ValidationError("--resources must look like 'cpus:2;mem:1024'; got '\(resources)'")
        }
        options.resources = parsed
        options.address = try network.address(defaultPort: 5051)
        options.core.ephemeralPort = options.address.port == 0 && options.address.advertisePort == nil
        options.sessionTimeout = try duration(zkSessionTimeout, flag: "zk_session_timeout")
        options.core.registrationBackoffFactor = try duration(registrationBackoffFactor, flag: "registration_backoff_factor")
        options.core.statusUpdateRetryInterval = try duration(statusUpdateRetryInterval, flag: "status_update_retry_interval")
        options.core.masterPingTimeout = try duration(masterPingTimeout, flag: "master_ping_timeout")
        options.core.executorShutdownGracePeriod = try duration(executorShutdownGracePeriod, flag: "executor_shutdown_grace_period")
        options.taskKillGracePeriod = try duration(taskKillGracePeriod, flag: "task_kill_grace_period")
        guard let mode = AgentSettings.RecoverMode(rawValue: recover) else { throw ValidationError("--recover must be reconnect or cleanup; got '\(recover)'") }
        options.core.recover = mode
        guard let policy = ReconfigurationPolicy(rawValue: reconfigurationPolicy) else {
            throw ValidationError("Unknown option for 'reconfiguration_policy' flag \(reconfigurationPolicy): use equal or additive")
        }
        options.core.reconfigurationPolicy = policy
        options.recoveryTimeout = try duration(recoveryTimeout, flag: "recovery_timeout")
        options.core.executorRegistrationTimeout = try duration(executorRegistrationTimeout, flag: "executor_registration_timeout")
        options.core.executorReregistrationTimeout = try duration(executorReregistrationTimeout, flag: "executor_reregistration_timeout")
        guard options.core.executorReregistrationTimeout <= .seconds(15) else { throw ValidationError("--executor_reregistration_timeout must be at most 15secs (Mesos's limit); got \(executorReregistrationTimeout)") }
        options.strict = strict
        options.launcherDir = launcherDir
        options.maxFrameSize = maxFrameSize
        options.linkWriteTimeout = try duration(linkWriteTimeout, flag: "link_write_timeout")
        options.connectFromListeningPort = connectFromListeningPort
        if let credential {
            do {
                let loaded = try CredentialsFile.load(credential)
                guard loaded.count == 1 else { throw ValidationError("--credential must hold exactly one credential") }
                options.credential = loaded[0]
            } catch let error as CredentialsFile.Invalid { throw ValidationError("--credential: \(error)") }
        }
        do { options.tls = try TLSContext.fromEnvironment() } catch { throw ValidationError("\(error)") }
        // Without downgrade, master messages count only from connections proven as a master.
        // With a credential too: the master proves the same secret on its connections (mutual HMAC).
        if let tls = options.tls, !tls.settings.supportDowngrade { options.core.requireMasterIdentity = true }
        if options.credential != nil { options.core.requireMasterIdentity = true }
        TLSReloadOnHangup.install(options.tls, logger: Logger(label: "mesos-agent"))
        let daemon = AgentDaemon(options: options, logger: Logger(label: "mesos-agent"))
        // SIGTERM/SIGINT: stop, checkpointed executors keep running; SIGUSR1: shut down for good.
        try await runDaemon({ try await daemon.run() }, signals: [SIGTERM, SIGINT, SIGUSR1]) { signo in await daemon.stop(forGood: signo == SIGUSR1) }
    }
}
