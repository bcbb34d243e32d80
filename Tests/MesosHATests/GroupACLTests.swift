import Foundation
import Logging
import MesosCore
import MesosHA
import MesosWire
import Testing
import TestSupport
import ZooKeeper

/// Masters given digest credentials in their zk:// URL own the group: everyone can read it (agents and
/// schedulers detect the leader without credentials), nobody else can write or delete in it.
@Suite struct GroupACLTests {
    @Test func onlyTheMastersCanWriteTheGroup() async throws {
        try await withZooKeeper { zk in
            let logger = Logger(label: "acl-test") { _ in SwiftLogNoOpLogHandler() }
            let masterURL = try ZooKeeperURL(parsing: "zk://master:s3cret@\(zk.connectString)/mesos")
            let master = ZooKeeperSession(url: masterURL, sessionTimeout: .seconds(4), logger: logger)
            let info = MasterInfo(id: "m1", ip: MasterInfoJSON.packedIPv4("127.0.0.1")!, port: 5050, pid: "master@127.0.0.1:5050")
            let contender = ZooKeeperLeaderContender(session: master, path: "/mesos", info: info, logger: logger)
            master.start()
            let events = master.events
            let pump = Task { for await e in events { await contender.sessionEvent(e) } }
            defer { pump.cancel() }
            await contender.start(ledInRegistry: 0, ledHere: 0)
            var outcomes = contender.outcomes.makeAsyncIterator()
            guard case .elected? = await outcomes.next() else { Issue.record("not elected"); return }
            let znode = try #require(await contender.membershipPath)

            // An agent without credentials detects the leader...
            let detector = try MasterDetectors.make(master: "zk://\(zk.connectString)/mesos", sessionTimeout: .seconds(4), logger: logger)
            await detector.start()
            var changes = detector.changes.makeAsyncIterator()
            let seen = await changes.next()
            #expect(seen??.pid.description == "master@127.0.0.1:5050")
            await detector.stop()

            // ...but neither it nor someone with a wrong password can change the group.
            for url in ["zk://\(zk.connectString)/mesos", "zk://master:guess@\(zk.connectString)/mesos"] {
                let other = ZooKeeperSession(url: try ZooKeeperURL(parsing: url), sessionTimeout: .seconds(4), logger: logger)
                other.start()
                try await Poll.until("connected") { other.isConnected }
                // Refused for want of rights (NOAUTH), not for any other reason.
                for attempt in [
                    { try await other.delete(znode) },
                    { _ = try await other.create("/mesos/json.info_", data: [1], mode: .ephemeralSequential) },
                    { try await other.set(znode, data: Array("{}".utf8)) },
                ] as [@Sendable () async throws -> Void] {
                    do {
                        try await attempt()
                        Issue.record("a change by \(url) was allowed")
                    } catch let error as ZooKeeperError {
                        #expect(error.code == .noAuth, "\(error)")
                    }
                }
                #expect(try await other.get(znode).data == MasterInfoJSON.encode(info))
                await other.close()
            }
            await contender.withdraw()
            await master.close()
        }
    }
}
