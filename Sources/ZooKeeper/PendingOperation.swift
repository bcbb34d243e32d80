import CZooKeeper
import Synchronization

/// One asynchronous C request and the Swift task waiting for it.
///
/// The C client gets a +1 reference as the completion `data` and gives it back exactly once, in the
/// completion, which it always calls (with ZCONNECTIONLOSS on disconnect, ZCLOSING on close). So the
/// object, and anything the request's C buffers need, lives until the C side is done with it,
/// while the Swift side may already have moved on after a timeout or cancellation: first result wins.
final class PendingOperation<Value: Sendable>: Sendable {
    let path: String
    /// The watch this request sets, if any.
    let watch: WatchRegistration?
    /// C memory the reply is written into (multi).
    let buffers: MultiBuffers?
    private let phase = Mutex(Phase.waiting(nil))

    private enum Phase {
        case waiting(CheckedContinuation<Value, any Error>?)
        case finished(Result<Value, any Error>)
    }

    init(path: String, watch: WatchRegistration? = nil, buffers: MultiBuffers? = nil) {
        self.path = path
        self.watch = watch
        self.buffers = buffers
    }

    /// Returns false if the operation already finished (cancelled before it was issued):
    /// the continuation has then been resumed and no request should go out.
    func install(_ continuation: CheckedContinuation<Value, any Error>) -> Bool {
        let early = phase.withLock { phase -> Result<Value, any Error>? in
            if case .finished(let result) = phase { return result }
            phase = .waiting(continuation)
            return nil
        }
        guard let early else { return true }
        continuation.resume(with: early)
        return false
    }

    func finish(_ result: Result<Value, any Error>) {
        let continuation = phase.withLock { phase -> CheckedContinuation<Value, any Error>? in
            guard case .waiting(let continuation) = phase else { return nil }
            phase = .finished(result)
            return continuation
        }
        continuation?.resume(with: result)
    }

    func fail(_ code: ZooKeeperError.Code) {
        finish(.failure(ZooKeeperError(code: code, path: path)))
    }

    /// Retained pointer for the C completion `data` argument.
    func retainedToken() -> UnsafeRawPointer { UnsafeRawPointer(Unmanaged.passRetained(self).toOpaque()) }

    /// Balances `retainedToken()` when the C call was rejected and no completion will come.
    static func releaseToken(_ token: UnsafeRawPointer) { Unmanaged<PendingOperation>.fromOpaque(token).release() }

    /// Called from a C completion: takes back the reference and finishes with `reply()` on ZOK.
    static func complete(_ token: UnsafeRawPointer?, _ rc: Int32, reply: (PendingOperation) -> Value) {
        guard let token else { return }
        let operation = Unmanaged<PendingOperation>.fromOpaque(token).takeRetainedValue()
        if let watch = operation.watch, !watch.isSet(afterCompletionWith: rc) {
            watch.session?.forget(watch)
        }
        if rc == ZOK.rawValue {
            operation.finish(.success(reply(operation)))
        } else {
            operation.fail(ZooKeeperError.Code(rawValue: rc))
        }
    }
}

// C completions. Global functions, never closures: see SPIKE-NOTES (isolation trap).

func voidCompleted(_ rc: Int32, _ data: UnsafeRawPointer?) {
    PendingOperation<Void>.complete(data, rc) { _ in () }
}

func stringCompleted(_ rc: Int32, _ value: UnsafePointer<CChar>?, _ data: UnsafeRawPointer?) {
    PendingOperation<String>.complete(data, rc) { operation in value.map { String(cString: $0) } ?? operation.path }
}

func statCompleted(_ rc: Int32, _ stat: UnsafePointer<CZooKeeper.Stat>?, _ data: UnsafeRawPointer?) {
    PendingOperation<Stat>.complete(data, rc) { _ in Stat(stat?.pointee ?? CZooKeeper.Stat()) }  // never nil on ZOK; no trap if it were
}

func dataCompleted(
    _ rc: Int32, _ value: UnsafePointer<CChar>?, _ length: Int32, _ stat: UnsafePointer<CZooKeeper.Stat>?,
    _ data: UnsafeRawPointer?
) {
    PendingOperation<(data: [UInt8], stat: Stat)>.complete(data, rc) { _ in
        // length is -1 for a node with null data.
        let bytes = value.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: Int(max(length, 0)))) } ?? []
        return (bytes, Stat(stat?.pointee ?? CZooKeeper.Stat()))
    }
}

func childrenCompleted(_ rc: Int32, _ strings: UnsafePointer<String_vector>?, _ data: UnsafeRawPointer?) {
    PendingOperation<[String]>.complete(data, rc) { _ in
        guard let strings = strings?.pointee, let names = strings.data else { return [] }
        return (0..<Int(max(0, strings.count))).compactMap { names[$0].map { String(cString: $0) } }
    }
}

func multiCompleted(_ rc: Int32, _ data: UnsafeRawPointer?) {
    guard let data else { return }
    let operation = Unmanaged<PendingOperation<[MultiResult]>>.fromOpaque(data).takeRetainedValue()
    operation.finish(operation.buffers!.results(completedWith: rc))
}
