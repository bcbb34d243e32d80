import MesosProtoC

#if canImport(Glibc)
import Glibc
#endif

/// A Swift message type that mirrors one protobuf-c struct (generated).
protocol CMessage {
    associatedtype CType
    static func cInit(_ m: UnsafeMutablePointer<CType>)
    init(c: UnsafePointer<CType>, field: String) throws(WireError)
    func fill(_ m: UnsafeMutablePointer<CType>, _ arena: CArena)
}

/// A Swift enum that mirrors one protobuf-c enum (generated).
protocol CEnum {
    associatedtype CType
    var cValue: CType { get }
    init(cValue: CType, field: String) throws(WireError)
}

/// Owns every C allocation made while encoding one message, and frees them all at once:
/// the C struct graph borrows from it for the duration of one `pack`.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for b in blocks { free(b) } }

    private func raw(_ bytes: Int) -> UnsafeMutableRawPointer {
        let p = malloc(max(bytes, 1))!
        blocks.append(p)
        return p
    }

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        var s = s
        return s.withUTF8 { utf8 in
            let p = raw(utf8.count + 1).bindMemory(to: CChar.self, capacity: utf8.count + 1)
            if let base = utf8.baseAddress { UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: utf8.count) }
            p[utf8.count] = 0
            return p
        }
    }

    func bytes(_ b: [UInt8]) -> ProtobufCBinaryData {
        let p = raw(b.count).bindMemory(to: UInt8.self, capacity: b.count)
        b.withUnsafeBufferPointer { if let base = $0.baseAddress { p.update(from: base, count: b.count) } }
        return ProtobufCBinaryData(len: b.count, data: p)
    }

    func message<M: CMessage>(_ m: M) -> UnsafeMutablePointer<M.CType> {
        let p = raw(MemoryLayout<M.CType>.stride).bindMemory(to: M.CType.self, capacity: 1)
        M.cInit(p)
        m.fill(p, self)
        return p
    }

    func array<T, C>(_ xs: [T], _ convert: (T) -> C) -> UnsafeMutablePointer<C>? {
        if xs.isEmpty { return nil }
        let p = raw(MemoryLayout<C>.stride * xs.count).bindMemory(to: C.self, capacity: xs.count)
        for (i, x) in xs.enumerated() { (p + i).initialize(to: convert(x)) }
        return p
    }
}

func wireString(_ p: UnsafePointer<CChar>, field: String) throws(WireError) -> String {
    guard let s = String(validatingCString: p) else { throw .invalidUTF8(field: field) }
    return s
}

func wireBytes(_ b: ProtobufCBinaryData) -> [UInt8] {
    guard b.len > 0, let data = b.data else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: b.len))
}

/// A top-level message: can be encoded to and decoded from protobuf bytes on its own.
protocol WireMessage: CMessage {
    static func cPackedSize(_ m: UnsafePointer<CType>) -> Int
    static func cPack(_ m: UnsafePointer<CType>, _ out: UnsafeMutablePointer<UInt8>) -> Int
    static func cUnpack(_ len: Int, _ data: UnsafePointer<UInt8>) -> UnsafeMutablePointer<CType>?
    static func cFree(_ m: UnsafeMutablePointer<CType>)
}

extension WireMessage {
    /// Encodes with `headroom` zero bytes in front (room for a frame header), in one allocation.
    func encoded(headroom: Int) -> [UInt8] {
        let arena = CArena()
        let m = arena.message(self)
        let size = Self.cPackedSize(m)
        return [UInt8](unsafeUninitializedCapacity: headroom + size) { buf, count in
            let base = buf.baseAddress!
            base.initialize(repeating: 0, count: headroom)
            let written = Self.cPack(m, base + headroom)
            precondition(written == size, "protobuf-c packed \(written) bytes, promised \(size)")
            count = headroom + size
        }
    }

    static func decoded(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Self {
        var empty: UInt8 = 0  // protobuf-c wants a valid pointer even for zero bytes
        let unpacked = withUnsafePointer(to: &empty) { e in
            cUnpack(bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? e)
        }
        guard let m = unpacked else {
            throw .malformed(type: String(describing: Self.self), bytes: bytes.count)
        }
        defer { cFree(m) }
        return try Self(c: m, field: String(describing: Self.self))
    }
}

/// Public protobuf encoding of every top-level message of the contract.
public protocol ProtobufMessage: Sendable, Hashable {
    /// The protobuf (proto2) encoding, as any protobuf library reads it.
    func serializedBytes() -> [UInt8]
    /// Decodes protobuf bytes; malformed input, missing required fields,
    /// invalid UTF-8 and unknown enum values are errors, never crashes.
    init(serializedBytes: UnsafeRawBufferPointer) throws(WireError)
}

extension ProtobufMessage {
    public init(serializedBytes bytes: [UInt8]) throws(WireError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(WireError) in try Self(serializedBytes: raw) }
        }
        self = try result.get()
    }
}
