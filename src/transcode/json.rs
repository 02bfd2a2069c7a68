//! Proto3 JSON in both directions for the gateway's transcoder.
//!
//! **In:** a message (or field) descriptor plus the raw request body bytes; or a
//! [`DynamicMessage`] to render; or the `grpc-status-details-bin` trailer bytes.
//! **Out:** a [`DynamicMessage`] (or one field's [`Value`]), JSON bytes, or a [`FieldError`]
//! naming the JSON path of the offending value (`""` = the whole body) and what was wrong, in
//! words meant for the REST client.
//! **Must not know:** anything about HTTP (status codes, headers, content types, frameworks) or
//! gRPC (clients, channels, metadata). Callers turn a [`FieldError`] into a 400 themselves.
//!
//! The proto3 JSON mapping itself is prost-reflect's (well-known types, `Any` resolved through
//! the descriptor pool, 64-bit integers as strings, enums by name or number, base64 bytes in
//! both alphabets, `FieldMask`, `Struct`/`Value`/`ListValue`, wrappers, `Empty`). This module
//! only adds what prost-reflect lacks:
//!
//! * input hygiene before parsing: UTF-8 check (with the offset of the first bad byte), an
//!   empty or all-whitespace body decodes to the empty message, the top-level value must be an
//!   object (an array for repeated fields; other shapes for well-known types with a non-object
//!   form), and a nesting limit ([`JsonOptions::max_depth`]) enforced by one byte scan that
//!   respects strings and escapes, before any deserialization happens;
//! * JSON paths in every error, via `serde_path_to_error` wrapped around
//!   [`DynamicMessage::deserialize_with_options`]; malformed JSON gets `field == ""` and the
//!   line/column in the reason;
//! * a *guard* deserializer, layered between `serde_path_to_error` and `serde_json`, that
//!   follows the descriptors while prost-reflect deserializes and, in the same single pass,
//!   rejects: duplicate keys in any object (including maps and `Struct`), one field given
//!   under both its proto and JSON names, unknown fields (naming their full path; prost-reflect
//!   alone would only name the enclosing object), and two non-null members of one oneof
//!   (naming both keys; prost-reflect alone names only the oneof). It also rewords integer
//!   range, non-integral number, bad number string, bad map key and unknown enum name errors.
//!   A `null` oneof member is ignored, as the proto3 JSON conformance suite requires, except
//!   for `google.protobuf.Value`, where `null` is a value.
//!
//! Output: lowerCamelCase names (proto names with [`JsonOptions::use_proto_names`]), int64 as
//! strings, enums by name, defaults omitted unless [`JsonOptions::emit_unpopulated`] (which,
//! like protobuf's `always_print_fields_with_no_presence`, still omits unset message fields,
//! oneof members and proto3 `optional` fields). Encoding can fail in prost-reflect (an `Any`
//! whose type is not in the pool, a malformed `Any` payload, an out-of-range `Timestamp` or
//! `Duration`, a `FieldMask` path that does not round-trip through lowerCamelCase, a
//! non-finite number in a `Value`), so the encoders return `Result` with the failing path.
//!
//! Note: `serde_json` has its own recursion limit of 128 nested values; a `max_depth` above
//! about 127 is therefore capped by that limit (reported as malformed JSON).

use std::{cell::Cell, collections::HashSet, fmt, io};

use base64::Engine as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    ReflectMessage, SerializeOptions, Value,
};
use serde::{
    de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor},
    ser::{self, Impossible, Serialize, SerializeMap, Serializer},
};

/// Options for both directions.
#[derive(Clone, Debug)]
pub struct JsonOptions {
    /// Output proto field names (`page_count`) instead of lowerCamelCase (`pageCount`).
    pub use_proto_names: bool,
    /// Output fields without presence even when they hold their default value.
    pub emit_unpopulated: bool,
    /// Input: skip unknown fields and unknown enum names instead of rejecting them.
    pub ignore_unknown_fields: bool,
    /// Input: the deepest nesting of objects/arrays accepted (the top-level object is depth 1).
    pub max_depth: usize,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            use_proto_names: false,
            emit_unpopulated: false,
            ignore_unknown_fields: false,
            max_depth: 64,
        }
    }
}

