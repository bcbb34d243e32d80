import MesosCore
import MesosWire
import Testing

func memberJSON(_ pid: PID, id: String = "m") -> [UInt8] {
    MasterInfoJSON.encode(MasterInfo(id: id, ip: 16_777_343, port: 5050, pid: pid.description, hostname: "localhost"))
}

@Suite struct LeaderGroupTests {
    @Test func sequencesOfMesosZnodeNames() {
        #expect(LeaderGroup.sequence(of: "json.info_0000000003") == 3)
        #expect(LeaderGroup.sequence(of: "json.info_0000000000") == 0)
        for other in ["info_0000000003", "json.info_", "json.info_12a", "json.info_-1", "registry", "log_replicas", "json.info_٣", "zz-epoch-floor-0000000004"] {
            #expect(LeaderGroup.sequence(of: other) == nil, "\(other)")
        }
    }

    @Test func membersSortNumericallyAndSkipOthers() {
        let names = ["json.info_0000000010", "registry", "json.info_0000000002", "json.info_x", "json.info_0000000009", "zz-epoch-floor-0000000001"]
        #expect(LeaderGroup.members(names).map(\.sequence) == [2, 9, 10])
    }

    /// Mesos's Group splits children on `_` and skips what has no numeric last part; clients that
    /// take the smallest child must find a `json.info_` member, never a floor marker.
    @Test func floorMarkersAreInvisibleToMesosAndSortAfterMembers() {
        let marker = LeaderGroup.floorMarkerPrefix + "0000000004"
        #expect(!marker.contains("_"))
        #expect(UInt64(marker.split(separator: "_").last ?? "") == nil)
        #expect(marker > "json.info_9999999999")
        #expect(LeaderGroup.floorMarkerSequence(of: marker) == 4)
        #expect(LeaderGroup.floorMarkerSequence(of: "json.info_0000000004") == nil)
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
        let huge = "{\"id\":\"" + String(repeating: "x", count: 70_000) + "\",\"ip\":1,\"port\":1}"
        for bad in ["", "[]", "{}", #"{"id":"x"}"#, #"{"id":"x","ip":1}"#, #"{"id":"x","ip":-1,"port":1}"#, "not json", huge] {
            #expect(throws: MasterInfoJSON.Invalid.self, "\(bad.prefix(40))") { try MasterInfoJSON.decode(Array(bad.utf8)) }
        }
    }
}

@Suite struct LeaderDetectorCoreTests {
    @Test func reportsTheLowestMemberOnceItsDataIsRead() {
        var d = LeaderDetectorCore()
        #expect(d.handle(.connected) == [.request(.listChildrenAndWatch)])
        #expect(d.handle(.children(["json.info_0000000005", "json.info_0000000003"])) == [.request(.readMember("json.info_0000000003"))])
        let effects = d.handle(.memberData(name: "json.info_0000000003", data: memberJSON(P.master)))
        guard case .report(let l?)? = effects.first, effects.count == 1 else { Issue.record("no report"); return }
        #expect(l.epoch == 3 && l.pid == P.master)
        #expect(d.handle(.children(["json.info_0000000003", "json.info_0000000007"])) == [], "same lowest member: nothing to do")
    }

    /// The old leader is gone once another znode is lowest: report no leader at once, never the
    /// stale one while the new one is read (or while its read fails and is retried).
    @Test func aNewLowestMemberReportsNoLeaderUntilReadAndRetriesFailedReads() {
        var d = LeaderDetectorCore()
        _ = d.handle(.connected)
        _ = d.handle(.children(["json.info_0000000003"]))
        _ = d.handle(.memberData(name: "json.info_0000000003", data: memberJSON(P.master)))
        #expect(d.handle(.children(["json.info_0000000004"])) == [.report(nil), .request(.readMember("json.info_0000000004"))])
        let failed = d.handle(.failed(.readMember("json.info_0000000004"), error: "CONNECTIONLOSS"))
        #expect(failed.contains(.retry(.readMember("json.info_0000000004"), after: .milliseconds(100))))
        let again = d.handle(.failed(.readMember("json.info_0000000004"), error: "CONNECTIONLOSS"))
        #expect(again.contains(.retry(.readMember("json.info_0000000004"), after: .milliseconds(200))), "the backoff doubles")
        #expect(d.handle(.retryDue(.readMember("json.info_0000000004"))) == [.request(.readMember("json.info_0000000004"))])
        let report = d.handle(.memberData(name: "json.info_0000000004", data: memberJSON(P.master2)))
        #expect(report == [.report(Leader(epoch: 4, pid: P.master2, info: MasterInfo(id: "m", ip: 16_777_343, port: 5050, pid: P.master2.description, hostname: "localhost")))])
    }

