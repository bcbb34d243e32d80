/// One fenced registry write, as a pure state machine: the master's shell (and the simulator)
/// does the ZooKeeper calls it asks for.
///
/// The write is a `multi` of a `check` of the writer's own leader znode and a versioned `setData`
/// (or a `create` when there is no registry yet): it commits only while the writer still leads.
/// Connection loss and timeouts are retried. The trap it avoids: a `multi` that committed but
/// whose reply was lost is retried with the old version and fails with BADVERSION (or NODEEXISTS)
/// although no other master wrote. So after a retry, such a failure is checked by reading the
/// registry back: our bytes there, and our leader znode still present, mean the write is in.
public struct RegistryWriteCore: Sendable, Hashable {
    public enum Failure: Sendable, Hashable {
        /// CONNECTIONLOSS, OPERATIONTIMEOUT: the outcome is unknown.
        case connectionLoss
        /// The registry is at another version (or exists, for a create).
        case versionConflict
        /// The `check` failed: our leader znode is gone.
        case fenceGone
        case other(String)
    }

    public enum Event: Sendable, Hashable {
        case committed(version: Int32)
        case failed(Failure)
        /// The registry as read back (nil: absent), and whether our leader znode exists.
        case readBack(bytes: [UInt8]?, version: Int32?, fenceExists: Bool)
        case readBackFailed(Failure)
        case retryDue
    }

    public enum Effect: Sendable, Hashable {
        /// `multi([check(fence), version.map { setData(bytes, version) } ?? create(bytes)])`.
        case multi(version: Int32?)
        case readBack
        case retry(after: Duration)
        case stored(version: Int32)
        /// `fenced`: another master leads (exit as deposed); otherwise the registry is unavailable.
        case failed(fenced: Bool, reason: String)
    }

    public let bytes: [UInt8]
    public private(set) var version: Int32?
    public private(set) var attempts = 0
    private var uncertain = false
    private var reading = false
    private var done = false
    public static let maxAttempts = 50
    public static let retryDelay: Duration = .milliseconds(200)

    /// - version: the registry version last read or written (nil: no registry node yet).
    public init(bytes: [UInt8], version: Int32?) {
        self.bytes = bytes
        self.version = version
    }

    public mutating func start() -> [Effect] { attempt() }

    public mutating func handle(_ event: Event) -> [Effect] {
        guard !done else { return [] }
        switch event {
        case .committed(let v):
            return finish(.stored(version: v))
        case .failed(.connectionLoss), .readBackFailed(.connectionLoss):
            reading = false
            uncertain = true
            return attempts >= Self.maxAttempts ? finish(.failed(fenced: false, reason: "cannot write the registry after \(attempts) attempts")) : [.retry(after: Self.retryDelay)]
        case .failed(.versionConflict):
            // Our own earlier attempt may have committed: look before concluding.
            if uncertain {
                reading = true
                return [.readBack]
            }
            return finish(.failed(fenced: true, reason: "the registry was written by another master"))
        case .failed(.fenceGone):
            return finish(.failed(fenced: true, reason: "our leader znode is gone"))
        case .failed(.other(let why)), .readBackFailed(.other(let why)):
            return finish(.failed(fenced: false, reason: why))
        case .readBackFailed(let f):
            return handle(.failed(f))
        case .readBack(let found, let v, let fenceExists):
            guard reading else { return [] }
            reading = false
            guard fenceExists else { return finish(.failed(fenced: true, reason: "our leader znode is gone")) }
            if found == bytes, let v { return finish(.stored(version: v)) }
            return finish(.failed(fenced: true, reason: "the registry was written by another master"))
        case .retryDue:
            return attempt()
        }
    }

    private mutating func attempt() -> [Effect] {
        attempts += 1
        return [.multi(version: version)]
    }

    private mutating func finish(_ effect: Effect) -> [Effect] {
        done = true
        if case .stored(let v) = effect { version = v }
        return [effect]
    }
}
