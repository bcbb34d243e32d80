import Crypto
import Foundation
import MesosWire

/// A principal and its shared secret. Never printed: descriptions redact the secret.
public struct Credential: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let principal: String
    let secret: [UInt8]

    public init(principal: String, secret: String) {
        self.principal = principal
        self.secret = Array(secret.utf8)
    }

    public var description: String { "\(principal):***" }
    public var debugDescription: String { "Credential(principal: \(principal), secret: ***)" }
    public var customMirror: Mirror { Mirror(self, children: ["principal": principal, "secret": "***"]) }
}

/// Credentials files as Mesos takes them (`--credentials`, `--credential`): JSON
/// `{"credentials": [{"principal": "a", "secret": "s"}]}`, one `{"principal": ..., "secret": ...}`,
/// or text lines `principal secret`.
public enum CredentialsFile {
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public static func load(_ path: String) throws(Invalid) -> [Credential] {
        guard let data = FileManager.default.contents(atPath: path) else { throw Invalid(description: "cannot read credentials file \(path)") }
        return try parse(data, source: path)
    }

    public static func parse(_ data: Data, source: String) throws(Invalid) -> [Credential] {
        if let json = try? JSONSerialization.jsonObject(with: data) {
            let entries = (json as? [String: Any])?["credentials"] as? [[String: Any]] ?? [(json as? [String: Any]) ?? [:]]
            let credentials = entries.compactMap { e -> Credential? in
                guard let p = e["principal"] as? String, let s = e["secret"] as? String, !p.isEmpty, !s.isEmpty else { return nil }
                return Credential(principal: p, secret: s)
            }
            guard credentials.count == entries.count, !credentials.isEmpty else {
                throw Invalid(description: "\(source): every credential needs a non-empty \"principal\" and \"secret\"")
            }
            return credentials
        }
        let lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).map { $0.split(whereSeparator: \.isWhitespace) }.filter { !$0.isEmpty }
        guard !lines.isEmpty, lines.allSatisfy({ $0.count == 2 }) else {
            throw Invalid(description: "\(source): expected JSON or lines of 'principal secret'")
        }
        return lines.map { Credential(principal: String($0[0]), secret: String($0[1])) }
    }
}

/// The HMAC-SHA256 challenge-response of messages.proto, as two pure state machines: the accepting
/// side (`Authenticator`, which knows every principal's secret) and the connecting side (`Authenticatee`).
enum ConnectionAuthentication {
    static func nonce() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    static func clientProof(_ c: Credential, clientNonce: [UInt8], serverNonce: [UInt8]) -> [UInt8] {
        mac(c.secret, Array("mesos-auth-v1".utf8) + Array(c.principal.utf8) + [0] + clientNonce + serverNonce)
    }

    static func serverProof(_ c: Credential, clientNonce: [UInt8], serverNonce: [UInt8]) -> [UInt8] {
        mac(c.secret, Array("mesos-auth-server-v1".utf8) + clientNonce + serverNonce)
    }

    private static func mac(_ secret: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
    }

    static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        // Constant time over the expected length.
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// The accepting side of one connection.
///
/// A master's (`credentials`: every principal's secret) authenticates agents and schedulers,
/// which must prove their secret before anything else. An agent's or scheduler's (`own`: its own
/// credential) does not require authentication (its executors and the like need none), but a peer
/// that proves *its* secret can only be the master (the one other holder of it): the connection is
/// authenticated as a master (`PeerIdentity.roles` = [.master]), which the cores require of master
/// messages. Mutual: the accepting side proves the secret back in its result.
struct Authenticator {
    enum Outcome: Equatable {
        /// Pass this envelope on to the process.
        case deliver
        /// Answer with this payload on the same connection (nil: nothing to answer).
        case answer(Envelope.Payload?)
        /// Answer, then close the connection: the peer is not authenticated (`cause`: a stable key).
        case refuse(Envelope.Payload, reason: String, cause: String)
    }

    private let secrets: [String: Credential]?
    private let own: Credential?
    private var challenged: (credential: Credential, clientNonce: [UInt8], serverNonce: [UInt8])?
    private(set) var principal: String?
    /// The credential the peer proved, and the `from` it proved it with (for the master's links back).
    private(set) var proved: (credential: Credential, from: String)?
    private var provedOwn = false

    /// `credentials` nil: authentication is not required (but a peer that asks gets an answer:
    /// a proof of `own`, or else "not required", which credentialed clients refuse).
    init(credentials: [Credential]?, own: Credential? = nil) {
        secrets = credentials.map { Dictionary($0.map { ($0.principal, $0) }, uniquingKeysWith: { a, _ in a }) }
        self.own = credentials == nil ? own : nil
    }

