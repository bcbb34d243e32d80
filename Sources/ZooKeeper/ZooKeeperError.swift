/// A failed ZooKeeper operation: the ZooKeeper error code and the path it was about,
/// described like `NONODE /mesos/x`.
///
/// Local conditions reuse ZooKeeper's codes: no connection -> `connectionLoss`,
/// no reply in time -> `operationTimeout`, session closed -> `closing`, auth failed -> `authFailed`.
public struct ZooKeeperError: Error, Hashable, CustomStringConvertible {
    public let code: Code
    public let path: String?
    /// For an aborted `multi`: the index of the operation that made it fail.
    public let failedOperation: Int?

    public init(code: Code, path: String?, failedOperation: Int? = nil) {
        self.code = code
        self.path = path
        self.failedOperation = failedOperation
    }

    public var description: String {
        var text = code.description
        if let path { text += " \(path)" }
        if let failedOperation { text += " (multi aborted by operation #\(failedOperation))" }
        return text
    }

    /// A ZooKeeper error code (`ZOO_ERRORS`), named as in ZooKeeper (`NONODE`, `BADVERSION`, ...).
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let systemError = Code(rawValue: -1)
        public static let runtimeInconsistency = Code(rawValue: -2)
        public static let connectionLoss = Code(rawValue: -4)
        public static let operationTimeout = Code(rawValue: -7)
        public static let badArguments = Code(rawValue: -8)
        public static let invalidState = Code(rawValue: -9)
        public static let noNode = Code(rawValue: -101)
        public static let noAuth = Code(rawValue: -102)
        public static let badVersion = Code(rawValue: -103)
        public static let noChildrenForEphemerals = Code(rawValue: -108)
        public static let nodeExists = Code(rawValue: -110)
        public static let notEmpty = Code(rawValue: -111)
        public static let sessionExpired = Code(rawValue: -112)
        public static let invalidACL = Code(rawValue: -114)
        public static let authFailed = Code(rawValue: -115)
        public static let closing = Code(rawValue: -116)

        public var description: String {
            switch rawValue {
            case -1: "SYSTEMERROR"
            case -2: "RUNTIMEINCONSISTENCY"
            case -3: "DATAINCONSISTENCY"
            case -4: "CONNECTIONLOSS"
            case -5: "MARSHALLINGERROR"
            case -6: "UNIMPLEMENTED"
            case -7: "OPERATIONTIMEOUT"
            case -8: "BADARGUMENTS"
            case -9: "INVALIDSTATE"
            case -100: "APIERROR"
            case -101: "NONODE"
            case -102: "NOAUTH"
            case -103: "BADVERSION"
            case -108: "NOCHILDRENFOREPHEMERALS"
            case -110: "NODEEXISTS"
            case -111: "NOTEMPTY"
            case -112: "SESSIONEXPIRED"
            case -113: "INVALIDCALLBACK"
            case -114: "INVALIDACL"
            case -115: "AUTHFAILED"
            case -116: "CLOSING"
            case -118: "SESSIONMOVED"
            case -119: "NOTREADONLY"
            case -120: "EPHEMERALONLOCALSESSION"
            case -121: "NOWATCHER"
            case -127: "THROTTLEDOP"
            default: "ZOOKEEPER_ERROR(\(rawValue))"
            }
        }
    }
}
