//! A gRPC reply as the JSON tree the resolvers read, from its wire bytes.
//!
//! **In:** the reply's protobuf bytes and its method (whose [`ReplyPlan`] renders them).
//! **Out:** the `serde_json::Value` that [`to_json`] gives for the decoded message (same
//! keys, same strings, the same numbers bit for bit), or that path's exact error.
//!
//! Why: decoding into a `DynamicMessage` and serializing it through prost-reflect cost a sixth
//! of a small GraphQL query. [`crate::transcode::wire`] renders the proto3 JSON text straight
//! from the bytes with the options the resolvers need (JSON names, unpopulated fields
//! emitted: [`super::schema::output_options`]); the text is then read back here.
//!
//! Not with serde_json: without its `float_roundtrip` feature it reads about one `double` in
//! five one unit off in the last place. And the old tree holds a proto `float` as the f64 it
//! widens to, which reading its shortest decimal as an f64 does not always give (it can round
//! twice). So numbers are read with the standard library, and proto `float`s, found through a
//! [`Floats`] plan of where they sit, are read as f32 then widened. A reply type that can hold
//! an `Any` (its content's types are unknown ahead) or a field of a pool extension (rendered
//! by prost-reflect, outside the plan) is decoded as before, and so is anything that does not
//! read back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use prost_reflect::{Kind, MessageDescriptor};
use serde_json::{Map, Number, Value};

use super::schema::to_json;
use crate::error::Error;
use crate::router::GrpcMethod;
use crate::transcode::json::{self, JsonOptions};
use crate::transcode::{rest, wire};

/// The largest buffer reserved from [`ReplyReader::last_len`] alone.
const MAX_HINT: usize = 64 * 1024;

/// Deeper JSON than this is read by the fallback (the renderer stops at 100 messages, each at
/// most two JSON levels: a map or list, then the value).
const MAX_NESTING: u32 = 256;

/// How the replies of one method are turned into JSON trees; built with the schema.
#[derive(Debug)]
pub(crate) struct ReplyReader {
    /// `None`: decode, then [`to_json`].
    floats: Option<Floats>,
    /// The reply message's JSON keys, in field order, when it renders as an object of its
    /// fields (at most 64: a [`Selection`] is a bit per key); else empty.
    keys: Vec<Box<str>>,
    /// The length of the last JSON text rendered: the next one's buffer starts that large
    /// (with every field emitted, a reply's JSON is often several times its protobuf).
    last_len: AtomicUsize,
}

/// Where a reply's proto `float`s are: per message type holding some (directly or below), its
/// JSON keys that lead to one.
#[derive(Debug)]
struct Floats {
    root: Slot,
    messages: Vec<Vec<(Box<str>, Slot)>>,
}

/// What a JSON value holds, as far as `float`s go (a list's elements are alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// No `float` in it.
    Plain,
    /// A `float` (or `FloatValue`), or a list of them.
    Float,
    /// A message of [`Floats::messages`], or a list of them.
    Message(u32),
    /// A map whose values are `float`s.
    FloatMap,
    /// A map whose values are messages of [`Floats::messages`].
    MessageMap(u32),
}

/// Well-known types whose JSON form is not an object of their fields (`Any` aside: callers
/// decode replies that can hold one).
fn special(full_name: &str) -> Option<Slot> {
    match full_name {
        "google.protobuf.FloatValue" => Some(Slot::Float),
        "google.protobuf.Any" => None,
        name if json::has_special_json(name) => Some(Slot::Plain),
        _ => None,
    }
}

