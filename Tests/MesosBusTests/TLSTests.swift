import Foundation
import Logging
import MesosWire
import NIOCore
import Synchronization
import TestSupport
import Testing
@testable import MesosBus

/// TLS on the bus over loopback, with certificates scripts/gen-certs makes in a temporary directory.
@Suite(.timeLimit(.minutes(3))) struct TLSTests {
    /// One CA (and a second, untrusted one) for the whole suite; made once.
    static let certs: TestCertificates = {
        do {
            let c = try TestCertificates.make("bus-tls")
            try c.add("agent-2", role: "agent")
            try c.add("expired", role: "agent", expired: true)
            return c
        } catch { fatalError("\(error)") }
    }()
    static let strangers: TestCertificates = {
        do { return try TestCertificates.make("bus-tls-untrusted") } catch { fatalError("\(error)") }
    }()

    /// The `event=`/`cause=` pairs a bus logged.
    final class Events: Sendable {
        let seen = Mutex<[(event: String, cause: String)]>([])
        func logger(_ label: String) -> Logger { Logger(label: label) { _ in Handler(events: self) } }
        func count(_ event: String, cause: String) -> Int { seen.withLock { $0.filter { $0.event == event && $0.cause == cause }.count } }
        var all: [String] { seen.withLock { $0.map { "\($0.event)/\($0.cause)" } } }

        struct Handler: LogHandler {
            let events: Events
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                guard let e = event.metadata?["event"] else { return }
                events.seen.withLock { $0.append(("\(e)", event.metadata?["cause"].map { "\($0)" } ?? "")) }
            }
        }
    }

    static func settings(_ certs: TestCertificates, _ name: String, downgrade: Bool = false) throws -> TLSSettings {
        guard var s = try TLSSettings.fromEnvironment(certs.environment(name, downgrade: downgrade)) else {
            throw TestCertificates.Failed(description: "LIBPROCESS_SSL_ENABLED not read")
        }
        s.handshakeTimeout = .milliseconds(500)
        return s
    }

    static func bus(
        _ name: String, tls: TLSSettings?, peerRoles: Set<PeerIdentity.Role>? = nil, events: Events? = nil,
        configure: (inout BusConfiguration) -> Void = { _ in }
    ) async throws -> MessageBus {
        var config = BusConfiguration.test
        config.tls = try tls.map { try TLSContext($0) }
        config.peerRoles = peerRoles
        config.partialFrameTimeout = .milliseconds(500)
        configure(&config)
        let bus = MessageBus(configuration: config, logger: events?.logger(name) ?? Logger(label: name))
        try await bus.start(name: name)
        return bus
    }

    static func ping(_ epoch: UInt64) -> Envelope.Payload { .ping(PingAgentMessage(connected: true)) }

    @Test func aTLSRoundTripCarriesThePeersCertificateIdentity() async throws {
        let master = try await Self.bus("master", tls: try Self.settings(Self.certs, "master"), peerRoles: [.agent, .scheduler])
        let agent = try await Self.bus("slave(1)", tls: try Self.settings(Self.certs, "agent"), peerRoles: [.master])
        defer { Task { await master.shutdown(); await agent.shutdown() } }
        try await agent.send(.pong(PongAgentMessage()), epoch: 3, to: master.pid!)
        var it = master.events.makeAsyncIterator()
        guard case .message(let inbound)? = await it.next() else { Issue.record("nothing delivered"); return }
        #expect(inbound.envelope.epoch == 3 && inbound.envelope.from == agent.pid!.description)
        #expect(inbound.peer == PeerIdentity(principal: "agent", roles: [.agent]), "the verified certificate's principal and role come with the message")
        // And back, over the master's own link to the agent (the agent verifies the master's certificate).
        try await master.send(Self.ping(3), epoch: 3, to: agent.pid!)
        var back = agent.events.makeAsyncIterator()
        guard case .message(let reply)? = await back.next() else { Issue.record("no reply"); return }
        #expect(reply.peer == PeerIdentity(principal: "master", roles: [.master]))
        #expect(master.statistics.tlsHandshakes == 2 && agent.statistics.tlsHandshakes == 2, "each side counted its accepted and its outbound handshake")
    }

    /// Under TLS a master offering return routes proves an agent by its certificate (the offer
    /// goes over the master's own link, which verifies the agent's), never by the address its
    /// connection came from; the agent's links then connect from ephemeral ports.
    @Test func underTLSAReturnRouteIsProvedByTheAgentsCertificateNotItsAddress() async throws {
        let master = try await Self.bus("master", tls: try Self.settings(Self.certs, "master"), peerRoles: [.agent]) { $0.offerReturnRoutes = true }
        let agent = try await Self.bus("slave(1)", tls: try Self.settings(Self.certs, "agent"), peerRoles: [.master]) { $0.linksFromListeningPort = true }
        defer { Task { await master.shutdown(); await agent.shutdown() } }
        try await agent.send(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        var delivered = master.events.makeAsyncIterator()
        guard case .message? = await delivered.next() else { Issue.record("nothing delivered"); return }
        try await master.send(Self.ping(2), epoch: 2, to: agent.pid!)
        var back = agent.events.makeAsyncIterator()
        guard case .message(let reply)? = await back.next() else { Issue.record("no reply"); return }
        #expect(reply.envelope.epoch == 2 && reply.peer.roles.contains(.master))
        try await Poll.until("the agent claimed the master's offer", timeout: .seconds(30)) { master.statistics.returnRoutesAdopted == 1 }
        #expect(master.statistics.returnRoutesBySource == 0)
        // The agent's listener has no SO_REUSEPORT: nothing can connect from its port.
        let other = try Loopback.Socket(fd: Loopback.listen())
        #expect(throws: IOError.self) { try SourceBoundSocket(from: agent.pid!.port, to: other.port) }
    }

    @Test func untrustedExpiredWrongRolePlaintextAndStalledPeersLoseOnlyTheirOwnConnection() async throws {
        let events = Events()
        let master = try await Self.bus("master", tls: try Self.settings(Self.certs, "master"), peerRoles: [.agent], events: events)
        let good = try await Self.bus("slave(1)", tls: try Self.settings(Self.certs, "agent"))
        let untrusted = try await Self.bus("slave(2)", tls: try Self.settings(Self.strangers, "agent"))
        let expired = try await Self.bus("slave(3)", tls: try Self.settings(Self.certs, "expired"))
        let scheduler = try await Self.bus("scheduler(1)", tls: try Self.settings(Self.certs, "scheduler"))
        let plaintext = try await Self.bus("slave(4)", tls: nil)
        let all = [master, good, untrusted, expired, scheduler, plaintext]
        defer { Task { for b in all { await b.shutdown() } } }
        var delivered = master.events.makeAsyncIterator()

        try await good.send(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        for bad in [untrusted, expired, scheduler, plaintext] {
            try await bad.send(.pong(PongAgentMessage()), epoch: 99, to: master.pid!)
        }
        let stalled = try Loopback.Socket(connectingTo: master.pid!.port)
        try stalled.write([0x16, 0x03, 0x01, 0x00, 0x80, 0x01])  // a ClientHello that never finishes

        #expect(stalled.closedByPeer(within: .seconds(5)))
        try await Poll.until("every bad peer refused", timeout: .seconds(10)) {
            events.count("connection_rejected", cause: "tls_handshake_failed") >= 2
                && events.count("connection_rejected", cause: "wrong_role") == 1
                && events.count("connection_rejected", cause: "tls_required") == 1
                && events.count("connection_rejected", cause: "tls_handshake_timeout") == 1
        }
        // The good peer is still served, on its connection; nothing of the others arrived.
        try await good.send(.pong(PongAgentMessage()), epoch: 2, to: master.pid!)
        var epochs: [UInt64] = []
        while epochs.count < 2, case .message(let inbound)? = await delivered.next() { epochs.append(inbound.envelope.epoch) }
        #expect(epochs == [1, 2], "only the verified agent's messages were delivered: \(events.all)")
        #expect(master.statistics.tlsHandshakes == 1)
        #expect(events.count("connection_rejected", cause: "tls_handshake_failed") == 2, "the untrusted and the expired certificate: \(events.all)")
    }

    @Test func downgradeModeServesPlaintextAndTLSPeersAndRequiringTLSAgainRefusesPlaintext() async throws {
        let master = try await Self.bus("master", tls: try Self.settings(Self.certs, "master", downgrade: true))
        let tlsAgent = try await Self.bus("slave(1)", tls: try Self.settings(Self.certs, "agent"))
        let plainAgent = try await Self.bus("slave(2)", tls: nil)
        defer { Task { for b in [master, tlsAgent, plainAgent] { await b.shutdown() } } }
        try await tlsAgent.send(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        try await plainAgent.send(.pong(PongAgentMessage()), epoch: 2, to: master.pid!)
        var it = master.events.makeAsyncIterator()
        var peers: [UInt64: PeerIdentity] = [:]
        while peers.count < 2, case .message(let inbound)? = await it.next() { peers[inbound.envelope.epoch] = inbound.peer }
        #expect(peers[1] == PeerIdentity(principal: "agent", roles: [.agent]))
        #expect(peers[2] == .unauthenticated, "a plaintext peer proves nothing")
        #expect(master.statistics.plaintextDowngrades == 1 && master.statistics.tlsHandshakes == 1)

        // After the rollout: the same master without downgrade refuses the plaintext peer.
        let events = Events()
        let strict = try await Self.bus("master", tls: try Self.settings(Self.certs, "master"), events: events)
        defer { Task { await strict.shutdown() } }
        try await plainAgent.send(.pong(PongAgentMessage()), epoch: 3, to: strict.pid!)
        try await Poll.until("plaintext refused") { events.count("connection_rejected", cause: "tls_required") == 1 }
        #expect(strict.statistics.messagesReceived == 0)
    }

    @Test func aReloadedCertificateServesNewConnectionsWhileEstablishedOnesStay() async throws {
        // The master's files at a path of their own, so that they can be replaced.
        let dir = FileManager.default.temporaryDirectory.appending(path: "mesos-reload-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.certs.add("norole", role: "none")
        func install(_ name: String) throws {
            for ext in ["pem", "key"] {
                try? FileManager.default.removeItem(atPath: "\(dir)/server.\(ext)")
                try FileManager.default.copyItem(atPath: "\(Self.certs.directory)/\(name).\(ext)", toPath: "\(dir)/server.\(ext)")
            }
        }
        try install("master")
        var settings = try Self.settings(Self.certs, "master")
        settings.certFile = "\(dir)/server.pem"
        settings.keyFile = "\(dir)/server.key"
        let tls = try TLSContext(settings)
        var config = BusConfiguration.test
        config.tls = tls
        let master = MessageBus(configuration: config)
        try await master.start(name: "master")
        let before = try await Self.bus("slave(1)", tls: try Self.settings(Self.certs, "agent"), peerRoles: [.master])
        let clientEvents = Events()
        let after = try await Self.bus("slave(2)", tls: try Self.settings(Self.certs, "agent"), peerRoles: [.master], events: clientEvents)
        defer { Task { for b in [master, before, after] { await b.shutdown() } } }
        var delivered = master.events.makeAsyncIterator()
        try await before.send(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        guard case .message(let first)? = await delivered.next() else { Issue.record("nothing delivered"); return }
        #expect(first.envelope.epoch == 1)

        // A broken file: the reload fails and the certificate in use stays.
        try Data("not a certificate".utf8).write(to: URL(fileURLWithPath: "\(dir)/server.pem"))
        #expect(throws: TLSSettingsError.self) { try tls.reload() }
        #expect(tls.localIdentity.roles == [.master])

        // A certificate without the master role: new connections get it (and a client that wants a
        // master refuses it); the connection made before keeps working.
        try install("norole")
        try tls.reload()
        #expect(tls.localIdentity == PeerIdentity(principal: "norole"))
        try await after.send(.pong(PongAgentMessage()), epoch: 2, to: master.pid!)
        try await Poll.until("the new certificate presented") { clientEvents.count("connection_rejected", cause: "wrong_role") == 1 }
        try await before.send(.pong(PongAgentMessage()), epoch: 3, to: master.pid!)
        guard case .message(let second)? = await delivered.next() else { Issue.record("nothing delivered"); return }
        #expect(second.envelope.epoch == 3, "the established connection stayed, and nothing came from the refused one")
        #expect(master.statistics.connectionsAccepted == 2)
    }

    @Test func theEnvironmentIsReadAsLibprocessReadsIt() throws {
        #expect(try TLSSettings.fromEnvironment([:]) == nil)
        #expect(try TLSSettings.fromEnvironment(["LIBPROCESS_SSL_ENABLED": "false"]) == nil)
        #expect(throws: TLSSettingsError.missing(variable: "LIBPROCESS_SSL_CERT_FILE")) {
            try TLSSettings.fromEnvironment(["LIBPROCESS_SSL_ENABLED": "1"])
        }
        #expect(throws: TLSSettingsError.invalidBoolean(variable: "LIBPROCESS_SSL_ENABLED", value: "yes")) {
            try TLSSettings.fromEnvironment(["LIBPROCESS_SSL_ENABLED": "yes"])
        }
        let minimal = try #require(try TLSSettings.fromEnvironment(["SSL_ENABLED": "true", "SSL_CERT_FILE": "/c", "SSL_KEY_FILE": "/k"]))
        #expect(minimal == TLSSettings(certFile: "/c", keyFile: "/k"), "Mesos's defaults: no verification, no client certificate, legacy scheme, no downgrade")
        let strict = try #require(
            try TLSSettings.fromEnvironment([
                "LIBPROCESS_SSL_ENABLED": "true", "LIBPROCESS_SSL_CERT_FILE": "/c", "LIBPROCESS_SSL_KEY_FILE": "/k",
                "LIBPROCESS_SSL_REQUIRE_CERT": "true", "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME": "openssl",
                "LIBPROCESS_SSL_ENABLE_DOWNGRADE": "true", "LIBPROCESS_SSL_CIPHERS": "ECDHE-ECDSA-AES128-GCM-SHA256",
            ]))
        #expect(strict.requireClientCert && strict.verifyServerCert, "requiring client certificates implies verifying servers (libprocess)")
        #expect(strict.hostnameValidationScheme == .openssl && strict.supportDowngrade && strict.ciphers == "ECDHE-ECDSA-AES128-GCM-SHA256")
        #expect(throws: TLSSettingsError.invalidValue(variable: "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME", value: "dns", expected: "legacy or openssl")) {
            try TLSSettings.fromEnvironment([
                "LIBPROCESS_SSL_ENABLED": "true", "LIBPROCESS_SSL_CERT_FILE": "/c", "LIBPROCESS_SSL_KEY_FILE": "/k",
                "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME": "dns",
            ])
        }
        #expect(throws: TLSSettingsError.unreadableFile(variable: "LIBPROCESS_SSL_CERT_FILE", path: "/nonexistent/cert.pem")) {
            try TLSContext(TLSSettings(certFile: "/nonexistent/cert.pem", keyFile: Self.certs.key("agent")))
        }
        #expect(throws: TLSSettingsError.self) { try TLSContext(TLSSettings(certFile: Self.certs.key("agent"), keyFile: Self.certs.key("agent"))) }
        #expect(try TLSContext(TLSSettings(certFile: Self.certs.cert("agent-2"), keyFile: Self.certs.key("agent-2"))).localIdentity == PeerIdentity(principal: "agent-2", roles: [.agent]))
    }

    @Test func certificateNamesAreReadAsDocumented() {
        #expect(CertificateIdentity.identity(uris: ["urn:mesos:role:master", "urn:mesos:principal:m1"]) == PeerIdentity(principal: "m1", roles: [.master]))
        #expect(CertificateIdentity.identity(uris: ["urn:mesos:role:root", "urn:mesos:principal:", "urn:mesos:principal:a b"]) == PeerIdentity())
        #expect(CertificateIdentity.identity(uris: ["urn:mesos:role:agent", "urn:mesos:role:scheduler"]).roles == [.agent, .scheduler])
    }
}
