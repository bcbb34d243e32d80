import Testing
import TestSupport
import ZooKeeper

// Three minutes: the ensemble test starts four JVMs one after another, slow while the rest of the suite runs beside it.
@Suite("ZooKeeper session when servers fail", .timeLimit(.minutes(3)))
struct SessionFailureTests {
    @Test func sessionExpiresLocallyWhenTheServerDiesAndANewOneStartsWhenItReturns() async throws {
        try await withZooKeeper { server in
            // Operations wait up to 10 s (not the 800 ms session timeout) for a server that is slow under load;
            // after the kill they fail at once with CONNECTIONLOSS, which is what this test is about.
            let zk = try await connect(
                to: server.connectString, sessionTimeout: .milliseconds(800), operationTimeout: .seconds(10))
            #expect(zk.negotiatedTimeout == .milliseconds(800))
            let session = zk.session
            try await session.create("/group")
            let member = try await session.create("/group/member-", mode: .ephemeralSequential)
            let (_, pendingWatch) = try await session.watchChildren("/group")

            let killed = ContinuousClock.now
            await server.kill()
            let disconnected = try await zk.events.next(within: .seconds(2))
            #expect(disconnected.event == .disconnected)
            await #expect(throws: ZooKeeperError(code: .connectionLoss, path: "/group")) {
                try await session.children("/group")
            }

            // The next event, not the disconnection itself: the session expires by its own clock (the server
            // is dead and cannot say so), which resolves the pending watch.
            let expired = try await zk.events.next(within: .seconds(3))
            #expect(expired.event == .expired(local: true))
            print("[zookeeper] session expired locally \((expired.time - killed).ms) ms after the kill (negotiated \(zk.negotiatedTimeout.ms) ms)")
            #expect(try await pendingWatch.event() == .sessionLost)

            try await server.restart()
            let reconnected = try await zk.events.next(within: .seconds(10))
            guard case .connected(let newSessionID, _) = reconnected.event else {
                Issue.record("expected a new session, got \(reconnected.event)")
                return
            }
            #expect(newSessionID != zk.sessionID)
            // The restarted server restored the old session, then expires it: its ephemeral node goes.
            try await Poll.until("old ephemeral node gone", timeout: .seconds(5)) {
                try await session.exists(member) == nil
            }
            await session.close()
        }
    }

    @Test func operationTimesOutWhenTheServerHangs() async throws {
        try await withZooKeeper { server in
            let zk = try await connect(
                to: server.connectString, sessionTimeout: .seconds(6), operationTimeout: .milliseconds(300))
            // 300 ms is short on a loaded machine: retry the set-up (a late success shows as NODEEXISTS).
            try await Poll.until("/t created") {
                do { try await zk.session.create("/t") } catch let error as ZooKeeperError where error.code == .nodeExists {}
                return true
            }

            server.pause()
            let start = ContinuousClock.now
            // Bounded well below the 6 s session timeout: an operation that waited for the session would not end in time.
            let hung = try await finishes(within: .seconds(3), "get /t while the server hangs") { try await zk.session.get("/t") }
            #expect(throws: ZooKeeperError(code: .operationTimeout, path: "/t")) { try hung.get() }
            print("[zookeeper] operation timed out after \((ContinuousClock.now - start).ms) ms (operation timeout 300 ms)")
            server.resume()

            // The late reply is ignored; the session is still the same and usable.
            try await Poll.until("session usable again") { try await zk.session.exists("/t") != nil }
            #expect(!zk.events.events.contains { if case .expired = $0 { true } else { false } })
            await zk.session.close()
        }
    }

    @Test func sessionSurvivesTheLossOfAnyOneEnsembleMember() async throws {
        try await withZooKeeper(.ensemble(size: 3)) { server in
            // 10 s: a member's loss costs a reconnect and perhaps an election, seconds on a loaded machine.
            let zk = try await connect(to: server.connectString, sessionTimeout: .seconds(10))
            let session = zk.session
            try await session.create("/e", data: [0])
            try await session.create("/e/mine", mode: .ephemeral)

            // Each member in turn, so the one this session is connected to (and the leader) goes too.
            for member in 1...3 {
                await server.stopMember(member)
                try await Poll.until("write with member \(member) down", timeout: .seconds(20)) {
                    try await session.set("/e", data: [UInt8(member)])
                    return true
                }
                try await server.startMember(member)
            }

            try await session.sync("/e")
            #expect(try await session.get("/e").data == [3])
            #expect(try await session.exists("/e/mine")?.ephemeralOwner == zk.sessionID)
            for event in zk.events.events {
                switch event {
                case .connected(let sessionID, _): #expect(sessionID == zk.sessionID)
                case .disconnected: break
                case .expired, .authFailed: Issue.record("unexpected \(event)")
                }
            }
            await session.close()
        }
    }
}
