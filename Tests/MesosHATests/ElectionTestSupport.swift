// Helpers for ElectionIntegrationTests: candidates and detectors on their own ZooKeeper sessions,
// a harness that closes every session it made (also when the test fails), ZooKeeper four-letter words
// (`ZooKeeperServer.fourLetterWord`).
import Foundation
import Logging
import MesosCore
import MesosHA
import MesosWire
import Synchronization
import TestSupport
import ZooKeeper

#if canImport(Glibc)
import Glibc
#endif

/// Quiet unless `HA_TEST_LOG` is set (then swift-log's default handler, debug level): connection-refused
/// errors and expiries are what these tests provoke.
let electionLogger: Logger = {
    guard ProcessInfo.processInfo.environment["HA_TEST_LOG"] != nil else {
        return Logger(label: "election-it") { _ in SwiftLogNoOpLogHandler() }
    }
    var logger = Logger(label: "election-it")
    logger.logLevel = .debug
    return logger
}()

/// The MasterInfo a test master publishes: id `name`, pid `master-<name>@127.0.0.1:<port>`.
func testMasterInfo(_ name: String, port: UInt32) -> MasterInfo {
    MasterInfo(
        id: "id-\(name)", ip: MasterInfoJSON.packedIPv4("127.0.0.1")!, port: port,
        pid: "master-\(name)@127.0.0.1:\(port)", hostname: "localhost", version: "1.11.0")
}

/// One master's candidacy on its own session, with the master's own detector on that same session; both
/// are fed every session event, detector first (as `MasterDaemon` does). Each event is logged once both
/// have taken it in, with the leader the detector held right after it: a logged event is a positive signal
/// that the candidate processed it.
final class Candidate: Sendable {
    let name: String
    let info: MasterInfo
    let session: ZooKeeperSession
    let contender: ZooKeeperLeaderContender
    let outcomes: EventRecorder<ZooKeeperLeaderContender.Outcome>
    /// This master's own detector (shared session, not owning it).
    let detector: DetectorProbe
    /// The session's events with their arrival times, recorded after the contender got them.
    private let sessionLog = SessionLog()
    private let feeder: Task<Void, Never>
    private let epochFloor: UInt64

    init(name: String, port: UInt32, servers: String, path: String, sessionTimeout: Duration, epochFloor: UInt64) {
        self.name = name
        self.epochFloor = epochFloor
        info = testMasterInfo(name, port: port)
        session = ZooKeeperSession(servers: servers, sessionTimeout: sessionTimeout, logger: electionLogger)
        let contender = ZooKeeperLeaderContender(
            session: session, path: path, info: info, logger: electionLogger)
        self.contender = contender
        outcomes = EventRecorder(contender.outcomes)
        let detector = DetectorProbe(session: session, path: path, ownsSession: false)
        self.detector = detector
        let events = session.events, log = sessionLog
        feeder = Task {
            for await event in events {
                await detector.detector.sessionEvent(event)
                let leader = await detector.detector.leader
                await contender.sessionEvent(event)
                log.append(event, detectorLeader: leader)
            }
        }
    }

    func start() async {
        session.start()
        await contender.start(ledInRegistry: 0, ledHere: epochFloor)
    }

    var pid: String { info.pid! }

    /// Our znode's name (`json.info_NNNNNNNNNN`), waiting until joined.
    func membership(within timeout: Duration = .seconds(10)) async throws -> String {
        var name: String?
        try await Poll.until("\(self.name) joined the group", timeout: timeout) {
            name = await contender.membershipPath.map { String($0.split(separator: "/").last ?? "") }
            return name != nil
        }
        return name!
    }

    /// Waits for the next outcome (elected or lost).
    func nextOutcome(within timeout: Duration) async throws -> EventRecorder<ZooKeeperLeaderContender.Outcome>.Arrival {
        try await outcomes.next(within: timeout)
    }

    var elections: [UInt64] {
        outcomes.events.compactMap { if case .elected(let epoch) = $0 { epoch } else { nil } }
    }

    var losses: [LeadershipLoss] {
        outcomes.events.compactMap { if case .lost(let reason) = $0 { reason } else { nil } }
    }

    var sessionEvents: [SessionEvent] { sessionLog.entries.map(\.event) }

