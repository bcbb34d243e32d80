import CoreMetrics
import MesosBus
import Metrics
import Prometheus
import Synchronization

/// One metric as `/metrics/snapshot` lists it (Mesos's name) and `/metrics` exports it.
public struct MetricValue: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case gauge
        /// Only grows (Mesos's counters).
        case counter
    }

    public var name: String
    public var value: Double
    public var kind: Kind

    public init(_ name: String, _ value: Double, _ kind: Kind = .gauge) {
        self.name = name
        self.value = value
        self.kind = kind
    }
}

/// The master's metrics under Mesos's names (src/master/metrics.cpp), plus ours:
/// `master/epoch`, `master/stale_epoch_dropped`, `master/leader_changes` (failovers this master
/// saw), `master/framework_failovers`. A standby publishes the same keys with `master/elected` 0.
public enum MasterMetricsReport {
    public static func values(_ s: MasterSnapshot) -> [MetricValue] {
        let leading = s.role == .leader
        let active = s.agents.filter(\.active)
        let disconnected = s.agents.filter { !$0.active || $0.health != .healthy }
        func tasks(_ state: String) -> Double { Double(s.tasks.filter { $0.state == state }.count) }
        var values: [MetricValue] = [
            MetricValue("master/uptime_secs", max(0, s.now - s.startTime)),
            MetricValue("master/elected", leading ? 1 : 0),
            MetricValue("master/epoch", Double(s.epoch ?? 0)),
            MetricValue("master/slaves_connected", Double(s.agents.count - disconnected.count)),
            MetricValue("master/slaves_disconnected", Double(disconnected.count)),
            MetricValue("master/slaves_active", Double(active.count)),
            MetricValue("master/slaves_inactive", Double(s.agents.count - active.count)),
            MetricValue("master/frameworks_connected", Double(s.frameworks.filter(\.connected).count)),
            MetricValue("master/frameworks_disconnected", Double(s.frameworks.filter { !$0.connected }.count)),
            MetricValue("master/frameworks_active", Double(s.frameworks.filter(\.active).count)),
            MetricValue("master/frameworks_inactive", Double(s.frameworks.filter { !$0.active }.count)),
            MetricValue("master/outstanding_offers", Double(s.outstandingOffers)),
            MetricValue("master/tasks_staging", tasks("TASK_STAGING")),
            MetricValue("master/tasks_starting", tasks("TASK_STARTING")),
            MetricValue("master/tasks_running", tasks("TASK_RUNNING")),
            MetricValue("master/tasks_killing", tasks("TASK_KILLING")),
            MetricValue("master/tasks_unreachable", tasks("TASK_UNREACHABLE")),
            MetricValue("master/tasks_lost", Double(s.counters.tasksLost), .counter),
            MetricValue("master/dropped_messages", Double(s.counters.droppedMessages), .counter),
            MetricValue("master/stale_epoch_dropped", Double(s.counters.staleEpochDropped), .counter),
            MetricValue("master/invalid_messages", Double(s.counters.invalidMessages), .counter),
            MetricValue("master/slave_registrations", Double(s.counters.slaveRegistrations), .counter),
            MetricValue("master/slave_reregistrations", Double(s.counters.slaveReregistrations), .counter),
            MetricValue("master/slave_removals", Double(s.counters.slaveRemovals), .counter),
            MetricValue("master/framework_removals", Double(s.counters.frameworkRemovals), .counter),
            MetricValue("master/framework_failovers", Double(s.counters.frameworkFailovers), .counter),
            MetricValue("master/leader_changes", Double(s.counters.leaderChanges), .counter),
            MetricValue("master/messages_held_during_recovery", Double(s.counters.heldDuringRecovery), .counter),
            MetricValue("registrar/registry_writes", Double(s.counters.registryWrites), .counter),
        ] + BusMetricsReport.values(s.bus)
        for resource in ["cpus", "gpus", "mem", "disk"] {
            let total = active.reduce(0) { $0 + ($1.resources[resource] ?? 0) }
            let used = active.reduce(0) { $0 + ($1.usedResources[resource] ?? 0) }
            values += [
                MetricValue("master/\(resource)_total", total),
                MetricValue("master/\(resource)_used", used),
                MetricValue("master/\(resource)_percent", total > 0 ? used / total : 0),
            ]
        }
        return values.sorted { $0.name < $1.name }
    }
}

