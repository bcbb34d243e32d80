import MesosCore
import MesosWire

/// A fault the schedule injects.
enum Fault: CustomStringConvertible {
    case kill(SimNode)
    case terminate(SimNode)
    case pause(SimNode, for: Duration)
    case restart(SimNode)
    case expireSession(SimNode)
    case zooKeeperDown(for: Duration)
    case cutFromZooKeeper(SimNode, for: Duration)
    case partition(Route, for: Duration)
    case delay(Route, by: Duration, for: Duration)
    /// A master's message on this route is delivered again (a duplicate, or a replay later on).
    case replay(Route)

    var description: String {
        switch self {
        case .kill(let n): "SIGKILL \(n.name)"
        case .terminate(let n): "SIGTERM \(n.name)"
        case .pause(let n, let d): "SIGSTOP \(n.name) for \(World.format(d))"
        case .restart(let n): "restart \(n.name)"
        case .expireSession(let n): "expire \(n.name)'s ZooKeeper session"
        case .zooKeeperDown(let d): "ZooKeeper unavailable for \(World.format(d))"
        case .cutFromZooKeeper(let n, let d): "\(n.name) cut from ZooKeeper for \(World.format(d))"
        case .partition(let r, let d): "partition \(r) for \(World.format(d))"
        case .delay(let r, let by, let d): "delay \(r) by \(World.format(by)) for \(World.format(d))"
        case .replay(let r): "replay an earlier message on \(r)"
        }
    }
}

/// The outcome of one seed.
public struct SimulationResult: Sendable {
    public let seed: UInt64
    public let violations: [Violation]
    /// The last trace lines before the first violation (or the end), or the whole trace with `trace`.
    public let trace: [String]
    public let steps: Int
    public let virtualTime: Duration
    public let faults: [String]
    /// Virtual time from the heal until the cluster converged (nil: it did not).
    public let convergedAfter: Duration?
    public let topology: String
}

/// The deterministic cluster simulator: N masters, M agents and K schedulers as the real cores,
/// over the in-memory ZooKeeper and network, with a virtual clock and a seeded generator. Each
/// seed draws a topology and a fault schedule; the invariants are checked as it runs, and
/// liveness once everything heals. The same seed replays the same run exactly.
public enum Simulation {
    /// A rule deliberately broken, to show the simulator catches it (`scripts/simulate --break`).
    public enum Breakage: String, Sendable, CaseIterable {
        case none
        /// Followers ignore the epoch of master messages (only the sender is checked).
        case followerEpochCheck = "follower-epoch-check"
        /// A restarted agent ignores its checkpointed executors (it keeps only its id), as before
        /// agent recovery existed.
        case agentRecovery = "agent-recovery"
    }

    public static func run(seed: UInt64, settings: SimulationSettings = SimulationSettings(), trace: Bool = false, breaking: Breakage = .none) -> SimulationResult {
        let world = World(seed: seed, settings: settings, traceAll: trace)
        world.breakage = breaking
        let masterCount = Int(world.random(1...3)), agentCount = Int(world.random(2...4)), schedulerCount = Int(world.random(1...2))
        let topology = "\(masterCount) masters, \(agentCount) agents, \(schedulerCount) schedulers"
        world.trace("seed \(seed): \(topology)")
        world.bootstrap(masters: masterCount, agents: agentCount, schedulers: Array(repeating: SimScheduler.Plan(), count: schedulerCount))

        // The fault schedule, drawn up front from the seed.
        var faults: [(Duration, Fault)] = []
        var t = settings.settle
        let end = settings.settle + settings.faultWindow
        while t < end {
            t += .milliseconds(world.random(500...4000))
            guard t < end else { break }
            faults.append((t, drawFault(world)))
        }
        var applied: [String] = []
        for (at, fault) in faults {
            world.at(at) {
                applied.append("\(World.format(world.now)) \(fault)")
                world.trace("FAULT \(fault)")
                apply(fault, in: world)
            }
        }
        let violationsBefore = { world.violations.count }
        world.run(until: end, stop: { violationsBefore() > 0 })

        // Heal everything; a supervisor restarts what is down.
        var convergedAfter: Duration?
        if world.violations.isEmpty {
            world.trace("HEAL: every partition, delay and pause ends; dead processes restart")
            heal(world)
            let healed = world.now
            var checkAt = healed
            world.run(until: healed + settings.livenessBound) {
                if !world.violations.isEmpty { return true }
                guard world.now >= checkAt else { return false }
                checkAt = world.now + .milliseconds(250)
                // Keep supervising: a master may exit (e.g. deposed during recovery) after the heal.
                for node in world.nodes where !node.isAlive { node.start() }
                if world.converged {
                    convergedAfter = world.now - healed
                    return true
                }
                return false
            }
            if world.violations.isEmpty {
                if convergedAfter == nil {
                    world.violation(.liveness, "not converged \(World.format(settings.livenessBound)) after the heal: \(world.convergenceProblem ?? "?")")
                } else {
                    // Quiet for a while: every update must then be acknowledged.
                    world.run(until: world.now + .seconds(20)) { !world.violations.isEmpty }
                    if world.violations.isEmpty { world.checkUpdatesAcknowledged() }
                    let first = world.taskDisagreements()
                    world.run(until: world.now + .seconds(3)) { !world.violations.isEmpty }
                    for problem in first.intersection(world.taskDisagreements()).sorted() {
                        world.violation(.noOrphanTasks, problem)
                    }
                }
            }
        }
        return SimulationResult(
            seed: seed, violations: world.violations, trace: trace ? world.fullTrace : world.recentTrace, steps: world.steps,
            virtualTime: world.now, faults: applied, convergedAfter: convergedAfter, topology: topology)
    }

