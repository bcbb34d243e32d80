/// Why bytes are not JSON (RFC 8259), with the offset where reading stopped.
public enum JSONParseError: Error, Equatable, CustomStringConvertible {
    case unexpectedEnd
    case unexpected(byte: UInt8, at: Int)
    case invalidString(at: Int)
    case invalidNumber(at: Int)
    case tooDeep(limit: Int)
    case trailingBytes(at: Int)

    public var description: String {
        switch self {
        case .unexpectedEnd: "unexpected end of input"
        case .unexpected(let b, let at): "unexpected byte 0x\(String(b, radix: 16)) at offset \(at)"
        case .invalidString(let at): "invalid string at offset \(at)"
        case .invalidNumber(let at): "invalid number at offset \(at)"
        case .tooDeep(let limit): "nesting deeper than \(limit)"
        case .trailingBytes(let at): "bytes after the value at offset \(at)"
        }
    }
}

extension JSON {
    /// Parses one JSON value (a request body). Strict: no comments or trailing commas; nesting is
    /// bounded by `maxDepth` (a hostile body cannot exhaust the stack). Integers that fit an
    /// `Int64` read as `.integer`, other numbers as `.number`.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 64) throws(JSONParseError) -> JSON {
        var p = JSONParser(bytes: bytes, maxDepth: maxDepth)
        p.skipSpace()
        let value = try p.value(depth: 0)
        p.skipSpace()
        guard p.at == bytes.count else { throw .trailingBytes(at: p.at) }
        return value
    }

    /// The value of `key` in an object (the last one of that name), nil for anything else.
    public subscript(key: String) -> JSON? {
        guard case .object(let fields) = self else { return nil }
        return fields.last { $0.0 == key }?.1
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    let maxDepth: Int
    var at = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func skipSpace() {
        while at < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[at]) { at += 1 }
    }

    func peek() throws(JSONParseError) -> UInt8 {
        guard at < bytes.count else { throw .unexpectedEnd }
        return bytes[at]
    }

    mutating func expect(_ literal: String, _ value: JSON) throws(JSONParseError) -> JSON {
        for b in literal.utf8 {
            guard try peek() == b else { throw .unexpected(byte: bytes[at], at: at) }
            at += 1
        }
        return value
    }

    mutating func value(depth: Int) throws(JSONParseError) -> JSON {
        guard depth < maxDepth else { throw .tooDeep(limit: maxDepth) }
        switch try peek() {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        case let b: throw .unexpected(byte: b, at: at)
        }
    }

    mutating func object(depth: Int) throws(JSONParseError) -> JSON {
        at += 1
        var fields: [(String, JSON)] = []
        skipSpace()
        if try peek() == UInt8(ascii: "}") {
            at += 1
            return .object(fields)
        }
        while true {
            skipSpace()
            guard try peek() == UInt8(ascii: "\"") else { throw .unexpected(byte: bytes[at], at: at) }
            let key = try string()
            skipSpace()
            guard try peek() == UInt8(ascii: ":") else { throw .unexpected(byte: bytes[at], at: at) }
            at += 1
            skipSpace()
            fields.append((key, try value(depth: depth + 1)))
            skipSpace()
            switch try peek() {
            case UInt8(ascii: ","): at += 1
            case UInt8(ascii: "}"):
                at += 1
                return .object(fields)
            case let b: throw .unexpected(byte: b, at: at)
            }
        }
    }

    mutating func array(depth: Int) throws(JSONParseError) -> JSON {
        at += 1
        var items: [JSON] = []
        skipSpace()
        if try peek() == UInt8(ascii: "]") {
            at += 1
            return .array(items)
        }
        while true {
            skipSpace()
            items.append(try value(depth: depth + 1))
            skipSpace()
            switch try peek() {
            case UInt8(ascii: ","): at += 1
            case UInt8(ascii: "]"):
                at += 1
                return .array(items)
            case let b: throw .unexpected(byte: b, at: at)
            }
        }
    }

    mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard at + 4 <= bytes.count else { throw .unexpectedEnd }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[at]
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
            default: throw .invalidString(at: at)
            }
            v = v << 4 | UInt32(d)
            at += 1
        }
        return v
    }

    mutating func string() throws(JSONParseError) -> String {
        let start = at
        at += 1
        var out: [UInt8] = []
        while true {
            let b = try peek()
            at += 1
            switch b {
            case UInt8(ascii: "\""):
                guard let s = String(validating: out, as: UTF8.self) else { throw .invalidString(at: start) }
                return s
            case UInt8(ascii: "\\"):
                let e = try peek()
                at += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard at + 6 <= bytes.count, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") else { throw .invalidString(at: at) }
                        at += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw .invalidString(at: at) }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw .invalidString(at: at) }
                    out.append(contentsOf: Array(String(scalar).utf8))
                default: throw .invalidString(at: at - 1)
                }
            case 0..<0x20: throw .invalidString(at: at - 1)
            default: out.append(b)
            }
        }
    }

    mutating func number() throws(JSONParseError) -> JSON {
        let start = at
        var integral = true
        if bytes[at] == UInt8(ascii: "-") { at += 1 }
        func digits(_ p: inout JSONParser) -> Int {
            var n = 0
            while p.at < p.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.bytes[p.at]) {
                p.at += 1
                n += 1
            }
            return n
        }
        guard digits(&self) > 0 else { throw .invalidNumber(at: start) }
        if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
            at += 1
            integral = false
            guard digits(&self) > 0 else { throw .invalidNumber(at: start) }
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
            at += 1
            integral = false
            if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
            guard digits(&self) > 0 else { throw .invalidNumber(at: start) }
        }
        let text = String(decoding: bytes[start..<at], as: UTF8.self)
        if integral, let i = Int64(text) { return .integer(i) }
        guard let d = Double(text), d.isFinite else { throw .invalidNumber(at: start) }
        return .number(d)
    }
}
