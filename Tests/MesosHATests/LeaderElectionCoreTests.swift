import MesosWire
import Testing
@testable import MesosHA

func memberJSON(_ pid: String, id: String = "m") -> [UInt8] {
    MasterInfoJSON.encode(MasterInfo(id: id, ip: 16_777_343, port: 5050, pid: pid, hostname: "localhost"))
}

@Suite struct LeaderGroupTests {
    @Test func sequencesOfMesosZnodeNames() {
        #expect(LeaderGroup.sequence(of: "json.info_0000000003") == 3)
        #expect(LeaderGroup.sequence(of: "json.info_0000000000") == 0)
        for other in ["info_0000000003", "json.info_", "json.info_12a", "json.info_-1", "registry", "log_replicas", "json.info_٣"] {
            #expect(LeaderGroup.sequence(of: other) == nil, "\(other)")
        }
    }

    @Test func membersSortNumericallyAndSkipOthers() {
        let names = ["json.info_0000000010", "registry", "json.info_0000000002", "json.info_x", "json.info_0000000009"]
        #expect(LeaderGroup.members(names).map(\.sequence) == [2, 9, 10])
    }

    @Test func masterInfoJSONIsMesosShaped() throws {
        var info = MasterInfo(id: "id-1", ip: MasterInfoJSON.packedIPv4("127.0.0.1")!, port: 5050, pid: "master@127.0.0.1:5050", hostname: "h", version: "1.11.0")
        info.address = Address(hostname: "h", ip: "127.0.0.1", port: 5050)
        let text = String(decoding: MasterInfoJSON.encode(info), as: UTF8.self)
        #expect(text == #"{"address":{"hostname":"h","ip":"127.0.0.1","port":5050},"hostname":"h","id":"id-1","ip":16777343,"pid":"master@127.0.0.1:5050","port":5050,"version":"1.11.0"}"#)
        #expect(try MasterInfoJSON.decode(Array(text.utf8)) == info)
    }

    @Test func masterInfoJSONFromMesos() throws {
        // As written by Apache Mesos 1.x masters.
        let mesos = #"{"address":{"hostname":"mesos-m1","ip":"10.0.0.5","port":5050},"hostname":"mesos-m1","id":"3b6f0b7c-9d0e","ip":83886090,"pid":"master@10.0.0.5:5050","port":5050,"version":"1.11.0"}"#
        let info = try MasterInfoJSON.decode(Array(mesos.utf8))
        #expect(info.pid == "master@10.0.0.5:5050" && info.ip == MasterInfoJSON.packedIPv4("10.0.0.5") && info.address?.ip == "10.0.0.5")
    }

    @Test func invalidMasterInfoJSON() {
        for bad in ["", "[]", "{}", #"{"id":"x"}"#, #"{"id":"x","ip":1}"#, #"{"id":"x","ip":-1,"port":1}"#, "not json"] {
            #expect(throws: MasterInfoJSON.Invalid.self, "\(bad)") { try MasterInfoJSON.decode(Array(bad.utf8)) }
        }
    }
}

@Suite struct LeaderDetectorCoreTests {
    @Test func reportsTheLowestMemberOnceItsDataIsRead() {
        var d = LeaderDetectorCore()
        #expect(d.handle(.connected) == [.listChildrenAndWatch])
        #expect(d.handle(.children(["json.info_0000000005", "json.info_0000000003"])) == [.readMember("json.info_0000000003")])
        let effects = d.handle(.memberData(name: "json.info_0000000003", data: memberJSON("master@h:1")))
        #expect(effects.count == 1)
        guard case .report(let leader?) = effects.first else { Issue.record("no report"); return }
        #expect(leader.epoch == 3 && leader.pid == "master@h:1")
        // Same lowest member again: nothing to do.
        #expect(d.handle(.children(["json.info_0000000003", "json.info_0000000007"])) == [])
    }

    @Test func reportsEveryChangeAndNoLeader() {
        var d = LeaderDetectorCore()
        _ = d.handle(.children(["json.info_0000000001"]))
        _ = d.handle(.memberData(name: "json.info_0000000001", data: memberJSON("m1@h:1")))
        #expect(d.handle(.children(["json.info_0000000002"])) == [.readMember("json.info_0000000002")])
        guard case .report(let l?)? = d.handle(.memberData(name: "json.info_0000000002", data: memberJSON("m2@h:2"))).first else {
            Issue.record("no report"); return
        }
        #expect(l.epoch == 2 && l.pid == "m2@h:2")
        #expect(d.handle(.children([])) == [.report(nil)])
        #expect(d.handle(.children(["registry"])) == [])
    }

    @Test func sessionLossMeansNoLeader() {
        var d = LeaderDetectorCore()
        _ = d.handle(.children(["json.info_0000000001"]))
        _ = d.handle(.memberData(name: "json.info_0000000001", data: memberJSON("m1@h:1")))
        #expect(d.handle(.sessionLost) == [.report(nil)])
        #expect(d.handle(.sessionLost) == [])
        #expect(d.handle(.connected) == [.listChildrenAndWatch])
    }

