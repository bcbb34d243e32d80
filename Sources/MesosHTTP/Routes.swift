import Foundation
import MesosBus

/// What a master does with one HTTP request: every answer is decided from its snapshot alone,
/// except a teardown, which the daemon carries out before answering 200.
public enum MasterHTTPDecision: Sendable {
    case respond(HTTPResponse)
    /// `POST /master/teardown` passed every check: remove the framework, then answer 200.
    case teardown(frameworkID: String)
}

/// Mesos's master endpoints (src/master/http.cpp) as pure functions of a `MasterSnapshot`.
///
/// Paths are Mesos's, and as in Mesos (the master is libprocess's delegate) a path that names no
/// other process is the master's: `/state` is `/master/state`, `/redirect` is `/master/redirect`.
/// Leader-only endpoints (`state`, `teardown`) answer 307 to the leader's same path on a standby,
/// 503 `No leader elected` without a leader, 503 on a leader still recovering its registry.
public enum MasterRoutes {
    public static func decide(
        _ request: HTTPRequest, _ s: MasterSnapshot, readwriteCredentials: [Credential]? = nil, exporter: PrometheusExporter? = nil
    ) -> MasterHTTPDecision {
        let path = request.path
        switch path {
        case "/metrics/snapshot": return .respond(json(MetricsJSON.object(MasterMetricsReport.values(s)), request))
        case "/metrics": return .respond(prometheus(MasterMetricsReport.values(s), exporter))
        case "/version", "/version/": return .respond(json(StateJSON.version(s.version), request))
        default: break
        }
        let route = path == "/master" ? "/" : path.hasPrefix("/master/") ? String(path.dropFirst("/master".count)) : path
        switch route {
        case "/", "/index.html":
            return .respond(HTTPResponse(status: 200, headers: [("Content-Type", "text/html; charset=utf-8")], body: Array(Dashboard.html.utf8)))
        case "/health":
            return .respond(HTTPResponse(status: 200))
        case "/redirect":
            guard let leader = s.leader else { return .respond(.text(503, "No leader elected")) }
            return .respond(redirect(to: leader, uri: ""))
        case "/state", "/state.json":
            if let answer = leaderOnly(request, route: route, s) { return .respond(answer) }
            return .respond(json(StateJSON.master(s), request))
        case "/teardown":
            if let answer = leaderOnly(request, route: route, s) { return .respond(answer) }
            return teardown(request, s, credentials: readwriteCredentials)
        default:
            if route.hasPrefix("/redirect/") { return .respond(.text(404, "")) }
            return .respond(.text(404, "No such endpoint: \(path)"))
        }
    }

    /// nil when this master serves the request itself.
    static func leaderOnly(_ request: HTTPRequest, route: String, _ s: MasterSnapshot) -> HTTPResponse? {
        switch s.role {
        case .leader: return nil
        case .recovering: return .text(503, "Master has not finished recovery")
        case .standby:
            guard let leader = s.leader else { return .text(503, "No leader elected") }
            // Detected as the leader but not leading yet: redirecting would loop.
            if leader.pid == s.pid { return .text(503, "Master has not finished recovery") }
            return redirect(to: leader, uri: "/master" + route + (request.query.map { "?" + $0 } ?? ""))
        }
    }

    /// 307 to `//hostname:port<uri>` (scheme-relative, as Mesos: the client keeps http or https).
    static func redirect(to leader: LeaderAddress, uri: String) -> HTTPResponse {
        HTTPResponse(status: 307, headers: [("Location", "//\(leader.hostname):\(leader.port)\(uri)"), ("Access-Control-Allow-Origin", "*")])
    }

