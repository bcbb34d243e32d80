import Foundation
import Logging
import MesosBus
import MesosCore
import Synchronization

public enum DaemonLogging {
    /// Logs to stderr, one line per event, at `level` (trace, debug, info, notice, warning, error, critical).
    public static func bootstrap(level: String) throws {
        guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
            throw DaemonError("--log_level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")); got '\(level)'")
        }
        LoggingSystem.bootstrap { label in
            var handler = MilestoneLogHandler(label: label)
            handler.logLevel = parsed
            return handler
        }
    }
}

public struct DaemonError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Logger {
    /// Logs a core's milestone once: `event=<key>` and its fields as metadata, its sentence as the message.
    public func observe(_ milestone: some Milestone, _ extra: Logger.Metadata = [:]) {
        var metadata = extra
        metadata["event"] = .string(milestone.event)
        for field in milestone.fields { metadata[field.key] = .string(field.value) }
        log(level: milestone.level.loggerLevel, "\(milestone.message)", metadata: metadata)
    }

    /// A shell's own milestone (one that no core decides, e.g. `listening`, `task_started`).
    public func milestone(_ event: String, level: Logger.Level = .info, _ message: String, _ fields: Logger.Metadata = [:]) {
        var metadata = fields
        metadata["event"] = .string(event)
        log(level: level, "\(message)", metadata: metadata)
    }
}

extension ObservationLevel {
    public var loggerLevel: Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}

/// One line per log event on stderr:
///
///     2026-12-01T20:21:07.123Z info mesos-master: event=leading epoch=5 pid=master@127.0.0.1:5050 | leading at epoch 5 ...
///
/// `event` first, then the other metadata sorted by key; values with spaces, quotes or `|` are
/// quoted. What is left of ` | ` is for tools (`event=` keys and fields); the text after it is for people.
public struct MilestoneLogHandler: LogHandler {
    public let label: String
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        var line = "\(Self.timestamp()) \(event.level) \(label):"
        if let e = all.removeValue(forKey: "event") { line += " event=\(Self.quoted("\(e)"))" }
        for (key, value) in all.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(Self.quoted("\(value)"))" }
        line += " | \(event.message)\n"
        let bytes = Array(line.utf8)
        bytes.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = write(STDERR_FILENO, raw.baseAddress! + sent, raw.count - sent)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                sent += n
            }
        }
    }

    public static func quoted(_ value: String) -> String {
        guard value.isEmpty || needsQuotes(value) else { return value }
        return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n") + "\""
    }

    /// Whether a value must be quoted: a space, quote, bar, equals sign or line break. ASCII is
    /// looked at byte by byte (a new leader logs ~40,000 lines in a failover; the Character walk
    /// and `String(format:)` were a tenth of its CPU), anything else as Characters.
    static func needsQuotes(_ value: String) -> Bool {
        var ascii = true
        for byte in value.utf8 {
            switch byte {
            case 0x20, 0x22, 0x7C, 0x3D, 0x0A, 0x0B, 0x0C, 0x0D: return true
            case 0x80...: ascii = false
            default: continue
            }
        }
        return !ascii && value.contains(where: \.isNewline)
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return timestamp(seconds: Int(ts.tv_sec), milliseconds: Int(ts.tv_nsec / 1_000_000))
    }

    /// `2026-12-03T12:30:28.123Z` (UTC, milliseconds).
    static func timestamp(seconds: Int, milliseconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        var out: [UInt8] = []
        out.reserveCapacity(24)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: (v / divisor) % 10))
                v %= divisor
                divisor /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4); out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2); out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2); out.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2); out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2); out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2); out.append(UInt8(ascii: "."))
        digits(milliseconds, 3); out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }
}

/// Runs `handler` on every SIGTERM or SIGINT (instead of the default: dying on the spot).
public final class TerminationSignals: @unchecked Sendable {  // immutable after init
    private let sources: [any DispatchSourceSignal]

    public init(_ signals: [Int32] = [SIGTERM, SIGINT], _ handler: @escaping @Sendable (Int32) -> Void) {
        let queue = DispatchQueue(label: "signals")
        sources = signals.map { signo in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
            source.setEventHandler { handler(signo) }
            source.resume()
            return source
        }
    }
}

/// SIGHUP reloads a daemon's TLS certificate, key and CA files (`TLSContext.reload`): connections
/// made afterwards use them, established ones stay as they are. Logs `event=tls_reloaded`, or
/// `event=tls_reload_failed` (the files in use stay in use).
public enum TLSReloadOnHangup {
    private static let installed = Mutex<[TerminationSignals]>([])

    public static func install(_ tls: TLSContext?, logger: Logger) {
        guard let tls else { return }
        let signals = TerminationSignals([SIGHUP]) { _ in
            do {
                try tls.reload()
                logger.milestone("tls_reloaded", "SIGHUP: reloaded \(tls.settings.certFile)", ["cert_file": "\(tls.settings.certFile)"])
            } catch {
                logger.milestone("tls_reload_failed", level: .error, "SIGHUP: \(error); the certificate in use stays", ["cert_file": "\(tls.settings.certFile)"])
            }
        }
        installed.withLock { $0.append(signals) }
    }
}
