// Bus throughput and round-trip latency on loopback, side by side with the raw-TCP floors
// (Benchmarks/RawTCPFloor: the same frames over plain blocking sockets, no encoding; one write
// per frame, and batched: writev of many frames, 64 KiB reads) in the same run.
// Run through Benchmarks/bus-bench.sh, which builds both in release mode and preloads the
// allocation counter (Benchmarks/RawTCPFloor/malloc_count.c).
//
// Every figure covers `--seconds` after `--warmup` seconds of the same traffic (the links are
// open and warm), and comes with per-message CPU time of the whole process (getrusage),
// allocations (malloc calls) and context switches. `--alloc-check` counts allocations per
// message over a fixed number of messages and fails above the given limits (counts, not times).
import ArgumentParser
import Foundation
import MesosBus
import MesosWire
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

enum Placement: String, ExpressibleByArgument, CaseIterable {
    /// Senders and consumers run on their bus's event loop (`MessageBus.taskExecutor`).
    case loop
    /// Senders and consumers run on Swift's cooperative pool (as the masters' consumers do).
    case pool
    /// Consumers are called in place on their bus's loop (`MessageBus.handleEvents(onLoop:)`, as
    /// agents take their events) and answer with `post`; senders run on the loop as with `loop`.
    case direct
}

/// What each bus's in-place handler hands its events to (`--placement direct`): the consumer of
/// the figure being measured, installed and removed by `Pair`.
final class DirectConsumers: @unchecked Sendable {
    typealias Consumer = @Sendable (BusEvent) -> Void
    // Set between figures, read by the loops; a plain lock around concretely typed storage (a
    // function value kept in a generic `Mutex` is re-wrapped in a thunk on every read).
    private let lock = NSLock()
    private var sender: Consumer?
    private var receiver: Consumer?

    func install(_ bus: MessageBus, side: Int) {
        bus.handleEvents(onLoop: { [self] event in self.consumer(side)?(event) })
    }

    private func consumer(_ side: Int) -> Consumer? {
        lock.lock()
        defer { lock.unlock() }
        return side == 0 ? sender : receiver
    }

    func set(side: Int, _ consumer: Consumer?) {
        lock.lock()
        defer { lock.unlock() }
        if side == 0 { sender = consumer } else { receiver = consumer }
    }
}

/// A one-shot result handed from a loop's handler to the benchmark's task.
final class Outcome<T: Sendable>: Sendable {
    private let state = Mutex<(value: T?, waiter: CheckedContinuation<T, Never>?)>((nil, nil))

    func resolve(_ value: T) {
        let waiter = state.withLock { s -> CheckedContinuation<T, Never>? in
            s.value = value
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: value)
    }

    var value: T {
        get async {
            await withCheckedContinuation { c in
                let now = state.withLock { s -> T? in
                    if s.value == nil { s.waiter = c }
                    return s.value
                }
                if let now { c.resume(returning: now) }
            }
        }
    }
}

