//! Protobuf wire encoding of a [`DynamicMessage`] in linear time.
//!
//! prost-reflect's `encode_to_vec` asks every nested message for its
//! `encoded_len` before writing it, and `encoded_len` itself recurses, so a
//! message is measured once per ancestor: O(size × depth), and each
//! measurement walks the fields through the reflection API, which costs as
//! much as writing them. Here each message is walked once: its body is
//! written after a one-byte length placeholder, and the length is patched in
//! afterwards; a body of 128 bytes or more (a longer varint) is shifted right
//! by the extra bytes, a `memmove` that is cheap next to a reflective walk.
//! The bytes are exactly those of `encode_to_vec` (same field order, packing,
//! map entries, unknown fields and extensions), which the differential tests
//! below check. A value whose variant does not match its field's kind, which
//! prost-reflect's encoder panics on, is written as its own variant's type.
//!
//! One deliberate difference: `-0.0` in a float or double field without presence (and as a
//! map value) is written. prost-reflect compares with `==`, finds it equal to the default
//! and leaves it out, so the backend would read `0.0`; protobuf's C++, Java, Go and Python
//! encoders compare bits and write it, and the proto3 JSON mapping keeps the sign.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost_reflect::{
    DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MapKey, UnknownField, Value,
};
use std::borrow::Cow;
use std::iter::Peekable;

/// Encodes `msg` to protobuf wire bytes, byte for byte as
/// `prost::Message::encode_to_vec` does.
pub fn encode(msg: &DynamicMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(INITIAL_CAPACITY);
    write_message(msg, &mut out);
    out
}

/// Appends the wire encoding of `msg` to `out`.
pub fn encode_to(msg: &DynamicMessage, out: &mut Vec<u8>) {
    write_message(msg, out);
}

/// First allocation of [`encode`]: most request messages fit, so that the
/// output is rarely reallocated.
const INITIAL_CAPACITY: usize = 1024;

/// Writes the fields of `msg` (its body, without key or length).
fn write_message(msg: &DynamicMessage, out: &mut Vec<u8>) {
    for_each_entry(msg, |entry| match entry {
        Entry::Field(field, value) => write_field(&field, value, out),
        Entry::Extension(field, value) => write_field(&field, value, out),
        Entry::Unknown(unknown) => unknown.encode(out),
    });
}

/// Writes what `body` writes, preceded by its length as a varint.
fn write_delimited(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
        return;
    }
    let width = encoded_len_varint(len as u64);
    out.resize(out.len() + width - 1, 0);
    out.copy_within(at + 1..at + 1 + len, at + width);
    let mut rest = len;
    for byte in &mut out[at..at + width] {
        *byte = (rest as u8 & 0x7f) | 0x80;
        rest >>= 7;
    }
    out[at + width - 1] &= 0x7f;
}

