// The registry in real ZooKeeper (format 2: a meta znode, one znode per agent): 20,000 admitted
// agents written and recovered, the migration of a format-1 registry (also one cut short), fencing.
import Foundation
import Logging
import MesosCore
import MesosHA
import MesosWire
import Testing
import TestSupport
import ZooKeeper

@Suite(.timeLimit(.minutes(2)))
struct RegistryStoreTests {
    static let logger = Logger(label: "registry-test") { _ in SwiftLogNoOpLogHandler() }

    /// A connected session with a fence: an ephemeral znode standing for the writer's leader znode.
    static func writer(_ zk: ZooKeeperServer) async throws -> (ZooKeeperSession, fence: String) {
        ZooKeeperClientLibrary.routeLog(to: logger)
        let session = ZooKeeperSession(servers: zk.connectString, sessionTimeout: .seconds(10), logger: logger)
        var events = session.events.makeAsyncIterator()
        session.start()
        guard case .connected? = await events.next() else { throw TestFailure("no ZooKeeper session") }
        try await session.createPath("/mesos")
        let fence = try await session.create("/mesos/json.info_", data: [], mode: .ephemeralSequential)
        return (session, fence)
    }

    static func agent(_ i: Int) -> AgentInfo {
        AgentInfo(
            hostname: "host\(i).rack\(i % 40).example.com", resources: [Resource(name: "cpus", scalar: 16), Resource(name: "mem", scalar: 65536)],
            id: AgentID(value: "7f8e2a10-5b9c-4d3e-8a21-0c9d6e5f4b3a-S\(i)"), pid: "slave(1)@10.\(i / 65536).\((i / 256) % 256).\(i % 256):5051")
    }

