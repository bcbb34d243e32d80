import Foundation
import Logging
import MesosBus
import MesosCore
import MesosDaemon
import MesosHA
import MesosHTTP
import MesosWire
import ZooKeeper

/// Everything `mesos-master` is told on its command line.
public struct MasterOptions: Sendable {
    public var zk: ZooKeeperURL?
    public var address = DaemonAddress(port: 5050)
    public var workDir: String
    public var sessionTimeout: Duration = .seconds(10)
    public var maxFrameSize = FrameCodec.defaultMaxFrameSize
    /// A link whose peer stops reading for this long is closed (its queued messages dropped).
    public var linkWriteTimeout: Duration = .seconds(30)
    /// Send to peers over the connections they opened (`--return_routes`, `BusConfiguration.offerReturnRoutes`).
    public var returnRoutes = false
    /// When set, agents and frameworks must authenticate (HMAC challenge-response) as one of these.
    public var requiredCredentials: [Credential]?
    /// `--authenticate_http_readwrite`: `POST /master/teardown` needs HTTP Basic credentials, one of these.
    public var httpReadwriteCredentials: [Credential]?
    /// TLS on the bus and its HTTP endpoints (`LIBPROCESS_SSL_*`); any role may connect, the core
    /// decides what each may say (`MasterSettings.requirePeerRoles`).
    public var tls: TLSContext?
    public var core = MasterSettings()

    public init(workDir: String) { self.workDir = workDir }
}

