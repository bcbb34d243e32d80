import Foundation
import MesosDaemon
import Testing

@Suite struct ProcessLauncherTests {
    /// An agent with a relative --work_dir gives relative sandbox paths: the child's output files
    /// are the caller's relative paths, opened before the child moves into its directory.
    @Test func relativeOutputPathsAreTheCallersWhenTheChildRunsElsewhere() throws {
        let relative = ".tmp/launcher-\(UUID().uuidString)"
        let elsewhere = NSTemporaryDirectory() + "launcher-cwd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: relative, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(atPath: relative)
            try? FileManager.default.removeItem(atPath: elsewhere)
        }
        let pid = try ProcessLauncher.spawn(
            "/bin/sh", ["-c", "pwd"], environment: [:], outputFile: relative + "/stdout", errorFile: relative + "/stderr", workingDirectory: elsewhere)
        #expect(ProcessLauncher.waitForExit(pid) == 0)
        let printed = try String(contentsOfFile: relative + "/stdout", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(URL(fileURLWithPath: printed).resolvingSymlinksInPath().path == URL(fileURLWithPath: elsewhere).resolvingSymlinksInPath().path)
    }

    @Test func aMissingWorkingDirectoryIsNamedInTheError() throws {
        let missing = "/nonexistent-\(UUID().uuidString)"
        let out = NSTemporaryDirectory() + "launcher-out-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        #expect {
            _ = try ProcessLauncher.spawn("/bin/true", [], environment: [:], outputFile: out, errorFile: out, workingDirectory: missing)
        } throws: { error in
            "\(error)".contains("in \(missing)")
        }
    }
}
