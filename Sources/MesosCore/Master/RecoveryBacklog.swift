import MesosWire

/// Registrations that reach a master while it recovers the registry, answered once it leads.
///
/// Mesos drops every message while recovering ("not recovered yet", with a TODO to re-enqueue
/// them) and lets senders retry on their backoff. After a failover that window is when every
/// agent and scheduler re-registers at once, so with dropping most of them wait out one or two
/// doubled backoffs (seconds) before they try again. Kept here instead: the latest valid
/// (re-)registration of each sender, in order of first arrival, bounded by `limit` bytes of their
/// frames on the wire, so a flood of forged senders or huge messages is dropped as before, never
/// held without bound.
struct RecoveryBacklog: Sendable {
    private struct Key: Hashable {
        var from: String
        var kind: String
    }

    private var held: [(inbound: Inbound, bytes: Int)] = []
    private var index: [Key: Int] = [:]
    /// Frame bytes of everything held.
    private var bytes = 0

    /// Whether `inbound` is held (replacing the same sender's earlier message of its kind); false
    /// for messages it never holds (not a registration, or invalid) and when full.
    mutating func hold(_ inbound: Inbound, limit: Int) -> Bool {
        guard let payload = inbound.envelope.payload, Self.holds(payload), (try? MessageValidation.validate(payload)) != nil,
            let size = try? FrameEncoder().prepare(inbound.envelope)
        else { return false }
        let key = Key(from: inbound.envelope.from, kind: payload.kind)
        if let i = index[key] {
            guard bytes - held[i].bytes + size <= limit else { return false }
            bytes += size - held[i].bytes
            held[i] = (inbound, size)
            return true
        }
        guard bytes + size <= limit else { return false }
        bytes += size
        index[key] = held.count
        held.append((inbound, size))
        return true
    }

    /// Everything held, in order of first arrival; the backlog is empty after.
    mutating func drain() -> [Inbound] {
        defer { self = RecoveryBacklog() }
        return held.map(\.inbound)
    }

    private static func holds(_ payload: Envelope.Payload) -> Bool {
        switch payload {
        case .registerAgent, .reregisterAgent, .registerFramework, .reregisterFramework: true
        default: false
        }
    }
}
