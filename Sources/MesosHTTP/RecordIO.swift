/// Mesos's RecordIO framing (docs/recordio.md, stout `recordio.hpp`): each record is its length
/// in decimal ASCII, a line feed, then the record's bytes. The event stream of
/// `POST /api/v1/scheduler` is RecordIO inside HTTP chunks (chunk boundaries mean nothing).
public enum RecordIO {
    public static func encode(_ record: [UInt8]) -> [UInt8] {
        Array(String(record.count).utf8) + [0x0A] + record
    }
}

public enum RecordIOError: Error, Equatable, CustomStringConvertible {
    /// A byte other than a digit before the line feed.
    case invalidLength(byte: UInt8)
    /// A line feed with no digits before it.
    case emptyLength
    /// A length beyond the decoder's `maxRecordSize` (or more digits than any such length has).
    case recordTooLarge(limit: Int)

    public var description: String {
        switch self {
        case .invalidLength(let b): "RecordIO: byte 0x\(String(b, radix: 16)) in a record's length"
        case .emptyLength: "RecordIO: a record with an empty length"
        case .recordTooLarge(let limit): "RecordIO: a record larger than \(limit) bytes"
        }
    }
}

/// Reads RecordIO from bytes as they arrive, in any pieces. A hostile length (non-digits, no
/// digits, beyond `maxRecordSize`) is an error at once, before any of the record is buffered;
/// after an error the decoder stays failed.
public struct RecordIODecoder: Sendable {
    public let maxRecordSize: Int
    private var length: Int?
    private var digits = 0
    private var pendingLength = 0
    private var buffer: [UInt8] = []
    private var failed: RecordIOError?

    public init(maxRecordSize: Int = 16 * 1024 * 1024) {
        self.maxRecordSize = maxRecordSize
    }

    /// The records completed by `bytes`, in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(RecordIOError) -> [[UInt8]] {
        if let failed { throw failed }
        var records: [[UInt8]] = []
        for b in bytes {
            if let need = length {
                buffer.append(b)
                if buffer.count == need {
                    records.append(buffer)
                    buffer = []
                    length = nil
                }
                continue
            }
            if b == 0x0A {
                guard digits > 0 else { return try fail(.emptyLength) }
                digits = 0
                if pendingLength == 0 {
                    records.append([])
                } else {
                    length = pendingLength
                    buffer.reserveCapacity(pendingLength)
                }
                pendingLength = 0
                continue
            }
            guard (0x30...0x39).contains(b) else { return try fail(.invalidLength(byte: b)) }
            digits += 1
            let (times, o1) = pendingLength.multipliedReportingOverflow(by: 10)
            let (next, o2) = times.addingReportingOverflow(Int(b - 0x30))
            guard !o1, !o2, next <= maxRecordSize else { return try fail(.recordTooLarge(limit: maxRecordSize)) }
            pendingLength = next
        }
        return records
    }

    /// Bytes of a record (or its length) that have arrived without its end.
    public var hasPartialRecord: Bool { length != nil || digits > 0 }

    private mutating func fail(_ error: RecordIOError) throws(RecordIOError) -> [[UInt8]] {
        failed = error
        throw error
    }
}