    /// The session events with the leader this candidate's detector held right after taking each in.
    var sessionTimeline: [(event: SessionEvent, detectorLeader: Leader?)] {
        sessionLog.entries.map { ($0.event, $0.detectorLeader) }
    }

    /// The id of the session's first connection (nil before it connected).
    var sessionID: Int64? {
        for event in sessionEvents { if case .connected(let id, _) = event { return id } }
        return nil
    }

    /// Whether the session is connected and, if it lost its server since `start`, came back as the same
    /// session (`.connected` with the first session id is the last event since then).
    func reconnectedToTheSameSession(since start: ContinuousClock.Instant) -> Bool {
        guard session.isConnected, let id = sessionID else { return false }
        guard let last = sessionLog.entries.last(where: { $0.time >= start }) else { return true }
        if case .connected(let now, _) = last.event { return now == id }
        return false
    }

    var expiries: Int {
        sessionEvents.filter { if case .expired = $0 { true } else { false } }.count
    }

    /// The longest time the session spent disconnected (from `.disconnected` to the next event) since `start`.
    func longestDisconnection(since start: ContinuousClock.Instant) -> Duration {
        let entries = sessionLog.entries
        var longest = Duration.zero
        for (index, entry) in entries.enumerated() where entry.event == .disconnected && entry.time >= start {
            let end = index + 1 < entries.count ? entries[index + 1].time : .now
            longest = max(longest, end - entry.time)
        }
        return longest
    }

    func close() async {
        await session.close()
        await feeder.value
        await detector.stop()
    }
}

private final class SessionLog: Sendable {
    typealias Entry = (event: SessionEvent, detectorLeader: Leader?, time: ContinuousClock.Instant)
    private let log = Mutex<[Entry]>([])
    func append(_ event: SessionEvent, detectorLeader: Leader?) { log.withLock { $0.append((event, detectorLeader, .now)) } }
    var entries: [Entry] { log.withLock { $0 } }
}

/// A milestone a core observed (`logger.observe`): its `event=` key and fields.
struct Observed: Sendable, Hashable, CustomStringConvertible {
    let event: String
    let fields: [String: String]
    var description: String { "event=\(event) \(fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))" }
}

/// Records the milestones logged through its loggers (and passes every line on to `electionLogger`).
final class ObservationLog: Sendable {
    private let observed = Mutex<[Observed]>([])

    var all: [Observed] { observed.withLock { $0 } }

    func logger(_ label: String) -> Logger {
        Logger(label: label) { _ in Handler(log: self) }
    }

    fileprivate func record(_ event: LogEvent) {
        let metadata = event.metadata ?? [:]
        if let key = metadata["event"] {
            var fields: [String: String] = [:]
            for (name, value) in metadata where name != "event" { fields[name] = "\(value)" }
            observed.withLock { $0.append(Observed(event: "\(key)", fields: fields)) }
        }
        electionLogger.log(level: event.level, event.message, metadata: event.metadata)
    }

    private struct Handler: LogHandler {
        let log: ObservationLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var event = event
            event.metadata = metadata.merging(event.metadata ?? [:]) { $1 }
            log.record(event)
        }
    }
}

/// A `ZooKeeperLeaderDetector` (owning its session, or on a candidate's), its changes and the milestones
/// it observed recorded.
final class DetectorProbe: Sendable {
    let detector: ZooKeeperLeaderDetector
    let changes: EventRecorder<Leader?>
    /// The session the detector runs on.
    let session: ZooKeeperSession
    let observations = ObservationLog()

    init(session: ZooKeeperSession, path: String, epochFloor: UInt64 = 0, ownsSession: Bool) {
        self.session = session
        detector = ZooKeeperLeaderDetector(
            session: session, path: path, epochFloor: epochFloor, ownsSession: ownsSession,
            logger: observations.logger("election-it.detector"))
        changes = EventRecorder(detector.changes)
    }

    /// A detector owning its session.
    convenience init(servers: String, path: String, sessionTimeout: Duration, epochFloor: UInt64 = 0) {
        let session = ZooKeeperSession(servers: servers, sessionTimeout: sessionTimeout, logger: electionLogger)
        self.init(session: session, path: path, epochFloor: epochFloor, ownsSession: true)
    }

