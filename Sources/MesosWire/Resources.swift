extension TaskState {
    /// A task in this state will never run again (Mesos's `protobuf::isTerminalState`).
    public var isTerminal: Bool {
        switch self {
        case .finished, .failed, .killed, .error, .lost, .dropped, .gone, .goneByOperator: true
        default: false
        }
    }
}

/// Scalar resources by name (cpus, mem, disk...), for fitting tasks into offers.
public struct Resources: Sendable, Hashable, CustomStringConvertible {
    public private(set) var amounts: [String: Double] = [:]

    public init(_ list: [Resource] = []) { for r in list { amounts[r.name, default: 0] += r.scalar } }

    /// Mesos's `--resources` syntax for scalars: `cpus:4;mem:1024;disk:2048`.
    public init?(parsing text: String) {
        for part in text.split(separator: ";") {
            let kv = part.split(separator: ":", maxSplits: 1)
            guard kv.count == 2, let v = Double(trimmed(kv[1])), v >= 0, v.isFinite, !trimmed(kv[0]).isEmpty else { return nil }
            amounts[trimmed(kv[0]), default: 0] += v
        }
    }

    /// Every amount is a finite, non-negative number (a peer may send NaN or -1).
    public var isValid: Bool { amounts.values.allSatisfy { $0.isFinite && $0 >= 0 } }

    public var isEmpty: Bool { !amounts.values.contains { $0 > 1e-9 } }
    public var list: [Resource] {
        amounts.keys.sorted().compactMap { amounts[$0]! > 1e-9 ? Resource(name: $0, scalar: amounts[$0]!) : nil }
    }

    public func contains(_ other: Resources) -> Bool { other.amounts.allSatisfy { amounts[$0.key, default: 0] + 1e-9 >= $0.value } }
    public mutating func subtract(_ other: Resources) { for (k, v) in other.amounts { amounts[k, default: 0] -= v } }
    public mutating func add(_ other: Resources) { for (k, v) in other.amounts { amounts[k, default: 0] += v } }

    public var description: String { list.map { "\($0.name):\($0.scalar)" }.joined(separator: ";") }
}

private func trimmed(_ s: Substring) -> String {
    var t = s
    while t.first?.isWhitespace == true { t = t.dropFirst() }
    while t.last?.isWhitespace == true { t = t.dropLast() }
    return String(t)
}
