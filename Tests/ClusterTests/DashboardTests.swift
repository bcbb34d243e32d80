// The dashboard at `/` in a real browser: headless Chromium (Debian's `chromium`) driven over the
// DevTools protocol by python/tests/dashboard_probe.py, against real masters, agents and a
// framework. The page is loaded from the leader, which is then killed: the page must find the
// new leader by itself.
import Foundation
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Dashboard in headless Chromium", .serialized, .timeLimit(.minutes(3)))
struct DashboardTests {
    @Test func theDashboardShowsTheClusterAndFollowsTheLeaderAcrossAFailover() async throws {
        try await withCluster { cluster in
            try await cluster.start(masters: 2, agents: 2, tasks: 2)
            let (old, oldRecord) = try await cluster.leader()
            let standby = try #require(cluster.liveMasters.first { $0.slot != old.slot })
            let standbyPID = try await cluster.busPID(of: standby.daemon)
            let port = { (pid: String) in pid.split(separator: ":").last.map(String.init) ?? "" }
            let screenshot = cluster.directory.appending(path: "dashboard.png")
            let dom = cluster.directory.appending(path: "dashboard.html")
            let probe = try cluster.process("dashboard", "/usr/bin/python3", [
                Products.packageRoot.appending(path: "python/tests/dashboard_probe.py").path,
                "http://127.0.0.1:\(port(oldRecord.pid))/?masters=127.0.0.1:\(port(standbyPID))",
                "--until-leader", standbyPID, "--agents", "2", "--tasks", "2",
                "--screenshot", screenshot.path, "--dom", dom.path, "--timeout", "100",
            ])
            // The page shows the leader it was served by, with both agents (the agents table is filled).
            _ = try await probe.waitForLog("PAGE leader=\(oldRecord.pid) epoch=\(oldRecord.epoch) agents=2 frameworks=1 tasks=TASK_RUNNING,TASK_RUNNING", timeout: .seconds(60))

            let killed = ContinuousClock.now
            old.daemon.signal(SIGKILL)
            let (_, newRecord, _) = try await cluster.waitForNewLeader(after: oldRecord, since: killed, timeout: Knobs.sessionTimeout + Knobs.margin)
            #expect(newRecord.pid == standbyPID)
            // The page's own master is gone: it found the new leader, its agents and tasks, live.
            #expect(await probe.waitForExit(timeout: .seconds(100)) == 0, "\(probe.log)")
            let html = try String(contentsOf: dom, encoding: .utf8)
            #expect(html.contains("id=\"leader\">\(standbyPID)<"))
            #expect(html.contains("id=\"epoch\">\(newRecord.epoch)<"))
            #expect(html.contains("<table id=\"agents\" data-rows=\"2\">"))
            #expect(html.components(separatedBy: ">TASK_RUNNING<").count - 1 == 2)
            #expect(html.contains("<td>\(oldRecord.pid)</td>") && html.contains("<td>\(standbyPID)</td>"), "both leaders in the failover history")
            let png = try Data(contentsOf: screenshot)
            #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 10_000, "a PNG screenshot in \(screenshot.path)")
            report("dashboard screenshot: \(screenshot.path)")
        }
    }
}
