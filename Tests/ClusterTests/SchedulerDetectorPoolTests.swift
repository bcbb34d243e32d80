import MesosCore
import MesosScheduler
import MesosWire
import Testing
@testable import TestSupport

/// Schedulers of one process share one leader detector (Mesos's DetectorPool, sched.cpp): a process
/// running many frameworks holds one ZooKeeper session and one group watch for them, not one each.
@Suite struct SchedulerDetectorPoolTests {
    @Test func schedulerDriversOfOneProcessShareOneZooKeeperSession() async throws {
        try await withCluster { cluster in
            let master = try cluster.startMaster()
            try await master.daemon.waitFor("leading", timeout: .seconds(20))
            let port = try #require(clientPorts(cluster.zk.connectString).first)
            let before = try ZooKeeperServer.sessions(port: port)
            #expect(!before.isEmpty, "the master's own session")
            let drivers = (0..<3).map { i in
                SchedulerDriver(framework: FrameworkInfo(user: "u", name: "pooled-\(i)"), master: cluster.url, sessionTimeout: Knobs.sessionTimeout)
            }
            do {
                for driver in drivers {
                    let events = EventRecorder(driver.events)
                    try await driver.start()
                    while true {
                        if case .registered = try await events.next("a pooled driver registers", within: .seconds(30)).event { break }
                    }
                }
                let theirs = try ZooKeeperServer.sessions(port: port).subtracting(before)
                #expect(theirs.count == 1, "three drivers, sessions: \(theirs)")
            } catch {
                for driver in drivers { await driver.stop() }
                throw error
            }
            for driver in drivers { await driver.stop() }
            // The last driver's stop ends the shared detector and closes its session.
            try await Poll.until("the drivers' session closed", timeout: .seconds(20)) {
                try ZooKeeperServer.sessions(port: port).subtracting(before).isEmpty
            }
        }
    }
}
