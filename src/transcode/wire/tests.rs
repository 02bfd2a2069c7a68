#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, Value};
use serde::de::{self, DeserializeSeed, Visitor};

use super::render::{Renderer, Stop, RECURSION_LIMIT};
use super::*;

// ---------------------------------------------------------------------------------------------
// Pools and helpers.

fn library_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::demo::LIBRARY_DESCRIPTOR_SET).unwrap())
}

const EXTRA_PROTO2: &str = r#"
syntax = "proto2";
package extra;
enum E { B = 1; C = 2; }
message P2 {
  optional group G = 1 { optional int32 x = 2; }
  optional int32 y = 3 [default = 5];
  optional E e = 4;
  repeated E re = 5;
  repeated int32 packed = 6 [packed = true];
  repeated int32 unpacked = 7;
  map<string, E> me = 8;
  optional string s = 9 [default = "dflt"];
  extensions 100 to 199;
}
extend P2 { optional int32 ext = 100; }
"#;

const EXTRA_PROTO3: &str = r#"
syntax = "proto3";
package extra3;
import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";
enum Alias { option allow_alias = true; ZERO = 0; ONE = 1; UNO = 1; MINUS = -1; }
message M {
  Alias a = 1;
  repeated Alias ra = 2;
  map<int64, Alias> m = 3;
  google.protobuf.NullValue n = 4;
  repeated google.protobuf.NullValue rn = 5;
  map<string, google.protobuf.Value> mv = 6;
  map<sint32, bytes> mb = 7;
  map<bool, double> mbd = 8;
  map<fixed64, float> mf = 9;
  float f = 10;
  optional double od = 11;
  Big big = 12;
  repeated google.protobuf.Value rv = 13;
  map<uint32, google.protobuf.Int64Value> mw = 14;
  repeated google.protobuf.BytesValue rbw = 15;
  map<sfixed32, M> mm = 16;
  oneof pick { google.protobuf.NullValue pn = 17; google.protobuf.ListValue pl = 18; sfixed64 ps = 19; }
}
message Big { int32 a = 1; string z = 100000; repeated sint64 r = 536870911; }
"#;

fn extra_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        crate::transcode::compile_sources(&[
            ("extra2.proto", EXTRA_PROTO2),
            ("extra3.proto", EXTRA_PROTO3),
        ])
    })
}

fn desc(name: &str) -> MessageDescriptor {
    for pool in [crate::transcode::test_pool(), library_pool(), extra_pool()] {
        if let Some(d) = pool.get_message_by_name(name) {
            return d;
        }
    }
    panic!("no message {name}")
}

fn options() -> [JsonOptions; 4] {
    let with = |use_proto_names, emit_unpopulated| JsonOptions {
        use_proto_names,
        emit_unpopulated,
        ..JsonOptions::default()
    };
    [
        with(false, false),
        with(true, false),
        with(false, true),
        with(true, true),
    ]
}

/// The renderer alone, without the fallback.
fn direct(plan: &ReplyPlan, bytes: &[u8], opts: &JsonOptions) -> Result<Vec<u8>, Stop> {
    let mut out = Vec::new();
    Renderer::new(plan, opts, &mut out).message(0, bytes, RECURSION_LIMIT)?;
    Ok(out)
}

/// The slow path the renderer must equal: decode, then `json::encode_message`.
fn reference(
    desc: &MessageDescriptor,
    bytes: &[u8],
    opts: &JsonOptions,
) -> Result<Vec<u8>, String> {
    let msg = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| format!("decode: {e}"))?;
    json::encode_message(&msg, opts).map_err(|e| format!("render: {e}"))
}

fn public(plan: &ReplyPlan, bytes: &[u8], opts: &JsonOptions) -> Result<Vec<u8>, String> {
    let mut out = b"prefix".to_vec();
    match render_reply(plan, bytes, opts, &mut out) {
        Ok(()) => {
            assert!(out.starts_with(b"prefix"));
            Ok(out.split_off(6))
        }
        Err(e) => {
            assert_eq!(out, b"prefix", "a failure leaves the buffer as it was");
            Err(match e {
                ReplyError::Decode(e) => format!("decode: {e}"),
                ReplyError::Render(e) => format!("render: {e}"),
            })
        }
    }
}

/// Parse JSON, failing on a duplicate key in any object (serde_json would keep the last).
fn strict(bytes: &[u8]) -> serde_json::Value {
    struct Strict;
    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = serde_json::Value;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Strict {
        type Value = serde_json::Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(serde_json::Value::Null)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = seq.next_element_seed(Strict)? {
                items.push(v);
            }
            Ok(serde_json::Value::Array(items))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut obj = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if obj.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key {key:?}")));
                }
                let value = map.next_value_seed(Strict)?;
                obj.insert(key, value);
            }
            Ok(serde_json::Value::Object(obj))
        }
    }
    let text = std::str::from_utf8(bytes).expect("UTF-8 output");
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict
        .deserialize(&mut de)
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    de.end().unwrap();
    value
}

