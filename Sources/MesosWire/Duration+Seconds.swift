extension Duration {
    /// The duration as fractional seconds (timestamps on the wire are seconds as doubles).
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