    static func teardown(_ request: HTTPRequest, _ s: MasterSnapshot, credentials: [Credential]?) -> MasterHTTPDecision {
        if let credentials, !BasicAuthentication.accepts(request.header("Authorization"), credentials) {
            return .respond(HTTPResponse(status: 401, headers: [("WWW-Authenticate", "Basic realm=\"mesos-master-readwrite\"")]))
        }
        guard request.method == "POST" else { return .respond(HTTPResponse(status: 405, headers: [("Allow", "POST")])) }
        guard let form = FormDecoding.decode(String(decoding: request.body, as: UTF8.self)) else {
            return .respond(.text(400, "Unable to decode query string"))
        }
        guard let id = form["frameworkId"], !id.isEmpty else {
            return .respond(.text(400, "Missing 'frameworkId' query parameter in the request body"))
        }
        guard s.frameworks.contains(where: { $0.id == id }) else { return .respond(.text(400, "No framework found with specified ID")) }
        return .teardown(frameworkID: id)
    }

    static func prometheus(_ values: [MetricValue], _ exporter: PrometheusExporter?) -> HTTPResponse {
        let text = (exporter ?? PrometheusExporter()).render(values)
        return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body: Array(text.utf8))
    }
}

/// The agent's endpoints (src/slave/http.cpp): `/slave(1)/state` (503 while recovering),
/// `/slave(1)/health`, `/metrics/snapshot`, `/metrics`, `/version`; as on the master, a path
/// naming no process is the agent's (`/state`, `/health`).
public enum AgentRoutes {
    public static func respond(_ request: HTTPRequest, _ s: AgentSnapshot, exporter: PrometheusExporter? = nil) -> HTTPResponse {
        let path = request.path
        switch path {
        case "/metrics/snapshot": return json(MetricsJSON.object(AgentMetricsReport.values(s)), request)
        case "/metrics": return MasterRoutes.prometheus(AgentMetricsReport.values(s), exporter)
        case "/version", "/version/": return json(StateJSON.version(s.version), request)
        default: break
        }
        let prefix = "/slave(1)"
        let route = path.hasPrefix(prefix + "/") ? String(path.dropFirst(prefix.count)) : path
        switch route {
        case "/health": return HTTPResponse(status: 200)
        case "/state", "/state.json":
            if s.recovering { return .text(503, "Agent has not finished recovery") }
            return json(StateJSON.agent(s), request)
        default: return .text(404, "No such endpoint: \(path)")
        }
    }
}

/// A JSON answer; with `?jsonp=cb`, `cb(<json>);` as JavaScript (Mesos's jsonp). Readable from
/// any origin: the dashboard follows the leader to other masters' ports.
func json(_ value: JSON, _ request: HTTPRequest) -> HTTPResponse {
    let cors = ("Access-Control-Allow-Origin", "*")
    if let query = request.query, let callback = FormDecoding.decode(query)?["jsonp"], callback.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "$" }), !callback.isEmpty {
        return HTTPResponse(status: 200, headers: [("Content-Type", "text/javascript"), cors], body: Array("\(callback)(\(value.rendered));".utf8))
    }
    return HTTPResponse(status: 200, headers: [("Content-Type", "application/json"), cors], body: value.bytes)
}

/// `application/x-www-form-urlencoded` (and query strings): nil on a bad percent escape.
public enum FormDecoding {
    public static func decode(_ text: String) -> [String: String]? {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = unescape(parts[0]), let value = unescape(parts.count > 1 ? parts[1] : "") else { return nil }
            fields[key] = value
        }
        return fields
    }

    static func unescape(_ s: Substring) -> String? {
        String(s.replacingOccurrences(of: "+", with: " ")).removingPercentEncoding
    }
}

/// HTTP Basic authentication against the daemon's credentials (Mesos's basic authenticator).
public enum BasicAuthentication {
    public static func accepts(_ header: String?, _ credentials: [Credential]) -> Bool {
        guard let header, header.lowercased().hasPrefix("basic "),
            let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let decoded = String(data: data, encoding: .utf8), let colon = decoded.firstIndex(of: ":")
        else { return false }
        let principal = String(decoded[..<colon]), secret = String(decoded[decoded.index(after: colon)...])
        return credentials.contains { $0.principal == principal && $0.matches(secret: secret) }
    }
}
