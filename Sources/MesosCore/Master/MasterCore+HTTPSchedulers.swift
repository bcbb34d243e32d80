import MesosWire

/// How a framework's scheduler is connected. A v1 framework is a framework like any other; only
/// the way the master's messages reach it differs: over the bus to its driver's pid, or as
/// events on the stream of its current `SUBSCRIBE` (Mesos's v1 scheduler HTTP API).
public enum FrameworkConnection: Sendable, Hashable, CustomStringConvertible {
    case driver(PID)
    case http(StreamID)

    public var description: String {
        switch self {
        case .driver(let pid): pid.description
        case .http(let stream): "http-stream:\(stream.value)"
        }
    }
}

/// The id of one v1 subscription's event stream (`Mesos-Stream-Id`), minted by the leading
/// master and bound to its epoch: its value names the master and the epoch, so no other master
/// (a deposed leader, or the next one) ever holds a stream of that id.
public struct StreamID: Sendable, Hashable, CustomStringConvertible {
    public var value: String
    public var epoch: UInt64

    public init(value: String, epoch: UInt64) {
        self.value = value
        self.epoch = epoch
    }

    public var description: String { value }
}

/// The answer to a `SUBSCRIBE`.
public enum SubscribeOutcome: Sendable, Hashable {
    /// The stream is open (200 with its `Mesos-Stream-Id`); its events are among the effects.
    /// A framework refused as Mesos does it after the headers (e.g. "Framework has been removed")
    /// gets one ERROR event and the stream's end.
    case subscribed(StreamID)
    /// No stream: this status and message instead.
    case refused(status: Int, message: String)
}

/// The answer to any other v1 call: 202 Accepted (its results come as events), or a refusal
/// with Mesos's status code and message.
public enum SchedulerCallOutcome: Sendable, Hashable {
    case accepted
    case refused(status: Int, message: String)
}

extension MasterCore {
    /// A message for a framework, the way its scheduler is connected.
    func deliver(_ payload: Envelope.Payload, to connection: FrameworkConnection) -> Effect {
        switch connection {
        case .driver(let pid): .send(payload, to: pid)
        case .http(let stream): .event(payload, stream: stream)
        }
    }

    /// An older scheduler instance after a failover: told "Framework failed over"; a v1 stream
    /// ends after that event.
    func fence(_ old: FrameworkConnection) -> [Effect] {
        let error = deliver(.frameworkError(FrameworkErrorMessage(message: FrameworkRefusal.failedOver.description)), to: old)
        if case .http(let stream) = old { return [error, .closeStream(stream)] }
        return [error]
    }

    /// `SUBSCRIBE` (Mesos's `Master::subscribe(HttpConnection, ...)`): a new framework, or an
    /// existing one's scheduler coming back (after its stream broke, a master failover, or from a
    /// new instance). An HTTP subscription always fails over (MESOS-4712): a connected older
    /// scheduler, v1 or driver, is told "Framework failed over" and fenced.
    public mutating func subscribe(_ fw: FrameworkInfo, principal: String? = nil) -> (SubscribeOutcome, [Effect]) {
        guard case .leading(let epoch) = phase else { return (.refused(status: 503, message: "Master has not finished recovery"), []) }
        do {
            try MessageValidation.framework(fw, "subscribe.framework_info")
        } catch {
            metrics.invalidMessages += 1
            return (.refused(status: 400, message: "Failed to validate scheduler::Call: \(error)"), [])
        }
        nextStream += 1
        let stream = StreamID(value: "\(info.id)-e\(epoch)-s\(nextStream)", epoch: epoch)
        let to = FrameworkConnection.http(stream)
        let peer = PeerIdentity(principal: principal)
        func refuse(_ refusal: FrameworkRefusal) -> (SubscribeOutcome, [Effect]) {
            (.subscribed(stream), [
                .observe(.subscriptionRefused(stream: stream, reason: refusal)),
                .event(.frameworkError(FrameworkErrorMessage(message: refusal.description)), stream: stream), .closeStream(stream),
            ])
        }
        if let refusal = refusal(for: fw, peer: peer) { return refuse(refusal) }
        var effects: [Effect] = []
        let id: FrameworkID
        if let given = fw.id, var record = frameworks[given] {
            id = given
            if record.principal != principal, record.connection != nil {
                return refuse(.principalMismatch(claimed: principal, authenticated: record.principal))
            }
            if let old = record.reachable {
                metrics.frameworkFailovers += 1
                effects += fence(old)
                effects.append(.observe(.frameworkFailedOver(id, from: old, to: to)))
            }
            effects += discardOffers(of: id)
            record.info = fw
            record.connection = to
            record.principal = principal
            record.state = .connected
            record.active = true
            record.nextNotice = nil
            record.failoverTimeout = timeout(of: fw)
            frameworks[id] = record
        } else {
            // New, or unknown to this master (e.g. after a master failover with no agent back yet
            // that runs its tasks): accepted with the id it gives, as Mesos.
            id = fw.id ?? FrameworkID(value: newID("F"))
            var stored = fw
            stored.id = id
            frameworks[id] = FrameworkRecord(info: stored, connection: to, principal: principal, state: .connected, failoverTimeout: timeout(of: fw))
        }
        lastAllocation = nil  // offer to it on the next tick
        effects.append(.event(.frameworkRegistered(FrameworkRegisteredMessage(frameworkID: id, masterInfo: info)), stream: stream))
        effects.append(.observe(.frameworkSubscribed(id, name: fw.name, stream: stream)))
        return (.subscribed(stream), effects)
    }

