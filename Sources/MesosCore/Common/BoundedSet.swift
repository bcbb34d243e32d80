/// A set that forgets its oldest members beyond `capacity` (per-peer tables fed by the network
/// must not grow without bound).
public struct BoundedSet<Element: Hashable & Sendable>: Sendable {
    public let capacity: Int
    /// Member -> the insertion number of its live slot in `order`.
    private var members: [Element: Int] = [:]
    private var order: [(element: Element, number: Int)] = []
    private var head = 0
    private var inserted = 0

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    public var count: Int { members.count }
    public func contains(_ e: Element) -> Bool { members[e] != nil }

    public mutating func insert(_ e: Element) {
        guard members[e] == nil else { return }
        inserted += 1
        members[e] = inserted
        order.append((e, inserted))
        while members.count > capacity, head < order.count {
            let (old, number) = order[head]
            if members[old] == number { members[old] = nil }  // a slot of a removed member is skipped
            head += 1
        }
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
        if order.count - head > 2 * capacity + 1024 {  // slots of removed members pile up: keep the live ones
            order = order[head...].filter { members[$0.element] == $0.number }
            head = 0
        }
    }

    public mutating func remove(_ e: Element) { members[e] = nil }
}