/// One thing to encode in a message.
enum Entry<'a> {
    Field(FieldDescriptor, &'a Value),
    Extension(ExtensionDescriptor, &'a Value),
    Unknown(&'a UnknownField),
}

/// Calls `f` for the fields, extensions and unknown fields of `msg` that
/// prost-reflect encodes, in its order: ascending field number (the three
/// iterators are each sorted, and their numbers are disjoint).
fn for_each_entry<'a>(msg: &'a DynamicMessage, mut f: impl FnMut(Entry<'a>)) {
    let mut unknowns = msg.unknown_fields().peekable();
    let mut extensions = msg.extensions().peekable();
    let mut zeros = negative_zeros(msg).into_iter().peekable();
    // `fields()` yields exactly the fields that `has_field`, i.e. those that
    // prost-reflect does not skip as an implicit-presence default; `-0.0` is
    // such a default to it, so those fields come from `zeros`, merged in.
    for (field, value) in msg.fields() {
        while let Some((zero, value)) = zeros.next_if(|(z, _)| z.number() < field.number()) {
            emit_before(Some(zero.number()), &mut unknowns, &mut extensions, &mut f);
            f(Entry::Field(zero, value));
        }
        emit_before(Some(field.number()), &mut unknowns, &mut extensions, &mut f);
        f(Entry::Field(field, value));
    }
    for (zero, value) in zeros {
        emit_before(Some(zero.number()), &mut unknowns, &mut extensions, &mut f);
        f(Entry::Field(zero, value));
    }
    emit_before(None, &mut unknowns, &mut extensions, &mut f);
}

/// Whether `value` is a float or double `-0.0`.
pub(crate) fn is_negative_zero(value: &Value) -> bool {
    match value {
        Value::F64(v) => *v == 0.0 && v.is_sign_negative(),
        Value::F32(v) => *v == 0.0 && v.is_sign_negative(),
        _ => false,
    }
}

/// The singular float and double fields without presence that hold `-0.0` (which
/// `fields()` leaves out), in number order. Reads the descriptor's field list without
/// building a descriptor per field, so a message without such fields costs a short scan;
/// the result is almost always empty (no allocation).
pub(crate) fn negative_zeros(msg: &DynamicMessage) -> Vec<(FieldDescriptor, &Value)> {
    use prost_reflect::ReflectMessage as _;
    use prost_types::field_descriptor_proto::{Label, Type};
    let desc = msg.descriptor();
    let mut out = Vec::new();
    for proto in &desc.descriptor_proto().field {
        if !matches!(proto.r#type(), Type::Double | Type::Float) || proto.label() == Label::Repeated
        {
            continue;
        }
        let Some(field) = u32::try_from(proto.number())
            .ok()
            .and_then(|n| desc.get_field(n))
        else {
            continue;
        };
        if field.supports_presence() {
            continue;
        }
        if let Cow::Borrowed(value) = msg.get_field(&field) {
            if is_negative_zero(value) {
                out.push((field, value));
            }
        }
    }
    out.sort_by_key(|(field, _)| field.number());
    out
}

/// Emits the pending unknown fields and extensions numbered below `bound`
/// (all of them if `None`), in number order.
fn emit_before<'a>(
    bound: Option<u32>,
    unknowns: &mut Peekable<impl Iterator<Item = &'a UnknownField>>,
    extensions: &mut Peekable<impl Iterator<Item = (ExtensionDescriptor, &'a Value)>>,
    f: &mut impl FnMut(Entry<'a>),
) {
    let below = |n: u32| bound.is_none_or(|b| n < b);
    loop {
        let unknown = unknowns.peek().map(|u| u.number()).filter(|&n| below(n));
        let extension = extensions
            .peek()
            .map(|(e, _)| e.number())
            .filter(|&n| below(n));
        let take_unknown = match (unknown, extension) {
            (None, None) => return,
            (Some(u), Some(e)) => u < e,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_unknown {
            if let Some(unknown) = unknowns.next() {
                f(Entry::Unknown(unknown));
            }
        } else if let Some((extension, value)) = extensions.next() {
            f(Entry::Extension(extension, value));
        }
    }
}

/// What the encoder needs from a field or an extension.
trait FieldLike {
    fn number(&self) -> u32;
    fn is_group(&self) -> bool;
    fn is_packed(&self) -> bool;
    fn kind(&self) -> Kind;
}

impl FieldLike for FieldDescriptor {
    fn number(&self) -> u32 {
        FieldDescriptor::number(self)
    }
    fn is_group(&self) -> bool {
        FieldDescriptor::is_group(self)
    }
    fn is_packed(&self) -> bool {
        FieldDescriptor::is_packed(self)
    }
    fn kind(&self) -> Kind {
        FieldDescriptor::kind(self)
    }
}

impl FieldLike for ExtensionDescriptor {
    fn number(&self) -> u32 {
        ExtensionDescriptor::number(self)
    }
    fn is_group(&self) -> bool {
        ExtensionDescriptor::is_group(self)
    }
    fn is_packed(&self) -> bool {
        ExtensionDescriptor::is_packed(self)
    }
    fn kind(&self) -> Kind {
        ExtensionDescriptor::kind(self)
    }
}

/// How an integer is written, which the value alone does not tell
/// (`I32` is `int32`, `sint32` or `sfixed32`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum IntEncoding {
    Varint,
    ZigZag,
    Fixed,
}

impl IntEncoding {
    fn of(kind: &Kind) -> Self {
        match kind {
            Kind::Sint32 | Kind::Sint64 => Self::ZigZag,
            Kind::Fixed32 | Kind::Fixed64 | Kind::Sfixed32 | Kind::Sfixed64 => Self::Fixed,
            _ => Self::Varint,
        }
    }
}

/// The per-field facts that the value variant does not carry. Only asks the
/// descriptor what the sample value needs: `kind()` (which clones an `Arc` for
/// message and enum kinds) only for integers, where it is a plain scalar kind.
#[derive(Clone, Copy)]
struct Shape {
    group: bool,
    int: IntEncoding,
}

impl Shape {
    fn of(field: &impl FieldLike, sample: Option<&Value>) -> Self {
        match sample {
            Some(Value::Message(_)) => Shape {
                group: field.is_group(),
                int: IntEncoding::Varint,
            },
            Some(Value::I32(_) | Value::I64(_) | Value::U32(_) | Value::U64(_)) => Shape {
                group: false,
                int: IntEncoding::of(&field.kind()),
            },
            _ => Shape {
                group: false,
                int: IntEncoding::Varint,
            },
        }
    }
}

/// A scalar as it goes on the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Delimited(&'a [u8]),
}

impl Wire<'_> {
    fn wire_type(&self) -> WireType {
        match self {
            Wire::Varint(_) => WireType::Varint,
            Wire::Fixed32(_) => WireType::ThirtyTwoBit,
            Wire::Fixed64(_) => WireType::SixtyFourBit,
            Wire::Delimited(_) => WireType::LengthDelimited,
        }
    }

    /// Length of the payload (without the key).
    fn len(&self) -> usize {
        match self {
            Wire::Varint(v) => encoded_len_varint(*v),
            Wire::Fixed32(_) => 4,
            Wire::Fixed64(_) => 8,
            Wire::Delimited(b) => encoded_len_varint(b.len() as u64) + b.len(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Wire::Varint(v) => encode_varint(*v, out),
            Wire::Fixed32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Wire::Fixed64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Wire::Delimited(b) => {
                encode_varint(b.len() as u64, out);
                out.extend_from_slice(b);
            }
        }
    }
}

fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn i32_wire(v: i32, int: IntEncoding) -> Wire<'static> {
    match int {
        // int32 is sign-extended to 64 bits, as prost does.
        IntEncoding::Varint => Wire::Varint(i64::from(v) as u64),
        IntEncoding::ZigZag => Wire::Varint(zigzag32(v)),
        IntEncoding::Fixed => Wire::Fixed32(v as u32),
    }
}

fn i64_wire(v: i64, int: IntEncoding) -> Wire<'static> {
    match int {
        IntEncoding::Varint => Wire::Varint(v as u64),
        IntEncoding::ZigZag => Wire::Varint(zigzag64(v)),
        IntEncoding::Fixed => Wire::Fixed64(v as u64),
    }
}

fn u32_wire(v: u32, int: IntEncoding) -> Wire<'static> {
    match int {
        IntEncoding::Fixed => Wire::Fixed32(v),
        _ => Wire::Varint(u64::from(v)),
    }
}

