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
