// Registry recovery at scale (Benchmarks/registry-bench.sh): a real ZooKeeper, N admitted agents
// written in the format-2 layout (one znode per agent), then loaded by a fresh store R times with
// the agents' znodes read concurrently (ours, 512 in flight) and one at a time (the baseline).
// Prints and writes JSON: write time, load p50/p90 of each, and their ratio.
import Foundation
import Logging
import MesosCore
import MesosHA
import MesosWire
import ProcessSupport
import ZooKeeper

let arguments = CommandLine.arguments.dropFirst()
func option(_ name: String, _ fallback: Int) -> Int {
    guard let i = arguments.firstIndex(of: name), arguments.index(after: i) < arguments.endIndex else { return fallback }
    return Int(arguments[arguments.index(after: i)]) ?? fallback
}
let agents = option("--agents", 10_000), rounds = option("--rounds", 5)
let output = arguments.firstIndex(of: "--json").flatMap { arguments.index(after: $0) < arguments.endIndex ? arguments[arguments.index(after: $0)] : nil }
let logger = Logger(label: "registry-bench") { _ in SwiftLogNoOpLogHandler() }
ZooKeeperClientLibrary.routeLog(to: logger)

func ms(_ d: Duration) -> Double { d.inSeconds * 1000 }  // MesosWire's conversion, in milliseconds
func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
}

let zk = try await ZooKeeperServer.start()
do {
    let session = ZooKeeperSession(servers: zk.connectString, sessionTimeout: .seconds(10), logger: logger)
    var events = session.events.makeAsyncIterator()
    session.start()
    guard case .connected? = await events.next() else { throw NSError(domain: "registry-bench: no session", code: 1) }
    try await session.createPath("/mesos")
    let fence = try await session.create("/mesos/json.info_", mode: .ephemeralSequential)

    var change = RegistryChange(meta: RegistryMeta(format: RegistryLayout.format, highestEpoch: 1))
    for i in 0..<agents {
        let id = AgentID(value: "7f8e2a10-5b9c-4d3e-8a21-0c9d6e5f4b3a-S\(i)")
        let info = AgentInfo(hostname: "host\(i).example.com", resources: [Resource(name: "cpus", scalar: 16), Resource(name: "mem", scalar: 65536)], id: id, pid: "slave(1)@10.0.\(i / 256 % 256).\(i % 256):5051")
        change.agents[id] = .put(RegistryAgent(id: id, info: info))
    }
    let clock = ContinuousClock()
    let writeStart = clock.now
    let outcome = await ZooKeeperRegistryStore(session: session, groupPath: "/mesos").store(change, fence: fence)
    let writeTime = clock.now - writeStart
    guard outcome == .stored else { throw NSError(domain: "registry-bench: write failed: \(outcome)", code: 1) }

    var loads: [String: [Double]] = ["concurrent": [], "sequential": []]
    for _ in 0..<rounds {
        for (name, concurrency) in [("concurrent", 512), ("sequential", 1)] {
            let store = ZooKeeperRegistryStore(session: session, groupPath: "/mesos", loadConcurrency: concurrency)
            let start = clock.now
            let state = try await store.load()
            loads[name]!.append(ms(clock.now - start))
            guard state?.admitted.count == agents else { throw NSError(domain: "registry-bench: loaded \(state?.admitted.count ?? 0)", code: 1) }
        }
    }
    let c50 = percentile(loads["concurrent"]!, 0.5), s50 = percentile(loads["sequential"]!, 0.5)
    let result: [String: Any] = [
        "agents": agents, "rounds": rounds, "write_ms": ms(writeTime),
        "load_concurrent_ms": ["p50": c50, "p90": percentile(loads["concurrent"]!, 0.9), "all": loads["concurrent"]!],
        "load_sequential_ms": ["p50": s50, "p90": percentile(loads["sequential"]!, 0.9), "all": loads["sequential"]!],
        "concurrent_over_sequential_p50": c50 / s50,
    ]
    let json = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: json, as: UTF8.self))
    if let output { try json.write(to: URL(fileURLWithPath: output)) }
    await session.close()
    await zk.kill()
} catch {
    await zk.kill()
    print("registry-bench: \(error)")
    exit(1)
}
