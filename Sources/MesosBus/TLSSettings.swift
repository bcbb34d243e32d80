import Foundation
import MesosWire
import NIOCore
import NIOSSL
import Synchronization

/// TLS on the bus, configured as libprocess is: by `LIBPROCESS_SSL_*` environment variables
/// (Mesos's `SSL_*` spellings and legacy aliases are read too). The one place they are parsed.
///
/// | variable | default | meaning here |
/// |---|---|---|
/// | `LIBPROCESS_SSL_ENABLED` | false | TLS on every bus connection, accepted and outbound, and on the HTTP endpoints of the port |
/// | `LIBPROCESS_SSL_CERT_FILE`, `LIBPROCESS_SSL_KEY_FILE` | (required when enabled) | this process's certificate chain and key (PEM), presented as server and as client |
/// | `LIBPROCESS_SSL_CA_FILE` / `LIBPROCESS_SSL_CA_DIR` | the system's trust store | whom to trust (a CA dir needs OpenSSL's hashed names, `openssl rehash`) |
/// | `LIBPROCESS_SSL_VERIFY_SERVER_CERT` (`_VERIFY_CERT`) | false | outbound: verify the server's certificate (chain, dates; its name with scheme `openssl`) |
/// | `LIBPROCESS_SSL_REQUIRE_CLIENT_CERT` (`_REQUIRE_CERT`) | false | accepted: a client without a certificate is refused. Either way a certificate a client presents is verified (unlike Mesos, which ignores it): only a verified certificate gives a connection its role |
/// | `LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME` | legacy | `openssl`: the server's certificate must name the host (DNS or IP SAN) the link connects to; `legacy`: no name check (Mesos's reverse-DNS check is not done) |
/// | `LIBPROCESS_SSL_SUPPORT_DOWNGRADE` (`_ENABLE_DOWNGRADE`) | false | accepted connections that do not start with a TLS record (first byte 0x16) are served in plaintext (a rollout) |
/// | `LIBPROCESS_SSL_CIPHERS` | BoringSSL's defaults | `:`-separated OpenSSL cipher names for TLS 1.2 (TLS 1.3's suites are fixed) |
///
/// TLS 1.2 and 1.3 only (Mesos's defaults disable SSLv3, TLS 1.0 and 1.1 too).
public struct TLSSettings: Sendable, Equatable {
    public enum HostnameValidationScheme: String, Sendable, Equatable {
        case legacy, openssl
    }

    public var certFile: String
    public var keyFile: String
    public var caFile: String?
    public var caDir: String?
    public var verifyServerCert = false
    public var requireClientCert = false
    public var hostnameValidationScheme = HostnameValidationScheme.legacy
    public var supportDowngrade = false
    public var ciphers: String?
    /// A TLS handshake not complete this long after its first byte is a stalled peer: closed.
    public var handshakeTimeout: TimeAmount = .seconds(10)

