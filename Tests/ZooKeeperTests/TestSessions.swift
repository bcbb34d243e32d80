import Logging
import MesosWire
import Synchronization
import TestSupport
import ZooKeeper

/// Sessions and the C client log nothing in tests: connection-refused errors are expected here.
let quietLogger = Logger(label: "zookeeper-tests") { _ in SwiftLogNoOpLogHandler() }

/// A started session whose first `.connected` event has arrived.
struct ConnectedSession {
    let session: ZooKeeperSession
    let events: EventRecorder<SessionEvent>
    let sessionID: Int64
    let negotiatedTimeout: Duration
}

func connect(
    to servers: String, sessionTimeout: Duration = .seconds(10), operationTimeout: Duration? = nil,
    credentials: Credentials? = nil
) async throws -> ConnectedSession {
    ZooKeeperClientLibrary.routeLog(to: quietLogger)
    let session = ZooKeeperSession(
        servers: servers, sessionTimeout: sessionTimeout, credentials: credentials,
        operationTimeout: operationTimeout, logger: quietLogger)
    let events = EventRecorder(session.events)
    session.start()
    let first = try await events.next().event
    guard case .connected(let sessionID, let negotiatedTimeout) = first else {
        throw UnexpectedEvent(event: first)
    }
    return ConnectedSession(
        session: session, events: events, sessionID: sessionID, negotiatedTimeout: negotiatedTimeout)
}

struct UnexpectedEvent: Error {
    let event: SessionEvent
}

/// Runs `operation` and waits up to `timeout` for it to end (success or error): the bound of a wait, so
/// a test of "fails fast" or "times out" hangs for no longer than that. Throws `Poll.TimedOut` if it has not ended.
func finishes<T: Sendable>(
    within timeout: Duration, _ what: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> Result<T, any Error> {
    let outcome = Mutex<Result<T, any Error>?>(nil)
    let task = Task {
        let result: Result<T, any Error>
        do { result = .success(try await operation()) } catch { result = .failure(error) }
        outcome.withLock { $0 = result }
    }
    do {
        try await Poll.until("\(what) ends", timeout: timeout, every: .milliseconds(5)) { outcome.withLock { $0 != nil } }
    } catch {
        task.cancel()
        throw error
    }
    return outcome.withLock { $0! }
}

extension Duration {
    /// MesosWire's `milliseconds`, under the short name the session tests report with.
    var ms: Int64 { milliseconds }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
