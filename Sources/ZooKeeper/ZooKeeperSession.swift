import CZooKeeper
import Dispatch
import Logging
import MesosCore
import MesosWire
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What happened to the session, in order.
public enum SessionEvent: Sendable, Hashable {
    /// Connected (or reconnected). The same `sessionID` as before means the session survived the
    /// disconnection: its ephemeral nodes and watches are intact. A new one means a new session.
    case connected(sessionID: Int64, negotiatedTimeout: Duration)
    /// The connection was lost; the client is reconnecting. Operations fail with CONNECTIONLOSS meanwhile.
    case disconnected
    /// The session is gone (`local`: we were disconnected for the whole negotiated session timeout;
    /// otherwise the server said so). Its ephemeral nodes are gone or about to be, pending watches
    /// resolved with `.sessionLost`. A new session is being established: expect `.connected`.
    case expired(local: Bool)
    /// The server rejected the credentials. Terminal: the session does not reconnect.
    case authFailed
}

/// A ZooKeeper session over the C client's asynchronous API (libzookeeper_mt).
///
/// - `start()` creates the C handle; progress comes through `events`.
/// - Operations are `async` and never block a thread: each issues one `zoo_a*` request whose C
///   completion resumes the caller. They fail fast with CONNECTIONLOSS while not connected, and
///   with OPERATIONTIMEOUT after `operationTimeout`, so nothing hangs.
/// - `watchData`/`watchExists`/`watchChildren` return a one-shot `Watch`.
/// - Expiry is also detected locally: disconnected for the negotiated session timeout means
///   expired (the C client would only learn it on reconnecting). On any expiry the handle is closed and
///   replaced by a new one, i.e. a new session.
/// - With credentials, the digest identity is added to every handle before it connects and created
///   nodes default to creator-all + world-read; without, to world-all.
/// - `close()` ends the session (its ephemeral nodes vanish at once) and finishes `events`.
///
/// Handle lifecycle (creation, expiry, close) runs on one serial queue: never on the C client's
/// threads, where `zookeeper_close` must not be called, and never on the cooperative pool.
public final class ZooKeeperSession: Sendable {
    public static let anyVersion: Int32 = -1

    public let servers: String
    public let sessionTimeout: Duration
    public let operationTimeout: Duration
    public let events: AsyncStream<SessionEvent>

    private let credentials: Credentials?
    private let defaultACL: [ACLEntry]
    private let logger: Logger
    private let eventSink: AsyncStream<SessionEvent>.Continuation
    private let lifecycle = DispatchQueue(label: "zookeeper.session.lifecycle")
    private let state: Mutex<State>
    private let clock = ContinuousClock()
    private let origin = ContinuousClock.now

    private struct State {
        var connection: Connection?
        var isConnected = false
        /// When a disconnect counts as an expiry (a reconnect meanwhile makes a stale timer do nothing).
        var expiry: LocalSessionExpiry
        /// Watches set on the current handle, kept alive until they fire or the handle is closed.
        var watches: [ObjectIdentifier: WatchRegistration] = [:]
        var isStarted = false

        init(requestedTimeout: Duration) { expiry = LocalSessionExpiry(requestedTimeout: requestedTimeout) }
        /// Why the session ended for good (`closing`, `authFailed`); nil while it is usable.
        var endedWith: ZooKeeperError.Code?

        mutating func takeWatches() -> [WatchRegistration] {
            defer { watches.removeAll() }
            return Array(watches.values)
        }
    }

    /// A C handle and the context its session watcher receives.
    /// `@unchecked Sendable`: the C client is thread-safe; the handle is only closed on the lifecycle
    /// queue after it has been taken out of `state`, so no request can be issued on it afterwards.
    private struct Connection: @unchecked Sendable {
        let handle: OpaquePointer
        let context: HandleContext
    }

