// Authentication at the daemon level: a master that requires it serves only agents and frameworks
// that prove their secret; the others are refused with a clear reason; no secret reaches a log.
import Foundation
import Testing
@testable import TestSupport

extension FaultTests {
    @Suite struct SecurityTests {
        @Test func onlyAuthenticatedAgentsAndFrameworksAreServed() async throws {
            try await withCluster { cluster in
                let dir = cluster.directory
                let secrets = ["agent-secret-1111", "framework-secret-2222"]
                let credentials = dir.appending(path: "credentials.json")
                try Data(#"{"credentials":[{"principal":"agent","secret":"\#(secrets[0])"},{"principal":"fw","secret":"\#(secrets[1])"}]}"#.utf8)
                    .write(to: credentials)
                let agentCredential = dir.appending(path: "agent.credential")
                try Data("agent \(secrets[0])\n".utf8).write(to: agentCredential)
                let wrongCredential = dir.appending(path: "wrong.credential")
                try Data("agent guessed-wrong\n".utf8).write(to: wrongCredential)
                let frameworkCredential = dir.appending(path: "fw.credential")
                try Data(#"{"principal":"fw","secret":"\#(secrets[1])"}"#.utf8).write(to: frameworkCredential)

                let master = try cluster.startMaster(extra: [
                    "--credentials", credentials.path, "--authenticate_agents", "--authenticate_frameworks",
                ])
                try await master.daemon.waitForLog("leading at epoch", timeout: .seconds(20))

                let good = try cluster.startAgent(extra: ["--credential", agentCredential.path])
                try await good.waitForLog("registered with master@", timeout: .seconds(20))
                let wrong = try cluster.startAgent(extra: ["--credential", wrongCredential.path])
                try await wrong.waitForLog("authentication refused by the peer: wrong secret", timeout: .seconds(20))
                let anonymous = try cluster.startAgent()
                try await master.daemon.waitForLog("authentication is required", timeout: .seconds(20))

                let fw = try cluster.startFramework(tasks: 1, extra: ["--credential", frameworkCredential.path])
                try await fw.waitForLog("ALL_RUNNING 1", timeout: .seconds(30))

                #expect(!wrong.log.contains("registered with master@"))
                #expect(!anonymous.log.contains("registered with master@"))
                #expect(master.daemon.isRunning, "the master keeps serving")
                for daemon in [master.daemon, good, wrong, anonymous, fw] {
                    for secret in secrets + ["guessed-wrong"] {
                        #expect(!daemon.log.contains(secret), "\(daemon.name)'s log shows a secret")
                    }
                }
            }
        }
    }
}