fn u64_wire(v: u64, int: IntEncoding) -> Wire<'static> {
    match int {
        IntEncoding::Fixed => Wire::Fixed64(v),
        _ => Wire::Varint(v),
    }
}

/// The wire form of a scalar value; `None` for messages, lists and maps.
fn scalar(value: &Value, int: IntEncoding) -> Option<Wire<'_>> {
    Some(match value {
        Value::Bool(v) => Wire::Varint(u64::from(*v)),
        Value::I32(v) => i32_wire(*v, int),
        Value::I64(v) => i64_wire(*v, int),
        Value::U32(v) => u32_wire(*v, int),
        Value::U64(v) => u64_wire(*v, int),
        Value::F32(v) => Wire::Fixed32(v.to_bits()),
        Value::F64(v) => Wire::Fixed64(v.to_bits()),
        Value::String(v) => Wire::Delimited(v.as_bytes()),
        Value::Bytes(v) => Wire::Delimited(v),
        Value::EnumNumber(v) => Wire::Varint(i64::from(*v) as u64),
        Value::Message(_) | Value::List(_) | Value::Map(_) => return None,
    })
}

fn map_key(key: &MapKey, int: IntEncoding) -> Wire<'_> {
    match key {
        MapKey::Bool(v) => Wire::Varint(u64::from(*v)),
        MapKey::I32(v) => i32_wire(*v, int),
        MapKey::I64(v) => i64_wire(*v, int),
        MapKey::U32(v) => u32_wire(*v, int),
        MapKey::U64(v) => u64_wire(*v, int),
        MapKey::String(v) => Wire::Delimited(v.as_bytes()),
    }
}

fn write_single(number: u32, value: &Value, shape: Shape, out: &mut Vec<u8>) {
    match value {
        Value::Message(m) if shape.group => {
            encode_key(number, WireType::StartGroup, out);
            write_message(m, out);
            encode_key(number, WireType::EndGroup, out);
        }
        Value::Message(m) => {
            encode_key(number, WireType::LengthDelimited, out);
            write_delimited(out, |out| write_message(m, out));
        }
        _ => {
            if let Some(wire) = scalar(value, shape.int) {
                encode_key(number, wire.wire_type(), out);
                wire.write(out);
            }
        }
    }
}

fn write_field(field: &impl FieldLike, value: &Value, out: &mut Vec<u8>) {
    let number = field.number();
    match value {
        Value::List(values) => {
            let shape = Shape::of(field, values.first());
            if values.is_empty() {
                return;
            }
            if field.is_packed() {
                let len: usize = values
                    .iter()
                    .map(|v| scalar(v, shape.int).map_or(0, |w| w.len()))
                    .sum();
                encode_key(number, WireType::LengthDelimited, out);
                encode_varint(len as u64, out);
                for value in values {
                    if let Some(wire) = scalar(value, shape.int) {
                        wire.write(out);
                    }
                }
            } else {
                for value in values {
                    write_single(number, value, shape, out);
                }
            }
        }
        Value::Map(map) => {
            let Some(entry) = MapEntry::of(field) else {
                return;
            };
            // In `HashMap` iteration order, as prost-reflect writes maps.
            for (key, value) in map {
                encode_key(number, WireType::LengthDelimited, out);
                write_delimited(out, |out| {
                    if entry.has_key(key) {
                        let wire = map_key(key, entry.key_int);
                        encode_key(MAP_KEY, wire.wire_type(), out);
                        wire.write(out);
                    }
                    if entry.has_value(value) {
                        write_single(MAP_VALUE, value, entry.value, out);
                    }
                });
            }
        }
        _ => write_single(number, value, Shape::of(field, Some(value)), out),
    }
}

const MAP_KEY: u32 = 1;
const MAP_VALUE: u32 = 2;

