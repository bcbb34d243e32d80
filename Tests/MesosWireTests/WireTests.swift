import Testing
@testable import MesosWire

struct RoundTripCase: Sendable, CustomTestStringConvertible {
    let name: String
    let check: @Sendable () throws -> Void
    let encode: @Sendable () -> [UInt8]
    let decodesToSample: @Sendable ([UInt8]) throws -> Void
    init<M: ProtobufMessage>(_ name: String, _ sample: M) {
        self.name = name
        self.encode = { sample.serializedBytes() }
        self.decodesToSample = { bytes in
            let back = try M(serializedBytes: bytes)
            #expect(back == sample, "\(name)")
        }
        self.check = {
            let bytes = sample.serializedBytes()
            let back = try M(serializedBytes: bytes)
            #expect(back == sample, "\(name) changed in a round trip")
            #expect(back.serializedBytes() == bytes, "\(name) re-encodes differently")
        }
    }
    var testDescription: String { name }
}

@Suite struct RoundTrip {
    @Test(arguments: Samples.roundTrips)
    func everyMessage(_ c: RoundTripCase) throws { try c.check() }
}

@Suite struct PIDParsingTests {
    /// Printable ASCII takes a byte-level path; every answer must be the general path's.
    @Test func theASCIIPathAnswersAsTheGeneralPath() {
        let cases = [
            "master@10.0.0.1:5050", "slave(1)@host.example:5051", "s@[::1]:4000", "s@::1:4000", "a@b@c:1", "n@h:+80", "n@h:0080",
            "n@h:000080", "n@h:65535", "n@h:65536", "n@h:0", "n@h:-1", "n@h:", "@h:1", "n@:1", "n@[]:1", "n@[::1]1", "n@[::1]:x",
            "n@[::1:1", "n@h:1:2", "n@h", "master", "", "@", "n@[a]b]:1", "n@h]:1", "n@[h:1", "x@y:12345678901234567890",
        ]
        for text in cases {
            #expect(PID.printableASCII(text) == .some(PID.parsedScalars(text)), "\(text)")
            #expect(PID(text) == PID.parsedScalars(text), "\(text)")
        }
    }

    @Test func textThatIsNotPrintableASCIITakesTheGeneralPath() {
        for text in ["nö@h:1", "n@hé:1", "n @h:1", "n@h:1\n", "n\t@h:1", "n@h:1\u{7F}"] {
            #expect(PID.printableASCII(text) == nil, "\(text)")
            #expect(PID(text) == PID.parsedScalars(text), "\(text)")
        }
        #expect(PID("nö@h:1") == PID(name: "nö", host: "h", port: 1))
        #expect(PID("n @h:1") == nil && PID("n@h:1\n") == nil)
    }
}