@main
struct BusBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bus-bench", abstract: "Message bus throughput and latency vs the raw TCP floors.")

    @Option(help: "Path of the compiled raw TCP floor program.") var floor: String?
    @Option(help: "Seconds measured per figure (after the warm-up).") var seconds = 3.0
    @Option(help: "Seconds of warm-up traffic before each figure.") var warmup = 1.0
    @Option(help: "Repetitions of each figure (medians are reported).") var repeats = 3
    @Option(help: "Where the benchmark's senders and consumers run: loop, pool, or direct (consumers called in place on the loop, as agents take their events).") var placement = Placement.loop
    @Option(help: "Write the results as JSON here.") var json: String?
    @Option(help: "Figures to measure (comma-separated): small, large, rtt.") var only = "small,large,rtt"
    @Flag(help: "Skip the floors (profiling the bus alone).") var noFloor = false
    @Option(help: "Directory of scripts/gen-certs certificates: adds the same figures over mutual TLS, as ratios to the plaintext bus in the same run.")
    var tlsCerts: String?
    @Flag(help: "Count allocations per message over a fixed number of messages and fail above the limits.") var allocCheck = false
    @Option(help: "--alloc-check: messages counted (after as many for warm-up).") var allocMessages = 20_000
    @Option(help: "--alloc-check: most allocations per 100 B message, sender and receiver together.") var maxAllocsPerMessage = 4.0
    @Option(help: "--alloc-check: most allocations per 100 B round trip (two messages).") var maxAllocsPerRoundTrip = 10.0
    @Option(help: "--alloc-check: measured runs of each count; the fewest allocations are checked (see checkAllocations).") var allocRuns = 5

    func run() async throws {
        // One event loop per bus (the default group hands out its loops in turn: one thread per
        // core), the two sides of the benchmark as the floor's two threads.
        let a = MessageBus(), b = MessageBus()
        let direct = DirectConsumers()
        if placement == .direct {
            direct.install(a, side: 0)
            direct.install(b, side: 1)
        }
        try await a.start(name: "sender")
        try await b.start(name: "receiver")
        defer { Task { await a.shutdown(); await b.shutdown() } }
        let pair = Pair(a: a, b: b, placement: placement, direct: direct)
        if allocCheck { return try await checkAllocations(pair) }
        if ProcessInfo.processInfo.environment["BUS_BENCH_SIZES"] != nil { print("Envelope", MemoryLayout<Envelope>.size, "Payload", MemoryLayout<Envelope.Payload>.size, "BusEvent", MemoryLayout<BusEvent>.size); return }
        guard let floor else { throw ValidationError("--floor is required") }
        if Allocations.counter == nil { print("note: allocations are not counted (run through Benchmarks/bus-bench.sh to preload the counter)") }

        let loadBefore = Self.loadAverage()
        var rows: [[String: Any]] = []
        let figures = Set(only.split(separator: ",").map(String.init))
        for (label, size) in [("100 B", 100), ("64 KiB", 64 * 1024)] where figures.contains(size == 100 ? "small" : "large") {
            let envelope = Self.envelope(payloadBytes: size, from: a.pid!)
            let frameBytes = try FrameCodec().encode(envelope).count - FrameCodec.headerSize
            var ours: [Figures] = [], raw: [Figures] = [], batched: [Figures] = []
            for _ in 0..<repeats {
                ours.append(try await pair.throughput(envelope, seconds: seconds, warmup: warmup))
                if noFloor { continue }
                raw.append(try Self.floor(floor, "blast", frameBytes, seconds, warmup))
                if size == 100 { batched.append(try Self.floor(floor, "batched", frameBytes, seconds, warmup)) }
            }
            if noFloor { raw = ours }
            let o = Figures.median(ours), r = Figures.median(raw)
            var row: [String: Any] = [
                "metric": "throughput \(label)", "unit": "msg/s", "frame_bytes": frameBytes, "ours": o.rate, "floor": r.rate, "ratio": o.rate / r.rate,
            ]
            var perMessage: [String: Any] = ["ours": o.perMessage, "floor": r.perMessage]
            if !batched.isEmpty {
                let f = Figures.median(batched)
                row["floor_batched"] = f.rate
                row["ratio_batched"] = o.rate / f.rate
                perMessage["floor_batched"] = f.perMessage
            }
            row["per_message"] = perMessage
            row["runs"] = ["ours": ours.map(\.rate), "floor": raw.map(\.rate), "floor_batched": batched.map(\.rate)]
            rows.append(row)
        }

        let ping = Self.envelope(payloadBytes: 100, from: a.pid!)
        let frameBytes = try FrameCodec().encode(ping).count - FrameCodec.headerSize
        var ours: [Figures] = [], raw: [Figures] = []
        for _ in 0..<repeats where figures.contains("rtt") {
            ours.append(try await pair.roundTrips(ping, seconds: seconds, warmup: warmup))
            raw.append(noFloor ? ours.last! : try Self.floor(floor, "pingpong", frameBytes, seconds, warmup))
        }
        for key in ["p50_us", "p90_us", "p99_us", "max_us"] where !ours.isEmpty {
            let o = Figures.median(ours), r = Figures.median(raw)
            let (ov, rv) = (o.latency[key]!, r.latency[key]!)
            var row: [String: Any] = [
                "metric": "round trip 100 B \(key.dropLast(3))", "unit": "us", "frame_bytes": frameBytes, "ours": ov, "floor": rv, "ratio": ov / rv,
            ]
            if key == "p50_us" {
                row["per_round_trip"] = ["ours": o.perMessage, "floor": r.perMessage]
                row["round_trips"] = ["ours": o.count, "floor": r.count]
            }
            rows.append(row)
        }

        if let tlsCerts { rows += try await tlsRows(plain: pair, certs: tlsCerts, figures: figures) }

        print("Bus benchmark: loopback, two buses in one process (one event loop each, senders and consumers on the \(placement.rawValue)),")
        print("\(ProcessInfo.processInfo.activeProcessorCount) cores, medians of \(repeats) runs of \(seconds) s after \(warmup) s of warm-up")
        print("metric                      unit         ours   raw floor  ours/floor   batched floor  ours/batched   CPU us/msg ours/floor   allocs/msg ours/floor   csw/msg ours/floor     faults/msg ours/floor")
        for row in rows {
            let m = (row["metric"] as! String).padding(toLength: 28, withPad: " ", startingAt: 0)
            let u = (row["unit"] as! String).padding(toLength: 6, withPad: " ", startingAt: 0)
            var line = "\(m)\(u)\(fmt(row["ours"] as! Double, 11))  \(fmt(row["floor"] as! Double, 10))  \(String(format: "%10.2f", row["ratio"] as! Double))"
            if let fb = row["floor_batched"] as? Double, let rb = row["ratio_batched"] as? Double {
                line += "  \(fmt(fb, 14))  \(String(format: "%12.3f", rb))"
            } else {
                line += String(repeating: " ", count: 30)
            }
            if let per = (row["per_message"] ?? row["per_round_trip"]) as? [String: [String: Any]], let po = per["ours"], let pf = per["floor"] {
                line += "   \(pair2(po["cpu_us"], pf["cpu_us"], "%.2f"))   \(pair2(po["allocations"], pf["allocations"], "%.2f"))   \(pair2(po["context_switches"], pf["context_switches"], "%.3f"))   \(pair2(po["minor_faults"], pf["minor_faults"], "%.3f"))"
            }
            print(line)
        }
        print("(round trip rows: CPU, allocations and context switches per round trip)")
        if let json {
            let doc: [String: Any] = [
                "benchmark": "bus", "date": ISO8601DateFormatter().string(from: Date()), "rows": rows,
                "setup": [
                    "cores": ProcessInfo.processInfo.activeProcessorCount, "seconds": seconds, "warmup": warmup, "repeats": repeats,
                    "placement": placement.rawValue, "allocations_counted": Allocations.counter != nil,
                    // Other work on the machine skews every figure: the 1-minute load average before and after.
                    "load_average": [loadBefore, Self.loadAverage()],
                ] as [String: Any],
            ]
            try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: json))
        }
    }

    /// The figures over mutual TLS (client certificates required, servers verified, scheme openssl),
    /// each beside the plaintext bus measured again right after it: "ours" is TLS, "floor" plaintext.
    func tlsRows(plain: Pair, certs: String, figures: Set<String>) async throws -> [[String: Any]] {
        let direct = DirectConsumers()
        func bus(_ name: String, _ cert: String, side: Int) async throws -> MessageBus {
            var settings = TLSSettings(certFile: "\(certs)/\(cert).pem", keyFile: "\(certs)/\(cert).key", caFile: "\(certs)/ca.pem")
            settings.verifyServerCert = true
            settings.requireClientCert = true
            settings.hostnameValidationScheme = .openssl
            var config = BusConfiguration()
            config.tls = try TLSContext(settings)
            let bus = MessageBus(configuration: config)
            if placement == .direct { direct.install(bus, side: side) }
            try await bus.start(name: name)
            return bus
        }
        let ta = try await bus("sender", "agent", side: 0), tb = try await bus("receiver", "master", side: 1)
        defer { Task { await ta.shutdown(); await tb.shutdown() } }
        let tls = Pair(a: ta, b: tb, placement: placement, direct: direct)
        var rows: [[String: Any]] = []
        for (label, size) in [("100 B", 100), ("64 KiB", 64 * 1024)] where figures.contains(size == 100 ? "small" : "large") {
            var secure: [Figures] = [], clear: [Figures] = []
            for _ in 0..<repeats {
                secure.append(try await tls.throughput(Self.envelope(payloadBytes: size, from: ta.pid!), seconds: seconds, warmup: warmup))
                clear.append(try await plain.throughput(Self.envelope(payloadBytes: size, from: plain.a.pid!), seconds: seconds, warmup: warmup))
            }
            let s = Figures.median(secure), c = Figures.median(clear)
            rows.append([
                "metric": "TLS throughput \(label)", "unit": "msg/s", "ours": s.rate, "floor": c.rate, "ratio": s.rate / c.rate,
                "baseline": "plaintext bus", "per_message": ["ours": s.perMessage, "floor": c.perMessage],
                "runs": ["ours": secure.map(\.rate), "floor": clear.map(\.rate)],
            ])
        }
        guard figures.contains("rtt") else { return rows }
        var secure: [Figures] = [], clear: [Figures] = []
        for _ in 0..<repeats {
            secure.append(try await tls.roundTrips(Self.envelope(payloadBytes: 100, from: ta.pid!), seconds: seconds, warmup: warmup))
            clear.append(try await plain.roundTrips(Self.envelope(payloadBytes: 100, from: plain.a.pid!), seconds: seconds, warmup: warmup))
        }
        let s = Figures.median(secure), c = Figures.median(clear)
        for key in ["p50_us", "p90_us", "p99_us"] {
            var row: [String: Any] = [
                "metric": "TLS round trip 100 B \(key.dropLast(3))", "unit": "us", "ours": s.latency[key]!, "floor": c.latency[key]!,
                "ratio": s.latency[key]! / c.latency[key]!, "baseline": "plaintext bus",
            ]
            if key == "p50_us" { row["per_round_trip"] = ["ours": s.perMessage, "floor": c.perMessage] }
            rows.append(row)
        }
        return rows
    }

    /// Allocations per message over fixed message counts (no clock involved): fails above the limits.
    ///
    /// The limit is checked against the fewest allocations of `allocRuns` runs. Above the bus's own
    /// allocations per message, each suspension of a sender or consumer task allocates too, and how
    /// many messages one wake-up delivers is timing (one debug run on the pool read 2.19, another
    /// 3.01, with no change in the bus). An allocation the bus adds to every message raises every
    /// run, the fewest included, so the minimum still catches it; scheduling noise does not.
    func checkAllocations(_ pair: Pair) async throws {
        guard Allocations.counter != nil else { throw ValidationError("--alloc-check needs the allocation counter preloaded (Benchmarks/bus-bench.sh --alloc-check)") }
        guard allocRuns >= 1 else { throw ValidationError("--alloc-runs must be at least 1") }
        let envelope = Self.envelope(payloadBytes: 100, from: pair.a.pid!)
        let perMessage = try await pair.allocationsPerMessage(envelope, count: allocMessages, runs: allocRuns)
        let perRoundTrip = try await pair.allocationsPerRoundTrip(envelope, count: allocMessages / 4, runs: allocRuns)
        func list(_ xs: [Double]) -> String { xs.map { String(format: "%.2f", $0) }.joined(separator: " ") }
        let (fewestPerMessage, fewestPerRoundTrip) = (perMessage.min()!, perRoundTrip.min()!)
        print("allocations per 100 B message, \(allocRuns) runs: \(list(perMessage)); per round trip: \(list(perRoundTrip))")
        print(String(format: "fewest per 100 B message: %.2f (limit %.2f); per round trip: %.2f (limit %.2f)", fewestPerMessage, maxAllocsPerMessage, fewestPerRoundTrip, maxAllocsPerRoundTrip))
        if fewestPerMessage > maxAllocsPerMessage || fewestPerRoundTrip > maxAllocsPerRoundTrip {
            print("bus allocation check FAILED: more allocations per message than the limit")
            throw ExitCode(1)
        }
        print("bus allocation check passed")
    }

    /// The 1-minute load average (/proc/loadavg), -1 when unknown.
    static func loadAverage() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return -1 }
        return text.split(separator: " ").first.flatMap { Double($0) } ?? -1
    }

    static func envelope(payloadBytes: Int, from: PID) -> Envelope {
        Envelope(epoch: 1, from: from.description, payload: .frameworkError(FrameworkErrorMessage(message: String(repeating: "x", count: payloadBytes))))
    }

    static func floor(_ path: String, _ mode: String, _ frameBytes: Int, _ seconds: Double, _ warmup: Double) throws -> Figures {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = [mode, String(frameBytes), String(seconds), String(warmup)]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ValidationError("raw TCP floor failed: \(String(decoding: data, as: UTF8.self))")
        }
        var latency: [String: Double] = [:]
        for key in ["p50_us", "p90_us", "p99_us", "max_us"] { latency[key] = obj[key] as? Double }
        return Figures(
            rate: obj["per_second"] as! Double, count: (obj["count"] as! NSNumber).intValue, cpuPerMessage: obj["cpu_us_per_msg"] as! Double,
            allocationsPerMessage: obj["allocs_per_msg"] as? Double, switchesPerMessage: obj["csw_per_msg"] as! Double,
            faultsPerMessage: obj["minflt_per_msg"] as! Double, latency: latency)
    }
}

