import NIOCore
import Synchronization

/// The return-route offers a bus's links have outstanding, by nonce (messages.proto,
/// ReturnRouteOffer): a claim arriving on an accepted connection finds its link here. A nonce is
/// taken once; a link forgets its own when the offer is answered, times out or its connection closes.
final class ReturnRouteOffers: Sendable {
    private let pending = Mutex<[[UInt8]: Link]>([:])

    func add(_ nonce: [UInt8], _ link: Link) { pending.withLock { $0[nonce] = link } }
    func remove(_ nonce: [UInt8]) { pending.withLock { _ = $0.removeValue(forKey: nonce) } }
    func take(_ nonce: [UInt8]) -> Link? { pending.withLock { $0.removeValue(forKey: nonce) } }
}

/// What an accepted connection's frame handler does with return-route messages (the bus's side).
struct ReturnRouteHandling: Sendable {
    /// A peer's claim of one of our offers arrived on `channel`, its own connection to us.
    var claimed: @Sendable (_ nonce: [UInt8], _ channel: any Channel) -> Void = { _, _ in }
    /// `from` offers to write to us over our link to it: true when that link claimed it.
    var offered: @Sendable (_ from: String, _ nonce: [UInt8]) -> Bool = { _, _ in false }
    /// The first message on an accepted `channel` (after any proof of identity) came from `from`.
    var arrived: @Sendable (_ from: String, _ channel: any Channel) -> Void = { _, _ in }
}
