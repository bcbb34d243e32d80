/// What the pure cores can log; their shells map it to swift-log.
public enum LogLevel: Sendable, Hashable { case debug, info, warning, error }
