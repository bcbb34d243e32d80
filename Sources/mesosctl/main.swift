// Operator and test tool for the leader group in ZooKeeper.
import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import MesosDaemon
import MesosCore
import MesosHA
import MesosWire
import ZooKeeper

@main
struct MesosCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesosctl",
        abstract: "Inspect (and, for tests, join) the Mesos master leader group.",
        subcommands: [LeaderCommand.self, ResolveCommand.self, StateCommand.self, WatchCommand.self, ContendCommand.self])
}

struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("master"), help: "zk://[user:pass@]host:port[,host:port...]/path, file:///path, or host:port.")
    var master: String
    @Option(name: .customLong("zk_session_timeout"), help: "ZooKeeper session timeout (Mesos duration, e.g. 10secs).")
    var sessionTimeout: String = "10secs"
    @Option(name: .customLong("log_level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel: String = "warning"

    func detector() throws -> any MasterDetector {
        try DaemonLogging.bootstrap(level: logLevel)
        let timeout = try MesosDuration.flag(sessionTimeout, name: "zk_session_timeout")
        return try MasterDetectors.make(master: master, sessionTimeout: timeout, logger: Logger(label: "mesosctl"))
    }
}

func describe(_ leader: Leader?) -> String {
    guard let leader else { return "{\"leader\":null}" }
    let info = leader.info.map { String(decoding: MasterInfoJSON.encode($0), as: UTF8.self) } ?? "null"
    return "{\"epoch\":\(leader.epoch),\"pid\":\"\(leader.pid)\",\"info\":\(info)}"
}

/// The first leader the detector reports within `timeout` (nil: none).
/// The leader, or exit 1 with a message on stderr when none is found within `timeout`.
func requireLeader(_ common: CommonOptions, timeout: String) async throws -> Leader {
    guard let leader = try await findLeader(common, timeout: timeout) else {
        FileHandle.standardError.write(Data("no leading master within \(timeout)\n".utf8))
        throw ExitCode(1)
    }
    return leader
}

func findLeader(_ common: CommonOptions, timeout: String) async throws -> Leader? {
    let detector = try common.detector()
    let wait = try MesosDuration.flag(timeout, name: "timeout")
    await detector.start()
    let found = await withTaskGroup(of: Leader?.self) { group in
        group.addTask { for await l in detector.changes where l != nil { return l }; return nil }
        group.addTask { try? await Task.sleep(for: wait); return nil }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
    await detector.stop()
    return found
}

struct LeaderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "leader", abstract: "Print the current leader as JSON (exit 1 if none within --timeout).")
    @OptionGroup var common: CommonOptions
    @Option(help: "How long to wait for a leader (Mesos duration).") var timeout: String = "5secs"

    func run() async throws {
        let found = try await findLeader(common, timeout: timeout)
        print(describe(found))
        if found == nil { throw ExitCode(1) }
    }
}

/// `mesos-resolve`: the leading master's `ip:port`.
struct ResolveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resolve", abstract: "Print the leading master's ip:port, as mesos-resolve does (exit 1 if none within --timeout).")
    @OptionGroup var common: CommonOptions
    @Option(help: "How long to wait for a leader (Mesos duration).") var timeout: String = "5secs"

    func run() async throws {
        let leader = try await requireLeader(common, timeout: timeout)
        print("\(leader.pid.host):\(leader.pid.port)")
    }
}

/// The leading master's `/master/state`, fetched over HTTP from the leader the detector reports.
struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "state", abstract: "Print the leading master's /master/state JSON (exit 1 if there is none or it does not answer).")
    @OptionGroup var common: CommonOptions
    @Option(help: "How long to wait for a leader, and for its answer (Mesos duration).") var timeout: String = "5secs"

    func run() async throws {
        let leader = try await requireLeader(common, timeout: timeout)
        guard let url = URL(string: "http://\(leader.pid.host):\(leader.pid.port)/master/state") else { throw ExitCode(1) }
        var request = URLRequest(url: url)
        request.timeoutInterval = try MesosDuration.flag(timeout, name: "timeout").inSeconds
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let http = response as? HTTPURLResponse, http.statusCode == 200 else {
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            FileHandle.standardError.write(Data("\(url) answered \(status): \(String(decoding: data, as: UTF8.self))\n".utf8))
            throw ExitCode(1)
        }
        print(String(decoding: data, as: UTF8.self))
    }
}

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch", abstract: "Print every leader change, one JSON line each, until interrupted.")
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let detector = try common.detector()
        let signals = TerminationSignals { _ in Foundation.exit(0) }
        await detector.start()
        for await leader in detector.changes {
            print("{\"time\":\"\(ISO8601DateFormatter().string(from: Date()))\",\"change\":\(describe(leader))}")
            fflush(nil)
        }
        withExtendedLifetime(signals) {}
    }
}

/// Joins the group as a master would, without serving anything: an election probe for tests
/// and benchmarks. Prints `ELECTED <epoch>` / `LOST <reason>`; SIGTERM withdraws and exits 0.
struct ContendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "contend", abstract: "Join the leader group and report election (test probe).")
    @Option(help: "zk:// URL of the group.") var zk: String
    @Option(help: "The id and pid this member publishes.") var id: String = "probe-\(getpid())"
    @Option(name: .customLong("zk_session_timeout")) var sessionTimeout: String = "10secs"
    @Option(name: .customLong("log_level")) var logLevel: String = "warning"

    func run() async throws {
        try DaemonLogging.bootstrap(level: logLevel)
        let url = try ZooKeeperURL(parsing: zk)
        let timeout = try MesosDuration.flag(sessionTimeout, name: "zk_session_timeout")
        let logger = Logger(label: "mesosctl.contend")
        let session = ZooKeeperSession(url: url, sessionTimeout: timeout, logger: logger)
        var info = MasterInfo(id: id, ip: MasterInfoJSON.packedIPv4("127.0.0.1")!, port: 5050)
        info.pid = "\(id)@127.0.0.1:5050"
        info.hostname = "localhost"
        let contender = ZooKeeperLeaderContender(session: session, path: url.path, info: info, logger: logger)
        // Withdrawing ends `outcomes`, and so the loop below, which then closes the session.
        let signals = TerminationSignals { _ in Task { await contender.withdraw() } }
        session.start()
        let events = session.events
        Task { for await e in events { await contender.sessionEvent(e) } }
        await contender.start(ledInRegistry: 0, ledHere: 0)
        for await outcome in contender.outcomes {
            switch outcome {
            case .elected(let epoch): print("ELECTED \(epoch)")
            case .lost(let reason): print("LOST \(reason)"); fflush(nil); throw ExitCode(1)
            }
            fflush(nil)
        }
        // Only a withdraw (SIGTERM) ends the outcomes without LOST: the znode is deleted.
        await session.close()
        print("WITHDRAWN"); fflush(nil)
        withExtendedLifetime(signals) {}
    }
}