/// The master process: the pure `MasterCore` wired to the bus, ZooKeeper (election, detection,
/// fenced registry writes) and the clock. Without `--zk` it leads alone, one epoch above the
/// highest it led before, with the registry in its work directory.
public actor MasterDaemon {
    private let options: MasterOptions
    private let runtime: DaemonRuntime
    private var logger: Logger
    private var core: MasterCore?
    private var session: ZooKeeperSession?
    private var contender: ZooKeeperLeaderContender?
    private var detector: ZooKeeperLeaderDetector?
    private var store: (any RegistryStore)?
    /// Registry writes asked for while one is in flight: the next write stores their changes
    /// merged and completes all of their tokens at once.
    private var queuedWrites: (change: RegistryChange, tokens: [Int])?
    private var writing = false
    private var exiting = false
    /// HTTP on the bus's port (`MasterRoutes`), answered from `snapshot()`.
    private let http = HTTPService()
    private let exporter = PrometheusExporter()
    private let startTime = Date().timeIntervalSince1970
    private var electedTime: Double?
    private var leaderHistory: [LeaderChange] = []
    private var lastLeader: Leader??
    private var leaderChanges = 0
    /// The open event streams of v1 schedulers (`POST /api/v1/scheduler` SUBSCRIBE), with the
    /// media type their records are in.
    private var streams: [StreamID: (body: HTTPResponseStream, media: SchedulerMediaType)] = [:]

    public init(options: MasterOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        var bus = BusConfiguration.daemon(maxFrameSize: options.maxFrameSize, writeTimeout: options.linkWriteTimeout, requiredCredentials: options.requiredCredentials, tls: options.tls)
        bus.http = http
        bus.offerReturnRoutes = options.returnRoutes
        runtime = DaemonRuntime(bus: bus, logger: logger)
    }

    /// Runs until the master exits; returns the process exit code.
    public func run() async throws -> Int32 {
        try FileManager.default.createDirectory(atPath: options.workDir, withIntermediateDirectories: true)
        let pid = try await runtime.start(name: "master", at: options.address)
        let hostname = options.address.hostname ?? ProcessInfo.processInfo.hostName
        var info = MasterInfo(id: UUID().uuidString.lowercased(), ip: MasterInfoJSON.packedIPv4(pid.host) ?? 0, port: UInt32(pid.port))
        info.hostname = hostname
        info.version = MesosVersion.current
        info.address = Address(hostname: hostname, ip: pid.host, port: Int32(pid.port))
        let wallClockOrigin = Duration.nanoseconds(Int64(Date().timeIntervalSince1970 * 1e9)) - runtime.clock.now
        core = MasterCore(info: info, pid: pid, settings: options.core, wallClockOrigin: wallClockOrigin)
        logger[metadataKey: "pid"] = "\(pid)"
        logger.milestone("master_started", "master started", [
            "zk": "\(options.zk.map { "\($0)" } ?? "none")", "work_dir": "\(options.workDir)",
        ])

        runtime.onBusEvents { event in await self.busEvent(event) }
        runtime.onTicks { now in await self.feed(.tick(now: now)) }
        http.serve { request in await self.answer(request) }
        Task {
            // Mesos's heartbeater: every stream gets a HEARTBEAT every 15 seconds.
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(SchedulerAPI.heartbeatIntervalSeconds))
                self.heartbeat()
            }
        }

        if let zk = options.zk {
            joinGroup(zk, info: info.with(pid: pid))
        } else {
            store = FileRegistryStore(directory: options.workDir)
            feed(.startStandalone)
        }
        return await runtime.waitForExit()
    }

    private func joinGroup(_ zk: ZooKeeperURL, info: MasterInfo) {
        let session = ZooKeeperSession(url: zk, sessionTimeout: options.sessionTimeout, logger: logger)
        self.session = session
        store = ZooKeeperRegistryStore(session: session, groupPath: zk.path)
        let detector = ZooKeeperLeaderDetector(session: session, path: zk.path, logger: logger)
        self.detector = detector
        let contender = ZooKeeperLeaderContender(session: session, path: zk.path, info: info, logger: logger)
        self.contender = contender
        session.start()
        let events = session.events, changes = detector.changes, outcomes = contender.outcomes, workDir = options.workDir
        Task.detached { for await event in events { await self.sessionEvent(event) } }
        Task.detached { for await leader in changes { await self.feed(.leaderDetected(leader)) } }
        Task.detached {
            for await outcome in outcomes {
                switch outcome {
                case .elected(let epoch):
                    // Before leading: a later restart on this work directory never leads at or below it.
                    EpochFile.write(epoch, to: workDir)
                    await self.feed(.elected(epoch: epoch))
                case .lost(let loss): await self.feed(.candidacyLost(loss))
                }
            }
        }
    }

    private var joined = false

    private func sessionEvent(_ event: SessionEvent) async {
        // The candidacy first: a lost session ends it with that reason (not "no leader detected").
        await contender?.sessionEvent(event)
        await detector?.sessionEvent(event)
        if case .connected = event, !joined, let store {
            joined = true
            // The floor: the registry's highest epoch and this work directory's.
            let registry = await store.highestEpochLed()
            await contender?.start(ledInRegistry: registry, ledHere: EpochFile.read(options.workDir))
            // A standby keeps a copy of the registry current, for a fast recovery when elected.
            await store.warm()
        }
    }

    /// SIGTERM: step down at once (delete our znode) so a standby takes over in milliseconds.
    public func terminate() async {
        guard !exiting else { return }
        exiting = true
        await contender?.withdraw()
        await session?.close()
        // No bus shutdown: the process ends here and the kernel closes every connection at once,
        // as it does for the core's own exits. Closing 10,000 agents' connections through the bus
        // first kept the old leader busy after it stepped down (the benchmark saw it exit 4.2 s
        // later), on the cores the new leader needed for their re-registrations, and sent nothing
        // a stepped-down master owes.
        runtime.exit(.terminated)
    }

    private func busEvent(_ event: BusEvent) {
        switch event {
        case .message(let inbound): feed(.message(inbound))
        case .linkBroken(let peer, _): feed(.linkBroken(endpoint: peer))
        case .tick: break  // handled by the runtime (onTicks)
        }
    }

    private func feed(_ event: MasterCore.Event) {
        guard core != nil else { return }
        for effect in core!.handle(event) { perform(effect) }  // in place: no copy of the core's tables
        noteLeadership()
    }

    // MARK: HTTP

    /// The failover history and the elected time, as the core's detected leader changes.
    private func noteLeadership() {
        // Read through `core?` (binding it would copy the core's tables' references on every event).
        guard let isLeading = core?.isLeading else { return }
        if isLeading, electedTime == nil { electedTime = Date().timeIntervalSince1970 }
        let leader = core?.detectedLeader
        guard lastLeader != .some(leader), lastLeader != nil || leader != nil else { return }
        if lastLeader != nil { leaderChanges += 1 }
        lastLeader = .some(leader)
        leaderHistory.append(LeaderChange(leader: leader.map(Self.address), at: Date().timeIntervalSince1970))
        if leaderHistory.count > 100 { leaderHistory.removeFirst(leaderHistory.count - 100) }
    }

    private func answer(_ request: HTTPRequest) -> HTTPResponse {
        if SchedulerAPI.paths.contains(request.path) { return schedulerAPI(request) }
        guard let snapshot = snapshot() else { return .text(503, "Master is starting") }
        switch MasterRoutes.decide(request, snapshot, readwriteCredentials: options.httpReadwriteCredentials, exporter: exporter) {
        case .respond(let response):
            return response
        case .teardown(let id):
            logger.milestone("teardown_requested", "framework \(id) torn down by an operator", ["framework_id": "\(id)", "peer": "\(request.peer)"])
            feed(.teardown(FrameworkID(value: id)))
            return HTTPResponse(status: 200)
        }
    }

    /// `POST /api/v1/scheduler`: `SchedulerAPI` decides, the core runs the framework's rules.
    private func schedulerAPI(_ request: HTTPRequest) -> HTTPResponse {
        guard let phase = core?.phase else { return .text(503, "Master is starting") }
        let leadership: SchedulerAPI.Leadership =
            switch phase {
            case .leading: .leading
            case .recovering, .startingStandalone: .recovering
            case .standby, .exited: .standby(leader: core?.detectedLeader.map(Self.address))
            }
        switch SchedulerAPI.decide(request, leadership) {
        case .respond(let response):
            return response
        case .subscribe(let info, let media):
            guard core != nil else { return .text(503, "Master is starting") }
            let (outcome, effects) = core!.subscribe(info)
            switch outcome {
            case .refused(let status, let message):
                for effect in effects { perform(effect) }
                return .text(status, message)
            case .subscribed(let stream):
                let body = HTTPResponseStream { Task { await self.streamEnded(stream) } }
                streams[stream] = (body, media)
                for effect in effects { perform(effect) }
                // Mesos's heartbeater starts with no delay: a HEARTBEAT right after SUBSCRIBED.
                streams[stream]?.body.send(SchedulerAPI.record(SchedulerAPI.heartbeat, as: media))
                return HTTPResponse(status: 200, headers: [("Content-Type", media.rawValue), ("Mesos-Stream-Id", stream.value), ("Cache-Control", "no-cache")], stream: body)
            }
        case .call(let payload, let framework, let streamID):
            guard core != nil else { return .text(503, "Master is starting") }
            let (outcome, effects) = core!.schedulerCall(payload, framework: framework, streamID: streamID)
            for effect in effects { perform(effect) }
            switch outcome {
            case .accepted: return HTTPResponse(status: 202)
            case .refused(let status, let message): return .text(status, message)
            }
        }
    }

    /// A v1 stream ended (its client left, or the master ended it): the core decides what that means.
    private func streamEnded(_ stream: StreamID) {
        streams[stream] = nil
        feed(.streamClosed(stream))
    }

    private func heartbeat() {
        for (id, stream) in streams where !stream.body.send(SchedulerAPI.record(SchedulerAPI.heartbeat, as: stream.media)) {
            streams[id] = nil
        }
    }

    static func address(_ leader: Leader) -> LeaderAddress {
        let hostname = leader.info?.hostname.flatMap { $0.isEmpty ? nil : $0 } ?? leader.pid.host
        return LeaderAddress(pid: leader.pid.description, hostname: hostname, port: leader.pid.port, epoch: leader.epoch, id: leader.info?.id ?? "")
    }

    /// The core's tables, copied for one request.
    private func snapshot() -> MasterSnapshot? {
        guard let core else { return nil }
        let role: MasterSnapshot.Role =
            switch core.phase {
            case .leading: .leader
            case .recovering, .startingStandalone: .recovering
            case .standby, .exited: .standby
            }
        var s = MasterSnapshot(
            id: core.info.id, pid: core.pid.description, hostname: core.info.hostname ?? core.pid.host, version: MesosVersion.current,
            role: role, startTime: startTime, now: Date().timeIntervalSince1970)
        s.epoch = core.epoch
        s.electedTime = electedTime
        s.leader = core.detectedLeader.map(Self.address)
        s.leaderHistory = leaderHistory
        s.bus = runtime.bus.statistics
        guard role == .leader || role == .recovering else { return s.withCounters(core.metrics, leaderChanges) }
        s.agents = core.agentViews.map { a in
            let health: AgentEntry.Health =
                switch a.health {
                case .healthy: .healthy
                case .missedPings(let n): .missedPings(n)
                case .admitting: .admitting
                case .recovering: .recovering
                }
            return AgentEntry(
                id: a.info.id?.value ?? "", hostname: a.info.hostname, pid: a.pid?.description ?? "", port: Int(a.info.port),
                resources: Resources(a.info.resources).amounts, usedResources: a.used.amounts, active: a.active, health: health)
        }
        s.frameworks = core.frameworkViews.map(Self.entry)
        s.completedFrameworks = core.completed.map { f in
            FrameworkEntry(
                id: f.id?.value ?? "", name: f.name, user: f.user, hostname: f.hostname ?? "", principal: f.principal, role: f.role,
                active: false, connected: false, failoverTimeout: f.failoverTimeout, checkpoint: f.checkpoint)
        }
        s.tasks = core.knownTasks.map { t in
            TaskEntry(
                id: t.taskID.value, name: t.name, frameworkID: t.frameworkID.value, agentID: t.agentID.value, executorID: t.executorID?.value ?? "",
                state: t.state.protoName, resources: Resources(t.resources).amounts)
        }
        s.outstandingOffers = core.outstandingOffers.count
        s.flags = [
            ("zk", options.zk.map { "\($0)" } ?? ""), ("work_dir", options.workDir), ("port", "\(core.pid.port)"),
            ("zk_session_timeout", "\(options.sessionTimeout)"), ("agent_ping_timeout", "\(options.core.agentPingTimeout)"),
            ("max_agent_ping_timeouts", "\(options.core.maxAgentPingTimeouts)"),
            ("authenticate_http_readwrite", options.httpReadwriteCredentials == nil ? "false" : "true"),
        ]
        return s.withCounters(core.metrics, leaderChanges)
    }

    static func entry(_ f: MasterCore.FrameworkView) -> FrameworkEntry {
        FrameworkEntry(
            id: f.info.id?.value ?? "", name: f.info.name, user: f.info.user, hostname: f.info.hostname ?? "", principal: f.principal,
            pid: f.pid?.description, role: f.info.role, active: f.active, connected: f.connected, recovered: f.recovered,
            failoverTimeout: f.info.failoverTimeout, checkpoint: f.info.checkpoint)
    }

    private func perform(_ effect: MasterCore.Effect) {
        switch effect {
        case .send(let payload, let to):
            runtime.send(payload, epoch: core?.epoch ?? 0, to: to)
        case .event(let payload, let stream):
            guard let (body, media) = streams[stream], let event = SchedulerAPI.event(payload) else { return }
            body.send(SchedulerAPI.record(event, as: media))
        case .closeStream(let stream):
            streams.removeValue(forKey: stream)?.body.finish()
        case .loadRegistry:
            Task { await self.loadRegistry() }
        case .storeRegistry(let change, let token):
            if var queued = queuedWrites {
                queued.change.merge(change)
                queued.tokens.append(token)
                queuedWrites = queued
            } else {
                queuedWrites = (change, [token])
            }
            if !writing {
                writing = true
                Task { await self.drainWrites() }
            }
        case .observe(let observation):
            logger.observe(observation)
        case .exit(let reason):
            guard !exiting else { return }
            exiting = true
            Task {
                await self.session?.close()
                self.runtime.exit(reason)
            }
        }
    }

    private func loadRegistry() async {
        guard let store else { return }
        do {
            let loaded = try await store.load()
            if let report = await store.lastLoad() {
                logger.milestone("registry_read", "registry read: \(report.reads) znodes\(report.warm ? " changed since the standby's copy" : "")", [
                    "znode_reads": "\(report.reads)", "warm": "\(report.warm)",
                ])
            }
            feed(.registryLoaded(loaded))
        } catch {
            feed(.registryLoadFailed("\(error)"))
        }
    }

    private func drainWrites() async {
        while let (change, tokens) = queuedWrites, let store {
            queuedWrites = nil
            let fence = await contender?.membershipPath
            switch await store.store(change, fence: fence) {
            case .stored:
                for token in tokens { feed(.registryStored(token: token)) }
            case .failed(let fenced, let reason):
                feed(.registryStoreFailed(fenced: fenced, reason: reason))
                writing = false
                return
            }
        }
        writing = false
    }
}