    /// - Parameters:
    ///   - servers: the connect string, `host1:port1,host2:port2`.
    ///   - sessionTimeout: requested; the server may negotiate it into its min/max bounds.
    ///   - operationTimeout: per operation; defaults to `sessionTimeout`.
    public init(
        servers: String, sessionTimeout: Duration, credentials: Credentials? = nil,
        operationTimeout: Duration? = nil, logger: Logger
    ) {
        self.servers = servers
        self.sessionTimeout = sessionTimeout
        self.state = Mutex(State(requestedTimeout: sessionTimeout))
        self.operationTimeout = operationTimeout ?? sessionTimeout
        self.credentials = credentials
        self.defaultACL = credentials == nil ? [.worldAll] : [.creatorAll, .worldRead]
        var logger = logger
        logger[metadataKey: "zookeeper"] = "\(servers)"
        self.logger = logger
        (events, eventSink) = AsyncStream.makeStream(of: SessionEvent.self)
    }

    /// A session for the servers and credentials of `url` (its path is the caller's business).
    public convenience init(
        url: ZooKeeperURL, sessionTimeout: Duration, operationTimeout: Duration? = nil, logger: Logger
    ) {
        self.init(
            servers: url.servers, sessionTimeout: sessionTimeout, credentials: url.credentials,
            operationTimeout: operationTimeout, logger: logger)
    }

    deinit {
        let leftover = state.withLock { state -> (Connection, [WatchRegistration])? in
            guard let connection = state.connection else { return nil }
            return (connection, state.takeWatches())
        }
        eventSink.finish()
        if let (connection, watches) = leftover {
            lifecycle.async { Self.close(connection, resolving: watches) }
        }
    }

    /// Creates the C handle; the first `.connected` event follows once a server accepts the session.
    /// Calling it again has no effect.
    public func start() {
        lifecycle.async { [self] in
            let first = state.withLock { state in
                defer { state.isStarted = true }
                return !state.isStarted
            }
            if first { openHandle() }
        }
    }

