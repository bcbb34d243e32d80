#!/usr/bin/python3
"""Generate the Swift side of the wire contract from proto/*.proto.

Input: a FileDescriptorSet (protoc --descriptor_set_out --include_imports) and
the protoc-c headers. Output:
  - Swift value types for every message and enum, with lossless conversion to
    and from the protobuf-c C structs (MesosWire/Generated/Messages.swift);
  - a sample value of every message with every field set, used by the
    round-trip and cross-language tests (MesosWireTests/Generated/Samples.swift).

Run through scripts/gen-proto, never by hand.
"""
import re
import sys

from google.protobuf import descriptor_pb2 as d

F = d.FieldDescriptorProto

SWIFT_SCALAR = {
    F.TYPE_STRING: "String",
    F.TYPE_BYTES: "[UInt8]",
    F.TYPE_BOOL: "Bool",
    F.TYPE_UINT32: "UInt32",
    F.TYPE_INT32: "Int32",
    F.TYPE_UINT64: "UInt64",
    F.TYPE_INT64: "Int64",
    F.TYPE_DOUBLE: "Double",
}
ACRONYMS = {"id": "ID", "ids": "IDs", "uuid": "UUID", "pid": "PID", "pids": "PIDs", "ip": "IP"}
# Swift names that must not shadow the standard library (`Task` is Swift concurrency's).
SWIFT_RENAMES = {"Task": "MesosTask"}
# Nested names Swift reserves (`X.Type` is the metatype): FrameworkInfo.Capability.Type -> .Kind.
SWIFT_NESTED_RENAMES = {"Type": "Kind"}
# Top-level Swift names of a package other than `mesos` (see Gen._swift_path).
PACKAGE_PREFIXES = {"mesos.v1": "V1", "mesos.v1.scheduler": "V1"}
SWIFT_KEYWORDS = {"default", "case", "class", "struct", "enum", "protocol", "func", "var", "let", "in", "is", "as"}


def camel_to_lower(name):
    """protoc-c's CamelToLower: '_' before an upper-case letter that follows a lower-case one."""
    out = name[0].lower()
    for prev, ch in zip(name, name[1:]):
        if ch.isupper() and not prev.isupper():
            out += "_"
        out += ch.lower()
    return out


def swift_field(name):
    parts = name.split("_")
    out = parts[0]
    for p in parts[1:]:
        out += ACRONYMS.get(p, p[:1].upper() + p[1:])
    return f"`{out}`" if out in SWIFT_KEYWORDS else out


def swift_case(value_names, name):
    prefix = ""
    if len(value_names) > 1:
        first = value_names[0]
        cut = first.find("_")
        while cut != -1 and all(v.startswith(first[: cut + 1]) for v in value_names):
            prefix = first[: cut + 1]
            cut = first.find("_", cut + 1)
    return swift_field(name[len(prefix):].lower())


