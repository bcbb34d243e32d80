import MesosCore
import ZooKeeper

/// A master's copy of the registry's znodes, each read with a watch (warm standby): a standby
/// keeps it current while another master leads, so when it is elected it re-reads only the
/// znodes that changed since, not every agent's (at 10,000 agents the full read took 5-10 s of a
/// failover, while every agent was re-registering at once).
///
/// Each entry is a znode's data as of the moment its watch was set, so a fired watch is all it
/// takes to know an entry is stale: entries may be read and replaced in any order. The copy is
/// current once a round over it finds no fired watch after a reply of the session (the C client
/// delivers a watch's event before any later reply).
struct RegistryWarmCopy: Sendable {
    /// The root or the meta; `data` nil: no such znode (an exists watch, which fires on its creation).
    struct Node: Sendable {
        var data: [UInt8]?
        var version: Int32
        var watch: Watch
    }

    /// A bucket's children; no names and an exists watch when the bucket is not there yet.
    struct Bucket: Sendable {
        var names: [String]
        var watch: Watch
    }

    struct Agent: Sendable {
        var data: [UInt8]
        var watch: Watch
    }

    var root: Node?
    var meta: Node?
    /// By bucket path.
    var buckets: [String: Bucket] = [:]
    /// By agent znode path (an entry leaves with its name from its bucket's list).
    var agents: [String: Agent] = [:]

    /// Whether an entry needs (re-)reading: never read, or changed since.
    static func isStale(_ watch: Watch?) -> Bool { watch?.hasFired ?? true }

    /// A bucket's new list: the agents it no longer names are forgotten (a standby in a cluster
    /// that removes agents would otherwise keep every one it ever read).
    mutating func listed(_ bucket: Bucket?, at path: String) {
        let kept = Set(bucket?.names ?? [])
        for name in buckets[path]?.names ?? [] where !kept.contains(name) { agents[path + "/" + name] = nil }
        buckets[path] = bucket
    }

    /// Every agent znode the buckets list, in bucket order.
    func listedPaths(_ layout: RegistryLayout) -> [String] {
        layout.bucketPaths.flatMap { bucket in (buckets[bucket]?.names ?? []).map { bucket + "/" + $0 } }
    }

    /// The listed agent znodes never read or changed since (buckets read first).
    func staleAgents(_ layout: RegistryLayout) -> [String] {
        listedPaths(layout).filter { Self.isStale(agents[$0]?.watch) }
    }

    /// Every listed agent's data, in bucket order.
    func listedAgents(_ layout: RegistryLayout) -> [(path: String, data: [UInt8])] {
        listedPaths(layout).compactMap { path in agents[path].map { (path, $0.data) } }
    }
}
