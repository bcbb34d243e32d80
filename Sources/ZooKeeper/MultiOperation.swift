import CZooKeeper

/// One operation of an atomic `multi`.
public enum MultiOperation: Sendable, Hashable {
    /// `acl: nil` uses the session's default ACL.
    case create(String, data: [UInt8] = [], mode: CreateMode = .persistent, acl: [ACLEntry]? = nil)
    case delete(String, version: Int32 = ZooKeeperSession.anyVersion)
    case setData(String, data: [UInt8], version: Int32 = ZooKeeperSession.anyVersion)
    /// Fails the whole multi unless the node is at `version`.
    case check(String, version: Int32)

    public var path: String {
        switch self {
        case .create(let path, _, _, _), .delete(let path, _), .setData(let path, _, _), .check(let path, _): path
        }
    }
}

/// The result of one operation of a successful `multi`, in the order of the operations.
public enum MultiResult: Sendable, Hashable {
    case created(path: String)
    case deleted
    case dataSet(Stat)
    case checked
}

/// The C side of a `zoo_amulti` request: the `zoo_op_t` array with the strings, data and ACLs it
/// points to, and the result array plus the buffers the C client writes replies into (created
/// paths, stats) when the reply arrives. Owned by the `PendingOperation`, so it outlives the request.
/// `@unchecked Sendable`: written while the request is built, then only by the C client before it
/// calls the completion, then read by that completion.
final class MultiBuffers: @unchecked Sendable {
    private let operations: [MultiOperation]
    let ops: UnsafeMutablePointer<zoo_op_t>
    let results: UnsafeMutablePointer<zoo_op_result_t>
    private let stats: UnsafeMutablePointer<CZooKeeper.Stat>
    private let acls: [CACLVector]
    private var allocations: [UnsafeMutableRawPointer] = []

    init(_ operations: [MultiOperation], defaultACL: [ACLEntry]) {
        self.operations = operations
        let capacity = max(operations.count, 1)
        ops = .allocate(capacity: capacity)
        ops.initialize(repeating: zoo_op_t(), count: capacity)
        results = .allocate(capacity: capacity)
        results.initialize(repeating: zoo_op_result_t(), count: capacity)
        stats = .allocate(capacity: capacity)
        stats.initialize(repeating: CZooKeeper.Stat(), count: capacity)
        acls = operations.map { operation in
            guard case .create(_, _, _, let acl) = operation else { return CACLVector([]) }
            return CACLVector(acl ?? defaultACL)
        }

        for (index, operation) in operations.enumerated() {
            let op = ops + index
            let path = copy(operation.path)
            switch operation {
            case .create(let nodePath, let data, let mode, _):
                // Room for the 10-digit sequence suffix of sequential nodes.
                let bufferLength = nodePath.utf8.count + 16
                let buffer = allocate(bufferLength)
                zoo_create_op_init(
                    op, path, copy(data), Int32(data.count), acls[index].vector, mode.rawValue, buffer,
                    Int32(bufferLength))
            case .delete(_, let version):
                zoo_delete_op_init(op, path, version)
            case .setData(_, let data, let version):
                zoo_set_op_init(op, path, copy(data), Int32(data.count), version, stats + index)
            case .check(_, let version):
                zoo_check_op_init(op, path, version)
            }
        }
    }

    deinit {
        for allocation in allocations { allocation.deallocate() }
        ops.deallocate()
        results.deallocate()
        stats.deallocate()
    }

    /// The per-operation results, or the error of the operation that aborted the multi.
    func results(completedWith rc: Int32) -> Result<[MultiResult], any Error> {
        guard rc == ZOK.rawValue else {
            // Operations before the failing one report ZOK, those after it RUNTIMEINCONSISTENCY;
            // on connection loss nothing was filled in and no operation is to blame.
            let failed = operations.indices.first {
                results[$0].err != ZOK.rawValue && results[$0].err != ZRUNTIMEINCONSISTENCY.rawValue
            }
            return .failure(
                ZooKeeperError(
                    code: ZooKeeperError.Code(rawValue: rc), path: failed.map { operations[$0].path },
                    failedOperation: failed))
        }
        return .success(
            operations.enumerated().map { index, operation in
                switch operation {
                case .create(let path, _, _, _): .created(path: results[index].value.map { String(cString: $0) } ?? path)
                case .delete: .deleted
                case .setData: .dataSet(Stat(stats[index]))
                case .check: .checked
                }
            })
    }

    private func allocate(_ count: Int) -> UnsafeMutablePointer<CChar> {
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: count)
        buffer.initialize(repeating: 0, count: count)
        allocations.append(UnsafeMutableRawPointer(buffer))
        return buffer
    }

    private func copy(_ string: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(string.utf8CString)
        let buffer = allocate(utf8.count)
        buffer.update(from: utf8, count: utf8.count)
        return buffer
    }

    private func copy(_ data: [UInt8]) -> UnsafeMutablePointer<CChar> {
        let buffer = allocate(max(data.count, 1))
        data.withUnsafeBytes { bytes in
            if let source = bytes.baseAddress { UnsafeMutableRawPointer(buffer).copyMemory(from: source, byteCount: bytes.count) }
        }
        return buffer
    }
}
