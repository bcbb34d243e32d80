import Logging
import MesosWire
import ZooKeeper

/// One master's candidacy in the `json.info_` group under `path`, on a session the caller owns
/// and feeds (`sessionEvent`). The pure `LeaderContenderCore` decides; this actor runs its effects.
public actor ZooKeeperLeaderContender {
    public enum Outcome: Sendable, Hashable {
        case elected(epoch: UInt64)
        /// Terminal. A leading master must exit.
        case lost(reason: String)
    }

    public nonisolated let outcomes: AsyncStream<Outcome>
    private let sink: AsyncStream<Outcome>.Continuation
    private let session: ZooKeeperSession
    private let path: String
    private let data: [UInt8]
    private let logger: Logger
    private var core: LeaderContenderCore
    private var startWhenConnected = false

    /// - data: this master's MasterInfo as JSON (what detectors read).
    public init(session: ZooKeeperSession, path: String, info: MasterInfo, epochFloor: UInt64 = 0, logger: Logger) {
        self.session = session
        self.path = path
        self.data = MasterInfoJSON.encode(info)
        self.logger = logger
        self.core = LeaderContenderCore(epochFloor: epochFloor)
        (outcomes, sink) = AsyncStream.makeStream(of: Outcome.self)
    }

    /// Our membership znode's name, once joined.
    public var membership: String? {
        switch core.state {
        case .contending(let name), .leading(let name, _): name
        default: nil
        }
    }

    public var membershipPath: String? { membership.map { path + "/" + $0 } }

    /// Joins the group once the session is connected.
    public func start() {
        if session.isConnected { run(core.handle(.start)) } else { startWhenConnected = true }
    }

    /// Deletes the membership znode at once (a standby takes over in milliseconds).
    public func withdraw() async {
        for effect in core.handle(.withdraw) {
            if case .deleteMembership(let name) = effect { await delete(name) }
        }
        sink.finish()
    }

    public func sessionEvent(_ event: SessionEvent) {
        switch event {
        case .expired, .authFailed: run(core.handle(.sessionLost))
        case .connected:
            if startWhenConnected {
                startWhenConnected = false
                run(core.handle(.start))
            }
        case .disconnected: break
        }
    }

    private func run(_ effects: [LeaderContenderCore.Effect]) {
        for effect in effects {
            switch effect {
            case .createMembership: Task { await self.join() }
            case .listChildren: Task { await self.listChildren() }
            case .watchPredecessor(let name): Task { await self.watch(name, own: false) }
            case .watchMembership(let name): Task { await self.watch(name, own: true) }
            case .deleteMembership(let name): Task { await self.delete(name) }
            case .elected(let epoch):
                logger.info("elected leader", metadata: ["epoch": "\(epoch)", "znode": "\(path)/\(membership ?? "?")"])
                sink.yield(.elected(epoch: epoch))
            case .lost(let reason):
                logger.warning("candidacy lost: \(reason)")
                sink.yield(.lost(reason: reason))
                sink.finish()
            }
        }
    }

    private func join() async {
        do {
            try await session.createPath(path)
            try await passEpochFloor()
            let created = try await session.create(path + "/" + LeaderGroup.label, data: data, mode: .ephemeralSequential)
            run(core.handle(.joined(String(created.split(separator: "/").last ?? ""))))
        } catch {
            run(core.handle(.sessionLost))
            logger.error("cannot join the leader group at \(path): \(error)")
        }
    }

    /// Moves the group's sequence counter up to the epoch floor with znodes that are not members, before
    /// creating ours (whose sequence is then above the floor): a member znode at or below the floor, burnt
    /// by the core, would meanwhile be read by detectors as this master leading at that epoch (every fresh
    /// group's first master at epoch 0). Costs one create and delete when the counter is past the floor.
    private func passEpochFloor() async throws {
        while true {
            let burnt = try await session.create(path + "/burnt_", mode: .ephemeralSequential)
            try? await session.delete(burnt)
            guard let sequence = burnt.split(separator: "_").last.flatMap({ UInt64($0) }) else { return }
            if sequence >= core.epochFloor { return }
        }
    }

    private func listChildren() async {
        do {
            run(core.handle(.children(try await session.children(path))))
        } catch {
            logger.warning("listing the leader group failed: \(error); retrying")
            try? await Task.sleep(for: .milliseconds(200))
            if case .contending = core.state { await listChildren() }
        }
    }

    private func watch(_ name: String, own: Bool) async {
        do {
            let (stat, watch) = try await session.watchExists(path + "/" + name)
            if stat == nil {
                run(core.handle(own ? .membershipDeleted : .predecessorGone))
                return
            }
            switch try await watch.event() {
            case .deleted: run(core.handle(own ? .membershipDeleted : .predecessorGone))
            case .sessionLost: break  // the session event ends the candidacy
            default: await self.watch(name, own: own)  // data changed etc.: watch again
            }
        } catch is CancellationError {
        } catch {
            logger.warning("watching \(name) failed: \(error); retrying")
            try? await Task.sleep(for: .milliseconds(200))
            switch core.state {
            case .contending, .leading: await self.watch(name, own: own)
            default: break
            }
        }
    }

    private func delete(_ name: String) async {
        do {
            try await session.delete(path + "/" + name)
        } catch let error as ZooKeeperError where error.code == .noNode {
        } catch {
            logger.warning("deleting \(path)/\(name) failed: \(error) (it goes with the session)")
        }
    }
}
