import Logging
import MesosWire
import NIOCore
import NIOSSL
import NIOTLS

/// A connection's TLS handshake is over and its peer's certificate checked: what it proved (no
/// principal and no roles when the peer presented no certificate, or one that was not verified).
/// Fired down the pipeline before any decrypted byte, for `FrameHandler`.
struct TLSPeerVerified: Sendable {
    let identity: PeerIdentity
}

extension TLSSettings {
    /// A TLS connection starts with a handshake record (content type 22). As a frame's first byte
    /// it would announce at least 0x16 << 24 bytes (352 MiB), more than any frame a bus takes;
    /// an HTTP request starts with a letter.
    static let handshakeRecordType: UInt8 = 0x16
}

/// First in an accepted connection's pipeline when the bus speaks TLS: a first byte of 0x16 puts
/// the TLS server handler (and `TLSPeerVerifier`) in front of the rest; anything else is a
/// plaintext peer, served as before with `LIBPROCESS_SSL_SUPPORT_DOWNGRADE`, refused otherwise
/// (`event=connection_rejected cause=tls_required`). Then it steps out.
final class TLSServerSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let tls: TLSContext
    private let peerRoles: Set<PeerIdentity.Role>?
    private let logger: Logger
    private let stats: BusStatsCounter

    init(tls: TLSContext, peerRoles: Set<PeerIdentity.Role>?, logger: Logger, stats: BusStatsCounter) {
        self.tls = tls
        self.peerRoles = peerRoles
        self.logger = logger
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        let pipeline = context.pipeline.syncOperations
        if first == TLSSettings.handshakeRecordType {
            do {
                try pipeline.addHandlers(
                    [
                        NIOSSLServerHandler(context: tls.serverContext),
                        TLSPeerVerifier(side: .accepted, settings: tls.settings, peerRoles: peerRoles, logger: logger, stats: stats),
                    ], position: .after(self))
            } catch {
                return TLSPeerVerifier.reject(context, logger: logger, stats: stats, cause: "tls_setup", reason: "cannot start TLS: \(error)")
            }
        } else if tls.settings.supportDowngrade {
            stats.add(\.plaintextDowngrades)
            logger.debug("plaintext connection accepted (LIBPROCESS_SSL_SUPPORT_DOWNGRADE)", metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        } else {
            return TLSPeerVerifier.reject(
                context, logger: logger, stats: stats, cause: "tls_required",
                reason: "plaintext connection (first byte 0x\(String(first, radix: 16))) where TLS is required")
        }
        context.fireChannelRead(data)
        pipeline.removeHandler(context: context, promise: nil)
    }
}

/// Behind a NIOSSL handler: bounds the handshake in time, logs a failed handshake once with its
/// reason, and once it is over reads the peer's certificate (`CertificateIdentity`), refuses a
/// verified certificate with none of `peerRoles` (`cause=wrong_role`), and tells the handlers
/// behind it (`TLSPeerVerified`) and, on a link, the link.
final class TLSPeerVerifier: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Side {
        case accepted
        case link(Link)
    }

    private let side: Side
    private let settings: TLSSettings
    private let peerRoles: Set<PeerIdentity.Role>?
    private let logger: Logger
    private let stats: BusStatsCounter
    private var timer: Scheduled<Void>?
    private var done = false
    /// Refused: what was decrypted in the same read as the handshake's end goes nowhere.
    private var refused = false

    init(side: Side, settings: TLSSettings, peerRoles: Set<PeerIdentity.Role>?, logger: Logger, stats: BusStatsCounter) {
        self.side = side
        self.settings = settings
        self.peerRoles = peerRoles
        self.logger = logger
        self.stats = stats
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let timeout = settings.handshakeTimeout
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            guard !handler.done else { return }
            handler.done = true
            Self.reject(
                context, logger: handler.logger, stats: handler.stats, cause: "tls_handshake_timeout",
                reason: "TLS handshake not complete within \(timeout.nanoseconds / 1_000_000) ms")
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard !done, let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent else {
            return context.fireUserInboundEventTriggered(event)
        }
        done = true
        timer?.cancel()
        let certificate = (try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self))?.peerCertificate
        // Roles only from a certificate that was verified: an accepted connection's always is
        // (required or optional verification), a link's only with LIBPROCESS_SSL_VERIFY_SERVER_CERT.
        let verified: Bool
        switch side {
        case .accepted: verified = certificate != nil
        case .link: verified = certificate != nil && settings.verifyServerCert
        }
        let identity = verified ? certificate.map(CertificateIdentity.identity(of:)) ?? .unauthenticated : .unauthenticated
        if verified, let peerRoles, identity.roles.isDisjoint(with: peerRoles) {
            let has = identity.roles.map(\.rawValue).sorted().joined(separator: ",")
            let wanted = peerRoles.map(\.rawValue).sorted().joined(separator: ",")
            refused = true
            return Self.reject(
                context, logger: logger, stats: stats, cause: "wrong_role",
                reason: "the peer's certificate has role(s) [\(has)], none of [\(wanted)]")
        }
        stats.add(\.tlsHandshakes)
        context.fireUserInboundEventTriggered(TLSPeerVerified(identity: identity))
        if case .link(let link) = side { link.tlsEstablished(on: context.channel) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !done else { return context.fireErrorCaught(error) }
        done = true
        timer?.cancel()
        Self.reject(context, logger: logger, stats: stats, cause: "tls_handshake_failed", reason: "TLS handshake failed: \(error)")
    }

    /// Closes the connection with `event=connection_rejected cause=...` logged once.
    static func reject(_ context: ChannelHandlerContext, logger: Logger, stats: BusStatsCounter, cause: String, reason: String) {
        stats.add(\.connectionsRejected)
        logger.warning(
            "closing connection: \(reason)",
            metadata: ["event": "connection_rejected", "cause": "\(cause)", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        context.close(promise: nil)
    }
}
