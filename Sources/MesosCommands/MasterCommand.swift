import ArgumentParser
import Foundation
import Logging
import MesosDaemon
import MesosBus
import MesosCore
import MesosMaster
import ZooKeeper

public struct MasterCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mesos-master",
        abstract: "A Mesos master. With --zk, several masters elect one leader through ZooKeeper; the others stand by.",
        discussion: "Durations take Mesos units: ns, us, ms, secs, mins, hrs, days, weeks (e.g. 15secs).")

    @Option(help: "ZooKeeper URL for leader election and the registry: zk://[user:pass@]host:port[,host:port...]/path or file:///path. Absent: a standalone master (epoch 1, registry in --work_dir).")
    var zk: String?
    @OptionGroup var network: AddressFlags
    @Option(name: .customLong("work_dir"), help: "Directory for this master's state (highest epoch led; the registry when standalone).") var workDir: String
    @Option(name: .customLong("zk_session_timeout"), help: "ZooKeeper session timeout; a master cut from ZooKeeper this long exits.") var zkSessionTimeout = "10secs"
    @Option(name: [.customLong("agent_ping_timeout"), .customLong("slave_ping_timeout")], help: "Time between health-check pings to an agent.") var agentPingTimeout = "15secs"
    @Option(name: [.customLong("max_agent_ping_timeouts"), .customLong("max_slave_ping_timeouts")], help: "Unanswered pings after which an agent is removed and its tasks are LOST.") var maxAgentPingTimeouts = 5
    @Option(name: .customLong("allocation_interval"), help: "Time between resource offer rounds.") var allocationInterval = "1secs"
    @Option(name: [.customLong("agent_reregister_timeout"), .customLong("slave_reregister_timeout")], help: "After a failover, agents not re-registered by then are removed.") var agentReregisterTimeout = "10mins"
    @Option(name: [.customLong("agent_removal_rate_limit"), .customLong("slave_removal_rate_limit")], help: "N/DURATION (e.g. 1/20mins): at most N removals of agents per DURATION, evenly spaced: those that missed their health checks, and after a failover those that did not re-register in time. Unset: no limit.")
    var agentRemovalRateLimit: String?
    @Option(name: [.customLong("recovery_agent_removal_limit"), .customLong("recovery_slave_removal_limit")], help: "After a failover, if more than this share of the registered agents did not re-register within --agent_reregister_timeout, the master exits instead of removing them.")
    var recoveryAgentRemovalLimit = "100%"
    @Option(name: .customLong("registry_gc_interval"), help: "How often removed agents are pruned from the registry.") var registryGCInterval = "15mins"
    @Option(name: [.customLong("registry_max_agent_age"), .customLong("registry_max_slave_age")], help: "Removed agents older than this are pruned from the registry.") var registryMaxAgentAge = "2weeks"
    @Option(name: [.customLong("registry_max_agent_count"), .customLong("registry_max_slave_count")], help: "Removed agents kept in the registry at most (the oldest are pruned first).") var registryMaxAgentCount = 102_400
    @Option(help: "Accepted for Mesos compatibility; the registry lives in ZooKeeper, so no replicated-log quorum is needed.") var quorum: Int?
    @Option(name: .customLong("max_frame_size"), help: "Largest message frame accepted or sent, in bytes.") var maxFrameSize = 16 * 1024 * 1024
    @Option(name: .customLong("link_write_timeout"), help: "A link to a peer that takes nothing for this long (it stopped reading) is closed and its queued messages dropped.")
    var linkWriteTimeout = "30secs"
    @Option(name: .customLong("return_routes"), help: "true: send to agents and schedulers over the connections they opened to the master, once they prove the connection is theirs (one socket per peer instead of two: 10,000 agents fit in 20,000 file descriptors; master-to-agent traffic then shares the agent's connection and its fate). false: open a connection of its own to each, as Mesos does.")
    var returnRoutes = false
    @Option(help: "File of principals and secrets (JSON {\"credentials\":[{\"principal\":..,\"secret\":..}]} or lines 'principal secret').") var credentials: String?
    @Flag(name: .customLong("authenticate_agents"), help: "Agents must authenticate with --credentials (all peers do: authentication is per connection).") var authenticateAgents = false
    @Flag(name: .customLong("authenticate_frameworks"), help: "Frameworks must authenticate with --credentials (all peers do: authentication is per connection).") var authenticateFrameworks = false
    @Flag(name: .customLong("authenticate_http_readwrite"), help: "HTTP endpoints that change state (POST /master/teardown) need HTTP Basic credentials from --http_credentials (or --credentials).")
    var authenticateHTTPReadwrite = false
    @Option(name: .customLong("http_credentials"), help: "File of principals and secrets for HTTP Basic authentication (the --credentials format); default: --credentials.")
    var httpCredentials: String?
    @Option(name: .customLong("log_level"), help: "trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    public init() {}

    public func run() async throws {
        try DaemonLogging.bootstrap(level: logLevel)
        var options = MasterOptions(workDir: workDir)
        if let zk {
            do { options.zk = try ZooKeeperURL(parsing: zk) } catch { throw ValidationError("--zk: \(error)") }
        }
        options.address = try network.address(defaultPort: 5050)
        options.sessionTimeout = try duration(zkSessionTimeout, flag: "zk_session_timeout")
        options.core.agentPingTimeout = try duration(agentPingTimeout, flag: "agent_ping_timeout")
        guard maxAgentPingTimeouts >= 1 else { throw ValidationError("--max_agent_ping_timeouts must be at least 1") }
        options.core.maxAgentPingTimeouts = maxAgentPingTimeouts
        options.core.allocationInterval = try duration(allocationInterval, flag: "allocation_interval")
        options.core.agentReregisterTimeout = try duration(agentReregisterTimeout, flag: "agent_reregister_timeout")
        if let agentRemovalRateLimit {
            guard let limit = RemovalRateLimit(parsing: agentRemovalRateLimit) else {
                throw ValidationError("--agent_removal_rate_limit must be N/DURATION with N >= 1, such as 1/20mins; got '\(agentRemovalRateLimit)'")
            }
            options.core.agentRemovalRateLimit = limit
        }
        guard let recoveryLimit = parsePercentage(recoveryAgentRemovalLimit) else {
            throw ValidationError("--recovery_agent_removal_limit must be a percentage from 0% to 100%; got '\(recoveryAgentRemovalLimit)'")
        }
        options.core.recoveryAgentRemovalLimit = recoveryLimit
        options.core.registryGCInterval = try duration(registryGCInterval, flag: "registry_gc_interval")
        options.core.registryMaxAgentAge = try duration(registryMaxAgentAge, flag: "registry_max_agent_age")
        guard registryMaxAgentCount >= 0 else { throw ValidationError("--registry_max_agent_count must not be negative") }
        options.core.registryMaxAgentCount = registryMaxAgentCount
        guard maxFrameSize >= 1024 else { throw ValidationError("--max_frame_size must be at least 1024") }
        options.maxFrameSize = maxFrameSize
        options.linkWriteTimeout = try duration(linkWriteTimeout, flag: "link_write_timeout")
        options.returnRoutes = returnRoutes
        if authenticateAgents || authenticateFrameworks {
            guard let credentials else { throw ValidationError("--authenticate_agents/--authenticate_frameworks need --credentials") }
            do { options.requiredCredentials = try CredentialsFile.load(credentials) } catch { throw ValidationError("--credentials: \(error)") }
        }
        if authenticateHTTPReadwrite {
            guard let file = httpCredentials ?? credentials else { throw ValidationError("--authenticate_http_readwrite needs --http_credentials or --credentials") }
            do { options.httpReadwriteCredentials = try CredentialsFile.load(file) } catch { throw ValidationError("--http_credentials: \(error)") }
        }
        do { options.tls = try TLSContext.fromEnvironment() } catch { throw ValidationError("\(error)") }
        // Without downgrade, agents' and schedulers' messages count only from connections proven in that role.
        if let tls = options.tls, !tls.settings.supportDowngrade { options.core.requirePeerRoles = true }
        TLSReloadOnHangup.install(options.tls, logger: Logger(label: "mesos-master"))
        let daemon = MasterDaemon(options: options, logger: Logger(label: "mesos-master"))
        try await runDaemon({ try await daemon.run() }, terminate: { await daemon.terminate() })
    }
}