impl Floats {
    /// The plan of `reply`; `None` when the reply must be decoded (an `Any` or an extended
    /// message is reachable).
    fn compile(reply: &MessageDescriptor) -> Option<Floats> {
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut descs: Vec<MessageDescriptor> = Vec::new();
        let mut fields: Vec<Vec<(Box<str>, Slot)>> = Vec::new();
        // Messages get an id when first seen; their fields are read off the queue.
        let mut id_of = |m: &MessageDescriptor, descs: &mut Vec<MessageDescriptor>| -> u32 {
            *ids.entry(m.full_name().to_string()).or_insert_with(|| {
                descs.push(m.clone());
                (descs.len() - 1) as u32
            })
        };
        fn value_slot(
            kind: &Kind,
            descs: &mut Vec<MessageDescriptor>,
            id_of: &mut impl FnMut(&MessageDescriptor, &mut Vec<MessageDescriptor>) -> u32,
        ) -> Option<Slot> {
            Some(match kind {
                Kind::Float => Slot::Float,
                Kind::Message(m) if m.full_name() == "google.protobuf.Any" => return None,
                Kind::Message(m) => match special(m.full_name()) {
                    Some(slot) => slot,
                    None => Slot::Message(id_of(m, descs)),
                },
                _ => Slot::Plain,
            })
        }
        let root = match special(reply.full_name()) {
            Some(slot) => slot,
            None if reply.full_name() == "google.protobuf.Any" => return None,
            None => Slot::Message(id_of(reply, &mut descs)),
        };
        let mut next = 0;
        while next < descs.len() {
            let message = descs[next].clone();
            next += 1;
            if message.extensions().len() > 0 {
                return None;
            }
            let mut slots = Vec::new();
            for field in message.fields() {
                let slot = if field.is_map() {
                    let value = match field.kind() {
                        Kind::Message(entry) => entry.map_entry_value_field().kind(),
                        _ => continue,
                    };
                    match value_slot(&value, &mut descs, &mut id_of)? {
                        Slot::Float => Slot::FloatMap,
                        Slot::Message(id) => Slot::MessageMap(id),
                        _ => Slot::Plain,
                    }
                } else {
                    value_slot(&field.kind(), &mut descs, &mut id_of)?
                };
                if slot != Slot::Plain {
                    slots.push((Box::from(field.json_name()), slot));
                }
            }
            fields.push(slots);
        }
        // Keep only the messages with a `float` somewhere below.
        let mut holds = vec![false; fields.len()];
        let mut changed = true;
        while changed {
            changed = false;
            for (id, slots) in fields.iter().enumerate() {
                if holds[id] {
                    continue;
                }
                if slots.iter().any(|(_, slot)| match slot {
                    Slot::Float | Slot::FloatMap => true,
                    Slot::Message(m) | Slot::MessageMap(m) => holds[*m as usize],
                    Slot::Plain => false,
                }) {
                    holds[id] = true;
                    changed = true;
                }
            }
        }
        let kept = |slot: Slot| match slot {
            Slot::Message(m) | Slot::MessageMap(m) => holds[m as usize],
            Slot::Plain => false,
            Slot::Float | Slot::FloatMap => true,
        };
        let messages = fields
            .into_iter()
            .map(|slots| slots.into_iter().filter(|(_, s)| kept(*s)).collect())
            .collect();
        Some(Floats {
            root: if kept(root) { root } else { Slot::Plain },
            messages,
        })
    }
}

/// The options [`super::schema::output_options`] gives prost-reflect, for the renderer.
fn render_options() -> JsonOptions {
    JsonOptions {
        use_proto_names: false,
        emit_unpopulated: true,
        ..JsonOptions::default()
    }
}

impl ReplyReader {
    pub(crate) fn new(output: &MessageDescriptor) -> ReplyReader {
        let object = special(output.full_name()).is_none()
            && output.full_name() != "google.protobuf.Any"
            && output.fields().len() <= 64;
        ReplyReader {
            floats: Floats::compile(output),
            keys: if object {
                output.fields().map(|f| Box::from(f.json_name())).collect()
            } else {
                Vec::new()
            },
            last_len: AtomicUsize::new(0),
        }
    }