    @Test func aVanishedMemberIsNoLeaderAndAFailedListIsRetried() {
        var d = LeaderDetectorCore()
        _ = d.handle(.connected)
        _ = d.handle(.children(["json.info_0000000003"]))
        _ = d.handle(.memberData(name: "json.info_0000000003", data: memberJSON(P.master)))
        _ = d.handle(.children(["json.info_0000000004"]))
        #expect(d.handle(.memberData(name: "json.info_0000000004", data: nil)) == [])
        #expect(d.leader == nil)
        #expect(d.handle(.failed(.listChildrenAndWatch, error: "OPERATIONTIMEOUT")).contains(.retry(.listChildrenAndWatch, after: .milliseconds(100))))
        #expect(d.handle(.childrenChanged) == [.request(.listChildrenAndWatch)])
    }

    @Test func neverGoesBelowTheNewestEpoch() {
        var d = LeaderDetectorCore(epochFloor: 10)
        _ = d.handle(.connected)
        let effects = d.handle(.children(["json.info_0000000002"]))
        #expect(effects.contains(.observe(.belowFloor(name: "json.info_0000000002", epoch: 2, floor: 10))))
        #expect(!effects.contains { if case .request = $0 { true } else { false } })
    }

    @Test func aMemberWithUnusableDataIsNoLeader() {
        var d = LeaderDetectorCore()
        _ = d.handle(.connected)
        _ = d.handle(.children(["json.info_0000000003"]))
        let effects = d.handle(.memberData(name: "json.info_0000000003", data: Array(#"{"id":"x","ip":1,"port":1,"pid":"not a pid"}"#.utf8)))
        #expect(d.leader == nil)
        #expect(effects.contains { if case .observe(.unusableMember) = $0 { true } else { false } })
    }

    @Test func sessionLossAndAMissingGroup() {
        var d = LeaderDetectorCore()
        _ = d.handle(.connected)
        _ = d.handle(.children(["json.info_0000000003"]))
        _ = d.handle(.memberData(name: "json.info_0000000003", data: memberJSON(P.master)))
        #expect(d.handle(.sessionLost) == [.report(nil)])
        #expect(d.handle(.failed(.listChildrenAndWatch, error: "x")) == [], "nothing is retried without a session")
        _ = d.handle(.connected)
        #expect(d.handle(.groupMissing) == [.request(.watchGroupCreation)])
        #expect(d.handle(.groupCreated) == [.request(.listChildrenAndWatch)])
    }
}

/// One follower's view of the process's shared detector (`DetectorPool`).
@Suite struct DetectorSubscriptionTests {
    static let old = Leader(epoch: 3, pid: PID("master@127.0.0.1:5050")!)
    static let new = Leader(epoch: 7, pid: PID("master@127.0.0.1:5051")!)

    @Test func passesOnEachChangeOnceAndNothingBeforeTheFirstLeader() {
        var s = DetectorSubscription()
        #expect(s.deliver(nil) == nil, "no leader yet: as a detector of its own, nothing to tell")
        #expect(s.deliver(Self.old) == .init(leader: Self.old))
        #expect(s.deliver(Self.old) == nil, "the same leader again (a follower added late hears the current one)")
        #expect(s.deliver(nil) == .init(leader: nil))
        #expect(s.deliver(Self.new) == .init(leader: Self.new))
        #expect(s.epochFloor == 7)
    }

    /// An agent's checkpointed floor stays its own: the shared detector may report an older leader
    /// (it started from floor 0), which is "no leader" for this follower, never that leader.
    @Test func aSharedReportBelowTheFollowersFloorIsNoLeader() {
        var s = DetectorSubscription(epochFloor: 5)
        #expect(s.deliver(Self.old) == nil, "below the floor and nothing reported yet: nothing")
        #expect(s.deliver(Self.new) == .init(leader: Self.new))
        #expect(s.deliver(Self.old) == .init(leader: nil), "went back below the floor: no leader")
        #expect(s.leader == nil && s.epochFloor == 7)
        #expect(s.deliver(Self.new) == .init(leader: Self.new))
    }
}

@Suite struct LeaderContenderCoreTests {
    @Test func electedWhenLowestAndWatchesOnlyItsPredecessor() {
        var c = LeaderContenderCore()
        #expect(c.handle(.start(ledInRegistry: 0, ledHere: 0)) == [.request(.createFloorMarker)], "even a fresh group's counter is moved past 0 first")
        #expect(c.handle(.floorMarkerCreated("zz-epoch-floor-0000000000")) == [.request(.delete("zz-epoch-floor-0000000000")), .request(.createMembership)])
        #expect(c.handle(.joined("json.info_0000000007")) == [.observe(.joined("json.info_0000000007")), .request(.listChildren)])
        #expect(c.handle(.children(["json.info_0000000005", "json.info_0000000007", "json.info_0000000003"])) == [.request(.watchPredecessor("json.info_0000000005"))])
        #expect(c.handle(.predecessorGone) == [.request(.listChildren)])
        #expect(c.handle(.children(["json.info_0000000007"])) == [.request(.watchMembership("json.info_0000000007")), .elected(epoch: 7)])
        #expect(c.handle(.membershipDeleted) == [.lost(.membershipDeleted)])
    }

    /// The floor is passed with markers, not members: no detector ever sees a member at or below it.
    @Test func passesTheEpochFloorWithMarkersBeforeJoining() {
        var c = LeaderContenderCore()
        #expect(c.handle(.start(ledInRegistry: 5, ledHere: 3)) == [.request(.createFloorMarker)])
        #expect(c.epochFloor == 5)
        #expect(c.handle(.floorMarkerCreated("zz-epoch-floor-0000000001")) == [.request(.delete("zz-epoch-floor-0000000001")), .request(.createFloorMarker)])
        #expect(c.handle(.floorMarkerCreated("zz-epoch-floor-0000000005")) == [.request(.delete("zz-epoch-floor-0000000005")), .request(.createMembership)])
        #expect(c.handle(.joined("json.info_0000000006")).contains(.request(.listChildren)))
        #expect(c.handle(.children(["json.info_0000000006"])).contains(.elected(epoch: 6)))
    }

    @Test func aMembershipAtOrBelowTheFloorIsBurnt() {
        var c = LeaderContenderCore()
        _ = c.handle(.start(ledInRegistry: 0, ledHere: 9))
        _ = c.handle(.floorMarkerCreated("zz-epoch-floor-0000000009"))
        let effects = c.handle(.joined("json.info_0000000002"))  // the group was recreated meanwhile
        #expect(effects.first == .request(.delete("json.info_0000000002")))
        #expect(effects.last == .request(.createFloorMarker))
    }

    @Test func retryableFailuresAreRetriedAndOthersEndTheCandidacy() {
        var c = LeaderContenderCore()
        _ = c.handle(.start(ledInRegistry: 0, ledHere: 0))
        _ = c.handle(.floorMarkerCreated("zz-epoch-floor-0000000000"))
        #expect(c.handle(.failed(.createMembership, retryable: true, error: "CONNECTIONLOSS")).contains(.retry(.createMembership, after: .milliseconds(200))))
        #expect(c.handle(.retryDue(.createMembership)) == [.request(.createMembership)])
        #expect(c.handle(.failed(.createMembership, retryable: false, error: "NOAUTH")).last == .lost(.contenderFailed("createMembership failed: NOAUTH")))
    }

    @Test func sessionLossEndsItAndWithdrawDeletesTheMembership() {
        var a = LeaderContenderCore()
        _ = a.handle(.start(ledInRegistry: 0, ledHere: 0))
        _ = a.handle(.floorMarkerCreated("zz-epoch-floor-0000000000"))
        _ = a.handle(.joined("json.info_0000000001"))
        #expect(a.handle(.sessionLost) == [.lost(.sessionExpired)])

        var b = LeaderContenderCore()
        _ = b.handle(.start(ledInRegistry: 0, ledHere: 0))
        _ = b.handle(.floorMarkerCreated("zz-epoch-floor-0000000000"))
        _ = b.handle(.joined("json.info_0000000001"))
        #expect(b.handle(.withdraw) == [.request(.delete("json.info_0000000001"))])
        #expect(b.handle(.joined("json.info_0000000002")) == [.request(.delete("json.info_0000000002"))], "a create in flight when withdrawing is undone")
        #expect(b.handle(.children(["json.info_0000000002"])) == [], "late results after withdrawing are ignored")
    }
}

@Suite struct FixedMasterCoreTests {
    @Test func learnsTheEpochOnlyFromTheConfiguredMastersOwnHint() {
        var core = FixedMasterCore(master: PID("master@127.0.0.1:5050")!)
        #expect(core.leader == Leader(epoch: 0, pid: PID("master@127.0.0.1:5050")!))
        let info = MasterInfo(id: "m", ip: 1, port: 5050, pid: "master@127.0.0.1:5050")
        // A hint about another master, from another host with the same port, or from another port: ignored.
        #expect(core.hint(LeaderHintMessage(leader: MasterInfo(id: "x", ip: 1, port: 5051, pid: "master@10.0.0.9:5051"), leaderEpoch: 9), from: "master@127.0.0.1:5050") == nil)
        #expect(core.hint(LeaderHintMessage(leader: MasterInfo(id: "x", ip: 1, port: 5050, pid: "master@10.9.9.9:5050"), leaderEpoch: 9), from: "master@10.9.9.9:5050") == nil)
        #expect(core.hint(LeaderHintMessage(leader: info, leaderEpoch: 9), from: "master@127.0.0.1:6060") == nil)
        #expect(core.hint(LeaderHintMessage(leader: info, leaderEpoch: 7), from: "master@127.0.0.1:5050") == Leader(epoch: 7, pid: PID("master@127.0.0.1:5050")!, info: info))
        #expect(core.hint(LeaderHintMessage(leader: info, leaderEpoch: 6), from: "master@127.0.0.1:5050") == nil, "epochs never go back")
    }
}

@Suite struct LocalSessionExpiryTests {
    @Test func disconnectedForTheWholeTimeoutIsExpired() {
        var e = LocalSessionExpiry(requestedTimeout: .seconds(10))
        e.connected(negotiatedTimeout: .seconds(2))
        let deadline = e.disconnected(at: .seconds(5))
        #expect(deadline.at == .seconds(7))
        #expect(!e.isDue(deadline, now: .milliseconds(6999)))
        #expect(e.isDue(deadline, now: .seconds(7)))
    }

    @Test func aReconnectCancelsTheDeadlineAndRepeatedDisconnectsKeepTheFirst() {
        var e = LocalSessionExpiry(requestedTimeout: .seconds(2))
        let first = e.disconnected(at: .seconds(1))
        #expect(e.disconnected(at: .seconds(2)) == first)
        e.connected(negotiatedTimeout: .seconds(2))
        #expect(!e.isDue(first, now: .seconds(10)))
        let second = e.disconnected(at: .seconds(20))
        e.expired()
        #expect(!e.isDue(second, now: .seconds(30)), "after an expiry the old deadline is void")
    }
}