/// The map entry facts of one map field, looked up once per field. Like
/// prost-reflect, a key or value is left out of its entry when its field has
/// no presence (proto3) and it equals the field's default.
struct MapEntry {
    key_int: IntEncoding,
    key_default: Option<MapKey>,
    value: Shape,
    value_default: Option<Value>,
}

impl MapEntry {
    fn of(field: &impl FieldLike) -> Option<Self> {
        let Kind::Message(entry) = field.kind() else {
            return None;
        };
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        let key_kind = key.kind();
        let value_kind = value.kind();
        Some(MapEntry {
            key_int: IntEncoding::of(&key_kind),
            key_default: (!key.supports_presence()).then(|| MapKey::default_value(&key_kind)),
            value: Shape {
                group: value.is_group(),
                int: IntEncoding::of(&value_kind),
            },
            value_default: (!value.supports_presence()).then(|| value.default_value()),
        })
    }

    fn has_key(&self, key: &MapKey) -> bool {
        self.key_default.as_ref() != Some(key)
    }

    fn has_value(&self, value: &Value) -> bool {
        self.value_default.as_ref() != Some(value) || is_negative_zero(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use prost_reflect::{DescriptorPool, MessageDescriptor, ReflectMessage};

    /// A proto2 schema (presence everywhere, closed enums without a zero,
    /// custom defaults, groups, packed and unpacked lists, extensions, map
    /// entries whose default keys and values are still written) and a proto3
    /// one (implicit presence, packed by default, `[packed = false]`).
    const PROTO2: &str = r#"
        syntax = "proto2";
        package enc.p2;
        enum Color { RED = 1; BLUE = 2; GREEN = 3; }
        message Leaf { optional int32 a = 1; optional string s = 2 [default = "x"]; }
        message All {
          optional double f_double = 1 [default = 1.5];
          optional float f_float = 2;
          optional int32 f_int32 = 3 [default = -7];
          optional int64 f_int64 = 4;
          optional uint32 f_uint32 = 5;
          optional uint64 f_uint64 = 6;
          optional sint32 f_sint32 = 7;
          optional sint64 f_sint64 = 8;
          optional fixed32 f_fixed32 = 9;
          optional fixed64 f_fixed64 = 10;
          optional sfixed32 f_sfixed32 = 11;
          optional sfixed64 f_sfixed64 = 12;
          optional bool f_bool = 13 [default = true];
          optional string f_string = 14;
          optional bytes f_bytes = 15;
          optional Color f_enum = 16 [default = BLUE];
          required int32 req = 17;
          repeated int32 r_int32 = 20;
          repeated sint64 p_sint64 = 21 [packed = true];
          repeated fixed32 p_fixed32 = 22 [packed = true];
          repeated Color p_enum = 23 [packed = true];
          repeated bool r_bool = 24;
          repeated double p_double = 25 [packed = true];
          repeated float r_float = 26;
          repeated sfixed64 r_sfixed64 = 27;
          repeated uint64 p_uint64 = 28 [packed = true];
          repeated string r_string = 29;
          optional group G = 30 { optional int32 x = 1; optional Leaf leaf = 2; }
          repeated group RG = 33 { optional string y = 1; repeated All nested = 2; }
          map<int32, Leaf> m_leaf = 40;
          map<string, int32> m_int = 41;
          map<sint64, Color> m_enum = 42;
          map<bool, bytes> m_bytes = 43;
          map<fixed64, double> m_fixed = 44;
          optional Leaf leaf = 45;
          repeated All children = 46;
          oneof choice { int32 c_int = 47; Leaf c_leaf = 48; }
          repeated Leaf leaves = 49;
          extensions 100 to 199;
        }
        extend All {
          optional int32 e_int = 100;
          repeated sint32 e_packed = 101 [packed = true];
          repeated string e_strings = 102;
          optional Leaf e_leaf = 103;
          optional group EG = 104 { optional int32 z = 1; }
          repeated int64 e_unpacked = 106;
          optional Color e_enum = 150;
        }
    "#;

    const PROTO3: &str = r#"
        syntax = "proto3";
        package enc.p3;
        import "google/protobuf/struct.proto";
        enum E { ZERO = 0; ONE = 1; TWO = 2; }
        message P3 {
          repeated int32 packed_default = 1;
          repeated int32 unpacked = 2 [packed = false];
          repeated sint32 ps = 3;
          repeated fixed64 pf = 4;
          repeated float pfl = 6;
          repeated bool pb = 7;
          repeated E pe = 8;
          repeated uint32 pu = 9 [packed = false];
          map<uint32, P3> m = 11;
          map<sfixed32, string> ms = 12;
          map<int64, E> me = 13;
          map<string, bytes> mb = 14;
          map<sint32, double> md = 15;
          optional sint32 opt = 17;
          optional double od = 18;
          E e = 19;
          double d = 20;
          float f = 21;
          P3 child = 23;
          oneof o { string os = 24; P3 om = 25; E oe = 26; int64 oi = 27; }
          google.protobuf.Struct st = 30;
          repeated P3 kids = 31;
          bytes raw = 32;
          uint64 big = 40;
        }
    "#;

    fn local_pool() -> &'static DescriptorPool {
        static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
        POOL.get_or_init(|| {
            crate::transcode::compile_sources(&[("enc/p2.proto", PROTO2), ("enc/p3.proto", PROTO3)])
        })
    }

    fn library_pool() -> &'static DescriptorPool {
        static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
        POOL.get_or_init(|| {
            DescriptorPool::decode(crate::demo::LIBRARY_DESCRIPTOR_SET).expect("library set")
        })
    }