class Gen:
    def __init__(self, fds, header_text):
        self.header = header_text
        self.messages = []  # (path tuple, DescriptorProto)
        self.enums = []  # (path tuple, EnumDescriptorProto)
        self.by_full = {}
        # Swift path -> (proto package, path in the .proto): the C names come from those.
        self.origin = {}
        for f in fds.file:
            pkg = f.package
            for m in f.message_type:
                self._walk(pkg, (), m)
            for e in f.enum_type:
                self._enum(pkg, (), e)

    @staticmethod
    def _swift_path(pkg, path):
        # Mesos's v1 API (packages mesos.v1, mesos.v1.scheduler) repeats the v0 names: its
        # top-level Swift names carry a V1 prefix (mesos.v1.FrameworkID -> V1FrameworkID).
        prefix = PACKAGE_PREFIXES.get(pkg, "")
        return (prefix + path[0],) + path[1:] if prefix else path

    def _walk(self, pkg, outer, m):
        path = outer + (m.name,)
        sp = self._swift_path(pkg, path)
        self.origin[sp] = (pkg, path)
        self.messages.append((sp, m))
        self.by_full["." + pkg + "." + ".".join(path)] = ("message", sp, m)
        for n in m.nested_type:
            self._walk(pkg, path, n)
        for e in m.enum_type:
            self._enum(pkg, path, e)

    def _enum(self, pkg, outer, e):
        path = outer + (e.name,)
        sp = self._swift_path(pkg, path)
        self.origin[sp] = (pkg, path)
        self.enums.append((sp, e))
        self.by_full["." + pkg + "." + ".".join(path)] = ("enum", sp, e)

    def package_of(self, path):
        return self.origin[path][0]

    # -- names -----------------------------------------------------------------
    def c_type(self, path):
        pkg, orig = self.origin[path]
        return "__".join(p[:1].upper() + p[1:] for p in pkg.split(".")) + "__" + "__".join(orig)

    def c_prefix(self, path):
        pkg, orig = self.origin[path]
        return "__".join(pkg.split(".")) + "__" + "__".join(camel_to_lower(p) for p in orig)

    def c_upper(self, path):
        return self.c_prefix(path).upper()

    def swift_type(self, path):
        return ".".join(SWIFT_RENAMES.get(p, p) if i == 0 else SWIFT_NESTED_RENAMES.get(p, p) for i, p in enumerate(path))

    def need(self, symbol):
        if not re.search(r"\b" + re.escape(symbol) + r"\b", self.header):
            sys.exit(f"gen_swift: expected C symbol {symbol} not in the protoc-c headers")
        return symbol

    def ref(self, field):
        return self.by_full[field.type_name]

    # -- Swift types --------------------------------------------------------------
    def field_swift_type(self, f):
        if f.type == F.TYPE_MESSAGE or f.type == F.TYPE_ENUM:
            base = self.swift_type(self.ref(f)[1])
        else:
            base = SWIFT_SCALAR[f.type]
        if f.label == F.LABEL_REPEATED:
            return f"[{base}]"
        if f.label == F.LABEL_OPTIONAL and not self.has_default(f):
            return base + "?"
        return base

    # Scalars' (size, alignment) in Swift.
    SCALAR_LAYOUT = {F.TYPE_STRING: (16, 8), F.TYPE_BYTES: (8, 8), F.TYPE_BOOL: (1, 1), F.TYPE_UINT32: (4, 4),
                     F.TYPE_INT32: (4, 4), F.TYPE_UINT64: (8, 8), F.TYPE_INT64: (8, 8), F.TYPE_DOUBLE: (8, 8)}
    # A oneof case whose value is larger than this is `indirect` (boxed): an enum is as large as
    # its largest inline case, and the envelope is moved by value through the bus's queues (at
    # 344 bytes, copying it was a sixth of the bus's CPU time per message).
    INLINE_CASE_BYTES = 24

    def layout(self, path, m):
        """(size, alignment) of the Swift struct for message `m`, estimated as Swift lays it out."""
        size, align = 0, 1
        plain, groups = self.oneofs(m)
        fields = []
        for f in plain:
            if f.label == F.LABEL_REPEATED:
                fields.append((8, 8))
                continue
            if f.type == F.TYPE_MESSAGE:
                fs, fa = self.layout(*self.ref(f)[1:3])
            elif f.type == F.TYPE_ENUM:
                fs, fa = 1, 1
            else:
                fs, fa = self.SCALAR_LAYOUT[f.type]
            # Optionals of types without spare bits take a tag byte (String and arrays have spare bits).
            if f.label == F.LABEL_OPTIONAL and not self.has_default(f) and f.type not in (F.TYPE_STRING, F.TYPE_BYTES):
                fs += 1
            fields.append((fs, fa))
        for g, fs in groups.items():
            cases = [self.case_layout(self.ref(f)[1], self.ref(f)[2]) for f in fs]
            fields.append((max(c[0] for c in cases) + 1, max(c[1] for c in cases)))
        for fs, fa in fields:
            size = (size + fa - 1) // fa * fa + fs
            align = max(align, fa)
        return size, align

    def case_layout(self, path, m):
        """A oneof case's inline (size, alignment): a box pointer when it is `indirect`."""
        size, align = self.layout(path, m)
        return (8, 8) if size > self.INLINE_CASE_BYTES else (size, align)

    def has_default(self, f):
        # Optional fields with a declared default read as that default when absent
        # (proto2 semantics); we model them as non-optional Swift values.
        return f.label == F.LABEL_OPTIONAL and f.HasField("default_value") and f.type != F.TYPE_MESSAGE

    def default_literal(self, f):
        v = f.default_value
        if f.type == F.TYPE_STRING:
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if f.type == F.TYPE_BOOL:
            return v
        if f.type == F.TYPE_DOUBLE:
            return repr(float(v))
        if f.type == F.TYPE_ENUM:
            e = self.ref(f)[2]
            return "." + swift_case([x.name for x in e.value], v)
        return v

    def init_default(self, f):
        if f.label == F.LABEL_REPEATED:
            return " = []"
        if f.HasField("default_value") and f.type != F.TYPE_MESSAGE:
            return " = " + self.default_literal(f)
        if f.label == F.LABEL_OPTIONAL:
            return " = nil"
        return ""

    def oneofs(self, m):
        """Fields grouped: (plain fields, {oneof name: [fields]})."""
        plain, groups = [], {}
        for f in m.field:
            if f.HasField("oneof_index"):
                groups.setdefault(m.oneof_decl[f.oneof_index].name, []).append(f)
            else:
                plain.append(f)
        return plain, groups

    def emit_enum(self, path, e, out):
        names = [v.name for v in e.value]
        sw, ct = self.swift_type(path), self.c_type(path)
        self.need(ct)
        out.append(f"extension {sw}: CEnum {{")
        out.append(f"    var cValue: {ct} {{ {ct}(rawValue: numericCast(rawValue)) }}")
        out.append(f"    init(cValue: {ct}, field: FieldPath) throws(WireError) {{")
        out.append("        let raw = Int32(truncatingIfNeeded: cValue.rawValue)")
        out.append(f"        guard let v = {sw}(rawValue: raw) else {{ throw .unknownEnumValue(field: field(), value: raw) }}")
        out.append("        self = v")
        out.append("    }")
        out.append("}\n")

    def emit_enum_decl(self, path, e, indent, out):
        names = [v.name for v in e.value]
        out.append(f"{indent}public enum {self.swift_type(path).split('.')[-1]}: Int32, Sendable, Hashable, CaseIterable {{")
        for v in e.value:
            out.append(f"{indent}    case {swift_case(names, v.name)} = {v.number}")
        out.append("")
        out.append(f"{indent}    /// The name in the .proto, as Mesos logs print it.")
        out.append(f"{indent}    public var protoName: String {{")
        out.append(f"{indent}        switch self {{")
        for v in e.value:
            out.append(f'{indent}        case .{swift_case(names, v.name)}: "{v.name}"')
        out.append(f"{indent}        }}")
        out.append(f"{indent}    }}")
        out.append(f"{indent}}}")

    def emit_struct(self, path, m, indent, out):
        plain, groups = self.oneofs(m)
        out.append(f"{indent}public struct {self.swift_type(path).split('.')[-1]}: Sendable, Hashable {{")
        params = []
        for f in plain:
            t = self.field_swift_type(f)
            out.append(f"{indent}    public var {swift_field(f.name)}: {t}")
            params.append(f"{swift_field(f.name)}: {t}{self.init_default(f)}")
        for g, fs in groups.items():
            tn = swift_field(g)[:1].upper() + swift_field(g)[1:]
            out.append(f"{indent}    public var {swift_field(g)}: {tn}?")
            params.append(f"{swift_field(g)}: {tn}? = nil")
        for g, fs in groups.items():
            tn = swift_field(g)[:1].upper() + swift_field(g)[1:]
            out.append("")
            out.append(f"{indent}    public enum {tn}: Sendable, Hashable {{")
            for f in fs:
                boxed = self.layout(*self.ref(f)[1:3])[0] > self.INLINE_CASE_BYTES
                out.append(f"{indent}        {'indirect ' if boxed else ''}case {swift_field(f.name)}({self.swift_type(self.ref(f)[1])})")
            out.append("")
            out.append(f"{indent}        /// The field's name in the .proto (logs, refusals, metrics).")
            out.append(f"{indent}        public var kind: String {{")
            out.append(f"{indent}            switch self {{")
            for f in fs:
                out.append(f"{indent}            case .{swift_field(f.name).strip('`')}: \"{f.name}\"")
            out.append(f"{indent}            }}")
            out.append(f"{indent}        }}")
            out.append(f"{indent}    }}")
        out.append("")
        out.append(f"{indent}    public init({', '.join(params)}) {{")
        for f in plain:
            n = swift_field(f.name).strip("`")
            out.append(f"{indent}        self.{n} = {swift_field(f.name)}")
        for g in groups:
            out.append(f"{indent}        self.{swift_field(g)} = {swift_field(g)}")
        out.append(f"{indent}    }}")
        for n in m.nested_type:
            out.append("")
            self.emit_struct(path + (n.name,), n, indent + "    ", out)
        for e in m.enum_type:
            out.append("")
            self.emit_enum_decl(path + (e.name,), e, indent + "    ", out)
        out.append(f"{indent}}}")

    # -- C conversion ---------------------------------------------------------------
    def decode_value(self, f, expr, where):
        """Swift expression turning one C value into its Swift value (may throw); `where` is a
        FieldPath closure (the field's path, built only for an error)."""
        if f.type == F.TYPE_MESSAGE:
            return f"try {self.swift_type(self.ref(f)[1])}(c: {expr}, field: {where})"
        if f.type == F.TYPE_ENUM:
            return f"try {self.swift_type(self.ref(f)[1])}(cValue: {expr}, field: {where})"
        if f.type == F.TYPE_STRING:
            return f"try wireString({expr}, field: {where})"
        if f.type == F.TYPE_BYTES:
            return f"wireBytes({expr})"
        if f.type == F.TYPE_BOOL:
            return f"({expr} != 0)"
        return expr

    def encode_value(self, f, expr):
        """C value for one Swift value (allocations owned by the arena `a`)."""
        if f.type == F.TYPE_MESSAGE:
            return f"a.message({expr})"
        if f.type == F.TYPE_ENUM:
            return f"{expr}.cValue"
        if f.type == F.TYPE_STRING:
            return f"a.string({expr})"
        if f.type == F.TYPE_BYTES:
            return f"a.bytes({expr})"
        if f.type == F.TYPE_BOOL:
            return f"({expr} ? 1 : 0)"
        return expr

    def uses_has_flag(self, f):
        return f.label == F.LABEL_OPTIONAL and f.type not in (F.TYPE_MESSAGE, F.TYPE_STRING)

    def emit_conversion(self, path, m, out):
        plain, groups = self.oneofs(m)
        sw, ct, cp = self.swift_type(path), self.c_type(path), self.c_prefix(path)
        top = len(path) == 1
        out.append(f"extension {sw}: CMessage {{")
        out.append(f"    typealias CType = {ct}")
        out.append(f"    static func cInit(_ m: UnsafeMutablePointer<{ct}>) {{ {self.need(cp + '__init')}(m) }}")
        out.append("")
        # decode (field paths are closures: strings are built only when throwing)
        out.append(f"    init(c p: UnsafePointer<{ct}>, field: FieldPath) throws(WireError) {{")
        out.append("        let m = p.pointee" if m.field else "        _ = (p, field)")
        for f in plain:
            n, cf = swift_field(f.name).strip("`"), f.name
            path_ = f'field() + ".{f.name}"'
            where = "{ " + path_ + " }"
            if f.label == F.LABEL_REPEATED:
                out.append(f"        var {n}: {self.field_swift_type(f)} = []")
                out.append(f"        {n}.reserveCapacity(m.n_{cf})")
                elem = f"m.{cf}[i]!" if f.type in (F.TYPE_MESSAGE, F.TYPE_STRING) else f"m.{cf}[i]"
                out.append(f"        for i in 0..<m.n_{cf} {{ {n}.append({self.decode_value(f, elem, where)}) }}")
                out.append(f"        self.{n} = {n}")
            elif f.label == F.LABEL_REQUIRED or self.has_default(f):
                if f.type in (F.TYPE_MESSAGE, F.TYPE_STRING):
                    out.append(f"        guard let {n} = m.{cf} else {{ throw .missingField({path_}) }}")
                    out.append(f"        self.{n} = {self.decode_value(f, n, where)}")
                else:
                    out.append(f"        self.{n} = {self.decode_value(f, 'm.' + cf, where)}")
            elif self.uses_has_flag(f):
                out.append(f"        self.{n} = m.has_{cf} != 0 ? {self.decode_value(f, 'm.' + cf, where)} : nil")
            else:
                out.append(f"        if let v = m.{cf} {{ self.{n} = {self.decode_value(f, 'v', where)} }} else {{ self.{n} = nil }}")
        for g, fs in groups.items():
            gn = swift_field(g)
            out.append(f"        switch m.{g}_case {{")
            for f in fs:
                const = self.need(f"{self.c_upper(path)}__{g.upper()}_{f.name.upper()}")
                out.append(f"        case {const}:")
                out.append(f'            guard let v = m.{f.name} else {{ throw .missingField(field() + ".{f.name}") }}')
                value = self.decode_value(f, "v", '{ field() + ".' + f.name + '" }')
                out.append(f"            self.{gn} = .{swift_field(f.name)}({value})")
            out.append(f"        default: self.{gn} = nil  // not set, or a kind this build does not know")
            out.append("        }")
        out.append("    }")
        out.append("")
        # encode
        out.append(f"    func fill(_ p: UnsafeMutablePointer<{ct}>, _ a: CArena) {{")
        if not m.field:
            out.append("        _ = (p, a)")
        for f in plain:
            n, cf = swift_field(f.name).strip("`"), f.name
            if f.label == F.LABEL_REPEATED:
                out.append(f"        p.pointee.n_{cf} = {n}.count")
                out.append(f"        p.pointee.{cf} = a.array({n}) {{ {self.encode_value(f, '$0')} }}")
            elif f.label == F.LABEL_REQUIRED or self.has_default(f):
                if self.uses_has_flag(f):
                    out.append(f"        p.pointee.has_{cf} = 1")
                out.append(f"        p.pointee.{cf} = {self.encode_value(f, n)}")
            elif self.uses_has_flag(f):
                out.append(f"        if let v = {n} {{ p.pointee.has_{cf} = 1; p.pointee.{cf} = {self.encode_value(f, 'v')} }}")
            else:
                out.append(f"        if let v = {n} {{ p.pointee.{cf} = {self.encode_value(f, 'v')} }}")
        for g, fs in groups.items():
            gn = swift_field(g)
            out.append(f"        switch {gn} {{")
            for f in fs:
                const = f"{self.c_upper(path)}__{g.upper()}_{f.name.upper()}"
                out.append(f"        case .{swift_field(f.name)}(let v):")
                out.append(f"            p.pointee.{g}_case = {const}")
                out.append(f"            p.pointee.{f.name} = {self.encode_value(f, 'v')}")
            out.append(f"        case nil: p.pointee.{g}_case = {self.need(self.c_upper(path) + '__' + g.upper() + '__NOT_SET')}")
            out.append("        }")
        out.append("    }")
        out.append("}\n")
        if top:
            out.append(f"extension {sw}: WireMessage, ProtobufMessage {{")
            out.append("    public func serializedBytes() -> [UInt8] { encoded(headroom: 0) }")
            out.append("    public init(serializedBytes bytes: UnsafeRawBufferPointer) throws(WireError) { self = try Self.decoded(bytes) }")
            out.append(f"    static func cPackedSize(_ m: UnsafePointer<{ct}>) -> Int {{ {self.need(cp + '__get_packed_size')}(m) }}")
            out.append(f"    static func cPack(_ m: UnsafePointer<{ct}>, _ out: UnsafeMutablePointer<UInt8>) -> Int {{ {self.need(cp + '__pack')}(m, out) }}")
            out.append(f"    static func cUnpack(_ allocator: UnsafeMutablePointer<ProtobufCAllocator>?, _ len: Int, _ data: UnsafePointer<UInt8>) -> UnsafeMutablePointer<{ct}>? {{ {self.need(cp + '__unpack')}(allocator, len, data) }}")
            out.append(f"    static func cFree(_ m: UnsafeMutablePointer<{ct}>) {{ {self.need(cp + '__free_unpacked')}(m, nil) }}")
            out.append("}\n")

    def swift(self):
        out = [
            "// GENERATED by scripts/gen-proto from proto/*.proto. Do not edit.",
            "// swift-format-ignore-file",
            "import MesosProtoC",
            "",
        ]
        for path, e in self.enums:
            if len(path) == 1:
                self.emit_enum_decl(path, e, "", out)
                out.append("")
        for path, m in self.messages:
            if len(path) == 1:
                self.emit_struct(path, m, "", out)
                out.append("")
        for path, e in self.enums:
            self.emit_enum(path, e, out)
        for path, m in self.messages:
            self.emit_conversion(path, m, out)
        return "\n".join(out).rstrip() + "\n"

    # -- JSON (Mesos's mapping) for the v1 API ----------------------------------------
    def json_code(self):
        """ProtoJSONValue conformances of every mesos.v1 message and enum (MesosHTTP): JSON as
        Mesos maps it (stout protobuf.hpp): proto field names, declaration order, enums by name,
        bytes as base64, unset optional fields left out, fields with a default always written
        (deprecated ones only when not the default)."""
        out = [
            "// GENERATED by scripts/gen-proto from proto/v1_*.proto. Do not edit.",
            "// swift-format-ignore-file",
            "import MesosWire",
            "",
        ]
        v1 = lambda path: self.package_of(path).startswith("mesos.v1")
        for path, e in self.enums:
            if v1(path):
                out.append(f"extension {self.swift_type(path)}: ProtoJSONEnum {{}}")
        out.append("")
        for path, m in self.messages:
            if not v1(path):
                continue
            sw = self.swift_type(path)
            out.append(f"extension {sw}: ProtoJSONValue {{")
            out.append(f"    public static func read(_ json: JSON, at field: String) throws(ProtoJSONError) -> {sw} {{")
            out.append("        let o = try ProtoJSONObject(json, at: field)" if m.field else "        _ = try ProtoJSONObject(json, at: field)")
            args = []
            for f in m.field:
                n = swift_field(f.name)
                t = self.field_swift_type(f)
                enum = f.type == F.TYPE_ENUM
                if f.label == F.LABEL_REPEATED:
                    expr = f'try o.repeated("{f.name}")'
                elif f.label == F.LABEL_REQUIRED:
                    expr = f'try o.required("{f.name}")'
                elif self.has_default(f):
                    reader = "optionalEnum" if enum else "optional"
                    expr = f'try o.{reader}("{f.name}") ?? {self.default_literal(f)}'
                else:
                    expr = f'try o.{"optionalEnum" if enum else "optional"}("{f.name}")'
                out.append(f"        let {n}: {t} = {expr}")
                args.append(f"{n.strip('`')}: {n}")
            out.append(f"        return {sw}({', '.join(args)})")
            out.append("    }")
            out.append("")
            out.append("    public var json: JSON {")
            out.append("        var w = ProtoJSONWriter()" if m.field else "        ProtoJSONWriter().json")
            for f in m.field:
                n = swift_field(f.name)
                if self.has_default(f) and f.options.deprecated:
                    out.append(f'        if {n} != {self.default_literal(f)} {{ w.set("{f.name}", {n}) }}')
                else:
                    out.append(f'        w.set("{f.name}", {n})')
            if m.field:
                out.append("        return w.json")
            out.append("    }")
            out.append("}")
            out.append("")
        return "\n".join(out).rstrip() + "\n"

    # -- samples for tests ---------------------------------------------------------
    def sample_value(self, f, seed, depth):
        if f.type == F.TYPE_MESSAGE:
            kind, path, m = self.ref(f)
            return self.sample_message(path, m, seed, depth + 1)
        if f.type == F.TYPE_ENUM:
            e = self.ref(f)[2]
            names = [v.name for v in e.value]
            return "." + swift_case(names, names[(seed + len(names) - 1) % len(names)])
        if f.type == F.TYPE_STRING:
            return f'"{f.name}-{seed} ü✓"'
        if f.type == F.TYPE_BYTES:
            return f"[0, 255, {seed % 256}, 10, 13, 128]"
        if f.type == F.TYPE_BOOL:
            return "true" if seed % 2 == 0 else "false"
        if f.type == F.TYPE_DOUBLE:
            return f"{seed}.25"
        if f.type in (F.TYPE_UINT64,):
            return f"UInt64.max - {seed}"
        if f.type in (F.TYPE_INT64,):
            return f"Int64.min + {seed}"
        if f.type == F.TYPE_UINT32:
            return f"UInt32.max - {seed}"
        if f.type == F.TYPE_INT32:
            return f"-{seed}"
        raise ValueError(f.type)

    def sample_message(self, path, m, seed, depth=0):
        plain, groups = self.oneofs(m)
        args = []
        for i, f in enumerate(plain):
            s = seed * 7 + i + 1
            if f.label == F.LABEL_REPEATED:
                if depth > 2:
                    continue
                args.append(f"{swift_field(f.name).strip('`')}: [{self.sample_value(f, s, depth)}, {self.sample_value(f, s + 1, depth)}]")
            else:
                args.append(f"{swift_field(f.name).strip('`')}: {self.sample_value(f, s, depth)}")
        return f"{self.swift_type(path)}({', '.join(args)})"

    def samples(self):
        out = [
            "// GENERATED by scripts/gen-proto from proto/*.proto. Do not edit.",
            "// One value of every message with every field set (optional ones too),",
            "// and one Envelope for every payload kind.",
            "@testable import MesosWire",
            "",
            "enum Samples {",
            "    /// (name, a check that encodes the sample, decodes it and compares).",
            "    static let roundTrips: [RoundTripCase] = [",
        ]
        for path, m in self.messages:
            if len(path) == 1:
                out.append(f'        RoundTripCase("{".".join(path)}", {self.sample_message(path, m, 1)}),')
        out.append("    ]")
        out.append("")
        env = next(m for p, m in self.messages if p == ("Envelope",))
        _, groups = self.oneofs(env)
        out.append("    /// One envelope per payload kind.")
        out.append("    static let envelopes: [Envelope] = [")
        for g, fs in groups.items():
            for i, f in enumerate(fs):
                kind, path, m = self.ref(f)
                out.append(f'        Envelope(epoch: {i + 1}, from: "sender-{i}@127.0.0.1:{5050 + i}", payload: .{swift_field(f.name)}({self.sample_message(path, m, i + 3)})),')
        out.append("    ]")
        out.append("}")
        return "\n".join(out) + "\n"


def main():
    fds_path, header_glob, swift_out, samples_out, json_out = sys.argv[1:6]
    fds = d.FileDescriptorSet()
    with open(fds_path, "rb") as fh:
        fds.ParseFromString(fh.read())
    headers = ""
    for h in header_glob.split(","):
        with open(h) as fh:
            headers += fh.read()
    g = Gen(fds, headers)
    with open(swift_out, "w") as fh:
        fh.write(g.swift())
    with open(samples_out, "w") as fh:
        fh.write(g.samples())
    with open(json_out, "w") as fh:
        fh.write(g.json_code())


if __name__ == "__main__":
    main()
