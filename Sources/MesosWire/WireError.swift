/// Everything that can be wrong with bytes received from a peer.
public enum WireError: Error, Hashable, CustomStringConvertible {
    /// protobuf-c refused the bytes (bad varint, truncated field, missing required field...).
    case malformed(type: String, bytes: Int)
    case invalidUTF8(field: String)
    case missingField(String)
    case unknownEnumValue(field: String, value: Int32)
    /// A frame header announcing more than the configured maximum.
    case frameTooLarge(length: Int, max: Int)
    /// A frame header announcing zero bytes: an envelope is never empty.
    case emptyFrame

    public var description: String {
        switch self {
        case .malformed(let type, let bytes): "malformed \(type) (\(bytes) bytes): not valid protobuf or a required field is missing"
        case .invalidUTF8(let field): "field \(field) is not valid UTF-8"
        case .missingField(let field): "required field \(field) is missing"
        case .unknownEnumValue(let field, let value): "field \(field) has unknown enum value \(value)"
        case .frameTooLarge(let length, let max): "frame of \(length) bytes exceeds the maximum frame size of \(max) bytes"
        case .emptyFrame: "empty frame (length 0)"
        }
    }
}