    fn message(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
        pool.get_message_by_name(name)
            .unwrap_or_else(|| panic!("no message {name}"))
    }

    /// Random messages with a bias towards edge cases: defaults set
    /// explicitly, empty messages, lists and maps, long strings (two-byte
    /// length prefixes), negative and extreme numbers, NaN and -0.0, enum
    /// numbers without a name, and unknown fields of every wire type.
    struct Gen {
        rng: fastrand::Rng,
    }

    impl Gen {
        fn message(&mut self, desc: &MessageDescriptor, depth: u32) -> DynamicMessage {
            let mut msg = DynamicMessage::new(desc.clone());
            for field in desc.fields() {
                if self.rng.u8(..10) < 4 {
                    continue;
                }
                let value = if field.is_map() {
                    self.map(&field, depth)
                } else if field.is_list() {
                    let kind = field.kind();
                    let n = self.len_of(&kind);
                    Value::List((0..n).map(|_| self.value(&kind, depth)).collect())
                } else {
                    self.value(&field.kind(), depth)
                };
                msg.set_field(&field, value);
            }
            for ext in desc.extensions() {
                if self.rng.bool() {
                    let kind = ext.kind();
                    let value = if ext.is_list() {
                        let n = self.len_of(&kind);
                        Value::List((0..n).map(|_| self.value(&kind, depth)).collect())
                    } else {
                        self.value(&kind, depth)
                    };
                    msg.set_extension(&ext, value);
                }
            }
            if self.rng.u8(..4) == 0 {
                msg = self.with_unknowns(msg);
            }
            msg
        }

        /// Re-decodes `msg` with unknown fields appended to its bytes.
        fn with_unknowns(&mut self, msg: DynamicMessage) -> DynamicMessage {
            let desc = msg.descriptor();
            let free: Vec<u32> = (1..=60)
                .filter(|&n| desc.get_field(n).is_none() && desc.get_extension(n).is_none())
                .collect();
            if free.is_empty() {
                return msg;
            }
            let mut bytes = msg.encode_to_vec();
            for _ in 0..self.rng.usize(1..6) {
                let n = free[self.rng.usize(..free.len())];
                self.unknown(n, &mut bytes, 2);
            }
            DynamicMessage::decode(desc, bytes.as_slice()).expect("bytes with unknowns decode")
        }

        fn unknown(&mut self, n: u32, out: &mut Vec<u8>, depth: u32) {
            match self.rng.u8(..if depth == 0 { 4 } else { 5 }) {
                0 => {
                    encode_key(n, WireType::Varint, out);
                    encode_varint(self.rng.u64(..) >> self.rng.u32(..64), out);
                }
                1 => {
                    encode_key(n, WireType::ThirtyTwoBit, out);
                    out.extend_from_slice(&self.rng.u32(..).to_le_bytes());
                }
                2 => {
                    encode_key(n, WireType::SixtyFourBit, out);
                    out.extend_from_slice(&self.rng.u64(..).to_le_bytes());
                }
                3 => {
                    let len = self.rng.usize(..200);
                    encode_key(n, WireType::LengthDelimited, out);
                    encode_varint(len as u64, out);
                    out.extend((0..len).map(|_| self.rng.u8(..)));
                }
                _ => {
                    encode_key(n, WireType::StartGroup, out);
                    for _ in 0..self.rng.usize(..3) {
                        let inner = self.rng.u32(1..20);
                        self.unknown(inner, out, depth - 1);
                    }
                    encode_key(n, WireType::EndGroup, out);
                }
            }
        }

        fn len(&mut self) -> usize {
            match self.rng.u8(..10) {
                0 => 0,
                1 => self.rng.usize(20..60),
                _ => self.rng.usize(1..5),
            }
        }

        /// A list length; short for messages, to keep the trees small.
        fn len_of(&mut self, kind: &Kind) -> usize {
            match kind {
                Kind::Message(_) => self.len().min(3),
                _ => self.len(),
            }
        }

        fn map(&mut self, field: &FieldDescriptor, depth: u32) -> Value {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("map fields have entry messages")
            };
            let key_kind = entry.map_entry_key_field().kind();
            let value_kind = entry.map_entry_value_field().kind();
            let n = self.len_of(&value_kind).min(8);
            let map = (0..n)
                .map(|_| {
                    let key = self
                        .value(&key_kind, depth)
                        .into_map_key()
                        .expect("map keys are scalars");
                    (key, self.value(&value_kind, depth))
                })
                .collect();
            Value::Map(map)
        }