extension MasterSnapshot {
    func withCounters(_ m: MasterMetrics, _ leaderChanges: Int) -> MasterSnapshot {
        var s = self
        s.counters.droppedMessages = m.droppedTotal
        s.counters.staleEpochDropped = m.droppedMessages[.wrongEpoch, default: 0] + m.droppedMessages[.staleEpoch, default: 0]
        s.counters.invalidMessages = m.invalidMessages
        s.counters.tasksLost = m.tasksLost
        s.counters.slaveRegistrations = m.agentRegistrations
        s.counters.slaveReregistrations = m.agentReregistrations
        s.counters.slaveRemovals = m.agentRemovals
        s.counters.frameworkRemovals = m.frameworkRemovals
        s.counters.frameworkFailovers = m.frameworkFailovers
        s.counters.registryWrites = m.registryWrites
        s.counters.heldDuringRecovery = m.heldDuringRecovery
        s.counters.leaderChanges = leaderChanges
        return s
    }
}

extension MasterInfo {
    func with(pid: PID) -> MasterInfo {
        var info = self
        info.pid = pid.description
        return info
    }
}

/// The newest epoch this master has led, kept in its work directory: a recreated group whose
/// sequence restarted must not let it lead at an older epoch.
enum EpochFile {
    static func read(_ dir: String) -> UInt64 {
        (try? String(contentsOfFile: dir + "/epoch", encoding: .utf8)).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
    }
    static func write(_ epoch: UInt64, to dir: String) {
        guard epoch > read(dir) else { return }
        try? AtomicFile.write("\(epoch)\n", to: dir + "/epoch")
    }
}

