import Foundation
import Logging
import MesosBus
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
public actor SchedulerDriver {
    public nonisolated let events: AsyncStream<SchedulerEvent>
    private let sink: AsyncStream<SchedulerEvent>.Continuation
    private var core: SchedulerCore
    private let master: String
    private let sessionTimeout: Duration
    private var logger: Logger
    private let bus: MessageBus
    private let clock = CoreClock()
    private var detector: (any MasterDetector)?
    private var tasks: [Task<Void, Never>] = []

    /// - registrationBackoffFactor: the first (re)registration after a leader change waits a random
    ///   time up to this (Mesos's driver uses 2 s), spreading many frameworks' re-registrations.
    /// - credential: for masters that require authentication; its principal becomes `framework.principal`.
    public init(
        framework: FrameworkInfo, master: String, implicitAcknowledgements: Bool = true, sessionTimeout: Duration = .seconds(10),
        registrationBackoffFactor: Duration = .seconds(2), credential: Credential? = nil, logger: Logger = Logger(label: "mesos.scheduler")
    ) {
        var framework = framework
        if let credential { framework.principal = credential.principal }
        self.core = SchedulerCore(
            framework: framework, implicitAcknowledgements: implicitAcknowledgements, backoffFactor: registrationBackoffFactor,
            seed: UInt64.random(in: 0...UInt64.max))
        self.master = master
        self.sessionTimeout = sessionTimeout
        self.logger = logger
        var config = BusConfiguration()
        config.credential = credential
        self.bus = MessageBus(configuration: config, logger: logger)
        (events, sink) = AsyncStream.makeStream(of: SchedulerEvent.self)
    }

    public var frameworkID: FrameworkID? { core.frameworkID }
    public var droppedMessages: [EpochGuard.DropReason: Int] { core.droppedMessages }

    /// Listens on `host:port` (0: any free port) for the master's messages and starts detection.
    /// `advertisePort`: the port the master should use to reach us (behind a proxy or NAT).
    public func start(host: String = "127.0.0.1", port: Int = 0, advertisePort: Int? = nil) async throws {
        let detector = try MasterDetectors.make(master: master, sessionTimeout: sessionTimeout, logger: logger)
        self.detector = detector
        let pid = try await bus.start(
            name: "scheduler-\(UUID().uuidString.prefix(8).lowercased())", host: host, port: port, advertisePort: advertisePort)
        logger[metadataKey: "pid"] = "\(pid)"
        let events = bus.events, changes = detector.changes, clock = self.clock
        tasks.append(Task.detached {
            for await event in events {
                guard case .message(let envelope) = event else { continue }
                if case .leaderHint(let hint)? = envelope.payload { await detector.hint(hint, from: envelope.from) }
                await self.feed(.message(envelope))
            }
        })
        tasks.append(Task.detached { for await leader in changes { await self.feed(.leaderDetected(leader)) } })
        tasks.append(clock.ticks { await self.feed(.tick(now: $0)) })
        await detector.start()
    }

    public func launch(offers: [OfferID], tasks: [TaskInfo], filters: Filters? = nil) { feed(.call(.launch(offers: offers, tasks: tasks, filters: filters))) }
    public func decline(offers: [OfferID], filters: Filters? = nil) { feed(.call(.decline(offers: offers, filters: filters))) }
    public func kill(_ task: TaskID) { feed(.call(.kill(task))) }
    public func acknowledge(_ status: TaskStatus) { feed(.call(.acknowledge(status))) }
    public func reconcile(_ statuses: [TaskStatus] = []) { feed(.call(.reconcile(statuses))) }
    public func revive() { feed(.call(.revive)) }

    /// `failover: true` leaves the framework and its tasks for another scheduler to take over.
    public func stop(failover: Bool = false) async {
        feed(.call(.stop(failover: failover)))
        try? await Task.sleep(for: .milliseconds(100))  // let the goodbye reach the wire
        await shutdown()
    }

    private func shutdown() async {
        for t in tasks { t.cancel() }
        tasks = []
        await detector?.stop()
        await bus.shutdown()
        sink.finish()
    }

    private func feed(_ event: SchedulerCore.Event) {
        for effect in core.handle(event) {
            switch effect {
            case .send(let payload, let to, let epoch):
                guard let peer = PID(to) else { continue }
                bus.post(payload, epoch: epoch, to: peer)
            case .event(let e): sink.yield(e)
            case .log(let level, let message):
                logger.log(level: level.loggerLevel, "\(message)")
            case .stopped:
                Task { await self.shutdown() }
            }
        }
    }
}
