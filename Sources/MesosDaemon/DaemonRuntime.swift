import Logging
import Synchronization
import MesosBus
import MesosCore
import MesosWire

/// What every daemon shell (master, agent, scheduler driver) does the same way: a bus started
/// on its address, the bus's events and the clock's ticks fed to its core, sends posted at an
/// epoch, and one exit code when the core says so. The shells differ only in what they feed and
/// which other effects they carry out.
public final class DaemonRuntime: Sendable {
    public let bus: MessageBus
    public let clock = CoreClock()
    public let logger: Logger
    private let exits = AsyncStream<Int32>.makeStream()
    private let tickHandler = Mutex<(@Sendable (Duration) async -> Void)?>(nil)
    /// The deadline of the last `wake(at:)` (each is asked for once).
    private let wakeDeadline = Mutex<Duration?>(nil)

    public init(bus configuration: BusConfiguration, logger: Logger) {
        self.logger = logger
        bus = MessageBus(configuration: configuration, logger: logger)
    }

    /// Listens as `name@host:port` (or the advertised address) and logs `event=listening`.
    public func start(name: String, host: String, port: Int, advertiseHost: String? = nil, advertisePort: Int? = nil) async throws -> PID {
        let pid = try await bus.start(name: name, host: host, port: port, advertiseHost: advertiseHost, advertisePort: advertisePort)
        logger.milestone("listening", "listening", ["pid": "\(pid)"])
        return pid
    }

    /// Feeds every bus event to `handler`, in order, until the bus shuts down; the clock's ticks
    /// (`onTicks`) come in the same order, behind the messages received before them.
    public func onBusEvents(_ handler: @escaping @Sendable (BusEvent) async -> Void) {
        let events = bus.events
        Task.detached {
            for await event in events {
                if case .tick = event {
                    if let tick = self.tickHandler.withLock({ $0 }) { await tick(self.clock.now) }
                } else {
                    await handler(event)
                }
            }
        }
    }

    /// Feeds the clock's time to `handler` about every `interval` (the cores' timers run on these
    /// ticks). A tick goes through the bus's event stream, so a core sees the messages that came
    /// before it first, and is given the time when it is handled: a daemon that fell behind
    /// catches up with one tick, not with a backlog of stale ones. The timer is the bus's event
    /// loop's (`MessageBus.scheduleTicks`).
    @discardableResult
    public func onTicks(every interval: Duration = .milliseconds(50), _ handler: @escaping @Sendable (Duration) async -> Void) -> BusTimer {
        tickHandler.withLock { $0 = handler }
        return bus.scheduleTicks(every: interval)
    }

    /// One extra tick at clock time `deadline` (or at once if it has passed), for a core's deadline
    /// that falls between two ticks of a coarse `onTicks` interval. The same deadline asked for again
    /// is not scheduled again.
    public func wake(at deadline: Duration) {
        let new = wakeDeadline.withLock { last -> Bool in
            guard last != deadline else { return false }
            last = deadline
            return true
        }
        guard new else { return }
        bus.scheduleTick(after: deadline - clock.now)
    }

    /// Sends `payload` stamped with `epoch`; queued per peer, errors counted by the bus.
    public func send(_ payload: Envelope.Payload, epoch: UInt64, to peer: PID) {
        bus.post(payload, epoch: epoch, to: peer)
    }

    /// Logs the core's reason once (`event=exit reason=<key>`) and makes `waitForExit` return its code.
    public func exit(_ reason: ExitReason) {
        let level: Logger.Level = reason.code == 0 ? .notice : .critical
        logger.milestone("exit", level: level, "exiting: \(reason)", ["reason": "\(reason.key)", "code": "\(reason.code)"])
        exits.continuation.yield(reason.code)
    }

    /// The exit code, once `exit` was called.
    public func waitForExit() async -> Int32 {
        for await code in exits.stream { return code }
        return 1
    }
}

/// Where a daemon listens and how others reach it (`--ip`, `--port`, `--advertise_ip`,
/// `--advertise_port`, `--hostname`), and what its bus requires (`--max_frame_size`, credentials).
public struct DaemonAddress: Sendable, Hashable {
    public var ip = "127.0.0.1"
    public var port: Int
    /// The address others reach this process at (default: the bound one), e.g. a proxy's or NAT's.
    public var advertiseIP: String?
    public var advertisePort: Int?
    /// Published in MasterInfo / AgentInfo (default: this host's name).
    public var hostname: String?

    public init(port: Int) { self.port = port }
}

extension DaemonRuntime {
    /// Listens at `address` as `name@...` (see `start(name:host:port:...)`).
    public func start(name: String, at address: DaemonAddress) async throws -> PID {
        try await start(name: name, host: address.ip, port: address.port, advertiseHost: address.advertiseIP, advertisePort: address.advertisePort)
    }
}

extension BusConfiguration {
    /// A daemon's bus: frames up to `maxFrameSize`; with credentials to prove (links) and to require
    /// (accepted connections); with TLS, refusing certificates of none of `peerRoles`.
    public static func daemon(
        maxFrameSize: Int, writeTimeout: Duration = .seconds(30), credential: Credential? = nil, requiredCredentials: [Credential]? = nil,
        tls: TLSContext? = nil, peerRoles: Set<PeerIdentity.Role>? = nil
    ) -> BusConfiguration {
        var config = BusConfiguration()
        config.tls = tls
        config.peerRoles = tls == nil ? nil : peerRoles
        config.maxFrameSize = maxFrameSize
        config.writeTimeout = .nanoseconds(Int64(clamping: writeTimeout.milliseconds) * 1_000_000)
        config.credential = credential
        config.requiredCredentials = requiredCredentials
        return config
    }
}
