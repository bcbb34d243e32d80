import Logging
import MesosCore
import MesosDaemon
import MesosWire
import ZooKeeper

/// One master's candidacy in the `json.info_` group under `path`, on a session the caller owns
/// and feeds (`sessionEvent`). The pure `LeaderContenderCore` decides; this actor only performs
/// the ZooKeeper requests it returns and feeds back their results.
public actor ZooKeeperLeaderContender {
    public enum Outcome: Sendable, Hashable {
        case elected(epoch: UInt64)
        /// Terminal. A leading master must exit.
        case lost(LeadershipLoss)
    }

    public nonisolated let outcomes: AsyncStream<Outcome>
    private let sink: AsyncStream<Outcome>.Continuation
    private let session: ZooKeeperSession
    private let path: String
    private let data: [UInt8]
    private let logger: Logger
    private var core = LeaderContenderCore()
    private var pendingStart: LeaderContenderCore.Event?

    /// - info: this master's MasterInfo (what detectors read, as JSON).
    public init(session: ZooKeeperSession, path: String, info: MasterInfo, logger: Logger) {
        self.session = session
        self.path = path
        self.data = MasterInfoJSON.encode(info)
        self.logger = logger
        (outcomes, sink) = AsyncStream.makeStream(of: Outcome.self)
    }

    /// Our membership znode's name, once joined.
    public var membership: String? { core.membership }

    /// Our membership znode's full path, once joined (what fenced registry writes check).
    public var membershipPath: String? { core.membership.map { path + "/" + $0 } }

    /// Joins the group once the session is connected, never to lead at or below an epoch led.
    public func start(ledInRegistry: UInt64, ledHere: UInt64) {
        let start = LeaderContenderCore.Event.start(ledInRegistry: ledInRegistry, ledHere: ledHere)
        if session.isConnected { feed(start) } else { pendingStart = start }
    }

    /// Deletes the membership znode at once (a standby takes over in milliseconds).
    public func withdraw() async {
        for effect in core.handle(.withdraw) {
            if case .request(.delete(let name)) = effect { await delete(name) }
        }
        sink.finish()
    }

    public func sessionEvent(_ event: SessionEvent) {
        switch event {
        case .expired, .authFailed: feed(.sessionLost)
        case .connected:
            if let start = pendingStart {
                pendingStart = nil
                feed(start)
            }
        case .disconnected: break
        }
    }

    private func feed(_ event: LeaderContenderCore.Event) {
        for effect in core.handle(event) {
            switch effect {
            case .request(let request): Task { await self.perform(request) }
            case .retry(let request, let delay):
                Task {
                    try? await Task.sleep(for: delay)
                    self.feed(.retryDue(request))
                }
            case .observe(let observation): logger.observe(observation)
            case .elected(let epoch): sink.yield(.elected(epoch: epoch))
            case .lost(let loss):
                sink.yield(.lost(loss))
                sink.finish()
            }
        }
    }

    private func perform(_ request: LeaderContenderCore.Request) async {
        do {
            switch request {
            case .createFloorMarker:
                try await session.createPath(path)
                feed(.floorMarkerCreated(name(try await session.create(path + "/" + LeaderGroup.floorMarkerPrefix, mode: .ephemeralSequential))))
            case .createMembership:
                try await session.createPath(path)
                feed(.joined(name(try await session.create(path + "/" + LeaderGroup.label, data: data, mode: .ephemeralSequential))))
            case .listChildren:
                feed(.children(try await session.children(path)))
            case .watchPredecessor(let node):
                if try await deleted(node) { feed(.predecessorGone) }
            case .watchMembership(let node):
                if try await deleted(node) { feed(.membershipDeleted) }
            case .delete(let node):
                await delete(node)
            }
        } catch is CancellationError {
        } catch let error as ZooKeeperError {
            feed(.failed(request, retryable: error.code == .connectionLoss || error.code == .operationTimeout, error: "\(error)"))
        } catch {
            feed(.failed(request, retryable: false, error: "\(error)"))
        }
    }

    /// Waits until `node` is deleted (true), or the session goes (false: the session event ends it).
    private func deleted(_ node: String) async throws -> Bool {
        while true {
            let (stat, watch) = try await session.watchExists(path + "/" + node)
            if stat == nil { return true }
            switch try await watch.event() {
            case .deleted: return true
            case .sessionLost: return false
            default: continue  // data changed: watch again
            }
        }
    }

    private func delete(_ node: String) async {
        do {
            try await session.delete(path + "/" + node)
        } catch let error as ZooKeeperError where error.code == .noNode {
        } catch {
            feed(.failed(.delete(node), retryable: false, error: "\(error)"))
        }
    }

    private func name(_ created: String) -> String { String(created.split(separator: "/").last ?? "") }
}