    /// The top-level keys among `names` (the fields a query selects on the reply); `None`
    /// when a name is not a key (or the reply is not an object of its fields): every key is
    /// then needed.
    pub(crate) fn selection<'a>(&self, names: impl Iterator<Item = &'a str>) -> Option<Selection> {
        if self.keys.is_empty() {
            return None;
        }
        let mut bits = 0_u64;
        for name in names {
            if name == "__typename" {
                continue;
            }
            let index = self.keys.iter().position(|k| **k == *name)?;
            bits |= 1 << index;
        }
        Some(Selection(bits))
    }

    /// The reply `bytes` of `method` as JSON: only the top-level keys of `selection` (and
    /// any key outside the plan) when given, everything else as [`to_json`] gives it.
    pub(crate) fn read(
        &self,
        method: &GrpcMethod,
        bytes: Bytes,
        selection: Option<Selection>,
    ) -> Result<Value, Error> {
        if let Some(floats) = &self.floats {
            let hint = self.last_len.load(Ordering::Relaxed).min(MAX_HINT);
            // The last reply's size with some slack; the first time, `render_reply` sizes it
            // from the protobuf.
            let mut text = match hint {
                0 => Vec::new(),
                hint => Vec::with_capacity(hint + hint / 8 + 64),
            };
            if wire::render_reply(&method.reply, &bytes, &render_options(), &mut text).is_ok() {
                self.last_len.store(text.len(), Ordering::Relaxed);
                let only = selection.map(|s| (self.keys.as_slice(), s.0));
                if let Some(value) = parse(&text, floats, only) {
                    return Ok(value);
                }
            }
        }
        let output = method.descriptor.output();
        to_json(&rest::decode(&output, bytes, method.upstream.name())?)
    }
}

/// The top-level keys a query reads, a bit per key of [`ReplyReader::keys`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Selection(u64);

/// Reads the rendered JSON; `None` when it is not JSON (or is nested too deep). With `only`,
/// the values of the root object's keys whose bit is clear are checked but not kept.
fn parse(text: &[u8], floats: &Floats, only: Option<(&[Box<str>], u64)>) -> Option<Value> {
    let text = std::str::from_utf8(text).ok()?;
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        floats,
        only,
    };
    let value = reader.value(floats.root, MAX_NESTING)?;
    reader.skip_space();
    (reader.pos == reader.bytes.len()).then_some(value)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    floats: &'a Floats,
    /// For the root object only (taken by the first object read).
    only: Option<(&'a [Box<str>], u64)>,
}

