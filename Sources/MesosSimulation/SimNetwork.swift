import MesosCore
import MesosWire

/// A directed pair of endpoints ("host:port"): partitions and delays are per direction.
struct Route: Hashable, Comparable, CustomStringConvertible {
    let from: String
    let to: String
    static func < (a: Route, b: Route) -> Bool { (a.from, a.to) < (b.from, b.to) }
    var description: String { "\(from)->\(to)" }
}

/// The in-memory network: per-connection ordered delivery with a latency, extra delays, one-way
/// blackholes (a partition), resets, refused connections to dead processes, and the links a heal
/// breaks (as a fault proxy resets the connections it blackholed).
final class SimNetwork {
    private unowned let world: World
    private(set) var blocked: Set<Route> = []
    private var delays: [Route: Duration] = [:]
    private var lastDelivery: [Route: Duration] = [:]
    /// Routes that lost messages to a blackhole: their senders see the link break at the heal.
    private var cut: Set<Route> = []
    /// Recent envelopes per route, for replays.
    private var history: [Route: [Envelope]] = [:]
    private(set) var sent = 0
    private(set) var delivered = 0
    private(set) var dropped = 0

    init(world: World) { self.world = world }

    func block(_ route: Route) { blocked.insert(route) }
    func delay(_ route: Route, by extra: Duration) { delays[route] = extra }

    /// Ends every partition and delay; senders whose messages vanished see their links break.
    func heal() {
        blocked = []
        delays = [:]
        for route in cut.sorted() {
            guard let sender = world.node(at: route.from), sender.isAlive else { continue }
            world.after(world.netLatency()) { sender.whenRunning { sender.linkBroken(route.to) } }
        }
        cut = []
    }

    func unblock(_ route: Route) {
        blocked.remove(route)
        delays[route] = nil
        if cut.remove(route) != nil, let sender = world.node(at: route.from), sender.isAlive {
            world.after(world.netLatency()) { sender.whenRunning { sender.linkBroken(route.to) } }
        }
    }

    /// Delivers one of the route's recent messages again, as if replayed by the network.
    func replay(_ route: Route) {
        guard let recent = history[route], !recent.isEmpty, let sender = world.node(at: route.from),
            let target = PID("replay@" + route.to)
        else { return }
        let envelope = recent[Int(world.random(0...Int64(recent.count - 1)))]
        world.trace("network: replaying \(envelope.payload?.kind ?? "?") at epoch \(envelope.epoch) on \(route)")
        send(from: sender, to: target, envelope, record: false)
    }

    func send(from sender: SimNode, to pid: PID, _ envelope: Envelope, record: Bool = true) {
        sent += 1
        let route = Route(from: sender.pid.endpoint, to: pid.endpoint)
        if record, sender is SimMaster {
            history[route, default: []].append(envelope)
            if history[route]!.count > 16 { history[route]!.removeFirst() }
        }
        let senderIncarnation = sender.incarnation
        if blocked.contains(route) {
            dropped += 1
            cut.insert(route)
            return
        }
        let target = world.node(at: pid.endpoint)
        let targetIncarnation = target?.incarnation
        let earliest = world.now + world.netLatency() + (delays[route] ?? .zero)
        let at = max(earliest, lastDelivery[route] ?? .zero)  // in order per connection
        lastDelivery[route] = at
        world.at(at) {
            guard let target, target.isAlive, target.incarnation == targetIncarnation else {
                // Refused (or the process behind the connection is gone): the sender's link breaks.
                self.dropped += 1
                guard sender.isAlive, sender.incarnation == senderIncarnation else { return }
                self.world.after(self.world.netLatency()) { sender.whenRunning { sender.linkBroken(route.to) } }
                return
            }
            self.delivered += 1
            target.whenRunning { target.deliver(envelope) }
        }
    }
}