    /// Any call but `SUBSCRIBE`, translated into the message a driver would send for it
    /// (`TEARDOWN`: `unregisterFramework`, `ACCEPT`: `launchTasks`, ...). It acts only for the
    /// framework's current v1 subscription (`streamID`, Mesos's checks and codes in that order);
    /// then the same rules as for a driver's message run.
    public mutating func schedulerCall(_ payload: Envelope.Payload, framework id: FrameworkID, streamID: String?) -> (SchedulerCallOutcome, [Effect]) {
        func refused(_ status: Int, _ message: String) -> (SchedulerCallOutcome, [Effect]) {
            metrics.invalidMessages += 1
            return (.refused(status: status, message: message), [.observe(.httpCallRefused(framework: id, kind: payload.kind, status: status, reason: message))])
        }
        guard isLeading else { return (.refused(status: 503, message: "Master has not finished recovery"), []) }
        guard let fw = frameworks[id] else { return refused(400, "Framework cannot be found") }
        guard let connection = fw.reachable else { return refused(403, "Framework is not subscribed") }
        guard case .http(let current) = connection else { return refused(403, "Framework is not connected via HTTP") }
        guard let streamID else { return refused(400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header") }
        guard streamID == current.value, current.epoch == epoch else {
            return refused(400, "The stream ID '\(streamID)' included in this request didn't match the stream ID currently associated with framework ID \(id.value)")
        }
        do {
            try MessageValidation.validate(payload)
        } catch {
            return refused(400, "Failed to validate scheduler::Call: \(error)")
        }
        switch payload {
        case .unregisterFramework(let m) where m.frameworkID == id: return (.accepted, removeFramework(id, reason: .unregistered))
        case .launchTasks(let m) where m.frameworkID == id: return (.accepted, launch(m, replyTo: connection))
        case .declineOffers(let m) where m.frameworkID == id: return (.accepted, decline(m))
        case .reviveOffers(let m) where m.frameworkID == id: return (.accepted, revive(id))
        case .suppressOffers(let m) where m.frameworkID == id: return (.accepted, suppress(id))
        case .killTask(let m) where m.frameworkID == id: return (.accepted, kill(m, replyTo: connection))
        case .reconcileTasks(let m) where m.frameworkID == id: return (.accepted, reconcile(m, replyTo: connection))
        case .statusUpdateAck(let m) where m.frameworkID == id: return (.accepted, acknowledge(m))
        case .frameworkToExecutor(let m) where m.frameworkID == id: return (.accepted, frameworkToExecutor(m))
        default: return refused(400, "Not a scheduler call for framework \(id.value): \(payload.kind)")
        }
    }

    /// A v1 stream ended: if it was its framework's current subscription, the framework is
    /// disconnected (offers discarded) and its `failover_timeout` starts, as when a driver's link breaks.
    mutating func streamClosed(_ stream: StreamID) -> [Effect] {
        guard isLeading, let (id, fw) = frameworks.first(where: { $0.value.isConnected && $0.value.connection == .http(stream) }) else { return [] }
        var effects = discardOffers(of: id)
        frameworks[id]?.state = .disconnected(since: now)
        effects.append(.observe(.frameworkDisconnected(id, failoverTimeout: fw.failoverTimeout)))
        return effects
    }
}
