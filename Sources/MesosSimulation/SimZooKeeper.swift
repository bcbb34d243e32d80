import MesosCore

typealias SessionID = Int64

/// What a simulated ZooKeeper call answers.
enum ZKError: Error, Equatable, CustomStringConvertible {
    case connectionLoss
    case noNode(String)
    case nodeExists(String)
    case badVersion(String)
    case notEmpty(String)

    var description: String {
        switch self {
        case .connectionLoss: "CONNECTIONLOSS"
        case .noNode(let p): "NONODE \(p)"
        case .nodeExists(let p): "NODEEXISTS \(p)"
        case .badVersion(let p): "BADVERSION \(p)"
        case .notEmpty(let p): "NOTEMPTY \(p)"
        }
    }
}

enum ZKWatchEvent: Equatable {
    case created, deleted, changed, children
    /// The session went: the watch will never fire.
    case sessionLost
}

enum ZKMultiOp {
    case check(String)
    /// `version` nil: any version.
    case setData(String, [UInt8], version: Int32?)
    case create(String, [UInt8])
    case delete(String)
}

/// The in-memory ZooKeeper model: a tree of znodes (persistent, ephemeral, sequential), sessions
/// with a negotiated timeout and server-side expiry, one-shot watches, `multi` with `check`, and
/// an "unavailable" switch (no quorum: nothing is served and no session expires meanwhile).
final class SimZooKeeper {
    struct Node {
        var data: [UInt8]
        var version: Int32 = 0
        var owner: SessionID?
        var nextSequence: UInt64 = 0
        var children: Set<String> = []
    }

    struct Session {
        var timeout: Duration
        var lastHeard: Duration
        let client: String
    }

    private unowned let world: World
    private(set) var nodes: [String: Node] = ["/": Node(data: [])] { didSet { changes &+= 1 } }
    /// Bumped by every change of the tree (what caches of its content key on).
    private(set) var changes = 0
    private(set) var sessions: [SessionID: Session] = [:]
    private var nextSession: SessionID = 0x100
    private var dataWatches: [String: [(SessionID, (ZKWatchEvent) -> Void)]] = [:]
    private var childWatches: [String: [(SessionID, (ZKWatchEvent) -> Void)]] = [:]
    var available = true {
        didSet {
            // A quorum coming back renews every session (servers restart their expiry clocks).
            if available && !oldValue { for id in sessions.keys { sessions[id]?.lastHeard = world.now } }
        }
    }
    /// Called when a `multi` with a `check` commits: (fence path, the group's lowest member path).
    var fencedWriteCommitted: ((String, String?) -> Void)?

    init(world: World) { self.world = world }

    // MARK: Sessions

    func openSession(client: String, timeout: Duration) -> SessionID {
        nextSession += 1
        sessions[nextSession] = Session(timeout: timeout, lastHeard: world.now, client: client)
        return nextSession
    }

    func heartbeat(_ id: SessionID) -> Bool {
        guard sessions[id] != nil else { return false }
        sessions[id]?.lastHeard = world.now
        return true
    }

    func isAlive(_ id: SessionID) -> Bool { sessions[id] != nil }

    /// Expires sessions not heard from for their timeout (only while the ensemble serves).
    func expireStale() {
        guard available else { return }
        for (id, s) in sessions.sorted(by: { $0.key < $1.key }) where world.now - s.lastHeard > s.timeout {
            expire(id)
        }
    }

    /// Ends a session: its ephemeral znodes go (watches fire), its own watches resolve as lost.
    func expire(_ id: SessionID) {
        guard let session = sessions.removeValue(forKey: id) else { return }
        world.trace("zk: session 0x\(String(id, radix: 16)) of \(session.client) expired")
        for (path, node) in nodes.sorted(by: { $0.key < $1.key }) where node.owner == id { delete(path) }
        for (path, list) in dataWatches.sorted(by: { $0.key < $1.key }) {
            for (owner, callback) in list where owner == id { callback(.sessionLost) }
            dataWatches[path] = list.filter { $0.0 != id }
        }
        for (path, list) in childWatches.sorted(by: { $0.key < $1.key }) {
            for (owner, callback) in list where owner == id { callback(.sessionLost) }
            childWatches[path] = list.filter { $0.0 != id }
        }
    }

    // MARK: Operations (run at the server; the client adds the latency and the losses)

    func create(_ path: String, data: [UInt8], ephemeral: Bool, sequential: Bool, session: SessionID) -> Result<String, ZKError> {
        let parent = Self.parent(of: path)
        guard nodes[parent] != nil else { return .failure(.noNode(parent)) }
        var name = path
        if sequential {
            let seq = nodes[parent]!.nextSequence
            nodes[parent]!.nextSequence += 1
            name = path + Self.tenDigits(seq)
        }
        guard nodes[name] == nil else { return .failure(.nodeExists(name)) }
        nodes[name] = Node(data: data, owner: ephemeral ? session : nil)
        nodes[parent]!.children.insert(Self.leaf(of: name))
        if !sequential { nodes[parent]!.nextSequence += 1 }  // ZooKeeper's cversion counts every child change
        fire(&dataWatches, name, .created)
        fire(&childWatches, parent, .children)
        return .success(name)
    }