/// A rejected (or unrenderable) value: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// JSON path such as `book.tags[2]`, or `""` for the whole body.
    pub field: String,
    /// What was wrong, for the REST client.
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn whole(reason: impl Into<String>) -> Self {
        FieldError::new(String::new(), reason)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "field `{}`: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for FieldError {}

/// Decodes a proto3 JSON body into a message of type `desc`.
///
/// An empty (or all-whitespace) body is the empty message.
pub fn decode_message(
    desc: &MessageDescriptor,
    body: &[u8],
    opts: &JsonOptions,
) -> Result<DynamicMessage, FieldError> {
    let ctx = Ctx::of_kind(&Kind::Message(desc.clone()));
    let what = format!("message `{}`", desc.full_name());
    let Some(text) = prepare(body, opts, &ctx, false, &what)? else {
        return Ok(DynamicMessage::new(desc.clone()));
    };
    let shared = Shared {
        deny_unknown: !opts.ignore_unknown_fields,
    };
    let de_opts = DeserializeOptions::new().deny_unknown_fields(shared.deny_unknown);
    parse_tracked(text, |json, track| {
        let guard = Guard::root(json, ctx.clone(), &shared);
        match track {
            None => DynamicMessage::deserialize_with_options(desc.clone(), guard, &de_opts),
            Some(track) => DynamicMessage::deserialize_with_options(
                desc.clone(),
                serde_path_to_error::Deserializer::new(guard, track),
                &de_opts,
            ),
        }
    })
}

type JsonDeserializer<'t> = serde_json::Deserializer<serde_json::de::StrRead<'t>>;

/// Run `parse` over the whole of `text`, first without path tracking; only when that fails,
/// run it again with tracking, to say where the error is. The success path then does not
/// pay for `serde_path_to_error` (a `String` per object key); parsing is deterministic, so
/// the second run fails the same way.
fn parse_tracked<T>(
    text: &str,
    parse: impl Fn(
        &mut JsonDeserializer<'_>,
        Option<&mut serde_path_to_error::Track>,
    ) -> Result<T, serde_json::Error>,
) -> Result<T, FieldError> {
    let mut json = serde_json::Deserializer::from_str(text);
    let first = match parse(&mut json, None) {
        Ok(value) => {
            json.end().map_err(|e| malformed(&e))?;
            return Ok(value);
        }
        Err(first) => first,
    };
    let mut json = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let error = parse(&mut json, Some(&mut track)).err().unwrap_or(first);
    Err(convert_de_error(&error, track))
}

/// Decodes a body holding the proto3 JSON value of one field (`body: "tags"` takes a JSON
/// array, `body: "book"` an object, `body: "title"` a string...).
///
/// Returns `None` when the body is empty or `null`, or the value is the field's default for a
/// field without presence (the field is then left unset). Error paths are relative to the body.
pub fn decode_field_value(
    field: &FieldDescriptor,
    body: &[u8],
    opts: &JsonOptions,
) -> Result<Option<Value>, FieldError> {
    let ctx = Ctx::of_field(field);
    let what = format!("field `{}`", field.name());
    let Some(text) = prepare(body, opts, &ctx, true, &what)? else {
        return Ok(None);
    };
    let shared = Shared {
        deny_unknown: !opts.ignore_unknown_fields,
    };
    let de_opts = DeserializeOptions::new().deny_unknown_fields(shared.deny_unknown);
    // prost-reflect only exposes whole-message deserialization, so present the body to it as
    // the value of a one-entry object `{"<jsonName>": <body>}` without copying anything.
    let parent = field.parent_message();
    let mut parent = parse_tracked(text, |json, track| {
        let guard = Guard::root(json, ctx.clone(), &shared);
        let key = field.json_name();
        match track {
            None => DynamicMessage::deserialize_with_options(
                parent.clone(),
                SingleField { key, value: guard },
                &de_opts,
            ),
            Some(track) => DynamicMessage::deserialize_with_options(
                parent.clone(),
                SingleField {
                    key,
                    value: serde_path_to_error::Deserializer::new(guard, track),
                },
                &de_opts,
            ),
        }
    })?;
    Ok(parent.take_field(field))
}

/// Encodes `msg` as proto3 JSON.
pub fn encode_message(msg: &DynamicMessage, opts: &JsonOptions) -> Result<Vec<u8>, FieldError> {
    let mut out = Vec::new();
    encode_message_to(msg, opts, &mut out)?;
    Ok(out)
}

/// Appends the proto3 JSON of `msg` to `out` (for NDJSON / SSE framing without extra copies).
/// On error `out` is left exactly as it was.
pub fn encode_message_to(
    msg: &DynamicMessage,
    opts: &JsonOptions,
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    let start = out.len();
    let so = serialize_options(opts);
    let value = WithOptions { msg, opts: &so };
    // Path tracking costs an allocation per field on the hot path of every reply; encoding
    // is deterministic, so it runs only again after a failure, to name the field.
    if serde_json::to_writer(&mut *out, &value).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    let mut scratch = Vec::new();
    let result = {
        let mut ser = serde_json::Serializer::new(&mut scratch);
        serde_path_to_error::serialize(&value, &mut ser)
    };
    match result {
        Ok(()) => {
            out.extend_from_slice(&scratch);
            Ok(())
        }
        Err(e) => Err(FieldError::new(
            path_string(e.path()),
            format!("cannot encode as JSON: {}", e.inner()),
        )),
    }
}

/// Appends the proto3 JSON value of one field of `parent` (a message, array, object or scalar;
/// e.g. a string field renders as `"abc"`). An unset or default field renders as its default
/// (`[]`, `{}`, `0`, `""`, the first enum name, or the default message's JSON).
/// On error `out` is left exactly as it was.
pub fn encode_field_value_to(
    parent: &DynamicMessage,
    field: &FieldDescriptor,
    opts: &JsonOptions,
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    let start = out.len();
    let name = if opts.use_proto_names {
        field.name()
    } else {
        field.json_name()
    };
    let so = serialize_options(opts);
    if parent.has_field(field) {
        if pick_field(parent, name, &so, out, start)? {
            return Ok(());
        }
    } else if field.is_list() {
        out.extend_from_slice(b"[]");
        return Ok(());
    } else if field.is_map() {
        out.extend_from_slice(b"{}");
        return Ok(());
    } else if let Kind::Message(m) = field.kind() {
        return encode_message_to(&DynamicMessage::new(m), opts, out);
    }
    // A scalar at its default: have prost-reflect print it (only scalars, so forcing defaults on
    // cannot leak into nested messages).
    let mut tmp = DynamicMessage::new(parent.descriptor());
    if field.supports_presence() {
        tmp.set_field(field, Value::default_value_for_field(field));
    }
    let so = so.skip_default_fields(false);
    if pick_field(&tmp, name, &so, out, start)? {
        Ok(())
    } else {
        Err(FieldError::new(
            field.name(),
            "cannot encode as JSON: field not rendered",
        ))
    }
}

/// Decodes `google.rpc.Status` bytes (the `grpc-status-details-bin` trailer) through `pool` and
/// returns its `details` as a JSON array of proto3 JSON `Any`s (`{"@type": ..., fields}`).
/// A detail whose type is unknown to the pool (or that cannot be rendered) becomes
/// `{"@type": url, "value": "<base64 of the payload>"}`.
/// `None` if `google.rpc.Status` is not in the pool or the bytes do not decode.
pub fn status_details_to_json(
    pool: &DescriptorPool,
    grpc_status_details_bin: &[u8],
) -> Option<serde_json::Value> {
    let desc = pool.get_message_by_name("google.rpc.Status")?;
    let details = desc.get_field_by_name("details")?;
    let status = DynamicMessage::decode(desc, grpc_status_details_bin).ok()?;
    let so = serialize_options(&JsonOptions::default());
    let value = status.get_field(&details);
    let items = value
        .as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_message)
        .map(|any| {
            any.serialize_with_options(serde_json::value::Serializer, &so)
                .unwrap_or_else(|_| raw_any_json(any))
        })
        .collect();
    Some(serde_json::Value::Array(items))
}

fn raw_any_json(any: &DynamicMessage) -> serde_json::Value {
    let url = any
        .get_field_by_name("type_url")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let value = any
        .get_field_by_name("value")
        .and_then(|v| {
            v.as_bytes()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        })
        .unwrap_or_default();
    let mut obj = serde_json::Map::new();
    obj.insert("@type".to_owned(), serde_json::Value::String(url));
    obj.insert("value".to_owned(), serde_json::Value::String(value));
    serde_json::Value::Object(obj)
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with `fields`.

/// The proto spelling of a scalar kind, for error messages.
pub(crate) fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => format!("message `{}`", m.full_name()),
        Kind::Enum(e) => format!("enum `{}`", e.full_name()),
    }
}

/// Inclusive range of an integral kind (enums are int32).
pub(crate) fn int_range(kind: &Kind) -> Option<(i128, i128)> {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Enum(_) => {
            Some((i32::MIN.into(), i32::MAX.into()))
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Some((i64::MIN.into(), i64::MAX.into())),
        Kind::Uint32 | Kind::Fixed32 => Some((0, u32::MAX.into())),
        Kind::Uint64 | Kind::Fixed64 => Some((0, u64::MAX.into())),
        _ => None,
    }
}

/// "value 3000000000 is out of range for int32 (-2147483648 to 2147483647)".
pub(crate) fn out_of_range(
    value: impl fmt::Display,
    kind: &Kind,
    (min, max): (i128, i128),
) -> String {
    format!(
        "value {value} is out of range for {} ({min} to {max})",
        kind_name(kind)
    )
}

/// Enum value names for error messages ("A, B, C").
pub(crate) fn enum_names(e: &prost_reflect::EnumDescriptor) -> String {
    e.values()
        .map(|v| v.name().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Input hygiene.

/// UTF-8, emptiness, depth and top-level shape checks. `Ok(None)` = empty body.
fn prepare<'b>(
    body: &'b [u8],
    opts: &JsonOptions,
    ctx: &Ctx,
    allow_null: bool,
    what: &str,
) -> Result<Option<&'b str>, FieldError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        FieldError::whole(format!(
            "request body is not valid UTF-8 (invalid byte sequence at byte offset {})",
            e.valid_up_to()
        ))
    })?;
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    let Some(&first) = trimmed.as_bytes().first() else {
        return Ok(None);
    };
    check_depth(text.as_bytes(), opts.max_depth)?;
    let expected = match ctx {
        Ctx::Message(_) | Ctx::Map(..) => Some((b'{', "a JSON object")),
        Ctx::List(_) => Some((b'[', "a JSON array")),
        Ctx::Scalar(_) | Ctx::Other => None,
    };
    if let Some((want, want_name)) = expected {
        let found = match first {
            b'{' => Some("an object"),
            b'[' => Some("an array"),
            b'"' => Some("a string"),
            b't' | b'f' if trimmed.starts_with("true") || trimmed.starts_with("false") => {
                Some("a boolean")
            }
            b'n' if trimmed.starts_with("null") => Some("null"),
            b'-' | b'0'..=b'9' => Some("a number"),
            _ => None, // not JSON at all: let the parser report where
        };
        if let Some(found) = found {
            if first != want && !(allow_null && first == b'n') {
                return Err(FieldError::whole(format!(
                    "the request body must be {want_name} for {what}, but it is {found}"
                )));
            }
        }
    }
    Ok(Some(text))
}

