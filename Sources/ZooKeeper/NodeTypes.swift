import CZooKeeper

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A znode's metadata (ZooKeeper's `Stat`).
public struct Stat: Sendable, Hashable {
    public var czxid: Int64
    public var mzxid: Int64
    public var ctime: Int64
    public var mtime: Int64
    public var version: Int32
    public var cversion: Int32
    public var aversion: Int32
    /// The owning session for an ephemeral node, 0 otherwise.
    public var ephemeralOwner: Int64
    public var dataLength: Int32
    public var numChildren: Int32
    public var pzxid: Int64

    init(_ stat: CZooKeeper.Stat) {
        czxid = stat.czxid
        mzxid = stat.mzxid
        ctime = stat.ctime
        mtime = stat.mtime
        version = stat.version
        cversion = stat.cversion
        aversion = stat.aversion
        ephemeralOwner = stat.ephemeralOwner
        dataLength = stat.dataLength
        numChildren = stat.numChildren
        pzxid = stat.pzxid
    }
}

/// How a znode is created (the raw values are ZooKeeper's create flags).
public enum CreateMode: Int32, Sendable, Hashable {
    case persistent = 0
    case ephemeral = 1
    case persistentSequential = 2
    case ephemeralSequential = 3
}

/// One entry of a znode ACL.
public struct ACLEntry: Sendable, Hashable {
    public struct Permissions: OptionSet, Sendable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let read = Permissions(rawValue: 1 << 0)
        public static let write = Permissions(rawValue: 1 << 1)
        public static let create = Permissions(rawValue: 1 << 2)
        public static let delete = Permissions(rawValue: 1 << 3)
        public static let admin = Permissions(rawValue: 1 << 4)
        public static let all: Permissions = [.read, .write, .create, .delete, .admin]
    }

    public var permissions: Permissions
    public var scheme: String
    public var id: String

    public init(_ permissions: Permissions, scheme: String, id: String) {
        self.permissions = permissions
        self.scheme = scheme
        self.id = id
    }

    /// Everything for the identities the creating session authenticated with (`ZOO_CREATOR_ALL_ACL`).
    public static let creatorAll = ACLEntry(.all, scheme: "auth", id: "")
    /// Read for everyone (`ZOO_READ_ACL_UNSAFE`).
    public static let worldRead = ACLEntry(.read, scheme: "world", id: "anyone")
    /// Everything for everyone (`ZOO_OPEN_ACL_UNSAFE`).
    public static let worldAll = ACLEntry(.all, scheme: "world", id: "anyone")
}

/// A C `ACL_vector` built from `[ACLEntry]`, at a stable address for as long as this object lives.
/// The C client serializes ACLs when a request is issued, so it only has to outlive that call.
final class CACLVector {
    let vector: UnsafeMutablePointer<ACL_vector>

    init(_ acl: [ACLEntry]) {
        let entries = UnsafeMutablePointer<ACL>.allocate(capacity: max(acl.count, 1))
        for (index, entry) in acl.enumerated() {
            let id = Id(scheme: strdup(entry.scheme), id: strdup(entry.id))
            (entries + index).initialize(to: ACL(perms: entry.permissions.rawValue, id: id))
        }
        vector = .allocate(capacity: 1)
        vector.initialize(to: ACL_vector(count: Int32(acl.count), data: entries))
    }

    deinit {
        let entries = vector.pointee.data!
        for index in 0..<Int(vector.pointee.count) {
            free(entries[index].id.scheme)
            free(entries[index].id.id)
        }
        entries.deallocate()
        vector.deallocate()
    }
}