/// The message bus's counters, ours (libprocess has no such metrics): what an operator looks at
/// for hostile or stuck peers (`connections_rejected`, `links_stalled`, `messages_dropped`),
/// back-pressure (`reads_paused`, `sends_held_back`), TLS and return routes.
public enum BusMetricsReport {
    public static func values(_ b: BusStats) -> [MetricValue] {
        let counters: [(String, Int)] = [
            ("messages_sent", b.messagesSent), ("messages_received", b.messagesReceived), ("messages_dropped", b.messagesDropped),
            ("messages_dropped_queue_full", b.droppedQueueFull), ("connections_accepted", b.connectionsAccepted),
            ("connections_rejected", b.connectionsRejected), ("connects_failed", b.connectsFailed), ("connects_deferred", b.connectsDeferred), ("links_stalled", b.linksStalled),
            ("links_evicted", b.linksEvicted), ("idle_checks", b.idleChecks), ("sends_held_back", b.sendsHeldBack),
            ("reads_paused", b.readsPaused), ("tls_handshakes", b.tlsHandshakes), ("plaintext_downgrades", b.plaintextDowngrades),
            ("return_routes_adopted", b.returnRoutesAdopted), ("return_routes_declined", b.returnRoutesDeclined),
            ("return_routes_by_source", b.returnRoutesBySource), ("link_source_ports_taken", b.linkSourcePortsTaken),
            ("return_routes_claimed", b.returnRoutesClaimed), ("return_route_claims_unknown", b.returnRouteClaimsUnknown),
        ]
        return counters.map { MetricValue("bus/\($0.0)", Double($0.1), .counter) }
    }
}

/// The agent's metrics under Mesos's names (src/slave/metrics.cpp), plus `slave/master_epoch`
/// and `slave/stale_epoch_dropped`.
public enum AgentMetricsReport {
    public static func values(_ s: AgentSnapshot) -> [MetricValue] {
        let tasks = s.frameworks.flatMap(\.tasks)
        func count(_ state: String) -> Double { Double(tasks.filter { $0.state == state }.count) }
        var values: [MetricValue] = [
            MetricValue("slave/uptime_secs", max(0, s.now - s.startTime)),
            MetricValue("slave/registered", s.registered ? 1 : 0),
            MetricValue("slave/master_epoch", Double(s.master?.epoch ?? 0)),
            MetricValue("slave/frameworks_active", Double(s.frameworks.count)),
            MetricValue("slave/tasks_staging", count("TASK_STAGING")),
            MetricValue("slave/tasks_starting", count("TASK_STARTING")),
            MetricValue("slave/tasks_running", count("TASK_RUNNING")),
            MetricValue("slave/tasks_killing", count("TASK_KILLING")),
            MetricValue("slave/executors_running", Double(s.executorsRunning)),
            MetricValue("slave/dropped_messages", Double(s.droppedMessages), .counter),
            MetricValue("slave/stale_epoch_dropped", Double(s.staleEpochDropped), .counter),
        ] + BusMetricsReport.values(s.bus)
        for resource in ["cpus", "gpus", "mem", "disk"] {
            let total = s.resources[resource] ?? 0
            let used = tasks.filter { !["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR"].contains($0.state) }
                .reduce(0) { $0 + ($1.resources[resource] ?? 0) }
            values += [
                MetricValue("slave/\(resource)_total", total),
                MetricValue("slave/\(resource)_used", used),
                MetricValue("slave/\(resource)_percent", total > 0 ? used / total : 0),
            ]
        }
        return values.sorted { $0.name < $1.name }
    }

    /// `/metrics/snapshot`: a flat object of name to double, keys sorted.
    public static func json(_ values: [MetricValue]) -> JSON { MetricsJSON.object(values) }
}

enum MetricsJSON {
    static func object(_ values: [MetricValue]) -> JSON {
        .object(values.sorted { $0.name < $1.name }.map { ($0.name, .number($0.value)) })
    }
}

/// `/metrics`: the same values in Prometheus's text format, through swift-metrics into a
/// swift-prometheus registry of this exporter's own (no global bootstrap: tests run many daemons'
/// routes in one process). Names become Prometheus names: `master/tasks_running` is
/// `mesos_master_tasks_running`. Counters are advanced by what they grew since the last scrape.
public final class PrometheusExporter: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private struct Handles {
        var gauges: [String: CoreMetrics.Gauge] = [:]
        var counters: [String: (counter: CoreMetrics.Counter, last: Int64)] = [:]
    }
    private let handles = Mutex(Handles())

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = { name, labels in (PrometheusExporter.prometheusName(name), labels) }
        self.factory = factory
    }

    /// `mesos_` + the Mesos name with every character Prometheus does not take as `_`.
    public static func prometheusName(_ mesosName: String) -> String {
        "mesos_" + String(mesosName.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") ? $0 : "_" })
    }

    public func render(_ values: [MetricValue]) -> String {
        handles.withLock { h in
            for value in values {
                switch value.kind {
                case .gauge:
                    let gauge = h.gauges[value.name] ?? CoreMetrics.Gauge(label: value.name, factory: factory)
                    h.gauges[value.name] = gauge
                    gauge.record(value.value)
                case .counter:
                    let now = Int64(value.value)
                    var entry = h.counters[value.name] ?? (CoreMetrics.Counter(label: value.name, factory: factory), 0)
                    if now > entry.last { entry.counter.increment(by: now - entry.last) }
                    entry.last = max(entry.last, now)
                    h.counters[value.name] = entry
                }
            }
        }
        return registry.emitToString()
    }
}
