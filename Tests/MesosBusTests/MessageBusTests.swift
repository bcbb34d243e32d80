#if canImport(Glibc)
import Glibc
#endif
import MesosWire
import NIOCore
import NIOPosix
import TestSupport
import Testing
@testable import MesosBus

/// Buses over real loopback sockets.
@Suite(.timeLimit(.minutes(3))) struct MessageBusTests {
    static func ping(_ i: Int, from: PID? = nil) -> Envelope {
        Envelope(epoch: UInt64(i), from: from?.description ?? "test@127.0.0.1:1", payload: .ping(PingAgentMessage(connected: true)))
    }

    /// Collects messages from a bus in the background.
    final class Collector: Sendable {
        let task: Task<[Envelope], Never>
        init(_ bus: MessageBus, count: Int) {
            task = Task {
                var got: [Envelope] = []
                for await event in bus.events {
                    if case .message(let inbound) = event { got.append(inbound.envelope) }
                    if got.count == count { break }
                }
                return got
            }
        }
    }

    static func withBuses(
        _ n: Int, configuration: BusConfiguration = BusConfiguration.test,
        _ body: ([MessageBus]) async throws -> Void
    ) async throws {
        var buses: [MessageBus] = []
        for i in 0..<n {
            let bus = MessageBus(configuration: configuration)
            try await bus.start(name: "p\(i)")
            buses.append(bus)
        }
        do { try await body(buses) } catch {
            for b in buses { await b.shutdown() }
            throw error
        }
        for b in buses { await b.shutdown() }
    }

    /// The bus's own timers tick through its events: repeatedly (`scheduleTicks`), then, after that
    /// timer is cancelled and a message has come through, once (`scheduleTick`). A missing tick
    /// shows as the suite's time limit.
    @Test func tickTimersTickThroughTheEvents() async throws {
        try await Self.withBuses(2) { buses in
            let (a, b) = (buses[0], buses[1])
            var events = b.events.makeAsyncIterator()
            let timer = b.scheduleTicks(every: .milliseconds(5))
            var ticks = 0
            while ticks < 3, let event = await events.next() { if case .tick = event { ticks += 1 } }
            timer.cancel()
            #expect(ticks == 3)
            // A tick the repeated timer queued before its cancel took effect comes before this
            // message (the cancel was on the loop before the message was even sent).
            try await a.send(Self.ping(1), to: b.pid!)
            while let event = await events.next() { if case .message = event { break } }
            b.scheduleTick(after: .milliseconds(20))
            var scheduled = false
            while let event = await events.next() {
                if case .tick = event { scheduled = true; break }
            }
            #expect(scheduled)
        }
    }

    /// Each bus takes its own loop of the group, whatever loop its listener takes: two buses made
    /// one after the other on a two-loop group run their tasks on different threads (the listener
    /// once took a second loop from the round-robin, and every bus of a process shared one thread).
    @Test func busesMadeOneAfterTheOtherRunOnDifferentLoops() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (a, b) = (MessageBus(configuration: .test, group: group), MessageBus(configuration: .test, group: group))
        try await a.start(name: "a")
        try await b.start(name: "b")
        let threadA = await Task(executorPreference: a.taskExecutor) { pthread_self() }.value
        let threadB = await Task(executorPreference: b.taskExecutor) { pthread_self() }.value
        await a.shutdown()
        await b.shutdown()
        try await group.shutdownGracefully()
        #expect(pthread_equal(threadA, threadB) == 0)
    }

    @Test func pidParsing() {
        #expect(PID("master@10.0.0.1:5050") == PID(name: "master", host: "10.0.0.1", port: 5050))
        #expect(PID("slave(1)@host.example:5051")?.name == "slave(1)")
        #expect(PID("s@[::1]:4000") == PID(name: "s", host: "::1", port: 4000))
        #expect(PID("s@[::1]:4000")?.description == "s@[::1]:4000")
        for bad in ["", "master", "@h:1", "m@:1", "m@h", "m@h:0", "m@h:70000", "m@h:x", "m @h:1", "m@[::1:1"] {
            #expect(PID(bad) == nil, "\(bad)")
        }
    }

    @Test func deliversInOrderOverOneReusedLink() async throws {
        try await Self.withBuses(2) { buses in
            let (a, b) = (buses[0], buses[1])
            let collector = Collector(b, count: 2000)
            for i in 0..<2000 { try await a.send(Self.ping(i, from: a.pid), to: b.pid!) }
            let got = await collector.task.value
            #expect(got.map(\.epoch) == (0..<2000).map(UInt64.init))
            #expect(got.allSatisfy { $0.from == a.pid!.description })
            #expect(a.statistics.messagesSent == 2000 && a.statistics.connectsFailed == 0)
            #expect(b.statistics.messagesReceived == 2000)
        }
    }

    @Test func repliesGoToTheSendersPID() async throws {
        try await Self.withBuses(2) { buses in
            let (a, b) = (buses[0], buses[1])
            let answers = Collector(a, count: 1)
            try await a.send(.ping(PingAgentMessage(connected: true)), epoch: 3, to: b.pid!)
            for await event in b.events {
                guard case .message(let inbound) = event, let from = PID(inbound.envelope.from) else { continue }
                let e = inbound.envelope
                try await b.send(.pong(PongAgentMessage()), epoch: e.epoch, to: from)
                break
            }
            let reply = await answers.task.value
            #expect(reply.first?.payload == .pong(PongAgentMessage()) && reply.first?.epoch == 3)
        }
    }

    @Test func unreachablePeerIsReportedAndDropped() async throws {
        try await Self.withBuses(1) { buses in
            let a = buses[0]
            // A bound but not listening socket: connections are refused, and no other test can
            // take the port meanwhile.
            let reserved = try Loopback.Socket(boundTo: 0)
            let dead = PID(name: "gone", host: "127.0.0.1", port: reserved.port)
            try await a.send(Self.ping(1), to: dead)
            for await event in a.events {
                if case .linkBroken(let peer, _) = event {
                    #expect(peer == "127.0.0.1:\(dead.port)")
                    break
                }
            }
            #expect(a.statistics.messagesDropped == 1 && a.statistics.connectsFailed == 1)
            withExtendedLifetime(reserved) {}
        }
    }

    @Test func reconnectsAfterThePeerRestarts() async throws {
        try await Self.withBuses(1) { buses in
            let a = buses[0]
            // A port below the kernel's ephemeral range: once released it is not handed out to
            // other tests' outgoing connections, so the restarted peer can bind it again.
            let (b, port) = try await Self.busOnFixedPort(name: "p1")
            let first = Collector(b, count: 1)
            try await a.send(Self.ping(1), to: b.pid!)
            #expect(await first.task.value.count == 1)
            await b.shutdown()
            // The link notices the close; the restarted peer on the same port gets later sends.
            for await event in a.events { if case .linkBroken = event { break } }
            let b2 = MessageBus(configuration: .test)
            try await b2.start(name: "p1", port: port)
            let second = Collector(b2, count: 1)
            try await a.send(Self.ping(2), to: b2.pid!)
            #expect(await second.task.value.map(\.epoch) == [2])
            await b2.shutdown()
        }
    }

    static func busOnFixedPort(name: String) async throws -> (MessageBus, Int) {
        for _ in 0..<50 {
            let port = Int.random(in: 20_000..<32_000)
            let bus = MessageBus(configuration: .test)
            if (try? await bus.start(name: name, port: port)) != nil { return (bus, port) }
            await bus.shutdown()
        }
        throw BusError.notStarted
    }

    @Test func badPeersLoseOnlyTheirOwnConnection() async throws {
        var config = BusConfiguration.test
        config.maxFrameSize = 64 * 1024
        config.partialFrameTimeout = .milliseconds(300)
        try await Self.withBuses(2, configuration: config) { buses in
            let (good, server) = (buses[0], buses[1])
            let port = server.pid!.port
            let collector = Collector(server, count: 2)
            try await good.send(Self.ping(1), to: server.pid!)

            let garbage = try Loopback.Socket(connectingTo: port)
            try garbage.write(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            let oversized = try Loopback.Socket(connectingTo: port)
            try oversized.write([0x00, 0x10, 0x00, 0x01])  // 1 MiB + 1 announced
            let malformed = try Loopback.Socket(connectingTo: port)
            try malformed.write([0, 0, 0, 6, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
            let halfOpen = try Loopback.Socket(connectingTo: port)
            try halfOpen.write([0, 0, 0, 100, 1, 2, 3])  // then stalls
            let empty = try Loopback.Socket(connectingTo: port)
            try empty.write([0, 0, 0, 0])

            #expect(garbage.closedByPeer(within: .seconds(2)))
            #expect(oversized.closedByPeer(within: .seconds(2)))
            #expect(malformed.closedByPeer(within: .seconds(2)))
            #expect(empty.closedByPeer(within: .seconds(2)))
            #expect(halfOpen.closedByPeer(within: .seconds(3)))

            try await good.send(Self.ping(2), to: server.pid!)
            #expect(await collector.task.value.map(\.epoch) == [1, 2])
            #expect(server.statistics.connectionsRejected == 5)
        }
    }

    /// An idle connection with nothing buffered stays open past `partialFrameTimeout`: a partial
    /// frame sent after its last message is closed for stalling (the sign that the timeout has
    /// passed for the idle one too), and the next message still comes over the idle connection.
    @Test func idleConnectionsWithoutPartialFramesStayOpen() async throws {
        var config = BusConfiguration.test
        config.partialFrameTimeout = .milliseconds(200)
        try await Self.withBuses(2, configuration: config) { buses in
            let (a, b) = (buses[0], buses[1])
            let collector = Collector(b, count: 2)
            try await a.send(Self.ping(1), to: b.pid!)
            try await Poll.until("the first message", timeout: .seconds(10)) { b.statistics.messagesReceived >= 1 }
            let stalled = try Loopback.Socket(connectingTo: b.pid!.port)
            try stalled.write([0, 0, 0, 100, 1, 2, 3])
            #expect(stalled.closedByPeer(within: .seconds(10)))
            try await a.send(Self.ping(2), to: b.pid!)
            #expect(await collector.task.value.count == 2)
            // The second message came over the first connection: the idle one was kept.
            #expect(b.statistics.connectionsAccepted == 2)
            #expect(b.statistics.connectionsRejected == 1)
            #expect(a.statistics.connectsFailed == 0)
        }
    }

    @Test func oversizedSendIsAnErrorForTheSender() async throws {
        var config = BusConfiguration.test
        config.maxFrameSize = 1024
        try await Self.withBuses(2, configuration: config) { buses in
            let big = Envelope(epoch: 1, from: "x@h:1", payload: .frameworkError(FrameworkErrorMessage(message: String(repeating: "x", count: 4096))))
            await #expect(throws: BusError.self) { try await buses[0].send(big, to: buses[1].pid!) }
        }
    }

    @Test func slowConsumerPushesBackOnTheSenderAndLosesNothing() async throws {
        var config = BusConfiguration.test
        config.inboundHighWater = 8
        config.inboundLowWater = 2
        try await Self.withBuses(2, configuration: config) { buses in
            let (a, b) = (buses[0], buses[1])
            let payload = FrameworkErrorMessage(message: String(repeating: "m", count: 64 * 1024))
            let total = 1500  // ~96 MiB: far more than socket buffers and water marks hold
            let sender = Task {
                for i in 0..<total {
                    try await a.send(Envelope(epoch: UInt64(i), from: "a@h:1", payload: .frameworkError(payload)), to: b.pid!)
                }
            }
            // The consumer reads nothing: the receiver stops reading its socket, and the sender waits.
            try await Poll.until("the sender held back", timeout: .seconds(20)) { a.statistics.sendsHeldBack > 0 && b.statistics.readsPaused > 0 }
            #expect(a.statistics.messagesSent < total, "sender was not held back by a consumer that reads nothing")
            var epochs: [UInt64] = []
            for await event in b.events {
                if case .message(let inbound) = event { epochs.append(inbound.envelope.epoch) }
                if epochs.count == total { break }
            }
            try await sender.value
            #expect(epochs == (0..<total).map(UInt64.init))
        }
    }

    /// Back-pressure pauses reading with a partial frame in the buffer; the partial-frame timer must
    /// not take that for a stalled peer (it did: a busy master closed a scheduler's connection
    /// mid-burst and lost the rest of its messages).
    @Test func aConsumerThatFallsBehindLongerThanThePartialFrameTimeoutLosesNothing() async throws {
        var config = BusConfiguration.test
        config.inboundHighWater = 8
        config.inboundLowWater = 2
        config.partialFrameTimeout = .milliseconds(200)
        try await Self.withBuses(1, configuration: config) { buses in
            let b = buses[0]
            // Odd-sized frames written in one go: a read ends inside a frame, the rest waits in the
            // kernel while reading is paused.
            let total = 200
            let payload = FrameworkErrorMessage(message: String(repeating: "m", count: 10_007))
            var bytes: [UInt8] = []
            for i in 0..<total {
                bytes += try FrameCodec().encode(Envelope(epoch: UInt64(i), from: "a@127.0.0.1:1", payload: .frameworkError(payload)))
            }
            let peer = try RawSocket(port: b.pid!.port)
            let all = bytes
            let writer = Task.detached { try peer.write(all) }  // blocks while the receiver is paused
            try await Poll.until("reading paused", timeout: .seconds(20)) { b.statistics.readsPaused > 0 }
            // The positive signal that the partial-frame timer looked at the paused connection
            // (twice: a whole timeout passed while paused).
            let checks = b.statistics.idleChecks
            try await Poll.until("idle checks while paused", timeout: .seconds(20)) { b.statistics.idleChecks >= checks + 2 }
            var epochs: [UInt64] = []
            for await event in b.events {
                if case .message(let inbound) = event { epochs.append(inbound.envelope.epoch) }
                if epochs.count == total { break }
            }
            try await writer.value
            #expect(epochs == (0..<total).map(UInt64.init))
            #expect(b.statistics.connectionsRejected == 0)
        }
    }

    /// A peer that stops reading (its kernel accepts the connection, nothing reads it) fills its
    /// link: the link is closed after the write timeout and its queued frames dropped, while
    /// messages to another peer from the same bus keep flowing.
    @Test(.timeLimit(.minutes(1))) func aStuckPeersLinkIsClosedAfterTheWriteTimeoutWithoutDelayingOthers() async throws {
        var config = BusConfiguration.test
        config.writeTimeout = .milliseconds(500)
        config.writeBufferWaterMark = .init(low: 16 * 1024, high: 64 * 1024)
        try await Self.withBuses(2, configuration: config) { buses in
            let (a, b) = (buses[0], buses[1])
            let stuck = try Loopback.Socket(listeningOn: 0, receiveBuffer: 4096)
            let stuckPID = PID(name: "stuck", host: "127.0.0.1", port: stuck.port)
            let big = Envelope.Payload.frameworkError(FrameworkErrorMessage(message: String(repeating: "s", count: 32 * 1024)))
            for i in 0..<256 { a.post(big, epoch: UInt64(i), to: stuckPID) }  // 8 MiB: far more than the socket takes
            let collector = Collector(b, count: 500)
            for i in 0..<500 { a.post(.ping(PingAgentMessage(connected: true)), epoch: UInt64(i), to: b.pid!) }
            #expect(await collector.task.value.map(\.epoch) == (0..<500).map(UInt64.init), "the healthy peer got everything, in order")
            for await event in a.events {
                if case .linkBroken(let peer, let reason) = event {
                    #expect(peer == "127.0.0.1:\(stuck.port)")
                    #expect(reason.contains("stopped reading"))
                    break
                }
            }
            #expect(a.statistics.linksStalled == 1)
            #expect(a.statistics.messagesDropped > 0, "what the stuck peer could not take was dropped")
            #expect(b.statistics.messagesReceived == 500)
            withExtendedLifetime(stuck) {}
        }
    }

    @Test func idleLinksAreClosedAndForgottenAndTheNextSendReconnects() async throws {
        var config = BusConfiguration.test
        config.idleLinkTimeout = .milliseconds(200)
        try await Self.withBuses(2, configuration: config) { buses in
            let (a, b) = (buses[0], buses[1])
            let collector = Collector(b, count: 2)
            try await a.send(Self.ping(1), to: b.pid!)
            #expect(a.linkCount == 1)
            // Freed once forgotten: every drain the posts scheduled gave back its hold on the link.
            weak let evicted = a.currentLinks.first
            #expect(evicted != nil)
            try await Poll.until("the idle link evicted", timeout: .seconds(10)) { a.statistics.linksEvicted == 1 }
            #expect(a.linkCount == 0)
            try await Poll.until("the evicted link freed", timeout: .seconds(10)) { evicted == nil }
            try await a.send(Self.ping(2), to: b.pid!)
            #expect(await collector.task.value.map(\.epoch) == [1, 2])
            #expect(b.statistics.connectionsAccepted == 2, "a new connection after the eviction")
        }
    }

    /// `flush` returns once what was posted is in the socket: shutting down right after loses nothing.
    @Test func flushWaitsForWhatWasPostedToBeWritten() async throws {
        try await Self.withBuses(2) { buses in
            let (a, b) = (buses[0], buses[1])
            let collector = Collector(b, count: 200)
            for i in 0..<200 { a.post(.ping(PingAgentMessage(connected: true)), epoch: UInt64(i), to: b.pid!) }
            await a.flush()
            await a.shutdown()
            #expect(await collector.task.value.count == 200)
        }
    }

    @Test func shutdownEndsEventsAndRefusesSends() async throws {
        let bus = MessageBus(configuration: .test)
        let pid = try await bus.start(name: "x")
        let ended = Task { for await _ in bus.events {}; return true }
        await bus.shutdown()
        await bus.shutdown()
        #expect(await ended.value)
        await #expect(throws: BusError.shutDown) { try await bus.send(Self.ping(1), to: pid) }
    }
}
