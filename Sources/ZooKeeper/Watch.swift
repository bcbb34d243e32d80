import CZooKeeper
import Synchronization

/// What ended a one-shot watch.
public enum WatchEvent: Sendable, Hashable {
    case created
    case deleted
    case dataChanged
    case childrenChanged
    /// The server removed the watch.
    case notWatching
    /// The session expired or was closed: the watch will never fire, re-read and re-watch on the new session.
    case sessionLost

    init(zooKeeperEventType type: Int32) {
        switch type {
        case ZOO_CREATED_EVENT: self = .created
        case ZOO_DELETED_EVENT: self = .deleted
        case ZOO_CHANGED_EVENT: self = .dataChanged
        case ZOO_CHILD_EVENT: self = .childrenChanged
        default: self = .notWatching
        }
    }
}

/// A one-shot watch set by `watchData`, `watchExists` or `watchChildren`.
/// It resolves exactly once; `event()` may be awaited any number of times and returns that one event.
public struct Watch: Sendable {
    let registration: WatchRegistration

    public var path: String { registration.path }

    /// Whether the event has arrived. The C client records it on its completion thread before it
    /// delivers any later reply of the session, so after a reply this tells whether the node
    /// changed before the server answered.
    public var hasFired: Bool { registration.hasFired }

    /// Waits for the event; throws only `CancellationError` when the waiting task is cancelled.
    public func event() async throws -> WatchEvent {
        try await registration.event()
    }
}

/// The watcher context handed to the C client. The session keeps it registered (alive) until the
/// C client has delivered its event or the handle it was set on has been closed.
final class WatchRegistration: Sendable {
    enum Kind: Sendable { case data, exists, children }

    let path: String
    let kind: Kind
    weak let session: ZooKeeperSession?
    private let outcome = Mutex(Outcome())

    private struct Outcome {
        var event: WatchEvent?
        var waiters: [Int: CheckedContinuation<WatchEvent, any Error>] = [:]
        var nextWaiter = 0
    }

    init(path: String, kind: Kind, session: ZooKeeperSession) {
        self.path = path
        self.kind = kind
        self.session = session
    }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// Whether the C client activated the watch for a request that completed with `rc`
    /// (its result checkers: exists watches are set on ZOK and ZNONODE, the others on ZOK only).
    func isSet(afterCompletionWith rc: Int32) -> Bool {
        rc == ZOK.rawValue || (kind == .exists && rc == ZNONODE.rawValue)
    }

    var hasFired: Bool { outcome.withLock { $0.event != nil } }

    func resolve(_ event: WatchEvent) {
        let waiters = outcome.withLock { outcome -> [CheckedContinuation<WatchEvent, any Error>] in
            guard outcome.event == nil else { return [] }
            outcome.event = event
            defer { outcome.waiters.removeAll() }
            return Array(outcome.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: event) }
    }

    func event() async throws -> WatchEvent {
        let waiter = outcome.withLock { outcome -> Int in
            outcome.nextWaiter += 1
            return outcome.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let ready = outcome.withLock { outcome -> Result<WatchEvent, any Error>? in
                    if let event = outcome.event { return .success(event) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    outcome.waiters[waiter] = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            outcome.withLock { $0.waiters.removeValue(forKey: waiter) }?.resume(throwing: CancellationError())
        }
    }
}

/// Watcher for `zoo_aw*` calls; `context` is the `WatchRegistration`.
/// Session events are delivered to every watcher too; the session itself handles those.
func watchTriggered(
    _ handle: OpaquePointer?, _ type: Int32, _ state: Int32, _ path: UnsafePointer<CChar>?,
    _ context: UnsafeMutableRawPointer?
) {
    guard type != ZOO_SESSION_EVENT, let context else { return }
    let registration = Unmanaged<WatchRegistration>.fromOpaque(context).takeUnretainedValue()
    registration.resolve(WatchEvent(zooKeeperEventType: type))
    registration.session?.forget(registration)
}
