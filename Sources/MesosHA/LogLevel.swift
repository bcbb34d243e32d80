import Logging

/// What the pure cores can log; their shells map it to swift-log.
public enum LogLevel: Sendable, Hashable {
    case debug, info, warning, error

    public var loggerLevel: Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .warning: .warning
        case .error: .error
        }
    }
}
