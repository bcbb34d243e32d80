// DetectorPool (Mesos's DetectorPool): one detector, one ZooKeeper session and one group watch
// for every follower of a process that follows the same `--master`, against a real ZooKeeper.
import Foundation
import Logging
import MesosCore
import MesosHA
import MesosWire
import Testing
import TestSupport
import ZooKeeper

@Suite("DetectorPool against a real ZooKeeper", .serialized, .timeLimit(.minutes(3)))
struct DetectorPoolTests {
    static let followers = 50

    /// 50 followers of one pool: ZooKeeper sees one session of theirs watching the group, and every
    /// leader change (an election, a withdraw) reaches each of them.
    @Test func oneSessionServesManyFollowersAndALeaderChangeReachesAll() async throws {
        try await withElectionGroup { group, server in
            let pool = DetectorPool()
            var followers: [(detector: any MasterDetector, changes: EventRecorder<Leader?>)] = []
            for _ in 0..<Self.followers {
                let d = try pool.detector(master: group.url, sessionTimeout: group.sessionTimeout, logger: electionLogger)
                followers.append((d, EventRecorder(d.changes)))
            }
            do {
                for f in followers { await f.detector.start() }
                #expect(pool.followerCounts == [Self.followers])
                let candidates = try await group.candidatesInOrder(["a", "b"])
                let (a, b) = (candidates[0], candidates[1])
                for (i, f) in followers.enumerated() {
                    let l = try await next(f.changes, "follower \(i) detects a") { $0?.pid.description == a.pid }
                    #expect(l?.epoch == a.elections.first)
                }
                // Everyone detected a, so the pool's session is connected: ZooKeeper's connections are
                // the candidates' own sessions and one more, the pool's (one session per follower would
                // show 50 more). Counted from `cons`, not from the watch lists: `wchp`/`wchc` were seen to
                // omit a children watch that fired moments later, so they cannot tell "one watch" reliably.
                let port = try #require(clientPorts(server.connectString).first)
                let candidateSessions = Set([a, b].compactMap { $0.sessionID.map(sessionHex) })
                #expect(candidateSessions.count == 2)
                let others = try ZooKeeperServer.sessions(port: port).subtracting(candidateSessions)
                #expect(others.count == 1, "sessions besides the candidates' \(candidateSessions): \(others)")

                await a.contender.withdraw()
                for (i, f) in followers.enumerated() {
                    try await next(f.changes, "follower \(i) detects b") { $0?.pid.description == b.pid }
                    // Between the two, at most the "no leader" the detector reports while it reads b.
                    #expect(f.changes.events.map { $0?.pid.description } == [a.pid, nil, b.pid], "follower \(i)")
                }
            } catch {
                for f in followers { await f.detector.stop() }
                throw error
            }
            for f in followers { await f.detector.stop() }
            #expect(pool.followerCounts.isEmpty, "the last follower out stops the shared detector")
        }
    }

    /// The last follower's stop closes the shared session; a follower started after that gets a fresh
    /// detector, and a follower that joins a running one is told the current leader at once.
    @Test func laterFollowersAreToldTheCurrentLeaderAndTheLastStopEndsTheSession() async throws {
        try await withElectionGroup { group, _ in
            let pool = DetectorPool()
            func follower() throws -> (detector: any MasterDetector, changes: EventRecorder<Leader?>) {
                let d = try pool.detector(master: group.url, sessionTimeout: group.sessionTimeout, logger: electionLogger)
                return (d, EventRecorder(d.changes))
            }
            let a = try await group.candidatesInOrder(["a"])[0]
            let first = try follower()
            await first.detector.start()
            try await next(first.changes, "the first follower detects a") { $0?.pid.description == a.pid }
            let second = try follower()
            await second.detector.start()
            try await next(second.changes, "a follower joining later is told a") { $0?.pid.description == a.pid }
            #expect(pool.followerCounts == [2])
            await first.detector.stop()
            await second.detector.stop()
            #expect(pool.followerCounts.isEmpty)
            #expect(first.changes.events.count == 1 && second.changes.events.count == 1)

            let third = try follower()
            await third.detector.start()
            try await next(third.changes, "a follower after the last stop detects a on a fresh session") { $0?.pid.description == a.pid }
            #expect(pool.followerCounts == [1])
            await third.detector.stop()
        }
    }

    /// Takes `recorder`'s changes until one satisfies `condition`.
    @discardableResult
    func next(_ recorder: EventRecorder<Leader?>, _ what: String, where condition: (Leader?) -> Bool) async throws -> Leader? {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            let arrival = try await recorder.next(within: deadline - .now)
            if condition(arrival.event) { return arrival.event }
        }
        throw Unexpected("timed out waiting until \(what); changes: \(recorder.events.map { $0?.description ?? "none" })")
    }
}
