import Foundation
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
