import MesosCore
import MesosDaemon
import MesosWire
import Testing

@Suite struct FlagParsing {
    @Test func mesosDurations() {
        let cases: [(String, Duration)] = [
            ("15secs", .seconds(15)), ("10mins", .seconds(600)), ("500ms", .milliseconds(500)), ("2hrs", .seconds(7200)),
            ("1days", .seconds(86_400)), ("1weeks", .seconds(604_800)), ("250us", .microseconds(250)), ("100ns", .nanoseconds(100)),
            ("0.5secs", .milliseconds(500)), ("3", .seconds(3)),
        ]
        for (text, expected) in cases { #expect(MesosDuration(parsing: text)?.duration == expected, "\(text)") }
        for bad in ["", "secs", "-1secs", "5 parsecs", "tenmins", "nan"] { #expect(MesosDuration(parsing: bad) == nil, "\(bad)") }
    }

    @Test func removalRateLimitsAndPercentages() {
        #expect(RemovalRateLimit(parsing: "1/2secs") == RemovalRateLimit(permits: 1, per: .seconds(2)))
        #expect(RemovalRateLimit(parsing: "1/20mins")?.interval == .seconds(1200))
        #expect(RemovalRateLimit(parsing: "4/1secs")?.interval == .milliseconds(250))
        for bad in ["", "1", "/2secs", "0/1secs", "-1/1secs", "1/0secs", "1/x", "1/2secs/3", "a/1secs"] { #expect(RemovalRateLimit(parsing: bad) == nil, "\(bad)") }
        #expect(parsePercentage("100%") == 1.0)
        #expect(parsePercentage("12.5%") == 0.125)
        #expect(parsePercentage("0%") == 0)
        for bad in ["", "100", "101%", "-1%", "x%", "nan%"] { #expect(parsePercentage(bad) == nil, "\(bad)") }
    }

    @Test func resources() {
        #expect(Resources(parsing: "cpus:4;mem:2048")?.amounts == ["cpus": 4, "mem": 2048])
        #expect(Resources(parsing: " cpus : 1.5 ; disk:10")?.amounts == ["cpus": 1.5, "disk": 10])
        for bad in ["cpus", "cpus:x", "cpus:-1", ":3", "cpus:1;mem"] { #expect(Resources(parsing: bad) == nil, "\(bad)") }
    }
}
