import Foundation
import ArgumentParser
import MesosDaemon

/// Parses a duration flag with a clear error naming the flag.
func duration(_ text: String, flag: String) throws -> Duration {
    do { return try MesosDuration.flag(text, name: flag) } catch { throw ValidationError(error.description) }
}

/// Runs `body` until it returns an exit code, with SIGTERM/SIGINT routed to `terminate`.
func runDaemon(_ body: @escaping @Sendable () async throws -> Int32, terminate: @escaping @Sendable () async -> Void) async throws -> Never {
    let signals = TerminationSignals { _ in Task { await terminate() } }
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
