import Foundation

/// Certificates for TLS tests, made by `scripts/gen-certs` in a temporary directory: the development
/// CA and its master/agent/scheduler certificates, and on request more (another agent, an expired
/// one, a role-less one, or a whole second CA whose certificates nobody trusts).
public struct TestCertificates: Sendable {
    public let directory: String

    public struct Failed: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// A CA and the three role certificates in a new temporary directory.
    public static func make(_ label: String = "certs") throws -> TestCertificates {
        let dir = FileManager.default.temporaryDirectory.appending(path: "mesos-\(label)-\(UUID().uuidString.prefix(8))").path
        try run([dir])
        return TestCertificates(directory: dir)
    }

    /// One more certificate signed by this CA: `name.pem` / `name.key` (`role`: master, agent,
    /// scheduler or none); `expired`: valid only until yesterday.
    @discardableResult
    public func add(_ name: String, role: String, expired: Bool = false) throws -> String {
        try Self.run([directory, "--name", name, "--role", role] + (expired ? ["--expired"] : []))
        return "\(directory)/\(name).pem"
    }

    public func cert(_ name: String) -> String { "\(directory)/\(name).pem" }
    public func key(_ name: String) -> String { "\(directory)/\(name).key" }
    public var ca: String { "\(directory)/ca.pem" }

    /// The `LIBPROCESS_SSL_*` environment of a process holding `name`'s certificate, trusting this
    /// CA, verifying servers (scheme openssl) and requiring client certificates.
    public func environment(_ name: String, downgrade: Bool = false, requireClientCert: Bool = true) -> [String: String] {
        [
            "LIBPROCESS_SSL_ENABLED": "true",
            "LIBPROCESS_SSL_CERT_FILE": cert(name),
            "LIBPROCESS_SSL_KEY_FILE": key(name),
            "LIBPROCESS_SSL_CA_FILE": ca,
            "LIBPROCESS_SSL_VERIFY_SERVER_CERT": "true",
            "LIBPROCESS_SSL_REQUIRE_CLIENT_CERT": requireClientCert ? "true" : "false",
            "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME": "openssl",
            "LIBPROCESS_SSL_SUPPORT_DOWNGRADE": downgrade ? "true" : "false",
        ]
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }

    private static func run(_ arguments: [String]) throws {
        let p = Process()
        p.executableURL = Products.packageRoot.appending(path: "scripts/gen-certs")
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw Failed(description: "scripts/gen-certs \(arguments.joined(separator: " ")) failed: \(text)")
        }
    }
}
