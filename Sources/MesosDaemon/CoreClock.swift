/// Monotonic time for the pure cores: a Duration since the process started its clock.
public struct CoreClock: Sendable {
    private let origin = ContinuousClock.now
    public init() {}
    public var now: Duration { ContinuousClock.now - origin }
}
