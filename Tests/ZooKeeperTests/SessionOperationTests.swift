import Testing
import TestSupport
import ZooKeeper

@Suite("ZooKeeper operations against a standalone server", .timeLimit(.minutes(1)))
struct SessionOperationTests {
    @Test func connectsWithTheRequestedTimeout() async throws {
        try await withZooKeeper { server in
            let zk = try await connect(to: server.connectString, sessionTimeout: .seconds(4))
            #expect(zk.sessionID != 0)
            #expect(zk.negotiatedTimeout == .seconds(4))
            #expect(zk.session.isConnected)
            await zk.session.close()
        }
    }

    @Test func createModes() async throws {
        try await withZooKeeper { server in
            let zk = try await connect(to: server.connectString)
            let session = zk.session

            #expect(try await session.create("/p", data: "persistent".bytes) == "/p")
            #expect(try await session.get("/p").data == "persistent".bytes)
            #expect(try await session.exists("/p")?.ephemeralOwner == 0)

            #expect(try await session.create("/p/e", mode: .ephemeral) == "/p/e")
            #expect(try await session.exists("/p/e")?.ephemeralOwner == zk.sessionID)

            // The sequence is the parent's child-change count: "e" was the first.
            #expect(try await session.create("/p/s-", mode: .persistentSequential) == "/p/s-0000000001")
            #expect(try await session.create("/p/s-", mode: .ephemeralSequential) == "/p/s-0000000002")
            #expect(try await session.exists("/p/s-0000000002")?.ephemeralOwner == zk.sessionID)
            #expect(Set(try await session.children("/p")) == ["e", "s-0000000001", "s-0000000002"])

            let exists = await #expect(throws: ZooKeeperError.self) { try await session.create("/p") }
            #expect(exists == ZooKeeperError(code: .nodeExists, path: "/p"))
            #expect(exists?.description == "NODEEXISTS /p")
            let noParent = await #expect(throws: ZooKeeperError.self) { try await session.create("/missing/x") }
            #expect(noParent?.description == "NONODE /missing/x")
            let ephemeralParent = await #expect(throws: ZooKeeperError.self) { try await session.create("/p/e/x") }
            #expect(ephemeralParent?.code == .noChildrenForEphemerals)
            await session.close()
        }
    }

    @Test func createPathCreatesMissingAncestorsAndToleratesExisting() async throws {
        try await withZooKeeper { server in
            let session = try await connect(to: server.connectString).session
            try await session.create("/a")
            try await session.createPath("/a/b/c")
            try await session.createPath("/a/b/c")
            #expect(try await session.children("/a/b") == ["c"])
            await session.close()
        }
    }