        fn value(&mut self, kind: &Kind, depth: u32) -> Value {
            let pick = self.rng.u8(..6);
            match kind {
                Kind::Double => Value::F64(self.float(pick)),
                Kind::Float => Value::F32(self.float(pick) as f32),
                Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(self.int(pick) as i32),
                Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(self.int(pick)),
                Kind::Uint32 | Kind::Fixed32 => Value::U32(self.int(pick) as u32),
                Kind::Uint64 | Kind::Fixed64 => Value::U64(self.int(pick) as u64),
                Kind::Bool => Value::Bool(self.rng.bool()),
                Kind::String => Value::String(self.text(pick)),
                Kind::Bytes => Value::Bytes(self.text(pick).into_bytes().into()),
                Kind::Enum(e) => Value::EnumNumber(match pick {
                    0 => 0,
                    1 => 99,
                    2 => -3,
                    _ => {
                        let values: Vec<i32> = e.values().map(|v| v.number()).collect();
                        values[self.rng.usize(..values.len())]
                    }
                }),
                Kind::Message(m) => {
                    if depth == 0 || pick == 0 {
                        Value::Message(DynamicMessage::new(m.clone()))
                    } else {
                        Value::Message(self.message(m, depth - 1))
                    }
                }
            }
        }

        fn int(&mut self, pick: u8) -> i64 {
            match pick {
                0 => 0,
                1 => -1,
                2 => [i64::MIN, i64::MAX, i64::from(i32::MIN), 127, 128][self.rng.usize(..5)],
                3 => self.rng.i64(..),
                _ => self.rng.i64(-300..300),
            }
        }

        fn float(&mut self, pick: u8) -> f64 {
            match pick {
                0 => 0.0,
                1 => -0.0,
                2 => [f64::NAN, f64::INFINITY, f64::MIN_POSITIVE][self.rng.usize(..3)],
                _ => self.rng.f64() * 1e6 - 5e5,
            }
        }

