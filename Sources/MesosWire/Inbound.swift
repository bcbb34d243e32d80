/// What a connection's peer proved about itself (bus authentication, or a TLS certificate).
/// Unauthenticated connections have neither a principal nor roles.
public struct PeerIdentity: Sendable, Hashable {
    public enum Role: String, Sendable, Hashable, CaseIterable {
        case master, agent, scheduler
    }

    public var principal: String?
    public var roles: Set<Role>

    public init(principal: String? = nil, roles: Set<Role> = []) {
        self.principal = principal
        self.roles = roles
    }

    public static let unauthenticated = PeerIdentity()
    public var isAuthenticated: Bool { principal != nil || !roles.isEmpty }
}

/// One envelope as a core receives it: the envelope and what its connection proved.
public struct Inbound: Sendable, Hashable {
    public var envelope: Envelope
    public var peer: PeerIdentity

    public init(_ envelope: Envelope, peer: PeerIdentity = .unauthenticated) {
        self.envelope = envelope
        self.peer = peer
    }
}
