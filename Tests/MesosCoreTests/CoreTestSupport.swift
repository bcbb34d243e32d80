import MesosCore
import MesosWire
import Testing

/// Pids used across the core tests.
enum P {
    static let master = PID("master@10.0.0.1:5050")!
    static let master2 = PID("master@10.0.0.2:5050")!
    static let agent = PID("slave(1)@10.0.0.9:5051")!
    static let agent2 = PID("slave(1)@10.0.0.10:5051")!
    static let scheduler = PID("scheduler-1@10.0.0.20:6000")!
    static let scheduler2 = PID("scheduler-2@10.0.0.21:6000")!
    static let stranger = PID("evil@10.0.0.66:1")!
}

func masterInfo(_ pid: PID, id: String = "m") -> MasterInfo {
    MasterInfo(id: id, ip: MasterInfoJSON.packedIPv4(pid.host) ?? 0, port: UInt32(pid.port), pid: pid.description)
}

func leader(_ pid: PID, epoch: UInt64) -> Leader { Leader(epoch: epoch, pid: pid, info: masterInfo(pid)) }

func envelope(_ payload: Envelope.Payload, from: PID, epoch: UInt64) -> Envelope {
    Envelope(epoch: epoch, from: from.description, payload: payload)
}

/// The payloads sent to `to`, in order.
func payloads<T>(_ sent: [(Envelope.Payload, PID)], to: PID, _ match: (Envelope.Payload) -> T?) -> [T] {
    sent.filter { $0.1 == to }.compactMap { match($0.0) }
}

extension Envelope.Payload {
    var statusUpdate: StatusUpdateMessage? { if case .statusUpdate(let m) = self { m } else { nil } }
    var offers: ResourceOffersMessage? { if case .resourceOffers(let m) = self { m } else { nil } }
    var frameworkError: String? { if case .frameworkError(let m) = self { m.message } else { nil } }
    var refused: MessageRefusedMessage? { if case .messageRefused(let m) = self { m } else { nil } }
    var isShutdown: Bool { if case .shutdown = self { true } else { false } }
    var isPing: Bool { if case .ping = self { true } else { false } }
}

/// Drives `MasterCore` with events only: no sockets, no ZooKeeper, no clock. Registry writes
/// complete at once unless `holdWrites`.
struct MasterHarness {
    var core: MasterCore
    var registry: RegistryState?
    var sent: [(Envelope.Payload, PID)] = []
    /// Events for v1 streams, and the streams ended, in order.
    var streamed: [(Envelope.Payload, StreamID)] = []
    var closedStreams: [StreamID] = []
    var observed: [MasterObservation] = []
    var exited: ExitReason?
    var registryWrites = 0
    /// Every registry write asked for, in order.
    var changes: [RegistryChange] = []
    /// When set, registry writes wait in `heldWrites` until `releaseWrites()`.
    var holdWrites = false
    var heldWrites: [Int] = []
    var now: Duration = .zero
    let epoch: UInt64

    /// - registry: what the registry holds at the start (written as format 1, for brevity).
    init(epoch: UInt64 = 5, registry: Registry? = nil, settings: MasterSettings = .fast, wallClockOrigin: Duration = .zero) {
        core = MasterCore(info: masterInfo(P.master), pid: P.master, settings: settings, wallClockOrigin: wallClockOrigin)
        self.registry = registry.map(RegistryState.init(legacy:))
        self.epoch = epoch
    }

    mutating func feed(_ event: MasterCore.Event) { run([], then: [event]) }

    /// v1 SUBSCRIBE, its effects carried out as `feed` does.
    mutating func subscribe(_ info: FrameworkInfo) -> SubscribeOutcome {
        let (outcome, effects) = core.subscribe(info)
        run(effects, then: [])
        return outcome
    }

    /// Any other v1 call (already translated), its effects carried out.
    mutating func call(_ payload: Envelope.Payload, framework: FrameworkID, stream: String?) -> SchedulerCallOutcome {
        let (outcome, effects) = core.schedulerCall(payload, framework: framework, streamID: stream)
        run(effects, then: [])
        return outcome
    }

