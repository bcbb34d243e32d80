import Foundation
import Logging
import MesosDaemon
import MesosExecutor

// Mesos's command executor: started by mesos-agent, configured through the environment
// (MESOS_SLAVE_PID, MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, MESOS_DIRECTORY, ...).
let options: ExecutorOptions
do {
    options = try ExecutorOptions(environment: ProcessInfo.processInfo.environment)
    try DaemonLogging.bootstrap(level: ProcessInfo.processInfo.environment["MESOS_LOG_LEVEL"] ?? "info")
} catch {
    FileHandle.standardError.write(Data("mesos-executor: \(error)\n".utf8))
    exit(64)
}
let daemon = ExecutorDaemon(options: options, logger: Logger(label: "mesos-executor"))
let signals = TerminationSignals { _ in Task { await daemon.terminate() } }
let code: Int32
do {
    code = try await daemon.run()
} catch {
    FileHandle.standardError.write(Data("mesos-executor: \(error)\n".utf8))
    exit(1)
}
withExtendedLifetime(signals) {}
exit(code)
