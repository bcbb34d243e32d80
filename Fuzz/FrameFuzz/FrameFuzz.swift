// libFuzzer target over the frame decoder and envelope handling: whatever bytes a peer sends,
// decoding must end in an envelope or a WireError, never a crash, a hang or a leak, and every
// decoded envelope must survive a round trip and the epoch rules.
// Built and run by scripts/fuzz (libFuzzer provides main).
import MesosCore
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
    // The detected leader is the sender itself (when its pid parses) or some other master.
    let leader = Leader(epoch: envelope.epoch, pid: PID(envelope.from) ?? PID(name: "master", host: "127.0.0.1", port: 5050))
    let roles: [EpochGuard.Role] = [
        .follower(detected: leader), .follower(detected: leader, requireMasterIdentity: true), .follower(detected: nil),
        .leadingMaster(epoch: envelope.epoch), .standbyMaster,
    ]
    for role in roles {
        for peer in [PeerIdentity.unauthenticated, PeerIdentity(principal: "p", roles: [.master])] {
            _ = EpochGuard.check(Inbound(envelope, peer: peer), as: role)
        }
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
