import Foundation
import MesosWire

/// Why a JSON value is not the protobuf message it should be; `field` is the path from the top
/// ("call.subscribe.framework_info.user"). Mesos answers these with 400 "Failed to convert JSON
/// into Call protobuf: ...".
public enum ProtoJSONError: Error, Equatable, CustomStringConvertible {
    case notAnObject(field: String)
    case notAnArray(field: String)
    case missingRequired(field: String)
    case wrongType(field: String, expected: String)
    case unknownEnumName(field: String, name: String)
    case outOfRange(field: String)

    public var description: String {
        switch self {
        case .notAnObject(let f): "\(f): expected a JSON object"
        case .notAnArray(let f): "\(f): expected a JSON array"
        case .missingRequired(let f): "Missing required fields: \(f)"
        case .wrongType(let f, let expected): "\(f): expected \(expected)"
        case .unknownEnumName(let f, let name): "\(f): unknown enum value '\(name)'"
        case .outOfRange(let f): "\(f): value out of range"
        }
    }
}

/// A value of a protobuf field as stout's `protobuf.hpp` maps it to and from JSON (Mesos's JSON
/// API): proto field names as keys, enums by name, bytes as base64, numbers as numbers (numeric
/// strings accepted on input).
public protocol ProtoJSONValue: Sendable {
    static func read(_ json: JSON, at field: String) throws(ProtoJSONError) -> Self
    var json: JSON { get }
}

/// A generated protobuf enum (`protoName`, `CaseIterable`): JSON is its name.
public protocol ProtoJSONEnum: ProtoJSONValue, CaseIterable {
    var protoName: String { get }
}

extension ProtoJSONEnum {
    public static func read(_ json: JSON, at field: String) throws(ProtoJSONError) -> Self {
        guard case .string(let name) = json else { throw .wrongType(field: field, expected: "an enum name (string)") }
        guard let v = allCases.first(where: { $0.protoName == name }) else { throw .unknownEnumName(field: field, name: name) }
        return v
    }
    public var json: JSON { .string(protoName) }
}

/// One JSON object read as a message: `null` counts as unset, unknown keys are ignored (as
/// stout's parser); the last of duplicate keys wins.
public struct ProtoJSONObject {
    let fields: [String: JSON]
    let at: String

    public init(_ json: JSON, at field: String) throws(ProtoJSONError) {
        guard case .object(let pairs) = json else { throw .notAnObject(field: field) }
        var fields: [String: JSON] = [:]
        for (key, value) in pairs {
            if value == .null { fields[key] = nil } else { fields[key] = value }
        }
        self.fields = fields
        self.at = field
    }

    public func optional<T: ProtoJSONValue>(_ key: String) throws(ProtoJSONError) -> T? {
        guard let v = fields[key] else { return nil }
        return try T.read(v, at: at + "." + key)
    }

    public func required<T: ProtoJSONValue>(_ key: String) throws(ProtoJSONError) -> T {
        guard let v = fields[key] else { throw .missingRequired(field: at + "." + key) }
        return try T.read(v, at: at + "." + key)
    }

    /// An optional enum: an unknown name reads as unset (stout drops it), a non-string is an error.
    public func optionalEnum<T: ProtoJSONEnum>(_ key: String) throws(ProtoJSONError) -> T? {
        guard let v = fields[key] else { return nil }
        if case .string(let name) = v, !T.allCases.contains(where: { $0.protoName == name }) { return nil }
        return try T.read(v, at: at + "." + key)
    }

    public func repeated<T: ProtoJSONValue>(_ key: String) throws(ProtoJSONError) -> [T] {
        guard let v = fields[key] else { return [] }
        guard case .array(let items) = v else { throw .notAnArray(field: at + "." + key) }
        var out: [T] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() { out.append(try T.read(item, at: "\(at).\(key)[\(i)]")) }
        return out
    }
}

/// A message's JSON object as it is written: fields in declaration order, unset ones left out.
public struct ProtoJSONWriter {
    public private(set) var fields: [(String, JSON)] = []
    public init() {}
    public mutating func set<T: ProtoJSONValue>(_ key: String, _ value: T) { fields.append((key, value.json)) }
    public mutating func set<T: ProtoJSONValue>(_ key: String, _ value: T?) { if let value { fields.append((key, value.json)) } }
    public mutating func set<T: ProtoJSONValue>(_ key: String, _ values: [T]) { if !values.isEmpty { fields.append((key, .array(values.map(\.json)))) } }
    public var json: JSON { .object(fields) }
}

