import Glibc
import MesosWire
import NIOCore
import ProcessSupport
import TestSupport
import Testing
@testable import MesosBus

/// Return routes (messages.proto, ReturnRouteOffer): a master's bus writes to a peer over the
/// connection the peer opened, once the peer proved it is the process at its pid. Real sockets.
@Suite(.timeLimit(.minutes(3))) struct ReturnRouteTests {
    static func masterBus(_ logs: CapturedLogs, credentials: [Credential]? = nil) async throws -> MessageBus {
        var config = BusConfiguration.test
        config.offerReturnRoutes = true
        config.requiredCredentials = credentials
        let bus = MessageBus(configuration: config, logger: logs.logger("master"))
        try await bus.start(name: "master")
        return bus
    }

    /// `fromListeningPort` false: the peer's links connect from ephemeral ports, as a peer's do
    /// through NAT or a proxy (the master proves it by an offer's nonce).
    static func peerBus(_ logs: CapturedLogs, credential: Credential? = nil, fromListeningPort: Bool = false) async throws -> MessageBus {
        var config = BusConfiguration.test
        config.credential = credential
        config.linksFromListeningPort = fromListeningPort
        let bus = MessageBus(configuration: config, logger: logs.logger("peer"))
        try await bus.start(name: "slave(1)")
        return bus
    }

    /// The next `n` messages a bus delivers (other events skipped), with what their connection proved.
    static func messages(_ bus: MessageBus, _ n: Int) async -> [Inbound] {
        var got: [Inbound] = []
        for await event in bus.events {
            if case .message(let inbound) = event { got.append(inbound) }
            if got.count == n { break }
        }
        return got
    }

    static func pings(_ n: Int, from bus: MessageBus, to peer: PID, startingAt first: Int = 0) {
        for i in first..<(first + n) { bus.post(.ping(PingAgentMessage(connected: true)), epoch: UInt64(i), to: peer) }
    }

    @Test func theMasterWritesOverTheAgentsConnectionAndClosesItsOwn() async throws {
        let logs = CapturedLogs()
        let master = try await Self.masterBus(logs)
        let agent = try await Self.peerBus(logs)
        defer { Task { await agent.shutdown(); await master.shutdown() } }
        // The agent's link to the master is up (its message arrived), then the master answers.
        agent.post(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        #expect(await Self.messages(master, 1).first?.envelope.from == agent.pid!.description)
        Self.pings(500, from: master, to: agent.pid!)
        let first = await Self.messages(agent, 500)
        #expect(first.map(\.envelope.epoch) == (0..<500).map(UInt64.init), "in order")
        try await Poll.until("the master adopted the agent's connection", timeout: .seconds(30)) { master.statistics.returnRoutesAdopted == 1 }
        #expect(agent.statistics.returnRoutesClaimed == 1)
        // The master closed the connection it opened: the agent accepts none, and still hears the master.
        try await Poll.until("the master's own connection to the agent closed", timeout: .seconds(30)) { agent.acceptedConnectionCount == 0 }
        Self.pings(10, from: master, to: agent.pid!, startingAt: 500)
        let later = await Self.messages(agent, 10)
        #expect(later.map(\.envelope.epoch) == (500..<510).map(UInt64.init))
        #expect(agent.acceptedConnectionCount == 0 && master.acceptedConnectionCount == 1, "one connection between the two")
        #expect(master.statistics.connectionsAccepted == 1 && agent.statistics.connectionsAccepted == 1)
        #expect(master.statistics.returnRoutesDeclined == 0 && master.statistics.messagesDropped == 0)
    }

    @Test func aPeerWithoutItsOwnLinkDeclinesAndTheMasterKeepsItsConnection() async throws {
        let logs = CapturedLogs()
        let master = try await Self.masterBus(logs)
        let agent = try await Self.peerBus(logs)
        defer { Task { await agent.shutdown(); await master.shutdown() } }
        Self.pings(100, from: master, to: agent.pid!)
        let got = await Self.messages(agent, 100)
        #expect(got.map(\.envelope.epoch) == (0..<100).map(UInt64.init))
        // They went ahead of the offer; its answer comes after them.
        try await Poll.until("the agent declined the offer", timeout: .seconds(30)) { master.statistics.returnRoutesDeclined == 1 }
        #expect(master.statistics.returnRoutesAdopted == 0)
        #expect(agent.statistics.returnRoutesClaimed == 0 && agent.acceptedConnectionCount == 1, "the master's own connection carries them")
    }

    @Test func whenTheAgentsConnectionClosesTheMasterReportsItsLinkBroken() async throws {
        let logs = CapturedLogs()
        let master = try await Self.masterBus(logs)
        let agent = try await Self.peerBus(logs)
        defer { Task { await master.shutdown() } }
        agent.post(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        _ = await Self.messages(master, 1)
        Self.pings(1, from: master, to: agent.pid!)
        _ = await Self.messages(agent, 1)
        try await Poll.until("the master adopted the agent's connection", timeout: .seconds(30)) { master.statistics.returnRoutesAdopted == 1 }
        await agent.shutdown()
        var broken: String?
        for await event in master.events {
            if case .linkBroken(let peer, _) = event { broken = peer; break }
        }
        #expect(broken == Endpoint(agent.pid!).description, "the agent's connection was the master's link to it")
        // The next message makes a new link of the master's own (the agent is gone: it fails).
        Self.pings(1, from: master, to: agent.pid!)
        for await event in master.events {
            if case .linkBroken = event { break }
        }
        #expect(master.statistics.connectsFailed == 1)
    }

    @Test func withAuthenticationTheMastersMessagesOnTheAgentsLinkComeFromAMaster() async throws {
        let logs = CapturedLogs()
        let credential = Credential(principal: "agent", secret: "return-route-secret")
        let master = try await Self.masterBus(logs, credentials: [credential])
        let agent = try await Self.peerBus(logs, credential: credential)
        defer { Task { await agent.shutdown(); await master.shutdown() } }
        agent.post(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        #expect(await Self.messages(master, 1).first?.peer.principal == "agent")
        Self.pings(3, from: master, to: agent.pid!)
        let got = await Self.messages(agent, 3)
        #expect(got.allSatisfy { $0.peer.roles.contains(.master) }, "the link proved the master knows the agent's secret")
        #expect(got.map(\.envelope.epoch) == [0, 1, 2])
        try await Poll.until("the master adopted the agent's connection", timeout: .seconds(30)) { master.statistics.returnRoutesAdopted == 1 }
        Self.pings(3, from: master, to: agent.pid!, startingAt: 3)
        let later = await Self.messages(agent, 3)
        #expect(later.allSatisfy { $0.peer.roles.contains(.master) }, "over the agent's connection too, they come from a master")
        #expect(later.map(\.envelope.epoch) == [3, 4, 5])
    }

    @Test func anOfferNobodyAnswersTimesOutAndTheLinkGoesOnOverItsOwnConnection() async throws {
        let logs = CapturedLogs()
        var config = BusConfiguration.test
        config.offerReturnRoutes = true
        config.returnRouteTimeout = .milliseconds(300)
        let master = MessageBus(configuration: config, logger: logs.logger("master"))
        try await master.start(name: "master")
        defer { Task { await master.shutdown() } }
        // A peer that reads but never answers an offer (one that does not know them).
        let silent = try Loopback.Socket(listeningOn: 0)
        Self.pings(3, from: master, to: PID(name: "silent", host: "127.0.0.1", port: silent.port))
        let connection = try silent.accept(timeout: .seconds(30))
        // Frame by frame: header, then exactly its payload (a read waits for all it asks for).
        func frames(_ n: Int) throws -> [Envelope] {
            var out: [Envelope] = []
            while out.count < n {
                guard case .data(let header) = connection.read(FrameCodec.headerSize, timeout: .seconds(30)), header.count == FrameCodec.headerSize else { break }
                let codec = FrameCodec()
                let length = try codec.payloadLength(header: header.reduce(0) { $0 << 8 | UInt32($1) })
                guard case .data(let payload) = connection.read(length, timeout: .seconds(30)), payload.count == length else { break }
                out.append(try payload.withUnsafeBytes { try codec.decodePayload($0) })
            }
            return out
        }
        let got = try frames(4)
        guard got.count == 4, case .returnRouteOffer? = got[3].payload else { Issue.record("expected 3 pings, then the offer: \(got)"); return }
        #expect(got.prefix(3).map(\.epoch) == [0, 1, 2], "what was posted while connecting is written at once, ahead of the offer")
        // After the offer timed out, the link goes on over its own connection.
        try await Poll.until("the offer timed out", timeout: .seconds(30)) { master.statistics.returnRoutesDeclined == 1 }
        Self.pings(2, from: master, to: PID(name: "silent", host: "127.0.0.1", port: silent.port), startingAt: 3)
        let later = try frames(2)
        #expect(later.map(\.epoch) == [3, 4])
        #expect(master.statistics.returnRoutesAdopted == 0)
    }

    @Test func aClaimNamingNoOfferIsIgnoredAndCostsNobodyElse() async throws {
        let logs = CapturedLogs()
        let master = try await Self.masterBus(logs)
        let agent = try await Self.peerBus(logs)
        defer { Task { await agent.shutdown(); await master.shutdown() } }
        let raw = try RawSocket(port: master.pid!.port)
        let forged = Envelope(epoch: 0, from: agent.pid!.description, payload: .returnRouteClaim(ReturnRouteClaimMessage(nonce: Array(repeating: 7, count: 16))))
        try raw.write(try FrameCodec().encode(forged))
        try await Poll.until("the forged claim was seen", timeout: .seconds(30)) { master.statistics.returnRouteClaimsUnknown == 1 }
        // The real agent's route is unaffected.
        agent.post(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        _ = await Self.messages(master, 1)
        Self.pings(2, from: master, to: agent.pid!)
        #expect(await Self.messages(agent, 2).map(\.envelope.epoch) == [0, 1])
        try await Poll.until("the master adopted the agent's connection", timeout: .seconds(30)) { master.statistics.returnRoutesAdopted == 1 }
        #expect(master.statistics.messagesReceived == 1, "the claim was not delivered as a message")
    }

    // MARK: The peer's connection from its pid's own address (no offer)

    @Test func aPeerConnectingFromItsPidsAddressIsWrittenToOverThatConnectionWithoutAnOffer() async throws {
        let logs = CapturedLogs()
        let master = try await Self.masterBus(logs)
        let agent = try await Self.peerBus(logs, fromListeningPort: true)
        defer { Task { await agent.shutdown(); await master.shutdown() } }
        agent.post(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        #expect(await Self.messages(master, 1).first?.envelope.from == agent.pid!.description)
        Self.pings(500, from: master, to: agent.pid!)
        let got = await Self.messages(agent, 500)
        #expect(got.map(\.envelope.epoch) == (0..<500).map(UInt64.init), "in order")
        #expect(master.statistics.returnRoutesBySource == 1)
        #expect(master.statistics.returnRoutesAdopted == 0 && agent.statistics.returnRoutesClaimed == 0, "no offer was made")
        #expect(agent.statistics.connectionsAccepted == 0, "the master never connected to the agent")
        #expect(master.statistics.connectionsAccepted == 1 && master.statistics.messagesDropped == 0)
    }

    @Test func withAuthenticationTheMastersMessagesOverTheAgentsConnectionFromItsAddressComeFromAMaster() async throws {
        let logs = CapturedLogs()
        let credential = Credential(principal: "agent", secret: "return-route-secret")
        let master = try await Self.masterBus(logs, credentials: [credential])
        let agent = try await Self.peerBus(logs, credential: credential, fromListeningPort: true)
        defer { Task { await agent.shutdown(); await master.shutdown() } }
        agent.post(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        #expect(await Self.messages(master, 1).first?.peer.principal == "agent")
        Self.pings(3, from: master, to: agent.pid!)
        let got = await Self.messages(agent, 3)
        #expect(got.allSatisfy { $0.peer.roles.contains(.master) }, "the agent's link proved the master knows its secret")
        #expect(got.map(\.envelope.epoch) == [0, 1, 2])
        #expect(master.statistics.returnRoutesBySource == 1 && agent.statistics.connectionsAccepted == 0)
    }

    @Test func aConnectionFromAnotherAddressThanItsSendersPidIsNotWrittenOverUnproven() async throws {
        let logs = CapturedLogs()
        let master = try await Self.masterBus(logs)
        let agent = try await Self.peerBus(logs, fromListeningPort: true)
        defer { Task { await agent.shutdown(); await master.shutdown() } }
        // Another process sends as the agent, from a port of its own.
        let impostor = try RawSocket(port: master.pid!.port)
        try impostor.write(try FrameCodec().encode(Envelope(epoch: 1, from: agent.pid!.description, payload: .pong(PongAgentMessage()))))
        #expect(await Self.messages(master, 1).first?.envelope.from == agent.pid!.description)
        // The master's message goes to the agent's own listener (with an offer the agent declines:
        // its link to the master is not up), none over the impostor's connection.
        Self.pings(1, from: master, to: agent.pid!)
        #expect(await Self.messages(agent, 1).first?.envelope.epoch == 0)
        try await Poll.until("the agent declined the offer", timeout: .seconds(30)) { master.statistics.returnRoutesDeclined == 1 }
        #expect(master.statistics.returnRoutesBySource == 0 && agent.statistics.connectionsAccepted == 1)
        #expect(!Loopback.ready(impostor.fd, Int16(POLLIN), within: .zero), "the master wrote nothing to the impostor")
    }

    @Test func aLinkWhoseAddressPairIsTakenConnectsFromAnotherPortAndIsProvenByAnOffer() async throws {
        let logs = CapturedLogs()
        let master = try await Self.masterBus(logs)
        let agent = try await Self.peerBus(logs, fromListeningPort: true)
        defer { Task { await agent.shutdown(); await master.shutdown() } }
        // A connection from the agent's port to the master is open already (as one lingering in
        // TIME_WAIT would be): the link's connect from that port fails with EADDRNOTAVAIL.
        let squatter = try SourceBoundSocket(from: agent.pid!.port, to: master.pid!.port)
        defer { squatter.close() }
        try await Poll.until("the master accepted the squatter", timeout: .seconds(30)) { master.statistics.connectionsAccepted == 1 }
        agent.post(.pong(PongAgentMessage()), epoch: 1, to: master.pid!)
        #expect(await Self.messages(master, 1).first?.envelope.from == agent.pid!.description)
        #expect(agent.statistics.linkSourcePortsTaken == 1 && agent.statistics.connectsFailed == 0)
        Self.pings(2, from: master, to: agent.pid!)
        #expect(await Self.messages(agent, 2).map(\.envelope.epoch) == [0, 1])
        try await Poll.until("the master adopted the agent's connection", timeout: .seconds(30)) { master.statistics.returnRoutesAdopted == 1 }
        #expect(master.statistics.returnRoutesBySource == 0, "the agent's connection came from another port")
    }

    @Test func aSecondBusOnATakenPortFailsWithAddressInUse() async throws {
        let logs = CapturedLogs()
        let first = try await Self.peerBus(logs, fromListeningPort: true)
        defer { Task { await first.shutdown() } }
        for shared in [true, false] {
            var config = BusConfiguration.test
            config.linksFromListeningPort = shared
            let second = MessageBus(configuration: config, logger: logs.logger("second"))
            let error = await #expect(throws: IOError.self, "linksFromListeningPort \(shared)") { try await second.start(name: "slave(2)", port: first.pid!.port) }
            #expect(error?.errnoCode == EADDRINUSE)
            await second.shutdown()
        }
    }

    /// Where each bus's links connect from: a peer's link to a master from the peer's listening
    /// port, its links to anyone else and an offering master's links from other ports.
    @Test func onlyAPeersLinksToMastersConnectFromItsListeningPort() async throws {
        let logs = CapturedLogs()
        let peer = try await Self.peerBus(logs, fromListeningPort: true)
        var config = BusConfiguration.test
        config.offerReturnRoutes = true
        config.linksFromListeningPort = true  // ignored by an offerer
        let offerer = MessageBus(configuration: config, logger: logs.logger("master"))
        try await offerer.start(name: "master")
        defer { Task { await peer.shutdown(); await offerer.shutdown() } }
        /// The source port of the connection `bus` opens to a listener of ours at a pid named `name`.
        func sourcePort(of bus: MessageBus, to name: String) async throws -> Int {
            let listener = try Loopback.Socket(fd: Loopback.listen())
            bus.post(.ping(PingAgentMessage(connected: true)), epoch: 1, to: PID(name: name, host: "127.0.0.1", port: listener.port))
            guard Loopback.ready(listener.fd, Int16(POLLIN), within: .seconds(20)) else { throw NoConnection(to: name) }
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener.fd, $0, &length) } }
            guard fd >= 0 else { throw NoConnection(to: name) }
            Glibc.close(fd)
            return Int(UInt16(bigEndian: address.sin_port))
        }
        #expect(try await sourcePort(of: peer, to: "master") == peer.pid!.port)
        #expect(try await sourcePort(of: peer, to: "slave(2)") != peer.pid!.port)
        #expect(try await sourcePort(of: offerer, to: "master") != offerer.pid!.port)
        #expect(peer.statistics.linkSourcePortsTaken == 0)
        // The offerer's listener has no SO_REUSEPORT: nothing else can connect from its port.
        let other = try Loopback.Socket(fd: Loopback.listen())
        #expect(throws: IOError.self) { try SourceBoundSocket(from: offerer.pid!.port, to: other.port) }
    }
}

struct NoConnection: Error { let to: String }

/// A blocking TCP connection from a given local port (SO_REUSEPORT, beside that port's listener).
final class SourceBoundSocket {
    private let fd: Int32

    init(from port: Int, to peer: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        func address(_ port: Int) -> sockaddr_in {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = in_port_t(UInt16(port).bigEndian)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            return a
        }
        var local = address(port), remote = address(peer)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        let connected = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, connected == 0 else {
            let e = errno
            Glibc.close(fd)
            throw IOError(errnoCode: e, reason: "source-bound connect")
        }
    }

    func close() { Glibc.close(fd) }
}
