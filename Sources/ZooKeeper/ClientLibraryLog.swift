import CZooKeeper
import Logging
import Synchronization

/// The C client's own log (socket errors, reconnect attempts). Its level and its callback carry no
/// per-handle context, so it is process-wide: WARN and above, into one swift-log `Logger`.
public enum ZooKeeperClientLibrary {
    /// Where the C client's WARN/ERROR lines go (default: a logger labelled `zookeeper.client`).
    /// Connection-refused errors are normal while a server is down, so tests usually pass a quiet logger.
    public static func routeLog(to logger: Logger) {
        clientLibraryLogger.withLock { $0 = logger }
    }
}

private let clientLibraryLogger = Mutex(Logger(label: "zookeeper.client"))

/// Evaluated once, before the first handle is created.
let clientLibraryConfigured: Void = zoo_set_debug_level(ZOO_LOG_LEVEL_WARN)

/// `log_callback_fn` for `zookeeper_init2`. Lines look like
/// `2026-11-25 07:30:00,123:4242(0x7f00):ZOO_ERROR@handle_socket_error_msg@1290: Socket [...] ...`.
func clientLibraryLogged(_ message: UnsafePointer<CChar>?) {
    guard let message else { return }
    var line = String(cString: message)
    while line.last?.isNewline == true { line.removeLast() }
    let levels: [(marker: String, level: Logger.Level)] = [
        ("ZOO_ERROR@", .error), ("ZOO_WARN@", .warning), ("ZOO_INFO@", .info), ("ZOO_DEBUG@", .debug),
    ]
    var level = Logger.Level.warning
    for candidate in levels {
        if let range = line.firstRange(of: candidate.marker) {
            level = candidate.level
            line = String(line[range.upperBound...])
            break
        }
    }
    let logger = clientLibraryLogger.withLock { $0 }
    logger.log(level: level, "\(line)")
}