/// The differential check of one input: whenever the renderer answers by itself, its answer
/// is the reference's; the public function always answers exactly as the reference does.
/// Returns the renderer's own outcome.
fn compare(
    desc: &MessageDescriptor,
    plan: &ReplyPlan,
    bytes: &[u8],
    opts: &JsonOptions,
) -> Result<(), Stop> {
    let want = reference(desc, bytes, opts);
    let got = direct(plan, bytes, opts);
    let whole = public(plan, bytes, opts);
    let ctx = || {
        format!(
            "{} {:?} opts={}/{}",
            desc.full_name(),
            bytes,
            opts.use_proto_names,
            opts.emit_unpopulated
        )
    };
    match (&want, &whole) {
        (Ok(want), Ok(whole)) => assert_eq!(strict(whole), strict(want), "{}", ctx()),
        // Which map entry fails first depends on prost-reflect's `HashMap` order: compare
        // the reason only.
        (Err(want), Err(whole)) if want.starts_with("render") => {
            assert_eq!(
                whole.rsplit(": ").next(),
                want.rsplit(": ").next(),
                "{}",
                ctx()
            );
        }
        (Err(want), Err(whole)) => assert_eq!(whole, want, "{}", ctx()),
        _ => panic!("{}: reference {want:?}, public {whole:?}", ctx()),
    }
    match (&want, got) {
        (Ok(want), Ok(got)) => {
            assert_eq!(strict(&got), strict(want), "{}", ctx());
            Ok(())
        }
        (Ok(_), Err(stop)) => Err(stop),
        (Err(want), Ok(got)) => panic!(
            "{}: the renderer gave {} where the reference fails with {want}",
            ctx(),
            String::from_utf8_lossy(&got)
        ),
        (Err(want), Err(stop)) => {
            // Bytes that decode must not be called malformed. (The other way round, the
            // renderer may stop at an unrenderable value before it reaches damaged bytes.)
            if want.starts_with("render") {
                assert_ne!(stop, Stop::Malformed, "{}", ctx());
            }
            Err(stop)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random messages.

struct Gen {
    rng: fastrand::Rng,
}

impl Gen {
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.usize(..items.len())].clone()
    }

    fn message(&mut self, desc: &MessageDescriptor, depth: u32) -> DynamicMessage {
        let mut msg = DynamicMessage::new(desc.clone());
        match desc.full_name() {
            "google.protobuf.Timestamp" => {
                let seconds = if self.rng.u8(..20) == 0 {
                    self.pick(&[i64::MAX, -62_135_596_801, 253_402_300_800])
                } else {
                    self.rng.i64(-62_135_596_800..=253_402_300_799)
                };
                msg.set_field_by_name("seconds", Value::I64(seconds));
                let nanos = self.pick(&[0, 1, 500_000_000, 999_999_999, 1_000, 1_000_000]);
                msg.set_field_by_name("nanos", Value::I32(nanos));
                return msg;
            }
            "google.protobuf.Duration" => {
                let seconds = if self.rng.u8(..20) == 0 {
                    self.pick(&[315_576_000_001, -315_576_000_001, i64::MIN])
                } else {
                    self.rng.i64(-315_576_000_000..=315_576_000_000)
                };
                let nanos = self.pick(&[0, 1, -1, 500_000_000, -999_999_999, 1_000, 1_000_000_000]);
                msg.set_field_by_name("seconds", Value::I64(seconds));
                msg.set_field_by_name("nanos", Value::I32(nanos));
                return msg;
            }
            "google.protobuf.FieldMask" => {
                let paths: Vec<Value> = (0..self.rng.usize(..4))
                    .map(|_| {
                        let p = self.pick(&[
                            "a",
                            "foo_bar",
                            "foo.bar_baz",
                            "trailing_",
                            "x_1",
                            "Upper",
                            "a__b",
                            "quote\"d.ünï_cödé",
                            "",
                        ]);
                        Value::String(p.to_owned())
                    })
                    .collect();
                msg.set_field_by_name("paths", Value::List(paths));
                return msg;
            }
            "google.protobuf.Any" => {
                let (url, payload) = match self.rng.u8(..4) {
                    0 => {
                        let author =
                            self.message(&desc_in(desc, "omnigate.test.Author"), depth + 1);
                        (
                            "type.googleapis.com/omnigate.test.Author",
                            author.encode_to_vec(),
                        )
                    }
                    1 => {
                        let d = self.message(&desc_in(desc, "google.protobuf.Duration"), depth + 1);
                        (
                            "type.googleapis.com/google.protobuf.Duration",
                            d.encode_to_vec(),
                        )
                    }
                    2 => ("type.googleapis.com/no.Such", vec![8, 1]),
                    _ => ("type.googleapis.com/omnigate.test.Author", vec![0xff]),
                };
                msg.set_field_by_name("type_url", Value::String(url.into()));
                msg.set_field_by_name("value", Value::Bytes(payload.into()));
                return msg;
            }
            _ => {}
        }
        let fields: Vec<_> = desc.fields().collect();
        if fields.is_empty() {
            return msg;
        }
        // Random order, so that the last member set of a oneof varies.
        for _ in 0..fields.len() + 2 {
            let field = self.pick(&fields);
            if self.rng.u8(..3) == 0 {
                continue;
            }
            if matches!(field.kind(), Kind::Message(_)) && depth >= 5 && !field.is_map() {
                continue;
            }
            let value = if field.is_map() {
                let Kind::Message(entry) = field.kind() else {
                    unreachable!()
                };
                let key_kind = entry.map_entry_key_field().kind();
                let value_kind = entry.map_entry_value_field().kind();
                let mut map = HashMap::new();
                for _ in 0..self.rng.usize(..4) {
                    let key = self.map_key(&key_kind);
                    let value = if depth >= 5 && matches!(value_kind, Kind::Message(_)) {
                        value_kind.default_value()
                    } else {
                        self.value(&value_kind, depth)
                    };
                    map.insert(key, value);
                }
                Value::Map(map)
            } else if field.is_list() {
                let n = self.rng.usize(..4);
                Value::List((0..n).map(|_| self.value(&field.kind(), depth)).collect())
            } else {
                self.value(&field.kind(), depth)
            };
            msg.set_field(&field, value);
        }
        msg
    }

    fn map_key(&mut self, kind: &Kind) -> MapKey {
        match self.value(kind, 0) {
            Value::Bool(v) => MapKey::Bool(v),
            Value::I32(v) => MapKey::I32(v),
            Value::I64(v) => MapKey::I64(v),
            Value::U32(v) => MapKey::U32(v),
            Value::U64(v) => MapKey::U64(v),
            Value::String(v) => MapKey::String(v),
            other => panic!("map key {other:?}"),
        }
    }

    fn value(&mut self, kind: &Kind, depth: u32) -> Value {
        match kind {
            Kind::Double => {
                let r = self.rng.f64() * 1e6;
                Value::F64(self.pick(&[
                    0.0,
                    -0.0,
                    1.5,
                    -2.25e300,
                    1e-310,
                    0.1,
                    f64::MIN_POSITIVE,
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    r,
                ]))
            }
            Kind::Float => {
                let r = self.rng.f32() * 1e3;
                Value::F32(self.pick(&[
                    0.0,
                    -0.0,
                    1.5,
                    3.4e38,
                    1e-40,
                    0.1,
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    r,
                ]))
            }
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                let r = self.rng.i32(..);
                Value::I32(self.pick(&[0, 1, -1, i32::MIN, i32::MAX, r]))
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                let r = self.rng.i64(..);
                Value::I64(self.pick(&[0, 1, -1, i64::MIN, i64::MAX, r]))
            }
            Kind::Uint32 | Kind::Fixed32 => {
                let r = self.rng.u32(..);
                Value::U32(self.pick(&[0, 1, u32::MAX, r]))
            }
            Kind::Uint64 | Kind::Fixed64 => {
                let r = self.rng.u64(..);
                Value::U64(self.pick(&[0, 1, u64::MAX, r]))
            }
            Kind::Bool => Value::Bool(self.rng.bool()),
            Kind::String => Value::String(
                self.pick(&[
                    "",
                    "a",
                    "héllo wörld",
                    "quote\" back\\slash /",
                    "\u{0}\u{1f}ctl\n\t\r\u{8}\u{c}",
                    "😀 emoji \u{7f}\u{2028}",
                    "k",
                ])
                .to_owned(),
            ),
            Kind::Bytes => {
                let n = self.rng.usize(..8);
                Value::Bytes((0..n).map(|_| self.rng.u8(..)).collect::<Vec<u8>>().into())
            }
            Kind::Enum(e) => {
                let mut numbers: Vec<i32> = e.values().map(|v| v.number()).collect();
                numbers.extend([7, -3]);
                Value::EnumNumber(self.pick(&numbers))
            }
            Kind::Message(m) => {
                if depth >= 5 {
                    Value::Message(DynamicMessage::new(m.clone()))
                } else {
                    Value::Message(self.message(m, depth + 1))
                }
            }
        }
    }
}

fn desc_in(any: &MessageDescriptor, name: &str) -> MessageDescriptor {
    any.parent_pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| desc(name))
}

const RANDOM_TYPES: &[&str] = &[
    "library.v1.Book",
    "library.v1.ListBooksResponse",
    "omnigate.test.Book",
    "omnigate.test.Scalars",
    "omnigate.test.WellKnown",
    "omnigate.test.Request",
    "omnigate.test.Deep",
    "extra3.M",
    "extra.P2",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.Timestamp",
    "google.protobuf.Empty",
];