    private mutating func run(_ first: [MasterCore.Effect], then events: [MasterCore.Event]) {
        var queue = events
        var effects = first
        while true {
            if effects.isEmpty {
                if queue.isEmpty { return }
                effects = core.handle(queue.removeFirst())
            }
            for effect in effects {
                switch effect {
                case .event(let payload, let stream): streamed.append((payload, stream))
                case .closeStream(let stream): closedStreams.append(stream)
                case .send(let payload, let to): sent.append((payload, to))
                case .loadRegistry: queue.append(.registryLoaded(registry))
                case .storeRegistry(let change, let token):
                    var r = registry ?? RegistryState()
                    r.apply(change)
                    registry = r
                    changes.append(change)
                    registryWrites += 1
                    if holdWrites { heldWrites.append(token) } else { queue.append(.registryStored(token: token)) }
                case .observe(let o): observed.append(o)
                case .exit(let reason): exited = reason
                }
            }
            effects = []
        }
    }

    mutating func releaseWrites() {
        let tokens = heldWrites
        heldWrites = []
        for t in tokens { feed(.registryStored(token: t)) }
    }

    mutating func lead() {
        feed(.elected(epoch: epoch))
        feed(.leaderDetected(leader(P.master, epoch: epoch)))
    }

    mutating func message(_ payload: Envelope.Payload, from: PID, epoch: UInt64? = nil, principal: String? = nil) {
        feed(.message(Inbound(envelope(payload, from: from, epoch: epoch ?? self.epoch), peer: PeerIdentity(principal: principal))))
    }

    mutating func tick(_ by: Duration) {
        now += by
        feed(.tick(now: now))
    }

    /// Answers every ping sent so far, as a healthy agent would.
    mutating func answerPings() {
        for pid in sent.filter({ $0.0.isPing }).map(\.1) { message(.pong(PongAgentMessage()), from: pid) }
    }

    mutating func take() -> [(Envelope.Payload, PID)] {
        defer { sent = [] }
        return sent
    }

    mutating func registerAgent(_ pid: PID = P.agent, cpus: Double = 4, principal: String? = nil) -> AgentID {
        message(.registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h", resources: [Resource(name: "cpus", scalar: cpus), Resource(name: "mem", scalar: 1024)]))), from: pid, principal: principal)
        guard let id = payloads(take(), to: pid, { if case .agentRegistered(let m) = $0 { m.agentID } else { nil } }).first else {
            Issue.record("agent not registered")
            return AgentID(value: "?")
        }
        return id
    }

    mutating func registerFramework(_ pid: PID = P.scheduler, failoverTimeout: Double = 10, partitionAware: Bool = false) -> FrameworkID {
        var fw = FrameworkInfo(user: "u", name: "fw", failoverTimeout: failoverTimeout)
        if partitionAware { fw.capabilities = [FrameworkInfo.Capability(type: .partitionAware)] }
        message(.registerFramework(RegisterFrameworkMessage(framework: fw)), from: pid)
        guard case .frameworkRegistered(let m)? = take().first?.0 else {
            Issue.record("framework not registered")
            return FrameworkID(value: "?")
        }
        return m.frameworkID
    }

    /// The next offer to `framework`'s scheduler, after enough ticks for an allocation.
    mutating func offer(to scheduler: PID = P.scheduler) -> Offer? {
        tick(core.settings.allocationInterval)
        answerPings()
        return payloads(take(), to: scheduler) { $0.offers }.first?.offers.first
    }

    mutating func launch(_ task: String, framework: FrameworkID, offer: Offer, from: PID = P.scheduler, cpus: Double = 1) {
        let info = TaskInfo(name: task, taskID: TaskID(value: task), agentID: offer.agentID, resources: [Resource(name: "cpus", scalar: cpus)], command: CommandInfo(value: "sleep 10"))
        message(.launchTasks(LaunchTasksMessage(frameworkID: framework, tasks: [info], offerIDs: [offer.id])), from: from)
    }
}

extension MasterSettings {
    /// Pings every second; removal after 3 unanswered ones; offers every second.
    static var fast: MasterSettings {
        var s = MasterSettings()
        s.agentPingTimeout = .seconds(1)
        s.maxAgentPingTimeouts = 3
        s.allocationInterval = .seconds(1)
        s.agentReregisterTimeout = .seconds(60)
        return s
    }
}
