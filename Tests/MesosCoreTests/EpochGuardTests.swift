import MesosCore
import MesosWire
import Testing

@Suite struct EpochGuardTests {
    static let leader = Leader(epoch: 7, pid: P.master)
    static func env(_ epoch: UInt64, from: String = P.master.description, _ payload: Envelope.Payload? = .ping(PingAgentMessage(connected: true)), peer: PeerIdentity = .unauthenticated) -> Inbound {
        Inbound(Envelope(epoch: epoch, from: from, payload: payload), peer: peer)
    }
    static let hint = Envelope.Payload.leaderHint(LeaderHintMessage(reason: "x"))
    static let roles: [EpochGuard.Role] = [.follower(detected: leader), .follower(detected: nil), .leadingMaster(epoch: 7), .standbyMaster]

    @Test func followerAcceptsOnlyTheDetectedLeaderAtItsEpoch() {
        let role = EpochGuard.Role.follower(detected: Self.leader)
        #expect(EpochGuard.check(Self.env(7), as: role) == .accept)
        #expect(EpochGuard.check(Self.env(6), as: role) == .drop(.staleEpoch))
        #expect(EpochGuard.check(Self.env(0), as: role) == .drop(.staleEpoch))
        #expect(EpochGuard.check(Self.env(8), as: role) == .drop(.unconfirmedEpoch))
        #expect(EpochGuard.check(Self.env(7, from: P.master2.description), as: role) == .drop(.notFromLeader))
    }

    @Test func whenMastersMustProveWhoTheyAreAnUnauthenticatedConnectionIsDropped() {
        let role = EpochGuard.Role.follower(detected: Self.leader, requireMasterIdentity: true)
        #expect(EpochGuard.check(Self.env(7), as: role) == .drop(.unauthenticatedMaster))
        #expect(EpochGuard.check(Self.env(7, peer: PeerIdentity(principal: "x", roles: [.agent])), as: role) == .drop(.unauthenticatedMaster))
        #expect(EpochGuard.check(Self.env(7, peer: PeerIdentity(roles: [.master])), as: role) == .accept)
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
        #expect(EpochGuard.check(Self.env(7, from: P.agent.description), as: role) == .accept)
        for other: UInt64 in [6, 8, 0, .max] {
            #expect(EpochGuard.check(Self.env(other, from: P.agent.description), as: role) == .answerWithHint(.wrongEpoch))
        }
    }

    @Test func whenPeersMustProveTheirRoleALeadingMasterTakesAgentAndSchedulerMessagesOnlyFromThatRole() {
        let role = EpochGuard.Role.leadingMaster(epoch: 7, requirePeerRoles: true)
        let agentMessage = Envelope.Payload.pong(PongAgentMessage())
        let schedulerMessage = Envelope.Payload.reviveOffers(ReviveOffersMessage(frameworkID: FrameworkID(value: "f")))
        let agent = PeerIdentity(principal: "a", roles: [.agent]), scheduler = PeerIdentity(principal: "s", roles: [.scheduler])
        #expect(EpochGuard.check(Self.env(7, from: P.agent.description, agentMessage, peer: agent), as: role) == .accept)
        #expect(EpochGuard.check(Self.env(7, from: P.agent.description, agentMessage, peer: scheduler), as: role) == .drop(.wrongPeerRole))
        #expect(EpochGuard.check(Self.env(7, from: P.agent.description, agentMessage), as: role) == .drop(.wrongPeerRole))
        #expect(EpochGuard.check(Self.env(7, from: P.agent.description, schedulerMessage, peer: scheduler), as: role) == .accept)
        #expect(EpochGuard.check(Self.env(7, from: P.agent.description, schedulerMessage, peer: agent), as: role) == .drop(.wrongPeerRole))
        #expect(EpochGuard.check(Self.env(6, from: P.agent.description, agentMessage, peer: agent), as: role) == .answerWithHint(.wrongEpoch), "the epoch rule first")
        // Without the requirement, as before: roles are not looked at.
        #expect(EpochGuard.check(Self.env(7, from: P.agent.description, agentMessage, peer: scheduler), as: .leadingMaster(epoch: 7)) == .accept)
    }

    @Test func standbyMasterOnlyHints() {
        for epoch: UInt64 in [0, 7, 8] {
            #expect(EpochGuard.check(Self.env(epoch, from: P.agent.description), as: .standbyMaster) == .answerWithHint(.notLeading))
        }
    }

    @Test func hintsAreAdvisoryForEveryRole() {
        for role in Self.roles { #expect(EpochGuard.check(Self.env(1, from: "anyone@h:1", Self.hint), as: role) == .accept) }
    }

    @Test func unknownPayloadsAndMalformedSendersAreDroppedByEveryRole() {
        for role in Self.roles {
            #expect(EpochGuard.check(Self.env(7, nil), as: role) == .drop(.unknownPayload))
            for bad in ["", "no-at-sign", "a@b", "a@h:0", "a@h:99999", "a b@h:1", "x@h:1\n", String(repeating: "x", count: 600) + "@h:1"] {
                #expect(EpochGuard.check(Self.env(7, from: bad), as: role) == .drop(.malformedSender), "\(bad.prefix(20))")
            }
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
            .frameworkError(FrameworkErrorMessage(message: "e")), .frameworkDisconnected(FrameworkDisconnectedMessage()),
        ]
        for payload in kinds {
            for epoch: UInt64 in [0, 6, 7, 8] {
                for from in [P.master.description, "other@h:1"] {
                    let e = Self.env(epoch, from: from, payload)
                    let follower = EpochGuard.check(e, as: .follower(detected: Self.leader))
                    #expect((follower == .accept) == (epoch == 7 && from == P.master.description))
                    #expect(EpochGuard.check(e, as: .follower(detected: nil)) == .drop(.noLeader))
                    #expect((EpochGuard.check(e, as: .leadingMaster(epoch: 7)) == .accept) == (epoch == 7))
                    #expect(EpochGuard.check(e, as: .standbyMaster) == .answerWithHint(.notLeading))
                }
            }
        }
    }
}