/// One measured figure and its costs per message (per round trip for latency figures).
struct Figures {
    var rate: Double
    var count: Int
    var cpuPerMessage: Double
    var allocationsPerMessage: Double?
    var switchesPerMessage: Double
    var faultsPerMessage: Double
    var latency: [String: Double] = [:]

    var perMessage: [String: Any] {
        [
            "cpu_us": cpuPerMessage, "allocations": allocationsPerMessage ?? NSNull(), "context_switches": switchesPerMessage,
            "minor_faults": faultsPerMessage,
        ]
    }

    init(
        rate: Double, count: Int, cpuPerMessage: Double, allocationsPerMessage: Double?, switchesPerMessage: Double, faultsPerMessage: Double,
        latency: [String: Double] = [:]
    ) {
        self.rate = rate
        self.count = count
        self.cpuPerMessage = cpuPerMessage
        self.allocationsPerMessage = allocationsPerMessage
        self.switchesPerMessage = switchesPerMessage
        self.faultsPerMessage = faultsPerMessage
        self.latency = latency
    }

    init(from s0: Sample, to s1: Sample, latency: [String: Double] = [:]) {
        let n = Double(max(1, s1.count - s0.count))
        self.init(
            rate: n / (s1.time - s0.time), count: s1.count - s0.count, cpuPerMessage: (s1.cpuMicroseconds - s0.cpuMicroseconds) / n,
            allocationsPerMessage: s1.allocations.flatMap { a1 in s0.allocations.map { Double(a1 - $0) / n } },
            switchesPerMessage: Double(s1.contextSwitches - s0.contextSwitches) / n, faultsPerMessage: Double(s1.faults - s0.faults) / n,
            latency: latency)
    }

