import Foundation
import Logging
import MesosWire
import Synchronization
import TestSupport
import Testing
@testable import MesosBus

/// Collects log lines, to check that secrets never reach a log.
final class CapturedLogs: Sendable {
    let lines = Mutex<[String]>([])
    var all: String { lines.withLock { $0.joined(separator: "\n") } }

    func logger(_ label: String) -> Logger {
        Logger(label: label) { _ in CaptureHandler(logs: self) }
    }

    struct CaptureHandler: LogHandler {
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            logs.lines.withLock { $0.append("\(event.level) \(event.message) \(all)") }
        }
    }
}

@Suite(.timeLimit(.minutes(3))) struct AuthenticationTests {
    static let secret = "s3cret-value-42"
    static let agent = Credential(principal: "agent", secret: secret)

    func server(_ logs: CapturedLogs) async throws -> MessageBus {
        var config = BusConfiguration.test
        config.requiredCredentials = [Self.agent, Credential(principal: "framework", secret: "other")]
        config.partialFrameTimeout = .milliseconds(500)
        let bus = MessageBus(configuration: config, logger: logs.logger("server"))
        try await bus.start(name: "master")
        return bus
    }

    func client(_ credential: Credential?, _ logs: CapturedLogs) async throws -> MessageBus {
        var config = BusConfiguration.test
        config.credential = credential
        let bus = MessageBus(configuration: config, logger: logs.logger("client"))
        try await bus.start(name: "slave(1)")
        return bus
    }

    static func ping(_ i: UInt64) -> Envelope.Payload { .ping(PingAgentMessage(connected: true)) }

    @Test func aPeerWithTheRightSecretIsServed() async throws {
        let logs = CapturedLogs()
        let (server, client) = (try await server(logs), try await client(Self.agent, logs))
        try await client.send(.pong(PongAgentMessage()), epoch: 7, to: server.pid!)
        var it = server.events.makeAsyncIterator()
        guard case .message(let inbound)? = await it.next() else { Issue.record("nothing delivered"); return }
        let e = inbound.envelope
        #expect(e.epoch == 7 && e.from == client.pid!.description && e.payload == .pong(PongAgentMessage()))
        #expect(inbound.peer.principal == Self.agent.principal, "the connection's principal comes with the message")
        await client.shutdown(); await server.shutdown()
        #expect(!logs.all.contains(Self.secret))
    }

    @Test func wrongSecretsAndUnauthenticatedPeersAreRefused() async throws {
        let logs = CapturedLogs()
        let server = try await server(logs)
        let impostor = try await client(Credential(principal: "agent", secret: "guess"), logs)
        let stranger = try await client(Credential(principal: "nobody", secret: "x"), logs)
        let anonymous = try await client(nil, logs)
        for bus in [impostor, stranger, anonymous] {
            try await bus.send(.pong(PongAgentMessage()), epoch: 1, to: server.pid!)
        }
        // The credentialed ones learn why; nothing reaches the server's process.
        for bus in [impostor, stranger] {
            for await event in bus.events {
                if case .linkBroken(_, let reason) = event {
                    #expect(reason.contains("authentication refused by the peer"))
                    break
                }
            }
        }
        try await Poll.until { server.statistics.connectionsRejected == 3 }
        #expect(server.statistics.messagesReceived == 0)
        #expect(logs.all.contains("unauthenticated peer"))
        #expect(logs.all.contains("wrong secret"))
        for bus in [impostor, stranger, anonymous, server] { await bus.shutdown() }
        #expect(!logs.all.contains(Self.secret) && !logs.all.contains("guess"))
    }

    @Test func aSilentUnauthenticatedConnectionIsClosed() async throws {
        let logs = CapturedLogs()
        let server = try await server(logs)
        let raw = try RawSocket(port: server.pid!.port)
        #expect(raw.closedByPeer(timeoutMs: 15000))  // 500 ms idle timeout; generous for a loaded machine
        #expect(logs.all.contains("did not authenticate"))
        await server.shutdown()
    }

    @Test func aCredentialedClientRefusesAMasterThatCannotProveTheSecret() async throws {
        let logs = CapturedLogs()
        let open = MessageBus(configuration: .test, logger: logs.logger("open"))
        try await open.start(name: "master")  // requires nothing: answers "authentication not required"
        let client = try await client(Self.agent, logs)
        try await client.send(.pong(PongAgentMessage()), epoch: 2, to: open.pid!)
        var reason = ""
        for await event in client.events {
            if case .linkBroken(_, let r) = event { reason = r; break }
        }
        #expect(reason.contains("could not prove"), "\(reason)")
        #expect(logs.all.contains("no_server_proof"))
        #expect(open.statistics.messagesReceived == 0, "nothing was sent to a master that proved nothing")
        await client.shutdown(); await open.shutdown()
    }

    @Test func theMastersLinksBackProveTheAgentsSecretAndAreAuthenticatedAsTheMaster() async throws {
        let logs = CapturedLogs()
        let master = try await server(logs)
        let agent = try await client(Self.agent, logs)
        let stranger = try await client(Credential(principal: "framework", secret: "other"), logs)
        try await agent.send(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        var atMaster = master.events.makeAsyncIterator()
        guard case .message(let first)? = await atMaster.next() else { Issue.record("nothing delivered"); return }
        #expect(first.peer.principal == "agent")
        // The master answers over its own link: it authenticates with the secret the agent proved.
        try await master.send(.ping(PingAgentMessage(connected: true)), epoch: 1, to: agent.pid!)
        var atAgent = agent.events.makeAsyncIterator()
        guard case .message(let reply)? = await atAgent.next() else { Issue.record("no reply"); return }
        #expect(reply.peer == PeerIdentity(principal: "agent", roles: [.master]), "only the master knows the agent's secret")
        // Another credentialed peer (not the master) cannot prove the agent's secret: no master role.
        try await stranger.send(Envelope(epoch: 1, from: "master@127.0.0.1:\(master.pid!.port)", payload: .ping(PingAgentMessage(connected: true))), to: agent.pid!)
        guard case .message(let unproven)? = await atAgent.next() else { Issue.record("nothing from the stranger"); return }
        #expect(unproven.peer == .unauthenticated, "a peer that proved nothing is no master, whatever its from says")
        for bus in [agent, stranger, master] { await bus.shutdown() }
        #expect(!logs.all.contains(Self.secret))
    }

    @Test func credentialFiles() throws {
        let json = try CredentialsFile.parse(Data(#"{"credentials":[{"principal":"a","secret":"x"},{"principal":"b","secret":"y"}]}"#.utf8), source: "t")
        #expect(json.map(\.principal) == ["a", "b"])
        #expect(try CredentialsFile.parse(Data(#"{"principal":"a","secret":"x"}"#.utf8), source: "t").map(\.principal) == ["a"])
        #expect(try CredentialsFile.parse(Data("a x\nb y\n".utf8), source: "t").count == 2)
        for bad in [#"{"principal":"a"}"#, "a\n", "", #"{"credentials":[]}"#] {
            #expect(throws: CredentialsFile.Invalid.self, "\(bad)") { try CredentialsFile.parse(Data(bad.utf8), source: "t") }
        }
        #expect("\(Credential(principal: "a", secret: "zzz"))" == "a:***")
        #expect(!String(reflecting: Credential(principal: "a", secret: "zzz")).contains("zzz"))
    }
}
