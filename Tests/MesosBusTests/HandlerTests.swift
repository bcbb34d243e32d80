import Logging
import MesosWire
import NIOCore
import NIOEmbedded
import Testing
@testable import MesosBus

/// The inbound frame handler and the accepting side of authentication, on an `EmbeddedChannel`:
/// bytes in, envelopes (or a close with its cause) out, no sockets and no clock.
@Suite struct FrameHandlerTests {
    final class Harness {
        let channel = EmbeddedChannel()
        let sink: InboundSink
        let events: BusEvents
        let stats = BusStatsCounter()
        let logs = CapturedLogs()

        init(credentials: [Credential]? = nil, maxFrameSize: Int = 64 * 1024, highWater: Int = 100, lowWater: Int = 10) throws {
            sink = InboundSink(high: highWater, low: lowWater, stats: stats)
            events = BusEvents(sink: sink)
            let handler = FrameHandler(
                codec: FrameCodec(maxFrameSize: maxFrameSize), side: .accepted(Authenticator(credentials: credentials), me: { "master@127.0.0.1:5050" }),
                sink: sink, logger: logs.logger("frames"), partialFrameTimeout: .milliseconds(100))
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5051)).wait()  // active, as an accepted connection
        }

        func write(_ bytes: [UInt8]) throws { try channel.writeInbound(ByteBuffer(bytes: bytes)) }
        func write(_ envelope: Envelope) throws { try write(try FrameCodec().encode(envelope)) }

        /// What the handler answered on the connection, decoded.
        func answers() throws -> [Envelope] {
            var out: [Envelope] = []
            var decoder = FrameDecoder()
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                decoder.append(buffer.readableBytesView)
                while let e = try decoder.next() { out.append(e) }
            }
            return out
        }

        func delivered() async -> [Inbound] {
            sink.finish()
            var got: [Inbound] = []
            for await e in events { if case .message(let m) = e { got.append(m) } }
            return got
        }

        var closed: Bool { !channel.isActive }
        func rejection() -> String? { logs.lines.withLock { $0.first { $0.contains("connection_rejected") } } }
    }

    static let ping = Envelope(epoch: 3, from: "slave(1)@127.0.0.1:5051", payload: .ping(PingAgentMessage(connected: true)))

    @Test func framesSplitAnyWayAreDeliveredInOrder() async throws {
        let h = try Harness()
        var bytes: [UInt8] = []
        for i in 0..<5 { bytes += try FrameCodec().encode(Envelope(epoch: UInt64(i), from: Self.ping.from, payload: Self.ping.payload)) }
        for chunk in stride(from: 0, to: bytes.count, by: 7) { try h.write(Array(bytes[chunk..<min(chunk + 7, bytes.count)])) }
        #expect(await h.delivered().map(\.envelope.epoch) == [0, 1, 2, 3, 4])
        #expect(!h.closed)
    }

    @Test(arguments: [
        ([0x00, 0x10, 0x00, 0x01], "frame_too_large"),  // 1 MiB + 1 announced, over the 64 KiB maximum
        ([0, 0, 0, 0], "empty_frame"),
        ([0, 0, 0, 6, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], "malformed_frame"),
    ] as [([UInt8], String)])
    func badInputClosesTheConnectionWithItsCause(_ bytes: [UInt8], _ cause: String) async throws {
        let h = try Harness()
        try h.write(Self.ping)
        try h.write(bytes)
        #expect(h.closed)
        #expect(h.rejection()?.contains(cause) == true, "\(h.logs.all)")
        #expect(h.stats.snapshot.connectionsRejected == 1)
        #expect(await h.delivered().map(\.envelope.epoch) == [3], "what came before the bad frame is delivered")
    }

    /// A partial frame with no byte for `partialFrameTimeout` (100 ms here) closes the connection;
    /// one that keeps coming does not, nor does an idle connection with nothing buffered (its
    /// loop's clock moves past the timeout and it stays open, with no check counted).
    @Test func aStalledPartialFrameIsClosedAndAnIdleConnectionIsNot() throws {
        let idle = try Harness()
        try idle.write(Self.ping)
        idle.channel.embeddedEventLoop.advanceTime(by: .milliseconds(500))
        #expect(!idle.closed && idle.stats.snapshot.idleChecks == 0)

        let slow = try Harness()
        try slow.write([0, 0, 0, 100, 1, 2, 3])
        slow.channel.embeddedEventLoop.advanceTime(by: .milliseconds(80))
        try slow.write([4, 5, 6])
        slow.channel.embeddedEventLoop.advanceTime(by: .milliseconds(80))
        #expect(!slow.closed && slow.stats.snapshot.idleChecks == 1, "a check came due 100 ms after the first bytes and found the frame still coming")
        slow.channel.embeddedEventLoop.advanceTime(by: .milliseconds(40))
        #expect(slow.closed)
        #expect(slow.rejection()?.contains("partial_frame_stalled") == true)

        let stalled = try Harness()
        try stalled.write([0, 0, 0, 100, 1, 2, 3])
        stalled.channel.embeddedEventLoop.advanceTime(by: .milliseconds(99))
        #expect(!stalled.closed)
        stalled.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(stalled.closed)
        #expect(stalled.rejection()?.contains("partial_frame_stalled") == true)
    }

    /// A partial frame held while back-pressure paused reading waits on us, not on the peer: the
    /// first stall check after a pause gives the peer a whole `partialFrameTimeout` (a check that
    /// ran after the resume but before the resumed read used to close it, and a burst was lost),
    /// and a peer that then sends nothing more is closed. `seenPaused`: a check ran while reading
    /// was paused; else the pause began and ended between two checks.
    @Test(arguments: [true, false])
    func aPartialFrameHeldWhileReadingWasPausedGetsAWholeTimeoutAfterReadingResumes(seenPaused: Bool) async throws {
        let h = try Harness(highWater: 2, lowWater: 0)
        var bytes = try FrameCodec().encode(Self.ping) + FrameCodec().encode(Self.ping)
        bytes += [0, 0, 0, 100, 1, 2, 3]
        try h.write(bytes)
        #expect(h.stats.snapshot.readsPaused == 1, "two messages pending at a high water mark of two pause reading")
        var checks = 0
        if seenPaused {
            h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
            checks += 1
            #expect(!h.closed && h.stats.snapshot.idleChecks == checks, "a check found reading paused")
        }
        var events = h.events.makeAsyncIterator()
        for _ in 0..<2 { _ = await events.next() }
        #expect(!h.sink.isPaused(h.channel), "the consumer caught up: reading resumed")
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        checks += 1
        #expect(!h.closed && h.stats.snapshot.idleChecks == checks, "the first check after the pause gives the peer a whole timeout")
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(h.closed && h.rejection()?.contains("partial_frame_stalled") == true)
    }

    /// With credentials required, a peer that connects and sends nothing is closed once
    /// `partialFrameTimeout` passed.
    @Test func aPeerThatNeverAuthenticatesIsClosed() throws {
        let h = try Harness(credentials: [Credential(principal: "agent", secret: "s")])
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(99))
        #expect(!h.closed)
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(h.closed && h.rejection()?.contains("authentication_timeout") == true)
    }

    @Test func withCredentialsRequiredAnUnauthenticatedMessageIsRefusedAndClosed() async throws {
        let h = try Harness(credentials: [Credential(principal: "agent", secret: "s")])
        try h.write(Self.ping)
        let answer = try h.answers()
        guard case .authenticationResult(let r)? = answer.first?.payload else { Issue.record("no refusal: \(answer)"); return }
        #expect(!r.ok && r.reason == "authentication required")
        #expect(h.closed && h.rejection()?.contains("unauthenticated") == true)
        #expect(await h.delivered().isEmpty)
    }

    @Test func aPeerThatProvesItsSecretIsServedWithItsPrincipal() async throws {
        let credential = Credential(principal: "agent", secret: "s")
        let h = try Harness(credentials: [credential])
        var client = Authenticatee(credential: credential)
        try h.write(Envelope(epoch: 0, from: Self.ping.from, payload: client.opening))
        guard let challenge = try h.answers().first?.payload, case .send(let response) = client.handle(challenge) else {
            Issue.record("no challenge"); return
        }
        try h.write(Envelope(epoch: 0, from: Self.ping.from, payload: response))
        guard let result = try h.answers().first?.payload else { Issue.record("no result"); return }
        #expect(client.handle(result) == .authenticated, "the server proved it knows the secret too")
        try h.write(Self.ping)
        let delivered = await h.delivered()
        #expect(delivered.map(\.envelope.epoch) == [3] && delivered.first?.peer.principal == "agent")
    }

    @Test func aWrongSecretIsRefused() throws {
        let h = try Harness(credentials: [Credential(principal: "agent", secret: "s")])
        var client = Authenticatee(credential: Credential(principal: "agent", secret: "guess"))
        try h.write(Envelope(epoch: 0, from: Self.ping.from, payload: client.opening))
        guard let challenge = try h.answers().first?.payload, case .send(let response) = client.handle(challenge) else {
            Issue.record("no challenge"); return
        }
        try h.write(Envelope(epoch: 0, from: Self.ping.from, payload: response))
        guard let result = try h.answers().first?.payload else { Issue.record("no result"); return }
        #expect(client.handle(result) == .failed("authentication refused by the peer: wrong secret", cause: "refused"))
        #expect(h.closed && h.rejection()?.contains("authentication_failed") == true)
    }
}

