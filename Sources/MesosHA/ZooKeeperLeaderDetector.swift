import Logging
import MesosWire
import ZooKeeper

/// Where a process learns who leads: ZooKeeper (`zk://`, `file://`) or a fixed master (`host:port`).
public protocol MasterDetector: Sendable {
    /// Every change of the detected leader (nil: none known).
    var changes: AsyncStream<Leader?> { get }
    func start() async
    func stop() async
    /// A LeaderHint received from `sender`. Advisory: a ZooKeeper detector ignores it; a fixed
    /// master's detector learns that master's epoch from it.
    func hint(_ hint: LeaderHintMessage, from sender: String) async
}

public enum MasterDetectors {
    /// `--master` as Mesos takes it: `zk://...`, `file:///path` (holding a zk:// URL) or `host:port`.
    public static func make(master: String, sessionTimeout: Duration, epochFloor: UInt64 = 0, logger: Logger) throws -> any MasterDetector {
        if master.hasPrefix("zk://") || master.hasPrefix("file://") {
            let url = try ZooKeeperURL(parsing: master)
            let session = ZooKeeperSession(url: url, sessionTimeout: sessionTimeout, logger: logger)
            return ZooKeeperLeaderDetector(session: session, path: url.path, epochFloor: epochFloor, ownsSession: true, logger: logger)
        }
        guard let fixed = FixedMasterDetector(hostPort: master) else {
            throw MasterFlagError(description: "--master must be zk://host:port[,host:port...]/path, file:///path or host:port; got '\(master)'")
        }
        return fixed
    }
}

public struct MasterFlagError: Error, CustomStringConvertible {
    public let description: String
}

/// Follows the `json.info_` group under `path`. The pure `LeaderDetectorCore` decides; this
/// actor only runs its effects against the session.
public actor ZooKeeperLeaderDetector: MasterDetector {
    public nonisolated let changes: AsyncStream<Leader?>
    private let sink: AsyncStream<Leader?>.Continuation
    private let session: ZooKeeperSession
    private let path: String
    private let ownsSession: Bool
    private let logger: Logger
    private var core: LeaderDetectorCore
    /// Bumped on every (re)connection and session loss, so late results of an older round are ignored.
    private var round = 0
    private var follower: Task<Void, Never>?

    public init(session: ZooKeeperSession, path: String, epochFloor: UInt64 = 0, ownsSession: Bool = false, logger: Logger) {
        self.session = session
        self.path = path
        self.ownsSession = ownsSession
        self.logger = logger
        self.core = LeaderDetectorCore(epochFloor: epochFloor)
        (changes, sink) = AsyncStream.makeStream(of: Leader?.self)
    }

    public var leader: Leader? { core.leader }
    public var epochFloor: UInt64 { core.epochFloor }

    /// For a detector that owns its session: starts it and follows its events. A shared session's
    /// owner calls `sessionEvent` instead.
    public func start() {
        guard ownsSession else { return }
        session.start()
        let events = session.events
        follower = Task { [weak self] in
            for await event in events { await self?.sessionEvent(event) }
        }
    }

    public func stop() async {
        round += 1
        follower?.cancel()
        if ownsSession { await session.close() }
        sink.finish()
    }

    public func hint(_ hint: LeaderHintMessage, from sender: String) {}

    public func sessionEvent(_ event: SessionEvent) {
        switch event {
        case .connected:
            round += 1
            run(core.handle(.connected))
        case .expired, .authFailed:
            round += 1
            run(core.handle(.sessionLost))
        case .disconnected:
            break  // still the same session until it expires (the session times that out locally)
        }
    }

    private func run(_ effects: [LeaderDetectorCore.Effect]) {
        for effect in effects {
            switch effect {
            case .listChildrenAndWatch: spawn { await $0.listChildren(round: $1) }
            case .readMember(let name): spawn { await $0.readMember(name, round: $1) }
            case .report(let leader):
                logger.info("detected leader", metadata: ["leader": "\(leader.map(\.description) ?? "none")"])
                sink.yield(leader)
            case .warn(let message): logger.warning("\(message)")
            }
        }
    }

    /// Work of the current round; it ends on its own once the round is over (watches resolve
    /// with `.sessionLost` when the session goes).
    private func spawn(_ body: @escaping @Sendable (ZooKeeperLeaderDetector, Int) async -> Void) {
        let round = self.round
        Task { await body(self, round) }
    }

    private func listChildren(round: Int) async {
        do {
            let (children, watch) = try await session.watchChildren(path)
            guard round == self.round else { return }
            run(core.handle(.children(children)))
            let event = try await watch.event()
            guard round == self.round, event != .sessionLost else { return }
            await listChildren(round: round)
        } catch let error as ZooKeeperError where error.code == .noNode {
            // No group yet: wait for its creation.
            guard let (stat, watch) = try? await session.watchExists(path), round == self.round else { return }
            run(core.handle(.children([])))
            if stat == nil, (try? await watch.event()) == .sessionLost { return }
            guard round == self.round else { return }
            await listChildren(round: round)
        } catch is CancellationError {
        } catch {
            // Connection loss: the next `.connected` starts a new round. Anything else: retry soon.
            logger.debug("listing \(path) failed: \(error)")
            try? await Task.sleep(for: .milliseconds(200))
            if round == self.round && session.isConnected { await listChildren(round: round) }
        }
    }

    private func readMember(_ name: String, round: Int) async {
        let data: [UInt8]?
        do {
            data = try await session.get(path + "/" + name).data
        } catch let error as ZooKeeperError where error.code == .noNode {
            data = nil
        } catch {
            logger.debug("reading \(name) failed: \(error)")
            data = nil  // the children watch or the next round brings it back
        }
        guard round == self.round else { return }
        run(core.handle(.memberData(name: name, data: data)))
    }
}

/// `--master=host:port`: that master is the leader. Its epoch is learned from its LeaderHint
/// answer to our first message (a master answers a wrong epoch with a hint carrying its own).
public actor FixedMasterDetector: MasterDetector {
    public nonisolated let changes: AsyncStream<Leader?>
    private let sink: AsyncStream<Leader?>.Continuation
    private let port: Int
    /// "master@host:port" as given; replaced by the pid the master itself announces.
    public private(set) var pid: String
    private var epoch: UInt64 = 0

    public init?(hostPort: String) {
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]),
            (1...65535).contains(port), colon > hostPort.startIndex
        else { return nil }
        self.port = port
        pid = "master@\(hostPort)"
        (changes, sink) = AsyncStream.makeStream(of: Leader?.self)
    }

    public func start() { sink.yield(Leader(epoch: epoch, pid: pid)) }
    public func stop() { sink.finish() }

    /// Learns the epoch (and the exact pid, e.g. `localhost` given but `127.0.0.1` announced) from a
    /// hint the configured master sends about itself.
    public func hint(_ hint: LeaderHintMessage, from sender: String) {
        guard let leader = hint.leader, leader.pid == sender, sender.hasSuffix(":\(port)"),
            let e = hint.leaderEpoch, e != epoch || sender != pid
        else { return }
        epoch = e
        pid = sender
        sink.yield(Leader(epoch: e, pid: sender, info: leader))
    }
}
