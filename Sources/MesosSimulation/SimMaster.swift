import MesosCore
import MesosWire

/// A simulated `mesos-master`: the real `MasterCore`, `LeaderContenderCore`,
/// `LeaderDetectorCore` and `RegistryWriteCore`, with a shell that does what `MasterDaemon` and
/// the ZooKeeper shells do, against the in-memory ZooKeeper and network.
final class SimMaster: SimNode {
    let slot: Int
    private(set) var core: MasterCore?
    private var contender = LeaderContenderCore()
    private var detector: SimDetector!
    private var client: SimZKClient!
    /// The work directory's epoch file: survives restarts.
    private(set) var epochFile: UInt64 = 0
    private var joined = false
    private var writer: RegistryWriter
    private var queuedWrites: (change: RegistryChange, tokens: [Int])?
    private var writing = false
    /// Why each run of this process ended on its own, in order.
    private(set) var exits: [ExitReason] = []

    init(world: World, slot: Int) {
        self.slot = slot
        writer = RegistryWriter(layout: RegistryLayout(groupPath: world.groupPath))
        super.init(world: world, name: "master\(slot)", pid: PID(name: "master", host: "10.0.1.\(slot)", port: 5050))
    }

    var isLeading: Bool { core?.isLeading ?? false }
    var epoch: UInt64? { core?.epoch }

    override func started() {
        var settings = MasterSettings()
        settings.agentPingTimeout = world.settings.agentPingTimeout
        settings.maxAgentPingTimeouts = world.settings.maxAgentPingTimeouts
        settings.allocationInterval = world.settings.allocationInterval
        settings.agentReregisterTimeout = world.settings.agentReregisterTimeout
        settings.agentRemovalRateLimit = world.settings.agentRemovalRateLimit
        settings.recoveryAgentRemovalLimit = world.settings.recoveryAgentRemovalLimit
        let info = MasterInfo(id: "\(name)-\(incarnation)", ip: MasterInfoJSON.packedIPv4(pid.host) ?? 0, port: UInt32(pid.port), pid: pid.description, hostname: name)
        core = MasterCore(info: info, pid: pid, settings: settings)
        contender = LeaderContenderCore()
        joined = false
        writer = RegistryWriter(layout: RegistryLayout(groupPath: world.groupPath))
        queuedWrites = nil
        writing = false
        client = SimZKClient(world: world, node: self, timeout: world.settings.sessionTimeout)
        detector = SimDetector(world: world, node: self, client: client) { [unowned self] leader in feed(.leaderDetected(leader)) }
        client.onEvent = { [unowned self] event in self.sessionEvent(event) }
        client.start()
        world.trace("\(name): started (incarnation \(incarnation))")
    }

    override func stopped() {
        client.kill()
        world.trace("\(name): died")
    }

    /// SIGTERM: withdraw (delete our znode), close the session, exit.
    override func terminate() {
        guard isAlive else { return }
        for effect in contender.handle(.withdraw) {
            if case .request(.delete(let node)) = effect, world.zkReachable(self) { world.zk.delete(world.groupPath + "/" + node) }
        }
        client.close()
        world.trace("\(name): terminated (withdrew)")
        die()
    }

    override func tick() { feed(.tick(now: world.now)) }

    override func deliver(_ envelope: Envelope) {
        guard let core else { return }
        let droppedBefore = core.metrics.droppedTotal
        let epochBefore = core.isLeading ? core.epoch : nil
        feed(.message(Inbound(envelope)))
        // Invariant 1 (master side): a leading master acts only on messages at its own epoch.
        if let leading = epochBefore, let after = self.core, after.metrics.droppedTotal == droppedBefore,
            envelope.epoch != leading, !(envelope.payload.map { if case .leaderHint = $0 { true } else { false } } ?? true)
        {
            world.violation(.followerActsOnlyOnTheLeader, "\(name) leading at epoch \(leading) acted on \(envelope.payload?.kind ?? "?") from \(envelope.from) at epoch \(envelope.epoch)")
        }
    }

    override func linkBroken(_ endpoint: String) { feed(.linkBroken(endpoint: endpoint)) }

    // MARK: The master core

    func feed(_ event: MasterCore.Event) {
        guard isAlive, core != nil else { return }
        let wasLeading = core!.isLeading
        for effect in core!.handle(event) { perform(effect) }
        if !wasLeading, let core, core.isLeading, let e = core.epoch { becameLeader(e) }
    }

