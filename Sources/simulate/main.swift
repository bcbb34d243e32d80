// scripts/simulate: runs the deterministic cluster simulator over many seeds. A violation prints
// its seed, the rule, the fault schedule and the trace before it; `--from S --seeds 1 --trace`
// replays that seed exactly. The last line reads `N seeds, V violations`.
import ArgumentParser
import Foundation
import MesosSimulation
import MesosWire

@main
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate", abstract: "Run the deterministic cluster simulator over seeds and check DESIGN.md's invariants.")

    @Option(help: "How many seeds to run.") var seeds = 1000
    @Option(help: "The first seed.") var from: UInt64 = 1
    @Flag(help: "Print the whole trace of every seed (use with --seeds 1 to replay one).") var trace = false
    @Option(name: .customLong("break"), help: "Break a rule on purpose, to see it caught: \(Simulation.Breakage.allCases.map(\.rawValue).joined(separator: ", ")).")
    var breakage: String = "none"
    @Option(help: "Also write the results as JSON to this path.") var json: String?
    @Flag(name: .customLong("stop-at-first"), help: "Stop at the first violation.") var stopAtFirst = false

    func run() throws {
        // Swift hashes with a per-process seed: dictionary orders (and so some effect orders) would
        // differ between runs. Deterministic hashing makes a seed replay the same in every process.
        if ProcessInfo.processInfo.environment["SWIFT_DETERMINISTIC_HASHING"] == nil {
            setenv("SWIFT_DETERMINISTIC_HASHING", "1", 1)
            let argv = CommandLine.arguments.map { strdup($0) } + [nil]
            execv("/proc/self/exe", argv)
            throw ValidationError("cannot re-execute with deterministic hashing: \(String(cString: strerror(errno)))")
        }
        guard let breaking = Simulation.Breakage(rawValue: breakage) else {
            throw ValidationError("--break must be one of \(Simulation.Breakage.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let started = ContinuousClock.now
        var violating: [SimulationResult] = []
        var steps = 0
        var virtual = Duration.zero
        var converge: [Double] = []
        var ran = 0
        var perSeed: [Double] = []
        for seed in from..<(from + UInt64(seeds)) {
            let seedStarted = ContinuousClock.now
            let result = Simulation.run(seed: seed, trace: trace, breaking: breaking)
            perSeed.append((ContinuousClock.now - seedStarted).inSeconds * 1000)
            ran += 1
            steps += result.steps
            virtual += result.virtualTime
            if let c = result.convergedAfter { converge.append(c.inSeconds) }
            if trace {
                print("== seed \(seed): \(result.topology)")
                for line in result.trace { print(line) }
            }
            if !result.violations.isEmpty {
                violating.append(result)
                print("VIOLATION seed \(seed) (\(result.topology)):")
                for v in result.violations { print("  \(v)") }
                print("  faults: \(result.faults.joined(separator: "; "))")
                if !trace {
                    print("  last trace lines (replay: scripts/simulate --from \(seed) --seeds 1 --trace):")
                    for line in result.trace.suffix(60) { print("    \(line)") }
                }
                if stopAtFirst { break }
            }
        }
        let wall = ContinuousClock.now - started
        let seconds = wall.inSeconds
        converge.sort()
        let p50 = converge.isEmpty ? 0 : converge[converge.count / 2], p99 = converge.isEmpty ? 0 : converge[min(converge.count - 1, converge.count * 99 / 100)]
        perSeed.sort()
        let seedP50 = perSeed.isEmpty ? 0 : perSeed[perSeed.count / 2], seedP99 = perSeed.isEmpty ? 0 : perSeed[min(perSeed.count - 1, perSeed.count * 99 / 100)]
        print(String(format: "simulated %d events in %.1f s wall (%.0f events/s), %.0f s virtual (%.0fx real time); a seed took p50 %.0f ms, p99 %.0f ms; converged after the heal in p50 %.2f s, p99 %.2f s",
            steps, seconds, Double(steps) / max(seconds, 1e-9), virtual.inSeconds, virtual.inSeconds / max(seconds, 1e-9), seedP50, seedP99, p50, p99))
        if let json {
            let object: [String: Any] = [
                "seeds": ran, "first_seed": from, "violations": violating.count, "violating_seeds": violating.map(\.seed),
                "events": steps, "wall_seconds": seconds, "events_per_second": Double(steps) / max(seconds, 1e-9),
                "virtual_seconds": virtual.inSeconds, "virtual_per_wall": virtual.inSeconds / max(seconds, 1e-9),
                "seed_wall_p50_ms": seedP50, "seed_wall_p99_ms": seedP99, "converged_p50_seconds": p50, "converged_p99_seconds": p99,
                "break": breakage,
            ]
            try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: json))
        }
        print("\(ran) seeds, \(violating.count) violations")
        if !violating.isEmpty && breaking == .none { throw ExitCode(1) }
    }
}