    var isSatisfied: Bool { secrets == nil || principal != nil }

    /// What the peer proved so far (a principal, once its proof checked out; the master role when it
    /// proved this process's own secret).
    var identity: PeerIdentity { PeerIdentity(principal: principal, roles: provedOwn ? [.master] : []) }

    mutating func handle(_ envelope: Envelope) -> Outcome {
        switch envelope.payload {
        case .authenticate(let m)?:
            let known: Credential?
            if let secrets {
                known = secrets[m.principal]
            } else if let own {
                known = own.principal == m.principal ? own : nil
            } else {
                return .answer(.authenticationResult(AuthenticationResultMessage(ok: true, reason: "authentication not required")))
            }
            guard let credential = known, m.clientNonce.count >= 8 else {
                return .refuse(refusal("unknown principal or bad request"), reason: "authentication failed for principal '\(m.principal)'", cause: "authentication_failed")
            }
            let serverNonce = ConnectionAuthentication.nonce()
            challenged = (credential, m.clientNonce, serverNonce)
            return .answer(.authenticationChallenge(AuthenticationChallengeMessage(serverNonce: serverNonce)))
        case .authenticationResponse(let m)?:
            guard let (credential, clientNonce, serverNonce) = challenged else {
                return .refuse(refusal("no challenge outstanding"), reason: "authentication response without a challenge", cause: "authentication_failed")
            }
            challenged = nil
            let expected = ConnectionAuthentication.clientProof(credential, clientNonce: clientNonce, serverNonce: serverNonce)
            guard ConnectionAuthentication.same(m.proof, expected) else {
                return .refuse(refusal("wrong secret"), reason: "authentication failed for principal '\(credential.principal)': wrong secret", cause: "authentication_failed")
            }
            principal = credential.principal
            proved = (credential, envelope.from)
            provedOwn = secrets == nil
            let proof = ConnectionAuthentication.serverProof(credential, clientNonce: clientNonce, serverNonce: serverNonce)
            return .answer(.authenticationResult(AuthenticationResultMessage(ok: true, serverProof: proof)))
        default:
            guard isSatisfied else {
                return .refuse(refusal("authentication required"), reason: "unauthenticated peer \(envelope.from) sent a message; authentication is required", cause: "unauthenticated")
            }
            return .deliver
        }
    }

    private func refusal(_ reason: String) -> Envelope.Payload {
        .authenticationResult(AuthenticationResultMessage(ok: false, reason: reason))
    }
}

/// The connecting side of one connection.
struct Authenticatee {
    enum Outcome: Equatable {
        case send(Envelope.Payload)
        case authenticated
        /// `cause`: `refused` (the peer said no) or `bad_proof` (the peer could not prove the secret).
        case failed(String, cause: String)
        case ignore
    }

    let credential: Credential
    private let clientNonce = ConnectionAuthentication.nonce()
    private var serverNonce: [UInt8]?

    init(credential: Credential) { self.credential = credential }

    var opening: Envelope.Payload { .authenticate(AuthenticateMessage(principal: credential.principal, clientNonce: clientNonce)) }

    mutating func handle(_ payload: Envelope.Payload) -> Outcome {
        switch payload {
        case .authenticationChallenge(let m):
            serverNonce = m.serverNonce
            return .send(.authenticationResponse(AuthenticationResponseMessage(
                proof: ConnectionAuthentication.clientProof(credential, clientNonce: clientNonce, serverNonce: m.serverNonce))))
        case .authenticationResult(let m):
            guard m.ok else { return .failed("authentication refused by the peer: \(m.reason ?? "no reason given")", cause: "refused") }
            // "Authentication not required" proves nothing: a client holding a credential talks only
            // to a peer that proves it knows the secret too.
            guard let serverNonce else {
                return .failed("the peer answered '\(m.reason ?? "authentication not required")' and could not prove it knows the secret of '\(credential.principal)'", cause: "no_server_proof")
            }
            let expected = ConnectionAuthentication.serverProof(credential, clientNonce: clientNonce, serverNonce: serverNonce)
            guard let proof = m.serverProof, ConnectionAuthentication.same(proof, expected) else {
                return .failed("the peer could not prove it knows the secret of '\(credential.principal)'", cause: "bad_proof")
            }
            return .authenticated
        default:
            return .ignore
        }
    }
}
