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
                try await master.daemon.waitFor("leading", timeout: .seconds(20))

                let good = try cluster.startAgent(extra: ["--credential", agentCredential.path])
                try await good.waitFor("registered", timeout: .seconds(20))
                let wrong = try cluster.startAgent(extra: ["--credential", wrongCredential.path])
                try await wrong.waitFor("authentication_failed", ["cause": "refused"], timeout: .seconds(20))
                try await master.daemon.waitFor("connection_rejected", ["cause": "authentication_failed"], timeout: .seconds(20))
                let anonymous = try cluster.startAgent()
                try await master.daemon.waitFor("connection_rejected", ["cause": "unauthenticated"], timeout: .seconds(20))

                let fw = try cluster.startFramework(tasks: 1, extra: ["--credential", frameworkCredential.path])
                try await fw.waitFor("all_running", ["count": "1"], timeout: .seconds(30))

                #expect(wrong.milestones("registered").isEmpty)
                #expect(anonymous.milestones("registered").isEmpty)
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
