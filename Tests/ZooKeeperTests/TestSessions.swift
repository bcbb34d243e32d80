import Logging
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

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
