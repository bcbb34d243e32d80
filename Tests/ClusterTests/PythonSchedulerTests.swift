// The .proto contract from another language: examples/python/scheduler.py (Debian's python3 with
// python3-protobuf and python3-kazoo) drives the real binaries. python/tests/test_python_scheduler.py
// starts its own ZooKeeper, 2 mesos-master and 1 mesos-agent from Products.directory, runs the
// scheduler until its task is TASK_FINISHED, then SIGKILLs the leader under a running task and checks
// that the scheduler re-registers with the standby and reconciles the task as TASK_RUNNING; then runs
// a task over mutual TLS (Python's ssl) against a TLS master and agent, and HTTPS on the master's port.
// It cleans up everything it started, also on SIGTERM; its last line is "N passed, M failed".
import Foundation
import Testing
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Python scheduler against the cluster", .timeLimit(.minutes(3)))
struct PythonSchedulerTests {
    @Test func pythonSchedulerRunsATaskAndFollowsALeaderFailover() async throws {
        let logs = FileManager.default.temporaryDirectory.appending(path: "cluster-tests/python-scheduler")
        try? FileManager.default.removeItem(at: logs)
        let script = Products.packageRoot.appending(path: "python/tests/test_python_scheduler.py").path
        let run = try Daemon(
            "test_python_scheduler", executable: "/usr/bin/python3", arguments: [script],
            environment: ["MESOS_BIN_DIR": Products.directory.path, "PYTHONUNBUFFERED": "1"], logDirectory: logs)
        var status = await run.waitForExit(timeout: .seconds(120))
        if status == nil {
            run.signal(SIGTERM)  // the script stops its cluster on SIGTERM
            status = await run.waitForExit(timeout: .seconds(30))
        }
        for line in run.lines where line.hasPrefix("[python-scheduler]") { print(line) }
        let summary = run.lines.last { $0.hasSuffix(" failed") } ?? "no summary"
        #expect(status == 0, "exit \(status.map(String.init) ?? "none (timed out)"), \(summary); log \(run.logFile.path):\n\(run.log)")
        #expect(summary.hasSuffix(" passed, 0 failed") && !summary.hasPrefix("0 passed"), "\(summary)")
    }
}
