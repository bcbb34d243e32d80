import MesosCore
import MesosWire

/// A hand-written fault scenario over the simulator, for tests of one rule at a time: a fixed
/// topology, faults applied by the test, and questions about the outcome. Every invariant is
/// checked all along, as in the random runs (`violations`).
public final class Scenario {
    let world: World

    /// Masters `master1...`, agents `agent1...`, schedulers `scheduler1...` (each wanting
    /// `tasksPerScheduler` tasks); started at once.
    /// `checkpoint` nil: odd-numbered schedulers checkpoint (their tasks survive agent restarts).
    public init(masters: Int = 3, agents: Int = 2, schedulers: Int = 1, tasksPerScheduler: Int = 3, seed: UInt64 = 1,
        settings: SimulationSettings = SimulationSettings(), partitionAware: Bool? = nil, checkpoint: Bool? = nil)
    {
        world = World(seed: seed, settings: settings, traceAll: true)
        let plan = SimScheduler.Plan(wanted: tasksPerScheduler, finiteTasks: false, partitionAware: partitionAware, checkpoint: checkpoint)
        world.bootstrap(masters: max(1, masters), agents: agents, schedulers: Array(repeating: plan, count: schedulers))
    }

    public struct Timeout: Error, CustomStringConvertible {
        public let description: String
    }

    // MARK: Time

    public var now: Duration { world.now }

    public func run(for duration: Duration) { world.run(until: world.now + duration) }

    /// Runs until `condition` holds (checked after every step); throws after `timeout` of virtual time.
    @discardableResult
    public func run(until what: String, timeout: Duration = .seconds(60), _ condition: (Scenario) -> Bool) throws -> Duration {
        let start = world.now
        var met = condition(self)
        if !met { world.run(until: start + timeout) { met = condition(self); return met } }
        guard met else {
            throw Timeout(description: "\(what) not within \(World.format(timeout)) (at \(World.format(world.now)))\n" + trace.suffix(60).joined(separator: "\n"))
        }
        return world.now - start
    }

    /// Runs until every task of every scheduler runs and the cluster is converged.
    public func runUntilSteady(timeout: Duration = .seconds(60)) throws {
        try run(until: "a steady cluster", timeout: timeout) { s in
            s.world.converged && s.world.schedulers.allSatisfy { $0.runningTasks >= $0.wanted }
        }
    }

    // MARK: Faults

    public func kill(_ name: String) { node(name)?.die() }
    public func terminate(_ name: String) { node(name)?.terminate() }
    public func start(_ name: String) { if let n = node(name), !n.isAlive { n.start() } }
    public func pause(_ name: String) { node(name)?.pause() }
    public func resume(_ name: String) { node(name)?.resume() }
    public func cutFromZooKeeper(_ name: String) { world.cutFromZooKeeper.insert(name) }
    public func reconnectToZooKeeper(_ name: String) { world.cutFromZooKeeper.remove(name) }
    public func zooKeeper(available: Bool) { world.zk.available = available }

    /// Blocks `from`'s messages to `to` (one way); `both` also the other way.
    public func partition(_ from: String, _ to: String, both: Bool = false) {
        guard let a = node(from), let b = node(to) else { return }
        world.network.block(Route(from: a.pid.endpoint, to: b.pid.endpoint))
        if both { world.network.block(Route(from: b.pid.endpoint, to: a.pid.endpoint)) }
    }

    public func heal() {
        world.network.heal()
        world.cutFromZooKeeper = []
        world.zk.available = true
    }

    // MARK: Questions

    public var violations: [Violation] { world.violations }
    public var trace: [String] { world.fullTrace }

    /// The master in the leading phase that ZooKeeper names, and its epoch.
    public var leader: (name: String, epoch: UInt64)? {
        guard let (epoch, master) = world.zkLeader, master.isAlive, master.isLeading, master.epoch == epoch else { return nil }
        return (master.name, epoch)
    }

    public var leadingMasters: [String] { world.masters.filter { $0.isAlive && $0.isLeading }.map(\.name) }
    public var converged: Bool { world.converged }
    public var convergenceProblem: String? { world.convergenceProblem }
    public func isAlive(_ name: String) -> Bool { node(name)?.isAlive ?? false }

    public func exits(of name: String) -> [ExitReason] {
        (node(name) as? SimMaster)?.exits ?? (node(name) as? SimAgent)?.exits ?? []
    }

    public func agentID(_ name: String) -> AgentID? { (node(name) as? SimAgent)?.core?.agentID }
    public func isRegistered(_ name: String) -> Bool {
        (node(name) as? SimAgent)?.core?.isRegistered ?? (node(name) as? SimScheduler)?.isRegistered ?? false
    }
    public func followedEpoch(_ name: String) -> UInt64? {
        ((node(name) as? SimAgent)?.core?.leader ?? (node(name) as? SimScheduler)?.core?.leader)?.epoch
    }
    public func drops(of agent: String) -> [EpochGuard.DropReason: Int] { (node(agent) as? SimAgent)?.drops ?? [:] }

    public func frameworkID(_ scheduler: String) -> FrameworkID? { (node(scheduler) as? SimScheduler)?.frameworkID }
    public func events(of scheduler: String) -> [SchedulerEvent] { (node(scheduler) as? SimScheduler)?.events ?? [] }
    public func statuses(of scheduler: String) -> [TaskStatus] {
        events(of: scheduler).compactMap { if case .statusUpdate(let s) = $0 { s } else { nil } }
    }

    /// Task processes running now: (framework, task) -> agent name.
    public var runningTasks: [TaskKey: String] { world.truth.running.mapValues(\.agent) }

    /// The executor process running each task (tasks whose executor died show no process).
    public var taskProcesses: [TaskKey: Int32] {
        var found: [TaskKey: Int32] = [:]
        for agent in world.agents { for e in agent.executors.values where e.taskRunning && e.isAlive { found[e.taskKey] = e.processID } }
        return found
    }

    /// SIGKILL of one executor process alone (its task runs on until its agent destroys the session).
    public func killExecutor(of task: TaskKey) {
        for agent in world.agents { for e in agent.executors.values where e.taskKey == task && e.isAlive { e.die() } }
    }

    public func isRecovered(_ agent: String) -> Bool { (node(agent) as? SimAgent)?.core?.isRecovered ?? false }

    /// The leading master's view: tasks it knows, agents active, frameworks.
    public var leaderCore: MasterCore? { world.masters.first { $0.isAlive && $0.isLeading }?.core }
    public func masterCore(_ name: String) -> MasterCore? { (node(name) as? SimMaster)?.core }
    public var registry: RegistryState? { world.registry }

    private func node(_ name: String) -> SimNode? { world.nodes.first { $0.name == name } }
}

extension SimScheduler {
    var runningTasks: Int { states.values.filter { $0 == .running }.count }
}
