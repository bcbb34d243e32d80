import Foundation
import Logging

public enum DaemonLogging {
    /// Logs to stderr, one line per event, at `level` (trace, debug, info, notice, warning, error, critical).
    public static func bootstrap(level: String) throws {
        guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
            throw DaemonError("--log_level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")); got '\(level)'")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = parsed
            return handler
        }
    }
}

public struct DaemonError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs `handler` on every SIGTERM or SIGINT (instead of the default: dying on the spot).
public final class TerminationSignals: @unchecked Sendable {  // immutable after init
    private let sources: [any DispatchSourceSignal]

    public init(_ handler: @escaping @Sendable (Int32) -> Void) {
        let queue = DispatchQueue(label: "signals")
        sources = [SIGTERM, SIGINT].map { signo in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
            source.setEventHandler { handler(signo) }
            source.resume()
            return source
        }
    }
}
