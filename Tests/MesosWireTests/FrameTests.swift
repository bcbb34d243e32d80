import Testing
@testable import MesosWire

@Suite struct FrameDecoding {
    let codec = FrameCodec(maxFrameSize: 1024)

    func frames(_ envelopes: [Envelope]) throws -> [UInt8] {
        try envelopes.flatMap { try codec.encode($0) }
    }

    @Test func framesArrivingByteByByteDecodeInOrder() throws {
        let bytes = try frames(Samples.envelopes.filter { (try? codec.encode($0)) != nil })
        var decoder = FrameDecoder(codec: codec)
        var out: [Envelope] = []
        for b in bytes {
            decoder.append([b])
            while let e = try decoder.next() { out.append(e) }
        }
        #expect(out == Samples.envelopes.filter { (try? codec.encode($0)) != nil })
        #expect(decoder.bufferedBytes == 0)
    }

    /// The in-place path the bus uses (`decode(_:_:)`): whatever the read sizes, the same
    /// envelopes in the same order, and a frame cut anywhere waits in the decoder.
    @Test(arguments: [1, 3, 4, 5, 17, 100, 1000, 1 << 20])
    func decodingInPlaceFromReadsOfAnySizeGivesTheSameEnvelopes(readSize: Int) throws {
        let all = Samples.envelopes.filter { (try? codec.encode($0)) != nil }
        let bytes = try frames(all + all)
        var decoder = FrameDecoder(codec: codec)
        var out: [Envelope] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + readSize)
            try bytes[offset..<end].withUnsafeBytes { raw in
                try decoder.decode(raw) { out.append($0); return true }
            }
            offset = end
        }
        #expect(out == all + all)
        #expect(decoder.bufferedBytes == 0)
    }

    @Test func decodingInPlaceStopsWhenTold() throws {
        let bytes = try frames([Samples.envelopes[0], Samples.envelopes[0], Samples.envelopes[0]])
        var decoder = FrameDecoder(codec: codec)
        var n = 0
        try bytes.withUnsafeBytes { raw in try decoder.decode(raw) { _ in n += 1; return n < 2 } }
        #expect(n == 2, "no envelope after the handler said stop")
    }

    @Test func decodingInPlaceRefusesABadHeaderEvenAfterAPartialFrame() throws {
        let good = try frames([Samples.envelopes[0]])
        var decoder = FrameDecoder(codec: codec)
        try good.dropLast(2).withUnsafeBytes { raw in try decoder.decode(raw) { _ in true } }
        #expect(decoder.bufferedBytes == good.count - 2)
        var got: [Envelope] = []
        // The rest of the frame, then a header announcing more than maxFrameSize.
        #expect(throws: WireError.frameTooLarge(length: 4097, max: 1024)) {
            try (Array(good.suffix(2)) + [0, 0, 0x10, 0x01]).withUnsafeBytes { raw in try decoder.decode(raw) { got.append($0); return true } }
        }
        #expect(got == [Samples.envelopes[0]], "the frame before the bad header is delivered")
    }

    @Test func manyFramesInOneChunk() throws {
        let all = Samples.envelopes.filter { (try? codec.encode($0)) != nil }
        var decoder = FrameDecoder(codec: codec)
        decoder.append(try frames(all + all))
        var out: [Envelope] = []
        while let e = try decoder.next() { out.append(e) }
        #expect(out == all + all)
    }

    @Test func truncatedFrameWaitsForMore() throws {
        let bytes = try frames([Samples.envelopes[0]])
        var decoder = FrameDecoder(codec: codec)
        decoder.append(bytes.dropLast())
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedBytes == bytes.count - 1)
        decoder.append(bytes.suffix(1))
        #expect(try decoder.next() == Samples.envelopes[0])
    }

    @Test func oversizedHeaderIsRefusedBeforeAnyPayload() {
        var decoder = FrameDecoder(codec: codec)
        decoder.append([0, 0, 4, 1])  // 1025 > 1024
        #expect(throws: WireError.frameTooLarge(length: 1025, max: 1024)) { try decoder.next() }
    }

    @Test func httpRequestIsRefused() {
        var decoder = FrameDecoder(codec: codec)
        decoder.append(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        #expect(throws: WireError.frameTooLarge(length: 0x4745_5420, max: 1024)) { try decoder.next() }
    }

    @Test func emptyFrameIsRefused() {
        var decoder = FrameDecoder(codec: codec)
        decoder.append([0, 0, 0, 0])
        #expect(throws: WireError.emptyFrame) { try decoder.next() }
    }

    @Test func garbagePayloadIsMalformed() {
        var decoder = FrameDecoder(codec: codec)
        decoder.append([0, 0, 0, 6, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
        #expect(throws: WireError.malformed(type: "Envelope", bytes: 6)) { try decoder.next() }
    }

    @Test func wrongMessageTypeIsMalformed() throws {
        // A valid protobuf message of another type lacks the envelope's required fields.
        let other = TaskID(value: "t1").serializedBytes()
        var decoder = FrameDecoder(codec: codec)
        decoder.append([0, 0, 0, UInt8(other.count)] + other)
        #expect(throws: WireError.self) { try decoder.next() }
    }

    @Test func invalidUTF8IsRefused() throws {
        // field 2 (from), length 2, bytes 0xC3 0x28 (invalid UTF-8); field 1 epoch = 1
        let payload: [UInt8] = [0x08, 0x01, 0x12, 0x02, 0xC3, 0x28]
        #expect(throws: WireError.invalidUTF8(field: "Envelope.from")) { try Envelope(serializedBytes: payload) }
    }

    @Test func unknownEnumValueIsRefused() throws {
        var status = TaskStatus(taskID: TaskID(value: "t"), state: .running)
        status.source = .agent
        var bytes = status.serializedBytes()
        // TaskStatus.state is field 2 (varint): tag 0x10, value 1 -> 99
        let i = try #require(bytes.firstIndex(of: 0x10))
        bytes[i + 1] = 99
        #expect(throws: WireError.unknownEnumValue(field: "TaskStatus.state", value: 99)) { try TaskStatus(serializedBytes: bytes) }
    }

    @Test func unknownPayloadKindDecodesWithoutPayload() throws {
        // A newer peer's message kind (field 99) must not break older receivers.
        var bytes = Envelope(epoch: 7, from: "x@h:1").serializedBytes()
        bytes += [0x9A, 0x06, 0x00]  // field 99, length-delimited, empty
        let envelope = try Envelope(serializedBytes: bytes)
        #expect(envelope.epoch == 7 && envelope.payload == nil)
    }

    @Test func senderRefusesOversizedFrames() {
        let big = Envelope(epoch: 1, from: "x@h:1", payload: .frameworkError(FrameworkErrorMessage(message: String(repeating: "x", count: 2000))))
        #expect(throws: WireError.self) { try codec.encode(big) }
    }

    @Test func frameHeaderIsBigEndianLength() throws {
        let envelope = Envelope(epoch: 7, from: "master@10.0.0.1:5050", payload: .frameworkError(FrameworkErrorMessage(message: String(repeating: "x", count: 300))))
        let bytes = try codec.encode(envelope)
        let length = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        #expect(length == bytes.count - 4 && length > 255, "a length that needs two bytes")
        #expect(Array(bytes.dropFirst(4)) == envelope.serializedBytes())
    }

    @Test func defaultsFollowTheProto() {
        let info = FrameworkInfo(user: "u", name: "n")
        #expect(info.role == "*" && info.failoverTimeout == 0 && info.checkpoint == false)
        #expect(MasterInfo(id: "m", ip: 1).port == 5050)
        #expect(TaskState.running.protoName == "TASK_RUNNING" && TaskState.lost.rawValue == 5)
    }
}