#[test]
fn random_messages_render_as_prost_reflect_renders_them() {
    let mut gen = Gen {
        rng: fastrand::Rng::with_seed(0x5eed_0001),
    };
    let mut direct_ok = 0;
    let mut fallbacks = 0;
    for name in RANDOM_TYPES {
        let d = desc(name);
        let plan = ReplyPlan::compile(&d);
        for _ in 0..250 {
            let bytes = gen.message(&d, 0).encode_to_vec();
            for opts in &options() {
                match compare(&d, &plan, &bytes, opts) {
                    Ok(()) => direct_ok += 1,
                    Err(Stop::Unsupported) => {
                        // Only groups (in extra.P2) are left to prost-reflect in what prost
                        // encodes.
                        assert_eq!(*name, "extra.P2", "{bytes:?}");
                        fallbacks += 1;
                    }
                    Err(_) => {}
                }
            }
        }
    }
    assert!(direct_ok > 8_000, "{direct_ok}");
    assert!(fallbacks > 0);
}

/// Random damage to valid messages: never a different answer, and never an answer where
/// `DynamicMessage::decode` fails.
#[test]
fn damaged_bytes_are_rejected_or_rendered_as_prost_reflect_does() {
    let mut gen = Gen {
        rng: fastrand::Rng::with_seed(0x5eed_0002),
    };
    let mut direct_ok = 0;
    for name in RANDOM_TYPES {
        let d = desc(name);
        let plan = ReplyPlan::compile(&d);
        for _ in 0..600 {
            let mut bytes = gen.message(&d, 0).encode_to_vec();
            for _ in 0..gen.rng.usize(1..4) {
                let len = bytes.len();
                match gen.rng.u8(..5) {
                    0 if len > 0 => {
                        let i = gen.rng.usize(..len);
                        bytes[i] ^= 1 << gen.rng.u8(..8);
                    }
                    1 if len > 0 => bytes.truncate(gen.rng.usize(..len)),
                    2 => {
                        let i = gen.rng.usize(..=len);
                        bytes.insert(i, gen.rng.u8(..));
                    }
                    3 if len > 0 => {
                        // Repeat a slice: duplicated and out-of-order fields.
                        let a = gen.rng.usize(..len);
                        let b = gen.rng.usize(a..=len);
                        let copy = bytes[a..b].to_vec();
                        bytes.extend_from_slice(&copy);
                    }
                    _ => {
                        let a = gen.rng.usize(..=len);
                        let copy = bytes[a..].to_vec();
                        bytes.truncate(a);
                        let mut rest = gen.message(&d, 0).encode_to_vec();
                        rest.extend_from_slice(&copy);
                        bytes.extend_from_slice(&rest);
                    }
                }
            }
            let opts = gen.pick(&options());
            if compare(&d, &plan, &bytes, &opts).is_ok() {
                direct_ok += 1;
            }
        }
    }
    assert!(direct_ok > 1_000, "{direct_ok}");
}

/// `msg` with its fields encoded one by one, in a random order: later fields of lower
/// numbers take the renderer's late-field path, the rest its sorted second pass.
fn shuffled(gen: &mut Gen, msg: &DynamicMessage) -> Vec<u8> {
    let mut chunks: Vec<Vec<u8>> = msg
        .fields()
        .map(|(field, value)| {
            let mut one = DynamicMessage::new(prost_reflect::ReflectMessage::descriptor(msg));
            one.set_field(&field, value.clone());
            one.encode_to_vec()
        })
        .collect();
    gen.rng.shuffle(&mut chunks);
    chunks.concat()
}

#[test]
fn fields_in_any_wire_order_render_as_prost_reflect_renders_them() {
    let mut gen = Gen {
        rng: fastrand::Rng::with_seed(0x5eed_0003),
    };
    let mut direct_ok = 0;
    for name in RANDOM_TYPES {
        let d = desc(name);
        let plan = ReplyPlan::compile(&d);
        for _ in 0..150 {
            let msg = gen.message(&d, 0);
            let bytes = shuffled(&mut gen, &msg);
            for opts in &options() {
                if compare(&d, &plan, &bytes, opts).is_ok() {
                    direct_ok += 1;
                }
            }
        }
    }
    assert!(direct_ok > 5_000, "{direct_ok}");
}

/// prost-generated code (the demo backend's) writes a oneof after all other fields.
#[test]
fn books_encoded_by_prost_generated_code_render_without_falling_back() {
    use crate::demo::pb::library::v1::Book;
    let mut gen = Gen {
        rng: fastrand::Rng::with_seed(0x5eed_0004),
    };
    let d = desc("library.v1.Book");
    let plan = ReplyPlan::compile(&d);
    let mut late = 0;
    for _ in 0..300 {
        let Ok(book) = gen.message(&d, 0).transcode_to::<Book>() else {
            continue;
        };
        if book.format.is_some() && book.state != 0 {
            late += 1;
        }
        let bytes = book.encode_to_vec();
        for opts in &options() {
            match compare(&d, &plan, &bytes, opts) {
                Ok(()) | Err(Stop::Unrenderable) => {}
                Err(stop) => panic!("{stop:?} for {bytes:?}"),
            }
        }
    }
    assert!(late > 50, "{late}");
}