    /// Waits until the detector observed `event` with `fields` (e.g. `detector_below_floor` for a znode):
    /// a positive signal that it read the group and decided.
    @discardableResult
    func waitForObservation(_ event: String, _ fields: [String: String] = [:], timeout: Duration) async throws -> Observed {
        var found: Observed?
        do {
            try await Poll.until("detector observes \(event) \(fields)", timeout: timeout) {
                found = observations.all.first { seen in seen.event == event && fields.allSatisfy { seen.fields[$0.key] == $0.value } }
                return found != nil
            }
        } catch {
            throw Unexpected("\(error); observed: \(observations.all)")
        }
        return found!
    }

    /// Starts a detector owning its session (a shared session's detector follows the events fed to it).
    func start() async { await detector.start() }
    func stop() async { await detector.stop() }

    /// Takes reported changes in order until one satisfies `condition`; returns it.
    @discardableResult
    func next(
        _ what: String, within timeout: Duration, where condition: (Leader?) -> Bool
    ) async throws -> EventRecorder<Leader?>.Arrival {
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - .now
            do {
                guard remaining > .zero else { throw Unexpected("out of time") }
                let arrival = try await changes.next(within: remaining)
                if condition(arrival.event) { return arrival }
            } catch {
                throw Unexpected(
                    "timed out after \(timeout) waiting for \(what); changes so far: \(changes.events.map { $0?.description ?? "none" })")
            }
        }
    }

    @discardableResult
    func nextLeader(_ pid: String, within timeout: Duration) async throws -> (leader: Leader, time: ContinuousClock.Instant) {
        let arrival = try await next("detector reports \(pid)", within: timeout) { $0?.pid.description == pid }
        return (arrival.event!, arrival.time)
    }
}

/// Candidates and detectors of one test against one ZooKeeper; `shutdown` closes all their sessions.
final class ElectionHarness: Sendable {
    let servers: String
    let path: String
    let sessionTimeout: Duration
    private let made = Mutex<(candidates: [Candidate], detectors: [DetectorProbe], nextPort: UInt32)>(([], [], 5050))

    init(servers: String, path: String, sessionTimeout: Duration) {
        self.servers = servers
        self.path = path
        self.sessionTimeout = sessionTimeout
    }

    /// `zk://servers/path`
    var url: String { "zk://\(servers)\(path)" }

    /// A started candidate (joining as soon as its session connects).
    func candidate(_ name: String, epochFloor: UInt64 = 0) async -> Candidate {
        let port = made.withLock { made in
            defer { made.nextPort += 1 }
            return made.nextPort
        }
        let candidate = Candidate(
            name: name, port: port, servers: servers, path: path, sessionTimeout: sessionTimeout, epochFloor: epochFloor)
        made.withLock { $0.candidates.append(candidate) }
        await candidate.start()
        return candidate
    }

    /// Candidates started one after the other, each joined before the next starts, so their
    /// sequences follow the order of `names`.
    func candidatesInOrder(_ names: [String]) async throws -> [Candidate] {
        var result: [Candidate] = []
        for name in names {
            let candidate = await candidate(name)
            _ = try await candidate.membership()
            result.append(candidate)
        }
        return result
    }

    func detector(epochFloor: UInt64 = 0) async -> DetectorProbe {
        let probe = DetectorProbe(servers: servers, path: path, sessionTimeout: sessionTimeout, epochFloor: epochFloor)
        made.withLock { $0.detectors.append(probe) }
        await probe.start()
        return probe
    }

    /// A session of the test's own (for reading the group), closed by `shutdown`.
    func inspector() async throws -> ZooKeeperSession {
        let probe = Candidate(
            name: "inspector", port: 1, servers: servers, path: path, sessionTimeout: .seconds(10), epochFloor: 0)
        made.withLock { $0.candidates.append(probe) }
        probe.session.start()
        try await Poll.until("inspector session connected") { probe.session.isConnected }
        return probe.session
    }

    /// The `json.info_` members of the group, lowest first.
    func members(using session: ZooKeeperSession) async throws -> [(name: String, sequence: UInt64)] {
        LeaderGroup.members(try await session.children(path))
    }

    /// `mesosctl contend` in the group (a master's candidacy in its own process), logging to `logs`.
    /// It publishes the pid `<name>@127.0.0.1:5050`.
    func contendProcess(_ name: String, logs: URL) throws -> Daemon {
        try Daemon(
            name, executable: Products.path("mesosctl"),
            arguments: ["contend", "--zk", url, "--id", name, "--zk_session_timeout", "\(sessionTimeout.milliseconds)ms"],
            logDirectory: logs)
    }

