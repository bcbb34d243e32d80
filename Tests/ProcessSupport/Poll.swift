/// Waiting for conditions in tests without sleeping for fixed times.
public enum Poll {
    public struct TimedOut: Error, CustomStringConvertible {
        public let what: String
        public let timeout: Duration
        /// What the condition last threw, if it threw.
        public let lastError: (any Error)?

        public var description: String {
            "timed out after \(timeout) waiting for \(what)" + (lastError.map { " (last error: \($0))" } ?? "")
        }
    }

    /// Evaluates `condition` every `interval` until it returns true; throws `TimedOut` after `timeout`.
    /// A throwing evaluation counts as "not yet" (handy for operations that fail while a cluster recovers).
    public static func until(
        _ what: String = "condition", timeout: Duration = .seconds(10), every interval: Duration = .milliseconds(20),
        isolation: isolated (any Actor)? = #isolation,
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        var lastError: (any Error)?
        while true {
            do {
                if try await condition() { return }
                lastError = nil
            } catch {
                lastError = error
            }
            guard ContinuousClock.now < deadline else {
                throw TimedOut(what: what, timeout: timeout, lastError: lastError)
            }
            try await Task.sleep(for: interval)
        }
    }

    /// `until` as a question: whether `condition` held within `timeout` (for callers with an error
    /// of their own, or none).
    @discardableResult
    public static func holds(
        within timeout: Duration, every interval: Duration = .milliseconds(20),
        isolation: isolated (any Actor)? = #isolation,
        _ condition: () async throws -> Bool
    ) async -> Bool {
        do {
            try await until(timeout: timeout, every: interval, isolation: isolation, condition)
            return true
        } catch {
            return false
        }
    }
}
