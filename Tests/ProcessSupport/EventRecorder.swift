import Synchronization

/// Records everything an `AsyncSequence` yields, with arrival times, so a test can take the events
/// one by one with a timeout (a bare `for await` would hang the test when an event never comes).
public final class EventRecorder<Event: Sendable>: Sendable {
    public struct Arrival: Sendable {
        public let event: Event
        public let time: ContinuousClock.Instant
    }

    private final class Log: Sendable {
        let state = Mutex<(arrivals: [Arrival], taken: Int, finished: Bool)>(([], 0, false))
    }

    private let log = Log()
    private let consumer: Task<Void, Never>

    public init<Events: AsyncSequence<Event, Never> & Sendable>(_ events: Events) {
        consumer = Task { [log] in
            for await event in events {
                let arrival = Arrival(event: event, time: .now)
                log.state.withLock { $0.arrivals.append(arrival) }
            }
            log.state.withLock { $0.finished = true }
        }
    }

    deinit { consumer.cancel() }

    /// The next event not taken yet, waiting up to `timeout` for it; `what` names it in the error.
    public func next(_ what: String = "next event", within timeout: Duration = .seconds(10)) async throws -> Arrival {
        var next: Arrival?
        try await Poll.until(what, timeout: timeout, every: .milliseconds(2)) {
            next = log.state.withLock { state in
                guard state.taken < state.arrivals.count else { return nil }
                defer { state.taken += 1 }
                return state.arrivals[state.taken]
            }
            return next != nil
        }
        return next!
    }

    /// Every event so far, taken or not.
    public var events: [Event] { log.state.withLock { $0.arrivals.map(\.event) } }

    /// Whether the sequence has ended.
    public var isFinished: Bool { log.state.withLock { $0.finished } }
}
