import Foundation
import Logging
import MesosBus
import MesosHA
import MesosWire
import ZooKeeper

/// Everything `mesos-master` is told on its command line.
public struct MasterOptions: Sendable {
    public var zk: ZooKeeperURL?
    public var ip = "127.0.0.1"
    public var port = 5050
    public var advertiseIP: String?
    /// The port others reach this process at (default: the bound port), e.g. a proxy's.
    public var advertisePort: Int?
    public var hostname: String?
    public var workDir: String
    public var sessionTimeout: Duration = .seconds(10)
    public var maxFrameSize = FrameCodec.defaultMaxFrameSize
    /// When set, agents and frameworks must authenticate (HMAC challenge-response) as one of these.
    public var requiredCredentials: [Credential]?
    public var core = MasterConfiguration()

    public init(workDir: String) { self.workDir = workDir }
}

/// The master process: the pure `MasterCore` wired to the bus, ZooKeeper (election, detection,
/// fenced registry writes) and the clock. Without `--zk` it leads alone at epoch 1 and keeps the
/// registry in its work directory.
public actor MasterDaemon {
    private let options: MasterOptions
    private var logger: Logger
    private let bus: MessageBus
    private let clock = CoreClock()
    private var core: MasterCore!
    private var session: ZooKeeperSession?
    private var contender: ZooKeeperLeaderContender?
    private var detector: ZooKeeperLeaderDetector?
    private var registryVersion: Int32?
    /// Registry writes asked for while one is in flight: the next write stores the newest registry
    /// and completes all of their tokens at once.
    private var queuedWrites: (registry: Registry, tokens: [Int])?
    private var writing = false
    private let exitCode = AsyncStream<Int32>.makeStream()

    public init(options: MasterOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        var config = BusConfiguration()
        config.maxFrameSize = options.maxFrameSize
        config.requiredCredentials = options.requiredCredentials
        bus = MessageBus(configuration: config, logger: logger)
    }

    /// Runs until the master exits; returns the process exit code.
    public func run() async throws -> Int32 {
        try FileManager.default.createDirectory(atPath: options.workDir, withIntermediateDirectories: true)
        let pid = try await bus.start(name: "master", host: options.ip, port: options.port, advertiseHost: options.advertiseIP, advertisePort: options.advertisePort)
        let hostname = options.hostname ?? ProcessInfo.processInfo.hostName
        var info = MasterInfo(id: UUIDString.make(), ip: MasterInfoJSON.packedIPv4(pid.host) ?? 0, port: UInt32(pid.port))
        info.pid = pid.description
        info.hostname = hostname
        info.version = MesosVersion.current
        info.address = Address(hostname: hostname, ip: pid.host, port: Int32(pid.port))
        core = MasterCore(info: info, configuration: options.core)
        logger[metadataKey: "pid"] = "\(pid)"
        logger.info("master started", metadata: ["zk": "\(options.zk.map { "\($0)" } ?? "none (standalone)")", "work_dir": "\(options.workDir)"])


        let events = bus.events, clock = self.clock
        Task.detached { for await event in events { await self.busEvent(event) } }
        clock.ticks { await self.feed(.tick(now: $0)) }

        if let zk = options.zk {
            try await joinGroup(zk, info: info)
        } else {
            feed(.elected(epoch: 1))
            feed(.leaderDetected(Leader(epoch: 1, pid: pid.description, info: info)))
        }
        for await code in exitCode.stream { return code }
        return 1
    }

    private func joinGroup(_ zk: ZooKeeperURL, info: MasterInfo) async throws {
        let session = ZooKeeperSession(url: zk, sessionTimeout: options.sessionTimeout, logger: logger)
        self.session = session
        let detector = ZooKeeperLeaderDetector(session: session, path: zk.path, logger: logger)
        self.detector = detector
        session.start()
        let events = session.events
        Task.detached { for await event in events { await self.sessionEvent(event, zk: zk, info: info) } }
        let changes = detector.changes
        Task.detached { for await leader in changes { await self.feed(.leaderDetected(leader)) } }
    }

    private func sessionEvent(_ event: SessionEvent, zk: ZooKeeperURL, info: MasterInfo) async {
        await detector?.sessionEvent(event)
        if let contender {
            await contender.sessionEvent(event)
        } else if case .connected = event {
            // Join once connected: the epoch floor comes from ZooKeeper and our work directory.
            let floor = max(await highestEpochInRegistry(zk.path), EpochFile.read(options.workDir))
            guard let session, contender == nil else { return }
            let contender = ZooKeeperLeaderContender(session: session, path: zk.path, info: info, epochFloor: floor, logger: logger)
            self.contender = contender
            let outcomes = contender.outcomes, workDir = options.workDir
            Task.detached {
                for await outcome in outcomes {
                    switch outcome {
                    case .elected(let epoch):
                        EpochFile.write(epoch, to: workDir)
                        await self.feed(.elected(epoch: epoch))
                    case .lost(let reason): await self.feed(.candidacyLost(reason: reason))
                    }
                }
            }
            await contender.start()
        }
        if case .expired(let local) = event { logger.warning("ZooKeeper session expired\(local ? " (local timeout)" : "")") }
    }

    private func highestEpochInRegistry(_ path: String) async -> UInt64 {
        guard let session, let data = try? await session.get(path + "/registry").data,
            let registry = try? Registry(serializedBytes: data)
        else { return 0 }
        return registry.highestEpoch ?? 0
    }

    /// SIGTERM: step down at once (delete our znode) so a standby takes over in milliseconds.
    public func terminate() async {
        logger.info("terminating: withdrawing from the leader group")
        await contender?.withdraw()
        await session?.close()
        await bus.shutdown()
        exitCode.continuation.yield(0)
    }

    private func busEvent(_ event: BusEvent) {
        switch event {
        case .message(let envelope): feed(.message(envelope))
        case .linkBroken(let peer, _): feed(.linkBroken(peer: peer))
        }
    }

    private func feed(_ event: MasterCore.Event) {
        guard core != nil else { return }
        for effect in core.handle(event) { perform(effect) }
    }

    private func perform(_ effect: MasterCore.Effect) {
        switch effect {
        case .send(let payload, let to):
            guard let peer = PID(to) else { return logger.warning("cannot send to malformed pid '\(to)'") }
            bus.post(payload, epoch: core.epoch ?? 0, to: peer)
        case .loadRegistry:
            Task { await self.loadRegistry() }
        case .storeRegistry(let registry, let token):
            queuedWrites = (registry, (queuedWrites?.tokens ?? []) + [token])
            if !writing {
                writing = true
                Task { await self.drainWrites() }
            }
        case .exit(let code, let reason):
            logger.critical("exiting: \(reason)")
            Task {
                await self.session?.close()
                self.exitCode.continuation.yield(code)
            }
        case .log(let level, let message):
            logger.log(level: level.loggerLevel, "\(message)")
        }
    }

    private func loadRegistry() async {
        guard let zk = options.zk, let session else {
            return feed(.registryLoaded(RegistryFile.read(options.workDir)))
        }
        do {
            let (data, stat) = try await session.get(zk.path + "/registry")
            registryVersion = stat.version
            feed(.registryLoaded(try Registry(serializedBytes: data)))
        } catch let error as ZooKeeperError where error.code == .noNode {
            registryVersion = nil
            feed(.registryLoaded(nil))
        } catch {
            feed(.candidacyLost(reason: "cannot read the registry: \(error)"))
        }
    }

    private func drainWrites() async {
        while let (registry, tokens) = queuedWrites {
            queuedWrites = nil
            guard await write(registry) else { break }
            for token in tokens { feed(.registryStored(token: token)) }
        }
        writing = false
    }

    /// A registry write that only succeeds while our leader znode exists: a deposed leader
    /// (its session gone, its znode deleted) cannot overwrite its successor's registry.
    /// False when it failed (the master is then exiting).
    private func write(_ registry: Registry) async -> Bool {
        guard let zk = options.zk, let session else {
            RegistryFile.write(registry, to: options.workDir)
            return true
        }
        guard let fence = await contender?.membershipPath else {
            feed(.candidacyLost(reason: "registry write without a membership znode"))
            return false
        }
        let path = zk.path + "/registry", bytes = registry.serializedBytes()
        for attempt in 0..<50 {
            let op: MultiOperation = registryVersion.map { .setData(path, data: bytes, version: $0) } ?? .create(path, data: bytes)
            do {
                let results = try await session.multi([.check(fence, version: ZooKeeperSession.anyVersion), op])
                if case .dataSet(let stat) = results.last { registryVersion = stat.version } else { registryVersion = 0 }
                return true
            } catch let error as ZooKeeperError where error.code == .connectionLoss || error.code == .operationTimeout {
                logger.warning("registry write attempt \(attempt + 1) failed: \(error); retrying")
                try? await Task.sleep(for: .milliseconds(200))
            } catch {
                feed(.candidacyLost(reason: "fenced registry write refused (\(error)): another master leads"))
                return false
            }
        }
        feed(.candidacyLost(reason: "cannot write the registry"))
        return false
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
        try? "\(epoch)\n".write(toFile: dir + "/epoch", atomically: true, encoding: .utf8)
    }
}

/// Standalone masters keep the registry in the work directory.
enum RegistryFile {
    static func read(_ dir: String) -> Registry? {
        guard let data = FileManager.default.contents(atPath: dir + "/registry.pb") else { return nil }
        return try? Registry(serializedBytes: [UInt8](data))
    }
    static func write(_ registry: Registry, to dir: String) {
        try? Data(registry.serializedBytes()).write(to: URL(fileURLWithPath: dir + "/registry.pb"), options: .atomic)
    }
}

public enum MesosVersion {
    public static let current = "1.11.0-swift"
}

enum UUIDString {
    static func make() -> String { UUID().uuidString.lowercased() }
}
