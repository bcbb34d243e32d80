import MesosWire

/// Registrations that reach a master while it recovers the registry, answered once it leads.
///
/// Mesos drops every message while recovering ("not recovered yet", with a TODO to re-enqueue
/// them) and lets senders retry on their backoff. After a failover that window is when every
/// agent and scheduler re-registers at once, so with dropping most of them wait out one or two
/// doubled backoffs (seconds) before they try again. Kept here instead: the latest
/// (re-)registration of each sender, in order of first arrival, bounded by `limit` in weight
/// (one per message plus one per task and framework it carries, so a flood of forged senders
/// or huge messages is dropped as before, never held).
struct RecoveryBacklog: Sendable {
    private struct Key: Hashable {
        var from: String
        var kind: String
    }

    private var held: [Inbound] = []
    private var index: [Key: Int] = [:]
    private(set) var weight = 0

    var count: Int { held.count }

    /// Whether `inbound` is held (replacing the same sender's earlier message of its kind); false
    /// for messages it never holds and when full.
    mutating func hold(_ inbound: Inbound, limit: Int) -> Bool {
        guard let payload = inbound.envelope.payload, let w = Self.weight(payload) else { return false }
        let key = Key(from: inbound.envelope.from, kind: payload.kind)
        if let i = index[key] {
            let old = Self.weight(held[i].envelope.payload!)!
            guard weight - old + w <= limit else { return false }
            weight += w - old
            held[i] = inbound
            return true
        }
        guard weight + w <= limit else { return false }
        weight += w
        index[key] = held.count
        held.append(inbound)
        return true
    }

    /// Everything held, in order of first arrival; the backlog is empty after.
    mutating func drain() -> [Inbound] {
        defer { self = RecoveryBacklog() }
        return held
    }

    /// The registrations it holds, and what each one weighs.
    private static func weight(_ payload: Envelope.Payload) -> Int? {
        switch payload {
        case .reregisterAgent(let m): 1 + m.tasks.count + m.frameworks.count
        case .registerAgent, .registerFramework, .reregisterFramework: 1
        default: nil
        }
    }
}
