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
        bytes[0] = UInt8(truncatingIfNeeded: length >> 24)
        bytes[1] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[2] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[3] = UInt8(truncatingIfNeeded: length)
        return bytes
    }

    public func decodePayload(_ payload: UnsafeRawBufferPointer) throws(WireError) -> Envelope {
        try Envelope(serializedBytes: payload)
    }
}

/// Incremental, I/O-free frame decoder: feed bytes as they arrive, take envelopes out.
/// After the first error the stream is unusable (framing is lost): the caller closes
/// the connection. The transport and the fuzz target both use this type.
public struct FrameDecoder: Sendable {
    public let codec: FrameCodec
    private var buffer: [UInt8] = []
    private var readIndex = 0

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
        let envelope = try buffer.withUnsafeBytes { raw in
            Result { () throws(WireError) in
                try codec.decodePayload(UnsafeRawBufferPointer(rebasing: raw[start..<start + length]))
            }
        }.get()
        if readIndex > 64 * 1024 && readIndex * 2 > buffer.count {  // keep memory bounded
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        return envelope
    }
}
