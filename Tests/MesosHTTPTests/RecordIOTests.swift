import MesosWire
import Testing
@testable import MesosHTTP

@Suite struct RecordIOTests {
    @Test func encodesTheLengthInDecimalThenALineFeedThenTheRecord() {
        #expect(RecordIO.encode(Array(#"{"type":"HEARTBEAT"}"#.utf8)) == Array("20\n{\"type\":\"HEARTBEAT\"}".utf8))
        #expect(RecordIO.encode([]) == Array("0\n".utf8))
    }

    @Test func decodesRecordsSplitAtEveryByte() throws {
        let records: [[UInt8]] = [Array("hello".utf8), [], Array(repeating: 0x0A, count: 12), Array("x".utf8)]
        let stream = records.flatMap(RecordIO.encode)
        var decoder = RecordIODecoder()
        var out: [[UInt8]] = []
        for b in stream { out += try decoder.feed([b]) }
        #expect(out == records)
        #expect(!decoder.hasPartialRecord)
        var whole = RecordIODecoder()
        #expect(try whole.feed(stream) == records)
    }

    @Test func refusesHostileLengthsBeforeBufferingTheRecord() {
        var big = RecordIODecoder(maxRecordSize: 1000)
        #expect(throws: RecordIOError.recordTooLarge(limit: 1000)) { try big.feed(Array("1001\n".utf8)) }
        var overflow = RecordIODecoder()
        #expect(throws: RecordIOError.recordTooLarge(limit: 16 * 1024 * 1024)) { try overflow.feed(Array("99999999999999999999999999\n".utf8)) }
        var letters = RecordIODecoder()
        #expect(throws: RecordIOError.invalidLength(byte: UInt8(ascii: "x"))) { try letters.feed(Array("1x\n".utf8)) }
        var negative = RecordIODecoder()
        #expect(throws: RecordIOError.invalidLength(byte: UInt8(ascii: "-"))) { try negative.feed(Array("-1\n".utf8)) }
        var empty = RecordIODecoder()
        #expect(throws: RecordIOError.emptyLength) { try empty.feed(Array("\nabc".utf8)) }
        // A failed decoder stays failed.
        #expect(throws: RecordIOError.emptyLength) { try empty.feed(Array("3\nabc".utf8)) }
    }

    @Test func aPartialRecordWaitsForItsBytes() throws {
        var d = RecordIODecoder()
        #expect(try d.feed(Array("5\nhel".utf8)).isEmpty)
        #expect(d.hasPartialRecord)
        #expect(try d.feed(Array("lo3\nabc".utf8)) == [Array("hello".utf8), Array("abc".utf8)])
    }
}

@Suite struct ProtoJSONTests {
    @Test func parsesStrictJSON() throws {
        let v = try JSON.parse(Array(#" {"a":[1,-2.5e1,"x\u00e9\ud83d\ude00\n"],"b":{"c":null,"d":true}} "#.utf8))
        #expect(v["a"] == .array([.integer(1), .number(-25), .string("xé😀\n")]))
        #expect(v["b"]?["d"] == .bool(true))
        for bad in ["{", "[1,]", "{\"a\" 1}", "01x", "\"\u{01}\"", "nul", "{} x", "1.", "-"] {
            #expect(throws: JSONParseError.self) { try JSON.parse(Array(bad.utf8)) }
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONParseError.tooDeep(limit: 64)) { try JSON.parse(Array(deep.utf8)) }
    }

    @Test func readsACallAsMesosMapsIt() throws {
        let body = #"""
            {"type":"ACKNOWLEDGE","framework_id":{"value":"f1"},"unknown_key":{"x":1},
             "acknowledge":{"agent_id":{"value":"a1"},"task_id":{"value":"t1"},"uuid":"AAECAwQFBgcICQoLDA0ODw"}}
            """#
        let call = try V1Call.decode(json: Array(body.utf8))
        #expect(call.type == .acknowledge)
        #expect(call.frameworkID == V1FrameworkID(value: "f1"))
        #expect(call.acknowledge?.uuid == Array(0..<16))
        #expect(call.subscribe == nil)
    }

    @Test func namesTheFieldThatIsWrong() {
        #expect(throws: ProtoJSONDecodeError.message(.missingRequired(field: "call.subscribe.framework_info.user"))) {
            try V1Call.decode(json: Array(#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"x"}}}"#.utf8))
        }
        #expect(throws: ProtoJSONDecodeError.message(.wrongType(field: "call.type", expected: "an enum name (string)"))) {
            try V1Call.decode(json: Array(#"{"type":1}"#.utf8))
        }
        // An optional enum with an unknown name is dropped, as stout does.
        #expect((try? V1Call.decode(json: Array(#"{"type":"NOT_A_CALL"}"#.utf8)))?.type == nil)
        #expect(throws: ProtoJSONDecodeError.self) { try V1Call.decode(json: Array("{".utf8)) }
    }

    @Test func writesAnEventWithProtoFieldNamesEnumNamesAndBase64() {
        let status = V1TaskStatus(taskID: V1TaskID(value: "t1"), state: .running, source: .executor, agentID: V1AgentID(value: "a1"), timestamp: 2.5, uuid: [1, 2, 3])
        let event = V1Event(type: .update, update: V1Event.Update(status: status))
        #expect(event.json.rendered == #"{"type":"UPDATE","update":{"status":{"task_id":{"value":"t1"},"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR","agent_id":{"value":"a1"},"timestamp":2.5,"uuid":"AQID"}}}"#)
        let info = V1MasterInfo(id: "m", ip: 16_777_343, port: 5050)
        #expect(info.json.rendered == #"{"id":"m","ip":16777343,"port":5050}"#)
    }

    @Test func jsonAndProtobufCarryTheSameCall() throws {
        let call = V1Call(
            frameworkID: V1FrameworkID(value: "f"), type: .accept,
            accept: V1Call.Accept(
                offerIDs: [V1OfferID(value: "o1")],
                operations: [V1Offer.Operation(type: .launch, launch: V1Offer.Operation.Launch(taskInfos: [
                    V1TaskInfo(name: "t", taskID: V1TaskID(value: "t"), agentID: V1AgentID(value: "a"),
                        resources: [V1Resource(name: "cpus", type: .scalar, scalar: V1Value.Scalar(value: 0.5))], command: V1CommandInfo(value: "sleep 1"))
                ]))],
                filters: V1Filters(refuseSeconds: 1)))
        let viaJSON = try V1Call.decode(json: call.json.bytes)
        let viaProtobuf = try V1Call(serializedBytes: call.serializedBytes())
        #expect(viaJSON == call)
        #expect(viaProtobuf == call)
    }
}

