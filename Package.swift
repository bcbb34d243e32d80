// swift-tools-version:6.0
import Foundation
import PackageDescription

let package = Package(
    name: "MesosHA",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MesosWire", targets: ["MesosWire"]),
        .library(name: "MesosBus", targets: ["MesosBus"]),
        .library(name: "ZooKeeper", targets: ["ZooKeeper"]),
        .library(name: "MesosCore", targets: ["MesosCore"]),
        .library(name: "MesosHA", targets: ["MesosHA"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // ZooKeeper C client (libzookeeper-mt-dev; no .pc file, linked by the modulemap).
        .systemLibrary(name: "CZooKeeper", path: "Sources/CZooKeeper", providers: [.apt(["libzookeeper-mt-dev"])]),
        // protoc-c output, committed; regenerate with scripts/gen-proto.
        .target(name: "MesosProtoC", path: "Sources/MesosProtoC", linkerSettings: [.linkedLibrary("protobuf-c")]),
        // protoc-c marks Mesos's deprecated fields (v1 `role`) deprecated in C; the conversions must
        // still read and write them, so the attribute is off where they are imported.
        .target(name: "MesosWire", dependencies: ["MesosProtoC"], swiftSettings: [.unsafeFlags(["-Xcc", "-DPROTOBUF_C__NO_DEPRECATED"])]),
        // Every pure state machine (no NIO, no ZooKeeper, no clocks, no logging): MesosWire only.
        .target(name: "MesosCore", dependencies: ["MesosWire"]),
        .testTarget(name: "MesosCoreTests", dependencies: ["MesosCore"]),
        // The deterministic cluster simulator (the real cores over in-memory ZooKeeper and network).
        .target(name: "MesosSimulation", dependencies: ["MesosCore", "MesosWire"]),
        .executableTarget(
            name: "simulate",
            dependencies: ["MesosSimulation", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "SimulationTests", dependencies: ["MesosSimulation", "MesosCore", "MesosWire"]),
        .target(
            name: "MesosBus",
            dependencies: [
                "MesosWire",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The operator surface (HTTP on the bus port): routes, JSON, metrics, the dashboard; decisions
        // are pure functions of a daemon's snapshot.
        .target(
            name: "MesosHTTP",
            dependencies: [
                "MesosBus",
                "MesosWire",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .testTarget(name: "MesosHTTPTests", dependencies: ["MesosHTTP", "MesosBus"]),
        .executableTarget(
            name: "bus-bench",
            dependencies: [
                "MesosBus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/BusBench"),
        .testTarget(name: "MesosWireTests", dependencies: ["MesosWire"]),
        .testTarget(
            name: "MesosBusTests",
            dependencies: [
                "MesosBus", "TestSupport", "ProcessSupport", .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        // ZooKeeper shells of the contender and detector cores, and the registry stores.
        .target(
            name: "MesosHA",
            dependencies: ["MesosCore", "MesosWire", "MesosDaemon", "ZooKeeper", .product(name: "Logging", package: "swift-log")]),
        // What the daemons' shells share: the bus runtime (set-up, effects, exit codes), milestone
        // logging, the clock, flags, signals, processes.
        .target(
            name: "MesosDaemon",
            dependencies: ["MesosCore", "MesosWire", "MesosBus", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "mesosctl",
            dependencies: [
                "MesosCore", "MesosHA", "MesosDaemon", "ZooKeeper",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .target(
            name: "MesosMaster",
            dependencies: ["MesosCore", "MesosHA", "MesosWire", "MesosBus", "MesosDaemon", "MesosHTTP", "ZooKeeper", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "MesosDaemonTests", dependencies: ["MesosDaemon", "MesosCommands", "MesosCore"]),
        .target(
            name: "MesosAgent",
            dependencies: ["MesosCore", "MesosHA", "MesosWire", "MesosBus", "MesosDaemon", "MesosHTTP", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "MesosExecutor",
            dependencies: ["MesosCore", "MesosWire", "MesosBus", "MesosDaemon", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "mesos-executor", dependencies: ["MesosExecutor", "MesosDaemon", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "MesosScheduler",
            dependencies: ["MesosCore", "MesosHA", "MesosWire", "MesosBus", "MesosDaemon", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "MesosCommands",
            dependencies: [
                "MesosMaster", "MesosAgent", "MesosDaemon", "MesosBus", "MesosCore", "ZooKeeper",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "mesos-master", dependencies: ["MesosCommands"]),
        .executableTarget(name: "mesos-agent", dependencies: ["MesosCommands"]),
        .executableTarget(name: "mesos-slave", dependencies: ["MesosCommands"]),
        .executableTarget(
            name: "example-framework",
            dependencies: ["MesosScheduler", "MesosCore", "MesosBus", "MesosDaemon", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "MesosHATests", dependencies: ["MesosHA", "MesosCore", "TestSupport", "ZooKeeper"]),
        .target(name: "ZooKeeper", dependencies: ["CZooKeeper", "MesosCore", "MesosWire", .product(name: "Logging", package: "swift-log")]),
        // Helpers for test targets: throw-away ZooKeeper servers, polling.
        // Processes, polls, milestones and throw-away ZooKeeper servers, for tests and benchmarks
        // (no Swift Testing); TestSupport adds the cluster harness of the tests on top.
        .target(name: "ProcessSupport", dependencies: ["MesosDaemon", "FaultProxy"], path: "Tests/ProcessSupport"),
        .target(name: "TestSupport", dependencies: ["ProcessSupport", "MesosDaemon", "FaultProxy"], path: "Tests/TestSupport"),
        .testTarget(
            name: "ZooKeeperTests",
            dependencies: ["ZooKeeper", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ClusterTests", dependencies: ["TestSupport", "MesosWire", "MesosCore", "MesosHA", "MesosBus", "MesosScheduler", "FaultProxy"]),
        // Fault injection (issue 6): a TCP proxy that passes, delays, blackholes or resets, and the partition tests.
        .target(name: "FaultProxy"),
        .testTarget(name: "FaultTests", dependencies: ["FaultProxy", "TestSupport", "MesosWire", "MesosCore", "MesosBus", "MesosHA"]),
        // Failover benchmark (Benchmarks/failover-bench.sh): many agents in one process, and the harness.
        .executableTarget(
            name: "agent-swarm",
            dependencies: [
                "MesosAgent", "MesosCore", "MesosDaemon", "MesosHA", "MesosWire", .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Agent restart benchmark (Benchmarks/agent-restart-bench.sh).
        .executableTarget(
            name: "agent-restart-bench",
            dependencies: ["ProcessSupport", "MesosDaemon", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/AgentRestart"),
        // Registry recovery benchmark (Benchmarks/registry-bench.sh).
        .executableTarget(
            name: "registry-bench",
            dependencies: ["MesosCore", "MesosHA", "MesosWire", "ZooKeeper", "ProcessSupport", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/Registry"),
        // The master core's cost per agent as the cluster grows (Benchmarks/master-core-bench.sh).
        .executableTarget(name: "master-core-bench", dependencies: ["MesosCore", "MesosWire"], path: "Benchmarks/MasterCore"),
        .executableTarget(
            name: "failover-bench",
            dependencies: [
                "MesosScheduler", "MesosCore", "MesosHA", "MesosDaemon", "MesosWire", "ZooKeeper", "FaultProxy", "ProcessSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/Failover/Harness"),
    ]
)

// The libFuzzer target exists only in fuzzing builds (scripts/fuzz): libFuzzer supplies its main.
if ProcessInfo.processInfo.environment["MESOS_FUZZ"] != nil {
    package.targets.append(
        .executableTarget(
            name: "frame-fuzz", dependencies: ["MesosWire", "MesosCore"], path: "Fuzz/FrameFuzz",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    package.targets.append(
        .executableTarget(
            name: "core-fuzz", dependencies: ["MesosWire", "MesosCore"], path: "Fuzz/CoreFuzz",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
}