    func delete(_ path: String) {
        guard nodes[path] != nil, nodes[path]!.children.isEmpty else { return }
        nodes[path] = nil
        let parent = Self.parent(of: path)
        nodes[parent]?.children.remove(Self.leaf(of: path))
        nodes[parent]?.nextSequence += 1
        fire(&dataWatches, path, .deleted)
        fire(&childWatches, parent, .children)
        fire(&childWatches, path, .deleted)
    }

    func deleteChecked(_ path: String) -> Result<Void, ZKError> {
        guard nodes[path] != nil else { return .failure(.noNode(path)) }
        delete(path)
        return .success(())
    }

    func getData(_ path: String, watch: (SessionID, (ZKWatchEvent) -> Void)?) -> Result<([UInt8], Int32), ZKError> {
        guard let node = nodes[path] else { return .failure(.noNode(path)) }
        if let watch { dataWatches[path, default: []].append(watch) }
        return .success((node.data, node.version))
    }

    func exists(_ path: String, watch: (SessionID, (ZKWatchEvent) -> Void)?) -> Bool {
        if let watch { dataWatches[path, default: []].append(watch) }
        return nodes[path] != nil
    }

    func children(_ path: String, watch: (SessionID, (ZKWatchEvent) -> Void)?) -> Result<[String], ZKError> {
        guard let node = nodes[path] else { return .failure(.noNode(path)) }
        if let watch { childWatches[path, default: []].append(watch) }
        return .success(node.children.sorted())
    }

    /// All or nothing; checked in order, as ZooKeeper does (an operation sees the ones before it).
    /// Returns each operation's resulting version (0 for all but `setData`).
    func multi(_ ops: [ZKMultiOp]) -> Result<[Int32], ZKError> {
        var present: [String: Bool] = [:]
        var versions: [String: Int32] = [:]
        var childCount: [String: Int] = [:]
        func exists(_ p: String) -> Bool { present[p] ?? (nodes[p] != nil) }
        func children(_ p: String) -> Int { childCount[p] ?? nodes[p]?.children.count ?? 0 }
        for op in ops {
            switch op {
            case .check(let p): guard exists(p) else { return .failure(.noNode(p)) }
            case .setData(let p, _, let v):
                guard exists(p) else { return .failure(.noNode(p)) }
                let current = versions[p] ?? nodes[p]?.version ?? 0
                if let v, current != v { return .failure(.badVersion(p)) }
                versions[p] = current + 1
            case .create(let p, _):
                guard !exists(p) else { return .failure(.nodeExists(p)) }
                let parent = Self.parent(of: p)
                guard exists(parent) else { return .failure(.noNode(parent)) }
                present[p] = true
                versions[p] = 0
                childCount[p] = 0
                childCount[parent] = children(parent) + 1
            case .delete(let p):
                guard exists(p) else { return .failure(.noNode(p)) }
                guard children(p) == 0 else { return .failure(.notEmpty(p)) }
                present[p] = false
                childCount[Self.parent(of: p)] = children(Self.parent(of: p)) - 1
            }
        }
        var results: [Int32] = []
        for op in ops {
            switch op {
            case .check(let fence):
                let group = Self.parent(of: fence)
                let lowest = LeaderGroup.members(Array(nodes[group]?.children ?? [])).first.map { group + "/" + $0.name }
                fencedWriteCommitted?(fence, lowest)
                results.append(0)
            case .setData(let p, let d, _):
                nodes[p]!.data = d
                nodes[p]!.version += 1
                results.append(nodes[p]!.version)
                fire(&dataWatches, p, .changed)
            case .create(let p, let d):
                _ = create(p, data: d, ephemeral: false, sequential: false, session: 0)
                results.append(0)
            case .delete(let p):
                delete(p)
                results.append(0)
            }
        }
        return .success(results)
    }

    /// Ensures `path` and its ancestors exist (persistent).
    func createPath(_ path: String) {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/\(component)"
            if nodes[prefix] == nil { _ = create(prefix, data: [], ephemeral: false, sequential: false, session: 0) }
        }
    }

    private func fire(_ table: inout [String: [(SessionID, (ZKWatchEvent) -> Void)]], _ path: String, _ event: ZKWatchEvent) {
        guard let list = table.removeValue(forKey: path) else { return }
        for (_, callback) in list { callback(event) }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    static func leaf(of path: String) -> String { String(path.split(separator: "/").last ?? "") }

    static func tenDigits(_ n: UInt64) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 10 - s.count)) + s
    }
}
