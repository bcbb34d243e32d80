#if canImport(Glibc)
import Glibc
#endif
import MesosWire
import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing
@testable import MesosBus

/// Counts the jobs the concurrency runtime enqueues on its global pool from one thread (through
/// the runtime's `swift_task_enqueueGlobal_hook`). A consumer on the bus's loop that awaited each
/// event was resumed through the pool (one enqueue per event, then a hop back to the loop with an
/// eventfd write); one that the bus calls in place needs none.
enum GlobalEnqueues {
    typealias Original = @convention(c) (UnsafeMutableRawPointer?) -> Void
    typealias Hook = @convention(c) (UnsafeMutableRawPointer?, Original?) -> Void
    private static let watched = Mutex<pthread_t?>(nil)
    private static let counted = Atomic<Int>(0)
    static let installed: Bool = {
        guard let me = dlopen(nil, RTLD_NOW), let symbol = dlsym(me, "swift_task_enqueueGlobal_hook") else { return false }
        symbol.assumingMemoryBound(to: Hook?.self).pointee = { job, original in
            if let w = GlobalEnqueues.watched.withLock({ $0 }), pthread_equal(w, pthread_self()) != 0 {
                GlobalEnqueues.counted.add(1, ordering: .relaxed)
            }
            original?(job)
        }
        return true
    }()

    static func watch(_ thread: pthread_t) { watched.withLock { $0 = thread } }
    static var count: Int { counted.load(ordering: .relaxed) }
}

/// A consumer on its bus's loop, as `AgentDaemon` is: the bus calls `take` in place.
actor LoopConsumer {
    let bus: MessageBus
    nonisolated var unownedExecutor: UnownedSerialExecutor { bus.serialExecutor }
    private var pings: [UInt64] = []
    private var ticks = 0
    private var wanted: (pings: Int, ticks: Int, done: CheckedContinuation<([UInt64], Int), Never>)?

    init(_ bus: MessageBus) {
        self.bus = bus
        bus.handleEvents(onLoop: { [weak self] event in self?.assumeIsolated { $0.take(event) } })
    }

    private func take(_ event: BusEvent) {
        switch event {
        case .message(let inbound): pings.append(inbound.envelope.epoch)
        case .tick: ticks += 1
        case .linkBroken: break
        }
        if let w = wanted, pings.count >= w.pings, ticks >= w.ticks {
            wanted = nil
            w.done.resume(returning: (pings, ticks))
        }
    }

    /// Waits until `pings` messages and `ticks` ticks came; what came, in order.
    func wait(pings: Int, ticks: Int) async -> ([UInt64], Int) {
        await withCheckedContinuation { c in
            wanted = (pings, ticks, c)
            if self.pings.count >= pings, self.ticks >= ticks {
                wanted = nil
                c.resume(returning: (self.pings, self.ticks))
            }
        }
    }
}

@Suite(.serialized, .timeLimit(.minutes(1))) struct LoopConsumerTests {
    /// Messages from another bus and the loop's own ticks, arriving together, reach an actor on
    /// the loop in order and without the global pool: the only enqueues from the loop thread are
    /// the two that end this test's wait (the resumed continuation, the return from the actor);
    /// awaiting each event cost one per event (51 for 50 ticks).
    @Test func anActorOnTheLoopTakesMessagesAndTicksInPlace() async throws {
        #expect(GlobalEnqueues.installed)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let receiver = MessageBus(configuration: .test, group: group)
        let consumer = LoopConsumer(receiver)
        try await receiver.start(name: "receiver")
        GlobalEnqueues.watch(try await group.next().submit { pthread_self() }.get())
        let sender = MessageBus(configuration: .test)
        try await sender.start(name: "sender")
        let start = GlobalEnqueues.count
        let timer = receiver.scheduleTicks(every: .milliseconds(2))
        for i in 1...20 { try await sender.send(MessageBusTests.ping(i), to: receiver.pid!) }
        let (pings, ticks) = await consumer.wait(pings: 20, ticks: 50)
        let enqueues = GlobalEnqueues.count - start
        timer.cancel()
        await sender.shutdown()
        await receiver.shutdown()
        try await group.shutdownGracefully()
        #expect(pings == Array(1...20))
        #expect(ticks >= 50)
        #expect(enqueues <= 2, "\(enqueues) jobs went through the global pool for \(pings.count) messages and \(ticks) ticks")
    }

    /// Events raised while the handler runs (a tick from the loop's timer path, a broken link
    /// raised by code it calls) are handed over after the handler returns, in the order they were
    /// raised: the handler is never re-entered, and the loop task scheduled for the broken link
    /// finds nothing left to hand over.
    @Test func anEventRaisedInsideTheHandlerComesAfterItReturns() throws {
        let loop = EmbeddedEventLoop()
        let sink = InboundSink(high: 100, low: 10, stats: BusStatsCounter())
        let seen = Mutex<[String]>([])
        let depth = Atomic<Int>(0)
        sink.handleDirectly(on: loop) { event in
            #expect(depth.add(1, ordering: .relaxed).newValue == 1, "the handler was re-entered")
            let name: String
            switch event {
            case .message: name = "message"
            case .tick: name = "tick"
            case .linkBroken(let peer, _): name = "broken \(peer)"
            }
            seen.withLock { $0.append("begin \(name)") }
            if name == "message" {
                sink.tick()  // from the loop's timer path: right after this handler returns
                sink.event(.linkBroken(peer: "10.0.0.1:5050", reason: "test"))  // from code the handler called: through the loop
            }
            seen.withLock { $0.append("end \(name)") }
            depth.subtract(1, ordering: .relaxed)
        }
        let channel = EmbeddedChannel(loop: loop)
        var batch: [BusEvent] = [.message(Inbound(MessageBusTests.ping(1)))]
        if sink.deliver(&batch, on: channel) == .direct { sink.runDirect() }
        let expected = ["begin message", "end message", "begin tick", "end tick", "begin broken 10.0.0.1:5050", "end broken 10.0.0.1:5050"]
        #expect(seen.withLock { $0 } == expected)
        loop.run()
        #expect(seen.withLock { $0 } == expected)
        #expect(batch.isEmpty)
    }
}