    /// The median of every field on its own.
    static func median(_ runs: [Figures]) -> Figures {
        var latency: [String: Double] = [:]
        for key in runs[0].latency.keys { latency[key] = MesosBusBench.median(runs.compactMap { $0.latency[key] }) }
        let allocations = runs.compactMap(\.allocationsPerMessage)
        return Figures(
            rate: MesosBusBench.median(runs.map(\.rate)), count: Int(MesosBusBench.median(runs.map { Double($0.count) })),
            cpuPerMessage: MesosBusBench.median(runs.map(\.cpuPerMessage)),
            allocationsPerMessage: allocations.isEmpty ? nil : MesosBusBench.median(allocations),
            switchesPerMessage: MesosBusBench.median(runs.map(\.switchesPerMessage)),
            faultsPerMessage: MesosBusBench.median(runs.map(\.faultsPerMessage)), latency: latency)
    }
}

/// What the whole process used up to now.
struct Sample {
    var time: Double
    var count: Int
    var cpuMicroseconds: Double
    var contextSwitches: Int
    /// Minor page faults (fresh pages the kernel had to map in, e.g. after malloc gave memory back).
    var faults: Int
    var allocations: UInt64?

    static func now(count: Int) -> Sample {
        var ru = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let cpu = Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)
        return Sample(
            time: Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9, count: count, cpuMicroseconds: cpu,
            contextSwitches: ru.ru_nvcsw + ru.ru_nivcsw, faults: ru.ru_minflt, allocations: Allocations.counter?())
    }
}

