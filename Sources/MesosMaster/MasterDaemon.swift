import Foundation
import Logging
import MesosBus
import MesosCore
import MesosDaemon
import MesosHA
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
    /// When set, agents and frameworks must authenticate (HMAC challenge-response) as one of these.
    public var requiredCredentials: [Credential]?
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

    public init(options: MasterOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        runtime = DaemonRuntime(bus: .daemon(maxFrameSize: options.maxFrameSize, writeTimeout: options.linkWriteTimeout, requiredCredentials: options.requiredCredentials), logger: logger)
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
        }
    }

    /// SIGTERM: step down at once (delete our znode) so a standby takes over in milliseconds.
    public func terminate() async {
        guard !exiting else { return }
        exiting = true
        await contender?.withdraw()
        await session?.close()
        await runtime.bus.shutdown()
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
    }

    private func perform(_ effect: MasterCore.Effect) {
        switch effect {
        case .send(let payload, let to):
            runtime.send(payload, epoch: core?.epoch ?? 0, to: to)
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
            feed(.registryLoaded(try await store.load()))
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

public enum MesosVersion {
    /// Numeric (x.y.z), as Mesos's `/version` reports it: tools parse it.
    public static let current = "1.11.0"
}
