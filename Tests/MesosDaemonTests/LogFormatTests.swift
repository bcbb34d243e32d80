import Foundation
import Testing
@testable import MesosDaemon

/// The daemons' log lines: `<timestamp> <level> <label>: event=<key> k=v ... | text`.
@Suite struct LogFormatTests {
    @Test func timestampsAreUTCWithMilliseconds() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        for (seconds, ms) in [(0, 0), (1_796_301_028, 123), (951_782_400, 7), (4_102_444_799, 999)] {
            let expected = formatter.string(from: Date(timeIntervalSince1970: Double(seconds) + Double(ms) / 1000 + 0.0004))
            #expect(MilestoneLogHandler.timestamp(seconds: seconds, milliseconds: ms) == expected)
        }
    }

    @Test func valuesWithSpacesQuotesBarsEqualsOrLineBreaksAreQuoted() {
        #expect(MilestoneLogHandler.quoted("plain") == "plain")
        #expect(MilestoneLogHandler.quoted("ünïcode-ok") == "ünïcode-ok")
        #expect(MilestoneLogHandler.quoted("") == "\"\"")
        #expect(MilestoneLogHandler.quoted("a b") == "\"a b\"")
        #expect(MilestoneLogHandler.quoted("k=v") == "\"k=v\"")
        #expect(MilestoneLogHandler.quoted("x|y") == "\"x|y\"")
        #expect(MilestoneLogHandler.quoted("say \"hi\"") == "\"say \\\"hi\\\"\"")
        #expect(MilestoneLogHandler.quoted("two\nlines") == "\"two\\nlines\"")
        #expect(MilestoneLogHandler.quoted("para\u{2029}graph") == "\"para\u{2029}graph\"", "a Unicode line break")
    }
}