    /// Waits until `group.members` has `count` members.
    func waitForMembers(_ count: Int, _ what: String, using session: ZooKeeperSession, timeout: Duration) async throws {
        try await Poll.until(what, timeout: timeout) { try await members(using: session).count == count }
    }

    func shutdown() async {
        let (candidates, detectors) = made.withLock { ($0.candidates, $0.detectors) }
        for candidate in candidates { await candidate.close() }
        for detector in detectors { await detector.stop() }
    }
}

/// A fresh ZooKeeper (see `withZooKeeper`) and a harness for the group `/mesos` on it; every session the
/// harness made is closed before the servers are killed, whether `body` returns or throws.
func withElectionGroup<T>(
    _ topology: ZooKeeperServer.Topology = .standalone, sessionTimeout: Duration = .seconds(1),
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ElectionHarness, ZooKeeperServer) async throws -> T
) async throws -> T {
    ZooKeeperClientLibrary.routeLog(to: electionLogger)
    return try await withZooKeeper(topology) { server in
        let harness = ElectionHarness(servers: server.connectString, path: "/mesos", sessionTimeout: sessionTimeout)
        do {
            let result = try await body(harness, server)
            await harness.shutdown()
            return result
        } catch {
            await harness.shutdown()
            throw error
        }
    }
}

/// A scratch directory under $TMPDIR for daemon logs; removed by the caller.
func scratchDirectory(_ label: String) -> URL {
    FileManager.default.temporaryDirectory.appending(path: "\(label)-\(UUID().uuidString)")
}

/// The epoch of the first `ELECTED <epoch>` line of a `mesosctl contend` log, waiting for it.
func electedEpoch(_ daemon: Daemon, within timeout: Duration) async throws -> UInt64 {
    let line = try await daemon.waitForLog("ELECTED", timeout: timeout)
    guard let epoch = line.split(separator: " ").last.flatMap({ UInt64($0) }) else { throw Unexpected("\(daemon.name): \(line)") }
    return epoch
}

struct Unexpected: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    /// MesosWire's `milliseconds`, under the short name the election tests report with.
    var ms: Int64 { milliseconds }
}

// MARK: ZooKeeper four-letter words

/// A session id as ZooKeeper's four-letter words print it (`0x` and lowercase hex, like Java's `Long.toHexString`).
func sessionHex(_ id: Int64) -> String { "0x" + String(UInt64(bitPattern: id), radix: 16) }

/// Waits until `watcher`'s session has a watch on `znode` of the group (`wchp` on the server at `port`).
/// For a contender that is a positive signal: it took in the group's children and now waits on `znode`.
func waitUntil(
    _ watcher: Candidate, watches znode: String, in group: ElectionHarness, port: Int, timeout: Duration = .seconds(10)
) async throws {
    let path = "\(group.path)/\(znode)"
    var seen: Set<String> = []
    do {
        try await Poll.until("\(watcher.name) watches \(znode)", timeout: timeout) {
            guard let id = watcher.sessionID else { return false }
            seen = try watchesByPath(port: port)[path] ?? []
            return seen.contains(sessionHex(id))
        }
    } catch {
        throw Unexpected("\(error); watchers of \(path): \(seen), \(watcher.name)'s session: \(watcher.sessionID.map(sessionHex) ?? "none")")
    }
}

/// `wchp`: the sessions watching each path (data, exists and child watches alike). The server lists
/// its data watches and its child watches in two sections, so a path can appear twice: the sessions
/// under both are merged (reading the second as a fresh list hid the other section's watchers).
func watchesByPath(port: Int) throws -> [String: Set<String>] {
    var result: [String: Set<String>] = [:]
    var current: String?
    for line in try ZooKeeperServer.fourLetterWord("wchp", port: port).split(whereSeparator: \.isNewline) {
        if line.hasPrefix("/") {
            current = String(line)
            if result[String(line)] == nil { result[String(line)] = [] }
        } else if let path = current {
            let session = line.trimmingCharacters(in: .whitespaces)
            if !session.isEmpty { result[path, default: []].insert(session) }
        }
    }
    return result
}


/// `Mode: leader|follower|standalone` of the server at `port` (nil when it does not answer).
func serverMode(port: Int) -> String? { ZooKeeperServer.mode(port: port) }