/// The outbound link's decisions, without sockets.
@Suite struct LinkStateMachineTests {
    static func frame(_ n: Int) -> ByteBuffer { ByteBuffer(bytes: Array(repeating: 1, count: n)) }
    let id = ObjectIdentifier(FrameHandlerTests.Harness.self)

    @Test func theFirstFrameConnectsAndQueuedFramesGoOnceConnected() {
        var m = LinkStateMachine(maxQueuedBytes: 100)
        let first = m.enqueue(Self.frame(10), channelWritable: false)
        let second = m.enqueue(Self.frame(10), channelWritable: false)
        #expect(first == .connect && second == .queued)
        m.connected(id, authenticate: false)
        let notWritable = m.nextFrame(channelWritable: false)
        #expect(notWritable == nil, "nothing while the channel takes nothing")
        let a = m.nextFrame(channelWritable: true), b = m.nextFrame(channelWritable: true), none = m.nextFrame(channelWritable: true)
        #expect(a?.readableBytes == 10 && b?.readableBytes == 10 && none == nil)
        let direct = m.enqueue(Self.frame(10), channelWritable: true)
        #expect(direct == .write, "connected and writable: straight to the channel")
    }

    @Test func theQueueIsBoundedAndAFullQueueDrops() {
        var m = LinkStateMachine(maxQueuedBytes: 25)
        _ = m.enqueue(Self.frame(10), channelWritable: false)
        let second = m.enqueue(Self.frame(10), channelWritable: false)
        let third = m.enqueue(Self.frame(10), channelWritable: false)
        #expect(second == .queued && third == .dropped(.queueFull) && m.queuedBytes == 20)
    }