    public init(certFile: String, keyFile: String, caFile: String? = nil) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.caFile = caFile
    }

    /// The settings of `environment`; nil when `LIBPROCESS_SSL_ENABLED` is not true.
    public static func fromEnvironment(_ environment: [String: String]) throws(TLSSettingsError) -> TLSSettings? {
        func value(_ names: String...) -> (name: String, value: String)? {
            for name in names {
                for prefix in ["LIBPROCESS_SSL_", "SSL_"] {
                    if let v = environment[prefix + name] { return (prefix + name, v) }
                }
            }
            return nil
        }
        func flag(_ names: String...) throws(TLSSettingsError) -> Bool? {
            var found: (name: String, value: String)?
            for name in names where found == nil {
                for prefix in ["LIBPROCESS_SSL_", "SSL_"] where found == nil {
                    if let v = environment[prefix + name] { found = (prefix + name, v) }
                }
            }
            guard let (name, v) = found else { return nil }
            switch v.lowercased() {
            case "true", "1": return true
            case "false", "0": return false
            default: throw .invalidBoolean(variable: name, value: v)
            }
        }
        guard try flag("ENABLED") == true else { return nil }
        guard let cert = value("CERT_FILE"), !cert.value.isEmpty else { throw .missing(variable: "LIBPROCESS_SSL_CERT_FILE") }
        guard let key = value("KEY_FILE"), !key.value.isEmpty else { throw .missing(variable: "LIBPROCESS_SSL_KEY_FILE") }
        var s = TLSSettings(certFile: cert.value, keyFile: key.value, caFile: value("CA_FILE").map(\.value).flatMap { $0.isEmpty ? nil : $0 })
        s.caDir = value("CA_DIR").map(\.value).flatMap { $0.isEmpty ? nil : $0 }
        let requireClient = try flag("REQUIRE_CLIENT_CERT", "REQUIRE_CERT") ?? false
        s.requireClientCert = requireClient
        // As libprocess: requiring client certificates implies verifying servers' too.
        s.verifyServerCert = try flag("VERIFY_SERVER_CERT", "VERIFY_CERT") ?? requireClient
        s.supportDowngrade = try flag("SUPPORT_DOWNGRADE", "ENABLE_DOWNGRADE") ?? false
        if let (name, scheme) = value("HOSTNAME_VALIDATION_SCHEME") {
            guard let parsed = HostnameValidationScheme(rawValue: scheme) else { throw .invalidValue(variable: name, value: scheme, expected: "legacy or openssl") }
            s.hostnameValidationScheme = parsed
        }
        s.ciphers = value("CIPHERS").map(\.value).flatMap { $0.isEmpty ? nil : $0 }
        return s
    }
}

public enum TLSSettingsError: Error, Equatable, CustomStringConvertible {
    case missing(variable: String)
    case invalidBoolean(variable: String, value: String)
    case invalidValue(variable: String, value: String, expected: String)
    case unreadableFile(variable: String, path: String)
    case invalidFile(variable: String, path: String, reason: String)
    case invalidCiphers(String)

    public var description: String {
        switch self {
        case .missing(let v): "\(v) is required when LIBPROCESS_SSL_ENABLED is true"
        case .invalidBoolean(let v, let value): "\(v)=\(value): expected true, false, 1 or 0"
        case .invalidValue(let v, let value, let expected): "\(v)=\(value): expected \(expected)"
        case .unreadableFile(let v, let path): "\(v): cannot read \(path)"
        case .invalidFile(let v, let path, let reason): "\(v): \(path) is not usable: \(reason)"
        case .invalidCiphers(let c): "LIBPROCESS_SSL_CIPHERS=\(c): no usable cipher"
        }
    }
}

extension TLSContext {
    /// The process's TLS from its `LIBPROCESS_SSL_*` environment, loaded; nil when not enabled.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws(TLSSettingsError) -> TLSContext? {
        try TLSSettings.fromEnvironment(environment).map { s throws(TLSSettingsError) in try TLSContext(s) }
    }
}

/// The TLS contexts of one bus, built from `TLSSettings`; `reload()` reads the files again (SIGHUP):
/// connections made afterwards use the new certificate, established ones stay as they are.
public final class TLSContext: Sendable {
    public let settings: TLSSettings
    private struct Loaded: @unchecked Sendable {  // NIOSSLContext is thread-safe once built
        var server: NIOSSLContext
        var client: NIOSSLContext
        var identity: PeerIdentity
    }
    private let loaded: Mutex<Loaded>

    public init(_ settings: TLSSettings) throws(TLSSettingsError) {
        self.settings = settings
        loaded = Mutex(try Self.load(settings))
    }

    /// What this process's own certificate says it is (its principal and roles).
    public var localIdentity: PeerIdentity { loaded.withLock { $0.identity } }

    /// Reads the certificate, key and CA files again; on an error the old ones stay in use.
    public func reload() throws(TLSSettingsError) {
        let fresh = try Self.load(settings)
        loaded.withLock { $0 = fresh }
    }

    var serverContext: NIOSSLContext { loaded.withLock { $0.server } }
    var clientContext: NIOSSLContext { loaded.withLock { $0.client } }