#[test]
fn the_benchmark_book_renders_as_prost_reflect_renders_it() {
    let body = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/book.json"));
    let d = desc("library.v1.Book");
    let msg = json::decode_message(&d, body.as_bytes(), &JsonOptions::default()).unwrap();
    let bytes = msg.encode_to_vec();
    let plan = ReplyPlan::compile(&d);
    for opts in &options() {
        assert_eq!(compare(&d, &plan, &bytes, opts), Ok(()));
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built wire bytes: shapes prost never emits.

/// A protobuf encoder for test inputs.
#[derive(Clone, Default)]
struct W(Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl W {
    fn key(mut self, n: u32, wire_type: u8) -> Self {
        varint(&mut self.0, u64::from(n) << 3 | u64::from(wire_type));
        self
    }
    /// Varint field.
    fn v(self, n: u32, v: u64) -> Self {
        let mut w = self.key(n, 0);
        varint(&mut w.0, v);
        w
    }
    /// Length-delimited field.
    fn l(self, n: u32, bytes: impl AsRef<[u8]>) -> Self {
        let bytes = bytes.as_ref();
        let mut w = self.key(n, 2);
        varint(&mut w.0, bytes.len() as u64);
        w.0.extend_from_slice(bytes);
        w
    }
    fn s(self, n: u32, s: &str) -> Self {
        self.l(n, s)
    }
    fn m(self, n: u32, w: W) -> Self {
        self.l(n, w.0)
    }
    fn f32(self, n: u32, bits: u32) -> Self {
        let mut w = self.key(n, 5);
        w.0.extend_from_slice(&bits.to_le_bytes());
        w
    }
    fn f64(self, n: u32, bits: u64) -> Self {
        let mut w = self.key(n, 1);
        w.0.extend_from_slice(&bits.to_le_bytes());
        w
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
}

impl AsRef<[u8]> for W {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn w() -> W {
    W::default()
}

fn packed(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        varint(&mut out, v);
    }
    out
}

#[derive(Debug)]
enum Want<'a> {
    /// Rendered by the renderer itself, exactly this text (default options).
    Direct(&'a str),
    /// Left to prost-reflect, which gives this JSON.
    Fallback(&'a str),
    /// Rejected (by the renderer and by `DynamicMessage::decode`).
    Malformed,
}

fn check(ty: &str, wire: W, want: Want<'_>) {
    let d = desc(ty);
    let plan = ReplyPlan::compile(&d);
    let opts = JsonOptions::default();
    let outcome = compare(&d, &plan, &wire.0, &opts);
    for other in &options() {
        compare(&d, &plan, &wire.0, other).ok();
    }
    match want {
        Want::Direct(json) => {
            assert_eq!(outcome, Ok(()), "{ty} {:?}", wire.0);
            let got = direct(&plan, &wire.0, &opts).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), json, "{ty} {:?}", wire.0);
        }
        Want::Fallback(json) => {
            assert_eq!(outcome, Err(Stop::Unsupported), "{ty} {:?}", wire.0);
            let got = public(&plan, &wire.0, &opts).unwrap();
            assert_eq!(strict(&got), strict(json.as_bytes()), "{ty} {:?}", wire.0);
        }
        Want::Malformed => {
            assert!(
                matches!(outcome, Err(Stop::Malformed | Stop::Unsupported)),
                "{ty} {:?}: {outcome:?}",
                wire.0
            );
            let err = public(&plan, &wire.0, &opts).unwrap_err();
            assert!(err.starts_with("decode: "), "{err}");
        }
    }
}

#[test]
#[rustfmt::skip]
fn repeated_scalars_render_packed_unpacked_or_mixed() {
    use Want::Direct;
    // r_int32 (17) is packed by default in proto3; send it unpacked, packed, and both.
    check("omnigate.test.Scalars", w().v(17, 1).v(17, 2), Direct(r#"{"rInt32":[1,2]}"#));
    check("omnigate.test.Scalars", w().l(17, packed(&[1, 2, u64::MAX])), Direct(r#"{"rInt32":[1,2,-1]}"#));
    check("omnigate.test.Scalars", w().l(17, packed(&[1])).v(17, 2).l(17, packed(&[3, 4])), Direct(r#"{"rInt32":[1,2,3,4]}"#));
    // An empty packed run is no element at all.
    check("omnigate.test.Scalars", w().l(17, []), Direct("{}"));
    check("omnigate.test.Scalars", w().l(17, []).v(17, 5), Direct(r#"{"rInt32":[5]}"#));
    check("omnigate.test.Scalars", w().l(25, 1.5f64.to_bits().to_le_bytes()).f64(25, 2.0f64.to_bits()), Direct(r#"{"rDouble":[1.5,2.0]}"#));
    check("omnigate.test.Scalars", w().l(18, packed(&[1, 9])).v(18, 2), Direct(r#"{"rEnum":["FICTION",9,"SCIENCE"]}"#));
    // proto2 fields: `packed = true` sent unpacked, unpacked sent packed.
    check("extra.P2", w().v(6, 1).v(6, 2).l(7, packed(&[3, 4])), Direct(r#"{"packed":[1,2],"unpacked":[3,4]}"#));
    // A packed element cut short.
    check("omnigate.test.Scalars", w().l(17, [0x80]), Want::Malformed);
    check("omnigate.test.Scalars", w().l(25, [0, 0, 0]), Want::Malformed);
    // Repeated fields interleaved with others, and out of order.
    check("omnigate.test.Book", w().s(4, "a").s(1, "n").s(4, "b"), Direct(r#"{"name":"n","tags":["a","b"]}"#));
}

#[test]
#[rustfmt::skip]
fn the_last_of_a_repeated_singular_field_or_oneof_member_wins() {
    use Want::{Direct, Fallback};
    check("omnigate.test.Book", w().s(2, "first").s(2, "second"), Direct(r#"{"title":"second"}"#));
    check("omnigate.test.Book", w().s(2, "first").v(3, 4).s(2, "second"), Direct(r#"{"title":"second","pageCount":4}"#));
    check("omnigate.test.Book", w().v(3, 4).v(3, 0), Direct("{}"));
    check("omnigate.test.Book", w().v(3, 0).v(3, 4), Direct(r#"{"pageCount":4}"#));
    // oneof identifier: isbn (8), ean (9), ghost_writer (10).
    check("omnigate.test.Book", w().s(8, "isbn").v(9, 5), Direct(r#"{"ean":"5"}"#));
    check("omnigate.test.Book", w().v(9, 5).s(8, "isbn"), Direct(r#"{"isbn":"isbn"}"#));
    check("omnigate.test.Book", w().m(10, w().s(1, "g")).s(8, ""), Direct(r#"{"isbn":""}"#));
    check("omnigate.test.Book", w().s(8, "x").m(10, w().s(1, "g")).s(2, "t"), Direct(r#"{"title":"t","ghostWriter":{"name":"g"}}"#));
    // A losing member is still checked.
    check("omnigate.test.Book", w().m(10, w().l(1, [0xff])).s(8, "isbn"), Want::Malformed);
    check("omnigate.test.Book", w().s(2, "\u{e9}").s(1, "n").l(2, [0xc3]), Want::Malformed);
    // ... also when the fields come out of order (the second, sorted pass).
    check("omnigate.test.Book", w().s(2, "t").s(1, "n").l(2, [0xff]).s(2, "ok"), Want::Malformed);
    check("omnigate.test.Book", w().s(2, "t").s(1, "n").m(10, w().l(1, [0xff])).s(8, "isbn"), Want::Malformed);
    check("omnigate.test.Book", w().s(2, "t").s(1, "n").l(2, [0xff]), Want::Malformed);
    // A singular message twice is merged: prost-reflect does it.
    check("omnigate.test.Book", w().m(5, w().s(1, "a")).m(5, w().v(2, 5)), Fallback(r#"{"author":{"name":"a","authorId":"5"}}"#));
    check("omnigate.test.Book", w().m(5, w().s(1, "a")).s(1, "n").m(5, w().v(2, 5)), Fallback(r#"{"name":"n","author":{"name":"a","authorId":"5"}}"#));
    check("omnigate.test.WellKnown", w().m(19, w().m(5, w().m(1, w().s(1, "a")))).m(19, w().m(5, w().m(1, w().s(1, "b")))), Fallback(r#"{"choiceValue":{"a":null,"b":null}}"#));
    check("google.protobuf.Value", w().m(5, w()).v(4, 1), Direct("true"));
    check("google.protobuf.Value", w().v(4, 1).f64(2, 2.5f64.to_bits()), Direct("2.5"));
    check("google.protobuf.Value", w().m(6, w().m(1, w().s(3, "x"))).m(6, w().m(1, w().v(1, 0))), Fallback(r#"["x",null]"#));
}

#[test]
#[rustfmt::skip]
fn fields_render_in_number_order_whatever_the_wire_order() {
    use Want::Direct;
    check("omnigate.test.Book", w().s(14, "L").v(3, 2).s(1, "n"), Direct(r#"{"name":"n","pageCount":2,"label":"L"}"#));
    check("omnigate.test.Author", w().v(2, 7).s(1, "a").v(2, 8), Direct(r#"{"name":"a","authorId":"8"}"#));
    check("library.v1.Book", w().v(24, 2).s(1, "shelves/1/books/1"), Direct(r#"{"name":"shelves/1/books/1","state":"PUBLISHED"}"#));
    // Late singular fields go into place: first, middle, several, a oneof member, a message.
    check("omnigate.test.Book", w().s(2, "t").v(3, 4).s(1, "n"), Direct(r#"{"name":"n","title":"t","pageCount":4}"#));
    check("omnigate.test.Book", w().s(1, "n").v(3, 4).s(2, "t"), Direct(r#"{"name":"n","title":"t","pageCount":4}"#));
    check("omnigate.test.Book", w().s(14, "L").s(2, "t").s(1, "n").v(3, 4), Direct(r#"{"name":"n","title":"t","pageCount":4,"label":"L"}"#));
    check("omnigate.test.Book", w().s(14, "L").s(8, "i").m(5, w().s(1, "a")), Direct(r#"{"author":{"name":"a"},"isbn":"i","label":"L"}"#));
    check("library.v1.Book", w().s(1, "n").v(24, 2).m(20, w().s(1, "matte")), Direct(r#"{"name":"n","paperback":{"coverFinish":"matte"},"state":"PUBLISHED"}"#));
    // ... or nowhere when they are defaults, or before defaults that wrote nothing.
    check("omnigate.test.Book", w().s(2, "t").v(3, 0).s(1, ""), Direct(r#"{"title":"t"}"#));
    check("omnigate.test.Book", w().v(3, 0).s(2, "t"), Direct(r#"{"title":"t"}"#));
    check("omnigate.test.Book", w().v(3, 0).s(1, "n").v(3, 5), Direct(r#"{"name":"n","pageCount":5}"#));
    // ... and the last one still wins, in place or late.
    check("omnigate.test.Book", w().s(2, "t").s(1, "a").s(1, "b"), Direct(r#"{"name":"b","title":"t"}"#));
    check("omnigate.test.Book", w().s(2, "t").s(1, "a").v(3, 4).s(1, "b"), Direct(r#"{"name":"b","title":"t","pageCount":4}"#));
    check("omnigate.test.Book", w().v(3, 4).s(8, "i").v(9, 5).s(1, "n"), Direct(r#"{"name":"n","pageCount":4,"ean":"5"}"#));
    check("omnigate.test.Book", w().v(3, 4).v(9, 5).s(8, "i").s(1, "n"), Direct(r#"{"name":"n","pageCount":4,"isbn":"i"}"#));
    // Past eight late fields, the message is rendered again from sorted spans.
    let reversed = w().v(13, 1).f64(12, 1).f32(11, 1).f64(10, 1).f32(9, 1).v(8, 2).v(7, 2).v(6, 1).v(5, 1).v(4, 1).v(3, 1).f32(2, 1.5f32.to_bits()).f64(1, 2.5f64.to_bits());
    check("omnigate.test.Scalars", reversed, Direct(r#"{"fDouble":2.5,"fFloat":1.5,"fInt32":1,"fInt64":"1","fUint32":1,"fUint64":"1","fSint32":1,"fSint64":"1","fFixed32":1,"fFixed64":"1","fSfixed32":1,"fSfixed64":"1","fBool":true}"#));
    // A late repeated field joins its earlier run.
    check("omnigate.test.Book", w().s(4, "a").s(2, "t").s(4, "b").s(1, "n"), Direct(r#"{"name":"n","title":"t","tags":["a","b"]}"#));
}

#[test]
#[rustfmt::skip]
fn map_entries_default_missing_parts_and_keep_the_last_duplicate() {
    use Want::Direct;
    let e = |k: &str, v: &str| w().s(1, k).s(2, v);
    check("omnigate.test.Book", w().m(7, e("a", "1")).m(7, e("b", "2")).m(7, e("a", "3")), Direct(r#"{"labels":{"b":"2","a":"3"}}"#));
    check("omnigate.test.Book", w().m(7, w().s(2, "v").s(1, "k")), Direct(r#"{"labels":{"k":"v"}}"#));
    check("omnigate.test.Book", w().m(7, w().s(2, "v")).m(7, w().s(1, "k")), Direct(r#"{"labels":{"":"v","k":""}}"#));
    check("omnigate.test.Book", w().m(7, w().s(1, "k").s(1, "j").v(3, 1)), Direct(r#"{"labels":{"j":""}}"#));
    check("omnigate.test.Scalars", w().m(20, w().v(1, u64::MAX)).m(21, w().v(1, 1).v(2, 5)), Direct(r#"{"mInt":{"-1":""},"mBool":{"true":"5"}}"#));
    check("omnigate.test.Scalars", w().m(22, w().s(1, "x")).m(23, w().s(1, "y")), Direct(r#"{"mEnum":{"x":"GENRE_UNSPECIFIED"},"mMsg":{"y":{}}}"#));
    check("omnigate.test.Scalars", w().m(24, w().v(1, 3)), Direct(r#"{"mTs":{"3":"1970-01-01T00:00:00Z"}}"#));
    check("extra.P2", w().m(8, w().s(1, "k")), Direct(r#"{"me":{"k":"B"}}"#));
    check("extra3.M", w().m(6, w().s(1, "k")).m(14, w().v(1, 1)).m(7, w().v(1, 3)), Direct(r#"{"mv":{"k":null},"mb":{"-2":""},"mw":{"1":"0"}}"#));
    // Many entries (the sorted duplicate search), one duplicated.
    let mut many = w();
    for i in 0..20 {
        many = many.m(7, e(&format!("k{i}"), "v"));
    }
    let many = many.m(7, e("k3", "last"));
    let d = desc("omnigate.test.Book");
    let plan = ReplyPlan::compile(&d);
    let got = strict(&direct(&plan, &many.0, &JsonOptions::default()).unwrap());
    assert_eq!(got["labels"].as_object().unwrap().len(), 20);
    assert_eq!(got["labels"]["k3"], "last");
    // A map value message twice is merged: prost-reflect does it.
    check("omnigate.test.Scalars", w().m(23, w().s(1, "y").m(2, w().s(1, "a")).m(2, w().v(2, 1))), Want::Fallback(r#"{"mMsg":{"y":{"name":"a","authorId":"1"}}}"#));
    check("omnigate.test.Book", w().m(7, w().v(1, 1)), Want::Malformed);
    // prost-reflect reads a map occurrence of another wire type as length-delimited anyway.
    check("omnigate.test.Book", w().v(7, 0), Want::Fallback(r#"{"labels":{"":""}}"#));
}

#[test]
#[rustfmt::skip]
fn unknown_fields_of_every_wire_type_are_skipped() {
    use Want::{Direct, Fallback};
    let unknown = w().v(99, 1).f64(98, 7).l(97, b"xyz").f32(96, 1).m(95, w().v(1, 1));
    check("omnigate.test.Author", unknown.clone().s(1, "a"), Direct(r#"{"name":"a"}"#));
    check("omnigate.test.Author", w().s(1, "a").raw(&unknown.0), Direct(r#"{"name":"a"}"#));
    check("google.protobuf.Empty", unknown.clone(), Direct("{}"));
    check("google.protobuf.Timestamp", unknown.clone().v(1, 1), Direct(r#""1970-01-01T00:00:01Z""#));
    check("google.protobuf.Struct", unknown.clone(), Direct("{}"));
    check("google.protobuf.Value", unknown.clone(), Direct("null"));
    // Groups (start 3, end 4) are left to prost-reflect.
    check("omnigate.test.Author", w().key(90, 3).v(1, 5).key(90, 4).s(1, "a"), Fallback(r#"{"name":"a"}"#));
    check("extra.P2", w().key(1, 3).v(2, 5).key(1, 4), Fallback(r#"{"g":{"x":5}}"#));
    // A field of an extension in the pool is rendered by prost-reflect.
    check("extra.P2", w().v(100, 5).v(3, 1), Fallback(r#"{"y":1,"[extra.ext]":5}"#));
}

#[test]
#[rustfmt::skip]
fn defaults_sent_explicitly_are_omitted_unless_the_field_has_presence() {
    use Want::Direct;
    check("omnigate.test.Book", w().s(1, "").s(2, "").v(3, 0).v(6, 0), Direct("{}"));
    check("omnigate.test.Book", w().l(4, []), Direct(r#"{"tags":[""]}"#));
    check("omnigate.test.Book", w().v(3, 1 << 32), Direct("{}"));
    check("omnigate.test.Book", w().raw(&[0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Direct(r#"{"pageCount":-1}"#));
    check("omnigate.test.Book", w().v(13, 0).s(8, ""), Direct(r#"{"isbn":"","edition":0}"#));
    check("omnigate.test.Book", w().m(5, w()), Direct(r#"{"author":{}}"#));
    check("omnigate.test.Scalars", w().f64(1, 0).f32(2, 0).v(13, 0).l(15, []), Direct("{}"));
    // -0 is not the default: protobuf compares floats by their bits.
    check("omnigate.test.Scalars", w().f64(1, (-0.0f64).to_bits()).f32(2, (-0.0f32).to_bits()), Direct(r#"{"fDouble":-0.0,"fFloat":-0.0}"#));
    check("omnigate.test.Scalars", w().f64(1, f64::NAN.to_bits()).f32(2, f32::NEG_INFINITY.to_bits()), Direct(r#"{"fDouble":"NaN","fFloat":"-Infinity"}"#));
    check("extra.P2", w().v(3, 0).s(9, "").v(4, 1), Direct(r#"{"y":0,"e":"B","s":""}"#));
    check("extra3.M", w().v(1, 0).v(4, 0).f64(11, 0).v(17, 0), Direct(r#"{"od":0.0,"pn":null}"#));
    check("extra3.M", w().v(1, 1).v(4, 3).l(5, packed(&[0, 1])), Direct(r#"{"a":"ONE","n":null,"rn":[null,null]}"#));
    // emit_unpopulated: every field without presence, defaulted, in number order.
    let d = desc("omnigate.test.Book");
    let plan = ReplyPlan::compile(&d);
    let all = JsonOptions { emit_unpopulated: true, ..JsonOptions::default() };
    let got = direct(&plan, &w().v(13, 0).s(2, "t").0, &all).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), r#"{"name":"","title":"t","pageCount":0,"tags":[],"genre":"GENRE_UNSPECIFIED","labels":{},"coAuthors":[],"edition":0,"label":""}"#);
}

#[test]
#[rustfmt::skip]
fn well_known_types_render_in_their_json_forms() {
    use Want::Direct;
    let wk = "omnigate.test.WellKnown";
    check(wk, w().m(1, w().v(1, 1_700_000_000).v(2, 5_000_000)), Direct(r#"{"ts":"2023-11-14T22:13:20.005Z"}"#));
    check(wk, w().m(2, w().v(1, u64::MAX).v(2, (-500_000_000i64) as u64)), Direct(r#"{"dur":"-1.500s"}"#));
    check(wk, w().m(3, w().s(1, "foo_bar.baz").s(1, "x")), Direct(r#"{"mask":"fooBar.baz,x"}"#));
    check(wk, w().m(4, w()).m(5, w().v(1, 3)).m(6, w().v(1, 4)).m(7, w().v(1, u64::MAX)), Direct(r#"{"i32w":0,"i64w":"3","u32w":4,"u64w":"18446744073709551615"}"#));
    check(wk, w().m(8, w().f32(1, f32::NAN.to_bits())).m(9, w().f64(1, 0.25f64.to_bits())).m(10, w().v(1, 2)), Direct(r#"{"fw":"NaN","dw":0.25,"bw":true}"#));
    check(wk, w().m(8, w().f32(1, f32::NEG_INFINITY.to_bits())).m(9, w().f64(1, f64::INFINITY.to_bits())), Direct(r#"{"fw":"-Infinity","dw":"Infinity"}"#));
    check(wk, w().m(11, w().s(1, "s").s(1, "t")).m(12, w().s(1, "hi")), Direct(r#"{"sw":"t","byw":"aGk="}"#));
    check(wk, w().m(13, w().m(1, w().s(1, "k").m(2, w().m(6, w().m(1, w().v(4, 1)).m(1, w())))).m(1, w().s(1, "z"))), Direct(r#"{"st":{"k":[true,null],"z":null}}"#));
    check(wk, w().m(14, w().s(3, "x")).m(15, w()).m(17, w().v(1, 1)), Direct(r#"{"val":"x","lv":[],"empty":{}}"#));
    check(wk, w().m(18, w()).m(18, w().v(1, 60)), Direct(r#"{"rTs":["1970-01-01T00:00:00Z","1970-01-01T00:01:00Z"]}"#));
    check(wk, w().m(16, w().s(1, "type.googleapis.com/omnigate.test.Author").l(2, w().s(1, "a"))), Direct(r#"{"any":{"@type":"type.googleapis.com/omnigate.test.Author","name":"a"}}"#));
    check("google.protobuf.Struct", w().m(1, w().s(1, "a").m(2, w().v(4, 0))).m(1, w().s(1, "a").m(2, w().s(3, "b"))), Direct(r#"{"a":"b"}"#));
    check("google.protobuf.Duration", w(), Direct(r#""0s""#));
    check("google.protobuf.Int64Value", w().v(1, 5), Direct(r#""5""#));
    // An `Any` of `Empty` is `{"@type": url}` (an object already); the empty `Any` is `{}`.
    check(wk, w().m(16, w().s(1, "type.googleapis.com/google.protobuf.Empty")), Direct(r#"{"any":{"@type":"type.googleapis.com/google.protobuf.Empty"}}"#));
    check(wk, w().m(16, w()), Direct(r#"{"any":{}}"#));
    check(wk, w().m(16, w().s(1, "type.googleapis.com/google.protobuf.Duration").l(2, w().v(1, 3))), Direct(r#"{"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"3s"}}"#));
}

#[test]
#[rustfmt::skip]
fn numbers_and_enums_render_as_protobuf_prints_them() {
    use Want::Direct;
    let s = "omnigate.test.Scalars";
    // Floats in their shortest round-trip form as 32-bit values, not widened to 64 bits.
    check(s, w().f32(2, 0.1f32.to_bits()), Direct(r#"{"fFloat":0.1}"#));
    check(s, w().f32(2, f32::MAX.to_bits()), Direct(r#"{"fFloat":3.4028235e+38}"#));
    check(s, w().f32(2, 1e-45f32.to_bits()).f64(1, 0.1f64.to_bits()), Direct(r#"{"fDouble":0.1,"fFloat":1e-45}"#));
    // Non-canonical NaNs are plain "NaN".
    check(s, w().f32(2, 0x7FA1_2345).f64(1, 0xFFFB_CBA9_8765_4321), Direct(r#"{"fDouble":"NaN","fFloat":"NaN"}"#));
    check(s, w().v(4, 1).v(6, 1), Direct(r#"{"fInt64":"1","fUint64":"1"}"#));
    // An enum number with aliases shows the first name declared for it; an unknown one, itself.
    let c = "omnigate.test.Conformance";
    check(c, w().v(25, 2).l(26, packed(&[2, 1, 7])), Direct(r#"{"aliased":"ALIAS_BAZ","repeatedAliased":["ALIAS_BAZ","ALIAS_BAR",7]}"#));
    check(s, w().v(16, 123), Direct(r#"{"fEnum":123}"#));
    check(c, w().v(1, 0).v(2, 0), Direct(r#"{"oneofNullValue":null}"#));
}

/// Seconds and nanos as a Timestamp's or Duration's wire bytes (negative int32 nanos
/// sign-extended, as protobuf encodes them).
fn seconds_nanos(seconds: i64, nanos: i32) -> W {
    w().v(1, seconds as u64).v(2, i64::from(nanos) as u64)
}

/// Timestamps at the edges of the years 1 to 9999, around leap days, with every fraction
/// precision, plus a random sweep: exactly prost-types' text; nanos outside `0..1e9` and
/// seconds outside the years 1 to 9999 have no JSON form (an error, as in protobuf).
#[test]
fn timestamps_render_as_rfc3339_in_utc() {
    let d = desc("google.protobuf.Timestamp");
    let plan = ReplyPlan::compile(&d);
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    let seconds = [
        MIN,
        MIN + 1,
        MIN + 86_399,
        MIN + 86_400,
        -1,
        0,
        1,
        59,
        86_399,
        86_400,
        // 2000-02-28, 2000-02-29, 2000-03-01, 1900-02-28/03-01, 2100-02-28/03-01, 2024-12-31.
        951_696_000,
        951_782_400,
        951_868_800,
        -2_203_977_600,
        -2_203_891_200,
        4_107_456_000,
        4_107_542_400,
        1_735_603_200,
        1_700_000_000,
        MAX - 86_400,
        MAX - 1,
        MAX,
        MIN - 1,
        MAX + 1,
        i64::MIN,
        i64::MAX,
        -1 << 40,
        1 << 40,
    ];
    let nanos = [
        0,
        1,
        -1,
        1_000,
        1_000_000,
        5_000_000,
        123_456_000,
        123_456_789,
        500_000_000,
        999_999_999,
        -999_999_999,
        1_000_000_000,
        -1_000_000_000,
        1_999_999_999,
        i32::MAX,
        i32::MIN,
    ];
    let mut cases: Vec<(i64, i32)> = seconds
        .iter()
        .flat_map(|&s| nanos.iter().map(move |&n| (s, n)))
        .collect();
    let mut rng = fastrand::Rng::with_seed(0x5eed_0005);
    cases.extend((0..20_000).map(|_| {
        let n = [0, 1_000_000 * rng.i32(0..1000), rng.i32(0..1_000_000_000)][rng.usize(..3)];
        (rng.i64(MIN..=MAX), n)
    }));
    for (s, n) in cases {
        let wire = seconds_nanos(s, n);
        let got = direct(&plan, &wire.0, &JsonOptions::default());
        if (MIN..=MAX).contains(&s) && (0..1_000_000_000).contains(&n) {
            let want = format!(
                "\"{}\"",
                prost_types::Timestamp {
                    seconds: s,
                    nanos: n
                }
            );
            assert_eq!(String::from_utf8(got.unwrap()).unwrap(), want, "{s} {n}");
        } else {
            assert_eq!(got, Err(Stop::Unrenderable), "{s} {n}");
        }
        compare(&d, &plan, &wire.0, &JsonOptions::default()).ok();
    }
}

/// Durations: zero, each sign, every fraction precision, the range's edges: prost-types'
/// text; past the edges, or nanos of the other sign than the seconds: an error, as in
/// protobuf.
#[test]
fn durations_render_as_seconds_with_0_3_6_or_9_decimals() {
    let d = desc("google.protobuf.Duration");
    let plan = ReplyPlan::compile(&d);
    const MAX: i64 = 315_576_000_000;
    let seconds = [
        0,
        1,
        -1,
        59,
        32_400,
        -32_400,
        MAX,
        -MAX,
        MAX - 1,
        MAX + 1,
        -MAX - 1,
        i64::MIN,
        i64::MAX,
    ];
    let nanos = [
        0,
        1,
        -1,
        1_000,
        -1_000,
        1_000_000,
        -1_000_000,
        500_000_000,
        -500_000_000,
        123_456_789,
        999_999_999,
        -999_999_999,
        1_000_000_000,
        -1_000_000_000,
        i32::MAX,
        i32::MIN,
    ];
    for s in seconds {
        for n in nanos {
            let wire = seconds_nanos(s, n);
            let got = direct(&plan, &wire.0, &JsonOptions::default());
            let same_sign = !(s > 0 && n < 0 || s < 0 && n > 0);
            if s.unsigned_abs() <= MAX as u64 && n.unsigned_abs() < 1_000_000_000 && same_sign {
                let want = format!(
                    "\"{}\"",
                    prost_types::Duration {
                        seconds: s,
                        nanos: n
                    }
                );
                assert_eq!(String::from_utf8(got.unwrap()).unwrap(), want, "{s} {n}");
            } else {
                assert_eq!(got, Err(Stop::Unrenderable), "{s} {n}");
            }
            compare(&d, &plan, &wire.0, &JsonOptions::default()).ok();
        }
    }
}

#[test]
#[rustfmt::skip]
fn values_without_a_json_form_are_the_encoders_errors() {
    let d = desc("omnigate.test.WellKnown");
    let plan = ReplyPlan::compile(&d);
    for (wire, part) in [
        (w().m(1, w().v(1, i64::MAX as u64)), "`ts`: cannot encode as JSON: timestamp out of range"),
        (w().m(2, w().v(2, 1_000_000_000)), "`dur`: cannot encode as JSON: duration out of range"),
        (w().m(3, w().s(1, "Upper")), "`mask`: cannot encode as JSON: field mask path cannot round-trip"),
        (w().m(3, w().s(1, "foo_3_bar")), "`mask`: cannot encode as JSON: field mask path cannot round-trip"),
        (w().m(3, w().s(1, "foo__bar")), "`mask`: cannot encode as JSON: field mask path cannot round-trip"),
        (w().m(3, w().s(1, "ok").s(1, "foo_")), "`mask`: cannot encode as JSON: field mask path cannot round-trip"),
        (w().m(2, w().v(1, 1).v(2, -1i64 as u64)), "`dur`: cannot encode as JSON: duration seconds and nanos have different signs"),
        (w().m(2, w().v(1, -1i64 as u64).v(2, 1)), "`dur`: cannot encode as JSON: duration seconds and nanos have different signs"),
        (w().m(2, w().v(1, 315_576_000_001)), "`dur`: cannot encode as JSON: duration out of range"),
        (w().m(1, w().v(1, 5000).v(2, -1i64 as u64)), "`ts`: cannot encode as JSON: timestamp nanos out of range"),
        (w().m(1, w().v(1, 5000).v(2, 1_000_000_000)), "`ts`: cannot encode as JSON: timestamp nanos out of range"),
        (w().m(1, w().v(1, -62_135_596_801i64 as u64)), "`ts`: cannot encode as JSON: timestamp out of range"),
        (w().m(1, w().v(1, 253_402_300_800)), "`ts`: cannot encode as JSON: timestamp out of range"),
        (w().m(14, w().f64(2, f64::NAN.to_bits())), "`val`: cannot encode as JSON: cannot serialize non-finite"),
        (w().m(16, w().l(2, [1])), "`any`: cannot encode as JSON: google.protobuf.Any has a value but no type URL"),
        (w().m(16, w().s(1, "no-slash")), "`any`: cannot encode as JSON: unsupported type url 'no-slash'"),
        (w().m(14, w().f64(2, f64::INFINITY.to_bits())), "`val`: cannot encode as JSON: cannot serialize non-finite"),
        (w().m(16, w().s(1, "type.googleapis.com/no.Such")), "`any`: cannot encode as JSON: message 'no.Such' not found"),
        (w().m(18, w()).m(18, w().v(1, i64::MIN as u64)), "`rTs[1]`: cannot encode as JSON: timestamp out of range"),
    ] {
        assert_eq!(direct(&plan, &wire.0, &JsonOptions::default()), Err(Stop::Unrenderable), "{part}");
        let err = public(&plan, &wire.0, &JsonOptions::default()).unwrap_err();
        assert!(err.starts_with("render: field ") && err.contains(part), "{err}");
    }
}

#[test]
#[rustfmt::skip]
fn malformed_bytes_are_rejected() {
    use Want::Malformed;
    for wire in [
        // page_count (3) is an int32.
        w().raw(&[0x18]),                        // varint value missing
        w().raw(&[0x18, 0x80]),                  // truncated varint
        w().raw(&[0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), // 10th byte too big
        w().raw(&[0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // 11 bytes
        w().raw(&[0x12, 0x05, b'a']),            // length past the end
        w().raw(&[0x0d, 0x01, 0x02]),            // fixed32 cut short
        w().raw(&[0x07]),                        // wire type 7
        w().raw(&[0x00, 0x01]),                  // field number 0
        w().raw(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // key above u32
        w().l(1, [0xff, 0xfe]),                  // name: invalid UTF-8
        w().v(1, 5),                             // name (string) as a varint
        w().f32(3, 1),                           // page_count (int32) as fixed32
        w().v(5, 1),                             // author (message) as a varint
        w().m(5, w().raw(&[0x12, 0x01])),        // damage inside a nested message
        w().key(4, 4),                           // a stray end-group
    ] {
        check("omnigate.test.Book", wire, Malformed);
    }
    check("omnigate.test.WellKnown", w().m(1, w().s(1, "x")), Malformed);
    check("omnigate.test.WellKnown", w().m(14, w().v(3, 1)), Malformed);
    check("omnigate.test.WellKnown", w().m(13, w().m(1, w().v(2, 1))), Malformed);
    check("omnigate.test.WellKnown", w().m(3, w().v(1, 1)), Malformed);
    check("omnigate.test.WellKnown", w().m(16, w().v(1, 1)), Malformed);
    // Invalid UTF-8 after a run of plain ASCII, and in strings that lose to a later one
    // (never written, still checked): a map key or value, a wrapper, a Struct key.
    check("omnigate.test.Book", w().l(1, b"sixteen bytes ok\xff"), Malformed);
    check("omnigate.test.Book", w().m(7, w().l(1, [0xff]).s(1, "k").s(2, "v")), Malformed);
    check("omnigate.test.Book", w().m(7, w().s(1, "k").l(2, [0xc3]).s(2, "v")), Malformed);
    check("omnigate.test.WellKnown", w().m(11, w().l(1, [0xff]).s(1, "t")), Malformed);
    check("google.protobuf.Struct", w().m(1, w().l(1, [0xff]).s(1, "k")), Malformed);
}

/// Strings are copied in eight-byte steps while they are plain ASCII: a character to
/// escape, or one outside ASCII, at any position and length, still comes out as
/// serde_json writes it.
#[test]
fn strings_render_escaped_wherever_their_special_characters_are() {
    let d = desc("omnigate.test.Book");
    let plan = ReplyPlan::compile(&d);
    for len in 0..40 {
        for at in 0..len {
            for special in [
                "\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "😀", "\u{7f}", " ", "~",
            ] {
                let mut text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
                text.replace_range(at..at + 1, special);
                let bytes = w().s(1, &text).0;
                let got = direct(&plan, &bytes, &JsonOptions::default()).unwrap();
                let want = serde_json::to_vec(&serde_json::json!({ "name": text })).unwrap();
                assert_eq!(got, want, "{text:?}");
            }
        }
    }
}

#[test]
fn nesting_is_limited_as_prost_limits_it() {
    let d = desc("omnigate.test.Deep");
    let plan = ReplyPlan::compile(&d);
    let nest = |levels: usize| {
        let mut inner = w().v(3, 1);
        for _ in 0..levels {
            inner = w().m(1, inner);
        }
        inner
    };
    let opts = JsonOptions::default();
    assert_eq!(compare(&d, &plan, &nest(100).0, &opts), Ok(()));
    assert_eq!(
        compare(&d, &plan, &nest(101).0, &opts),
        Err(Stop::Malformed)
    );
    // Struct/Value/ListValue levels count too.
    let s = desc("google.protobuf.Value");
    let plan = ReplyPlan::compile(&s);
    let nest = |levels: usize| {
        let mut inner = w().v(4, 1);
        for _ in 0..levels {
            inner = w().m(6, w().m(1, inner));
        }
        inner
    };
    assert_eq!(compare(&s, &plan, &nest(50).0, &opts), Ok(()));
    assert_eq!(compare(&s, &plan, &nest(51).0, &opts), Err(Stop::Malformed));
}

#[test]
#[rustfmt::skip]
fn large_field_numbers_and_aliased_enums_render() {
    use Want::Direct;
    check("extra3.Big", w().s(100_000, "z").v(1, 1).v(536_870_911, 3), Direct(r#"{"a":1,"z":"z","r":["-2"]}"#));
    check("extra3.Big", w().v(536_870_910, 3).v(100_001, 1), Direct("{}"));
    let name = ReplyPlan::compile(&desc("extra3.M"));
    let got = String::from_utf8(direct(&name, &w().v(1, 1).0, &JsonOptions::default()).unwrap()).unwrap();
    let want = reference(&desc("extra3.M"), &w().v(1, 1).0, &JsonOptions::default()).unwrap();
    assert_eq!(got, r#"{"a":"ONE"}"#, "an alias shows as the first name declared");
    assert_eq!(got.as_bytes(), want);
    check("extra3.M", w().v(2, u64::MAX).v(2, 5), Direct(r#"{"ra":["MINUS",5]}"#));
}

#[test]
fn proto_names_are_used_when_asked() {
    let d = desc("omnigate.test.Book");
    let plan = ReplyPlan::compile(&d);
    let opts = JsonOptions {
        use_proto_names: true,
        ..JsonOptions::default()
    };
    let wire = w().v(3, 3).s(14, "L").m(12, w().v(2, 1));
    let got = direct(&plan, &wire.0, &opts).unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        r#"{"page_count":3,"co_authors":[{"author_id":"1"}],"display_name":"L"}"#
    );
}

#[test]
fn the_plan_knows_http_body_replies() {
    assert!(ReplyPlan::compile(&desc("google.api.HttpBody")).is_http_body());
    assert!(!ReplyPlan::compile(&desc("omnigate.test.Book")).is_http_body());
}
