/// The one place durations are converted (to and from the seconds the wire and flags use).
extension Duration {
    /// The duration as fractional seconds (timestamps on the wire are seconds as doubles).
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// Whole milliseconds (truncated toward zero; saturating).
    public var milliseconds: Int64 {
        let (ms, overflow) = components.seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return components.seconds < 0 ? .min : .max }
        return ms.addingReportingOverflow(components.attoseconds / 1_000_000_000_000_000).partialValue
    }

    /// Whole nanoseconds (truncated toward zero; saturating at Int64's bounds), as TimeInfo carries them.
    public var nanosecondsSaturating: Int64 {
        let (ns, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return components.seconds < 0 ? .min : .max }
        return ns.addingReportingOverflow(components.attoseconds / 1_000_000_000).partialValue
    }

    /// Longest duration a peer may ask for in seconds (Mesos's own limits are far below: weeks).
    public static let maxWireSeconds: Double = 100 * 365 * 86_400

    /// A duration from seconds that arrived from a peer or a flag: nil for NaN, infinities,
    /// negative values and anything above `maxWireSeconds`, never a trap.
    public init?(validatingSeconds seconds: Double) {
        guard seconds.isFinite, seconds >= 0, seconds <= Self.maxWireSeconds else { return nil }
        self = .nanoseconds(Int64((seconds * 1e9).rounded()))
    }
}
