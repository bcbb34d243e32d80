import MesosProtoC

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The framing on the wire: a 4-byte big-endian payload length, then one encoded Envelope.
///
/// The length is checked against `maxFrameSize` before any payload is buffered, so a
/// peer announcing a huge frame (or sending garbage such as an HTTP request, whose first
/// four bytes read as a length of about 1 GB) is refused at once.
public struct FrameCodec: Sendable, Hashable {
    public static let headerSize = 4
    public static let defaultMaxFrameSize = 16 * 1024 * 1024

    public var maxFrameSize: Int

    public init(maxFrameSize: Int = FrameCodec.defaultMaxFrameSize) {
        precondition(maxFrameSize > 0 && maxFrameSize <= Int(UInt32.max), "maxFrameSize out of range")
        self.maxFrameSize = maxFrameSize
    }

    /// The payload length a header announces, if acceptable.
    @inline(__always)
    public func payloadLength(header: UInt32) throws(WireError) -> Int {
        let length = Int(header)
        if length == 0 { throw .emptyFrame }
        if length > maxFrameSize { throw .frameTooLarge(length: length, max: maxFrameSize) }
        return length
    }

    /// Header + payload. A sender refuses to build a frame its peers would refuse.
    public func encode(_ envelope: Envelope) throws(WireError) -> [UInt8] {
        var bytes = envelope.encoded(headroom: Self.headerSize)
        let length = bytes.count - Self.headerSize
        _ = try payloadLength(header: UInt32(clamping: length))
        bytes.withUnsafeMutableBytes { FrameCodec.writeHeader(length, at: $0.baseAddress!) }
        return bytes
    }

    public func decodePayload(_ payload: UnsafeRawBufferPointer) throws(WireError) -> Envelope {
        try Envelope(serializedBytes: payload)
    }

    @inline(__always)
    static func writeHeader(_ length: Int, at p: UnsafeMutableRawPointer) {
        p.storeBytes(of: UInt32(truncatingIfNeeded: length).bigEndian, as: UInt32.self)
    }

    @inline(__always)
    static func readHeader(_ p: UnsafeRawPointer) -> UInt32 {
        UInt32(bigEndian: p.loadUnaligned(as: UInt32.self))
    }
}

/// Encodes envelopes as frames straight into memory the caller provides (a transport's outgoing
/// buffer), reusing the thread's C arena for every message: `prepare` builds the protobuf-c graph and
/// returns the frame's size, `write` packs the frame there and writes its header. I/O-free; one
/// encoder per thread at a time (the bus keeps one per link, under the link's lock). The C graph
/// is built in the calling thread's arena: `write` follows its `prepare` on the same thread, with
/// no other encoder's `prepare` in between.
public final class FrameEncoder {
    public let codec: FrameCodec
    private var prepared: UnsafeMutablePointer<Mesos__Envelope>?
    /// Where the prepared graph lives, and the arena's round it was built in.
    private var preparedIn: (arena: CArena, round: UInt64)?
    private var payloadSize = 0

    public init(codec: FrameCodec = FrameCodec()) { self.codec = codec }

    /// Header + payload bytes of `envelope`'s frame; throws (and keeps nothing) when the frame
    /// is larger than its peers accept.
    public func prepare(_ envelope: Envelope) throws(WireError) -> Int {
        let arena = CArena.forEncoding
        arena.reset()
        let m = arena.message(envelope)
        let size = Envelope.cPackedSize(m)
        if size > codec.maxFrameSize {
            prepared = nil
            arena.reset()
            throw .frameTooLarge(length: size, max: codec.maxFrameSize)
        }
        prepared = m
        preparedIn = (arena, arena.round)
        payloadSize = size
        return FrameCodec.headerSize + size
    }

    /// Writes the frame `prepare` sized at `destination` (exactly that many bytes).
    public func write(to destination: UnsafeMutableRawPointer) {
        guard let m = prepared, let (arena, round) = preparedIn else { preconditionFailure("FrameEncoder.write without prepare") }
        precondition(arena === CArena.forEncoding && arena.round == round, "FrameEncoder.write on another thread than its prepare, or after another prepare")
        let written = Envelope.cPack(m, (destination + FrameCodec.headerSize).assumingMemoryBound(to: UInt8.self))
        precondition(written == payloadSize, "protobuf-c packed \(written) bytes, promised \(payloadSize)")
        FrameCodec.writeHeader(written, at: destination)
        prepared = nil
        preparedIn = nil
    }
}