    private static func load(_ s: TLSSettings) throws(TLSSettingsError) -> Loaded {
        try readable(s.certFile, "LIBPROCESS_SSL_CERT_FILE")
        try readable(s.keyFile, "LIBPROCESS_SSL_KEY_FILE")
        if let ca = s.caFile { try readable(ca, "LIBPROCESS_SSL_CA_FILE") }
        if let dir = s.caDir {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw .unreadableFile(variable: "LIBPROCESS_SSL_CA_DIR", path: dir)
            }
        }
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(s.certFile) } catch {
            throw .invalidFile(variable: "LIBPROCESS_SSL_CERT_FILE", path: s.certFile, reason: "not a PEM certificate (\(error))")
        }
        guard let leaf = chain.first else { throw .invalidFile(variable: "LIBPROCESS_SSL_CERT_FILE", path: s.certFile, reason: "no certificate in it") }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: s.keyFile, format: .pem) } catch {
            throw .invalidFile(variable: "LIBPROCESS_SSL_KEY_FILE", path: s.keyFile, reason: "not a PEM private key (\(error))")
        }
        let roots: NIOSSLTrustRoots = (s.caFile ?? s.caDir).map { .file($0) } ?? .default
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        server.certificateVerification = s.requireClientCert ? .noHostnameVerification : .optionalVerification
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        client.certificateVerification = !s.verifyServerCert ? .none : s.hostnameValidationScheme == .openssl ? .fullVerification : .noHostnameVerification
        func common(_ t: inout TLSConfiguration) {
            t.trustRoots = roots
            if let dir = s.caDir, s.caFile != nil { t.additionalTrustRoots = [.file(dir)] }
            t.minimumTLSVersion = .tlsv12
            if let ciphers = s.ciphers { t.cipherSuites = ciphers }
        }
        common(&server)
        common(&client)
        do {
            return Loaded(
                server: try NIOSSLContext(configuration: server), client: try NIOSSLContext(configuration: client),
                identity: CertificateIdentity.identity(of: leaf))
        } catch {
            if s.ciphers != nil { throw .invalidCiphers(s.ciphers ?? "") }
            throw .invalidFile(variable: "LIBPROCESS_SSL_CERT_FILE", path: s.certFile, reason: "\(error)")
        }
    }

    private static func readable(_ path: String, _ variable: String) throws(TLSSettingsError) {
        guard FileManager.default.isReadableFile(atPath: path) else { throw .unreadableFile(variable: variable, path: path) }
    }
}

/// What a certificate says its holder is, by its subject alternative names (scripts/gen-certs):
/// `URI:urn:mesos:role:<master|agent|scheduler>` (any number) and `URI:urn:mesos:principal:<name>`
/// (the principal an agent id or a framework is bound to, as an HMAC principal is). Unknown roles and
/// malformed names are ignored: such a certificate simply proves less.
public enum CertificateIdentity {
    public static let rolePrefix = "urn:mesos:role:"
    public static let principalPrefix = "urn:mesos:principal:"

    static func identity(of certificate: NIOSSLCertificate) -> PeerIdentity {
        var uris: [String] = []
        for name in certificate._subjectAlternativeNames() where name.nameType == .uri {
            uris.append(String(decoding: name.contents, as: UTF8.self))
        }
        return identity(uris: uris)
    }

    /// The identity of a certificate with these SAN URIs.
    public static func identity(uris: [String]) -> PeerIdentity {
        var identity = PeerIdentity()
        for uri in uris {
            if uri.hasPrefix(rolePrefix), let role = PeerIdentity.Role(rawValue: String(uri.dropFirst(rolePrefix.count))) {
                identity.roles.insert(role)
            } else if uri.hasPrefix(principalPrefix), identity.principal == nil {
                let name = String(uri.dropFirst(principalPrefix.count))
                let printable = name.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F }
                if !name.isEmpty, name.utf8.count <= 256, printable { identity.principal = name }
            }
        }
        return identity
    }
}
