import MesosWire
import Testing
@testable import MesosHA

@Suite struct EpochGuardTests {
    static let leader = Leader(epoch: 7, pid: "master@10.0.0.1:5050")
    static func env(_ epoch: UInt64, from: String = leader.pid, _ payload: Envelope.Payload? = .ping(PingAgentMessage(connected: true))) -> Envelope {
        Envelope(epoch: epoch, from: from, payload: payload)
    }
    static let hint = Envelope.Payload.leaderHint(LeaderHintMessage(reason: "x"))

    @Test func followerAcceptsOnlyTheDetectedLeaderAtItsEpoch() {
        let role = EpochGuard.Role.follower(detected: Self.leader)
        #expect(EpochGuard.check(Self.env(7), as: role) == .accept)
        #expect(EpochGuard.check(Self.env(6), as: role) == .drop(.staleEpoch))
        #expect(EpochGuard.check(Self.env(0), as: role) == .drop(.staleEpoch))
        #expect(EpochGuard.check(Self.env(8), as: role) == .drop(.unconfirmedEpoch))
        #expect(EpochGuard.check(Self.env(7, from: "master@10.0.0.2:5050"), as: role) == .drop(.notFromLeader))
    }

    @Test func masterlessFollowerDropsEverythingButHints() {
        let role = EpochGuard.Role.follower(detected: nil)
        for epoch: UInt64 in [0, 6, 7, 8, .max] {
            #expect(EpochGuard.check(Self.env(epoch), as: role) == .drop(.noLeader))
        }
        #expect(EpochGuard.check(Self.env(3, Self.hint), as: role) == .accept)
    }

    @Test func leadingMasterAcceptsItsOwnEpochAndHintsTheRest() {
        let role = EpochGuard.Role.leadingMaster(epoch: 7)
        #expect(EpochGuard.check(Self.env(7, from: "slave(1)@h:5051"), as: role) == .accept)
        #expect(EpochGuard.check(Self.env(6, from: "slave(1)@h:5051"), as: role) == .answerWithHint(.wrongEpoch))
        #expect(EpochGuard.check(Self.env(8, from: "slave(1)@h:5051"), as: role) == .answerWithHint(.wrongEpoch))
        #expect(EpochGuard.check(Self.env(0, from: "slave(1)@h:5051"), as: role) == .answerWithHint(.wrongEpoch))
    }

    @Test func standbyMasterOnlyHints() {
        for epoch: UInt64 in [0, 7, 8] {
            #expect(EpochGuard.check(Self.env(epoch, from: "s@h:1"), as: .standbyMaster) == .answerWithHint(.notLeading))
        }
    }

    @Test func hintsAreAdvisoryForEveryRole() {
        for role in [EpochGuard.Role.follower(detected: Self.leader), .follower(detected: nil), .leadingMaster(epoch: 7), .standbyMaster] {
            #expect(EpochGuard.check(Self.env(1, from: "anyone@h:1", Self.hint), as: role) == .accept)
        }
    }

    @Test func unknownPayloadKindsAreDroppedByEveryRole() {
        for role in [EpochGuard.Role.follower(detected: Self.leader), .follower(detected: nil), .leadingMaster(epoch: 7), .standbyMaster] {
            #expect(EpochGuard.check(Self.env(7, nil), as: role) == .drop(.unknownPayload))
        }
    }

    /// Every payload kind, every role, epochs around the leader's: the verdict depends only
    /// on role, epoch and sender, never on the kind of message (hints aside).
    @Test func exhaustiveOverPayloadKindsAndEpochs() {
        let kinds: [Envelope.Payload] = [
            .registerAgent(RegisterAgentMessage(agent: AgentInfo(hostname: "h"))),
            .agentRegistered(AgentRegisteredMessage(agentID: AgentID(value: "a"))),
            .ping(PingAgentMessage(connected: true)), .pong(PongAgentMessage()), .shutdown(ShutdownMessage()),
            .killTask(KillTaskMessage(frameworkID: FrameworkID(value: "f"), taskID: TaskID(value: "t"))),
            .resourceOffers(ResourceOffersMessage()), .lostAgent(LostAgentMessage(agentID: AgentID(value: "a"))),
            .frameworkError(FrameworkErrorMessage(message: "e")),
        ]
        for payload in kinds {
            for epoch: UInt64 in [0, 6, 7, 8] {
                for from in [Self.leader.pid, "other@h:1"] {
                    let e = Self.env(epoch, from: from, payload)
                    let follower = EpochGuard.check(e, as: .follower(detected: Self.leader))
                    #expect((follower == .accept) == (epoch == 7 && from == Self.leader.pid))
                    #expect(EpochGuard.check(e, as: .follower(detected: nil)) == .drop(.noLeader))
                    #expect((EpochGuard.check(e, as: .leadingMaster(epoch: 7)) == .accept) == (epoch == 7))
                    #expect(EpochGuard.check(e, as: .standbyMaster) == .answerWithHint(.notLeading))
                }
            }
        }
    }
}