    private static func drawFault(_ world: World) -> Fault {
        let nodes = world.nodes
        let any = nodes[Int(world.random(0...Int64(nodes.count - 1)))]
        func leaderOrAnyMaster() -> SimNode {
            world.masters.first { $0.isLeading } ?? world.masters[Int(world.random(0...Int64(world.masters.count - 1)))]
        }
        func duration(_ lo: Int64, _ hi: Int64) -> Duration { .milliseconds(world.random(lo...hi)) }
        let other = nodes[Int(world.random(0...Int64(nodes.count - 1)))]
        switch world.random(0...15) {
        case 0: return .kill(leaderOrAnyMaster())
        case 1: return .terminate(leaderOrAnyMaster())
        case 2: return .pause(leaderOrAnyMaster(), for: duration(500, 5000))
        case 3: return .restart(world.agents[Int(world.random(0...Int64(world.agents.count - 1)))])
        case 4: return .restart(world.schedulers[Int(world.random(0...Int64(world.schedulers.count - 1)))])
        case 5: return .expireSession(any)
        case 6: return .zooKeeperDown(for: duration(500, 4000))
        case 7: return .cutFromZooKeeper(any, for: duration(500, 5000))
        case 8, 9: return .partition(Route(from: any.pid.endpoint, to: other.pid.endpoint), for: duration(200, 4000))
        case 10: return .delay(Route(from: any.pid.endpoint, to: other.pid.endpoint), by: duration(50, 1500), for: duration(500, 4000))
        case 11, 12:
            let master = world.masters[Int(world.random(0...Int64(world.masters.count - 1)))]
            let followers = world.agents as [SimNode] + world.schedulers
            let follower = followers[Int(world.random(0...Int64(followers.count - 1)))]
            return .replay(Route(from: master.pid.endpoint, to: follower.pid.endpoint))
        case 14: return .terminate(world.agents[Int(world.random(0...Int64(world.agents.count - 1)))])
        case 15:
            // SIGKILL one executor process (its task runs on until its agent destroys the session).
            let executors = world.agents.flatMap(\.liveExecutors)
            guard !executors.isEmpty else { return .pause(any, for: duration(200, 3000)) }
            return .kill(executors[Int(world.random(0...Int64(executors.count - 1)))])
        default: return .pause(any, for: duration(200, 3000))
        }
    }

    private static func apply(_ fault: Fault, in world: World) {
        switch fault {
        case .kill(let n):
            n.die()
            if n is SimExecutor { break }  // nobody restarts an executor
            world.after(.milliseconds(world.random(300...3000))) { if !n.isAlive { n.start() } }  // the supervisor
        case .terminate(let n):
            n.terminate()
            world.after(.milliseconds(world.random(300...3000))) { if !n.isAlive { n.start() } }
        case .pause(let n, let d):
            n.pause()
            world.after(d) { n.resume() }
        case .restart(let n):
            n.die()
            world.after(.milliseconds(world.random(50...1000))) { if !n.isAlive { n.start() } }
        case .expireSession(let n):
            for (id, s) in world.zk.sessions.sorted(by: { $0.key < $1.key }) where s.client == n.name { world.zk.expire(id) }
        case .zooKeeperDown(let d):
            world.zk.available = false
            world.after(d) { world.zk.available = true }
        case .cutFromZooKeeper(let n, let d):
            world.cutFromZooKeeper.insert(n.name)
            world.after(d) { world.cutFromZooKeeper.remove(n.name) }
        case .partition(let r, let d):
            world.network.block(r)
            world.after(d) { world.network.unblock(r) }
        case .delay(let r, let by, let d):
            world.network.delay(r, by: by)
            world.after(d) { world.network.unblock(r) }
        case .replay(let r):
            world.network.replay(r)
        }
    }

    private static func heal(_ world: World) {
        world.zk.available = true
        world.cutFromZooKeeper = []
        world.network.heal()
        for node in world.nodes {
            node.resume()
            if !node.isAlive { node.start() }
        }
    }
}
