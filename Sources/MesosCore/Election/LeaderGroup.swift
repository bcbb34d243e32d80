import Foundation
import MesosWire

/// Mesos's ZooKeeper layout for master election: each master owns an ephemeral
/// sequential znode `<path>/json.info_NNNNNNNNNN` holding its MasterInfo as JSON.
/// The lowest sequence leads, and that sequence is the leader's epoch.
public enum LeaderGroup {
    public static let label = "json.info_"
    /// Prefix of the non-member znodes a contender creates to move the group's sequence counter
    /// past the epoch floor. No `_` (Mesos's Group skips children it cannot split into
    /// `label_sequence`) and sorting after `json.info_` (clients that take the smallest child).
    public static let floorMarkerPrefix = "zz-epoch-floor-"
    /// Largest MasterInfo JSON read from a znode (ZooKeeper's own limit is 1 MiB).
    public static let maxMemberData = 64 * 1024

    /// The sequence ZooKeeper appended to a floor marker's name.
    public static func floorMarkerSequence(of name: String) -> UInt64? {
        guard name.hasPrefix(floorMarkerPrefix) else { return nil }
        return digits(name.dropFirst(floorMarkerPrefix.count))
    }

    private static func digits(_ s: Substring) -> UInt64? {
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return UInt64(s)
    }

    /// The sequence of a member znode name; nil for anything else (other labels,
    /// non-numeric suffixes, the registry node...), which election ignores.
    public static func sequence(of name: String) -> UInt64? {
        guard name.hasPrefix(label) else { return nil }
        return digits(name.dropFirst(label.count))
    }

    /// Members of the group, lowest sequence first.
    public static func members(_ children: [String]) -> [(name: String, sequence: UInt64)] {
        children.compactMap { name in sequence(of: name).map { (name, $0) } }.sorted { $0.sequence < $1.sequence }
    }
}

/// MasterInfo as the JSON Mesos writes into `json.info_` znodes (field names of the .proto),
/// so Mesos tooling can read our leader and we can read theirs.
public enum MasterInfoJSON {
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public static func encode(_ info: MasterInfo) -> [UInt8] {
        var object: [String: Any] = ["id": info.id, "ip": info.ip, "port": info.port]
        if let pid = info.pid { object["pid"] = pid }
        if let hostname = info.hostname { object["hostname"] = hostname }
        if let version = info.version { object["version"] = version }
        if let a = info.address {
            var address: [String: Any] = ["port": a.port]
            if let h = a.hostname { address["hostname"] = h }
            if let ip = a.ip { address["ip"] = ip }
            object["address"] = address
        }
        // Keys sorted: the same MasterInfo always gives the same bytes. Strings and integers only,
        // which JSONSerialization always encodes.
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])).map { [UInt8]($0) } ?? []
    }

    public static func decode(_ bytes: [UInt8]) throws(Invalid) -> MasterInfo {
        guard bytes.count <= LeaderGroup.maxMemberData else {
            throw Invalid(description: "MasterInfo znode holds \(bytes.count) bytes, more than \(LeaderGroup.maxMemberData)")
        }
        guard let any = try? JSONSerialization.jsonObject(with: Data(bytes)), let o = any as? [String: Any] else {
            throw Invalid(description: "MasterInfo znode is not a JSON object")
        }
        func int(_ v: Any?) -> Int64? { (v as? NSNumber).flatMap { Int64(exactly: $0.doubleValue) } }
        guard let id = o["id"] as? String else { throw Invalid(description: "MasterInfo JSON lacks \"id\"") }
        guard let ip = int(o["ip"]), let ip32 = UInt32(exactly: ip) else { throw Invalid(description: "MasterInfo JSON lacks a valid \"ip\"") }
        guard let port = int(o["port"]), let port32 = UInt32(exactly: port) else { throw Invalid(description: "MasterInfo JSON lacks a valid \"port\"") }
        var info = MasterInfo(id: id, ip: ip32, port: port32)
        info.pid = o["pid"] as? String
        info.hostname = o["hostname"] as? String
        info.version = o["version"] as? String
        if let a = o["address"] as? [String: Any], let p = int(a["port"]), let p32 = Int32(exactly: p) {
            info.address = Address(hostname: a["hostname"] as? String, ip: a["ip"] as? String, port: p32)
        }
        return info
    }

    /// The IPv4 address in MasterInfo.ip form (network byte order read as a little-endian
    /// integer, as Mesos stores it): "127.0.0.1" -> 16777343.
    public static func packedIPv4(_ dotted: String) -> UInt32? {
        let parts = dotted.split(separator: ".").compactMap { UInt8($0) }
        guard parts.count == 4 else { return nil }
        return UInt32(parts[0]) | UInt32(parts[1]) << 8 | UInt32(parts[2]) << 16 | UInt32(parts[3]) << 24
    }
}