impl<'a> Reader<'a> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &str, value: Value) -> Option<Value> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word.as_bytes()).then(|| {
            self.pos = end;
            value
        })
    }

    fn value(&mut self, slot: Slot, depth: u32) -> Option<Value> {
        let depth = depth.checked_sub(1)?;
        match self.peek()? {
            b'{' => self.object(slot, depth).map(Value::Object),
            b'[' => self.array(slot, depth),
            b'"' => self.string().map(Value::String),
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'n' => self.literal("null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(slot == Slot::Float).map(Value::Number),
            _ => None,
        }
    }

    /// What the value of `key` holds, in an object that holds `slot`.
    fn inner(&self, slot: Slot, key: &str) -> Option<Slot> {
        Some(match slot {
            Slot::Message(m) => self
                .floats
                .messages
                .get(m as usize)?
                .iter()
                .find(|(k, _)| **k == *key)
                .map_or(Slot::Plain, |(_, s)| *s),
            Slot::FloatMap => Slot::Float,
            Slot::MessageMap(m) => Slot::Message(m),
            Slot::Plain | Slot::Float => Slot::Plain,
        })
    }

    fn object(&mut self, slot: Slot, depth: u32) -> Option<Map<String, Value>> {
        self.pos += 1;
        let only = self.only.take();
        // Keys come in field order: the next key is most often the next field's.
        let mut next = 0;
        let mut map = Map::new();
        if self.eat(b'}').is_some() {
            return Some(map);
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            // The key is borrowed from the text (allocated only when kept), unless escaped.
            let start = self.pos;
            let key: std::borrow::Cow<'a, str> = match self.skip_string()? {
                Some(key) => key.into(),
                None => {
                    self.pos = start;
                    self.string()?.into()
                }
            };
            self.eat(b':')?;
            let inner = self.inner(slot, &key)?;
            let skipped = only.is_some_and(|(keys, bits)| {
                let index = match keys.get(next) {
                    Some(k) if **k == *key => Some(next),
                    _ => keys.iter().position(|k| **k == *key),
                };
                index.is_some_and(|i| {
                    next = i + 1;
                    bits & (1 << i) == 0
                })
            });
            if skipped {
                self.skip(inner, depth)?;
            } else {
                let value = self.value(inner, depth)?;
                map.insert(key.into_owned(), value);
            }
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(map);
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, slot: Slot, depth: u32) -> Option<Value> {
        self.pos += 1;
        // A repeated field's elements are what the field is; maps are never in lists.
        let element = match slot {
            Slot::Float | Slot::Message(_) => slot,
            _ => Slot::Plain,
        };
        let mut items = Vec::new();
        if self.eat(b']').is_some() {
            return Some(Value::Array(items));
        }
        loop {
            items.push(self.value(element, depth)?);
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    /// Reads past a value as [`Reader::value`] reads it (the same text is refused), keeping
    /// nothing.
    fn skip(&mut self, slot: Slot, depth: u32) -> Option<()> {
        let depth = depth.checked_sub(1)?;
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let start = self.pos;
                    let inner = match self.skip_string()? {
                        Some(key) => self.inner(slot, key)?,
                        None => {
                            // Escaped: read it again, unescaped (rare).
                            self.pos = start;
                            let key = self.string()?;
                            self.inner(slot, &key)?
                        }
                    };
                    self.eat(b':')?;
                    self.skip(inner, depth)?;
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                let element = match slot {
                    Slot::Float | Slot::Message(_) => slot,
                    _ => Slot::Plain,
                };
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.skip(element, depth)?;
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.skip_string().map(drop),
            b't' => self.literal("true", Value::Null).map(drop),
            b'f' => self.literal("false", Value::Null).map(drop),
            b'n' => self.literal("null", Value::Null).map(drop),
            b'-' | b'0'..=b'9' => self.number(slot == Slot::Float).map(drop),
            _ => None,
        }
    }

    /// At an opening quote: reads past the string; `Some(None)` when it holds escapes (then
    /// checked as [`Reader::string`] checks them).
    fn skip_string(&mut self) -> Option<Option<&'a str>> {
        let start = self.pos + 1;
        let rest = self.bytes.get(start..)?;
        let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
        if rest[end] == b'"' {
            self.pos = start + end + 1;
            return self.text.get(start..start + end).map(Some);
        }
        self.string()?;
        Some(None)
    }

    /// At an opening quote.
    fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let start = self.pos;
        let rest = self.bytes.get(start..)?;
        let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
        if rest[end] == b'"' {
            self.pos = start + end + 1;
            return self.text.get(start..start + end).map(str::to_owned);
        }
        let mut out = String::from(self.text.get(start..start + end)?);
        self.pos = start + end;
        loop {
            match *self.bytes.get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    let escaped = *self.bytes.get(self.pos + 1)?;
                    self.pos += 2;
                    match escaped {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return None,
                    }
                }
                _ => {
                    let from = self.pos;
                    let run = self.bytes[from..]
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\')?;
                    out.push_str(self.text.get(from..from + run)?);
                    self.pos = from + run;
                }
            }
        }
    }

    /// After `\u`: four hex digits, and the low half's escape after a high surrogate.
    fn unicode_escape(&mut self) -> Option<char> {
        let high = self.hex4()?;
        if !(0xD800..0xDC00).contains(&high) {
            return char::from_u32(high);
        }
        if self.bytes.get(self.pos..self.pos + 2)? != b"\\u" {
            return None;
        }
        self.pos += 2;
        let low = self.hex4()?;
        if !(0xDC00..0xE000).contains(&low) {
            return None;
        }
        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// Integers as `u64`/`i64` when they fit (as serde_json reads them), other numbers as
    /// the nearest f64, and a proto `float` as its f32 widened.
    fn number(&mut self, float: bool) -> Option<Number> {
        let start = self.pos;
        let mut integer = true;
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => integer = false,
                _ => break,
            }
            self.pos += 1;
        }
        let text = self.text.get(start..self.pos)?;
        if float {
            return Number::from_f64(f64::from(text.parse::<f32>().ok()?));
        }
        if integer {
            let parsed = if text.starts_with('-') {
                text.parse::<i64>().ok().map(Number::from)
            } else {
                text.parse::<u64>().ok().map(Number::from)
            };
            if parsed.is_some() {
                return parsed;
            }
        }
        Number::from_f64(text.parse::<f64>().ok()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::OnceLock;

    use prost::Message as _;
    use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage as _};
    use serde_json::json;

    use super::*;

    const EXTRA: &str = r#"
