import Foundation
import Testing
@testable import MesosWire

/// Swift (protobuf-c) and Python (protoc's Python classes from the same .proto) read each other's bytes.
@Suite struct CrossLanguage {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func pythonReadsSwiftAndSwiftReadsPython() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cross-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        var expected: [String: RoundTripCase] = [:]
        for c in Samples.roundTrips {
            try Data(c.encode()).write(to: dir.appendingPathComponent("\(c.name).bin"))
            expected[c.name] = c
        }
        for (i, e) in Samples.envelopes.enumerated() {
            try Data(e.serializedBytes()).write(to: dir.appendingPathComponent("Envelope#\(i).bin"))
        }

        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        python.arguments = [Self.packageRoot.appendingPathComponent("python/tests/cross_language.py").path, dir.path]
        let output = Pipe()
        python.standardOutput = output
        python.standardError = output
        try python.run()
        python.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        try #require(python.terminationStatus == 0, "python failed: \(text)")

        // Python's re-encoding of every Swift message decodes back to the same value.
        for (name, c) in expected {
            let bytes = try [UInt8](Data(contentsOf: dir.appendingPathComponent("\(name).py.bin")))
            try c.decodesToSample(bytes)
        }
        for (i, e) in Samples.envelopes.enumerated() {
            let bytes = try [UInt8](Data(contentsOf: dir.appendingPathComponent("Envelope#\(i).py.bin")))
            #expect(try Envelope(serializedBytes: bytes) == e)
        }

        // Messages Python built field by field.
        let update = try Envelope(serializedBytes: [UInt8](Data(contentsOf: dir.appendingPathComponent("python-status-update.bin"))))
        #expect(update.epoch == 42 && update.from == "slave(1)@127.0.0.1:5051")
        guard case .statusUpdate(let m)? = update.payload else { Issue.record("not a status update"); return }
        #expect(m.update.frameworkID.value == "fw-π")
        #expect(m.update.status.state == .running && m.update.status.source == .agent)
        #expect(m.update.status.uuid == [1, 2, 3, 0, 255] && m.update.timestamp == 1_700_000_000.5)

        let offers = try Envelope(serializedBytes: [UInt8](Data(contentsOf: dir.appendingPathComponent("python-offers.bin"))))
        guard case .resourceOffers(let o)? = offers.payload else { Issue.record("not offers"); return }
        #expect(o.offers.map(\.id.value) == ["offer-0", "offer-1", "offer-2"])
        #expect(o.offers[2].resources == [Resource(name: "cpus", scalar: 2.5)])
        #expect(o.pids.count == 3)
    }
}
