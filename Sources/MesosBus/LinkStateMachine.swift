import NIOCore

/// Encoded frames, one or many back to back in one buffer (a link batches what was posted
/// between two turns of its event loop).
struct Chunk {
    var buffer: ByteBuffer
    var frames: Int
    var readableBytes: Int { buffer.readableBytes }
}

/// What an outbound link does with frames, connects, authentication, writability, stalls and
/// closes, without doing any of it: `Link` asks it for an action and carries the action out.
///
/// - Frames keep their order (the machine handles chunks of frames, counted as their frames). While not connected (or authenticating, or the channel is not
///   writable) they wait in a queue bounded by `maxQueuedBytes`; beyond it a frame is dropped
///   and counted, never buffered without bound.
/// - A connected channel that stays unwritable for the write timeout (the peer stopped reading)
///   is closed and its queued frames dropped: one stuck peer costs its own messages only.
struct LinkStateMachine {
    enum State: Equatable {
        case idle
        case connecting
        /// Connected, proving our credential; frames wait until the peer accepts it.
        case authenticating(ObjectIdentifier)
        case connected(ObjectIdentifier)
        case closed
    }

    enum Enqueue: Equatable {
        /// Write the frame to the channel now.
        case write
        /// Queued; start connecting.
        case connect
        case queued
        case dropped(DropReason)
    }

    enum DropReason: String, Equatable {
        case queueFull = "queue_full"
        case closed
    }

    private(set) var state = State.idle
    private var queue = CircularBuffer<Chunk>()
    private(set) var queuedBytes = 0
    /// Frames in the queue.
    private(set) var queuedFrames = 0
    let maxQueuedBytes: Int

    init(maxQueuedBytes: Int) { self.maxQueuedBytes = maxQueuedBytes }

    var isIdle: Bool { state == .idle && queue.isEmpty }

    /// Nothing queued and no connect or authentication in progress: closing the link now loses
    /// nothing (idle eviction). A link still connecting holds the frames it was given.
    var canEvict: Bool {
        guard queue.isEmpty else { return false }
        switch state {
        case .idle, .connected, .closed: return true
        case .connecting, .authenticating: return false
        }
    }

    mutating func enqueue(_ frame: ByteBuffer, frames: Int = 1, channelWritable: Bool) -> Enqueue {
        switch state {
        case .closed:
            return .dropped(.closed)
        case .connected where channelWritable && queue.isEmpty:
            return .write
        default:
            guard queuedBytes + frame.readableBytes <= maxQueuedBytes || queue.isEmpty else { return .dropped(.queueFull) }
            queue.append(Chunk(buffer: frame, frames: frames))
            queuedBytes += frame.readableBytes
            queuedFrames += frames
            if state == .idle {
                state = .connecting
                return .connect
            }
            return .queued
        }
    }

    /// The next queued chunk to write now (connected, channel writable).
    mutating func nextFrame(channelWritable: Bool) -> Chunk? {
        guard case .connected = state, channelWritable, let chunk = queue.popFirst() else { return nil }
        queuedBytes -= chunk.readableBytes
        queuedFrames -= chunk.frames
        return chunk
    }

    /// The connection is up; true: authenticate first.
    mutating func connected(_ id: ObjectIdentifier, authenticate: Bool) {
        guard state == .connecting else { return }
        state = authenticate ? .authenticating(id) : .connected(id)
    }

    /// Everything queued, to write on connection `id` now, ahead of its return-route offer (the
    /// machine stays `authenticating`: what is posted from now on waits for the answer).
    mutating func takeQueued(on id: ObjectIdentifier) -> [Chunk] {
        guard state == .authenticating(id), !queue.isEmpty else { return [] }
        let chunks = Array(queue)
        _ = dropAll()  // taken, not dropped: the same emptying
        return chunks
    }

    /// A return route was claimed: the link goes on over the peer's connection `to` (with its queue).
    mutating func adopt(from id: ObjectIdentifier, to other: ObjectIdentifier) {
        guard state == .authenticating(id) else { return }
        state = .connected(other)
    }

    mutating func authenticated(_ id: ObjectIdentifier) -> Bool {
        guard state == .authenticating(id) else { return false }
        state = .connected(id)
        return true
    }

    /// Connecting or authenticating failed, or the connection closed: back to idle (the next
    /// frame reconnects). Returns the frames dropped, nil when `id` is not the current connection.
    mutating func broken(_ id: ObjectIdentifier?) -> Int? {
        switch state {
        case .connecting where id == nil: break
        case .authenticating(let current) where current == id: break
        case .connected(let current) where current == id: break
        default: return nil
        }
        state = .idle
        return dropAll()
    }

    /// Closed for good (bus shutdown, idle eviction): returns the frames dropped.
    mutating func close() -> Int {
        state = .closed
        return dropAll()
    }

    private mutating func dropAll() -> Int {
        let n = queuedFrames
        queue.removeAll()
        queuedBytes = 0
        queuedFrames = 0
        return n
    }

    var connection: ObjectIdentifier? {
        switch state {
        case .authenticating(let id), .connected(let id): id
        default: nil
        }
    }
}
