import Foundation
import MesosDaemon
import ProcessSupport
import Synchronization

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Milliseconds since the epoch (CLOCK_REALTIME), the clock agent-swarm and the baselines print.
func nowMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// `date` in milliseconds since the epoch, as `nowMs()`.
func epochMs(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }

/// Microsecond resolution, for the ZooKeeper floor.
func nowUs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

func say(_ text: String) {
    let f = DateFormatter()
    f.dateFormat = "HH:mm:ss.SSS"
    FileHandle.standardError.write(Data("[\(f.string(from: Date()))] \(text)\n".utf8))
}

/// Appends one JSON object per line.
final class JSONLines: Sendable {
    private let path: String
    private let lock = Mutex(())

    init(path: String) { self.path = path }

    func append(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        lock.withLock { _ in
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            guard let h = FileHandle(forWritingAtPath: path) else { return }
            h.seekToEndOfFile()
            h.write(data + Data("\n".utf8))
            try? h.close()
        }
    }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    if p >= 1 { return sorted.last! }
    let rank = p * Double(sorted.count - 1)
    let lo = Int(rank.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - Double(lo))
}

/// ZooKeeper's four-letter words (the test configuration whitelists them): `mntr` as key/values.
enum FourLetterWords {
    static func mntr(port: Int) -> [String: Int64] {
        var values: [String: Int64] = [:]
        for line in ((try? ZooKeeperServer.fourLetterWord("mntr", port: port)) ?? "").split(separator: "\n") {
            let kv = line.split(separator: "\t")
            if kv.count == 2, let v = Int64(kv[1]) { values[String(kv[0])] = v }
        }
        return values
    }

    /// Requests the servers received so far (`zk_packets_received`, summed over the servers).
    static func packetsReceived(ports: [Int]) -> Int64? {
        let counts = ports.compactMap { mntr(port: $0)["zk_packets_received"] }
        return counts.count == ports.count ? counts.reduce(0, +) : nil
    }
}

/// Every process the harness started (masters, swarms) and every task the agents reported, so that
/// a SIGTERM or SIGINT of the harness stops them as `Cluster.stop` does: a run stopped by hand
/// leaves nothing behind on the machine.
enum Children {
    private static let known = Mutex<(daemons: Set<pid_t>, swarms: Set<pid_t>, tasks: Set<pid_t>)>(([], [], []))

    static func daemon(_ pid: pid_t) { known.withLock { _ = $0.daemons.insert(pid) } }
    /// Swarms get a SIGTERM first: their agents then kill their executors and tasks.
    static func swarm(_ pid: pid_t) { known.withLock { _ = $0.swarms.insert(pid) } }
    static func task(_ pid: pid_t) { known.withLock { _ = $0.tasks.insert(pid) } }

    /// SIGTERM to the swarms, up to 15 s for them to end, then SIGKILL to everything left: the
    /// executors the swarms started (each leads its own session; the framework checkpoints, so they
    /// would wait 15 minutes for their agent) and the tasks, by their process groups.
    static func stopAll() {
        let (daemons, swarms, tasks) = known.withLock { $0 }
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
        let executors = pids.filter { ProcessProbe.stat($0).map { swarms.contains($0.parent) } ?? false }
        say("  stopping \(swarms.count) swarm(s), \(executors.count) executor(s), \(daemons.count) master(s), \(tasks.count) task(s)")
        for p in swarms { kill(p, SIGTERM) }
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, swarms.contains(where: { ProcessProbe.isRunning($0, program: "agent-swarm") }) { usleep(100_000) }
        for p in swarms.union(daemons) { kill(p, SIGKILL) }
        // Each executor leads its own session, with its task (in a group of its own) in it.
        for e in executors { for p in ProcessProbe.members(ofSession: e) { kill(p, SIGKILL) } }
        for t in tasks { kill(-t, SIGKILL) }
    }
}

/// The kernel's count of connections dropped because a listen queue was full (TcpExt
/// ListenOverflows in /proc/net/netstat), machine-wide: a dropped handshake costs its client a
/// SYN retransmission, 1 s or more.
enum ListenQueue {
    static func overflows() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/net/netstat", encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("TcpExt:") }
        guard lines.count >= 2 else { return nil }
        let names = lines[0].split(separator: " "), values = lines[1].split(separator: " ")
        guard let i = names.firstIndex(of: "ListenOverflows"), i < values.count else { return nil }
        return Int(values[i])
    }
}

/// A master's bus counters (`bus/...` of its /metrics/snapshot), read with curl: where a
/// failover's messages waited (paused reads, held sends, return routes).
enum BusCounters {
    static func of(port: Int) -> [String: Double]? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-sf", "--max-time", "5", "http://127.0.0.1:\(port)/metrics/snapshot"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let all = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        var bus: [String: Double] = [:]
        for (k, v) in all where k.hasPrefix("bus/") || k == "master/messages_held_during_recovery" {
            if let n = v as? Double { bus[k] = n } else if let n = v as? Int { bus[k] = Double(n) }
        }
        return bus
    }
}