/// The preloaded allocation counter (Benchmarks/RawTCPFloor/malloc_count.c), if any.
enum Allocations {
    static let counter: (@convention(c) () -> UInt64)? = {
        guard let symbol = dlsym(nil, "malloc_count_allocations") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) () -> UInt64).self)
    }()
}

/// Shared between the benchmark's tasks.
final class Flags: Sendable {
    let count = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
    let measuring = Atomic<Bool>(false)
    let answered = Atomic<Int>(0)
}

/// The two buses and where the benchmark's tasks run.
struct Pair: Sendable {
    let a: MessageBus
    let b: MessageBus
    let placement: Placement
    var direct = DirectConsumers()

    /// Runs `body` as a task placed on `bus`'s event loop, or on the cooperative pool.
    func task<T: Sendable>(on bus: MessageBus, _ body: @escaping @Sendable () async throws -> T) -> Task<T, any Error> {
        switch placement {
        case .loop, .direct: Task(executorPreference: bus.taskExecutor) { try await body() }
        case .pool: Task { try await body() }
        }
    }

    /// The receiver counts every message but the sentinel (epoch 0), which ends it.
    private func receive(_ flags: Flags) -> Task<Void, any Error> {
        let b = self.b
        if placement == .direct {
            let done = Outcome<Bool>()
            direct.set(side: 1) { event in
                guard case .message(let inbound) = event else { return }
                if inbound.envelope.epoch == 0 { return done.resolve(true) }
                flags.count.add(1, ordering: .relaxed)
            }
            return Task {
                _ = await done.value
                direct.set(side: 1, nil)
            }
        }
        return task(on: b) {
            for await event in b.events {
                guard case .message(let inbound) = event else { continue }
                if inbound.envelope.epoch == 0 { break }
                flags.count.add(1, ordering: .relaxed)
            }
        }
    }

