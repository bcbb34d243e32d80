#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A Mesos-style ZooKeeper URL: `zk://[user:password@]host1:port1[,host2:port2...]/path`,
/// or `file:///path/to/file` whose content (trimmed) is such a `zk://` URL.
///
/// Parsing follows Mesos (`zookeeper::URL::parse` and `MasterDetector::create`):
/// the input is trimmed; the path starts at the first `/` after `zk://`; credentials are what
/// precedes the last `@` of the authority and split at their first `:`; `file://` takes
/// everything after the prefix as a file path (relative paths are read relative to the working directory).
/// Stricter than Mesos, so mistakes show up at startup rather than as odd ZooKeeper errors:
/// - every server must be `host:port` with a port in 1...65535 (IPv6 hosts in brackets);
/// - the path is taken verbatim, never normalized: `/` alone, a trailing `/`, an empty
///   segment (`//`) and `.`/`..` segments are rejected (ZooKeeper itself rejects those paths);
/// - the username and the password must both be non-empty;
/// - a file may not point to another file.
public struct ZooKeeperURL: Sendable, Hashable, CustomStringConvertible {
    /// The connect string for the C client: `host1:port1,host2:port2`.
    public let servers: String
    /// The absolute znode path, e.g. `/mesos`.
    public let path: String
    /// Digest credentials, if the URL has `user:password@`.
    public let credentials: Credentials?

    public init(parsing text: String) throws(ZooKeeperURLError) {
        let input = text.trimmingWhitespace()
        if input.hasPrefix(Self.fileScheme) {
            let filePath = String(input.dropFirst(Self.fileScheme.count))
            guard !filePath.isEmpty else { throw .emptyFilePath }
            let content = try readFile(filePath).trimmingWhitespace()
            if content.hasPrefix(Self.fileScheme) { throw .nestedFileReference(path: filePath) }
            do {
                self = try ZooKeeperURL(zkURL: content)
            } catch {
                throw .invalidFileContent(path: filePath, error)
            }
        } else {
            self = try ZooKeeperURL(zkURL: input)
        }
    }

    /// The URL with the password redacted, safe for logs.
    public var description: String {
        let userInfo = credentials.map { "\($0)@" } ?? ""
        return "\(Self.zkScheme)\(userInfo)\(servers)\(path)"
    }

    private static let zkScheme = "zk://"
    private static let fileScheme = "file://"

    private init(zkURL input: String) throws(ZooKeeperURLError) {
        guard !input.isEmpty else { throw .empty }
        guard input.hasPrefix(Self.zkScheme) else {
            // Only the scheme goes into the error: the rest may hold a password.
            let scheme = input.firstRange(of: "://").map { String(input[..<$0.lowerBound]) } ?? ""
            throw .unsupportedScheme(scheme)
        }
        let rest = input.dropFirst(Self.zkScheme.count)
        guard let pathStart = rest.firstIndex(of: "/") else { throw .missingPath }
        let path = String(rest[pathStart...])
        try Self.validate(path: path)

        var authority = rest[..<pathStart]
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            guard let colon = userInfo.firstIndex(of: ":") else { throw .malformedCredentials }
            let username = String(userInfo[..<colon])
            let password = String(userInfo[userInfo.index(after: colon)...])
            guard !username.isEmpty else { throw .emptyUsername }
            guard !password.isEmpty else { throw .emptyPassword }
            credentials = Credentials(username: username, password: password)
        } else {
            credentials = nil
        }

