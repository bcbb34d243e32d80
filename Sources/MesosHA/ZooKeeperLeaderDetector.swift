import Foundation
import Logging
import MesosCore
import MesosDaemon
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
        guard let fixed = FixedMasterDetector(hostPort: master, logger: logger) else {
            throw MasterFlagError(description: "--master must be zk://host:port[,host:port...]/path, file:///path or host:port; got '\(master)'")
        }
        return fixed
    }
}

public struct MasterFlagError: Error, CustomStringConvertible {
    public let description: String
}

/// Follows the `json.info_` group under `path`. The pure `LeaderDetectorCore` decides; this
/// actor only performs its requests against the session and feeds back the results.
public actor ZooKeeperLeaderDetector: MasterDetector {
    public nonisolated let changes: AsyncStream<Leader?>
    private let sink: AsyncStream<Leader?>.Continuation
    private let session: ZooKeeperSession
    private let path: String
    private let ownsSession: Bool
    private let logger: Logger
    private var core: LeaderDetectorCore
    /// Bumped on every (re)connection and session loss: results and watches of an older round
    /// are dropped, so one children watch loop runs at a time.
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
            feed(.connected)
        case .expired, .authFailed:
            round += 1
            feed(.sessionLost)
        case .disconnected:
            break  // still the same session until it expires (the session times that out locally)
        }
    }

    private func feed(_ event: LeaderDetectorCore.Event) {
        for effect in core.handle(event) {
            switch effect {
            case .request(let request):
                let round = self.round
                Task { await self.perform(request, round: round) }
            case .retry(let request, let delay):
                let round = self.round
                Task {
                    try? await Task.sleep(for: delay)
                    if round == self.round { self.feed(.retryDue(request)) }
                }
            case .report(let leader):
                logger.milestone("detector_leader", "detected leader \(leader.map(\.description) ?? "none")",
                    ["epoch": "\(leader?.epoch ?? 0)", "master": "\(leader.map { "\($0.pid)" } ?? "none")"])
                sink.yield(leader)
            case .observe(let observation): logger.observe(observation)
            }
        }
    }

    private func perform(_ request: LeaderDetectorCore.Request, round: Int) async {
        do {
            switch request {
            case .listChildrenAndWatch:
                let (children, watch) = try await session.watchChildren(path)
                guard round == self.round else { return }
                feed(.children(children))
                let event = try await watch.event()
                guard round == self.round, event != .sessionLost else { return }
                feed(.childrenChanged)
            case .watchGroupCreation:
                let (stat, watch) = try await session.watchExists(path)
                guard round == self.round else { return }
                if stat == nil, try await watch.event() == .sessionLost { return }
                guard round == self.round else { return }
                feed(.groupCreated)
            case .readMember(let name):
                let data: [UInt8]?
                do {
                    data = try await session.get(path + "/" + name).data
                } catch let error as ZooKeeperError where error.code == .noNode {
                    data = nil
                }
                guard round == self.round else { return }
                feed(.memberData(name: name, data: data))
            }
        } catch let error as ZooKeeperError where error.code == .noNode && request == .listChildrenAndWatch {
            guard round == self.round else { return }
            feed(.groupMissing)
        } catch is CancellationError {
        } catch {
            guard round == self.round else { return }
            feed(.failed(request, error: "\(error)"))
        }
    }
}

/// `--master=host:port`: that master is the leader. The pure `FixedMasterCore` decides which
/// hints count (only the configured master's own); this actor resolves the host once and reports.
public actor FixedMasterDetector: MasterDetector {
    public nonisolated let changes: AsyncStream<Leader?>
    private let sink: AsyncStream<Leader?>.Continuation
    private var core: FixedMasterCore
    private let logger: Logger

    public init?(hostPort: String, logger: Logger = Logger(label: "mesos.detector")) {
        guard let colon = hostPort.lastIndex(of: ":"), colon > hostPort.startIndex,
            let port = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(port),
            let pid = PID("master@" + Self.resolve(String(hostPort[..<colon])) + ":\(port)")
        else { return nil }
        core = FixedMasterCore(master: pid)
        self.logger = logger
        (changes, sink) = AsyncStream.makeStream(of: Leader?.self)
    }

    public var pid: PID { core.leader.pid }

    public func start() { sink.yield(core.leader) }
    public func stop() { sink.finish() }

    public func hint(_ hint: LeaderHintMessage, from sender: String) {
        guard let leader = core.hint(hint, from: sender) else { return }
        logger.milestone("detector_leader", "master \(leader.pid) leads at epoch \(leader.epoch)", ["epoch": "\(leader.epoch)", "master": "\(leader.pid)"])
        sink.yield(leader)
    }

    /// The IPv4 address a host name resolves to (the address a master announces), or the name.
    static func resolve(_ host: String) -> String {
        if host.hasPrefix("[") && host.hasSuffix("]") { return String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return host }
        defer { freeaddrinfo(result) }
        guard let address = first.pointee.ai_addr else { return host }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        let ok = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin -> Bool in
            var addr = sin.pointee.sin_addr
            return inet_ntop(AF_INET, &addr, &text, socklen_t(INET_ADDRSTRLEN)) != nil
        }
        return ok ? text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : host
    }
}
