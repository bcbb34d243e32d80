import Foundation
import ArgumentParser
import MesosDaemon

/// Parses a duration flag with a clear error naming the flag.
func duration(_ text: String, flag: String) throws -> Duration {
    do { return try MesosDuration.flag(text, name: flag) } catch { throw ValidationError(error.description) }
}

/// Runs `body` until it returns an exit code, with SIGTERM/SIGINT routed to `terminate`.
func runDaemon(_ body: @escaping @Sendable () async throws -> Int32, terminate: @escaping @Sendable () async -> Void) async throws -> Never {
    try await runDaemon(body, signals: [SIGTERM, SIGINT]) { _ in await terminate() }
}

/// Runs `body` until it returns an exit code, with each of `signals` routed to `handler`.
func runDaemon(_ body: @escaping @Sendable () async throws -> Int32, signals list: [Int32], _ handler: @escaping @Sendable (Int32) async -> Void) async throws -> Never {
    let signals = TerminationSignals(list) { signo in Task { await handler(signo) } }
    let code = try await body()
    withExtendedLifetime(signals) {}
    exit(code)
}


/// Entry point for the daemons' thin executables (one command type serves mesos-agent and
/// mesos-slave): parses the command line and runs the async command.
public func runCommand<C: AsyncParsableCommand>(_: C.Type) async -> Never {
    do {
        var command = try C.parseAsRoot()
        if var asyncCommand = command as? any AsyncParsableCommand {
            try await asyncCommand.run()
        } else {
            try command.run()
        }
        exit(0)
    } catch {
        C.exit(withError: error)
    }
}

/// `--ip`, `--port`, `--advertise_ip`, `--advertise_port`, `--hostname`, as every Mesos daemon takes them.
struct AddressFlags: ParsableArguments {
    @Option(help: "IP address to listen on.") var ip = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port; default 5050 for masters, 5051 for agents).") var port: Int?
    @Option(name: .customLong("advertise_ip"), help: "IP address other processes use to reach this one (default: --ip).") var advertiseIP: String?
    @Option(name: .customLong("advertise_port"), help: "Port other processes use to reach this one (default: the bound port).") var advertisePort: Int?
    @Option(help: "Hostname published to the cluster (default: this host's name).") var hostname: String?

    func address(defaultPort: Int) throws -> DaemonAddress {
        var a = DaemonAddress(port: port ?? defaultPort)
        guard (0...65535).contains(a.port) else { throw ValidationError("--port must be 0...65535; got \(a.port)") }
        if let advertisePort, !(1...65535).contains(advertisePort) { throw ValidationError("--advertise_port must be 1...65535; got \(advertisePort)") }
        a.ip = ip
        a.advertiseIP = advertiseIP
        a.advertisePort = advertisePort
        a.hostname = hostname
        return a
    }
}