    private func becameLeader(_ epoch: UInt64) {
        // Invariant 2: one master per epoch, and epochs only grow.
        if let other = world.truth.leaderOfEpoch[epoch], other != name {
            world.violation(.oneLeaderPerEpoch, "\(name) leads at epoch \(epoch), which \(other) led")
        }
        if epoch <= world.truth.highestLeadingEpoch {
            world.violation(.oneLeaderPerEpoch, "\(name) leads at epoch \(epoch), not above \(world.truth.highestLeadingEpoch)")
        }
        world.truth.leaderOfEpoch[epoch] = name
        world.truth.highestLeadingEpoch = max(world.truth.highestLeadingEpoch, epoch)
    }

    private func perform(_ effect: MasterCore.Effect) {
        switch effect {
        case .send(let payload, let to):
            world.network.send(from: self, to: to, Envelope(epoch: core?.epoch ?? 0, from: pid.description, payload: payload))
        case .event, .closeStream:
            break  // the simulator's schedulers speak the driver protocol; no v1 streams here
        case .loadRegistry:
            let layout = writer.layout
            client.request({ zk, _ in .success(World.registryNodes(zk, layout)) }) { [unowned self] result in
                switch result {
                case .success(let read):
                    do { feed(.registryLoaded(try writer.loaded(root: read.root, meta: read.meta, agents: read.agents))) } catch { feed(.registryLoadFailed("\(error)")) }
                case .failure(let e):
                    feed(.registryLoadFailed("\(e)"))
                }
            }
        case .storeRegistry(let change, let token):
            if var queued = queuedWrites {
                queued.change.merge(change)
                queued.tokens.append(token)
                queuedWrites = queued
            } else {
                queuedWrites = (change, [token])
            }
            if !writing { writeNext() }
        case .observe(let o):
            world.trace("\(name): \(o.event) \(o.fields.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        case .exit(let reason):
            exits.append(reason)
            world.trace("\(name): exit \(reason.key) (\(reason))")
            client.close()
            die()
        }
    }

    // MARK: Fenced registry writes (as ZooKeeperRegistryStore, with RegistryWriteCore)

    private func writeNext() {
        guard let (change, tokens) = queuedWrites else { writing = false; return }
        queuedWrites = nil
        writing = true
        guard let fence = contender.membership.map({ world.groupPath + "/" + $0 }) else {
            return feed(.registryStoreFailed(fenced: true, reason: "a registry write without a leader znode"))
        }
        writeChunks(writer.plan(change)[...], fence: fence, tokens: tokens, run: incarnation)
    }

    /// The chunks of one write in order, each a `RegistryWriteCore` run (as `ZooKeeperRegistryStore`).
    private func writeChunks(_ chunks: ArraySlice<RegistryWriter.Chunk>, fence: String, tokens: [Int], run: Int) {
        guard let chunk = chunks.first else {
            for token in tokens { feed(.registryStored(token: token)) }
            return writeNext()
        }
        var write = RegistryWriteCore(bytes: chunk.metaBytes, version: writer.metaVersion)
        let effects = write.start()
        runWrite(&write, effects, chunk: chunk, fence: fence, run: run) { [unowned self] in
            writeChunks(chunks.dropFirst(), fence: fence, tokens: tokens, run: run)
        }
    }

    private func runWrite(_ write: inout RegistryWriteCore, _ effects: [RegistryWriteCore.Effect], chunk: RegistryWriter.Chunk, fence: String, run: Int, then: @escaping () -> Void) {
        var machine = write
        for effect in effects {
            switch effect {
            case .multi(let version):
                let ops: [ZKMultiOp] = [.check(fence)] + writer.operations(chunk, metaVersion: version).map { op in
                    switch op {
                    case .create(let p, let d): .create(p, d)
                    case .setData(let p, let d, let v): .setData(p, d, version: v)
                    case .delete(let p): .delete(p)
                    }
                }
                client.request({ zk, _ in zk.multi(ops) }) { [unowned self] result in
                    guard run == incarnation else { return }
                    let event: RegistryWriteCore.Event
                    switch result {
                    case .success(let versions): event = .committed(version: version != nil && versions.count > 1 ? versions[1] : 0)
                    case .failure(.connectionLoss): event = .failed(.connectionLoss)
                    case .failure(.noNode(let p)) where p == fence: event = .failed(.fenceGone)
                    case .failure(.badVersion), .failure(.nodeExists), .failure(.noNode): event = .failed(.versionConflict)
                    case .failure(let e): event = .failed(.other("\(e)"))
                    }
                    let next = machine.handle(event)
                    runWrite(&machine, next, chunk: chunk, fence: fence, run: run, then: then)
                }
            case .readBack:
                let path = writer.layout.metaPath
                client.request({ zk, _ -> Result<([UInt8]?, Int32?, Bool), ZKError> in
                    let found = try? zk.getData(path, watch: nil).get()
                    return .success((found?.0, found?.1, zk.exists(fence, watch: nil)))
                }) { [unowned self] result in
                    guard run == incarnation else { return }
                    let event: RegistryWriteCore.Event = switch result {
                    case .success(let (bytes, version, fenceExists)): .readBack(bytes: bytes, version: version, fenceExists: fenceExists)
                    case .failure: .readBackFailed(.connectionLoss)
                    }
                    let next = machine.handle(event)
                    runWrite(&machine, next, chunk: chunk, fence: fence, run: run, then: then)
                }
            case .retry(let delay):
                world.after(delay) { [unowned self] in
                    guard run == incarnation, isAlive else { return }
                    let next = machine.handle(.retryDue)
                    runWrite(&machine, next, chunk: chunk, fence: fence, run: run, then: then)
                }
            case .stored(let version):
                writer.committed(chunk, metaVersion: version)
                then()
            case .failed(let fenced, let reason):
                writing = false
                feed(.registryStoreFailed(fenced: fenced, reason: reason))
            }
        }
        write = machine
    }

    // MARK: ZooKeeper: session events, contender and detector shells

    private func sessionEvent(_ event: SimSessionEvent) {
        switch event {
        case .connected:
            detector.sessionEvent(event)
            if !joined {
                joined = true
                // The epoch floor: the registry's highest epoch, and this work directory's.
                let layout = writer.layout
                client.request({ zk, _ in
                    .success(RegistryLayout.highestEpoch(root: try? zk.getData(layout.root, watch: nil).get().0, meta: try? zk.getData(layout.metaPath, watch: nil).get().0))
                }) { [unowned self] result in
                    feedContender(.start(ledInRegistry: (try? result.get()) ?? 0, ledHere: epochFile))
                }
            }
        case .expired:
            feedContender(.sessionLost)  // first: the reason is the session, not "no leader detected"
            detector.sessionEvent(event)
        case .disconnected:
            break
        }
    }

    private func feedContender(_ event: LeaderContenderCore.Event) {
        guard isAlive else { return }
        for effect in contender.handle(event) {
            switch effect {
            case .request(let r): contenderRequest(r)
            case .retry(let r, let delay): world.after(delay) { [unowned self] in feedContender(.retryDue(r)) }
            case .observe(let o): world.trace("\(name): \(o.event) \(o.fields.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            case .elected(let epoch):
                epochFile = max(epochFile, epoch)
                feed(.elected(epoch: epoch))
            case .lost(let loss): feed(.candidacyLost(loss))
            }
        }
    }

    private func contenderRequest(_ request: LeaderContenderCore.Request) {
        let group = world.groupPath
        let data = MasterInfoJSON.encode(core?.info ?? MasterInfo(id: name, ip: 0, port: 0))
        func failed(_ e: ZKError) {
            feedContender(.failed(request, retryable: e == .connectionLoss, error: "\(e)"))
        }
        switch request {
        case .createFloorMarker, .createMembership:
            let prefix = request == .createFloorMarker ? LeaderGroup.floorMarkerPrefix : LeaderGroup.label
            client.request({ zk, session in
                zk.createPath(group)
                return zk.create(group + "/" + prefix, data: request == .createFloorMarker ? [] : data, ephemeral: true, sequential: true, session: session)
            }) { [unowned self] result in
                switch result {
                case .success(let path):
                    let leaf = SimZooKeeper.leaf(of: path)
                    feedContender(request == .createFloorMarker ? .floorMarkerCreated(leaf) : .joined(leaf))
                case .failure(let e): failed(e)
                }
            }
        case .listChildren:
            client.request({ zk, _ in zk.children(group, watch: nil) }) { [unowned self] result in
                switch result {
                case .success(let names): feedContender(.children(names))
                case .failure(let e): failed(e)
                }
            }
        case .watchPredecessor(let node), .watchMembership(let node):
            let own = { if case .watchMembership = request { true } else { false } }()
            watchDeletion(of: group + "/" + node) { [unowned self] outcome in
                switch outcome {
                case .success(true): feedContender(own ? .membershipDeleted : .predecessorGone)
                case .success(false): break  // the session went: its event ends the candidacy
                case .failure(let e): failed(e)
                }
            }
        case .delete(let node):
            client.request({ zk, _ in zk.deleteChecked(group + "/" + node) }) { _ in }
        }
    }

    /// Resolves true once `path` is deleted (false: the session went), re-watching on changes.
    private func watchDeletion(of path: String, _ done: @escaping (Result<Bool, ZKError>) -> Void) {
        guard let watcher = client.watcher({ [unowned self] event in
            switch event {
            case .deleted: done(.success(true))
            case .sessionLost: done(.success(false))
            default: watchDeletion(of: path, done)
            }
        }) else { return done(.failure(.connectionLoss)) }
        client.request({ zk, _ in .success(zk.exists(path, watch: watcher)) }) { result in
            switch result {
            case .success(false): done(.success(true))
            case .success(true): break
            case .failure(let e): done(.failure(e))
            }
        }
    }
}

/// The detector shell every simulated process has (as `ZooKeeperLeaderDetector`): the real
/// `LeaderDetectorCore`, its requests run against the in-memory ZooKeeper; results and watches
/// of an older session round are dropped.
final class SimDetector {
    private unowned let world: World
    private unowned let node: SimNode
    private let client: SimZKClient
    private(set) var core: LeaderDetectorCore
    private var round = 0
    private let report: (Leader?) -> Void

    init(world: World, node: SimNode, client: SimZKClient, epochFloor: UInt64 = 0, report: @escaping (Leader?) -> Void) {
        self.world = world
        self.node = node
        self.client = client
        self.core = LeaderDetectorCore(epochFloor: epochFloor)
        self.report = report
    }

    var leader: Leader? { core.leader }

    func sessionEvent(_ event: SimSessionEvent) {
        switch event {
        case .connected:
            round += 1
            feed(.connected)
        case .expired:
            round += 1
            feed(.sessionLost)
        case .disconnected:
            break
        }
    }

    private func feed(_ event: LeaderDetectorCore.Event) {
        guard node.isAlive else { return }
        for effect in core.handle(event) {
            switch effect {
            case .request(let r): perform(r)
            case .retry(let r, let delay):
                let at = round
                world.after(delay) { [weak self] in if let self, at == round { feed(.retryDue(r)) } }
            case .report(let leader):
                world.trace("\(node.name): detector reports \(leader.map { "\($0)" } ?? "no leader")")
                report(leader)
            case .observe(let o): world.trace("\(node.name): \(o.event) \(o.fields.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            }
        }
    }

    private func perform(_ request: LeaderDetectorCore.Request) {
        let group = world.groupPath, round = self.round
        let inRound: (@escaping () -> Void) -> Void = { [weak self] body in if let self, self.round == round { body() } }
        switch request {
        case .listChildrenAndWatch:
            let watcher = client.watcher { [weak self] event in inRound { self?.feed(.childrenChanged) } }
            guard let watcher else { return inRound { self.feed(.failed(request, error: "CONNECTIONLOSS")) } }
            client.request({ zk, _ in zk.children(group, watch: watcher) }) { [weak self] result in
                inRound {
                    switch result {
                    case .success(let names): self?.feed(.children(names))
                    case .failure(.noNode): self?.feed(.groupMissing)
                    case .failure(let e): self?.feed(.failed(request, error: "\(e)"))
                    }
                }
            }
        case .watchGroupCreation:
            let watcher = client.watcher { [weak self] event in
                guard event == .created else { return }
                inRound { self?.feed(.groupCreated) }
            }
            guard let watcher else { return }
            client.request({ zk, _ in .success(zk.exists(group, watch: watcher)) }) { [weak self] result in
                if case .success(true) = result { inRound { self?.feed(.groupCreated) } }
            }
        case .readMember(let name):
            client.request({ zk, _ in zk.getData(group + "/" + name, watch: nil) }) { [weak self] result in
                inRound {
                    switch result {
                    case .success(let (data, _)): self?.feed(.memberData(name: name, data: data))
                    case .failure(.noNode): self?.feed(.memberData(name: name, data: nil))
                    case .failure(let e): self?.feed(.failed(request, error: "\(e)"))
                    }
                }
            }
        }
    }
}
