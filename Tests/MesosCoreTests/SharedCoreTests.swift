import MesosCore
import MesosWire
import Testing

@Suite struct LeaderFollowerTests {
    static let settings = LeaderFollower.Settings(backoffFactor: .seconds(1), maxBackoff: .seconds(4))

    @Test func aNewLeaderRaisesTheFloorAndSchedulesAJitteredAttempt() {
        var f = LeaderFollower(settings: Self.settings, seed: 1)
        #expect(f.leaderDetected(leader(P.master, epoch: 3), now: .zero) == .newLeader(leader(P.master, epoch: 3), floorRaised: true))
        #expect(f.epochFloor == 3)
        let at = f.nextAttempt ?? .seconds(99)
        #expect(at >= .zero && at <= .seconds(1))
        #expect(f.registrationDue(now: at - .milliseconds(1)) == nil || at == .zero)
        #expect(f.registrationDue(now: at) == leader(P.master, epoch: 3))
        #expect(f.leaderDetected(leader(P.master2, epoch: 2), now: .seconds(1)) == .belowFloor(leader(P.master2, epoch: 2)))
        #expect(f.leader == leader(P.master, epoch: 3))
        #expect(f.leaderDetected(nil, now: .seconds(1)) == .masterless)
        #expect(f.registrationDue(now: .seconds(100)) == nil, "master-less: no attempts")
    }

    @Test func theBackoffDoublesUpToItsCapAndResetsWithANewLeader() {
        var f = LeaderFollower(settings: Self.settings, seed: 2)
        _ = f.leaderDetected(leader(P.master, epoch: 1), now: .zero)
        var bounds: [Duration] = []
        var now = Duration.zero
        for _ in 0..<4 {
            now += .seconds(10)
            #expect(f.registrationDue(now: now) != nil)
            bounds.append(f.backoff)
        }
        #expect(bounds == [.seconds(2), .seconds(4), .seconds(4), .seconds(4)])
        _ = f.leaderDetected(leader(P.master2, epoch: 2), now: now)
        #expect(f.backoff == .seconds(1))
    }

    @Test func dropsAreCountedByReason() {
        var f = LeaderFollower(settings: Self.settings, seed: 3)
        _ = f.leaderDetected(leader(P.master, epoch: 5), now: .zero)
        #expect(f.admit(Inbound(envelope(.ping(PingAgentMessage(connected: true)), from: P.master, epoch: 5))) == nil)
        #expect(f.admit(Inbound(envelope(.ping(PingAgentMessage(connected: true)), from: P.master, epoch: 4))) == .staleEpoch)
        #expect(f.admit(Inbound(envelope(.ping(PingAgentMessage(connected: true)), from: P.stranger, epoch: 5))) == .notFromLeader)
        #expect(f.droppedMessages == [.staleEpoch: 1, .notFromLeader: 1])
    }
}

@Suite struct RegistryWriteCoreTests {
    @Test func aCommitIsStored() {
        var w = RegistryWriteCore(bytes: [1], version: 3)
        #expect(w.start() == [.multi(version: 3)])
        #expect(w.handle(.committed(version: 4)) == [.stored(version: 4)])
    }

    /// A multi that committed but whose reply was lost: the retry meets BADVERSION, and reading
    /// back shows our bytes under our leader znode, so the write is in (not "another master").
    @Test func anAmbiguousCommitIsCheckedByReadingBack() {
        var w = RegistryWriteCore(bytes: [1, 2], version: 3)
        _ = w.start()
        #expect(w.handle(.failed(.connectionLoss)) == [.retry(after: .milliseconds(200))])
        #expect(w.handle(.retryDue) == [.multi(version: 3)])
        #expect(w.handle(.failed(.versionConflict)) == [.readBack])
        #expect(w.handle(.readBack(bytes: [1, 2], version: 4, fenceExists: true)) == [.stored(version: 4)])
    }

    @Test func anotherWriterOrAGoneFenceIsFenced() {
        var a = RegistryWriteCore(bytes: [1], version: 3)
        _ = a.start()
        #expect(a.handle(.failed(.versionConflict)) == [.failed(fenced: true, reason: "the registry was written by another master")], "no retry happened: not ambiguous")

        var b = RegistryWriteCore(bytes: [1], version: 3)
        _ = b.start()
        _ = b.handle(.failed(.connectionLoss))
        _ = b.handle(.retryDue)
        _ = b.handle(.failed(.versionConflict))
        #expect(b.handle(.readBack(bytes: [9], version: 4, fenceExists: true)) == [.failed(fenced: true, reason: "the registry was written by another master")])

        var c = RegistryWriteCore(bytes: [1], version: nil)
        _ = c.start()
        #expect(c.handle(.failed(.fenceGone)) == [.failed(fenced: true, reason: "our leader znode is gone")])
    }