    /// A standby's store on a session of its own, once its warm copy has read the whole registry.
    static func warmStandby(_ zk: ZooKeeperServer) async throws -> (ZooKeeperRegistryStore, ZooKeeperSession) {
        let (session, _) = try await writer(zk)
        let standby = ZooKeeperRegistryStore(session: session, groupPath: "/mesos")
        await standby.warm()
        let deadline = ContinuousClock.now + .seconds(30)
        while !(await standby.isWarm) {
            guard ContinuousClock.now < deadline else { throw TestFailure("the standby never read the registry") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return (standby, session)
    }

    /// The first write of a leader: agents 0..<count admitted, at `epoch`.
    static func admitted(_ count: Int, epoch: UInt64) -> RegistryChange {
        var change = RegistryChange(meta: RegistryMeta(format: 2, highestEpoch: epoch))
        for i in 0..<count {
            let info = agent(i)
            change.agents[info.id!] = .put(RegistryAgent(id: info.id!, info: info))
        }
        return change
    }

    struct TestFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    @Test func twentyThousandAdmittedAgentsAreWrittenAndRecovered() async throws {
        try await withZooKeeper { zk in
            let (session, fence) = try await Self.writer(zk)
            defer { Task { await session.close() } }
            let store = ZooKeeperRegistryStore(session: session, groupPath: "/mesos")
            #expect(try await store.load() == nil, "a fresh group has no registry")
            var state = RegistryState(highestEpoch: 7)
            var change = RegistryChange(meta: state.meta)
            for i in 0..<20_000 {
                let info = Self.agent(i)
                state.admitted[info.id!] = info
                change.agents[info.id!] = .put(RegistryAgent(id: info.id!, info: info))
            }
            #expect(await store.store(change, fence: fence) == .stored)

            // No znode, and no list of children, grows with the cluster.
            let layout = RegistryLayout(groupPath: "/mesos")
            let meta = try await session.get(layout.metaPath).data
            #expect(meta.count < 100, "the meta holds no agents: \(meta.count) bytes")
            var largestBucket = 0, total = 0
            for bucket in layout.bucketPaths {
                let n = try await session.children(bucket).count
                largestBucket = max(largestBucket, n)
                total += n
            }
            #expect(total == 20_000)
            #expect(largestBucket < 500, "20,000 agents over 64 buckets: \(largestBucket) in the fullest")

            // Another master (its own session) recovers all of it.
            let (other, otherFence) = try await Self.writer(zk)
            defer { Task { await other.close() } }
            let next = ZooKeeperRegistryStore(session: other, groupPath: "/mesos")
            let recovered = try await next.load()
            #expect(recovered == state)
            #expect(await next.highestEpochLed() == 7)

            // ... and goes on writing from there: one agent removed, one forgotten.
            var more = RegistryChange(meta: RegistryMeta(format: 2, highestEpoch: 8))
            let removed = Self.agent(5).id!, forgotten = Self.agent(6).id!
            more.agents[removed] = .put(RegistryAgent(id: removed, removedTime: TimeInfo(nanoseconds: 1_000)))
            more.agents[forgotten] = .delete
            #expect(await next.store(more, fence: otherFence) == .stored)
            let third = ZooKeeperRegistryStore(session: session, groupPath: "/mesos")
            let after = try await third.load()
            #expect(after?.admitted.count == 19_998)
            #expect(after?.removed == [removed: .nanoseconds(1_000)])
            #expect(after?.highestEpoch == 8)
        }
    }

    /// Format 1 (the whole registry in `/mesos/registry`) is read, and migrated by the first write.
    @Test func aFormat1RegistryIsMigratedByTheFirstWrite() async throws {
        try await withZooKeeper { zk in
            let (session, fence) = try await Self.writer(zk)
            defer { Task { await session.close() } }
            let admitted = (0..<3000).map(Self.agent)
            let gone = [AgentID(value: "gone-S1"), AgentID(value: "gone-S2")]
            let legacy = Registry(admitted: admitted.map { Registry.Agent(info: $0) }, removed: gone, highestEpoch: 4, removedFrameworks: [FrameworkID(value: "f-old")])
            #expect(legacy.serializedBytes().count > 300_000, "a registry big enough to need several multis once per agent")
            try await session.create("/mesos/registry", data: legacy.serializedBytes())

            let store = ZooKeeperRegistryStore(session: session, groupPath: "/mesos")
            #expect(await store.highestEpochLed() == 4)
            let loaded = try await store.load()
            #expect(loaded == RegistryState(legacy: legacy))
            #expect(loaded?.admitted.count == 3000 && loaded?.removed.count == 2 && loaded?.removedFrameworks == [FrameworkID(value: "f-old")])

            // The master's first write (its epoch) carries the whole migration.
            var epoch = loaded!
            epoch.highestEpoch = 5
            #expect(await store.store(RegistryChange(meta: epoch.meta), fence: fence) == .stored)
            #expect(try await session.get("/mesos/registry").data.isEmpty, "format 1's znode is emptied once migrated")
            let meta = try RegistryMeta(serializedBytes: try await session.get("/mesos/registry/meta").data)
            #expect(meta.format == 2 && meta.migrating == nil && meta.highestEpoch == 5)

            let reread = try await ZooKeeperRegistryStore(session: session, groupPath: "/mesos").load()
            #expect(reread == epoch)
        }
    }

    /// A migration cut short (the meta says `migrating`): format 1 is still the truth, and the
    /// next leader migrates again, deleting what the cut-short one wrote that is not in it.
    @Test func aMigrationCutShortIsRedoneFromFormat1() async throws {
        try await withZooKeeper { zk in
            let (session, fence) = try await Self.writer(zk)
            defer { Task { await session.close() } }
            let layout = RegistryLayout(groupPath: "/mesos")
            let legacy = Registry(admitted: [Registry.Agent(info: Self.agent(1))], highestEpoch: 2)
            try await session.create("/mesos/registry", data: legacy.serializedBytes())
            try await session.create(layout.agentsPath)
            for bucket in layout.bucketPaths { try await session.create(bucket) }
            try await session.create(layout.metaPath, data: RegistryMeta(format: 2, highestEpoch: 2, writes: 1, migrating: true).serializedBytes())
            let stray = layout.path(of: AgentID(value: "stray-S9"))
            try await session.create(stray, data: RegistryAgent(id: AgentID(value: "stray-S9"), info: Self.agent(9)).serializedBytes())

            let store = ZooKeeperRegistryStore(session: session, groupPath: "/mesos")
            let loaded = try await store.load()
            #expect(loaded == RegistryState(legacy: legacy), "the stray entry is not part of the registry")
            var epoch = loaded!
            epoch.highestEpoch = 3
            #expect(await store.store(RegistryChange(meta: epoch.meta), fence: fence) == .stored)
            #expect(try await session.exists(stray) == nil)
            #expect(try await ZooKeeperRegistryStore(session: session, groupPath: "/mesos").load() == epoch)
        }
    }

    @Test func aWriteWhoseLeaderZnodeIsGoneIsFenced() async throws {
        try await withZooKeeper { zk in
            let (session, fence) = try await Self.writer(zk)
            defer { Task { await session.close() } }
            let store = ZooKeeperRegistryStore(session: session, groupPath: "/mesos")
            _ = try await store.load()
            #expect(await store.store(RegistryChange(meta: RegistryMeta(format: 2, highestEpoch: 1)), fence: fence) == .stored)
            try await session.delete(fence)
            let outcome = await store.store(RegistryChange(meta: RegistryMeta(format: 2, highestEpoch: 1)), fence: fence)
            #expect(outcome == .failed(fenced: true, reason: "our leader znode is gone"))
        }
    }

    /// A standby's warm copy (kept by `warm` on its own session) gives the same registry as a full
    /// read after the leader's later writes (an agent added, one changed, one deleted, the meta),
    /// while the load itself re-reads only the znodes those writes changed.
    @Test func aStandbysWarmCopyRecoversTheLeadersLaterWritesReadingOnlyThem() async throws {
        try await withZooKeeper { zk in
            let (session, fence) = try await Self.writer(zk)
            defer { Task { await session.close() } }
            let leader = ZooKeeperRegistryStore(session: session, groupPath: "/mesos")
            _ = try await leader.load()
            #expect(await leader.store(Self.admitted(300, epoch: 7), fence: fence) == .stored)

            let (standby, standbySession) = try await Self.warmStandby(zk)
            defer { Task { await standbySession.close() } }

            // The leader goes on writing; the standby is elected right after (no wait for its copy).
            var later = RegistryChange(meta: RegistryMeta(format: 2, highestEpoch: 8))
            let added = Self.agent(1000), changed = Self.agent(5).id!, deleted = Self.agent(6).id!
            later.agents[added.id!] = .put(RegistryAgent(id: added.id!, info: added))
            later.agents[changed] = .put(RegistryAgent(id: changed, removedTime: TimeInfo(nanoseconds: 1_000)))
            later.agents[deleted] = .delete
            #expect(await leader.store(later, fence: fence) == .stored)
            let recovered = try await standby.load()

            let (coldSession, _) = try await Self.writer(zk)
            defer { Task { await coldSession.close() } }
            let cold = ZooKeeperRegistryStore(session: coldSession, groupPath: "/mesos")
            let full = try await cold.load()
            #expect(full?.admitted.count == 299 && full?.removed == [changed: .nanoseconds(1_000)] && full?.highestEpoch == 8)
            #expect(recovered == full)
            let warmReport = try #require(await standby.lastLoad()), coldReport = try #require(await cold.lastLoad())
            #expect(warmReport.warm && !coldReport.warm)
            // At most the meta, the two buckets whose lists changed and the two agents written.
            #expect(warmReport.reads <= 5, "a warm load read \(warmReport.reads) znodes")
            #expect(coldReport.reads >= 300 + RegistryLayout.buckets, "a full read: \(coldReport.reads) znodes")
        }
    }

    /// A corrupt agent znode fails the load with an error naming it, whether the standby's copy
    /// was warm or not (the master then exits rather than lead without that agent); a znode
    /// mended after the standby read it and before its election is read again and loads.
    @Test func aCorruptAgentZnodeFailsAWarmOrColdLoadNamingItAndOneMendedInTimeLoads() async throws {
        try await withZooKeeper { zk in
            let (session, fence) = try await Self.writer(zk)
            defer { Task { await session.close() } }
            let leader = ZooKeeperRegistryStore(session: session, groupPath: "/mesos")
            _ = try await leader.load()
            #expect(await leader.store(Self.admitted(20, epoch: 3), fence: fence) == .stored)
            let layout = RegistryLayout(groupPath: "/mesos")
            let broken = layout.path(of: Self.agent(7).id!)
            let good = try await session.get(broken).data
            _ = try await session.set(broken, data: [0xFF, 0xFF, 0xFF])

            func corruptPath(_ load: () async throws -> RegistryState?) async -> String? {
                do {
                    _ = try await load()
                    return nil
                } catch let RegistryWriter.LoadError.corrupt(path, _) {
                    return path
                } catch {
                    return "unexpected: \(error)"
                }
            }

            let (warm, warmSession) = try await Self.warmStandby(zk)
            defer { Task { await warmSession.close() } }
            #expect(await corruptPath { try await warm.load() } == broken)
            let (coldSession, _) = try await Self.writer(zk)
            defer { Task { await coldSession.close() } }
            let cold = ZooKeeperRegistryStore(session: coldSession, groupPath: "/mesos")
            #expect(await corruptPath { try await cold.load() } == broken)

            // Mended after the standby read it broken, before its election: its watch fired.
            let (mending, mendingSession) = try await Self.warmStandby(zk)
            defer { Task { await mendingSession.close() } }
            _ = try await session.set(broken, data: good)
            let recovered = try await mending.load()
            #expect(recovered?.admitted.count == 20 && recovered?.admitted[Self.agent(7).id!] == Self.agent(7))
        }
    }
}