syntax = "proto3";
package reply;
import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";
message Tree {
  string name = 1;
  repeated Tree children = 2;
  map<string, Leaf> leaves = 3;
  Plain plain = 4;
  Leaf leaf = 5;
}
message Leaf {
  float weight = 1;
  repeated float samples = 2;
  map<int32, float> by_id = 3;
  google.protobuf.FloatValue maybe = 4;
  repeated google.protobuf.FloatValue wrapped = 5;
  double d = 6;
  optional float of = 7;
}
message Plain {
  double d = 1;
  google.protobuf.Value v = 2;
  google.protobuf.Struct s = 3;
  int64 i = 4;
  repeated Plain more = 5;
}
"#;

    const EXTENDED: &str = r#"
syntax = "proto2";
package reply2;
message Ext { optional int32 a = 1; extensions 10 to 20; }
extend Ext { optional float f = 10; }
message Holder { optional Ext ext = 1; }
"#;

    fn extra_pool() -> &'static DescriptorPool {
        static POOL: OnceLock<DescriptorPool> = OnceLock::new();
        POOL.get_or_init(|| {
            crate::transcode::compile_sources(&[
                ("extra.proto", EXTRA),
                ("extended.proto", EXTENDED),
            ])
        })
    }

    fn desc(name: &str) -> MessageDescriptor {
        let test = crate::transcode::test_pool();
        test.get_message_by_name(&format!("omnigate.test.{name}"))
            .or_else(|| test.get_message_by_name(name))
            .or_else(|| extra_pool().get_message_by_name(name))
            .unwrap_or_else(|| panic!("no message {name}"))
    }

    fn message(name: &str, json: Value) -> DynamicMessage {
        DynamicMessage::deserialize(desc(name), json).unwrap()
    }

    /// The tree from the wire bytes, or `None` when the reader decodes instead.
    fn read(desc: &MessageDescriptor, bytes: &[u8]) -> Option<Value> {
        let floats = Floats::compile(desc)?;
        let plan = wire::ReplyPlan::compile(desc);
        let mut text = Vec::new();
        wire::render_reply(&plan, bytes, &render_options(), &mut text).ok()?;
        parse(&text, &floats, None)
    }

    /// Same tree as the decode-then-serialize path, bit for bit.
    fn check(message: &DynamicMessage) {
        let bytes = message.encode_to_vec();
        let decoded = DynamicMessage::decode(message.descriptor(), &bytes[..]).unwrap();
        let want = to_json(&decoded).unwrap();
        let got = read(&message.descriptor(), &bytes)
            .unwrap_or_else(|| panic!("not read from the wire: {want}"));
        assert_eq!(got, want);
        assert_eq!(bits(&got), bits(&want), "{want}");
    }

    /// Every number with its exact bits, so `-0.0` and `0.0` or two close doubles differ.
    fn bits(value: &Value) -> String {
        match value {
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => format!("u{u}"),
                (_, Some(i), _) => format!("i{i}"),
                (_, _, Some(f)) => format!("f{:x}", f.to_bits()),
                _ => unreachable!(),
            },
            Value::Array(items) => items.iter().map(bits).collect::<Vec<_>>().join(","),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| format!("{k}:{}", bits(v)))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        }
    }

    #[test]
    fn replies_read_from_the_wire_equal_the_decoded_ones() {
        let cases = [
            ("Book", json!({})),
            (
                "Book",
                json!({
                    "name": "shelves/1/books/1", "title": "The \"Glass\" Orchard",
                    "pageCount": 320, "tags": ["a", "b"], "author": {"name": "x", "authorId": "1"},
                    "genre": "FICTION", "labels": {"k": "v", "z": ""}, "ean": "42",
                    "publishTime": "2020-05-01T10:00:00Z", "coAuthors": [{"name": "y"}],
                    "edition": 0, "label": "shown",
                }),
            ),
            (
                "Scalars",
                json!({
                    "fDouble": 0.30000000000000004, "fFloat": 7.038531e-26, "fInt32": -5,
                    "fInt64": "-9223372036854775808", "fUint32": 4294967295_u32,
                    "fUint64": "18446744073709551615", "fSint32": -2147483648_i32,
                    "fSfixed64": "1", "fBool": true, "fString": "tab\t\"q\" \\ \u{1} é 𝄞 </>",
                    "fBytes": "AAEC/w==", "fEnum": "SCIENCE", "rInt32": [1, -1, 0],
                    "rEnum": ["FICTION"], "mInt": {"-3": "x", "7": "y"}, "mBool": {"true": "5"},
                    "mMsg": {"a": {"name": "n", "authorId": "3"}},
                    "mTs": {"9": "2024-02-29T12:00:00.5Z"},
                    "rDouble": [1.0, -0.0, 1e300, 2.2250738585072014e-308, 22925.594999999998],
                }),
            ),
            (
                "reply.Tree",
                json!({
                    "name": "root",
                    "children": [{"name": "c", "leaf": {"weight": 0.1, "samples": [0.2, 3e38]}}],
                    "leaves": {"x": {"byId": {"1": 4.1, "-2": -0.0}, "maybe": 1.1, "of": 0.0}},
                    "plain": {"d": 0.1, "v": 2.5, "s": {"a": [1.25, "b"]}, "i": "-7",
                              "more": [{"d": 1e-7}]},
                    "leaf": {"wrapped": [0.3, 1e-45], "d": 5e-324},
                }),
            ),
            ("reply.Leaf", json!({"weight": 16777217.0, "maybe": null})),
        ];
        for (name, json) in cases {
            check(&message(name, json));
        }
    }

    #[test]
    fn floats_read_as_their_f32_even_where_the_decimal_read_as_an_f64_rounds_twice() {
        // 0x15ae43fd: its shortest decimal read as an f64, then narrowed, is the next f32.
        let values = [
            0x15ae_43fd_u32,
            0x3f80_0001,
            0x0000_0001,
            0x7f7f_ffff,
            0x8000_0000,
        ]
        .map(f32::from_bits)
        .into_iter()
        .chain([f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        for value in values {
            let mut m = DynamicMessage::new(desc("Scalars"));
            m.set_field_by_name("f_float", prost_reflect::Value::F32(value));
            check(&m);
        }
    }

    #[test]
    fn random_doubles_and_floats_read_back_exactly() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut m = DynamicMessage::new(desc("reply.Leaf"));
            m.set_field_by_name("d", prost_reflect::Value::F64(f64::from_bits(x)));
            m.set_field_by_name(
                "weight",
                prost_reflect::Value::F32(f32::from_bits(x as u32)),
            );
            let wrapped = f32::from_bits((x >> 32) as u32);
            m.set_field_by_name(
                "samples",
                prost_reflect::Value::List(vec![prost_reflect::Value::F32(wrapped)]),
            );
            check(&m);
        }
    }

    #[test]
    fn the_plan_knows_where_floats_are_and_skips_what_holds_none() {
        let tree = Floats::compile(&desc("reply.Tree")).unwrap();
        assert_eq!(tree.root, Slot::Message(0));
        let keys: Vec<(&str, Slot)> = tree.messages[0].iter().map(|(k, s)| (&**k, *s)).collect();
        assert_eq!(
            keys,
            [
                ("children", Slot::Message(0)),
                ("leaves", Slot::MessageMap(1)),
                ("leaf", Slot::Message(1))
            ]
        );
        let leaf: Vec<&str> = tree.messages[1].iter().map(|(k, _)| &**k).collect();
        assert_eq!(
            leaf,
            ["weight", "samples", "byId", "maybe", "wrapped", "of"]
        );
        assert_eq!(Floats::compile(&desc("Book")).unwrap().root, Slot::Plain);
        assert_eq!(
            Floats::compile(&desc("google.protobuf.FloatValue"))
                .unwrap()
                .root,
            Slot::Float
        );
    }

    #[test]
    fn replies_that_can_hold_an_any_or_an_extension_are_decoded() {
        for name in [
            "WellKnown",
            "Request",
            "google.rpc.Status",
            "google.protobuf.Any",
            "reply2.Holder",
        ] {
            assert!(Floats::compile(&desc(name)).is_none(), "{name}");
        }
    }

    #[test]
    fn a_selection_keeps_its_keys_whole_and_still_refuses_what_is_not_json() {
        let leaf = desc("reply.Tree");
        let reader = ReplyReader::new(&leaf);
        let floats = Floats::compile(&leaf).unwrap();
        let m = message(
            "reply.Tree",
            json!({"name": "n", "children": [{"name": "c\"q"}], "leaf": {"weight": 0.1}}),
        );
        let bytes = m.encode_to_vec();
        let plan = wire::ReplyPlan::compile(&leaf);
        let mut text = Vec::new();
        wire::render_reply(&plan, &bytes, &render_options(), &mut text).unwrap();
        let full = parse(&text, &floats, None).unwrap();
        let only = reader
            .selection(["leaf", "__typename", "name"].into_iter())
            .unwrap();
        let got = parse(&text, &floats, Some((&reader.keys, only.0))).unwrap();
        let want: Map<String, Value> = ["name", "leaf"]
            .iter()
            .map(|k| (k.to_string(), full[*k].clone()))
            .collect();
        assert_eq!(bits(&got), bits(&Value::Object(want)));
        assert!(reader.selection(["nope"].into_iter()).is_none());
        let bad = br#"{"name":"n","children":[{"name":"\x"}]}"#;
        let name = reader.selection(["name"].into_iter()).unwrap();
        assert_eq!(parse(bad, &floats, Some((&reader.keys, name.0))), None);
    }

    #[test]
    fn escaped_keys_read_unescaped_and_are_matched_against_the_selection() {
        let tree = desc("reply.Tree");
        let reader = ReplyReader::new(&tree);
        let floats = Floats::compile(&tree).unwrap();
        let text = br#"{"n\u0061me":"a","x\"y":1,"leaf":{"w\u0065ight":0.5}}"#;
        assert_eq!(
            parse(text, &floats, None),
            Some(json!({"name": "a", "x\"y": 1, "leaf": {"weight": 0.5}}))
        );
        let name = reader.selection(["name"].into_iter()).unwrap();
        assert_eq!(
            parse(text, &floats, Some((&reader.keys, name.0))),
            Some(json!({"name": "a", "x\"y": 1}))
        );
    }

    #[test]
    fn what_is_not_json_is_not_read() {
        let floats = Floats::compile(&desc("Book")).unwrap();
        for text in [
            "",
            "{",
            "{\"a\":}",
            "[1,]",
            "{\"a\":1}x",
            "\"\\ud800\"",
            "\"\\x\"",
            "tru",
            "{1:2}",
            "1-2",
        ] {
            assert_eq!(parse(text.as_bytes(), &floats, None), None, "{text}");
        }
        let text = " {\"a\" : [ 1 , -2, 3.5, true, null, \"\\u00e9\\ud834\\udd1e\\/\"] } ";
        assert_eq!(
            parse(text.as_bytes(), &floats, None),
            Some(json!({"a": [1, -2, 3.5, true, null, "é𝄞/"]}))
        );
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert_eq!(parse(deep.as_bytes(), &floats, None), None);
    }
}
