import NIOCore
import MesosWire

public struct BusConfiguration: Sendable {
    /// Largest frame accepted or sent; a peer announcing more loses its connection.
    public var maxFrameSize = FrameCodec.defaultMaxFrameSize
    /// How long a connect may take before the link's queued messages are dropped. Long enough for
    /// SYN retransmissions (1 s, 3 s, 7 s): after a failover the new leader and its 10,000 agents
    /// connect to each other at once, listen queues overflow, and at 2 s 9,646 of the leader's
    /// 10,000 connects to its agents failed (their re-registration answers were lost and each
    /// agent waited out a backoff). A refused connect (nobody listening) fails at once either way.
    public var connectTimeout: TimeAmount = .seconds(10)
    /// A connection that holds a partial frame and sends nothing more for this long is
    /// closed (stalled or half-open peer). Idle connections without a partial frame stay.
    public var partialFrameTimeout: TimeAmount = .seconds(10)
    /// Per outbound link: above `high` unwritten bytes, `send` suspends until below `low`.
    public var writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 256 * 1024, high: 1024 * 1024)
    /// Per outbound link: frames waiting for a connection or a writable socket, in bytes; beyond
    /// it frames are dropped (and counted) instead of buffered without bound.
    public var maxQueuedBytesPerLink = 16 * 1024 * 1024
    /// A link whose socket takes nothing for this long (the peer stopped reading) is closed and its
    /// queued frames dropped, so that one stuck peer costs only its own messages.
    public var writeTimeout: TimeAmount = .seconds(30)
    /// Links nobody posted to for this long are closed and forgotten.
    public var idleLinkTimeout: TimeAmount = .minutes(10)
    /// Received messages not yet taken from `events`: above `high`, stop reading sockets.
    public var inboundHighWater = 4096
    public var inboundLowWater = 1024
    /// A master's: inbound connections must authenticate as one of these before sending anything; a
    /// peer that does not is refused with a clear answer and closed (nil: no authentication
    /// required). An unauthenticated connection idle for `partialFrameTimeout` is closed too. Links
    /// back to a peer authenticate with the secret it proved (so it knows the master is the master).
    public var requiredCredentials: [Credential]?
    /// An agent's or scheduler's: links to masters (pids named `master`) authenticate with this first
    /// and require the master to prove the same secret ("authentication not required" is refused);
    /// an inbound connection that proves it is authenticated as the master (role `master`).
    public var credential: Credential?
    /// When set, the listening port also answers HTTP/1.1 (told apart from frames by a connection's
    /// first byte, `WireProtocol.sniff`); a request must be complete within `partialFrameTimeout`.
    public var http: HTTPService?
    /// TLS on every connection, accepted and outbound (`TLSSettings`, `LIBPROCESS_SSL_*`); nil: plaintext.
    public var tls: TLSContext?
    /// With TLS: a peer whose verified certificate carries none of these roles is closed
    /// (`cause=wrong_role`) before it can send anything (nil: any role, or none). Which messages a
    /// role may send is the cores' decision; this only keeps strangers off the bus.
    public var peerRoles: Set<PeerIdentity.Role>?
    /// A master's: a new link first offers the peer a return route (messages.proto): a peer whose own
    /// link to this process is up claims it, and the link then writes over the peer's connection and
    /// closes its own, so each peer costs one socket instead of two. Writes wait for the answer (a
    /// claim, a decline, or nothing within `returnRouteTimeout`: the link goes on over its own connection).
    /// Every bus answers offers, whatever this says.
    public var offerReturnRoutes = false
    /// Links to masters (pids named `master`) connect from this bus's listening address (its
    /// port, with SO_REUSEPORT on the listener and the link), so a master that offers return
    /// routes sees a connection whose source is the sender's pid and writes over it at once,
    /// without connecting back to offer a nonce (the proof is the nonce's: only the process
    /// holding the pid's port, or one of its user, can connect from it). A link whose address pair
    /// is still taken (an earlier connection to the same peer in TIME_WAIT), or whose port cannot
    /// reach the peer, connects from an ephemeral port, and a peer behind NAT or a proxy arrives
    /// from another address: both get the nonce offer. The listener binds without SO_REUSEPORT
    /// (a port already held fails with "address in use") and turns it on once listening; the
    /// price is that another process of the same user can then share the port. Ignored by an
    /// offerer (its links connect from ephemeral ports: a master's link to a peer and the peer's
    /// to it never share an address pair, which would fail, or open simultaneously as one
    /// connection) and under TLS (the certificate proves the peer, not its address). Agents turn
    /// it on (`--connect_from_listening_port`), and so does `SchedulerDriver`.
    public var linksFromListeningPort = false
    /// How long a link's writes wait for the answer to its return-route offer. Our peers always
    /// answer (claim or decline) as soon as they run; a busy peer (a failover's re-registration
    /// storm) can take seconds, and a link that gave up keeps its own connection for good.
    public var returnRouteTimeout: TimeAmount = .seconds(10)
    /// The sockets this bus may open and counts its accepted ones against (shared by every bus of
    /// the process by default: they share its descriptor table).
    public var descriptors = DescriptorBudget.process

    public init() {}

    var codec: FrameCodec { FrameCodec(maxFrameSize: maxFrameSize) }
}

public enum BusError: Error, CustomStringConvertible, Equatable {
    case notStarted
    case alreadyStarted
    case shutDown
    case frameTooLarge(bytes: Int, max: Int)
    case connectFailed(peer: String, reason: String)

    public var description: String {
        switch self {
        case .notStarted: "the bus is not listening yet: call start() first"
        case .alreadyStarted: "the bus is already listening"
        case .shutDown: "the bus has been shut down"
        case .frameTooLarge(let bytes, let max): "message of \(bytes) bytes exceeds the maximum frame size \(max)"
        case .connectFailed(let peer, let reason): "cannot connect to \(peer): \(reason)"
        }
    }
}

extension BusConfiguration {
    /// Reads of up to 256 KiB on a busy connection (NIO's default stops at 64 KiB, less than one
    /// 64 KiB message and its header, so every such frame spanned two reads and was copied);
    /// small on a quiet one. Chosen by Benchmarks/bus-bench.sh. Starts at 2 KiB: each channel keeps
    /// its receive buffer between reads (NIO's pooled receive buffer), and a master holds two
    /// mostly quiet channels per agent (Benchmarks/scale-bench.sh: leader RSS per agent).
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 2 * 1024, maximum: 256 * 1024)
}

extension BusConfiguration {
    /// Every connection's socket options, accepted or a link's, set in place on its loop: a
    /// bootstrap's `channelOption`s each go through a future of their own (a twentieth of a new
    /// leader's CPU while it connected back to 10,000 agents).
    func configure(_ channel: any Channel) throws {
        guard let options = channel.syncOptions else { throw ChannelError.operationUnsupported }
        try options.setOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        try options.setOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
        try options.setOption(ChannelOptions.recvAllocator, value: BusConfiguration.receiveAllocator)
        // A link may write over an accepted connection (a return route): the same back-pressure.
        try options.setOption(ChannelOptions.writeBufferWaterMark, value: writeBufferWaterMark)
    }
}