    private func sentinel(_ envelope: Envelope) -> Envelope { Envelope(epoch: 0, from: envelope.from, payload: envelope.payload) }

    /// Messages per second received while A sends as fast as `send` lets it.
    func throughput(_ envelope: Envelope, seconds: Double, warmup: Double) async throws -> Figures {
        let flags = Flags()
        let receiver = receive(flags)
        let (a, to, end) = (self.a, b.pid!, sentinel(envelope))
        let sender = task(on: a) {
            while !flags.stop.load(ordering: .relaxed) { try await a.send(envelope, to: to) }
            try await a.send(end, to: to)
        }
        try await Task.sleep(for: .seconds(warmup))
        let s0 = Sample.now(count: flags.count.load(ordering: .relaxed))
        try await Task.sleep(for: .seconds(seconds))
        let s1 = Sample.now(count: flags.count.load(ordering: .relaxed))
        flags.stop.store(true, ordering: .relaxed)
        try await sender.value
        try await receiver.value
        return Figures(from: s0, to: s1)
    }

    /// Round trips: A sends, B's consumer answers, A waits for the answer; microseconds each.
    func roundTrips(_ ping: Envelope, seconds: Double, warmup: Double) async throws -> Figures {
        let flags = Flags()
        let echo = self.echo()
        let (a, to, end) = (self.a, b.pid!, sentinel(ping))
        let pinger = placement == .direct ? directPinger(ping, flags) : task(on: a) { () -> [Double] in
            var replies = a.events.makeAsyncIterator()
            var samples: [Double] = []
            samples.reserveCapacity(Int(seconds * 200_000))
            let clock = ContinuousClock()
            while !flags.stop.load(ordering: .relaxed) {
                let t0 = clock.now
                try await a.send(ping, to: to)
                while let event = await replies.next() { if case .message = event { break } }
                let us = (clock.now - t0).inSeconds * 1e6
                if flags.measuring.load(ordering: .relaxed) {
                    samples.append(us)
                    flags.count.add(1, ordering: .relaxed)
                }
            }
            try await a.send(end, to: to)
            return samples
        }
        try await Task.sleep(for: .seconds(warmup))
        flags.measuring.store(true, ordering: .relaxed)
        let s0 = Sample.now(count: flags.count.load(ordering: .relaxed))
        try await Task.sleep(for: .seconds(seconds))
        let s1 = Sample.now(count: flags.count.load(ordering: .relaxed))
        flags.measuring.store(false, ordering: .relaxed)
        flags.stop.store(true, ordering: .relaxed)
        let rtts = try await pinger.value.sorted()
        try await echo.value
        var latency: [String: Double] = [:]
        for (p, key) in [(0.50, "p50_us"), (0.90, "p90_us"), (0.99, "p99_us"), (1.0, "max_us")] { latency[key] = percentile(rtts, p) }
        return Figures(from: s0, to: s1, latency: latency)
    }