/// Incremental, I/O-free frame decoder: feed bytes as they arrive, take envelopes out.
/// After the first error the stream is unusable (framing is lost): the caller closes
/// the connection. The transport and the fuzz target both use this type.
///
/// Two ways to feed it: `append` then `next()` (copies every byte into the decoder), or
/// `decode(_:_:)`, which decodes complete frames in place from the caller's bytes and copies
/// only a frame that continues in a later read.
public struct FrameDecoder: Sendable {
    public let codec: FrameCodec
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// Partial-frame buffers larger than this are released once the frame is decoded.
    private static let retainedBuffer = 1 << 20

    public init(codec: FrameCodec = FrameCodec()) { self.codec = codec }

    /// Bytes received but not yet decoded (a partial frame).
    public var bufferedBytes: Int { buffer.count - readIndex }

    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        if readIndex > 0 && readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete envelope, nil when more bytes are needed.
    public mutating func next() throws(WireError) -> Envelope? {
        guard bufferedBytes >= FrameCodec.headerSize else { return nil }
        let header = buffer[readIndex..<readIndex + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let length = try codec.payloadLength(header: header)
        guard bufferedBytes >= FrameCodec.headerSize + length else { return nil }
        let start = readIndex + FrameCodec.headerSize
        readIndex = start + length
        let arena = CArena.forDecoding
        let envelope = try buffer.withUnsafeBytes { raw in
            Result { () throws(WireError) in
                try Envelope.decoded(UnsafeRawBufferPointer(rebasing: raw[start..<start + length]), arena: arena)
            }
        }.get()
        if readIndex > 64 * 1024 && readIndex * 2 > buffer.count {  // keep memory bounded
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        return envelope
    }

    /// Decodes every complete frame in `bytes`, in order, straight from `bytes`, and hands each
    /// envelope to `body` (false: stop; the remaining bytes are dropped, e.g. the connection is
    /// being closed). Bytes of a frame that is not complete yet are kept for the next call.
    public mutating func decode(_ bytes: UnsafeRawBufferPointer, _ body: (Envelope) -> Bool) throws(WireError) {
        guard var p = bytes.baseAddress, !bytes.isEmpty else { return }
        var left = bytes.count
        let arena = CArena.forDecoding
        if bufferedBytes > 0 {
            // Finish the frame an earlier read began: first its header, then its payload.
            if readIndex > 0 {
                buffer.removeFirst(readIndex)
                readIndex = 0
            }
            if buffer.count < FrameCodec.headerSize {
                let take = min(FrameCodec.headerSize - buffer.count, left)
                buffer.append(contentsOf: UnsafeRawBufferPointer(start: p, count: take))
                p += take
                left -= take
                if buffer.count < FrameCodec.headerSize { return }
            }
            let length = try codec.payloadLength(header: buffer.withUnsafeBytes { FrameCodec.readHeader($0.baseAddress!) })
            let take = min(FrameCodec.headerSize + length - buffer.count, left)
            buffer.reserveCapacity(FrameCodec.headerSize + length)
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: p, count: take))
            p += take
            left -= take
            if buffer.count < FrameCodec.headerSize + length { return }
            let envelope = try buffer.withUnsafeBytes { raw in
                Result { () throws(WireError) in try Envelope.decoded(UnsafeRawBufferPointer(rebasing: raw[FrameCodec.headerSize...]), arena: arena) }
            }.get()
            if buffer.capacity > Self.retainedBuffer { buffer = [] } else { buffer.removeAll(keepingCapacity: true) }
            guard body(envelope) else { return }
        }
        while left >= FrameCodec.headerSize {
            let length = try codec.payloadLength(header: FrameCodec.readHeader(p))
            guard left >= FrameCodec.headerSize + length else { break }
            let envelope = try Envelope.decoded(UnsafeRawBufferPointer(start: p + FrameCodec.headerSize, count: length), arena: arena)
            p += FrameCodec.headerSize + length
            left -= FrameCodec.headerSize + length
            guard body(envelope) else { return }
        }
        if left > 0 {
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: p, count: left))
        } else if buffer.capacity > 0 {
            buffer = []  // a read that ended on a frame's end: an idle connection keeps no buffer
        }
    }
}
