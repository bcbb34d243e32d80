// libFuzzer target over the frame decoder and envelope handling: whatever bytes a peer sends,
// decoding must end in an envelope or a WireError, never a crash, a hang or a leak, and every
// decoded envelope must survive a round trip and the epoch rules.
// Built and run by scripts/fuzz (libFuzzer provides main).
import MesosHA
import MesosWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    // The first byte picks how the bytes arrive: as a stream in chunks of that size (0: all at once).
    let chunk = size > 0 ? Int(bytes[0]) : 0
    var decoder = FrameDecoder(codec: FrameCodec(maxFrameSize: 64 * 1024))
    var offset = min(1, size)
    do {
        while offset < size {
            let end = chunk == 0 ? size : min(size, offset + chunk)
            decoder.append(bytes[offset..<end])
            offset = end
            while let envelope = try decoder.next() { check(envelope) }
        }
    } catch {
        _ = error.description
    }
    // The same bytes as one bare envelope payload.
    if let envelope = try? Envelope(serializedBytes: UnsafeRawBufferPointer(bytes)) { check(envelope) }
    return 0
}

private func check(_ envelope: Envelope) {
    // Compared as bytes: a double may be NaN, which is never equal to itself as a value.
    let bytes = envelope.serializedBytes()
    let again = try? Envelope(serializedBytes: bytes)
    precondition(again?.serializedBytes() == bytes, "an envelope changed in a round trip")
    let leader = Leader(epoch: envelope.epoch, pid: envelope.from)
    for role in [EpochGuard.Role.follower(detected: leader), .follower(detected: nil), .leadingMaster(epoch: envelope.epoch), .standbyMaster] {
        _ = EpochGuard.check(envelope, as: role)
    }
}

// SwiftPM links executables with `main` aliased to `<product>_main`; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("frame_fuzz_main")
public func frameFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return runFuzzerDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) }
}