    /// `--placement direct`: A's handler takes each answer, records its time and posts the next
    /// ping (the first from a task); the sentinel once `flags.stop` is set, or after `rounds`.
    private func directPinger(_ ping: Envelope, _ flags: Flags, rounds: Int? = nil) -> Task<[Double], any Error> {
        let (a, to, payload) = (self.a, b.pid!, ping.payload!)
        let samples = Mutex<[Double]>([])
        samples.withLock { $0.reserveCapacity(1_000_000) }
        let done = Outcome<Bool>()
        let clock = ContinuousClock()
        let sentAt = Mutex(clock.now)
        direct.set(side: 0) { event in
            guard case .message = event else { return }
            let us = (clock.now - sentAt.withLock { $0 }).inSeconds * 1e6
            if flags.measuring.load(ordering: .relaxed) {
                samples.withLock { $0.append(us) }
                flags.count.add(1, ordering: .relaxed)
            }
            let answered = flags.answered.add(1, ordering: .relaxed).newValue
            if flags.stop.load(ordering: .relaxed) || rounds.map({ answered >= $0 }) == true {
                a.post(payload, epoch: 0, to: to)  // the sentinel
                return done.resolve(true)
            }
            sentAt.withLock { $0 = clock.now }
            a.post(payload, epoch: ping.epoch, to: to)
        }
        return Task(executorPreference: a.taskExecutor) {
            sentAt.withLock { $0 = clock.now }
            a.post(payload, epoch: ping.epoch, to: to)
            _ = await done.value
            direct.set(side: 0, nil)
            return samples.withLock { $0 }
        }
    }

    /// B answers every message to its sender until the sentinel.
    private func echo() -> Task<Void, any Error> {
        let b = self.b
        if placement == .direct {
            let done = Outcome<Bool>()
            let to = a.pid!  // the only sender
            direct.set(side: 1) { event in
                guard case .message(let inbound) = event, let payload = inbound.envelope.payload else { return }
                if inbound.envelope.epoch == 0 { return done.resolve(true) }
                b.post(payload, epoch: inbound.envelope.epoch, to: to)
            }
            return Task {
                _ = await done.value
                direct.set(side: 1, nil)
            }
        }
        return task(on: b) {
            var peer: (String, PID)?
            for await event in b.events {
                guard case .message(let inbound) = event else { continue }
                if inbound.envelope.epoch == 0 { break }
                if peer?.0 != inbound.envelope.from { peer = PID(inbound.envelope.from).map { (inbound.envelope.from, $0) } }
                guard let to = peer?.1 else { continue }
                try await b.send(inbound.envelope, to: to)
            }
        }
    }

    /// Allocations per message while A sends `count` messages as fast as it can, in each of `runs`
    /// runs (after one more run to warm up).
    func allocationsPerMessage(_ envelope: Envelope, count: Int, runs: Int) async throws -> [Double] {
        var results: [Double] = []
        for phase in 0...runs {
            let flags = Flags()
            let receiver = receive(flags)
            let (a, to, end) = (self.a, b.pid!, sentinel(envelope))
            let before = Allocations.counter!()
            try await task(on: a) {
                for _ in 0..<count { try await a.send(envelope, to: to) }
                try await a.send(end, to: to)
            }.value
            try await receiver.value
            if phase > 0 { results.append(Double(Allocations.counter!() - before) / Double(count)) }
        }
        return results
    }

    /// Allocations per round trip over `count` round trips, in each of `runs` runs (after one more
    /// run to warm up).
    func allocationsPerRoundTrip(_ ping: Envelope, count: Int, runs: Int) async throws -> [Double] {
        var results: [Double] = []
        for phase in 0...runs {
            let echo = self.echo()
            let (a, to, end) = (self.a, b.pid!, sentinel(ping))
            let before = Allocations.counter!()
            if placement == .direct {
                _ = try await directPinger(ping, Flags(), rounds: count).value
                try await echo.value
                if phase > 0 { results.append(Double(Allocations.counter!() - before) / Double(count)) }
                continue
            }
            try await task(on: a) {
                var replies = a.events.makeAsyncIterator()
                for _ in 0..<count {
                    try await a.send(ping, to: to)
                    while let event = await replies.next() { if case .message = event { break } }
                }
                try await a.send(end, to: to)
            }.value
            try await echo.value
            if phase > 0 { results.append(Double(Allocations.counter!() - before) / Double(count)) }
        }
        return results
    }
}

enum MesosBusBench {
    static func median(_ xs: [Double]) -> Double { percentile(xs.sorted(), 0.5) }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}
func fmt(_ x: Double, _ width: Int) -> String { String(format: "%\(width).1f", x) }
func pair2(_ a: Any?, _ b: Any?, _ f: String) -> String {
    func one(_ x: Any?) -> String { (x as? Double).map { String(format: f, $0) } ?? "n/a" }
    return "\(one(a)) / \(one(b))".padding(toLength: 20, withPad: " ", startingAt: 0)
}
