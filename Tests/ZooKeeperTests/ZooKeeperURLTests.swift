import Foundation
import Testing
import ZooKeeper

@Suite("ZooKeeper URL parsing")
struct ZooKeeperURLTests {
    @Test func singleServer() throws {
        let url = try ZooKeeperURL(parsing: "zk://127.0.0.1:2181/mesos")
        #expect(url.servers == "127.0.0.1:2181")
        #expect(url.path == "/mesos")
        #expect(url.credentials == nil)
        #expect(url.description == "zk://127.0.0.1:2181/mesos")
    }

    @Test func severalServersAndNestedPath() throws {
        let url = try ZooKeeperURL(parsing: "zk://zk1.example:2181,zk2.example:2182,10.0.0.3:2183/mesos/prod")
        #expect(url.servers == "zk1.example:2181,zk2.example:2182,10.0.0.3:2183")
        #expect(url.path == "/mesos/prod")
    }

    @Test func digestCredentials() throws {
        let url = try ZooKeeperURL(parsing: "zk://jdoe:s3cret@h1:2181,h2:2182/mesos")
        #expect(url.credentials == Credentials(username: "jdoe", password: "s3cret"))
        #expect(url.servers == "h1:2181,h2:2182")
        #expect(url.path == "/mesos")
    }

    @Test func passwordNeverPrinted() throws {
        let url = try ZooKeeperURL(parsing: "zk://jdoe:s3cret@h1:2181/mesos")
        let credentials = try #require(url.credentials)
        var dumped = ""
        dump(url, to: &dumped)
        for text in [
            url.description, String(describing: url), String(reflecting: url), "\(credentials)",
            String(reflecting: credentials), dumped,
        ] {
            #expect(!text.contains("s3cret"), "\(text)")
        }
        #expect(url.description == "zk://jdoe:***@h1:2181/mesos")
    }

    @Test func passwordMaySplitAtFirstColonAndLastAt() throws {
        // Mesos: credentials end at the last '@', username ends at the first ':'.
        let url = try ZooKeeperURL(parsing: "zk://jdoe:p@ss:w@rd@h:2181/mesos")
        #expect(url.credentials == Credentials(username: "jdoe", password: "p@ss:w@rd"))
        #expect(url.servers == "h:2181")
    }

    @Test func surroundingWhitespaceTrimmed() throws {
        let url = try ZooKeeperURL(parsing: "  zk://h:2181/mesos \n")
        #expect(url.servers == "h:2181")
        #expect(url.path == "/mesos")
    }

    @Test func bracketedIPv6Host() throws {
        let url = try ZooKeeperURL(parsing: "zk://[::1]:2181/mesos")
        #expect(url.servers == "[::1]:2181")
    }

    @Test func fileIndirection() throws {
        let file = try temporaryFile(containing: "\n  zk://jdoe:s3cret@h1:2181,h2:2182/mesos  \n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let url = try ZooKeeperURL(parsing: "file://\(file)")
        #expect(url == (try ZooKeeperURL(parsing: "zk://jdoe:s3cret@h1:2181,h2:2182/mesos")))
    }

    static let malformed: [(String, ZooKeeperURLError)] = [
        ("", .empty),
        ("  \n", .empty),
        ("http://h:2181/mesos", .unsupportedScheme("http")),
        ("ZK://h:2181/mesos", .unsupportedScheme("ZK")),
        ("h:2181/mesos", .unsupportedScheme("")),
        ("zk:///mesos", .missingServers),
        ("zk://jdoe:s3cret@/mesos", .missingServers),
        ("zk://h1:2181,,h2:2182/mesos", .invalidServer("", reason: "empty entry")),
        ("zk://h1:2181,/mesos", .invalidServer("", reason: "empty entry")),
        ("zk://h1/mesos", .invalidServer("h1", reason: "missing ':port'")),
        ("zk://:2181/mesos", .invalidServer(":2181", reason: "missing host")),
        ("zk://::1:2181/mesos", .invalidServer("::1:2181", reason: "IPv6 host must be in brackets")),
        ("zk://h:abc/mesos", .invalidPort(server: "h:abc")),
        ("zk://h:/mesos", .invalidPort(server: "h:")),
        ("zk://h:0/mesos", .invalidPort(server: "h:0")),
        ("zk://h:65536/mesos", .invalidPort(server: "h:65536")),
        ("zk://h:+80/mesos", .invalidPort(server: "h:+80")),
        ("zk://h:2181", .missingPath),
        ("zk://jdoe:s3cret@h:2181", .missingPath),
        ("zk://h:2181/", .rootPath),
        ("zk://h:2181/mesos/", .invalidPath("/mesos/", reason: "trailing '/'")),
        ("zk://h:2181/a//b", .invalidPath("/a//b", reason: "empty segment")),
        ("zk://h:2181/a/../b", .invalidPath("/a/../b", reason: "'..' segment")),
        ("zk://h:2181/a/./b", .invalidPath("/a/./b", reason: "'.' segment")),
        ("zk://jdoes3cret@h:2181/mesos", .malformedCredentials),
        ("zk://:s3cret@h:2181/mesos", .emptyUsername),
        ("zk://jdoe:@h:2181/mesos", .emptyPassword),
        ("file://", .emptyFilePath),
    ]

    @Test(arguments: malformed)
    func malformedURLRejected(_ input: String, _ expected: ZooKeeperURLError) {
        #expect(throws: expected) { try ZooKeeperURL(parsing: input) }
    }

    @Test(arguments: ["http://jdoe:s3cret@h:2181/mesos", "zk://jdoe:s3cret@h:x/mesos", "zk://jdoe:s3cret@h:2181/"])
    func errorNeverShowsThePassword(_ input: String) {
        let error = #expect(throws: ZooKeeperURLError.self) { try ZooKeeperURL(parsing: input) }
        #expect(error.map { !"\($0)".contains("s3cret") } == true)
    }

    @Test func missingFileRejected() {
        let path = FileManager.default.temporaryDirectory.appending(path: "no-such-\(UUID().uuidString)").path
        #expect(throws: ZooKeeperURLError.unreadableFile(path: path, reason: "No such file or directory")) {
            try ZooKeeperURL(parsing: "file://\(path)")
        }
    }

    @Test func directoryAsFileRejected() {
        let path = FileManager.default.temporaryDirectory.path
        #expect(throws: ZooKeeperURLError.unreadableFile(path: path, reason: "Is a directory")) {
            try ZooKeeperURL(parsing: "file://\(path)")
        }
    }

    @Test func fileWithMalformedURLRejected() throws {
        let file = try temporaryFile(containing: "zk://h:2181\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(throws: ZooKeeperURLError.invalidFileContent(path: file, .missingPath)) {
            try ZooKeeperURL(parsing: "file://\(file)")
        }
    }

    @Test func fileReferringToAnotherFileRejected() throws {
        let file = try temporaryFile(containing: "file:///etc/hostname")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(throws: ZooKeeperURLError.nestedFileReference(path: file)) {
            try ZooKeeperURL(parsing: "file://\(file)")
        }
    }

    private func temporaryFile(containing text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appending(path: "zk-url-\(UUID().uuidString)").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
