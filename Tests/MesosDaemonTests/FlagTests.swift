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

    @Test func resources() {
        #expect(Resources(parsing: "cpus:4;mem:2048")?.amounts == ["cpus": 4, "mem": 2048])
        #expect(Resources(parsing: " cpus : 1.5 ; disk:10")?.amounts == ["cpus": 1.5, "disk": 10])
        for bad in ["cpus", "cpus:x", "cpus:-1", ":3", "cpus:1;mem"] { #expect(Resources(parsing: bad) == nil, "\(bad)") }
    }
}
