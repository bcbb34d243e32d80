import MesosCore

/// What a simulated process's ZooKeeper client reports (as the real `SessionEvent`).
enum SimSessionEvent: Equatable {
    case connected(SessionID)
    case disconnected
    case expired(local: Bool)
}

/// One process's ZooKeeper client: connects (a session with the negotiated timeout), heartbeats
/// every third of it while it can reach the ensemble, notices disconnection, reconnects (same
/// session if the server still has it), and expires the session locally after the timeout
/// (`LocalSessionExpiry`, the same type the real client uses). Requests and replies take a
/// latency each way; a reply lost on the way back is a CONNECTIONLOSS although the request ran.
/// As ZooKeeper's own clients, one session is FIFO: requests run in the order they were made,
/// and replies and watch notifications arrive in the order the server produced them.
final class SimZKClient {
    private unowned let world: World
    private let node: SimNode
    let timeout: Duration
    private(set) var session: SessionID?
    private(set) var connected = false
    private var expiry: LocalSessionExpiry
    private var generation = 0
    /// Watch notifications that could not reach the process (cut off): delivered when it
    /// reconnects to the same session, dropped with the session.
    private var undelivered: [() -> Void] = []
    /// The latest virtual time a request of this session runs at, and the latest a reply or a
    /// watch notification reaches the process: random latencies never reorder them.
    private var lastRunAt: Duration = .zero
    private var lastArrivalAt: Duration = .zero
    var onEvent: (SimSessionEvent) -> Void = { _ in }

    init(world: World, node: SimNode, timeout: Duration) {
        self.world = world
        self.node = node
        self.timeout = timeout
        expiry = LocalSessionExpiry(requestedTimeout: timeout)
    }

    var zk: SimZooKeeper { world.zk }
    private var reachable: Bool { world.zkReachable(node) }

    func start() {
        generation += 1
        tryConnect(generation)
    }

    /// Closes the session at once (SIGTERM, a clean close): its ephemeral znodes vanish.
    func close() {
        generation += 1
        if let session, reachable { zk.expire(session) }
        session = nil
        connected = false
    }

    /// The process died: the client stops, the server expires the session after its timeout.
    func kill() {
        generation += 1
        connected = false
        session = nil
    }

    private func tryConnect(_ gen: Int) {
        guard gen == generation, node.isAlive else { return }
        if node.isPaused { return world.after(.milliseconds(200)) { self.tryConnect(gen) } }
        guard reachable else { return world.after(.milliseconds(200)) { self.tryConnect(gen) } }
        if let existing = session {
            if zk.heartbeat(existing) {
                becomeConnected(existing, gen)
            } else {
                // The server has forgotten it: expired (the client learns it on reconnecting).
                session = nil
                expiry.expired()
                onEvent(.expired(local: false))
                guard gen == generation else { return }
                tryConnect(gen)
            }
            return
        }
        let id = zk.openSession(client: node.name, timeout: timeout)
        session = id
        becomeConnected(id, gen)
    }

    private func becomeConnected(_ id: SessionID, _ gen: Int) {
        connected = true
        expiry.connected(negotiatedTimeout: timeout)
        onEvent(.connected(id))
        let pending = undelivered
        undelivered = []
        for deliver in pending { node.whenRunning(deliver) }
        world.after(timeout / 3) { self.heartbeat(gen) }
    }

    private func heartbeat(_ gen: Int) {
        guard gen == generation, node.isAlive, connected, let id = session else { return }
        if node.isPaused { return world.after(timeout / 3) { self.heartbeat(gen) } }  // SIGSTOP: nothing is sent
        if reachable && zk.heartbeat(id) {
            world.after(timeout / 3) { self.heartbeat(gen) }
            return
        }
        if reachable {
            // Reached the server, which no longer has the session.
            connected = false
            session = nil
            undelivered = []
            expiry.expired()
            onEvent(.expired(local: false))
            guard gen == generation else { return }
            return tryConnect(gen)
        }
        connected = false
        let deadline = expiry.disconnected(at: world.now)
        onEvent(.disconnected)
        world.at(deadline.at) { self.localExpiry(gen, deadline) }
        world.after(.milliseconds(200)) { self.reconnect(gen) }
    }

    private func reconnect(_ gen: Int) {
        guard gen == generation, node.isAlive, !connected, session != nil else { return }
        if !node.isPaused, reachable { return tryConnect(gen) }
        world.after(.milliseconds(200)) { self.reconnect(gen) }
    }

    private func localExpiry(_ gen: Int, _ deadline: LocalSessionExpiry.Deadline) {
        guard gen == generation, expiry.isDue(deadline, now: world.now) else { return }
        session = nil
        undelivered = []
        expiry.expired()
        onEvent(.expired(local: true))
        guard gen == generation else { return }
        generation += 1
        let next = generation
        world.after(.milliseconds(200)) { self.tryConnect(next) }
    }

    // MARK: Requests

    /// Runs `operation` at the server after a latency, if reachable, and delivers its result back
    /// after another; CONNECTIONLOSS when not connected, or when the request or the reply is lost.
    func request<T>(_ operation: @escaping (SimZooKeeper, SessionID) -> Result<T, ZKError>, _ reply: @escaping (Result<T, ZKError>) -> Void) {
        let gen = generation
        guard connected, let id = session else {
            world.after(.milliseconds(1)) { if gen == self.generation { reply(.failure(.connectionLoss)) } }
            return
        }
        world.after(inOrder(&lastRunAt)) {
            guard gen == self.generation else { return }
            guard self.reachable, self.zk.isAlive(id) else { return reply(.failure(.connectionLoss)) }
            let result = operation(self.zk, id)
            self.world.after(self.inOrder(&self.lastArrivalAt)) {
                guard gen == self.generation else { return }
                // The reply may be lost on the way back: the operation ran, the caller cannot know.
                guard self.reachable else { return reply(.failure(.connectionLoss)) }
                self.node.whenRunning { reply(result) }
            }
        }
    }

    /// A latency from now, but not before `last` (then `last` moves to it): FIFO over random latencies.
    private func inOrder(_ last: inout Duration) -> Duration {
        let at = max(world.now + world.zkLatency(), last)
        last = at
        return at - world.now
    }

    /// A watch callback for this session: events reach the process after a latency, and only
    /// while the session lasts (a lost session is reported through `onEvent`).
    func watcher(_ deliver: @escaping (ZKWatchEvent) -> Void) -> (SessionID, (ZKWatchEvent) -> Void)? {
        guard let id = session else { return nil }
        let gen = generation
        return (id, { event in
            guard event != .sessionLost else { return }  // the session's loss reaches the process as an event
            self.world.after(self.inOrder(&self.lastArrivalAt)) {
                guard gen == self.generation, self.session == id else { return }
                if self.connected && self.reachable {
                    self.node.whenRunning { deliver(event) }
                } else {
                    self.undelivered.append { deliver(event) }
                }
            }
        })
    }
}