        fn text(&mut self, pick: u8) -> String {
            let len = match pick {
                0 => 0,
                1 => self.rng.usize(120..300),
                _ => self.rng.usize(1..12),
            };
            (0..len)
                .map(|_| {
                    if self.rng.u8(..8) == 0 {
                        'é'
                    } else {
                        self.rng.alphanumeric()
                    }
                })
                .collect()
        }
    }

    /// Makes `0.0` of every `-0.0` that prost-reflect leaves out and `encode` writes (see
    /// `negative_zeros`), so that both leave it out; `negative_zero_is_written_…` covers them.
    fn without_negative_zeros(msg: &mut DynamicMessage) {
        for (field, _) in negative_zeros(&msg.clone()) {
            let zero = match field.kind() {
                Kind::Float => Value::F32(0.0),
                _ => Value::F64(0.0),
            };
            msg.set_field(&field, zero);
        }
        for (field, value) in msg.fields_mut() {
            let implicit_values = field.is_map()
                && field
                    .kind()
                    .as_message()
                    .is_some_and(|entry| !entry.map_entry_value_field().supports_presence());
            match value {
                Value::Message(m) => without_negative_zeros(m),
                Value::List(values) => {
                    for value in values {
                        if let Value::Message(m) = value {
                            without_negative_zeros(m);
                        }
                    }
                }
                Value::Map(map) => {
                    for value in map.values_mut() {
                        match value {
                            Value::F64(v) if implicit_values && *v == 0.0 => *v = 0.0,
                            Value::F32(v) if implicit_values && *v == 0.0 => *v = 0.0,
                            Value::Message(m) => without_negative_zeros(m),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }

    #[track_caller]
    fn assert_same_bytes(msg: &DynamicMessage) {
        let expected = msg.encode_to_vec();
        let mut normalized = msg.clone();
        without_negative_zeros(&mut normalized);
        let got = encode(&normalized);
        if got != expected {
            // Not `{msg:?}`: the Debug of a recursive message type recurses
            // through its descriptor forever.
            let at = got
                .iter()
                .zip(&expected)
                .take_while(|(a, b)| a == b)
                .count();
            panic!(
                "encoding of {} differs from prost-reflect's from byte {at}\n  expected {expected:?}\n  got      {got:?}\n  message  {}",
                msg.descriptor().full_name(),
                serde_json::to_string(msg).unwrap_or_default(),
            );
        }
    }

    fn differential(pool: &DescriptorPool, name: &str, seeds: u64, depth: u32) {
        let desc = message(pool, name);
        for seed in 0..seeds {
            let mut gen = Gen {
                rng: fastrand::Rng::with_seed(seed),
            };
            let msg = gen.message(&desc, depth);
            assert_same_bytes(&msg);
        }
    }

    #[test]
    fn random_library_messages_encode_exactly_as_prost_reflect() {
        let pool = library_pool();
        for name in [
            "library.v1.Book",
            "library.v1.CreateBookRequest",
            "library.v1.UpdateBookRequest",
            "library.v1.ListBooksRequest",
            "library.v1.ShelfEvent",
        ] {
            differential(pool, name, 150, 4);
        }
    }

    #[test]
    fn random_test_proto_messages_encode_exactly_as_prost_reflect() {
        let pool = crate::transcode::test_pool();
        for name in [
            "omnigate.test.Request",
            "omnigate.test.Scalars",
            "omnigate.test.WellKnown",
            "omnigate.test.Deep",
        ] {
            differential(pool, name, 150, 4);
        }
    }

    #[test]
    fn random_proto2_messages_with_groups_extensions_and_defaults_encode_exactly() {
        differential(local_pool(), "enc.p2.All", 300, 3);
    }

    #[test]
    fn random_proto3_messages_with_packed_and_unpacked_lists_encode_exactly() {
        differential(local_pool(), "enc.p3.P3", 300, 3);
    }

    #[test]
    fn every_message_type_of_every_pool_encodes_exactly() {
        for pool in [local_pool(), library_pool(), crate::transcode::test_pool()] {
            for desc in pool.all_messages().filter(|m| !m.is_map_entry()) {
                differential(pool, desc.full_name(), 10, 2);
            }
        }
    }

    #[test]
    fn the_benchmark_book_encodes_exactly() {
        let body = include_bytes!("../../bench/book.json");
        let desc = message(library_pool(), "library.v1.Book");
        let book = crate::transcode::json::decode_message(&desc, body, &Default::default())
            .expect("bench book decodes");
        assert!(book.encode_to_vec().len() > 500, "the book is not trivial");
        assert_same_bytes(&book);
    }

    #[test]
    fn negative_zero_is_written_where_prost_reflect_drops_it() {
        let pool = local_pool();
        let mut p3 = DynamicMessage::new(message(pool, "enc.p3.P3"));
        p3.set_field_by_name("f", Value::F32(-0.0));
        p3.set_field_by_name("d", Value::F64(-0.0));
        p3.set_field_by_name("e", Value::EnumNumber(1));
        p3.set_field_by_name(
            "md",
            Value::Map([(MapKey::I32(1), Value::F64(-0.0))].into()),
        );
        let mut child = DynamicMessage::new(p3.descriptor());
        child.set_field_by_name("d", Value::F64(-0.0));
        p3.set_field_by_name("child", Value::Message(child));
        let bytes = encode(&p3);
        // Fields in number order: md (15), e (19), d (20), f (21), child (23).
        let mut want = vec![0x7a, 11, 0x08, 0x02, 0x11];
        want.extend((-0.0f64).to_le_bytes());
        want.extend([0x98, 0x01, 0x01, 0xa1, 0x01]);
        want.extend((-0.0f64).to_le_bytes());
        want.extend([0xad, 0x01]);
        want.extend((-0.0f32).to_le_bytes());
        want.extend([0xba, 0x01, 10, 0xa1, 0x01]);
        want.extend((-0.0f64).to_le_bytes());
        assert_eq!(bytes, want);
        let back = DynamicMessage::decode(p3.descriptor(), bytes.as_slice()).unwrap();
        let d = back.get_field_by_name("d").unwrap().as_f64().unwrap();
        assert!(d == 0.0 && d.is_sign_negative());
        // Positive zero is still the default and left out.
        let mut p3 = DynamicMessage::new(message(pool, "enc.p3.P3"));
        p3.set_field_by_name("d", Value::F64(0.0));
        p3.set_field_by_name("md", Value::Map([(MapKey::I32(1), Value::F64(0.0))].into()));
        assert_eq!(encode(&p3), [0x7a, 2, 0x08, 0x02]);
    }

    #[test]
    fn implicit_defaults_are_skipped_but_explicit_presence_defaults_are_written() {
        let pool = local_pool();
        let mut p3 = DynamicMessage::new(message(pool, "enc.p3.P3"));
        p3.set_field_by_name("e", Value::EnumNumber(0));
        p3.set_field_by_name("d", Value::F64(0.0));
        p3.set_field_by_name("raw", Value::Bytes(Default::default()));
        p3.set_field_by_name("unpacked", Value::List(vec![]));
        p3.set_field_by_name("opt", Value::I32(0));
        p3.set_field_by_name("oe", Value::EnumNumber(0));
        p3.set_field_by_name(
            "child",
            Value::Message(DynamicMessage::new(p3.descriptor())),
        );
        assert_same_bytes(&p3);
        // opt = 0 (17), child = {} (23), oe = 0 (26); nothing else.
        assert_eq!(
            encode(&p3),
            [0x88, 0x01, 0x00, 0xba, 0x01, 0x00, 0xd0, 0x01, 0x00]
        );

        let mut p2 = DynamicMessage::new(message(pool, "enc.p2.All"));
        p2.set_field_by_name("f_int32", Value::I32(-7));
        p2.set_field_by_name("f_enum", Value::EnumNumber(2));
        assert_same_bytes(&p2);
        // f_int32 = -7 (3, ten-byte varint), f_enum = BLUE (16): proto2
        // fields have presence, so their defaults are written.
        assert_eq!(
            encode(&p2),
            [0x18, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x80, 0x01, 0x02]
        );
    }

    #[test]
    fn map_entries_write_default_keys_and_values_as_prost_reflect_does() {
        let pool = local_pool();
        let mut p3 = DynamicMessage::new(message(pool, "enc.p3.P3"));
        let desc = p3.descriptor();
        let empty = Value::Message(DynamicMessage::new(desc.clone()));
        p3.set_field_by_name(
            "m",
            Value::Map([(MapKey::U32(0), empty.clone()), (MapKey::U32(5), empty)].into()),
        );
        p3.set_field_by_name(
            "ms",
            Value::Map([(MapKey::I32(0), Value::String(String::new()))].into()),
        );
        assert_same_bytes(&p3);

        let mut p2 = DynamicMessage::new(message(pool, "enc.p2.All"));
        p2.set_field_by_name(
            "m_int",
            Value::Map([(MapKey::String(String::new()), Value::I32(0))].into()),
        );
        assert_same_bytes(&p2);
        // proto2 entry fields have presence: key "" and value 0 are written.
        assert_eq!(encode(&p2), [0xca, 0x02, 0x04, 0x0a, 0x00, 0x10, 0x00]);
    }

    #[test]
    fn deeply_nested_structs_encode_exactly() {
        let pool = library_pool();
        let struct_desc = message(pool, "google.protobuf.Struct");
        let value_desc = message(pool, "google.protobuf.Value");
        let mut inner = DynamicMessage::new(struct_desc.clone());
        for depth in 0..40 {
            let mut value = DynamicMessage::new(value_desc.clone());
            value.set_field_by_name("struct_value", Value::Message(inner));
            let mut outer = DynamicMessage::new(struct_desc.clone());
            let mut fields = std::collections::HashMap::new();
            fields.insert(
                MapKey::String(format!("level{depth}")),
                Value::Message(value),
            );
            let mut number = DynamicMessage::new(value_desc.clone());
            number.set_field_by_name("number_value", Value::F64(f64::from(depth)));
            fields.insert(MapKey::String("n".into()), Value::Message(number));
            outer.set_field_by_name("fields", Value::Map(fields));
            inner = outer;
        }
        assert!(
            inner.encoded_len() > 128 * 4,
            "lengths need multi-byte varints"
        );
        assert_same_bytes(&inner);
    }

    #[test]
    fn nested_bodies_at_every_length_prefix_width_encode_exactly() {
        let desc = message(local_pool(), "enc.p3.P3");
        // Body lengths around the one-, two-, three- and four-byte varints.
        for len in [
            0, 124, 125, 126, 127, 16_380, 16_381, 16_382, 2_097_150, 2_097_151,
        ] {
            let mut inner = DynamicMessage::new(desc.clone());
            inner.set_field_by_name("os", Value::String("x".repeat(len)));
            let mut middle = DynamicMessage::new(desc.clone());
            middle.set_field_by_name("child", Value::Message(inner));
            middle.set_field_by_name("big", Value::U64(u64::MAX));
            let mut outer = DynamicMessage::new(desc.clone());
            outer.set_field_by_name("om", Value::Message(middle));
            outer.set_field_by_name("e", Value::EnumNumber(1));
            assert_same_bytes(&outer);
        }
    }

    #[test]
    fn unknown_fields_are_re_emitted_in_field_number_order_between_known_fields() {
        let desc = message(local_pool(), "enc.p3.P3");
        let mut bytes = Vec::new();
        // unknown 35 (varint), known 19, unknown 5 twice, unknown 10 (group), known 1.
        encode_key(35, WireType::Varint, &mut bytes);
        encode_varint(300, &mut bytes);
        encode_key(19, WireType::Varint, &mut bytes);
        encode_varint(2, &mut bytes);
        for v in [1, 2] {
            encode_key(5, WireType::ThirtyTwoBit, &mut bytes);
            bytes.extend_from_slice(&[v, 0, 0, 0]);
        }
        encode_key(10, WireType::StartGroup, &mut bytes);
        encode_key(1, WireType::LengthDelimited, &mut bytes);
        bytes.extend_from_slice(&[1, b'z']);
        encode_key(10, WireType::EndGroup, &mut bytes);
        encode_key(1, WireType::LengthDelimited, &mut bytes);
        bytes.extend_from_slice(&[2, 7, 8]);
        let msg = DynamicMessage::decode(desc, bytes.as_slice()).expect("decodes");
        assert_eq!(msg.unknown_fields().count(), 4);
        assert_same_bytes(&msg);
        let got = encode(&msg);
        assert_eq!(got[..3], [0x0a, 2, 7], "field 1 comes first");
    }

    #[test]
    fn encode_to_appends_after_existing_bytes() {
        let mut gen = Gen {
            rng: fastrand::Rng::with_seed(7),
        };
        let msg = gen.message(&message(library_pool(), "library.v1.Book"), 3);
        let mut out = b"prefix".to_vec();
        encode_to(&msg, &mut out);
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out[6..], msg.encode_to_vec());
    }
}
