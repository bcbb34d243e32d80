import MesosProtoC

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The dotted path of a field, for error messages: built only when an error is thrown, so a
/// decode that succeeds builds no strings for it.
typealias FieldPath = () -> String

/// A Swift message type that mirrors one protobuf-c struct (generated).
protocol CMessage {
    associatedtype CType
    static func cInit(_ m: UnsafeMutablePointer<CType>)
    init(c: UnsafePointer<CType>, field: FieldPath) throws(WireError)
    func fill(_ m: UnsafeMutablePointer<CType>, _ arena: CArena)
}

/// A Swift enum that mirrors one protobuf-c enum (generated).
protocol CEnum {
    associatedtype CType
    var cValue: CType { get }
    init(cValue: CType, field: FieldPath) throws(WireError)
}

/// A bump allocator for C memory that lives for one encode or decode: every allocation comes
/// from one reusable block (blocks beyond it are malloc'd and freed at `reset`, and the block
/// grows to fit next time), so a steady stream of messages allocates nothing. Also serves as
/// protobuf-c's `ProtobufCAllocator` for `unpack`, whose `free` is then a no-op.
///
/// Not thread-safe: each thread encodes and decodes with its own (`forEncoding`, `forDecoding`).
final class CArena: @unchecked Sendable {  // used by one thread only (its thread's arenas)
    /// C-layout state, so protobuf-c's callbacks reach it without Swift reference counting.
    struct State {
        var base: UnsafeMutableRawPointer
        var used: Int
        var capacity: Int
        /// Overflow blocks of this round, linked through their first word.
        var spill: UnsafeMutableRawPointer?
        var spilled: Int
        /// Counts resets: a graph built in round N is valid only while this is N.
        var round: UInt64 = 0
    }

    /// Blocks kept between messages are at most this large (a rare huge message does not pin memory).
    static let maxRetained = 1 << 20
    private static let alignment = 16

    let state: UnsafeMutablePointer<State>
    /// `unpack`'s allocator: allocates from this arena, frees nothing.
    let allocator: UnsafeMutablePointer<ProtobufCAllocator>

    init(capacity: Int = 4096) {
        state = .allocate(capacity: 1)
        state.initialize(to: State(base: malloc(capacity)!, used: 0, capacity: capacity, spill: nil, spilled: 0))
        allocator = .allocate(capacity: 1)
        allocator.initialize(to: ProtobufCAllocator(
            alloc: { data, size in CArena.allocate(data!.assumingMemoryBound(to: State.self), size) },
            free: { _, _ in },
            allocator_data: UnsafeMutableRawPointer(state)))
    }

    deinit {
        reset()
        free(state.pointee.base)
        state.deinitialize(count: 1)
        state.deallocate()
        allocator.deinitialize(count: 1)
        allocator.deallocate()
    }

    static func allocate(_ s: UnsafeMutablePointer<State>, _ bytes: Int) -> UnsafeMutableRawPointer {
        let start = (s.pointee.used + alignment - 1) & ~(alignment - 1)
        if start + bytes <= s.pointee.capacity {
            s.pointee.used = start + bytes
            return s.pointee.base + start
        }
        // Spill: a block of its own, linked for reset (the header keeps the payload aligned).
        let block = malloc(alignment + max(bytes, 1))!
        block.storeBytes(of: s.pointee.spill, as: UnsafeMutableRawPointer?.self)
        s.pointee.spill = block
        s.pointee.spilled += bytes + alignment
        return block + alignment
    }

    /// Frees what this round spilled and makes the block big enough for a round that size.
    func reset() {
        var s = state.pointee
        var block = s.spill
        while let b = block {
            block = b.load(as: UnsafeMutableRawPointer?.self)
            free(b)
        }
        if s.spilled > 0 {
            let wanted = s.used + s.spilled
            if wanted <= Self.maxRetained {
                var capacity = s.capacity
                while capacity < wanted { capacity *= 2 }
                free(s.base)
                s.base = malloc(capacity)!
                s.capacity = capacity
            }
        }
        s.used = 0
        s.spill = nil
        s.spilled = 0
        s.round &+= 1
        state.pointee = s
    }

    /// This thread's arena for encoding (made on first use, freed when the thread ends). One per
    /// thread, not one per connection: a master with 10,000 agents' connections kept 10,000 idle
    /// blocks of 4 KiB or more for each direction (most of each never touched: the leader's RSS per
    /// agent at 2,000 agents went from 21.3 to 19.6-19.9 KiB with this and the executor change).
    static var forEncoding: CArena { encodingArenas.current }
    /// This thread's arena for decoding (a decode never runs inside an encode, nor the reverse,
    /// but the two are kept apart so that neither can reset the other's graph).
    static var forDecoding: CArena { decodingArenas.current }
    private static let encodingArenas = ThreadArenas()
    private static let decodingArenas = ThreadArenas()

    var round: UInt64 { state.pointee.round }

    private func raw(_ bytes: Int) -> UnsafeMutableRawPointer { Self.allocate(state, bytes) }

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

/// One `CArena` per thread, behind a pthread key (released when its thread ends).
private final class ThreadArenas: Sendable {
    private let key: pthread_key_t

    init() {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { p in
            if let p { Unmanaged<CArena>.fromOpaque(p).release() }
        }
        precondition(status == 0, "pthread_key_create failed: \(status)")
        self.key = key
    }

    var current: CArena {
        if let p = pthread_getspecific(key) { return Unmanaged<CArena>.fromOpaque(p).takeUnretainedValue() }
        let arena = CArena()
        pthread_setspecific(key, Unmanaged.passRetained(arena).toOpaque())
        return arena
    }
}

func wireString(_ p: UnsafePointer<CChar>, field: FieldPath) throws(WireError) -> String {
    guard let s = String(validatingCString: p) else { throw .invalidUTF8(field: field()) }
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
    static func cUnpack(_ allocator: UnsafeMutablePointer<ProtobufCAllocator>?, _ len: Int, _ data: UnsafePointer<UInt8>) -> UnsafeMutablePointer<CType>?
    static func cFree(_ m: UnsafeMutablePointer<CType>)
}

extension WireMessage {
    /// Encodes with `headroom` zero bytes in front (room for a frame header), in one allocation.
    func encoded(headroom: Int) -> [UInt8] {
        let arena = CArena(capacity: 1024)
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

    /// Decodes with protobuf-c's own allocator (malloc, freed at once).
    static func decoded(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Self {
        try decoded(bytes, allocator: nil)
    }

    /// Decodes with the C graph in `arena` (reset before returning): no malloc for the graph.
    static func decoded(_ bytes: UnsafeRawBufferPointer, arena: CArena) throws(WireError) -> Self {
        defer { arena.reset() }
        return try decoded(bytes, allocator: arena.allocator)
    }

    private static func decoded(_ bytes: UnsafeRawBufferPointer, allocator: UnsafeMutablePointer<ProtobufCAllocator>?) throws(WireError) -> Self {
        var empty: UInt8 = 0  // protobuf-c wants a valid pointer even for zero bytes
        let unpacked = withUnsafePointer(to: &empty) { e in
            cUnpack(allocator, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? e)
        }
        guard let m = unpacked else {
            throw .malformed(type: String(describing: Self.self), bytes: bytes.count)
        }
        defer { if allocator == nil { cFree(m) } }
        return try Self(c: m, field: { String(describing: Self.self) })
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