    @Test func setWithStaleVersionFailsWithBadVersion() async throws {
        try await withZooKeeper { server in
            let session = try await connect(to: server.connectString).session
            try await session.create("/v", data: "one".bytes)
            let (data, stat) = try await session.get("/v")
            #expect(data == "one".bytes)
            #expect(stat.version == 0)
            #expect(stat.dataLength == 3)

            #expect(try await session.set("/v", data: "two".bytes, version: 0).version == 1)
            let conflict = await #expect(throws: ZooKeeperError.self) {
                try await session.set("/v", data: "three".bytes, version: 0)
            }
            #expect(conflict?.description == "BADVERSION /v")
            #expect(try await session.get("/v").data == "two".bytes)
            #expect(try await session.set("/v", data: []).version == 2)
            #expect(try await session.get("/v").data == [])
            await session.close()
        }
    }

    @Test func childrenWatchFiresWhenAChildIsAdded() async throws {
        try await withZooKeeper { server in
            let zk = try await connect(to: server.connectString)
            let other = try await connect(to: server.connectString)
            try await zk.session.create("/c")
            let (children, watch) = try await zk.session.watchChildren("/c")
            #expect(children.isEmpty)
            #expect(watch.path == "/c")

            try await other.session.create("/c/x")
            #expect(try await watch.event() == .childrenChanged)
            #expect(try await watch.event() == .childrenChanged)  // one-shot, but awaiting again is fine
            #expect(try await zk.session.children("/c") == ["x"])
            await zk.session.close()
            await other.session.close()
        }
    }

    @Test func existsWatchSeesCreationThenDeletion() async throws {
        try await withZooKeeper { server in
            let session = try await connect(to: server.connectString).session
            let (absent, creation) = try await session.watchExists("/e")
            #expect(absent == nil)
            try await session.create("/e")
            #expect(try await creation.event() == .created)

            let (present, deletion) = try await session.watchExists("/e")
            #expect(present != nil)
            try await session.delete("/e")
            #expect(try await deletion.event() == .deleted)
            await session.close()
        }
    }

    @Test func dataWatchFiresOnChange() async throws {
        try await withZooKeeper { server in
            let session = try await connect(to: server.connectString).session
            try await session.create("/d", data: "one".bytes)
            let (data, _, watch) = try await session.watchData("/d")
            #expect(data == "one".bytes)
            try await session.set("/d", data: "two".bytes)
            #expect(try await watch.event() == .dataChanged)

            await #expect(throws: ZooKeeperError(code: .noNode, path: "/none")) {
                try await session.watchData("/none")
            }
            await session.close()
        }
    }

    @Test func deleteChecksVersionAndChildren() async throws {
        try await withZooKeeper { server in
            let session = try await connect(to: server.connectString).session
            try await session.createPath("/del/child")
            await #expect(throws: ZooKeeperError(code: .notEmpty, path: "/del")) { try await session.delete("/del") }
            await #expect(throws: ZooKeeperError(code: .badVersion, path: "/del/child")) {
                try await session.delete("/del/child", version: 7)
            }
            try await session.delete("/del/child", version: 0)
            try await session.delete("/del")
            #expect(try await session.exists("/del") == nil)
            await #expect(throws: ZooKeeperError(code: .noNode, path: "/del")) { try await session.delete("/del") }
            await session.close()
        }
    }

    @Test func multiAppliesAllOperations() async throws {
        try await withZooKeeper { server in
            let session = try await connect(to: server.connectString).session
            try await session.create("/m", data: "v0".bytes)
            try await session.create("/m/old")
            let results = try await session.multi([
                .create("/m/n-", data: "x".bytes, mode: .persistentSequential),
                .setData("/m", data: "v1".bytes, version: 0),
                .check("/m", version: 1),
                .delete("/m/old"),
            ])
            guard results.count == 4, case .dataSet(let stat) = results[1] else {
                Issue.record("unexpected results \(results)")
                return
            }
            #expect(results[0] == .created(path: "/m/n-0000000001"))
            #expect(stat.version == 1)
            #expect(results[2] == .checked)
            #expect(results[3] == .deleted)
            #expect(try await session.children("/m") == ["n-0000000001"])
            await session.close()
        }
    }

    @Test func failingCheckAbortsTheWholeMulti() async throws {
        try await withZooKeeper { server in
            let session = try await connect(to: server.connectString).session
            try await session.create("/m", data: "v0".bytes)
            let error = await #expect(throws: ZooKeeperError.self) {
                try await session.multi([
                    .create("/m/a"),
                    .check("/m", version: 5),
                    .setData("/m", data: "v1".bytes),
                ])
            }
            #expect(error == ZooKeeperError(code: .badVersion, path: "/m", failedOperation: 1))
            #expect(error?.description == "BADVERSION /m (multi aborted by operation #1)")
            #expect(try await session.exists("/m/a") == nil)
            #expect(try await session.get("/m").data == "v0".bytes)
            await session.close()
        }
    }

    @Test func syncThenRead() async throws {
        try await withZooKeeper { server in
            let session = try await connect(to: server.connectString).session
            try await session.create("/s")
            try await session.sync("/s")
            #expect(try await session.exists("/s") != nil)
            await session.close()
        }
    }

    @Test func digestACLsLetOthersReadButNotWrite() async throws {
        try await withZooKeeper { server in
            let owner = try await connect(
                to: server.connectString, credentials: Credentials(username: "mesos", password: "s3cret")
            ).session
            let anonymous = try await connect(to: server.connectString).session
            let impostor = try await connect(
                to: server.connectString, credentials: Credentials(username: "mesos", password: "guess")
            ).session

            try await owner.createPath("/secure/child")
            try await owner.set("/secure", data: "owned".bytes)

            for other in [anonymous, impostor] {
                #expect(try await other.get("/secure").data == "owned".bytes)
                #expect(try await other.children("/secure") == ["child"])
                await #expect(throws: ZooKeeperError(code: .noAuth, path: "/secure")) {
                    try await other.set("/secure", data: "mine".bytes)
                }
                await #expect(throws: ZooKeeperError(code: .noAuth, path: "/secure/other")) {
                    try await other.create("/secure/other")
                }
                // Deleting needs DELETE on the parent.
                await #expect(throws: ZooKeeperError(code: .noAuth, path: "/secure/child")) {
                    try await other.delete("/secure/child")
                }
            }
            // An explicit ACL overrides the default.
            try await owner.create("/open", acl: [.worldAll])
            try await anonymous.set("/open", data: "anyone".bytes)

            try await owner.delete("/secure/child")
            for session in [owner, anonymous, impostor] { await session.close() }
        }
    }

    @Test func ephemeralNodeVanishesWhenItsSessionCloses() async throws {
        try await withZooKeeper { server in
            let owner = try await connect(to: server.connectString).session
            let observer = try await connect(to: server.connectString).session
            try await owner.create("/group")
            let member = try await owner.create("/group/member-", mode: .ephemeralSequential)
            let (_, watch) = try await observer.watchExists(member)

            await owner.close()
            #expect(try await observer.exists(member) == nil)
            #expect(try await watch.event() == .deleted)
            await observer.close()
        }
    }

    @Test func closeResolvesWatchesFinishesEventsAndIsIdempotent() async throws {
        try await withZooKeeper { server in
            let zk = try await connect(to: server.connectString)
            let (_, watch) = try await zk.session.watchExists("/never")
            await zk.session.close()
            #expect(try await watch.event() == .sessionLost)
            try await Poll.until("event stream finished") { zk.events.isFinished }
            await zk.session.close()
            #expect(!zk.session.isConnected)
            await #expect(throws: ZooKeeperError(code: .closing, path: "/")) { try await zk.session.exists("/") }
        }
    }
}

@Suite("ZooKeeper session without a server")
struct SessionWithoutServerTests {
    @Test func operationsFailFastBeforeConnecting() async throws {
        ZooKeeperClientLibrary.routeLog(to: quietLogger)
        let session = ZooKeeperSession(servers: "127.0.0.1:1", sessionTimeout: .seconds(10), logger: quietLogger)
        // "Fast": each must end well within the 10 s session timeout, which an operation waiting for a
        // connection would run into (nothing ever answers on port 1).
        let start = ContinuousClock.now
        let beforeStart = try await finishes(within: .seconds(5), "get before start") { try await session.get("/x") }
        #expect(throws: ZooKeeperError(code: .connectionLoss, path: "/x")) { try beforeStart.get() }
        session.start()
        let connecting = try await finishes(within: .seconds(5), "create while connecting") { try await session.create("/x") }
        #expect(throws: ZooKeeperError(code: .connectionLoss, path: "/x")) { try connecting.get() }
        print("[zookeeper] both operations failed within \((ContinuousClock.now - start).ms) ms")
        await session.close()
    }
}