        guard !authority.isEmpty else { throw .missingServers }
        for server in authority.split(separator: ",", omittingEmptySubsequences: false) {
            try Self.validate(server: String(server))
        }
        servers = String(authority)
        self.path = path
    }

    private static func validate(path: String) throws(ZooKeeperURLError) {
        guard path != "/" else { throw .rootPath }
        guard !path.hasSuffix("/") else { throw .invalidPath(path, reason: "trailing '/'") }
        for segment in path.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty { throw .invalidPath(path, reason: "empty segment") }
            if segment == "." || segment == ".." { throw .invalidPath(path, reason: "'\(segment)' segment") }
        }
        if path.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw .invalidPath(path, reason: "control character")
        }
    }

    private static func validate(server: String) throws(ZooKeeperURLError) {
        guard !server.isEmpty else { throw .invalidServer(server, reason: "empty entry") }
        guard !server.contains(where: \.isWhitespace) else { throw .invalidServer(server, reason: "whitespace") }
        guard let colon = server.lastIndex(of: ":") else { throw .invalidServer(server, reason: "missing ':port'") }
        let host = server[..<colon]
        let port = server[server.index(after: colon)...]
        guard !host.isEmpty else { throw .invalidServer(server, reason: "missing host") }
        if host.contains(":") && !(host.hasPrefix("[") && host.hasSuffix("]")) {
            throw .invalidServer(server, reason: "IPv6 host must be in brackets")
        }
        guard port.allSatisfy({ $0.isASCII && $0.isNumber }), let number = UInt16(port), number > 0 else {
            throw .invalidPort(server: server)
        }
    }
}

/// Digest credentials (`zoo_add_auth("digest", "user:password")`).
/// Every textual form redacts the password so it cannot end up in a log.
public struct Credentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    public let username: String
    public let password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    public var description: String { "\(username):***" }
    public var debugDescription: String { "Credentials(username: \(username), password: ***)" }
    public var customMirror: Mirror { Mirror(self, children: ["username": username, "password": "***"]) }

    /// The `user:password` certificate for the digest scheme.
    var digest: String { "\(username):\(password)" }
}

/// Why a ZooKeeper URL was rejected. No case carries a password.
public enum ZooKeeperURLError: Error, Hashable, CustomStringConvertible {
    case empty
    /// The text before `://` (empty when there is none); expected `zk` or `file`.
    case unsupportedScheme(String)
    case missingServers
    case invalidServer(String, reason: String)
    case invalidPort(server: String)
    case missingPath
    case rootPath
    case invalidPath(String, reason: String)
    /// `...@` without `user:password` before it.
    case malformedCredentials
    case emptyUsername
    case emptyPassword
    case emptyFilePath
    case unreadableFile(path: String, reason: String)
    case nestedFileReference(path: String)
    indirect case invalidFileContent(path: String, ZooKeeperURLError)

    public var description: String {
        switch self {
        case .empty: "empty ZooKeeper URL"
        case .unsupportedScheme(let scheme) where scheme.isEmpty: "ZooKeeper URL must start with zk:// or file://"
        case .unsupportedScheme(let scheme): "unsupported scheme '\(scheme)://' (expected zk:// or file://)"
        case .missingServers: "no servers in ZooKeeper URL"
        case .invalidServer(let server, let reason): "invalid server '\(server)': \(reason)"
        case .invalidPort(let server): "invalid port in server '\(server)' (expected 1...65535)"
        case .missingPath: "ZooKeeper URL has no path (expected zk://host:port/path)"
        case .rootPath: "'/' is not supported as ZooKeeper path"
        case .invalidPath(let path, let reason): "invalid ZooKeeper path '\(path)': \(reason)"
        case .malformedCredentials: "expected 'username:password' before '@'"
        case .emptyUsername: "empty username in ZooKeeper URL"
        case .emptyPassword: "empty password in ZooKeeper URL"
        case .emptyFilePath: "file:// URL without a file path"
        case .unreadableFile(let path, let reason): "cannot read '\(path)': \(reason)"
        case .nestedFileReference(let path): "'\(path)' points to another file:// URL"
        case .invalidFileContent(let path, let error): "in '\(path)': \(error)"
        }
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}

private func readFile(_ path: String) throws(ZooKeeperURLError) -> String {
    guard let file = fopen(path, "r") else {
        throw .unreadableFile(path: path, reason: String(cString: strerror(errno)))
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        bytes += chunk[..<count]
        if count < chunk.count { break }
    }
    if ferror(file) != 0 {  // e.g. EISDIR: fopen succeeds on a directory, reading fails
        throw .unreadableFile(path: path, reason: String(cString: strerror(errno)))
    }
    return String(decoding: bytes, as: UTF8.self)
}
