import Dispatch
import Foundation
import MesosDaemon

/// Runs a program to completion through `ProcessLauncher` (see there why not `Foundation.Process`).
enum ChildProcess {
    struct Failed: Error, CustomStringConvertible {
        let command: String
        let status: Int32
        let stderr: String
        var description: String { "\(command) exited with status \(status): \(stderr)" }
    }

    /// Runs `executable` with stdin from /dev/null, stdout to `outputFile` (truncated), stderr appended
    /// to `errorFile`. Returns the output, or throws `Failed` with the stderr for a non-zero exit.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String], outputFile: String,
        errorFile: String
    ) async throws -> String {
        let pid = try ProcessLauncher.spawn(executable, arguments, environment: environment, outputFile: outputFile, errorFile: errorFile)
        let status = await ProcessLauncher.exit(of: pid)
        guard status == 0 else {
            let stderr = (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? ""
            throw Failed(command: ([executable] + arguments).joined(separator: " "), status: status, stderr: stderr)
        }
        return (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
    }
}