    @Test func authenticationHoldsFramesUntilAccepted() {
        var m = LinkStateMachine(maxQueuedBytes: 100)
        _ = m.enqueue(Self.frame(5), channelWritable: false)
        m.connected(id, authenticate: true)
        let held = m.nextFrame(channelWritable: true)
        let accepted = m.authenticated(id)
        let released = m.nextFrame(channelWritable: true)
        #expect(held == nil && accepted && released?.readableBytes == 5)
    }

    @Test func aBrokenOrClosedLinkDropsItsQueue() {
        var m = LinkStateMachine(maxQueuedBytes: 100)
        _ = m.enqueue(Self.frame(5), channelWritable: false)
        _ = m.enqueue(Self.frame(5), channelWritable: false)
        let other = m.broken(ObjectIdentifier(LinkStateMachineTests.self))
        #expect(other == nil, "not the current connection")
        let connectFailed = m.broken(nil)
        #expect(connectFailed == 2 && m.isIdle)
        let again = m.enqueue(Self.frame(5), channelWritable: false)
        #expect(again == .connect, "the next frame reconnects")
        let closed = m.close()
        let after = m.enqueue(Self.frame(5), channelWritable: true)
        #expect(closed == 1 && after == .dropped(.closed))
    }

    /// Idle eviction must not close a link that still holds frames for a connect in progress.
    @Test func onlyALinkWithNothingQueuedAndNoConnectInProgressCanBeEvicted() {
        var m = LinkStateMachine(maxQueuedBytes: 100)
        #expect(m.canEvict, "never used")
        _ = m.enqueue(Self.frame(5), channelWritable: false)
        #expect(!m.canEvict, "connecting, with a frame queued")
        let id = ObjectIdentifier(LinkStateMachineTests.self)
        m.connected(id, authenticate: true)
        #expect(!m.canEvict, "authenticating")
        _ = m.authenticated(id)
        #expect(!m.canEvict, "connected, the frame not written yet")
        _ = m.nextFrame(channelWritable: true)
        #expect(m.canEvict, "connected, everything written")
    }
}
