public enum MesosVersion {
    /// Numeric (x.y.z), as Mesos's `/version` reports it: tools parse it.
    public static let current = "1.11.0"
}
