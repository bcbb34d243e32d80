/// A daemon's milestone, parsed back from one log line: what tests match (`event=` keys and their
/// fields), never the sentence for people after ` | `.
///
///     2026-12-01T20:21:07.123Z info mesos-master: event=leading agents_expected=0 epoch=5 pid=master@... | leading at ...
///     2026-12-01T20:21:07Z event=all_running count=4                    (example-framework's stdout)
public struct Milestone: Sendable, Hashable, CustomStringConvertible {
    public let event: String
    public let fields: [String: String]
    public let line: String

    /// Nil for lines without `event=`.
    public init?(_ line: String) {
        guard let start = line.range(of: " event=") ?? (line.hasPrefix("event=") ? line.range(of: "event=") : nil) else { return nil }
        var rest = line[start.lowerBound...].drop { $0 == " " }
        var fields: [String: String] = [:]
        while !rest.isEmpty, !rest.hasPrefix("| ") && rest != "|" {
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = String(rest[..<eq])
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                while let c = rest.first, c != "\"" {
                    if c == "\\", let next = rest.dropFirst().first {
                        value.append(next == "n" ? "\n" : next)
                        rest = rest.dropFirst(2)
                    } else {
                        value.append(c)
                        rest = rest.dropFirst()
                    }
                }
                rest = rest.dropFirst()
            } else {
                value = String(rest.prefix { $0 != " " })
                rest = rest.dropFirst(value.count)
            }
            fields[key] = value
            rest = rest.drop { $0 == " " }
        }
        guard let event = fields.removeValue(forKey: "event") else { return nil }
        self.event = event
        self.fields = fields
        self.line = line
    }

    public subscript(_ key: String) -> String? { fields[key] }

    /// Whether this is `event` with every one of `matching`'s fields.
    public func matches(_ event: String, _ matching: [String: String] = [:]) -> Bool {
        self.event == event && matching.allSatisfy { fields[$0.key] == $0.value }
    }

    public var description: String { line }
}

extension Daemon {
    /// Every milestone the daemon logged so far, in order.
    public var milestones: [Milestone] { lines.compactMap(Milestone.init) }

    public func milestones(_ event: String, _ matching: [String: String] = [:]) -> [Milestone] {
        milestones.filter { $0.matches(event, matching) }
    }

    /// Waits until the daemon logs `event` with `matching`'s fields; returns the first such milestone.
    @discardableResult
    public func waitFor(_ event: String, _ matching: [String: String] = [:], timeout: Duration = .seconds(10)) async throws -> Milestone {
        var found: Milestone?
        let what = ([event] + matching.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: " ")
        try await Poll.until("event=\(what) in \(name)'s log", timeout: timeout) {
            found = milestones(event, matching).first
            return found != nil
        }
        return found!
    }

    /// Waits until the daemon has logged `event` (with `matching`) more than `count` times; returns the newest.
    @discardableResult
    public func waitFor(_ event: String, _ matching: [String: String] = [:], moreThan count: Int, timeout: Duration = .seconds(10)) async throws -> Milestone {
        var found: Milestone?
        try await Poll.until("more than \(count) event=\(event) in \(name)'s log", timeout: timeout) {
            let all = milestones(event, matching)
            found = all.last
            return all.count > count
        }
        return found!
    }
}
