import MesosWire
import Testing
@testable import MesosHA

@Suite struct FixedMasterDetectorTests {
    @Test func learnsTheEpochAndPidFromTheMastersOwnHint() async {
        let d = FixedMasterDetector(hostPort: "localhost:5050")!
        var changes = d.changes.makeAsyncIterator()
        await d.start()
        #expect(await changes.next() == Leader(epoch: 0, pid: "master@localhost:5050"))
        let info = MasterInfo(id: "m", ip: 1, port: 5050, pid: "master@127.0.0.1:5050")
        // A hint about another master, or from another port, is ignored.
        await d.hint(LeaderHintMessage(leader: MasterInfo(id: "x", ip: 1, port: 5051, pid: "master@10.0.0.9:5051"), leaderEpoch: 9), from: "master@127.0.0.1:5050")
        await d.hint(LeaderHintMessage(leader: info, leaderEpoch: 9), from: "master@127.0.0.1:6060")
        await d.hint(LeaderHintMessage(leader: info, leaderEpoch: 7), from: "master@127.0.0.1:5050")
        #expect(await changes.next() == Leader(epoch: 7, pid: "master@127.0.0.1:5050", info: info))
        #expect(await d.pid == "master@127.0.0.1:5050")
    }

    @Test func rejectsMalformedAddresses() {
        for bad in ["", "host", ":5050", "host:0", "host:99999", "host:x"] { #expect(FixedMasterDetector(hostPort: bad) == nil, "\(bad)") }
    }
}
