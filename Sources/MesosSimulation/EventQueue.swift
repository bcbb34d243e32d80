/// The simulator's agenda: actions at virtual times, run in (time, insertion) order, so a seed
/// always replays the same way.
struct EventQueue {
    private struct Entry {
        let time: Duration
        let sequence: UInt64
        let action: () -> Void
    }

    private var heap: [Entry] = []
    private var nextSequence: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }
    var nextTime: Duration? { heap.first?.time }

    mutating func schedule(at time: Duration, _ action: @escaping () -> Void) {
        nextSequence += 1
        heap.append(Entry(time: time, sequence: nextSequence, action: action))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard earlier(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (time: Duration, action: () -> Void)? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count, earlier(heap[l], heap[m]) { m = l }
                if r < heap.count, earlier(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return (top.time, top.action)
    }

    private func earlier(_ a: Entry, _ b: Entry) -> Bool {
        a.time < b.time || (a.time == b.time && a.sequence < b.sequence)
    }
}