/// One pass over the bytes counting `{`/`[` nesting outside strings.
fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), FieldError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(FieldError::whole(format!(
                        "JSON nesting is deeper than the maximum of {max_depth} levels (at byte offset {offset})"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn path_string(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." {
        String::new()
    } else {
        s
    }
}

fn malformed(e: &serde_json::Error) -> FieldError {
    FieldError::whole(format!("malformed JSON: {e}"))
}

fn convert_de_error(e: &serde_json::Error, track: serde_path_to_error::Track) -> FieldError {
    match e.classify() {
        serde_json::error::Category::Data => {
            let text = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let reason = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
            FieldError::new(path_string(&track.path()), reason)
        }
        _ => malformed(e),
    }
}

// ---------------------------------------------------------------------------------------------
// The guard deserializer.

struct Shared {
    deny_unknown: bool,
}

/// What the value being deserialized is, as far as the guard cares.
#[derive(Clone)]
enum Ctx {
    /// An ordinary message: keys are field names.
    Message(MessageDescriptor),
    /// A repeated field's array.
    List(Kind),
    /// A map field's object: key kind, value kind.
    Map(Kind, Kind),
    /// An integral, floating-point or enum scalar (or a numeric wrapper type).
    Scalar(Kind),
    /// Anything else (strings, bools, bytes, Struct, Value, Any, Timestamp...).
    Other,
}

fn wrapper_scalar(full_name: &str) -> Option<Kind> {
    Some(match full_name {
        "google.protobuf.Int32Value" => Kind::Int32,
        "google.protobuf.Int64Value" => Kind::Int64,
        "google.protobuf.UInt32Value" => Kind::Uint32,
        "google.protobuf.UInt64Value" => Kind::Uint64,
        "google.protobuf.FloatValue" => Kind::Float,
        "google.protobuf.DoubleValue" => Kind::Double,
        _ => return None,
    })
}

/// Types prost-reflect maps to something other than a plain object of fields.
pub(crate) fn has_special_json(full_name: &str) -> bool {
    matches!(
        full_name,
        "google.protobuf.Any"
            | "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.Struct"
            | "google.protobuf.Value"
            | "google.protobuf.ListValue"
            | "google.protobuf.Empty"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    ) || wrapper_scalar(full_name).is_some()
}

impl Ctx {
    fn of_kind(kind: &Kind) -> Ctx {
        match kind {
            Kind::Message(m) => match wrapper_scalar(m.full_name()) {
                Some(k) => Ctx::Scalar(k),
                None if has_special_json(m.full_name()) => Ctx::Other,
                None => Ctx::Message(m.clone()),
            },
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => Ctx::Other,
            Kind::String | Kind::Bytes | Kind::Bool => Ctx::Other,
            k => Ctx::Scalar(k.clone()),
        }
    }

    fn of_field(f: &FieldDescriptor) -> Ctx {
        if f.is_map() {
            match f.kind() {
                Kind::Message(entry) => Ctx::Map(
                    entry.map_entry_key_field().kind(),
                    entry.map_entry_value_field().kind(),
                ),
                _ => Ctx::Other,
            }
        } else if f.is_list() {
            Ctx::List(f.kind())
        } else {
            Ctx::of_kind(&f.kind())
        }
    }

    /// Context of an array element or map value.
    fn child(&self) -> Ctx {
        match self {
            Ctx::List(k) | Ctx::Map(_, k) => Ctx::of_kind(k),
            _ => Ctx::Other,
        }
    }
}

/// Extra duty of one guarded value.
enum Hook<'a> {
    None,
    /// This value is an object key: record its text.
    Key(&'a Cell<Option<String>>),
    /// This value belongs to a oneof member: record whether it is present (non-null), and fail
    /// with `conflict` if it is present and another member already was.
    Oneof {
        present: &'a Cell<bool>,
        conflict: Option<String>,
        null_is_value: bool,
    },
}

struct Guard<'a, D> {
    de: D,
    ctx: Ctx,
    hook: Hook<'a>,
    shared: &'a Shared,
}

impl<'a, D> Guard<'a, D> {
    fn root(de: D, ctx: Ctx, shared: &'a Shared) -> Self {
        Guard {
            de,
            ctx,
            hook: Hook::None,
            shared,
        }
    }

    fn split<V, E: de::Error>(self, visitor: V) -> Result<(D, GuardVisitor<'a, V>), E> {
        let hook = match self.hook {
            Hook::Oneof {
                present, conflict, ..
            } => {
                if let Some(conflict) = conflict {
                    return Err(E::custom(conflict));
                }
                present.set(true);
                Hook::None
            }
            other => other,
        };
        Ok((
            self.de,
            GuardVisitor {
                inner: visitor,
                ctx: self.ctx,
                hook,
                shared: self.shared,
            },
        ))
    }
}

macro_rules! guard_forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let (de, v) = self.split(visitor)?;
            de.$method(v)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
    type Error = D::Error;

    guard_forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_seq deserialize_map deserialize_identifier
        deserialize_ignored_any
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // Keep a oneof hook on the visitor: only then do we know whether the value is null.
        let v = GuardVisitor {
            inner: visitor,
            ctx: self.ctx,
            hook: self.hook,
            shared: self.shared,
        };
        self.de.deserialize_option(v)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let (de, v) = self.split(visitor)?;
        de.deserialize_unit_struct(name, v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let (de, v) = self.split(visitor)?;
        de.deserialize_newtype_struct(name, v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let (de, v) = self.split(visitor)?;
        de.deserialize_tuple(len, v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let (de, v) = self.split(visitor)?;
        de.deserialize_tuple_struct(name, len, v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let (de, v) = self.split(visitor)?;
        de.deserialize_struct(name, fields, v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let (de, v) = self.split(visitor)?;
        de.deserialize_enum(name, variants, v)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

struct GuardVisitor<'a, V> {
    inner: V,
    ctx: Ctx,
    hook: Hook<'a>,
    shared: &'a Shared,
}

impl<V> GuardVisitor<'_, V> {
    fn record_key(&self, s: &str) {
        if let Hook::Key(slot) = &self.hook {
            slot.set(Some(s.to_owned()));
        }
    }

    fn check_int<E: de::Error>(&self, v: i128) -> Result<(), E> {
        if let Ctx::Scalar(kind) = &self.ctx {
            if let Some(range) = int_range(kind) {
                if v < range.0 || v > range.1 {
                    return Err(E::custom(out_of_range(v, kind, range)));
                }
            }
        }
        Ok(())
    }

    fn check_f64<E: de::Error>(&self, v: f64) -> Result<(), E> {
        let Ctx::Scalar(kind) = &self.ctx else {
            return Ok(());
        };
        if let Some(range) = int_range(kind) {
            if !v.is_finite() || v.fract() != 0.0 {
                return Err(E::custom(format!(
                    "{v} is not an integer ({} expected)",
                    kind_name(kind)
                )));
            }
            // Compare in f64: the bounds round up at most, and `as` saturates.
            if v < range.0 as f64 || v > range.1 as f64 {
                return Err(E::custom(out_of_range(v, kind, range)));
            }
        } else if matches!(kind, Kind::Float) && v.is_finite() && v.abs() > f64::from(f32::MAX) {
            return Err(E::custom(format!("value {v} is out of range for float")));
        }
        Ok(())
    }

    fn check_str<E: de::Error>(&self, s: &str) -> Result<(), E> {
        let Ctx::Scalar(kind) = &self.ctx else {
            return Ok(());
        };
        match kind {
            Kind::Enum(e) => {
                if e.get_value_by_name(s).is_none() && self.shared.deny_unknown {
                    return Err(E::custom(format!(
                        "unknown value \"{s}\" for enum `{}` (expected one of {} or a number)",
                        e.full_name(),
                        enum_names(e)
                    )));
                }
            }
            Kind::Float | Kind::Double => {
                if !matches!(s, "NaN" | "Infinity" | "-Infinity") && s.parse::<f64>().is_err() {
                    return Err(E::custom(format!(
                        "\"{s}\" is not a valid {}: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"",
                        kind_name(kind)
                    )));
                }
            }
            _ => {
                if let Some(range) = int_range(kind) {
                    match s.parse::<i128>() {
                        Ok(n) if n < range.0 || n > range.1 => {
                            return Err(E::custom(out_of_range(s, kind, range)))
                        }
                        Ok(_) => {}
                        Err(_) => {
                            return Err(E::custom(format!(
                                "\"{s}\" is not a valid {}: expected a decimal integer",
                                kind_name(kind)
                            )))
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A JSON null reached a oneof member.
    fn on_null<E: de::Error>(&self) -> Result<(), E> {
        if let Hook::Oneof {
            present,
            conflict,
            null_is_value: true,
        } = &self.hook
        {
            if let Some(conflict) = conflict {
                return Err(E::custom(conflict));
            }
            present.set(true);
        }
        Ok(())
    }
}

macro_rules! visit_forward {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

macro_rules! visit_int {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.check_int(i128::from(v))?;
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for GuardVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit_forward! {
        visit_bool: bool, visit_u128: u128, visit_f32: f32, visit_char: char,
        visit_bytes: &[u8], visit_borrowed_bytes: &'de [u8], visit_byte_buf: Vec<u8>
    }

    visit_int! {
        visit_i8: i8, visit_i16: i16, visit_i32: i32, visit_i64: i64, visit_i128: i128,
        visit_u8: u8, visit_u16: u16, visit_u32: u32, visit_u64: u64
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.check_f64(v)?;
        self.inner.visit_f64(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.record_key(v);
        self.check_str(v)?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.record_key(v);
        self.check_str(v)?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.record_key(&v);
        self.check_str(&v)?;
        self.inner.visit_string(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.on_null()?;
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.on_null()?;
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        if let Hook::Oneof {
            present, conflict, ..
        } = self.hook
        {
            if let Some(conflict) = conflict {
                return Err(de::Error::custom(conflict));
            }
            present.set(true);
        }
        self.inner
            .visit_some(Guard::root(deserializer, self.ctx, self.shared))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .visit_newtype_struct(Guard::root(deserializer, self.ctx, self.shared))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(GuardSeq {
            seq,
            ctx: self.ctx.child(),
            shared: self.shared,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(GuardMap {
            map,
            ctx: self.ctx,
            shared: self.shared,
            keys: HashSet::new(),
            fields: Vec::new(),
            oneofs: Vec::new(),
            pending: None,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

struct GuardSeed<'a, S> {
    seed: S,
    ctx: Ctx,
    hook: Hook<'a>,
    shared: &'a Shared,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for GuardSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Guard {
            de: deserializer,
            ctx: self.ctx,
            hook: self.hook,
            shared: self.shared,
        })
    }
}

struct GuardSeq<'a, A> {
    seq: A,
    ctx: Ctx,
    shared: &'a Shared,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for GuardSeq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.seq.next_element_seed(GuardSeed {
            seed,
            ctx: self.ctx.clone(),
            hook: Hook::None,
            shared: self.shared,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

struct GuardMap<'a, A> {
    map: A,
    ctx: Ctx,
    shared: &'a Shared,
    /// Keys seen in this object, verbatim (but those of known message fields: see `fields`).
    keys: HashSet<String>,
    /// (field number, key as sent) for message objects.
    fields: Vec<(u32, String)>,
    /// (oneof full name, key as sent) of oneof members present with a non-null value.
    oneofs: Vec<(String, String)>,
    /// The field named by the key just read.
    pending: Option<(FieldDescriptor, String)>,
}

impl<A> GuardMap<'_, A> {
    fn check_key(&mut self, key: String) -> Result<(), String> {
        if self.keys.contains(&key) {
            return Err(duplicate_key(&key));
        }
        match &self.ctx {
            Ctx::Message(desc) => {
                let field = desc
                    .get_field_by_json_name(&key)
                    .or_else(|| desc.get_field_by_name(&key));
                if let Some(field) = field {
                    if let Some((_, prev)) = self.fields.iter().find(|(n, _)| *n == field.number())
                    {
                        if *prev == key {
                            return Err(duplicate_key(&key));
                        }
                        return Err(format!(
                            "field `{}` is given twice, as `{prev}` and as `{key}`",
                            field.name()
                        ));
                    }
                    self.fields.push((field.number(), key.clone()));
                    self.pending = Some((field, key));
                    // A known field's key is remembered in `fields`, not in `keys`.
                    return Ok(());
                } else if self.shared.deny_unknown
                    && desc.get_extension_by_json_name(&key).is_none()
                {
                    let known = desc
                        .fields()
                        .map(|f| f.json_name().to_owned())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(format!(
                        "unknown field `{key}` in message `{}` (known fields: {known})",
                        desc.full_name()
                    ));
                }
            }
            Ctx::Map(key_kind, _) => check_map_key(key_kind, &key)?,
            _ => {}
        }
        self.keys.insert(key);
        Ok(())
    }
}

fn duplicate_key(key: &str) -> String {
    format!("duplicate key `{key}`: each key may appear only once in a JSON object")
}

/// JSON map keys are strings; integral and bool keys must parse.
fn check_map_key(kind: &Kind, key: &str) -> Result<(), String> {
    let ok = match kind {
        Kind::Bool => matches!(key, "true" | "false"),
        k => match int_range(k) {
            Some((min, max)) => key.parse::<i128>().is_ok_and(|n| n >= min && n <= max),
            None => true,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "map key \"{key}\" is not a valid {}",
            kind_name(kind)
        ))
    }
}

fn real_oneof(field: &FieldDescriptor) -> Option<prost_reflect::OneofDescriptor> {
    field.containing_oneof().filter(|o| !o.is_synthetic())
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for GuardMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.pending = None;
        let slot = Cell::new(None);
        let key = self.map.next_key_seed(GuardSeed {
            seed,
            ctx: Ctx::Other,
            hook: Hook::Key(&slot),
            shared: self.shared,
        })?;
        if key.is_some() {
            if let Some(text) = slot.take() {
                // Raised after the key was read, so the error path ends with this key.
                self.check_key(text).map_err(de::Error::custom)?;
            }
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let Some((field, key)) = self.pending.take() else {
            return self.map.next_value_seed(GuardSeed {
                seed,
                ctx: self.ctx.child(),
                hook: Hook::None,
                shared: self.shared,
            });
        };
        let ctx = Ctx::of_field(&field);
        let Some(oneof) = real_oneof(&field) else {
            return self.map.next_value_seed(GuardSeed {
                seed,
                ctx,
                hook: Hook::None,
                shared: self.shared,
            });
        };
        let conflict = self
            .oneofs
            .iter()
            .find(|(name, _)| name == oneof.full_name())
            .map(|(_, prev)| {
                format!(
                    "`{prev}` and `{key}` are both set, but they belong to oneof `{}` and at most one of its fields may be set",
                    oneof.name()
                )
            });
        let null_is_value = match field.kind() {
            Kind::Message(m) => m.full_name() == "google.protobuf.Value",
            Kind::Enum(e) => e.full_name() == "google.protobuf.NullValue",
            _ => false,
        };
        let present = Cell::new(false);
        // The conflict is reported from inside the value's deserializer, so that the error
        // path ends with this key.
        let value = self.map.next_value_seed(GuardSeed {
            seed,
            ctx,
            hook: Hook::Oneof {
                present: &present,
                conflict,
                null_is_value,
            },
            shared: self.shared,
        })?;
        if present.get() {
            self.oneofs.push((oneof.full_name().to_owned(), key));
        }
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A deserializer that looks like the one-entry object `{key: value}`.
struct SingleField<'k, D> {
    key: &'k str,
    value: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for SingleField<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_map(SingleFieldAccess {
            key: Some(self.key),
            value: Some(self.value),
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct SingleFieldAccess<'k, D> {
    key: Option<&'k str>,
    value: Option<D>,
}

impl<'de, D: Deserializer<'de>> MapAccess<'de> for SingleFieldAccess<'_, D> {
    type Error = D::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, D::Error> {
        match self.key.take() {
            Some(key) => seed
                .deserialize(de::value::StrDeserializer::<D::Error>::new(key))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, D::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(de::Error::custom("internal error: value read twice")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output.

fn serialize_options(opts: &JsonOptions) -> SerializeOptions {
    SerializeOptions::new()
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false)
        .use_proto_field_name(opts.use_proto_names)
        .skip_default_fields(!opts.emit_unpopulated)
}

struct WithOptions<'a> {
    msg: &'a DynamicMessage,
    opts: &'a SerializeOptions,
}

impl Serialize for WithOptions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.msg.serialize_with_options(serializer, self.opts)
    }
}

/// Serializes `parent`, writing to `out` only the value of the entry named `name`.
/// `Ok(false)` if prost-reflect did not emit that entry.
fn pick_field(
    parent: &DynamicMessage,
    name: &str,
    so: &SerializeOptions,
    out: &mut Vec<u8>,
    start: usize,
) -> Result<bool, FieldError> {
    let found = Cell::new(false);
    let mut inner_path = None;
    let result = {
        let mut ser = serde_json::Serializer::new(&mut *out);
        let pick = Pick {
            name,
            out: &mut ser,
            found: &found,
            path: &mut inner_path,
        };
        parent.serialize_with_options(pick, so)
    };
    match result {
        Ok(()) => Ok(found.get()),
        Err(e) => {
            out.truncate(start);
            Err(FieldError::new(
                inner_path.unwrap_or_default(),
                format!("cannot encode as JSON: {e}"),
            ))
        }
    }
}

struct Pick<'a, W> {
    name: &'a str,
    out: &'a mut serde_json::Serializer<W>,
    found: &'a Cell<bool>,
    path: &'a mut Option<String>,
}

fn not_an_object() -> serde_json::Error {
    ser::Error::custom("the selected field's parent does not render as a JSON object")
}

macro_rules! pick_reject {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, _v: $ty) -> Result<(), serde_json::Error> {
            Err(not_an_object())
        }
    )*};
}

impl<'a, W: io::Write> Serializer for Pick<'a, W> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<(), serde_json::Error>;
    type SerializeTuple = Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = Impossible<(), serde_json::Error>;
    type SerializeMap = PickMap<'a, W>;
    type SerializeStruct = Impossible<(), serde_json::Error>;
    type SerializeStructVariant = Impossible<(), serde_json::Error>;

    pick_reject! {
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8], serialize_unit_struct: &'static str
    }

    fn serialize_none(self) -> Result<(), serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _v: &T) -> Result<(), serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_unit(self) -> Result<(), serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<(), serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _v: &T,
    ) -> Result<(), serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _v: &T,
    ) -> Result<(), serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<PickMap<'a, W>, serde_json::Error> {
        Ok(PickMap {
            pick: self,
            selected: false,
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, serde_json::Error> {
        Err(not_an_object())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, serde_json::Error> {
        Err(not_an_object())
    }
}

struct PickMap<'a, W> {
    pick: Pick<'a, W>,
    selected: bool,
}

impl<W: io::Write> SerializeMap for PickMap<'_, W> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), serde_json::Error> {
        let key = serde_json::to_value(key)?;
        self.selected = !self.pick.found.get() && key.as_str() == Some(self.pick.name);
        Ok(())
    }

    fn serialize_value<T: ?Sized + Serialize>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        if !self.selected {
            return Ok(());
        }
        self.selected = false;
        self.pick.found.set(true);
        serde_path_to_error::serialize(value, &mut *self.pick.out).map_err(|e| {
            let inner = path_string(e.path());
            *self.pick.path = Some(if inner.is_empty() {
                self.pick.name.to_owned()
            } else if inner.starts_with('[') {
                format!("{}{inner}", self.pick.name)
            } else {
                format!("{}.{inner}", self.pick.name)
            });
            e.into_inner()
        })
    }

    fn end(self) -> Result<(), serde_json::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message as _;

    fn pool() -> &'static DescriptorPool {
        crate::transcode::test_pool()
    }

    fn desc(name: &str) -> MessageDescriptor {
        let full = if name.contains('.') {
            name.to_owned()
        } else {
            format!("omnigate.test.{name}")
        };
        pool().get_message_by_name(&full).unwrap()
    }

    type Want<'a> = Result<&'a str, (&'a str, &'a str)>;

    /// Decodes `body` as `ty`; `Ok(json)` = re-encodes (default options) to this JSON,
    /// `Err((field, part))` = fails at exactly `field` with a reason containing `part`.
    fn check(ty: &str, body: impl AsRef<[u8]>, want: Want) {
        check_with(&JsonOptions::default(), ty, body, want)
    }

    fn check_with(opts: &JsonOptions, ty: &str, body: impl AsRef<[u8]>, want: Want) {
        let body = body.as_ref();
        let shown = String::from_utf8_lossy(body);
        match (decode_message(&desc(ty), body, opts), want) {
            (Ok(msg), Ok(expected)) => {
                let out = encode_message(&msg, &JsonOptions::default()).unwrap();
                let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
                let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
                assert_eq!(got, expected, "body {shown}");
            }
            (Err(e), Err((field, part))) => {
                assert_eq!(e.field, field, "body {shown}: {e}");
                assert!(
                    e.reason.contains(part),
                    "body {shown}: `{e}` lacks `{part}`"
                );
            }
            (got, want) => panic!("body {shown}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn decode_accepts() {
        check("Book", "", Ok("{}"));
        check("Book", " \r\n\t ", Ok("{}"));
        check("Book", "{}", Ok("{}"));
        check("Book", r#"{"name":"b1","title":"T","pageCount":5}"#, Ok(r#"{"name":"b1","title":"T","pageCount":5}"#));
        check("Book", r#"{"page_count":5}"#, Ok(r#"{"pageCount":5}"#));
        check("Book", r#"{"label":"x"}"#, Ok(r#"{"label":"x"}"#));
        check("Book", r#"{"display_name":"x"}"#, Ok(r#"{"label":"x"}"#));
        check("Book", r#"{"author":{"name":"n","authorId":7}}"#, Ok(r#"{"author":{"name":"n","authorId":"7"}}"#));
        check("Book", r#"{"author":{"author_id":"-7"}}"#, Ok(r#"{"author":{"authorId":"-7"}}"#));
        check("Book", r#"{"genre":"FICTION"}"#, Ok(r#"{"genre":"FICTION"}"#));
        check("Book", r#"{"genre":2}"#, Ok(r#"{"genre":"SCIENCE"}"#));
        check("Book", r#"{"genre":null,"author":null}"#, Ok("{}"));
        check("Book", r#"{"tags":["a","b"],"labels":{"k":"v"}}"#, Ok(r#"{"tags":["a","b"],"labels":{"k":"v"}}"#));
        check("Book", r#"{"coAuthors":[{"name":"a"},{}]}"#, Ok(r#"{"coAuthors":[{"name":"a"},{}]}"#));
        check("Book", r#"{"isbn":"x"}"#, Ok(r#"{"isbn":"x"}"#));
        check("Book", r#"{"isbn":null,"ean":"5"}"#, Ok(r#"{"ean":"5"}"#));
        check("Book", r#"{"ean":5,"isbn":null}"#, Ok(r#"{"ean":"5"}"#));
        check("Book", r#"{"ghostWriter":{}}"#, Ok(r#"{"ghostWriter":{}}"#));
        check("Book", r#"{"edition":0}"#, Ok(r#"{"edition":0}"#));
        check("Book", r#"{"pageCount":1e2}"#, Ok(r#"{"pageCount":100}"#));
        check("Book", r#"{"pageCount":5.0}"#, Ok(r#"{"pageCount":5}"#));
        check("Book", r#"{"pageCount":"-12"}"#, Ok(r#"{"pageCount":-12}"#));
        check("Book", r#"{"publishTime":"2024-01-02T03:04:05.5Z"}"#, Ok(r#"{"publishTime":"2024-01-02T03:04:05.500Z"}"#));
        check("Book", r#"{"title":"a \"quoted\" {[ text"}"#, Ok(r#"{"title":"a \"quoted\" {[ text"}"#));
        check("Scalars", r#"{"fDouble":1.5,"fFloat":"NaN","fInt32":-1,"fInt64":"-9223372036854775808","fUint32":4294967295,"fUint64":"18446744073709551615"}"#, Ok(r#"{"fDouble":1.5,"fFloat":"NaN","fInt32":-1,"fInt64":"-9223372036854775808","fUint32":4294967295,"fUint64":"18446744073709551615"}"#));
        check("Scalars", r#"{"fSint32":-5,"fSint64":"-6","fFixed32":7,"fFixed64":"8","fSfixed32":-9,"fSfixed64":-10}"#, Ok(r#"{"fSint32":-5,"fSint64":"-6","fFixed32":7,"fFixed64":"8","fSfixed32":-9,"fSfixed64":"-10"}"#));
        check("Scalars", r#"{"fBool":true,"fString":"s","fBytes":"aGk=","fEnum":"SCIENCE"}"#, Ok(r#"{"fBool":true,"fString":"s","fBytes":"aGk=","fEnum":"SCIENCE"}"#));
        check("Scalars", r#"{"fBytes":"-_8"}"#, Ok(r#"{"fBytes":"+/8="}"#));
        check("Scalars", r#"{"fBytes":"aGk"}"#, Ok(r#"{"fBytes":"aGk="}"#));
        check("Scalars", r#"{"fDouble":"Infinity","fFloat":"-Infinity"}"#, Ok(r#"{"fDouble":"Infinity","fFloat":"-Infinity"}"#));
        check("Scalars", r#"{"rInt32":[1,"2"],"rEnum":["FICTION",2],"rBytes":["AA=="]}"#, Ok(r#"{"rInt32":[1,2],"rEnum":["FICTION","SCIENCE"],"rBytes":["AA=="]}"#));
        check("Scalars", r#"{"mInt":{"-1":"a"},"mBool":{"true":"1"},"mEnum":{"k":"FICTION"}}"#, Ok(r#"{"mInt":{"-1":"a"},"mBool":{"true":"1"},"mEnum":{"k":"FICTION"}}"#));
        check("Scalars", r#"{"mMsg":{"k":{"name":"n"}},"mTs":{"1":"1970-01-01T00:00:01Z"}}"#, Ok(r#"{"mMsg":{"k":{"name":"n"}},"mTs":{"1":"1970-01-01T00:00:01Z"}}"#));
        check("WellKnown", r#"{"ts":"2024-01-02T03:04:05+01:00","dur":"1.5s","mask":"title,author.authorId"}"#, Ok(r#"{"ts":"2024-01-02T02:04:05Z","dur":"1.500s","mask":"title,author.authorId"}"#));
        check("WellKnown", r#"{"i32w":5,"i64w":"6","u32w":7,"u64w":8,"fw":1.5,"dw":"2.5","bw":false,"sw":"","byw":"aGk="}"#, Ok(r#"{"i32w":5,"i64w":"6","u32w":7,"u64w":"8","fw":1.5,"dw":2.5,"bw":false,"sw":"","byw":"aGk="}"#));
        check("WellKnown", r#"{"st":{"a":[1,"x",null,{"b":true}]},"val":null,"lv":[1,{}]}"#, Ok(r#"{"st":{"a":[1.0,"x",null,{"b":true}]},"val":null,"lv":[1.0,{}]}"#));
        check("WellKnown", r#"{"any":{"@type":"type.googleapis.com/omnigate.test.Author","name":"n"}}"#, Ok(r#"{"any":{"@type":"type.googleapis.com/omnigate.test.Author","name":"n"}}"#));
        check("WellKnown", r#"{"any":{"name":"n","@type":"type.googleapis.com/omnigate.test.Author"}}"#, Ok(r#"{"any":{"@type":"type.googleapis.com/omnigate.test.Author","name":"n"}}"#));
        check("WellKnown", r#"{"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"2s"}}"#, Ok(r#"{"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"2s"}}"#));
        check("WellKnown", r#"{"empty":{},"rTs":["1970-01-01T00:00:00Z"]}"#, Ok(r#"{"empty":{},"rTs":["1970-01-01T00:00:00Z"]}"#));
        check("WellKnown", r#"{"choiceText":"x","choiceValue":null}"#, Err(("choiceValue", "oneof `choice`")));
        check("WellKnown", r#"{"choiceText":null,"choiceValue":1}"#, Ok(r#"{"choiceValue":1.0}"#));
        check("google.protobuf.Timestamp", r#""1970-01-01T00:00:00Z""#, Ok(r#""1970-01-01T00:00:00Z""#));
        check("google.protobuf.Int32Value", "7", Ok("7"));
        check("google.protobuf.Struct", r#"{"k":1}"#, Ok(r#"{"k":1.0}"#));
    }

    #[test]
    #[rustfmt::skip]
    fn decode_rejects_malformed_input() {
        check("Book", b"{\"title\":\"\xff\"}", Err(("", "not valid UTF-8 (invalid byte sequence at byte offset 10)")));
        check("Book", r#"{"title":"#, Err(("", "malformed JSON: EOF while parsing a value at line 1 column 9")));
        check("Book", r#"{"title":"a",}"#, Err(("", "malformed JSON: trailing comma at line 1 column 14")));
        check("Book", "{\n\"title\" 1}", Err(("", "malformed JSON: expected `:` at line 2 column 9")));
        check("Book", r#"{} x"#, Err(("", "malformed JSON: trailing characters at line 1 column 4")));
        check("Book", r#"{}{}"#, Err(("", "malformed JSON: trailing characters")));
        check("Book", "nope", Err(("", "malformed JSON: expected ident")));
        check("Book", "[]", Err(("", "must be a JSON object for message `omnigate.test.Book`, but it is an array")));
        check("Book", r#""x""#, Err(("", "but it is a string")));
        check("Book", "5", Err(("", "but it is a number")));
        check("Book", "true", Err(("", "but it is a boolean")));
        check("Book", "null", Err(("", "but it is null")));
        check("google.protobuf.Timestamp", "{}", Err(("", "invalid type: map")));
    }

    #[test]
    #[rustfmt::skip]
    fn decode_rejects_bad_values_with_paths() {
        check("Book", r#"{"pageCount":"x"}"#, Err(("pageCount", "\"x\" is not a valid int32: expected a decimal integer")));
        check("Book", r#"{"pageCount":true}"#, Err(("pageCount", "invalid type: boolean `true`")));
        check("Book", r#"{"title":5}"#, Err(("title", "invalid type: integer `5`, expected a string")));
        check("Book", r#"{"author":"x"}"#, Err(("author", "invalid type: string \"x\"")));
        check("Book", r#"{"author":{"name":{}}}"#, Err(("author.name", "invalid type: map")));
        check("Book", r#"{"tags":"x"}"#, Err(("tags", "invalid type: string \"x\", expected a list")));
        check("Book", r#"{"tags":["a",1]}"#, Err(("tags[1]", "invalid type: integer `1`")));
        check("Book", r#"{"labels":{"a":1}}"#, Err(("labels.a", "invalid type: integer `1`")));
        check("Book", r#"{"coAuthors":[{},{"authorId":"x"}]}"#, Err(("coAuthors[1].authorId", "\"x\" is not a valid int64")));
        check("Book", r#"{"pageCount":3000000000}"#, Err(("pageCount", "value 3000000000 is out of range for int32 (-2147483648 to 2147483647)")));
        check("Book", r#"{"pageCount":-2147483649}"#, Err(("pageCount", "out of range for int32")));
        check("Book", r#"{"pageCount":"3000000000"}"#, Err(("pageCount", "out of range for int32")));
        check("Book", r#"{"pageCount":1e10}"#, Err(("pageCount", "out of range for int32")));
        check("Book", r#"{"pageCount":1.5}"#, Err(("pageCount", "1.5 is not an integer (int32 expected)")));
        check("Scalars", r#"{"fUint32":-1}"#, Err(("fUint32", "value -1 is out of range for uint32")));
        check("Scalars", r#"{"fUint32":4294967296}"#, Err(("fUint32", "out of range for uint32")));
        check("Scalars", r#"{"fInt64":"9223372036854775808"}"#, Err(("fInt64", "out of range for int64")));
        check("Scalars", r#"{"fInt64":"1.5"}"#, Err(("fInt64", "not a valid int64")));
        check("Scalars", r#"{"fUint64":"-1"}"#, Err(("fUint64", "out of range for uint64")));
        check("Scalars", r#"{"fFixed32":0.5}"#, Err(("fFixed32", "not an integer (fixed32 expected)")));
        check("Scalars", r#"{"fFloat":1e39}"#, Err(("fFloat", "out of range for float")));
        check("Scalars", r#"{"fDouble":"abc"}"#, Err(("fDouble", "\"abc\" is not a valid double")));
        check("Scalars", r#"{"fBool":"true"}"#, Err(("fBool", "expected a boolean")));
        check("Scalars", r#"{"fBool":1}"#, Err(("fBool", "expected a boolean")));
        check("Scalars", r#"{"fBytes":"!!"}"#, Err(("fBytes", "invalid base64")));
        check("Scalars", r#"{"fBytes":5}"#, Err(("fBytes", "invalid type: integer")));
        check("Scalars", r#"{"fEnum":"HORROR"}"#, Err(("fEnum", "unknown value \"HORROR\" for enum `omnigate.test.Genre` (expected one of GENRE_UNSPECIFIED, FICTION, SCIENCE or a number)")));
        check("Scalars", r#"{"fEnum":4294967296}"#, Err(("fEnum", "out of range")));
        check("Scalars", r#"{"rEnum":["FICTION","X"]}"#, Err(("rEnum[1]", "unknown value \"X\"")));
        check("Scalars", r#"{"mEnum":{"k":"X"}}"#, Err(("mEnum.k", "unknown value \"X\"")));
        check("Scalars", r#"{"mInt":{"x":"a"}}"#, Err(("mInt.x", "map key \"x\" is not a valid int32")));
        check("Scalars", r#"{"mInt":{"2147483648":"a"}}"#, Err(("mInt.2147483648", "map key \"2147483648\" is not a valid int32")));
        check("Scalars", r#"{"mBool":{"yes":"1"}}"#, Err(("mBool.yes", "not a valid bool")));
        check("Scalars", r#"{"mMsg":{"k":{"nope":1}}}"#, Err(("mMsg.k.nope", "unknown field `nope`")));
        check("WellKnown", r#"{"ts":"2024-13-01"}"#, Err(("ts", "invalid rfc3339 timestamp")));
        check("WellKnown", r#"{"ts":"2024-01-01T00:00:00"}"#, Err(("ts", "invalid rfc3339 timestamp")));
        check("WellKnown", r#"{"ts":5}"#, Err(("ts", "invalid type: integer")));
        check("WellKnown", r#"{"dur":"5"}"#, Err(("dur", "failed to parse duration")));
        check("WellKnown", r#"{"dur":"99999999999999s"}"#, Err(("dur", "duration")));
        check("WellKnown", r#"{"mask":"page_count"}"#, Err(("mask", "invalid field mask")));
        check("WellKnown", r#"{"i32w":3000000000}"#, Err(("i32w", "out of range for int32")));
        check("WellKnown", r#"{"bw":"x"}"#, Err(("bw", "expected a boolean")));
        check("WellKnown", r#"{"any":{"@type":"type.googleapis.com/no.Such","x":1}}"#, Err(("any", "message 'no.Such' not found")));
        check("WellKnown", r#"{"any":{"name":"n"}}"#, Err(("any", "expected '@type' field")));
        check("WellKnown", r#"{"empty":{"a":1}}"#, Err(("empty", "unexpected value")));
        check("WellKnown", r#"{"lv":{}}"#, Err(("lv", "invalid type: map")));
    }

    #[test]
    #[rustfmt::skip]
    fn decode_rejects_structural_problems() {
        check("Book", r#"{"nope":1}"#, Err(("nope", "unknown field `nope` in message `omnigate.test.Book` (known fields: name, title, pageCount")));
        check("Book", r#"{"author":{"nme":"x"}}"#, Err(("author.nme", "unknown field `nme` in message `omnigate.test.Author`")));
        check("Book", r#"{"coAuthors":[{"x":1}]}"#, Err(("coAuthors[0].x", "unknown field `x`")));
        check("Book", r#"{"PageCount":1}"#, Err(("PageCount", "unknown field")));
        check("Book", r#"{"isbn":"a","ean":"1"}"#, Err(("ean", "`isbn` and `ean` are both set, but they belong to oneof `identifier`")));
        check("Book", r#"{"ghostWriter":{},"isbn":"a"}"#, Err(("isbn", "`ghostWriter` and `isbn` are both set")));
        check("Book", r#"{"title":"a","title":"b"}"#, Err(("title", "duplicate key `title`")));
        check("Book", r#"{"author":{"name":"a","name":"b"}}"#, Err(("author.name", "duplicate key `name`")));
        check("Book", r#"{"labels":{"a":"1","a":"2"}}"#, Err(("labels.a", "duplicate key `a`")));
        check("Book", r#"{"nope":1,"nope":2}"#, Err(("nope", "unknown field")));
        check("WellKnown", r#"{"st":{"a":1,"a":2}}"#, Err(("st.a", "duplicate key `a`")));
        check("WellKnown", r#"{"val":{"x":[{"y":1,"y":1}]}}"#, Err(("val.x[0].y", "duplicate key `y`")));
        check("Book", r#"{"page_count":1,"pageCount":2}"#, Err(("pageCount", "field `page_count` is given twice, as `page_count` and as `pageCount`")));
        check("Book", r#"{"label":"a","display_name":"b"}"#, Err(("display_name", "given twice")));
    }

    #[test]
    #[rustfmt::skip]
    fn decode_options() {
        let lenient = JsonOptions {
            ignore_unknown_fields: true,
            ..JsonOptions::default()
        };
        check_with(&lenient, "Book", r#"{"nope":{"deep":[1]},"title":"t"}"#, Ok(r#"{"title":"t"}"#));
        check_with(&lenient, "Book", r#"{"author":{"nme":"x"}}"#, Ok(r#"{"author":{}}"#));
        check_with(&lenient, "Book", r#"{"genre":"HORROR"}"#, Ok("{}"));
        check_with(&lenient, "Book", r#"{"nope":1,"nope":2}"#, Err(("nope", "duplicate key")));
        let shallow = JsonOptions {
            max_depth: 3,
            ..JsonOptions::default()
        };
        check_with(&shallow, "Deep", r#"{"child":{"child":{"v":1}}}"#, Ok(r#"{"child":{"child":{"v":1}}}"#));
        check_with(&shallow, "Deep", r#"{"child":{"child":{"child":{}}}}"#, Err(("", "JSON nesting is deeper than the maximum of 3 levels (at byte offset 27)")));
        check_with(&shallow, "Deep", r#"{"children":[{"children":[]}]}"#, Err(("", "deeper than the maximum of 3")));
        check_with(&shallow, "Book", r#"{"title":"[[[[{{{{\"[[["}"#, Ok(r#"{"title":"[[[[{{{{\"[[["}"#));
        let deep = |n: usize| format!("{}{{}}{}", r#"{"child":"#.repeat(n), "}".repeat(n));
        check("Deep", deep(63), Ok(&deep(63)));
        check("Deep", deep(64), Err(("", "deeper than the maximum of 64 levels")));
    }

    #[test]
    #[rustfmt::skip]
    fn decode_field_values() {
        let book = desc("Book");
        let field = |n: &str| book.get_field_by_name(n).unwrap();
        let opts = JsonOptions::default();
        let tags = decode_field_value(&field("tags"), br#"["a","b"]"#, &opts).unwrap().unwrap();
        assert_eq!(tags, Value::List(vec![Value::String("a".into()), Value::String("b".into())]));
        let title = decode_field_value(&field("title"), br#""T""#, &opts).unwrap();
        assert_eq!(title, Some(Value::String("T".into())));
        assert_eq!(decode_field_value(&field("title"), b"", &opts).unwrap(), None);
        assert_eq!(decode_field_value(&field("author"), b"null", &opts).unwrap(), None);
        let author = decode_field_value(&field("author"), br#"{"name":"n"}"#, &opts).unwrap().unwrap();
        assert_eq!(author.as_message().unwrap().get_field_by_name("name").unwrap().as_str(), Some("n"));
        let err = decode_field_value(&field("tags"), br#"["a",2]"#, &opts).unwrap_err();
        assert_eq!((err.field.as_str(), err.reason.contains("invalid type")), ("[1]", true));
        let err = decode_field_value(&field("tags"), br#"{"a":1}"#, &opts).unwrap_err();
        assert_eq!(err, FieldError::new("", "the request body must be a JSON array for field `tags`, but it is an object"));
        let err = decode_field_value(&field("author"), br#"{"name":"a","name":"b"}"#, &opts).unwrap_err();
        assert_eq!(err.field, "name");
        let err = decode_field_value(&field("labels"), br#"{"a":"1","a":"1"}"#, &opts).unwrap_err();
        assert_eq!(err.field, "a");
        let err = decode_field_value(&field("page_count"), br#""x""#, &opts).unwrap_err();
        assert_eq!(err.field, "");
        assert!(err.reason.contains("not a valid int32"), "{err}");
    }

    fn author(name: &str, id: i64) -> DynamicMessage {
        let mut m = DynamicMessage::new(desc("Author"));
        m.set_field_by_name("name", Value::String(name.into()));
        m.set_field_by_name("author_id", Value::I64(id));
        m
    }

    fn encode_check(msg: &DynamicMessage, opts: &JsonOptions, want: &str) {
        let out = encode_message(msg, opts).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    #[rustfmt::skip]
    fn encode() {
        let d = JsonOptions::default();
        let proto = JsonOptions { use_proto_names: true, ..JsonOptions::default() };
        let all = JsonOptions { emit_unpopulated: true, ..JsonOptions::default() };
        let book = decode_message(&desc("Book"), br#"{"pageCount":3,"author":{"authorId":"9"},"genre":1,"label":"L"}"#, &d).unwrap();
        encode_check(&book, &d, r#"{"pageCount":3,"author":{"authorId":"9"},"genre":"FICTION","label":"L"}"#);
        encode_check(&book, &proto, r#"{"page_count":3,"author":{"author_id":"9"},"genre":"FICTION","display_name":"L"}"#);
        encode_check(&DynamicMessage::new(desc("Book")), &all, r#"{"name":"","title":"","pageCount":0,"tags":[],"genre":"GENRE_UNSPECIFIED","labels":{},"coAuthors":[],"label":""}"#);
        encode_check(&author("a", i64::MAX), &d, r#"{"name":"a","authorId":"9223372036854775807"}"#);
        let mut out = b"data: ".to_vec();
        encode_message_to(&author("x", 1), &d, &mut out).unwrap();
        out.push(b'\n');
        encode_message_to(&author("y", 2), &d, &mut out).unwrap();
        assert_eq!(out, b"data: {\"name\":\"x\",\"authorId\":\"1\"}\n{\"name\":\"y\",\"authorId\":\"2\"}");
    }

    #[test]
    #[rustfmt::skip]
    fn encode_failures_leave_buffer_intact() {
        let wk = desc("WellKnown");
        let mut any = DynamicMessage::new(desc("google.protobuf.Any"));
        any.set_field_by_name("type_url", Value::String("type.googleapis.com/no.Such".into()));
        let mut msg = DynamicMessage::new(wk.clone());
        msg.set_field_by_name("any", Value::Message(any));
        let mut out = b"prefix".to_vec();
        let err = encode_message_to(&msg, &JsonOptions::default(), &mut out).unwrap_err();
        assert_eq!(out, b"prefix");
        assert_eq!(err, FieldError::new("any", "cannot encode as JSON: message 'no.Such' not found"));
        let mut ts = DynamicMessage::new(desc("google.protobuf.Timestamp"));
        ts.set_field_by_name("seconds", Value::I64(i64::MAX));
        let mut msg = DynamicMessage::new(wk);
        msg.set_field_by_name("r_ts", Value::List(vec![Value::Message(ts)]));
        let err = encode_message(&msg, &JsonOptions::default()).unwrap_err();
        assert_eq!(err, FieldError::new("rTs[0]", "cannot encode as JSON: timestamp out of range"));
    }

    fn field_json(
        ty: &str,
        body: &str,
        field: &str,
        opts: &JsonOptions,
    ) -> Result<String, FieldError> {
        let msg = decode_message(&desc(ty), body.as_bytes(), &JsonOptions::default()).unwrap();
        let f = desc(ty).get_field_by_name(field).unwrap();
        let mut out = Vec::new();
        encode_field_value_to(&msg, &f, opts, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    #[rustfmt::skip]
    fn encode_field_values() {
        let d = JsonOptions::default();
        let proto = JsonOptions { use_proto_names: true, ..JsonOptions::default() };
        let book = r#"{"title":"abc","tags":["x"],"author":{"authorId":"1"},"labels":{"k":"v"},"pageCount":3,"isbn":"i","genre":"SCIENCE"}"#;
        for (field, opts, want) in [
            ("title", &d, r#""abc""#),
            ("tags", &d, r#"["x"]"#),
            ("author", &d, r#"{"authorId":"1"}"#),
            ("author", &proto, r#"{"author_id":"1"}"#),
            ("labels", &d, r#"{"k":"v"}"#),
            ("page_count", &d, "3"),
            ("page_count", &proto, "3"),
            ("isbn", &d, r#""i""#),
            ("genre", &d, r#""SCIENCE""#),
            ("name", &d, r#""""#),
            ("co_authors", &d, "[]"),
            ("ean", &d, r#""0""#),
            ("ghost_writer", &d, "{}"),
            ("publish_time", &d, r#""1970-01-01T00:00:00Z""#),
            ("edition", &d, "0"),
        ] {
            assert_eq!(field_json("Book", book, field, opts).unwrap(), want, "{field}");
        }
        assert_eq!(field_json("Book", "{}", "genre", &d).unwrap(), r#""GENRE_UNSPECIFIED""#);
        assert_eq!(field_json("Book", "{}", "labels", &d).unwrap(), "{}");
        assert_eq!(field_json("Book", r#"{"label":"L"}"#, "display_name", &d).unwrap(), r#""L""#);
        assert_eq!(field_json("Scalars", r#"{"fBytes":"aGk="}"#, "f_bytes", &d).unwrap(), r#""aGk=""#);
        assert_eq!(field_json("Scalars", "{}", "f_double", &d).unwrap(), "0.0");
        assert_eq!(field_json("WellKnown", r#"{"st":{"a":"b"}}"#, "st", &d).unwrap(), r#"{"a":"b"}"#);
    }

    fn any_of(type_url: &str, value: Vec<u8>) -> Value {
        let mut any = DynamicMessage::new(desc("google.protobuf.Any"));
        any.set_field_by_name("type_url", Value::String(type_url.into()));
        any.set_field_by_name("value", Value::Bytes(value.into()));
        Value::Message(any)
    }

    #[test]
    #[rustfmt::skip]
    fn status_details() {
        let mut detail = DynamicMessage::new(desc("Detail"));
        detail.set_field_by_name("reason", Value::String("QUOTA".into()));
        detail.set_field_by_name("retry_after_ms", Value::I64(1500));
        let dur = prost_types::Duration { seconds: 3, nanos: 0 }.encode_to_vec();
        let mut status = DynamicMessage::new(desc("google.rpc.Status"));
        status.set_field_by_name("code", Value::I32(8));
        status.set_field_by_name("details", Value::List(vec![
            any_of("type.googleapis.com/omnigate.test.Detail", detail.encode_to_vec()),
            any_of("type.googleapis.com/acme.Unknown", vec![1, 2, 3]),
            any_of("type.googleapis.com/google.protobuf.Duration", dur),
            any_of("type.googleapis.com/omnigate.test.Detail", vec![0xff]),
        ]));
        let got = status_details_to_json(pool(), &status.encode_to_vec()).unwrap();
        let want: serde_json::Value = serde_json::from_str(r#"[
            {"@type":"type.googleapis.com/omnigate.test.Detail","reason":"QUOTA","retryAfterMs":"1500"},
            {"@type":"type.googleapis.com/acme.Unknown","value":"AQID"},
            {"@type":"type.googleapis.com/google.protobuf.Duration","value":"3s"},
            {"@type":"type.googleapis.com/omnigate.test.Detail","value":"/w=="}
        ]"#).unwrap();
        assert_eq!(got, want);
        let empty = DynamicMessage::new(desc("google.rpc.Status")).encode_to_vec();
        assert_eq!(status_details_to_json(pool(), &empty), Some(serde_json::json!([])));
        assert_eq!(status_details_to_json(pool(), b"\xff\xff"), None);
        assert_eq!(status_details_to_json(&DescriptorPool::new(), &empty), None);
    }

    #[test]
    #[rustfmt::skip]
    fn field_error_display() {
        assert_eq!(FieldError::new("book.pageCount", "bad").to_string(), "field `book.pageCount`: bad");
        assert_eq!(FieldError::new("", "bad body").to_string(), "bad body");
    }
}