    @Test func staleDataReadsAreIgnored() {
        var d = LeaderDetectorCore()
        _ = d.handle(.children(["json.info_0000000001"]))
        _ = d.handle(.children(["json.info_0000000002"]))  // 1 vanished before its data came back
        #expect(d.handle(.memberData(name: "json.info_0000000001", data: memberJSON("m1@h:1"))) == [])
        #expect(d.handle(.memberData(name: "json.info_0000000002", data: nil)) == [])  // vanished too
        #expect(d.leader == nil)
    }

    @Test func neverGoesBackToAnOlderEpoch() {
        var d = LeaderDetectorCore(epochFloor: 0)
        _ = d.handle(.children(["json.info_0000000009"]))
        _ = d.handle(.memberData(name: "json.info_0000000009", data: memberJSON("m9@h:9")))
        #expect(d.epochFloor == 9)
        let effects = d.handle(.children(["json.info_0000000004"]))  // e.g. a recreated group
        #expect(effects.first == .report(nil))
        #expect(effects.count == 2)
        #expect(d.handle(.children(["json.info_0000000010"])) == [.readMember("json.info_0000000010")])
    }

    @Test func invalidLeaderDataMeansNoLeaderWithAWarning() {
        var d = LeaderDetectorCore()
        _ = d.handle(.children(["json.info_0000000001"]))
        let effects = d.handle(.memberData(name: "json.info_0000000001", data: Array("garbage".utf8)))
        #expect(effects.count == 1)  // no report (was already nil), one warning
        guard case .warn = effects.first else { Issue.record("no warning"); return }
    }
}

@Suite struct LeaderContenderCoreTests {
    @Test func lowestMemberIsElectedWithItsSequenceAsEpoch() {
        var c = LeaderContenderCore()
        #expect(c.handle(.start) == [.createMembership])
        #expect(c.handle(.joined("json.info_0000000004")) == [.listChildren])
        #expect(c.handle(.children(["json.info_0000000004", "json.info_0000000005"])) == [.watchMembership("json.info_0000000004"), .elected(epoch: 4)])
        #expect(c.state == .leading("json.info_0000000004", epoch: 4))
    }

    @Test func watchesOnlyItsPredecessor() {
        var c = LeaderContenderCore()
        _ = c.handle(.start)
        _ = c.handle(.joined("json.info_0000000007"))
        let names = ["json.info_0000000002", "json.info_0000000005", "json.info_0000000007", "json.info_0000000009", "other"]
        #expect(c.handle(.children(names)) == [.watchPredecessor("json.info_0000000005")])
        #expect(c.handle(.predecessorGone) == [.listChildren])
        #expect(c.handle(.children(["json.info_0000000002", "json.info_0000000007"])) == [.watchPredecessor("json.info_0000000002")])
        _ = c.handle(.predecessorGone)
        #expect(c.handle(.children(["json.info_0000000007", "json.info_0000000009"])) == [.watchMembership("json.info_0000000007"), .elected(epoch: 7)])
    }

    @Test func refusesToLeadAtOrBelowTheEpochFloor() {
        var c = LeaderContenderCore(epochFloor: 10)
        _ = c.handle(.start)
        #expect(c.handle(.joined("json.info_0000000003")) == [.deleteMembership("json.info_0000000003"), .createMembership])
        #expect(c.handle(.joined("json.info_0000000010")) == [.deleteMembership("json.info_0000000010"), .createMembership])
        #expect(c.handle(.joined("json.info_0000000011")) == [.listChildren])
        #expect(c.handle(.children(["json.info_0000000011"])) == [.watchMembership("json.info_0000000011"), .elected(epoch: 11)])
    }

    @Test func losingTheSessionOrTheZnodeEndsTheCandidacy() {
        var leading = LeaderContenderCore()
        _ = leading.handle(.start)
        _ = leading.handle(.joined("json.info_0000000001"))
        _ = leading.handle(.children(["json.info_0000000001"]))
        #expect(leading.handle(.sessionLost) == [.lost(reason: "ZooKeeper session expired")])
        #expect(leading.state == .done)
        #expect(leading.handle(.children(["json.info_0000000001"])) == [])

        var deleted = LeaderContenderCore()
        _ = deleted.handle(.start)
        _ = deleted.handle(.joined("json.info_0000000001"))
        _ = deleted.handle(.children(["json.info_0000000001"]))
        #expect(deleted.handle(.membershipDeleted) == [.lost(reason: "membership znode json.info_0000000001 was deleted")])

        var vanished = LeaderContenderCore()
        _ = vanished.handle(.start)
        _ = vanished.handle(.joined("json.info_0000000003"))
        #expect(vanished.handle(.children(["json.info_0000000001"])) == [.lost(reason: "membership znode json.info_0000000003 is gone")])
    }

    @Test func withdrawDeletesTheZnodeAtOnce() {
        var c = LeaderContenderCore()
        _ = c.handle(.start)
        _ = c.handle(.joined("json.info_0000000001"))
        _ = c.handle(.children(["json.info_0000000001"]))
        #expect(c.handle(.withdraw) == [.deleteMembership("json.info_0000000001")])
        #expect(c.handle(.sessionLost) == [])

        var early = LeaderContenderCore()
        _ = early.handle(.start)
        #expect(early.handle(.withdraw) == [])
        #expect(early.handle(.joined("json.info_0000000002")) == [.deleteMembership("json.info_0000000002")])
    }
}