extension String: ProtoJSONValue {
    public static func read(_ json: JSON, at field: String) throws(ProtoJSONError) -> String {
        guard case .string(let s) = json else { throw .wrongType(field: field, expected: "a string") }
        return s
    }
    public var json: JSON { .string(self) }
}

extension Bool: ProtoJSONValue {
    public static func read(_ json: JSON, at field: String) throws(ProtoJSONError) -> Bool {
        switch json {
        case .bool(let b): return b
        case .string("true"): return true
        case .string("false"): return false
        default: throw .wrongType(field: field, expected: "a boolean")
        }
    }
    public var json: JSON { .bool(self) }
}

extension Double: ProtoJSONValue {
    public static func read(_ json: JSON, at field: String) throws(ProtoJSONError) -> Double {
        switch json {
        case .number(let d): return d
        case .integer(let i): return Double(i)
        case .string(let s):
            if s == "Infinity" { return .infinity }
            if s == "-Infinity" { return -.infinity }
            guard let d = Double(s), d.isFinite else { throw .wrongType(field: field, expected: "a number") }
            return d
        default: throw .wrongType(field: field, expected: "a number")
        }
    }
    public var json: JSON { .number(self) }
}

/// Integer fields: JSON integers, whole doubles in range, or numeric strings.
protocol ProtoJSONInteger: FixedWidthInteger, ProtoJSONValue {}

extension ProtoJSONInteger {
    public static func read(_ json: JSON, at field: String) throws(ProtoJSONError) -> Self {
        switch json {
        case .integer(let i):
            guard let v = Self(exactly: i) else { throw .outOfRange(field: field) }
            return v
        case .number(let d):
            guard let v = Self(exactly: d) else { throw .outOfRange(field: field) }
            return v
        case .string(let s):
            guard let v = Self(s) else { throw .wrongType(field: field, expected: "an integer") }
            return v
        default: throw .wrongType(field: field, expected: "an integer")
        }
    }
    public var json: JSON { Int64(exactly: self).map(JSON.integer) ?? .number(Double(self)) }
}

extension Int32: ProtoJSONInteger {}
extension UInt32: ProtoJSONInteger {}
extension Int64: ProtoJSONInteger {}
extension UInt64: ProtoJSONInteger {}

/// `bytes` fields: standard base64, padded on output, padding optional on input (as stout).
extension Array: ProtoJSONValue where Element == UInt8 {
    public static func read(_ json: JSON, at field: String) throws(ProtoJSONError) -> [UInt8] {
        guard case .string(var s) = json else { throw .wrongType(field: field, expected: "base64 bytes (string)") }
        if let eq = s.firstIndex(of: "=") { s = String(s[..<eq]) }
        s += String(repeating: "=", count: (4 - s.utf8.count % 4) % 4)
        guard let data = Data(base64Encoded: s) else { throw .wrongType(field: field, expected: "base64 bytes") }
        return [UInt8](data)
    }
    public var json: JSON { .string(Data(self).base64EncodedString()) }
}

extension ProtoJSONMessageDecoding {
    /// Bytes of a request body as one message: JSON, then the message's fields.
    public static func decode(json bytes: [UInt8]) throws(ProtoJSONDecodeError) -> Self {
        let value: JSON
        do { value = try JSON.parse(bytes) } catch { throw .json(error) }
        do { return try Self.read(value, at: rootName) } catch { throw .message(error) }
    }
}

/// A top-level message that request bodies carry (`Call`): its name in error paths.
public protocol ProtoJSONMessageDecoding: ProtoJSONValue {
    static var rootName: String { get }
}

public enum ProtoJSONDecodeError: Error, Equatable, CustomStringConvertible {
    case json(JSONParseError)
    case message(ProtoJSONError)

    /// As Mesos words it (`Master::Http::scheduler`).
    public var description: String {
        switch self {
        case .json(let e): "Failed to parse body into JSON: \(e)"
        case .message(let e): "Failed to convert JSON into Call protobuf: \(e)"
        }
    }
}
