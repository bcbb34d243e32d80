// AtomicFile: the agent's checkpoints, the file registry and the standalone master's epoch are
// written through it, so a reader (a restarted agent, a restarted master) sees either the old
// file or the new one, whole, never a torn mix.
import Foundation
import MesosDaemon
import Synchronization
import Testing

@Suite struct AtomicFileTests {
    private func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appending(path: "atomic-file-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    private func read(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { Array($0) }
    }

    @Test func aWriteReplacesTheWholeFileAndLeavesNoTemporaryBehind() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/slave.info"
        try AtomicFile.write(Array(repeating: 1, count: 100_000), to: path)
        try AtomicFile.write([2, 2, 2], to: path)
        #expect(read(path) == [2, 2, 2])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["slave.info"])
    }

    /// A reader racing 300 rewrites between two 256 KiB contents only ever finds one of them whole
    /// (a write in place would show a shorter file or a mix of the two).
    @Test func aConcurrentReaderNeverSeesATornFile() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/task.info"
        let a = [UInt8](repeating: 0xAA, count: 256 * 1024), b = [UInt8](repeating: 0xBB, count: 256 * 1024)
        try AtomicFile.write(a, to: path, durable: false)
        let done = Atomic<Bool>(false)
        let (dataA, dataB) = (Data(a), Data(b))
        let reader = Task.detached { () -> (reads: Int, torn: Int) in
            var reads = 0, torn = 0
            while !done.load(ordering: .relaxed) || reads < 100 {
                reads += 1
                guard let seen = FileManager.default.contents(atPath: path), seen == dataA || seen == dataB else {
                    torn += 1
                    continue
                }
            }
            return (reads, torn)
        }
        for i in 0..<300 { try AtomicFile.write(i.isMultiple(of: 2) ? b : a, to: path, durable: false) }
        done.store(true, ordering: .relaxed)
        let result = await reader.value
        #expect(result.reads >= 100)
        #expect(result.torn == 0, "\(result.torn) of \(result.reads) reads found the file missing or partial")
    }

    /// A write that cannot complete (here: the target is a directory, so the rename fails) leaves
    /// what was there and no temporary file, and names the step and the path.
    @Test func aFailedWriteLeavesThePreviousStateAndNoTemporary() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = dir + "/occupied"
        try FileManager.default.createDirectory(atPath: target + "/inside", withIntermediateDirectories: true)
        do {
            try AtomicFile.write([1, 2, 3], to: target)
            Issue.record("writing over a non-empty directory succeeded")
        } catch {
            #expect(error.step == "cannot rename onto" && error.path == target, "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["occupied"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: target) == ["inside"])
    }
}
