/// Monotonic time for the pure cores: a Duration since the process started its clock.
public struct CoreClock: Sendable {
    private let origin = ContinuousClock.now
    public init() {}
    public var now: Duration { ContinuousClock.now - origin }
}

extension CoreClock {
    /// Calls `tick` with the clock's time every `interval` (the cores' timers run on these ticks)
    /// until the returned task is cancelled.
    @discardableResult
    public func ticks(every interval: Duration = .milliseconds(50), _ tick: @escaping @Sendable (Duration) async -> Void) -> Task<Void, Never> {
        Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                await tick(now)
            }
        }
    }
}
