import Foundation
import MesosCore
import MesosWire

/// Durations as Mesos flags spell them: `15secs`, `10mins`, `500ms`, `1hrs`, `2days`, `1weeks`,
/// `250us`, `100ns`; a plain number means seconds. Fractions are allowed (`0.5secs`).
public struct MesosDuration: Sendable, Hashable, CustomStringConvertible {
    public let duration: Duration

    public init(_ duration: Duration) { self.duration = duration }

    public init?(parsing text: String) {
        let units: [(String, Double)] = [
            ("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("secs", 1), ("mins", 60), ("hrs", 3600), ("days", 86_400), ("weeks", 604_800),
        ]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var number = Substring(trimmed), scale = 1.0
        // Longest suffix first: "10mins" also ends in "ns".
        for (suffix, s) in units.sorted(by: { $0.0.count > $1.0.count }) where trimmed.hasSuffix(suffix) {
            number = trimmed.dropLast(suffix.count)
            scale = s
            break
        }
        guard let value = Double(number), let d = Duration(validatingSeconds: value * scale) else { return nil }
        duration = d
    }

    public var seconds: Double { duration.inSeconds }

    public var description: String {
        let ms = seconds * 1000
        if ms < 1000 { return "\(Int(ms.rounded()))ms" }
        if seconds < 60 || seconds.truncatingRemainder(dividingBy: 60) != 0 { return "\(seconds.formatted())secs" }
        return "\(Int(seconds / 60))mins"
    }
}

extension Double {
    fileprivate func formatted() -> String {
        self == rounded() ? String(Int(self)) : String(self)
    }
}

extension MesosDuration {
    /// A positive duration flag, or an error naming the flag.
    public static func flag(_ text: String, name: String) throws(DaemonError) -> Duration {
        guard let d = MesosDuration(parsing: text), d.duration > .zero else {
            throw DaemonError("--\(name) must be a positive duration such as 500ms, 15secs or 10mins (at most 100 years); got '\(text)'")
        }
        return d.duration
    }
}

extension RemovalRateLimit {
    /// `N/DURATION` as Mesos's `--slave_removal_rate_limit` spells it: `1/20mins`, `1/2secs`.
    public init?(parsing text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let permits = Int(parts[0]), let d = MesosDuration(parsing: String(parts[1])) else { return nil }
        self.init(permits: permits, per: d.duration)
    }
}

/// A share as Mesos's `--recovery_slave_removal_limit` spells it: `100%`, `12.5%`; nil outside 0-100%.
public func parsePercentage(_ text: String) -> Double? {
    let t = text.trimmingCharacters(in: .whitespaces)
    guard t.hasSuffix("%"), let v = Double(t.dropLast()), v.isFinite, v >= 0, v <= 100 else { return nil }
    return v / 100
}