    @Test func givesUpAfterTheMaximumAttempts() {
        var w = RegistryWriteCore(bytes: [1], version: 1)
        _ = w.start()
        var last: [RegistryWriteCore.Effect] = []
        for _ in 0..<RegistryWriteCore.maxAttempts {
            last = w.handle(.failed(.connectionLoss))
            if case .retry = last.first { last = w.handle(.retryDue) } else { break }
        }
        #expect(last == [.failed(fenced: false, reason: "cannot write the registry after \(RegistryWriteCore.maxAttempts) attempts")])
    }
}

@Suite struct BoundedSetTests {
    @Test func forgetsTheOldestBeyondItsCapacity() {
        var s = BoundedSet<Int>(capacity: 3)
        for i in 1...5 { s.insert(i) }
        #expect(s.count == 3 && !s.contains(1) && !s.contains(2) && s.contains(5))
    }

    @Test func aRemovedAndReinsertedMemberIsNotEvictedByItsOldSlot() {
        var s = BoundedSet<Int>(capacity: 2)
        s.insert(1)
        s.remove(1)
        s.insert(2)
        s.insert(1)  // newest now
        s.insert(3)  // evicts 2, not 1
        #expect(s.contains(1) && s.contains(3) && !s.contains(2))
    }

    @Test func churnDoesNotGrowIt() {
        var s = BoundedSet<Int>(capacity: 10)
        for i in 0..<100_000 {
            s.insert(i)
            s.remove(i)
        }
        #expect(s.count == 0)
    }
}

@Suite struct MessageValidationTests {
    @Test func idsArePrintableWithoutSlashesInASCIIAndBeyond() throws {
        for good in ["S1", "slave(1)", "7f8e2a10-5b9c-4d3e-8a21-0c9d6e5f4b3a-S42", "tâche-1", "任务"] {
            try WireValidation.id(good, field: "id")
        }
        for bad in ["a/b", "/", "a/\u{301}", "a b", "a\tb", "a\u{7}", "a\u{7F}", "a\u{85}", "a\u{0}b"] {
            #expect(throws: InvalidValue.self, "\(bad.unicodeScalars.map { String($0.value, radix: 16) })") { try WireValidation.id(bad, field: "id") }
        }
    }

    @Test func everyHostileNumberIsRefusedWithItsField() {
        for bad in [Double.nan, .infinity, -.infinity, -1, 1e300] {
            #expect(throws: InvalidValue.self) { try MessageValidation.validate(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: bad)])))) }
            #expect(throws: InvalidValue.self) { try MessageValidation.validate(.declineOffers(DeclineOffersMessage(frameworkID: FrameworkID(value: "f"), filters: Filters(refuseSeconds: bad)))) }
            #expect(throws: InvalidValue.self) { try MessageValidation.validate(.registerFramework(RegisterFrameworkMessage(framework: FrameworkInfo(user: "u", name: "n", failoverTimeout: bad)))) }
        }
        #expect(throws: InvalidValue.self) {
            try MessageValidation.validate(.statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: FrameworkID(value: "f"), status: TaskStatus(taskID: TaskID(value: "t"), state: .running), timestamp: .nan, uuid: []))))
        }
        #expect(throws: InvalidValue.self) { try MessageValidation.validate(.statusUpdate(StatusUpdateMessage(update: StatusUpdate(frameworkID: FrameworkID(value: "f"), status: TaskStatus(taskID: TaskID(value: "t"), state: .running), timestamp: 1, uuid: []), pid: "not a pid"))) }
        #expect(throws: InvalidValue.self) { try MessageValidation.validate(.reconcileTasks(ReconcileTasksMessage(frameworkID: FrameworkID(value: "f"), statuses: Array(repeating: TaskStatus(taskID: TaskID(value: "t"), state: .running), count: WireLimits.maxItems + 1)))) }
    }

    @Test func wellFormedMessagesPass() throws {
        try MessageValidation.validate(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: 2)]))))
        try MessageValidation.validate(.declineOffers(DeclineOffersMessage(frameworkID: FrameworkID(value: "f"), filters: Filters(refuseSeconds: 5))))
        try MessageValidation.validate(.ping(PingAgentMessage(connected: true)))
    }
}