    /// Ends the session: closes the handle (the server drops its ephemeral nodes at once), resolves
    /// pending watches with `.sessionLost`, finishes `events`. Idempotent.
    public func close() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            lifecycle.async { [self] in
                end(with: .closing, event: nil)
                done.resume()
            }
        }
    }

    public var isConnected: Bool { state.withLock { $0.isConnected } }

    /// Time since this session object was made (the local expiry's clock).
    private var elapsed: Duration { clock.now - origin }

    // MARK: Operations

    /// Creates a node; returns its path (with the sequence suffix for sequential modes).
    /// `acl: nil` uses the session default (see the type's documentation).
    @discardableResult
    public func create(
        _ path: String, data: [UInt8] = [], mode: CreateMode = .persistent, acl: [ACLEntry]? = nil
    ) async throws -> String {
        let cACL = CACLVector(acl ?? defaultACL)
        return try await perform(PendingOperation<String>(path: path)) { handle, token, _ in
            data.withUnsafeBytes { bytes in
                zoo_acreate(
                    handle, path, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count),
                    cACL.vector, mode.rawValue, stringCompleted, token)
            }
        }
    }

    /// Creates `path` and its missing ancestors as empty persistent nodes, like `mkdir -p`.
    /// Nodes that already exist are fine.
    public func createPath(_ path: String) async throws {
        guard path.hasPrefix("/") else { throw ZooKeeperError(code: .badArguments, path: path) }
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/\(component)"
            do {
                try await create(prefix)
            } catch let error as ZooKeeperError where error.code == .nodeExists {
                continue
            }
        }
    }

    public func get(_ path: String) async throws -> (data: [UInt8], stat: Stat) {
        try await perform(PendingOperation(path: path)) { handle, token, _ in
            zoo_aget(handle, path, 0, dataCompleted, token)
        }
    }

    /// `get`, plus a watch that fires on the node's next data change or deletion.
    public func watchData(_ path: String) async throws -> (data: [UInt8], stat: Stat, watch: Watch) {
        let watch = WatchRegistration(path: path, kind: .data, session: self)
        let operation = PendingOperation<(data: [UInt8], stat: Stat)>(path: path, watch: watch)
        let (data, stat) = try await perform(operation) { handle, token, watcherContext in
            zoo_awget(handle, path, watchTriggered, watcherContext, dataCompleted, token)
        }
        return (data, stat, Watch(registration: watch))
    }

    /// Sets the data if the node is at `version` (or any version); returns the new stat.
    @discardableResult
    public func set(_ path: String, data: [UInt8], version: Int32 = anyVersion) async throws -> Stat {
        try await perform(PendingOperation(path: path)) { handle, token, _ in
            data.withUnsafeBytes { bytes in
                zoo_aset(
                    handle, path, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count), version,
                    statCompleted, token)
            }
        }
    }

    /// The node's stat, or nil if it does not exist.
    public func exists(_ path: String) async throws -> Stat? {
        do {
            return try await perform(PendingOperation<Stat>(path: path)) { handle, token, _ in
                zoo_aexists(handle, path, 0, statCompleted, token)
            }
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    /// `exists`, plus a watch that fires when the node is created, changed or deleted.
    public func watchExists(_ path: String) async throws -> (stat: Stat?, watch: Watch) {
        let watch = WatchRegistration(path: path, kind: .exists, session: self)
        let operation = PendingOperation<Stat>(path: path, watch: watch)
        do {
            let stat = try await perform(operation) { handle, token, watcherContext in
                zoo_awexists(handle, path, watchTriggered, watcherContext, statCompleted, token)
            }
            return (stat, Watch(registration: watch))
        } catch let error as ZooKeeperError where error.code == .noNode {
            return (nil, Watch(registration: watch))
        }
    }

    /// The names of the node's children, in the server's (unspecified) order.
    public func children(_ path: String) async throws -> [String] {
        try await perform(PendingOperation(path: path)) { handle, token, _ in
            zoo_aget_children(handle, path, 0, childrenCompleted, token)
        }
    }

    /// `children`, plus a watch that fires when a child is added or removed or the node is deleted.
    public func watchChildren(_ path: String) async throws -> (children: [String], watch: Watch) {
        let watch = WatchRegistration(path: path, kind: .children, session: self)
        let children = try await perform(PendingOperation<[String]>(path: path, watch: watch)) {
            handle, token, watcherContext in
            zoo_awget_children(handle, path, watchTriggered, watcherContext, childrenCompleted, token)
        }
        return (children, Watch(registration: watch))
    }

    public func delete(_ path: String, version: Int32 = anyVersion) async throws {
        try await perform(PendingOperation<Void>(path: path)) { handle, token, _ in
            zoo_adelete(handle, path, version, voidCompleted, token)
        }
    }

    /// Applies all operations atomically. If one fails, none is applied and the thrown
    /// `ZooKeeperError` names that operation (`failedOperation`, `path`) and its error code.
    @discardableResult
    public func multi(_ operations: [MultiOperation]) async throws -> [MultiResult] {
        let buffers = MultiBuffers(operations, defaultACL: defaultACL)
        let operation = PendingOperation<[MultiResult]>(path: operations.first?.path ?? "", buffers: buffers)
        return try await perform(operation) { handle, token, _ in
            zoo_amulti(handle, Int32(operations.count), buffers.ops, buffers.results, multiCompleted, token)
        }
    }

    /// Waits until the server this session is connected to has caught up with the leader for `path`,
    /// so a following read sees every write committed before.
    public func sync(_ path: String) async throws {
        _ = try await perform(PendingOperation<String>(path: path)) { handle, token, _ in
            zoo_async(handle, path, stringCompleted, token)
        }
    }

    /// Issues one C request. `submit` gets the handle, the completion token and the watcher context
    /// (nil without a watch) and returns the C call's result code.
    private func perform<Value>(
        _ operation: PendingOperation<Value>,
        submit: (OpaquePointer, UnsafeRawPointer, UnsafeMutableRawPointer?) -> Int32
    ) async throws -> Value {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard operation.install(continuation) else { return }
                let rc = state.withLock { state -> Int32 in
                    if let ended = state.endedWith { return ended.rawValue }
                    guard let connection = state.connection, state.isConnected else {
                        return ZCONNECTIONLOSS.rawValue
                    }
                    // Under the lock, so the handle cannot be closed while the request is issued.
                    let token = operation.retainedToken()
                    if let watch = operation.watch { state.watches[ObjectIdentifier(watch)] = watch }
                    let rc = submit(connection.handle, token, operation.watch?.opaque)
                    if rc != ZOK.rawValue {
                        PendingOperation<Value>.releaseToken(token)
                        if let watch = operation.watch { state.watches[ObjectIdentifier(watch)] = nil }
                    }
                    return rc
                }
                if rc == ZOK.rawValue {
                    DispatchQueue.global().asyncAfter(deadline: .now() + operationTimeout.dispatchInterval) {
                        [weak operation] in
                        operation?.fail(.operationTimeout)
                    }
                } else {
                    operation.fail(ZooKeeperError.Code(rawValue: rc))
                }
            }
        } onCancel: {
            operation.finish(.failure(CancellationError()))
        }
    }

    /// Drops a watch the C client no longer holds (it fired, or its request did not set it).
    func forget(_ watch: WatchRegistration) {
        state.withLock { $0.watches[ObjectIdentifier(watch)] = nil }
    }

    // MARK: Handle lifecycle (on the lifecycle queue)

    private func openHandle() {
        guard state.withLock({ $0.endedWith == nil }) else { return }
        _ = clientLibraryConfigured
        let context = HandleContext(session: self)
        let timeout = Int32(clamping: sessionTimeout.milliseconds)
        guard
            let handle = zookeeper_init2(
                servers, sessionEventReceived, timeout, nil, context.opaque, 0, clientLibraryLogged)
        else {
            logger.error("zookeeper_init failed: \(String(cString: strerror(errno))); retrying in 1 s")
            lifecycle.asyncAfter(deadline: .now() + 1) { [weak self] in self?.openHandle() }
            return
        }
        // Before the connection is established, so no request can go out unauthenticated;
        // the C client re-sends the identity on every reconnect of this handle.
        if let credentials {
            let digest = credentials.digest
            let rc = zoo_add_auth(handle, "digest", digest, Int32(digest.utf8.count), nil, nil)
            if rc != ZOK.rawValue { logger.error("zoo_add_auth failed: \(ZooKeeperError.Code(rawValue: rc))") }
        }
        state.withLock { $0.connection = Connection(handle: handle, context: context) }
    }

    /// From the session watcher, on a C client thread: hop to the lifecycle queue.
    fileprivate func sessionStateChanged(to zooKeeperState: Int32, on context: HandleContext) {
        lifecycle.async { [self] in
            switch zooKeeperState {
            case ZOO_CONNECTED_STATE: connected(context)
            case ZOO_EXPIRED_SESSION_STATE: expire(context, local: false)
            case ZOO_AUTH_FAILED_STATE: end(with: .authFailed, event: .authFailed)
            default: disconnected(context)
            }
        }
    }

    private func connected(_ context: HandleContext) {
        let session = state.withLock { state -> (id: Int64, timeout: Duration)? in
            guard let connection = state.connection, connection.context === context else { return nil }
            state.isConnected = true
            state.expiry.connected(negotiatedTimeout: .milliseconds(zoo_recv_timeout(connection.handle)))
            return (zoo_client_id(connection.handle).pointee.client_id, state.expiry.timeout)
        }
        guard let session else { return }
        let id = "0x" + String(UInt64(bitPattern: session.id), radix: 16)
        logger.info("ZooKeeper session \(id) connected, timeout \(session.timeout)", metadata: [
            "event": "zk_session_connected", "session": "\(id)", "timeout_ms": "\(session.timeout.milliseconds)",
        ])
        eventSink.yield(.connected(sessionID: session.id, negotiatedTimeout: session.timeout))
    }

    private func disconnected(_ context: HandleContext) {
        let now = elapsed
        let deadline = state.withLock { state -> LocalSessionExpiry.Deadline? in
            guard state.connection?.context === context, state.isConnected else { return nil }
            state.isConnected = false
            return state.expiry.disconnected(at: now)
        }
        guard let deadline else { return }
        let wait = deadline.at - now
        logger.warning("ZooKeeper session disconnected; expiring it locally in \(wait) unless reconnected", metadata: [
            "event": "zk_session_disconnected", "expires_in_ms": "\(wait.milliseconds)",
        ])
        eventSink.yield(.disconnected)
        lifecycle.asyncAfter(deadline: .now() + wait.dispatchInterval) { [weak self] in
            guard let self else { return }
            let now = elapsed
            let due = state.withLock { state in
                state.connection?.context === context && state.expiry.isDue(deadline, now: now)
            }
            if due { expire(context, local: true) }
        }
    }

    private func expire(_ context: HandleContext, local: Bool) {
        let expired = state.withLock { state -> (Connection, [WatchRegistration])? in
            guard let connection = state.connection, connection.context === context else { return nil }
            state.connection = nil
            state.isConnected = false
            state.expiry.expired()
            return (connection, state.takeWatches())
        }
        guard let (connection, watches) = expired else { return }
        logger.error("ZooKeeper session expired (\(local ? "locally, disconnected for the session timeout" : "reported by the server")); starting a new one", metadata: [
            "event": "zk_session_expired", "local": "\(local)",
        ])
        eventSink.yield(.expired(local: local))
        Self.close(connection, resolving: watches)
        openHandle()
    }

    private func end(with reason: ZooKeeperError.Code, event: SessionEvent?) {
        let ended = state.withLock { state -> (Connection?, [WatchRegistration])? in
            guard state.endedWith == nil else { return nil }
            state.endedWith = reason
            state.isConnected = false
            defer { state.connection = nil }
            return (state.connection, state.takeWatches())
        }
        guard let (connection, watches) = ended else { return }
        if let event {
            logger.error("ZooKeeper session ended: \(reason)")
            eventSink.yield(event)
        }
        if let connection {
            Self.close(connection, resolving: watches)
        } else {
            for watch in watches { watch.resolve(.sessionLost) }
        }
        eventSink.finish()
    }

    /// Resolves the handle's watches, then closes it. Once `zookeeper_close` returns the C client
    /// makes no more callbacks, so the contexts it was given may go.
    private static func close(_ connection: Connection, resolving watches: [WatchRegistration]) {
        for watch in watches { watch.resolve(.sessionLost) }
        zookeeper_close(connection.handle)
        withExtendedLifetime((connection.context, watches)) {}
    }
}

/// The session watcher's context: one per C handle, so events of a replaced handle are recognized and ignored.
private final class HandleContext: Sendable {
    weak let session: ZooKeeperSession?

    init(session: ZooKeeperSession) { self.session = session }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
}

/// Session watcher for `zookeeper_init2`. A global function: see SPIKE-NOTES (isolation trap).
private func sessionEventReceived(
    _ handle: OpaquePointer?, _ type: Int32, _ state: Int32, _ path: UnsafePointer<CChar>?,
    _ context: UnsafeMutableRawPointer?
) {
    guard type == ZOO_SESSION_EVENT, let context else { return }
    let handleContext = Unmanaged<HandleContext>.fromOpaque(context).takeUnretainedValue()
    handleContext.session?.sessionStateChanged(to: state, on: handleContext)
}

extension Duration {
    var dispatchInterval: DispatchTimeInterval { .milliseconds(Int(clamping: max(0, milliseconds))) }
}
