// The master core's cost per agent as the cluster grows (Benchmarks/master-core-bench.sh): a
// leader that recovered a registry of N admitted agents, then every agent re-registering (as
// after a failover), then health-check ticks. No I/O: this is the core alone, the part of a
// failover's CPU that must stay linear in N. The baseline is the same figure at the smallest N,
// so a ratio of about 1.0 per agent means linear. Medians of R rounds; CPU time of this thread.
import Foundation
import MesosCore
import MesosWire

let arguments = CommandLine.arguments.dropFirst()
func option(_ name: String) -> String? {
    guard let i = arguments.firstIndex(of: name), arguments.index(after: i) < arguments.endIndex else { return nil }
    return arguments[arguments.index(after: i)]
}
let sizes = (option("--agents") ?? "1000,3000,10000").split(separator: ",").compactMap { Int($0) }
let rounds = Int(option("--rounds") ?? "5") ?? 5
let output = option("--json")

/// CPU microseconds this thread has used.
func cpuMicroseconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) * 1e6 + Double(ts.tv_nsec) / 1e3
}

let masterPID = PID("master@10.0.0.1:5050")!
let info = MasterInfo(id: "bench", ip: 0, port: 5050, pid: masterPID.description)
func agentPID(_ i: Int) -> PID { PID("slave(1)@10.\(i >> 16 & 255).\(i >> 8 & 255).\(i & 255):5051")! }
func agentInfo(_ i: Int) -> AgentInfo {
    AgentInfo(
        hostname: "agent-\(i)", resources: [Resource(name: "cpus", scalar: 4), Resource(name: "mem", scalar: 8192)],
        id: AgentID(value: "7f8e2a10-5b9c-4d3e-8a21-0c9d6e5f4b3a-S\(i)"), pid: agentPID(i).description)
}

/// Feeds an event and answers what the core asks of the shell (registry writes succeed at once).
func feed(_ core: inout MasterCore, _ event: MasterCore.Event) -> Int {
    var queue = [event]
    var sent = 0
    while !queue.isEmpty {
        for effect in core.handle(queue.removeFirst()) {
            switch effect {
            case .send, .event: sent += 1
            case .storeRegistry(_, let token): queue.append(.registryStored(token: token))
            default: break
            }
        }
    }
    return sent
}

struct Round { var reregisterUs: Double; var tickUs: Double }

func round(_ n: Int) -> Round {
    var registry = RegistryState(highestEpoch: 4)
    for i in 0..<n { registry.admitted[agentInfo(i).id!] = agentInfo(i) }
    let messages = (0..<n).map { i in
        Envelope(epoch: 5, from: agentPID(i).description, payload: .reregisterAgent(ReregisterAgentMessage(agent: agentInfo(i))))
    }
    var core = MasterCore(info: info, pid: masterPID)
    _ = feed(&core, .elected(epoch: 5))
    _ = feed(&core, .leaderDetected(Leader(epoch: 5, pid: masterPID, info: info)))
    _ = feed(&core, .registryLoaded(registry))
    precondition(core.isLeading, "the bench's master did not lead")

    let t0 = cpuMicroseconds()
    var answers = 0
    for m in messages { answers += feed(&core, .message(Inbound(m, peer: PeerIdentity()))) }
    let t1 = cpuMicroseconds()
    precondition(core.activeAgentIDs.count == n && answers >= n, "not every agent re-registered")

    // A health-check round: every agent's ping is due.
    let t2 = cpuMicroseconds()
    let pings = feed(&core, .tick(now: .seconds(16)))
    let t3 = cpuMicroseconds()
    precondition(pings >= n, "not every agent was pinged")
    return Round(reregisterUs: (t1 - t0) / Double(n), tickUs: (t3 - t2) / Double(n))
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

var rows: [[String: Any]] = []
var baseline: Round?
print("master core, per agent: re-registration after a failover and one health-check tick (medians of \(rounds) rounds, CPU us)")
print("agents   reregister us/agent  ratio to \(sizes[0])   tick us/agent  ratio to \(sizes[0])")
for n in sizes {
    let runs = (0..<rounds).map { _ in round(n) }
    let r = Round(reregisterUs: median(runs.map(\.reregisterUs)), tickUs: median(runs.map(\.tickUs)))
    if baseline == nil { baseline = r }
    let b = baseline!
    print(String(format: "%6d   %19.2f  %12.2f   %13.2f  %12.2f", n, r.reregisterUs, r.reregisterUs / b.reregisterUs, r.tickUs, r.tickUs / b.tickUs))
    rows.append([
        "agents": n, "reregister_us_per_agent": r.reregisterUs, "reregister_ratio": r.reregisterUs / b.reregisterUs,
        "tick_us_per_agent": r.tickUs, "tick_ratio": r.tickUs / b.tickUs,
        "runs": ["reregister_us_per_agent": runs.map(\.reregisterUs), "tick_us_per_agent": runs.map(\.tickUs)],
    ])
}
if let output {
    let doc: [String: Any] = [
        "benchmark": "master-core", "date": ISO8601DateFormatter().string(from: Date()), "rounds": rounds,
        "baseline": "the same figure at \(sizes[0]) agents", "rows": rows,
    ]
    try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: output))
}
