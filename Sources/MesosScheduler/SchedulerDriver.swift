import Foundation
import Logging
import MesosBus
import MesosCore
import MesosDaemon
import MesosHA
import MesosWire

/// The framework author's entry point: construct with a FrameworkInfo and the master
/// (`zk://...`, `file://...` or `host:port`), `start()`, then read `events` and make calls.
///
///     let driver = SchedulerDriver(framework: FrameworkInfo(user: "me", name: "demo"), master: "zk://127.0.0.1:2181/mesos")
///     try await driver.start()
///     for await event in driver.events {
///         if case .offers(let offers) = event { await driver.launch(offers: [offers[0].id], tasks: [...]) }
///     }
///
/// To resume an existing framework (a scheduler failover), set `framework.id`: the new instance
/// takes the framework over, and the old one, if still running, is told "Framework failed over".
public actor SchedulerDriver {
    public nonisolated let events: AsyncStream<SchedulerEvent>
    private let sink: AsyncStream<SchedulerEvent>.Continuation
    private var core: SchedulerCore
    private let master: String
    private let sessionTimeout: Duration
    private var logger: Logger
    private let runtime: DaemonRuntime
    private var detector: (any MasterDetector)?
    private var tasks: [Task<Void, Never>] = []
    private var ticks: BusTimer?
    private var finished = false

    /// - settings: backoff, acknowledgements (`implicitAcknowledgements`: Mesos's default, true).
    /// - credential: for masters that require authentication; its principal becomes `framework.principal`.
    /// - tls: TLS to the masters (`TLSContext.fromEnvironment()`); without a credential the
    ///   certificate's principal becomes `framework.principal`; without downgrade, master messages
    ///   count only from connections proven as a master.
    public init(
        framework: FrameworkInfo, master: String, settings: SchedulerSettings = SchedulerSettings(), sessionTimeout: Duration = .seconds(10),
        credential: Credential? = nil, tls: TLSContext? = nil, logger: Logger = Logger(label: "mesos.scheduler")
    ) {
        var framework = framework
        var settings = settings
        if let credential {
            framework.principal = credential.principal
            settings.requireMasterIdentity = true  // the master proves the same secret (mutual HMAC)
        }
        if let tls {
            if credential == nil, let principal = tls.localIdentity.principal { framework.principal = principal }
            if !tls.settings.supportDowngrade { settings.requireMasterIdentity = true }
        }
        self.core = SchedulerCore(framework: framework, settings: settings, seed: UInt64.random(in: 0...UInt64.max))
        self.master = master
        self.sessionTimeout = sessionTimeout
        self.logger = logger
        // Links to masters from the scheduler's own port: a master with --return_routes writes
        // over that connection at once (`BusConfiguration.linksFromListeningPort`).
        var bus = BusConfiguration.daemon(maxFrameSize: FrameCodec.defaultMaxFrameSize, credential: credential, tls: tls, peerRoles: [.master])
        bus.linksFromListeningPort = true
        self.runtime = DaemonRuntime(bus: bus, logger: logger)
        (events, sink) = AsyncStream.makeStream(of: SchedulerEvent.self)
    }

    public var frameworkID: FrameworkID? { core.frameworkID }
    public var droppedMessages: [EpochGuard.DropReason: Int] { core.droppedMessages }

    /// Listens on `host:port` (0: any free port) for the master's messages and starts detection.
    /// `advertisePort`: the port the master should use to reach us (behind a proxy or NAT).
    public func start(host: String = "127.0.0.1", port: Int = 0, advertisePort: Int? = nil) async throws {
        // Every driver of the process following this `--master` shares one detector (one ZooKeeper
        // session and group watch), as Mesos's drivers share its DetectorPool (sched.cpp).
        let detector = try DetectorPool.shared.detector(master: master, sessionTimeout: sessionTimeout, logger: logger)
        self.detector = detector
        let pid = try await runtime.start(
            name: "scheduler-\(UUID().uuidString.prefix(8).lowercased())", host: host, port: port, advertisePort: advertisePort)
        logger[metadataKey: "pid"] = "\(pid)"
        runtime.onBusEvents { event in
            switch event {
            case .message(let inbound):
                if case .leaderHint(let hint)? = inbound.envelope.payload { await detector.hint(hint, from: inbound.envelope.from) }
                await self.feed(.message(inbound))
            case .linkBroken(let peer, _):
                await self.feed(.linkBroken(endpoint: peer))
            case .tick: break  // handled by the runtime (onTicks)
            }
        }
        let changes = detector.changes
        tasks.append(Task.detached { for await leader in changes { await self.feed(.leaderDetected(leader)) } })
        ticks = runtime.onTicks { now in await self.feed(.tick(now: now)) }
        await detector.start()
    }

    public func launch(offers: [OfferID], tasks: [TaskInfo], filters: Filters? = nil) { feed(.call(.launch(offers: offers, tasks: tasks, filters: filters))) }
    public func decline(offers: [OfferID], filters: Filters? = nil) { feed(.call(.decline(offers: offers, filters: filters))) }
    public func kill(_ task: TaskID) { feed(.call(.kill(task))) }
    /// With `implicitAcknowledgements` off: acknowledge a status update once it is handled.
    public func acknowledge(_ status: TaskStatus) { feed(.call(.acknowledge(status))) }
    public func reconcile(_ statuses: [TaskStatus] = []) { feed(.call(.reconcile(statuses))) }
    public func reviveOffers() { feed(.call(.revive)) }
    public func suppressOffers() { feed(.call(.suppress)) }
    /// Bytes to an executor of this framework, through the master and its agent (best effort).
    public func sendFrameworkMessage(executor: ExecutorID, agent: AgentID, data: [UInt8]) { feed(.call(.sendFrameworkMessage(executor: executor, agent: agent, data: data))) }

    /// `failover: true` leaves the framework and its tasks for another scheduler instance to take
    /// over within its `failover_timeout`; false unregisters it (its tasks are killed). Returns
    /// once the goodbye (if any) is written and the driver is shut down.
    public func stop(failover: Bool = false) async {
        feed(.call(.stop(failover: failover)))
        await shutdown()
    }

    /// Stops the driver without unregistering: the framework is deactivated (no offers) and kept.
    public func abort() async {
        feed(.call(.abort))
        await shutdown()
    }

    private func shutdown() async {
        guard !finished else { return }
        finished = true
        for t in tasks { t.cancel() }
        tasks = []
        ticks?.cancel()
        ticks = nil
        await runtime.bus.flush()
        await detector?.stop()
        await runtime.bus.shutdown()
        sink.finish()
    }

    private func feed(_ event: SchedulerCore.Event) {
        for effect in core.handle(event) {
            switch effect {
            case .send(let payload, let to, let epoch): runtime.send(payload, epoch: epoch, to: to)
            case .event(let e): sink.yield(e)
            case .observe(let observation): logger.observe(observation)
            case .stopped: Task { await self.shutdown() }
            }
        }
    }
}
