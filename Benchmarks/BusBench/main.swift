// Bus throughput and round-trip latency on loopback, side by side with the raw-TCP floor
// (Benchmarks/RawTCPFloor: the same frame sizes over plain blocking sockets, no encoding).
// Run through Benchmarks/bus-bench.sh, which builds both in release mode.
import ArgumentParser
import Foundation
import MesosBus
import MesosWire

@main
struct BusBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bus-bench", abstract: "Message bus throughput and latency vs the raw TCP floor.")

    @Option(help: "Path of the compiled raw TCP floor program.") var floor: String
    @Option(help: "Messages per throughput run with 100 B payloads.") var smallCount = 200_000
    @Option(help: "Messages per throughput run with 64 KiB payloads.") var largeCount = 5_000
    @Option(help: "Round trips per latency run.") var rttCount = 5_000
    @Option(help: "Repetitions of each throughput run (the median is reported).") var repeats = 3
    @Option(help: "Write the results as JSON here.") var json: String?

    func run() async throws {
        var config = BusConfiguration()
        if let hw = ProcessInfo.processInfo.environment["BENCH_HW"].flatMap(Int.init) { config.inboundHighWater = hw; config.inboundLowWater = hw / 4 }
        let a = MessageBus(configuration: config), b = MessageBus(configuration: config)
        try await a.start(name: "sender")
        try await b.start(name: "receiver")
        defer { Task { await a.shutdown(); await b.shutdown() } }
        var rows: [[String: Any]] = []

        for (label, size, count) in [("100 B", 100, smallCount), ("64 KiB", 64 * 1024, largeCount)] {
            let envelope = Self.envelope(payloadBytes: size, from: a.pid!)
            let frameBytes = try FrameCodec().encode(envelope).count - FrameCodec.headerSize
            var ours: [Double] = [], raw: [Double] = []
            for _ in 0..<repeats {
                ours.append(try await Self.throughput(a, b, envelope, count: count))
                raw.append(try Self.floor(floor, "blast", frameBytes, count)["per_second"] as! Double)
            }
            let (o, r) = (median(ours), median(raw))
            rows.append(["metric": "throughput \(label)", "unit": "msg/s", "frame_bytes": frameBytes, "ours": o, "floor": r, "ratio": o / r])
        }

        let ping = Self.envelope(payloadBytes: 100, from: a.pid!)
        let frameBytes = try FrameCodec().encode(ping).count - FrameCodec.headerSize
        let rtts = try await Self.roundTrips(a, b, ping, count: rttCount).sorted()
        let rawRTT = try Self.floor(floor, "pingpong", frameBytes, rttCount)
        for (p, key) in [(0.50, "p50_us"), (0.90, "p90_us"), (0.99, "p99_us"), (1.0, "max_us")] {
            let o = percentile(rtts, p), r = rawRTT[key] as! Double
            rows.append(["metric": "round trip 100 B \(key.dropLast(3))", "unit": "us", "frame_bytes": frameBytes, "ours": o, "floor": r, "ratio": o / r])
        }

        print("Bus benchmark: loopback, two buses in one process, \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("metric                          unit      ours        raw TCP floor   ours/floor")
        for row in rows {
            let m = (row["metric"] as! String).padding(toLength: 32, withPad: " ", startingAt: 0)
            let u = (row["unit"] as! String).padding(toLength: 8, withPad: " ", startingAt: 0)
            print("\(m)\(u)  \(fmt(row["ours"] as! Double, 10))  \(fmt(row["floor"] as! Double, 14))  \(String(format: "%10.2f", row["ratio"] as! Double))")
        }
        if let json {
            let doc: [String: Any] = ["benchmark": "bus", "date": ISO8601DateFormatter().string(from: Date()), "rows": rows]
            try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: json))
        }
    }

    static func envelope(payloadBytes: Int, from: PID) -> Envelope {
        Envelope(epoch: 1, from: from.description, payload: .frameworkError(FrameworkErrorMessage(message: String(repeating: "x", count: payloadBytes))))
    }

    /// Messages per second from the first send until the receiver has decoded the last one.
    static func throughput(_ a: MessageBus, _ b: MessageBus, _ envelope: Envelope, count: Int) async throws -> Double {
        let receiver = Task {
            var n = 0
            for await event in b.events {
                if case .message = event { n += 1 }
                if n == count { break }
            }
        }
        let start = ContinuousClock.now
        for _ in 0..<count { try await a.send(envelope, to: b.pid!) }
        await receiver.value
        return Double(count) / (ContinuousClock.now - start).inSeconds
    }

    /// Microseconds per request/reply: A sends, B's consumer answers, A waits for the answer.
    static func roundTrips(_ a: MessageBus, _ b: MessageBus, _ ping: Envelope, count: Int) async throws -> [Double] {
        let echo = Task {
            var n = 0
            for await event in b.events {
                guard case .message(let inbound) = event, let from = PID(inbound.envelope.from) else { continue }
                try await b.send(inbound.envelope, to: from)
                n += 1
                if n == count { break }
            }
        }
        var replies = a.events.makeAsyncIterator()
        var samples: [Double] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            let t0 = ContinuousClock.now
            try await a.send(ping, to: b.pid!)
            while let event = await replies.next() { if case .message = event { break } }
            samples.append((ContinuousClock.now - t0).inSeconds * 1e6)
        }
        try await echo.value
        return samples
    }

    static func floor(_ path: String, _ mode: String, _ frameBytes: Int, _ count: Int) throws -> [String: Any] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = [mode, String(frameBytes), String(count)]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        guard p.terminationStatus == 0, let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ValidationError("raw TCP floor failed: \(String(decoding: data, as: UTF8.self))")
        }
        return obj
    }
}

func median(_ xs: [Double]) -> Double { percentile(xs.sorted(), 0.5) }
func percentile(_ sorted: [Double], _ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
func fmt(_ x: Double, _ width: Int) -> String { String(format: "%\(width).1f", x) }
