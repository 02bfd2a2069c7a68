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
//! Input is prost-reflect's deserializer (well-known types, `Any` resolved through the
//! descriptor pool, enums by name or number, base64 bytes in both alphabets...), held to the
//! proto3 JSON mapping as protobuf's conformance suite checks it (the table tests at the
//! bottom follow its JSON cases) by what this module adds:
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
//!   for `google.protobuf.Value`, where `null` is a value;
//! * in the same guard, what prost-reflect gets wrong: numbers in strings are JSON numbers
//!   (`"1e5"` is an int32, `"+1"`, `"01"`, `" 1"`, `"inf"` are nothing), exact integer and
//!   float range checks, strict `Timestamp` (no second 60, at most 9 decimals) and `Duration`
//!   text, decimal map keys (duplicates found after normalization), and `Any`: buffered and
//!   replayed `@type` first, so that its fields are checked wherever `@type` is; `{}` is the
//!   empty `Any`; an `Any` of `Empty` may leave out `value`.
//!
//! Output is written here, not by prost-reflect's serializer (which deviates from the mapping
//! in a few places): lowerCamelCase names (proto names with [`JsonOptions::use_proto_names`]),
//! 64-bit integers as strings, floats in their shortest round-trip form (`NaN`, `Infinity`,
//! `-Infinity` as strings, also in wrappers), enums by name (the first declared alias),
//! unknown enum numbers as numbers, bytes in padded standard base64, `Timestamp`s in UTC with
//! 0, 3, 6 or 9 decimals, map entries in key order, and defaults omitted (but `-0`) unless
//! [`JsonOptions::emit_unpopulated`] (which, like protobuf's
//! `always_print_fields_with_no_presence`, still omits unset message fields, oneof members and
//! proto3 `optional` fields). Some values have no JSON form (an `Any` whose type is not in the
//! pool or whose payload does not decode, a `Timestamp` outside the years 1 to 9999 or with
//! nanos outside `0..1e9`, a `Duration` beyond 10 000 years or with nanos of the other sign,
//! a `FieldMask` path that does not round-trip through lowerCamelCase, a non-finite number in
//! a `Value`), so the encoders return `Result` with the failing path. The text of the
//! well-known types is written by helpers shared with [`super::wire`], which must print the
//! same.
//!
//! Note: `serde_json` has its own recursion limit of 128 nested values; a `max_depth` above
//! about 127 is therefore capped by that limit (reported as malformed JSON).

use std::{cell::Cell, collections::HashSet, fmt};

use base64::Engine as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, ReflectMessage, Value,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::ser::{CompactFormatter, Formatter as _};

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
    let shared = Shared::new(opts);
    let de_opts = DeserializeOptions::new().deny_unknown_fields(shared.deny_unknown);
    let mut msg = parse_tracked(text, |json, track| {
        let guard = Guard::root(json, ctx.clone(), &shared);
        match track {
            None => DynamicMessage::deserialize_with_options(desc.clone(), guard, &de_opts),
            Some(track) => DynamicMessage::deserialize_with_options(
                desc.clone(),
                serde_path_to_error::Deserializer::new(guard, track),
                &de_opts,
            ),
        }
    })?;
    if shared.empty_any.get() {
        clear_empty_anys(&mut msg);
    }
    Ok(msg)
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
    let shared = Shared::new(opts);
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
    if shared.empty_any.get() {
        clear_empty_anys(&mut parent);
    }
    // `-0.0` is kept although it compares equal to the default (see `encode`); `take_field`
    // would drop it.
    let value = parent.get_field(field);
    if crate::transcode::encode::is_negative_zero(&value) {
        return Ok(Some(value.into_owned()));
    }
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
    let result = Encoder {
        opts,
        out: &mut *out,
    }
    .message(msg);
    result.map_err(|e| {
        out.truncate(start);
        e.into_field_error()
    })
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
    // `get_field` gives the default of an unset field: `[]`, `{}`, the default message...
    let result = Encoder {
        opts,
        out: &mut *out,
    }
    .value(&parent.get_field(field), &field.kind());
    result.map_err(|e| {
        out.truncate(start);
        e.at(PathSegment::Key(name.to_owned())).into_field_error()
    })
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
    let value = status.get_field(&details);
    let opts = JsonOptions::default();
    let items = value
        .as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_message)
        .map(|any| {
            encode_message(any, &opts)
                .ok()
                .and_then(|json| serde_json::from_slice(&json).ok())
                .unwrap_or_else(|| raw_any_json(any))
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
        Ctx::Message(_) | Ctx::Map(..) | Ctx::Any(_) | Ctx::AnyBody(_) => {
            Some((b'{', "a JSON object"))
        }
        Ctx::List(_) => Some((b'[', "a JSON array")),
        Ctx::Scalar(_) | Ctx::Timestamp | Ctx::Duration | Ctx::NullValue | Ctx::Other => None,
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
    /// An `Any` given as `{}` was decoded with the [`EMPTY_ANY`] stand-in type URL.
    empty_any: Cell<bool>,
}

impl Shared {
    fn new(opts: &JsonOptions) -> Self {
        Shared {
            deny_unknown: !opts.ignore_unknown_fields,
            empty_any: Cell::new(false),
        }
    }
}

/// prost-reflect cannot decode an `Any` without `@type`, which the mapping reads as the empty
/// `Any`: such an `Any` is decoded as a message of some ordinary type under a type URL with
/// this prefix (which no client can send), then emptied ([`clear_empty_anys`]).
const EMPTY_ANY: &str = "\u{0}omnigate/empty-any/";

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
    /// A `google.protobuf.Timestamp` string.
    Timestamp,
    /// A `google.protobuf.Duration` string.
    Duration,
    /// A `google.protobuf.Any` object (this is the `Any` type, for its pool).
    Any(MessageDescriptor),
    /// The entries of an `Any` object, replayed `@type` first: then the fields of the payload
    /// type, or `value` for a type with a special JSON form (`None`: unknown type).
    AnyBody(Option<MessageDescriptor>),
    /// A `google.protobuf.NullValue` enum field: `null`, or its one value by name or number.
    NullValue,
    /// Anything else (strings, bools, bytes, Struct, Value, FieldMask...).
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
            Kind::Message(m) => match m.full_name() {
                "google.protobuf.Timestamp" => Ctx::Timestamp,
                "google.protobuf.Duration" => Ctx::Duration,
                "google.protobuf.Any" => Ctx::Any(m.clone()),
                name => match wrapper_scalar(name) {
                    Some(k) => Ctx::Scalar(k),
                    None if has_special_json(name) => Ctx::Other,
                    None => Ctx::Message(m.clone()),
                },
            },
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => Ctx::NullValue,
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

    /// A JSON number with a fraction or an exponent: for an integral kind, the integer it
    /// must be exactly; for a float, the nearest float, which must be finite.
    fn number<E: de::Error>(&self, v: f64) -> Result<Option<Number>, E> {
        let Ctx::Scalar(kind) = &self.ctx else {
            return Ok(None);
        };
        if let Some(range) = int_range(kind) {
            if !v.is_finite() || v.fract() != 0.0 {
                return Err(E::custom(format!(
                    "{v} is not an integer ({} expected)",
                    kind_name(kind)
                )));
            }
            // Exact: an integral f64 below 2^127 converts to i128 without loss.
            if v.abs() >= 2f64.powi(127) || !(range.0..=range.1).contains(&(v as i128)) {
                return Err(E::custom(out_of_range(v, kind, range)));
            }
            return Ok(Some(Number::Int(v as i128)));
        }
        Ok(match kind {
            Kind::Float => Some(Number::F32(float_of(v, &v).map_err(E::custom)?)),
            _ => None,
        })
    }

    /// A JSON string where a number, an enum, a `Timestamp` or a `Duration` is expected:
    /// checked, and converted to the number it spells if it does.
    fn text<E: de::Error>(&self, s: &str) -> Result<Option<Number>, E> {
        match &self.ctx {
            Ctx::Scalar(kind) => self.scalar_text(kind, s).map_err(E::custom),
            Ctx::Timestamp => check_timestamp_text(s).map(|()| None).map_err(E::custom),
            Ctx::Duration => check_duration_text(s).map(|()| None).map_err(E::custom),
            _ => Ok(None),
        }
    }

    fn scalar_text(&self, kind: &Kind, s: &str) -> Result<Option<Number>, String> {
        if let Kind::Enum(e) = kind {
            if e.get_value_by_name(s).is_some() {
                return Ok(None);
            }
            // A number in a string (`"2"`), as protobuf's own JSON parsers take it.
            let digits = s.strip_prefix('-').unwrap_or(s);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n) = s.parse::<i32>() {
                    return Ok(Some(Number::Int(n.into())));
                }
            }
            if self.shared.deny_unknown {
                return Err(format!(
                    "unknown value \"{s}\" for enum `{}` (expected one of {} or a number)",
                    e.full_name(),
                    enum_names(e)
                ));
            }
            return Ok(None);
        }
        if let Some(range) = int_range(kind) {
            let not_valid = || {
                format!(
                    "\"{s}\" is not a valid {}: expected a decimal integer",
                    kind_name(kind)
                )
            };
            return match parse_integer(s) {
                Some(Ok(n)) if (range.0..=range.1).contains(&n) => Ok(Some(Number::Int(n))),
                Some(Ok(_)) | Some(Err(IntegerError::TooLarge)) => {
                    Err(out_of_range(format_args!("\"{s}\""), kind, range))
                }
                Some(Err(IntegerError::Fraction)) => Err(format!(
                    "\"{s}\" is not an integer ({} expected)",
                    kind_name(kind)
                )),
                None => Err(not_valid()),
            };
        }
        if matches!(s, "NaN" | "Infinity" | "-Infinity") {
            return Ok(None);
        }
        let v = match is_json_number(s).then(|| s.parse::<f64>()) {
            Some(Ok(v)) => v,
            _ => {
                return Err(format!(
                    "\"{s}\" is not a valid {}: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"",
                    kind_name(kind)
                ))
            }
        };
        match kind {
            Kind::Float => Ok(Some(Number::F32(float_of(v, &format_args!("\"{s}\""))?))),
            _ if !v.is_finite() => Err(format!("value \"{s}\" is out of range for double")),
            _ => Ok(Some(Number::F64(v))),
        }
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
            if matches!(self.ctx, Ctx::NullValue) && i128::from(v) == 0 {
                // `NULL_VALUE` by number, as for any enum; prost-reflect only takes `null`.
                return self.inner.visit_unit();
            }
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
        match self.number(v)? {
            Some(n) => n.visit(self.inner),
            None => self.inner.visit_f64(v),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.record_key(v);
        match self.text(v)? {
            Some(n) => n.visit(self.inner),
            None => self.inner.visit_str(v),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.record_key(v);
        match self.text(v)? {
            Some(n) => n.visit(self.inner),
            None => self.inner.visit_borrowed_str(v),
        }
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.record_key(&v);
        match self.text(&v)? {
            Some(n) => n.visit(self.inner),
            None => self.inner.visit_string(v),
        }
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
        if let Ctx::Any(any) = &self.ctx {
            let any = any.clone();
            return self.visit_any(map, &any);
        }
        self.inner
            .visit_map(GuardMap::new(map, self.ctx, self.shared))
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
    /// Keys seen in this object, verbatim (but those of known message fields: see `fields`;
    /// map keys in their canonical form, so that `"1"` and `"01"` are one key).
    keys: HashSet<String>,
    /// (field number, key as sent) for message objects.
    fields: Vec<(u32, String)>,
    /// (oneof full name, key as sent) of oneof members present with a non-null value.
    oneofs: Vec<(String, String)>,
    /// The field named by the key just read.
    pending: Option<(FieldDescriptor, String)>,
    /// The context of the value of the key just read, when it is not a field's.
    pending_ctx: Option<Ctx>,
}

impl<'a, A> GuardMap<'a, A> {
    fn new(map: A, ctx: Ctx, shared: &'a Shared) -> Self {
        GuardMap {
            map,
            ctx,
            shared,
            keys: HashSet::new(),
            fields: Vec::new(),
            oneofs: Vec::new(),
            pending: None,
            pending_ctx: None,
        }
    }

    fn check_key(&mut self, key: String) -> Result<(), String> {
        if self.keys.contains(&key) {
            return Err(duplicate_key(&key));
        }
        let desc = match &self.ctx {
            Ctx::Message(desc) => desc.clone(),
            Ctx::Map(key_kind, _) => {
                let canonical = check_map_key(key_kind, &key)?;
                if !self.keys.insert(canonical) {
                    return Err(duplicate_key(&key));
                }
                return Ok(());
            }
            Ctx::AnyBody(Some(payload)) if key != "@type" => {
                if !has_special_json(payload.full_name()) {
                    payload.clone()
                } else if key == "value" {
                    self.pending_ctx = Some(Ctx::of_kind(&Kind::Message(payload.clone())));
                    self.keys.insert(key);
                    return Ok(());
                } else if self.shared.deny_unknown {
                    return Err(format!(
                        "unknown field `{key}` in a `google.protobuf.Any` holding a `{}` (expected `@type` and `value`)",
                        payload.full_name()
                    ));
                } else {
                    self.keys.insert(key);
                    return Ok(());
                }
            }
            _ => {
                self.keys.insert(key);
                return Ok(());
            }
        };
        let field = desc
            .get_field_by_json_name(&key)
            .or_else(|| desc.get_field_by_name(&key));
        if let Some(field) = field {
            if let Some((_, prev)) = self.fields.iter().find(|(n, _)| *n == field.number()) {
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
        }
        if self.shared.deny_unknown && desc.get_extension_by_json_name(&key).is_none() {
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
        self.keys.insert(key);
        Ok(())
    }
}

fn duplicate_key(key: &str) -> String {
    format!("duplicate key `{key}`: each key may appear only once in a JSON object")
}

/// JSON map keys are strings: a bool key is `true` or `false`, an integral key a decimal
/// integer in range (`-` allowed for signed types, leading zeros allowed). Returns the key's
/// canonical text, by which duplicates are found.
fn check_map_key(kind: &Kind, key: &str) -> Result<String, String> {
    let canonical = match kind {
        Kind::Bool => matches!(key, "true" | "false").then(|| key.to_owned()),
        k => match int_range(k) {
            Some((min, max)) => {
                let digits = if min < 0 {
                    key.strip_prefix('-').unwrap_or(key)
                } else {
                    key
                };
                let decimal = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                decimal
                    .then(|| key.parse::<i128>().ok())
                    .flatten()
                    .filter(|n| (min..=max).contains(n))
                    .map(|n| n.to_string())
            }
            None => Some(key.to_owned()),
        },
    };
    canonical.ok_or_else(|| format!("map key \"{key}\" is not a valid {}", kind_name(kind)))
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
        self.pending_ctx = None;
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
            let ctx = self.pending_ctx.take().unwrap_or_else(|| self.ctx.child());
            return self.map.next_value_seed(GuardSeed {
                seed,
                ctx,
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

/// A number given as a JSON string (or a float given for an integer), as the guard hands it
/// to prost-reflect instead: its own parsing of strings is Rust's (`+1`, `01`, `inf` pass;
/// `1e5` does not), and it rejects a float that only rounds to `f32::MAX`.
#[derive(Clone, Copy)]
enum Number {
    Int(i128),
    F32(f32),
    F64(f64),
}

impl Number {
    fn visit<'de, V: Visitor<'de>, E: de::Error>(self, visitor: V) -> Result<V::Value, E> {
        // Integers are range-checked for their kind by then: they fit 64 bits.
        match self {
            Number::Int(n) if n < 0 => visitor.visit_i64(n as i64),
            Number::Int(n) => visitor.visit_u64(n as u64),
            Number::F32(v) => visitor.visit_f32(v),
            Number::F64(v) => visitor.visit_f64(v),
        }
    }
}

/// The float nearest to `v`, which must not overflow: `3.4028235e38` is `f32::MAX`,
/// `3.5e38` is out of range.
fn float_of(v: f64, shown: &dyn fmt::Display) -> Result<f32, String> {
    let f = v as f32;
    if v.is_finite() && !f.is_finite() {
        return Err(format!("value {shown} is out of range for float"));
    }
    Ok(f)
}

/// Whether `s` is a JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

enum IntegerError {
    Fraction,
    TooLarge,
}

/// The integer a JSON number in a string spells exactly (`"12"`, `"1e5"`, `"-1.50e2"`), or
/// why it spells none; `None` if `s` is not a JSON number at all.
fn parse_integer(s: &str) -> Option<Result<i128, IntegerError>> {
    if !is_json_number(s) {
        return None;
    }
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (
            m,
            e.parse::<i64>().unwrap_or(if e.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            }),
        ),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Some(Ok(0));
    }
    // The value is `significant` × 10^scale.
    let scale = exponent
        .saturating_sub(fraction.len() as i64)
        .saturating_add((digits.len() - significant.len()) as i64);
    if scale < 0 {
        return Some(Err(IntegerError::Fraction));
    }
    let value = u32::try_from(scale)
        .ok()
        .and_then(|scale| 10i128.checked_pow(scale))
        .zip(significant.parse::<i128>().ok())
        .and_then(|(power, significant)| significant.checked_mul(power));
    Some(match value {
        Some(v) if negative => Ok(-v),
        Some(v) => Ok(v),
        None => Err(IntegerError::TooLarge),
    })
}

/// What prost-reflect's RFC 3339 check lets through but the mapping rejects: a second `60`
/// and more than 9 fractional digits (prost-types would round the first and cut the second).
fn check_timestamp_text(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    // `YYYY-MM-DDTHH:MM:SS`: the seconds are at 17..19.
    if b.get(17..19) == Some(b"60".as_slice()) {
        return Err(format!(
            "invalid rfc3339 timestamp \"{s}\": the second must be below 60"
        ));
    }
    if b.get(19) == Some(&b'.') {
        let fraction = b[20..].iter().take_while(|b| b.is_ascii_digit()).count();
        if fraction > 9 {
            return Err(format!(
                "invalid rfc3339 timestamp \"{s}\": at most 9 fractional digits"
            ));
        }
    }
    Ok(())
}

/// A `Duration` is `-?[0-9]+(\.[0-9]{1,9})?s` (prost-types also takes more digits, and cuts
/// them).
fn check_duration_text(s: &str) -> Result<(), String> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let body = s.strip_suffix('s').unwrap_or("");
    let body = body.strip_prefix('-').unwrap_or(body);
    let valid = match body.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction) && fraction.len() <= 9,
        None => digits(body),
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid duration \"{s}\": expected seconds with at most 9 decimals and an `s`, like \"-1.5s\""
        ))
    }
}

impl<'de, V: Visitor<'de>> GuardVisitor<'_, V> {
    /// An `Any` object: buffered, then replayed to prost-reflect `@type` first (then `value`
    /// for a type with a special JSON form), so that its entries are guarded like those of
    /// any message, wherever `@type` is. An `Empty` may leave out its `value`, and `{}` is
    /// the empty `Any`.
    fn visit_any<A: MapAccess<'de>>(
        self,
        mut map: A,
        any: &MessageDescriptor,
    ) -> Result<V::Value, A::Error> {
        let mut entries: Vec<(String, serde_json::Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            // Duplicate keys are found here below the `Any`'s own level, and in the replay at
            // its level.
            let value = map.next_value_seed(GuardSeed {
                seed: std::marker::PhantomData::<serde_json::Value>,
                ctx: Ctx::Other,
                hook: Hook::None,
                shared: self.shared,
            })?;
            entries.push((key, value));
        }
        let pool = any.parent_pool();
        let Some(at) = entries.iter().position(|(key, _)| key == "@type") else {
            if !entries.is_empty() {
                return Err(de::Error::custom(
                    "expected '@type' field: an Any object names the type of its fields in `@type`",
                ));
            }
            let stand_in = pool
                .all_messages()
                .find(|m| !m.is_map_entry() && !has_special_json(m.full_name()))
                .ok_or_else(|| de::Error::custom("an empty Any cannot be decoded here"))?;
            self.shared.empty_any.set(true);
            let url = format!("{EMPTY_ANY}{}", stand_in.full_name());
            entries.push(("@type".to_owned(), serde_json::Value::String(url)));
            let map = GuardMap::new(Replay::new(entries), Ctx::AnyBody(None), self.shared);
            return self.inner.visit_map(map);
        };
        let entry = entries.remove(at);
        let url = entry.1.as_str().unwrap_or_default().to_owned();
        entries.insert(0, entry);
        if url.starts_with(EMPTY_ANY) {
            return Err(de::Error::custom(format!("invalid type url {url:?}")));
        }
        let payload = type_url_message_name(&url)
            .ok()
            .and_then(|name| pool.get_message_by_name(name));
        if let Some(payload) = payload.as_ref().filter(|p| has_special_json(p.full_name())) {
            match entries.iter().position(|(key, _)| key == "value") {
                Some(at) => {
                    let entry = entries.remove(at);
                    entries.insert(1, entry);
                }
                None if payload.full_name() == "google.protobuf.Empty" => {
                    let empty = serde_json::Value::Object(serde_json::Map::new());
                    entries.insert(1, ("value".to_owned(), empty));
                }
                None => {}
            }
        }
        let map = GuardMap::new(Replay::new(entries), Ctx::AnyBody(payload), self.shared);
        self.inner.visit_map(map)
    }
}

/// Buffered object entries, handed out again (errors turned into the outer type).
struct Replay<E> {
    entries: std::vec::IntoIter<(String, serde_json::Value)>,
    value: Option<serde_json::Value>,
    error: std::marker::PhantomData<E>,
}

impl<E> Replay<E> {
    fn new(entries: Vec<(String, serde_json::Value)>) -> Self {
        Replay {
            entries: entries.into_iter(),
            value: None,
            error: std::marker::PhantomData,
        }
    }
}

impl<'de, E: de::Error> MapAccess<'de> for Replay<E> {
    type Error = E;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, E> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(de::value::StringDeserializer::<E>::new(key))
            .map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, E> {
        match self.value.take() {
            Some(value) => seed.deserialize(value).map_err(E::custom),
            None => Err(E::custom("internal error: value read twice")),
        }
    }
}

/// Empties the `Any`s decoded from `{}` (see [`EMPTY_ANY`]), wherever they are.
fn clear_empty_anys(msg: &mut DynamicMessage) {
    let desc = msg.descriptor();
    if desc.full_name() != "google.protobuf.Any" {
        for (_, value) in msg.fields_mut() {
            clear_empty_anys_in(value);
        }
        return;
    }
    let url = msg.get_field_by_number(1);
    let url = url
        .as_deref()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if url.starts_with(EMPTY_ANY) {
        *msg = DynamicMessage::new(desc);
        return;
    }
    // A payload holding such an `Any` holds it encoded: decode, empty, encode again.
    let bytes = msg.get_field_by_number(2);
    let bytes = bytes
        .as_deref()
        .and_then(Value::as_bytes)
        .cloned()
        .unwrap_or_default();
    if !bytes
        .windows(EMPTY_ANY.len())
        .any(|w| w == EMPTY_ANY.as_bytes())
    {
        return;
    }
    let payload = type_url_message_name(&url)
        .ok()
        .and_then(|name| desc.parent_pool().get_message_by_name(name))
        .and_then(|payload| DynamicMessage::decode(payload, bytes).ok());
    if let Some(mut payload) = payload {
        clear_empty_anys(&mut payload);
        let bytes = crate::transcode::encode::encode(&payload);
        msg.set_field_by_number(2, Value::Bytes(bytes.into()));
    }
}

fn clear_empty_anys_in(value: &mut Value) {
    match value {
        Value::Message(m) => clear_empty_anys(m),
        Value::List(items) => items.iter_mut().for_each(clear_empty_anys_in),
        Value::Map(entries) => entries.values_mut().for_each(clear_empty_anys_in),
        _ => {}
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
//
// Written straight into the output buffer (prost-reflect's serializer deviates from the
// mapping in a few places: non-finite wrapper values, an `Any` without a type, an `Any` of
// `Empty`, `-0` in fields without presence, enum aliases, field mask paths ending in `_`).
// The text helpers below are shared with the wire renderer, so that both print the same.

/// Where an encoding failure is, innermost segment first.
enum PathSegment {
    Key(String),
    Index(usize),
}

struct EncodeError {
    path: Vec<PathSegment>,
    reason: String,
}

impl EncodeError {
    fn new(reason: impl Into<String>) -> Self {
        EncodeError {
            path: Vec::new(),
            reason: reason.into(),
        }
    }

    fn at(mut self, segment: PathSegment) -> Self {
        self.path.push(segment);
        self
    }

    /// `coAuthors[1].authorId`, as `serde_path_to_error` spells paths on the way in.
    fn into_field_error(self) -> FieldError {
        let mut path = String::new();
        for segment in self.path.iter().rev() {
            match segment {
                PathSegment::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                PathSegment::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        FieldError::new(path, format!("cannot encode as JSON: {}", self.reason))
    }
}

type Encoded = Result<(), EncodeError>;

struct Encoder<'a> {
    opts: &'a JsonOptions,
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    fn message(&mut self, msg: &DynamicMessage) -> Encoded {
        let desc = msg.descriptor();
        match desc.full_name() {
            "google.protobuf.Any" => self.any(msg),
            "google.protobuf.Timestamp" => {
                let (seconds, nanos) = seconds_nanos(msg);
                write_timestamp(self.out, seconds, nanos).map_err(EncodeError::new)
            }
            "google.protobuf.Duration" => {
                let (seconds, nanos) = seconds_nanos(msg);
                write_duration(self.out, seconds, nanos).map_err(EncodeError::new)
            }
            "google.protobuf.FieldMask" => {
                let paths = msg.get_field_by_number(1);
                let paths = paths
                    .as_deref()
                    .and_then(Value::as_list)
                    .unwrap_or_default();
                write_field_mask(self.out, paths.iter().filter_map(Value::as_str))
                    .map_err(EncodeError::new)
            }
            "google.protobuf.Value" => self.value_message(msg),
            "google.protobuf.Empty" => {
                self.out.extend_from_slice(b"{}");
                Ok(())
            }
            // `Struct` (its map), `ListValue` (its list) and the wrappers (their value): the
            // JSON of field 1.
            name if has_special_json(name) => match desc.get_field(1) {
                Some(field) => self.value(&msg.get_field(&field), &field.kind()),
                None => self.fields(msg, None),
            },
            _ => self.fields(msg, None),
        }
    }

    /// An object of the fields of `msg`, after an `"@type"` entry if `type_url` is given.
    fn fields(&mut self, msg: &DynamicMessage, type_url: Option<&str>) -> Encoded {
        self.out.push(b'{');
        let mut first = true;
        if let Some(url) = type_url {
            write_str(self.out, "@type");
            self.out.push(b':');
            write_str(self.out, url);
            first = false;
        }
        for field in msg.descriptor().fields() {
            let shown = msg.has_field(&field)
                || (!field.supports_presence()
                    && (self.opts.emit_unpopulated || negative_zero(msg, &field)));
            if !shown {
                continue;
            }
            let name = if self.opts.use_proto_names {
                field.name()
            } else {
                field.json_name()
            };
            self.key(name, &mut first);
            self.value(&msg.get_field(&field), &field.kind())
                .map_err(|e| e.at(PathSegment::Key(name.to_owned())))?;
        }
        for (extension, value) in msg.extensions() {
            let name = extension.json_name();
            self.key(name, &mut first);
            self.value(value, &extension.kind())
                .map_err(|e| e.at(PathSegment::Key(name.to_owned())))?;
        }
        self.out.push(b'}');
        Ok(())
    }

    fn key(&mut self, name: &str, first: &mut bool) {
        if !std::mem::take(first) {
            self.out.push(b',');
        }
        write_str(self.out, name);
        self.out.push(b':');
    }

    /// One value of a field (a whole list or map for repeated and map fields) of type `kind`.
    fn value(&mut self, value: &Value, kind: &Kind) -> Encoded {
        match value {
            Value::Bool(v) => self
                .out
                .extend_from_slice(if *v { b"true" } else { b"false" }),
            Value::I32(v) => write_i64(self.out, i64::from(*v)),
            Value::U32(v) => write_u64(self.out, u64::from(*v)),
            Value::I64(v) => {
                self.out.push(b'"');
                write_i64(self.out, *v);
                self.out.push(b'"');
            }
            Value::U64(v) => {
                self.out.push(b'"');
                write_u64(self.out, *v);
                self.out.push(b'"');
            }
            Value::F32(v) => write_f32(self.out, *v),
            Value::F64(v) => write_f64(self.out, *v),
            Value::String(v) => write_str(self.out, v),
            Value::Bytes(v) => write_base64(self.out, v),
            Value::EnumNumber(number) => match kind {
                Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => {
                    self.out.extend_from_slice(b"null");
                }
                Kind::Enum(e) => match enum_value_name(e, *number) {
                    Some(name) => write_str(self.out, name),
                    None => write_i64(self.out, i64::from(*number)),
                },
                _ => write_i64(self.out, i64::from(*number)),
            },
            Value::Message(m) => return self.message(m),
            Value::List(items) => {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(item, kind)
                        .map_err(|e| e.at(PathSegment::Index(i)))?;
                }
                self.out.push(b']');
            }
            Value::Map(entries) => {
                let Kind::Message(entry) = kind else {
                    return Err(EncodeError::new("a map value without a map entry type"));
                };
                let value_kind = entry.map_entry_value_field().kind();
                // In key order, so that the output does not depend on hashing.
                let mut entries: Vec<_> = entries.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                self.out.push(b'{');
                let mut first = true;
                for (key, value) in entries {
                    let key = match key {
                        MapKey::Bool(v) => v.to_string(),
                        MapKey::I32(v) => v.to_string(),
                        MapKey::I64(v) => v.to_string(),
                        MapKey::U32(v) => v.to_string(),
                        MapKey::U64(v) => v.to_string(),
                        MapKey::String(v) => v.clone(),
                    };
                    self.key(&key, &mut first);
                    self.value(value, &value_kind)
                        .map_err(|e| e.at(PathSegment::Key(key)))?;
                }
                self.out.push(b'}');
            }
        }
        Ok(())
    }

    /// `{"@type": url, fields...}`, or `{"@type": url, "value": json}` for a type with a
    /// special JSON form; `{}` for the empty `Any`.
    fn any(&mut self, msg: &DynamicMessage) -> Encoded {
        let url = msg.get_field_by_number(1);
        let url = url.as_deref().and_then(Value::as_str).unwrap_or_default();
        let bytes = msg.get_field_by_number(2);
        let bytes = bytes.as_deref().and_then(Value::as_bytes);
        let bytes = bytes.map(|b| b.as_ref()).unwrap_or_default();
        if url.is_empty() {
            if !bytes.is_empty() {
                return Err(EncodeError::new(
                    "google.protobuf.Any has a value but no type URL",
                ));
            }
            self.out.extend_from_slice(b"{}");
            return Ok(());
        }
        let name = type_url_message_name(url).map_err(EncodeError::new)?;
        let desc = msg
            .descriptor()
            .parent_pool()
            .get_message_by_name(name)
            .ok_or_else(|| EncodeError::new(format!("message '{name}' not found")))?;
        let payload = DynamicMessage::decode(desc, bytes)
            .map_err(|e| EncodeError::new(format!("error decoding: {e}")))?;
        // `Empty` is an object already: it shows as `{"@type": url}`, as protobuf does.
        if name == "google.protobuf.Empty" || !has_special_json(name) {
            return self.fields(&payload, Some(url));
        }
        self.out.push(b'{');
        write_str(self.out, "@type");
        self.out.push(b':');
        write_str(self.out, url);
        self.out.extend_from_slice(b",\"value\":");
        self.message(&payload)
            .map_err(|e| e.at(PathSegment::Key("value".to_owned())))?;
        self.out.push(b'}');
        Ok(())
    }

    /// `google.protobuf.Value`: its one set member, or `null`.
    fn value_message(&mut self, msg: &DynamicMessage) -> Encoded {
        let Some((field, value)) = msg.fields().last() else {
            self.out.extend_from_slice(b"null");
            return Ok(());
        };
        match value {
            Value::F64(v) if !v.is_finite() => Err(EncodeError::new(
                "cannot serialize non-finite double in google.protobuf.Value",
            )),
            value => self.value(value, &field.kind()),
        }
    }
}

/// A field without presence holding `-0.0`: `has_field` calls it a default (`-0.0 == 0.0`),
/// but protobuf tells it from `0` by its bits, and so does the JSON mapping.
fn negative_zero(msg: &DynamicMessage, field: &FieldDescriptor) -> bool {
    if field.is_list() || field.is_map() || !matches!(field.kind(), Kind::Float | Kind::Double) {
        return false;
    }
    match *msg.get_field(field) {
        Value::F32(v) => v == 0.0 && v.is_sign_negative(),
        Value::F64(v) => v == 0.0 && v.is_sign_negative(),
        _ => false,
    }
}

fn seconds_nanos(msg: &DynamicMessage) -> (i64, i32) {
    let seconds = msg.get_field_by_number(1);
    let nanos = msg.get_field_by_number(2);
    (
        seconds
            .as_deref()
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        nanos.as_deref().and_then(Value::as_i32).unwrap_or_default(),
    )
}

/// The message name of a type URL: what follows its last `/`.
pub(crate) fn type_url_message_name(url: &str) -> Result<&str, String> {
    match url.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => Ok(name),
        _ => Err(format!(
            "unsupported type url '{url}': expected a '/' followed by a message name"
        )),
    }
}

/// The name an enum number is shown by: the first value declared with that number (an alias
/// declared later is never shown), or `None` for an unknown number.
pub(crate) fn enum_value_name(e: &prost_reflect::EnumDescriptor, number: i32) -> Option<&str> {
    e.enum_descriptor_proto()
        .value
        .iter()
        .find(|v| v.number() == number)
        .map(|v| v.name())
}

// Text helpers, byte for byte as serde_json writes (and shared with `wire::render`).

/// serde_json's escape table: `"`, `\` and control characters; nothing else.
pub(crate) static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Append `s` as a JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Append `s` escaped as inside a JSON string, without the quotes.
pub(crate) fn write_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

// Writing into a `Vec<u8>` cannot fail, so the `io::Result`s below carry nothing.

pub(crate) fn write_i64(out: &mut Vec<u8>, v: i64) {
    let _ = CompactFormatter.write_i64(out, v);
}

pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    let _ = CompactFormatter.write_u64(out, v);
}

/// A float in its shortest round-trip form (`0.1f32` is `0.1`), or `"NaN"`, `"Infinity"`,
/// `"-Infinity"`.
pub(crate) fn write_f32(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        let _ = CompactFormatter.write_f32(out, v);
    } else {
        out.extend_from_slice(non_finite(f64::from(v)));
    }
}

pub(crate) fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(non_finite(v));
    }
}

fn non_finite(v: f64) -> &'static [u8] {
    if v.is_nan() {
        b"\"NaN\""
    } else if v > 0.0 {
        b"\"Infinity\""
    } else {
        b"\"-Infinity\""
    }
}

/// Bytes in standard base64 with padding, quoted.
pub(crate) fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    // Four characters for every three bytes or part of them.
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or_default();
    out.truncate(start + written);
    out.push(b'"');
}

const NANOS_PER_SECOND: i32 = 1_000_000_000;
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
const MAX_DURATION_SECONDS: u64 = 315_576_000_000; // 10 000 years

/// `value` in exactly `width` (at most 9) decimal digits, zero-padded (it must fit).
fn digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let mut text = [b'0'; 9];
    let text = &mut text[..width.min(9)];
    for slot in text.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(text);
}

/// The fraction of a second: nothing, or `.` and 3, 6 or 9 digits, the fewest that are exact.
fn fraction(out: &mut Vec<u8>, nanos: u32) {
    if nanos == 0 {
        return;
    }
    out.push(b'.');
    if nanos % 1_000_000 == 0 {
        digits(out, nanos / 1_000_000, 3);
    } else if nanos % 1_000 == 0 {
        digits(out, nanos / 1_000, 6);
    } else {
        digits(out, nanos, 9);
    }
}

/// The proleptic Gregorian `(year, month, day)` of `days` since 1970-01-01.
///
/// Counted from 0000-03-01, so that a leap day ends its year: the days split into 400-year
/// eras of 146 097 days, an era into years of 365 days plus one every fourth year, less one
/// every hundredth (but the 400th); months from March run 31, 30, 31, 30, 31 days twice
/// then 31, 29/28, which `(5 * day_of_year + 2) / 153` finds.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // 0000-03-01 is 719 468 days before 1970-01-01.
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month, day)
}

/// A `Timestamp` as a quoted RFC 3339 UTC string (`"1970-01-01T00:00:00.500Z"`), or why it
/// has none: seconds outside years 1 to 9999, nanos outside `0..1e9`.
pub(crate) fn write_timestamp(
    out: &mut Vec<u8>,
    seconds: i64,
    nanos: i32,
) -> Result<(), &'static str> {
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
        return Err("timestamp out of range");
    }
    if !(0..NANOS_PER_SECOND).contains(&nanos) {
        return Err("timestamp nanos out of range");
    }
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let time = seconds.rem_euclid(86_400) as u32;
    out.push(b'"');
    digits(out, year as u32, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, time / 3600, 2);
    out.push(b':');
    digits(out, time / 60 % 60, 2);
    out.push(b':');
    digits(out, time % 60, 2);
    fraction(out, nanos as u32);
    out.extend_from_slice(b"Z\"");
    Ok(())
}

/// A `Duration` as a quoted string of seconds (`"-1.500s"`), or why it has none: beyond
/// ±10 000 years, nanos beyond ±999 999 999 or of the other sign than the seconds.
pub(crate) fn write_duration(
    out: &mut Vec<u8>,
    seconds: i64,
    nanos: i32,
) -> Result<(), &'static str> {
    if seconds.unsigned_abs() > MAX_DURATION_SECONDS || nanos.unsigned_abs() >= 1_000_000_000 {
        return Err("duration out of range");
    }
    if (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0) {
        return Err("duration seconds and nanos have different signs");
    }
    out.push(b'"');
    if seconds < 0 || nanos < 0 {
        out.push(b'-');
    }
    write_u64(out, seconds.unsigned_abs());
    fraction(out, nanos.unsigned_abs());
    out.extend_from_slice(b"s\"");
    Ok(())
}

/// A `FieldMask` as a quoted string of lowerCamelCase paths joined by `,`, or an error if a
/// path would not come back the same from that form (`fooBar`, `foo_3_bar`, `foo__bar`,
/// `foo_`).
pub(crate) fn write_field_mask<'p>(
    out: &mut Vec<u8>,
    paths: impl IntoIterator<Item = &'p str>,
) -> Result<(), &'static str> {
    const NO_ROUND_TRIP: &str = "field mask path cannot round-trip through lowerCamelCase";
    let mut text = String::new();
    for (i, path) in paths.into_iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let mut upper_next = false;
        for ch in path.chars() {
            if ch.is_ascii_uppercase() {
                return Err(NO_ROUND_TRIP);
            }
            if upper_next {
                if !ch.is_ascii_lowercase() {
                    return Err(NO_ROUND_TRIP);
                }
                text.push(ch.to_ascii_uppercase());
                upper_next = false;
            } else if ch == '_' {
                upper_next = true;
            } else {
                text.push(ch);
            }
        }
        if upper_next {
            return Err(NO_ROUND_TRIP);
        }
    }
    write_str(out, &text);
    Ok(())
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
        if let Err(failure) = outcome(opts, ty, body.as_ref(), want) {
            panic!("{failure}");
        }
    }

    /// What `check_with` checks, as a description of the mismatch if there is one.
    fn outcome(opts: &JsonOptions, ty: &str, body: &[u8], want: Want) -> Result<(), String> {
        let shown = String::from_utf8_lossy(body);
        match (decode_message(&desc(ty), body, opts), want) {
            (Ok(msg), Ok(expected)) => {
                let out = encode_message(&msg, &JsonOptions::default())
                    .map_err(|e| format!("body {shown}: re-encoding failed: {e}"))?;
                let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
                let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
                if got != expected {
                    return Err(format!("body {shown}: got {got}, want {expected}"));
                }
            }
            (Err(e), Err((field, part))) => {
                if e.field != field || !e.reason.contains(part) {
                    return Err(format!(
                        "body {shown}: got `{e}` at `{}`, want `{part}` at `{field}`",
                        e.field
                    ));
                }
            }
            (Ok(msg), Err(_)) => {
                let out = encode_message(&msg, &JsonOptions::default()).unwrap_or_default();
                return Err(format!(
                    "body {shown}: accepted as {}, want {want:?}",
                    String::from_utf8_lossy(&out)
                ));
            }
            (Err(e), Ok(_)) => {
                return Err(format!(
                    "body {shown}: rejected with `{e}` at `{}`, want {want:?}",
                    e.field
                ))
            }
        }
        Ok(())
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
        check("Scalars", r#"{"fInt64":"1.5"}"#, Err(("fInt64", "\"1.5\" is not an integer (int64 expected)")));
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
        check("WellKnown", r#"{"dur":"5"}"#, Err(("dur", "invalid duration \"5\": expected seconds")));
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

    /// Runs `check_with` on every row and reports all the rows that fail, not only the first.
    fn check_rows(opts: &JsonOptions, rows: &[(&str, &str, Want)]) {
        let failures: Vec<String> = rows
            .iter()
            .filter_map(|(ty, body, want)| outcome(opts, ty, body.as_bytes(), *want).err())
            .collect();
        assert!(
            failures.is_empty(),
            "{} failing rows:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    // The JSON cases of protobuf's conformance suite (`conformance/json_*_test.cc`, formerly
    // `binary_json_conformance_suite.cc`), on our test types, plus neighbours of them.

    #[test]
    #[rustfmt::skip]
    fn conformance_integers() {
        check_rows(&JsonOptions::default(), &[
            ("Scalars", r#"{"fInt32": 2147483647}"#, Ok(r#"{"fInt32":2147483647}"#)),
            ("Scalars", r#"{"fInt32": -2147483648}"#, Ok(r#"{"fInt32":-2147483648}"#)),
            ("Scalars", r#"{"fUint32": 4294967295}"#, Ok(r#"{"fUint32":4294967295}"#)),
            ("Scalars", r#"{"fInt64": "9223372036854775807"}"#, Ok(r#"{"fInt64":"9223372036854775807"}"#)),
            ("Scalars", r#"{"fInt64": "-9223372036854775808"}"#, Ok(r#"{"fInt64":"-9223372036854775808"}"#)),
            ("Scalars", r#"{"fUint64": "18446744073709551615"}"#, Ok(r#"{"fUint64":"18446744073709551615"}"#)),
            ("Scalars", r#"{"fInt64": 9223372036854774784}"#, Ok(r#"{"fInt64":"9223372036854774784"}"#)),
            ("Scalars", r#"{"fInt64": -9223372036854775808}"#, Ok(r#"{"fInt64":"-9223372036854775808"}"#)),
            ("Scalars", r#"{"fUint64": 18446744073709549568}"#, Ok(r#"{"fUint64":"18446744073709549568"}"#)),
            ("Scalars", r#"{"fInt64": 9223372036854775807}"#, Ok(r#"{"fInt64":"9223372036854775807"}"#)),
            ("Scalars", r#"{"fInt32": "2147483647"}"#, Ok(r#"{"fInt32":2147483647}"#)),
            ("Scalars", r#"{"fInt32": "2\u003147483647"}"#, Ok(r#"{"fInt32":2147483647}"#)),
            ("Scalars", r#"{"fInt32": "0"}"#, Ok("{}")),
            ("Scalars", r#"{"fInt32": "-0"}"#, Ok("{}")),
            ("Scalars", r#"{"fInt32": "1e5"}"#, Ok(r#"{"fInt32":100000}"#)),
            ("Scalars", r#"{"fInt32": "1E2"}"#, Ok(r#"{"fInt32":100}"#)),
            ("Scalars", r#"{"fInt32": "1e+2"}"#, Ok(r#"{"fInt32":100}"#)),
            ("Scalars", r#"{"fInt32": "100e-2"}"#, Ok(r#"{"fInt32":1}"#)),
            ("Scalars", r#"{"fInt32": "1.0"}"#, Ok(r#"{"fInt32":1}"#)),
            ("Scalars", r#"{"fInt32": "-12.000"}"#, Ok(r#"{"fInt32":-12}"#)),
            ("Scalars", r#"{"fInt64": "1e18"}"#, Ok(r#"{"fInt64":"1000000000000000000"}"#)),
            ("Scalars", r#"{"fInt64": "9223372036854775807.0"}"#, Ok(r#"{"fInt64":"9223372036854775807"}"#)),
            ("Scalars", r#"{"fUint64": "1844674407370955161.5e1"}"#, Ok(r#"{"fUint64":"18446744073709551615"}"#)),
            ("Scalars", r#"{"fSint32": "-5", "fSfixed64": "-1e3", "fFixed32": 7.0}"#, Ok(r#"{"fSint32":-5,"fSfixed64":"-1000","fFixed32":7}"#)),
            ("Scalars", r#"{"fInt32": 100000.000}"#, Ok(r#"{"fInt32":100000}"#)),
            ("Scalars", r#"{"fInt32": 1e5}"#, Ok(r#"{"fInt32":100000}"#)),
            ("Scalars", r#"{"fInt32": 2.147483647e9}"#, Ok(r#"{"fInt32":2147483647}"#)),
            ("Scalars", r#"{"fInt32": -2.147483648e9}"#, Ok(r#"{"fInt32":-2147483648}"#)),
            ("Scalars", r#"{"fUint32": 4.294967295e9}"#, Ok(r#"{"fUint32":4294967295}"#)),
            ("Scalars", r#"{"fInt64": 1}"#, Ok(r#"{"fInt64":"1"}"#)),
            ("Scalars", r#"{"fUint64": 1}"#, Ok(r#"{"fUint64":"1"}"#)),
            ("Scalars", r#"{"fInt32": 2147483648}"#, Err(("fInt32", "out of range for int32"))),
            ("Scalars", r#"{"fInt32": -2147483649}"#, Err(("fInt32", "out of range for int32"))),
            ("Scalars", r#"{"fUint32": 4294967296}"#, Err(("fUint32", "out of range for uint32"))),
            ("Scalars", r#"{"fUint32": -1}"#, Err(("fUint32", "out of range for uint32"))),
            ("Scalars", r#"{"fUint32": "-1"}"#, Err(("fUint32", "out of range for uint32"))),
            ("Scalars", r#"{"fInt64": "9223372036854775808"}"#, Err(("fInt64", "out of range for int64"))),
            ("Scalars", r#"{"fInt64": "-9223372036854775809"}"#, Err(("fInt64", "out of range for int64"))),
            ("Scalars", r#"{"fInt64": 9223372036854775808}"#, Err(("fInt64", "out of range for int64"))),
            ("Scalars", r#"{"fInt64": 9.3e18}"#, Err(("fInt64", "out of range for int64"))),
            ("Scalars", r#"{"fInt64": 9223372036854775808.0}"#, Err(("fInt64", "out of range for int64"))),
            ("Scalars", r#"{"fUint64": "18446744073709551616"}"#, Err(("fUint64", "out of range for uint64"))),
            ("Scalars", r#"{"fUint64": 18446744073709551616}"#, Err(("fUint64", "out of range for uint64"))),
            ("Scalars", r#"{"fUint64": 1e20}"#, Err(("fUint64", "out of range for uint64"))),
            ("Scalars", r#"{"fUint64": "1e536870000"}"#, Err(("fUint64", "out of range for uint64"))),
            ("Scalars", r#"{"fInt32": 0.5}"#, Err(("fInt32", "not an integer"))),
            ("Scalars", r#"{"fInt32": 1.5}"#, Err(("fInt32", "not an integer"))),
            ("Scalars", r#"{"fUint32": 0.5}"#, Err(("fUint32", "not an integer"))),
            ("Scalars", r#"{"fInt64": "0.5"}"#, Err(("fInt64", "not an integer"))),
            ("Scalars", r#"{"fUint64": "0.5"}"#, Err(("fUint64", "not an integer"))),
            ("Scalars", r#"{"fInt32": "1e-1"}"#, Err(("fInt32", "not an integer"))),
            ("Scalars", r#"{"fInt32": true}"#, Err(("fInt32", "invalid type: boolean"))),
            ("Scalars", r#"{"fInt32": false}"#, Err(("fInt32", "invalid type: boolean"))),
            ("Scalars", r#"{"fInt32": "3x3"}"#, Err(("fInt32", "\"3x3\" is not a valid int32"))),
            ("Scalars", r#"{"fUint32": "3x3"}"#, Err(("fUint32", "not a valid uint32"))),
            ("Scalars", r#"{"fInt64": "3x3"}"#, Err(("fInt64", "not a valid int64"))),
            ("Scalars", r#"{"fUint64": "3x3"}"#, Err(("fUint64", "not a valid uint64"))),
            ("Scalars", r#"{"fInt32": "12abc"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "12 34"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "12,34"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", "{\"fInt32\": \"12\u{8C37}\u{6B4C}34\"}", Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "abc"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", "{\"fInt32\": \"\u{661}\u{662}\u{663}\"}", Err(("fInt32", "not a valid int32"))),
            ("Scalars", "{\"fInt64\": \"\u{FF11}\u{FF12}\u{FF13}\"}", Err(("fInt64", "not a valid int64"))),
            ("Scalars", r#"{"fInt32": ""}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fUint32": ""}"#, Err(("fUint32", "not a valid uint32"))),
            ("Scalars", r#"{"fInt64": ""}"#, Err(("fInt64", "not a valid int64"))),
            ("Scalars", r#"{"fUint64": ""}"#, Err(("fUint64", "not a valid uint64"))),
            ("Scalars", r#"{"fInt32": " 1"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "1 "}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "+1"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "01"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "-01"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "0x10"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "-"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "1e"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": ".5"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "5."}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": "Infinity"}"#, Err(("fInt32", "not a valid int32"))),
            ("Scalars", r#"{"fInt32": +1}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fInt32": 01}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fInt32": -01}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fInt32": 0x10}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"rInt32": [1, "2", 3e0]}"#, Ok(r#"{"rInt32":[1,2,3]}"#)),
            ("Scalars", r#"{"rInt32": [1, false, 3, 4]}"#, Err(("rInt32[1]", "invalid type: boolean"))),
            ("Scalars", r#"{"rInt32": [1, 2, "name", 4]}"#, Err(("rInt32[2]", "not a valid int32"))),
            ("Scalars", r#"{"rInt32": [1, 2, 3, {"a": 4}]}"#, Err(("rInt32[3]", "invalid type: map"))),
            ("Scalars", r#"{"rInt32": [1, 2, 3, 4,]}"#, Err(("", "malformed JSON"))),
            ("WellKnown", r#"{"i32w": "1e2", "i64w": "-1.0", "u64w": 1e3}"#, Ok(r#"{"i32w":100,"i64w":"-1","u64w":"1000"}"#)),
            ("WellKnown", r#"{"u32w": -1}"#, Err(("u32w", "out of range for uint32"))),
            ("WellKnown", r#"{"i64w": "+1"}"#, Err(("i64w", "not a valid int64"))),
        ]);
    }

    #[test]
    fn doubles_given_as_numbers_are_parsed_exactly() {
        // Each text must reach the backend as the double nearest to it, the value Rust's
        // own parser gives; serde_json's default fast path misses some by one bit.
        let texts = [
            "2.22507e-308",
            "-2.22507e-308",
            "1.7976931348623157e308",
            "0.30000000000000004",
            "3.4028234663852886e38",
            "4.3733721569800356e18",
            "9007199254740993",
            "123456789.12345678",
            "5e-324",
        ];
        for text in texts {
            let body = format!(r#"{{"fDouble": {text}}}"#);
            let msg =
                decode_message(&desc("Scalars"), body.as_bytes(), &Default::default()).unwrap();
            let got = msg.get_field_by_name("f_double").unwrap().as_f64().unwrap();
            let want: f64 = text.parse().unwrap();
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{text}: got {got:e}, want {want:e}"
            );
        }
    }

    #[test]
    #[rustfmt::skip]
    fn conformance_floats() {
        check_rows(&JsonOptions::default(), &[
            ("Scalars", r#"{"fFloat": 1.175494e-38}"#, Ok(r#"{"fFloat":1.175494e-38}"#)),
            ("Scalars", r#"{"fFloat": -1.175494e-38}"#, Ok(r#"{"fFloat":-1.175494e-38}"#)),
            ("Scalars", r#"{"fFloat": 3.402823e+38}"#, Ok(r#"{"fFloat":3.402823e38}"#)),
            ("Scalars", r#"{"fFloat": -3.402823e+38}"#, Ok(r#"{"fFloat":-3.402823e38}"#)),
            ("Scalars", r#"{"fFloat": 3.4028235e38}"#, Ok(r#"{"fFloat":3.4028235e38}"#)),
            ("Scalars", r#"{"fFloat": "-3.4028235e38"}"#, Ok(r#"{"fFloat":-3.4028235e38}"#)),
            ("Scalars", r#"{"fFloat": "1"}"#, Ok(r#"{"fFloat":1.0}"#)),
            ("Scalars", r#"{"fFloat": "1.175494e-38"}"#, Ok(r#"{"fFloat":1.175494e-38}"#)),
            ("Scalars", r#"{"fFloat": 0.1}"#, Ok(r#"{"fFloat":0.1}"#)),
            ("Scalars", r#"{"fFloat": 1e-45}"#, Ok(r#"{"fFloat":1e-45}"#)),
            ("Scalars", r#"{"fFloat": 1e-50}"#, Ok("{}")),
            ("Scalars", r#"{"fFloat": "NaN"}"#, Ok(r#"{"fFloat":"NaN"}"#)),
            ("Scalars", r#"{"fFloat": "Infinity"}"#, Ok(r#"{"fFloat":"Infinity"}"#)),
            ("Scalars", r#"{"fFloat": "-Infinity"}"#, Ok(r#"{"fFloat":"-Infinity"}"#)),
            ("Scalars", r#"{"fFloat": NaN}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fFloat": Infinity}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fFloat": -Infinity}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fFloat": -3.502823e+38}"#, Err(("fFloat", "out of range for float"))),
            ("Scalars", r#"{"fFloat": 3.502823e+38}"#, Err(("fFloat", "out of range for float"))),
            ("Scalars", r#"{"fFloat": 3.4028236e38}"#, Err(("fFloat", "out of range for float"))),
            ("Scalars", r#"{"fFloat": "1e39"}"#, Err(("fFloat", "out of range for float"))),
            ("Scalars", r#"{"fFloat": ""}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": "12abc"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": "abc"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": "12 34"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": "12,34"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", "{\"fFloat\": \"12\u{8C37}\u{6B4C}34\"}", Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": true}"#, Err(("fFloat", "invalid type: boolean"))),
            ("Scalars", r#"{"fFloat": false}"#, Err(("fFloat", "invalid type: boolean"))),
            ("Scalars", r#"{"fFloat": "inf"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": "nan"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": "infinity"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": "+1"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": ".5"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": "1."}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fFloat": " 1"}"#, Err(("fFloat", "not a valid float"))),
            ("Scalars", r#"{"fDouble": 2.22507e-308}"#, Ok(r#"{"fDouble":2.22507e-308}"#)),
            ("Scalars", r#"{"fDouble": -2.22507e-308}"#, Ok(r#"{"fDouble":-2.22507e-308}"#)),
            ("Scalars", r#"{"fDouble": 1.79769e+308}"#, Ok(r#"{"fDouble":1.79769e308}"#)),
            ("Scalars", r#"{"fDouble": -1.79769e+308}"#, Ok(r#"{"fDouble":-1.79769e308}"#)),
            ("Scalars", r#"{"fDouble": "1"}"#, Ok(r#"{"fDouble":1.0}"#)),
            ("Scalars", r#"{"fDouble": "1.5e3"}"#, Ok(r#"{"fDouble":1500.0}"#)),
            ("Scalars", r#"{"fDouble": 0.1}"#, Ok(r#"{"fDouble":0.1}"#)),
            ("Scalars", r#"{"fDouble": "NaN"}"#, Ok(r#"{"fDouble":"NaN"}"#)),
            ("Scalars", r#"{"fDouble": "Infinity"}"#, Ok(r#"{"fDouble":"Infinity"}"#)),
            ("Scalars", r#"{"fDouble": "-Infinity"}"#, Ok(r#"{"fDouble":"-Infinity"}"#)),
            ("Scalars", r#"{"fDouble": -0}"#, Ok(r#"{"fDouble":-0.0}"#)),
            ("Scalars", r#"{"fDouble": "-0"}"#, Ok(r#"{"fDouble":-0.0}"#)),
            ("Scalars", r#"{"fFloat": -0.0}"#, Ok(r#"{"fFloat":-0.0}"#)),
            ("Scalars", r#"{"rDouble": [-0.0, 0, 1e-320]}"#, Ok(r#"{"rDouble":[-0.0,0.0,1e-320]}"#)),
            ("Scalars", r#"{"fDouble": NaN}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fDouble": -1.89769e+308}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fDouble": +1.89769e+308}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fDouble": "1e309"}"#, Err(("fDouble", "out of range for double"))),
            ("Scalars", r#"{"fDouble": "-1.89769e+308"}"#, Err(("fDouble", "out of range for double"))),
            ("Scalars", r#"{"fDouble": ""}"#, Err(("fDouble", "not a valid double"))),
            ("Scalars", r#"{"fDouble": "-inf"}"#, Err(("fDouble", "not a valid double"))),
            ("WellKnown", r#"{"fw": "NaN", "dw": "-Infinity"}"#, Ok(r#"{"fw":"NaN","dw":"-Infinity"}"#)),
            ("WellKnown", r#"{"fw": 3.5e38}"#, Err(("fw", "out of range for float"))),
            ("WellKnown", r#"{"fw": "0.1"}"#, Ok(r#"{"fw":0.1}"#)),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn conformance_bools_strings_bytes_enums() {
        check_rows(&JsonOptions::default(), &[
            ("Scalars", r#"{"fBool":true}"#, Ok(r#"{"fBool":true}"#)),
            ("Scalars", r#"{"fBool":false}"#, Ok("{}")),
            ("Scalars", r#"{"fBool":0}"#, Err(("fBool", "expected a boolean"))),
            ("Scalars", r#"{"fBool":1}"#, Err(("fBool", "expected a boolean"))),
            ("Scalars", r#"{"fBool":True}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fBool":FALSE}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fBool":"true"}"#, Err(("fBool", "expected a boolean"))),
            ("Scalars", r#"{"fBool":"false"}"#, Err(("fBool", "expected a boolean"))),
            ("Scalars", r#"{"fString": "Hello world!"}"#, Ok(r#"{"fString":"Hello world!"}"#)),
            ("Scalars", "{\"fString\": \"\u{8C37}\u{6B4C}\"}", Ok("{\"fString\":\"\u{8C37}\u{6B4C}\"}")),
            ("Scalars", r#"{"fString": "\"\\\/\b\f\n\r\t"}"#, Ok(r#"{"fString":"\"\\/\b\f\n\r\t"}"#)),
            ("Scalars", r#"{"fString": "\u8C37\u6B4C"}"#, Ok("{\"fString\":\"\u{8C37}\u{6B4C}\"}")),
            ("Scalars", r#"{"fString": "\u8c37\u6b4c"}"#, Ok("{\"fString\":\"\u{8C37}\u{6B4C}\"}")),
            ("Scalars", r#"{"fString": "\uD83D\uDE01"}"#, Ok("{\"fString\":\"\u{1F601}\"}")),
            ("Scalars", r#"{"fString": "Hello\u0000world!"}"#, Ok(r#"{"fString":"Hello\u0000world!"}"#)),
            ("Scalars", r#"{"fString": "\U8C37\U6b4C"}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fString": "\uXXXX\u6B4C"}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fString": "\u8C3"}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fString": "\uD800"}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fString": "\uDC00"}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fString": "\uDE01\uD83D"}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fString": "abc\"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fString": 12345}"#, Err(("fString", "invalid type: integer"))),
            ("Scalars", r#"{'fString': "x"}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fString": 'x'}"#, Err(("", "malformed JSON"))),
            ("Book", r#"{"tags": ["1", 2, "3", "4"]}"#, Err(("tags[1]", "invalid type: integer"))),
            ("Book", r#"{"tags": ["1", "2", false, "4"]}"#, Err(("tags[2]", "invalid type: boolean"))),
            ("Book", r#"{"tags": ["1", "2", {"a": 4}]}"#, Err(("tags[2]", "invalid type: map"))),
            ("Scalars", r#"{"fBytes": "AQI="}"#, Ok(r#"{"fBytes":"AQI="}"#)),
            ("Scalars", r#"{"fBytes": "AQI"}"#, Ok(r#"{"fBytes":"AQI="}"#)),
            ("Scalars", r#"{"fBytes": "-_"}"#, Ok(r#"{"fBytes":"+w=="}"#)),
            ("Scalars", r#"{"fBytes": "-_8="}"#, Ok(r#"{"fBytes":"+/8="}"#)),
            ("Scalars", r#"{"fBytes": "+/8"}"#, Ok(r#"{"fBytes":"+/8="}"#)),
            ("Scalars", r#"{"rBytes": ["AAEC", "AQI="]}"#, Ok(r#"{"rBytes":["AAEC","AQI="]}"#)),
            ("Scalars", r#"{"fBytes": "A QI="}"#, Err(("fBytes", "invalid base64"))),
            ("Scalars", r#"{"fBytes": "AQI=="}"#, Err(("fBytes", "invalid base64"))),
            ("Scalars", r#"{"fBytes": "+_8="}"#, Err(("fBytes", "invalid base64"))),
            ("Scalars", r#"{"fBytes": "A"}"#, Err(("fBytes", "invalid base64"))),
            ("Scalars", r#"{"fEnum": "FICTION"}"#, Ok(r#"{"fEnum":"FICTION"}"#)),
            ("Scalars", r#"{"fEnum": 0}"#, Ok("{}")),
            ("Scalars", r#"{"fEnum": 1}"#, Ok(r#"{"fEnum":"FICTION"}"#)),
            ("Scalars", r#"{"fEnum": "2"}"#, Ok(r#"{"fEnum":"SCIENCE"}"#)),
            ("Scalars", r#"{"fEnum": "-7"}"#, Ok(r#"{"fEnum":-7}"#)),
            ("Scalars", r#"{"rEnum": ["1", "FICTION"]}"#, Ok(r#"{"rEnum":["FICTION","FICTION"]}"#)),
            ("Scalars", r#"{"fEnum": "+1"}"#, Err(("fEnum", "unknown value \"+1\""))),
            ("Scalars", r#"{"fEnum": "1.0"}"#, Err(("fEnum", "unknown value \"1.0\""))),
            ("Scalars", r#"{"fEnum": "2147483648"}"#, Err(("fEnum", "unknown value"))),
            ("Scalars", r#"{"fEnum": 123}"#, Ok(r#"{"fEnum":123}"#)),
            ("Scalars", r#"{"fEnum": -7}"#, Ok(r#"{"fEnum":-7}"#)),
            ("Scalars", r#"{"fEnum": FICTION}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"fEnum": ["FICTION"]}"#, Err(("fEnum", "invalid type: sequence"))),
            ("Scalars", r#"{"fEnum": [2]}"#, Err(("fEnum", "invalid type: sequence"))),
            ("Scalars", r#"{"fEnum": true}"#, Err(("fEnum", "invalid type: boolean"))),
            ("Scalars", r#"{"fEnum": "fiction"}"#, Err(("fEnum", "unknown value \"fiction\""))),
            ("Scalars", r#"{"fEnum": 2147483648}"#, Err(("fEnum", "out of range"))),
            ("Scalars", r#"{"fEnum": 1.5}"#, Err(("fEnum", "not an integer"))),
            ("Scalars", r#"{"rEnum": ["FICTION", "SCIENCE", 0]}"#, Ok(r#"{"rEnum":["FICTION","SCIENCE","GENRE_UNSPECIFIED"]}"#)),
            ("Scalars", r#"{"optional_nested_enum": "X"}"#, Err(("optional_nested_enum", "unknown field"))),
            ("Scalars", r#"{"rEnum": ["UNKNOWN_ENUM_VALUE"]}"#, Err(("rEnum[0]", "unknown value"))),
            ("Scalars", r#"{"mEnum": {"key": "UNKNOWN_ENUM_VALUE"}}"#, Err(("mEnum.key", "unknown value"))),
            ("Conformance", r#"{"aliased": "ALIAS_BAZ"}"#, Ok(r#"{"aliased":"ALIAS_BAZ"}"#)),
            ("Conformance", r#"{"aliased": "MOO"}"#, Ok(r#"{"aliased":"ALIAS_BAZ"}"#)),
            ("Conformance", r#"{"aliased": "moo"}"#, Ok(r#"{"aliased":"ALIAS_BAZ"}"#)),
            ("Conformance", r#"{"aliased": "bAz"}"#, Ok(r#"{"aliased":"ALIAS_BAZ"}"#)),
            ("Conformance", r#"{"repeatedAliased": ["moo", 1, 2]}"#, Ok(r#"{"repeatedAliased":["ALIAS_BAZ","ALIAS_BAR","ALIAS_BAZ"]}"#)),
        ]);
        let lenient = JsonOptions { ignore_unknown_fields: true, ..JsonOptions::default() };
        check_rows(&lenient, &[
            ("Scalars", r#"{"fEnum": "UNKNOWN_ENUM_VALUE"}"#, Ok("{}")),
            ("Scalars", r#"{"rEnum": ["UNKNOWN_ENUM_VALUE"]}"#, Ok("{}")),
            ("Scalars", r#"{"mEnum": {"key": "UNKNOWN_ENUM_VALUE"}}"#, Ok("{}")),
            ("Scalars", r#"{"rEnum": ["FICTION", "UNKNOWN_ENUM_VALUE", "FICTION"]}"#, Ok(r#"{"rEnum":["FICTION","FICTION"]}"#)),
            ("Scalars", r#"{"mEnum": {"key1": "FICTION", "key2": "UNKNOWN_ENUM_VALUE"}}"#, Ok(r#"{"mEnum":{"key1":"FICTION"}}"#)),
            ("Scalars", r#"{"unknown": 1, "u2": "a", "u3": true, "u4": false, "u5": null, "u6": {"a": 1}, "u7": [1]}"#, Ok("{}")),
            ("Scalars", r#"{"fEnum": 5}"#, Ok(r#"{"fEnum":5}"#)),
            ("Scalars", r#"{"fInt32": "x"}"#, Err(("fInt32", "not a valid int32"))),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn conformance_nulls_oneofs_maps_and_names() {
        check_rows(&JsonOptions::default(), &[
            ("Scalars", r#"{"fDouble":null,"fFloat":null,"fInt32":null,"fInt64":null,"fUint32":null,"fUint64":null,"fSint32":null,"fSint64":null,"fFixed32":null,"fFixed64":null,"fSfixed32":null,"fSfixed64":null,"fBool":null,"fString":null,"fBytes":null,"fEnum":null,"rInt32":null,"rEnum":null,"rBytes":null,"mInt":null,"mBool":null,"mEnum":null,"mMsg":null,"mTs":null,"rDouble":null}"#, Ok("{}")),
            ("Book", r#"{"author":null,"coAuthors":null,"labels":null,"publishTime":null,"edition":null}"#, Ok("{}")),
            ("WellKnown", r#"{"ts":null,"dur":null,"mask":null,"i32w":null,"i64w":null,"u32w":null,"u64w":null,"fw":null,"dw":null,"bw":null,"sw":null,"byw":null,"st":null,"lv":null,"any":null,"empty":null,"rTs":null}"#, Ok("{}")),
            ("WellKnown", r#"{"val":null}"#, Ok(r#"{"val":null}"#)),
            ("Scalars", r#"{"rInt32": [1, null, 2]}"#, Err(("rInt32[1]", "invalid type: null"))),
            ("Book", r#"{"coAuthors": [{"name":"a"}, null, {"name":"b"}]}"#, Err(("coAuthors[1]", "invalid type: null"))),
            ("WellKnown", r#"{"rTs": [null]}"#, Err(("rTs[0]", "invalid type: null"))),
            ("Scalars", r#"{"mInt": {null: "a"}}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"mInt": {"0": null}}"#, Err(("mInt.0", "invalid type: null"))),
            ("Scalars", r#"{"mMsg": {"k": null}}"#, Err(("mMsg.k", "invalid type: null"))),
            ("Conformance", r#"{"mapValue": {"k": null}}"#, Ok(r#"{"mapValue":{"k":null}}"#)),
            ("Conformance", r#"{"repeatedValue": [null, 1]}"#, Ok(r#"{"repeatedValue":[null,1.0]}"#)),
            ("Conformance", r#"{"optionalNullValue": null}"#, Ok("{}")),
            ("Conformance", r#"{"optionalNullValue": "NULL_VALUE"}"#, Ok("{}")),
            ("Conformance", r#"{"oneofNullValue": null}"#, Ok(r#"{"oneofNullValue":null}"#)),
            ("Conformance", r#"{"oneofNullValue": "NULL_VALUE"}"#, Ok(r#"{"oneofNullValue":null}"#)),
            ("Conformance", r#"{"optionalNullValue": 0}"#, Ok("{}")),
            ("Conformance", r#"{"oneofNullValue": 0}"#, Ok(r#"{"oneofNullValue":null}"#)),
            ("Conformance", r#"{"oneofNullValue": 1}"#, Err(("oneofNullValue", ""))),
            ("Conformance", r#"{"oneofUint32": 1, "oneofString": "test"}"#, Err(("oneofString", "`oneofUint32` and `oneofString` are both set"))),
            ("Conformance", r#"{"oneofString": "test", "oneofUint32": 1}"#, Err(("oneofUint32", "are both set"))),
            ("Conformance", r#"{"oneofUint32": null, "oneofString": "test"}"#, Ok(r#"{"oneofString":"test"}"#)),
            ("Conformance", r#"{"oneofString": "test", "oneofUint32": null}"#, Ok(r#"{"oneofString":"test"}"#)),
            ("Conformance", r#"{"oneofString": "test", "oneofNullValue": null}"#, Err(("oneofNullValue", "are both set"))),
            ("Conformance", r#"{"oneofUint32": 0}"#, Ok(r#"{"oneofUint32":0}"#)),
            ("Conformance", r#"{"oneofMessage": {}}"#, Ok(r#"{"oneofMessage":{}}"#)),
            ("Conformance", r#"{"oneofString": ""}"#, Ok(r#"{"oneofString":""}"#)),
            ("Conformance", r#"{"oneofBytes": ""}"#, Ok(r#"{"oneofBytes":""}"#)),
            ("Conformance", r#"{"oneofBool": false}"#, Ok(r#"{"oneofBool":false}"#)),
            ("Conformance", r#"{"oneofUint64": 0}"#, Ok(r#"{"oneofUint64":"0"}"#)),
            ("Conformance", r#"{"oneofFloat": 0.0}"#, Ok(r#"{"oneofFloat":0.0}"#)),
            ("Conformance", r#"{"oneofDouble": 0.0}"#, Ok(r#"{"oneofDouble":0.0}"#)),
            ("Conformance", r#"{"oneofEnum": "GENRE_UNSPECIFIED"}"#, Ok(r#"{"oneofEnum":"GENRE_UNSPECIFIED"}"#)),
            ("Scalars", r#"{"mInt": {"1": "2", "-3": "4"}}"#, Ok(r#"{"mInt":{"1":"2","-3":"4"}}"#)),
            ("Scalars", r#"{"mInt": {"\u0031": "2"}}"#, Ok(r#"{"mInt":{"1":"2"}}"#)),
            ("Scalars", r#"{"mBool": {"true": "1", "false": "0"}}"#, Ok(r#"{"mBool":{"true":"1","false":"0"}}"#)),
            ("Scalars", r#"{"mBool": {"tr\u0075e": "1"}}"#, Ok(r#"{"mBool":{"true":"1"}}"#)),
            ("Scalars", r#"{"mTs": {"18446744073709551615": "1970-01-01T00:00:00Z"}}"#, Ok(r#"{"mTs":{"18446744073709551615":"1970-01-01T00:00:00Z"}}"#)),
            ("Conformance", r#"{"mapInt64": {"-9223372036854775808": "1", "2": 3}, "mapUint32": {"4294967295": 1}, "mapSint32": {"-1": -1}, "mapFixed64": {"18446744073709551615": "1"}}"#, Ok(r#"{"mapInt64":{"-9223372036854775808":"1","2":"3"},"mapUint32":{"4294967295":1},"mapSint32":{"-1":-1},"mapFixed64":{"18446744073709551615":"1"}}"#)),
            ("Conformance", r#"{"mapBytes": {"k": "AQI=", "": ""}}"#, Ok(r#"{"mapBytes":{"k":"AQI=","":""}}"#)),
            ("Scalars", r#"{"mInt": {1: "2"}}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"mBool": {true: "1"}}"#, Err(("", "malformed JSON"))),
            ("Scalars", r#"{"mInt": {"01": "a", "-0": "b"}}"#, Ok(r#"{"mInt":{"1":"a","0":"b"}}"#)),
            ("Scalars", r#"{"mInt": {"+1": "a"}}"#, Err(("mInt.+1", "not a valid int32"))),
            ("Scalars", r#"{"mInt": {" 1": "a"}}"#, Err(("mInt. 1", "not a valid int32"))),
            ("Scalars", r#"{"mInt": {"1e2": "a"}}"#, Err(("mInt.1e2", "not a valid int32"))),
            ("Scalars", r#"{"mInt": {"1.0": "a"}}"#, Err(("mInt.1.0", "not a valid int32"))),
            ("Scalars", r#"{"mInt": {"": "a"}}"#, Err(("mInt.", "not a valid int32"))),
            ("Conformance", r#"{"mapUint32": {"-1": 1}}"#, Err(("mapUint32.-1", "not a valid uint32"))),
            ("Conformance", r#"{"mapInt64": {"9223372036854775808": 1}}"#, Err(("mapInt64.9223372036854775808", "not a valid int64"))),
            ("Scalars", r#"{"mBool": {"True": "1"}}"#, Err(("mBool.True", "not a valid bool"))),
            ("Scalars", r#"{"mBool": {"1": "1"}}"#, Err(("mBool.1", "not a valid bool"))),
            ("Scalars", r#"{"mInt": {"1": "a", "1": "b"}}"#, Err(("mInt.1", "duplicate key `1`"))),
            ("Scalars", r#"{"mInt": {"1": "a", "\u0031": "b"}}"#, Err(("mInt.1", "duplicate key `1`"))),
            ("Scalars", r#"{"mInt": {"1": "a", "-0": "b", "0": "c"}}"#, Err(("mInt.0", "duplicate key"))),
            ("Scalars", r#"{"mInt": {"1": "a", "01": "b"}}"#, Err(("mInt.01", "duplicate key"))),
            ("Conformance", r#"{"fieldname1": 1, "fieldName2": 2, "FieldName3": 3, "fieldName4": 4}"#, Ok(r#"{"fieldname1":1,"fieldName2":2,"FieldName3":3,"fieldName4":4}"#)),
            ("Conformance", r#"{"field0name5": 5, "field0Name6": 6}"#, Ok(r#"{"field0name5":5,"field0Name6":6}"#)),
            ("Conformance", r#"{"fieldName7": 7, "FieldName8": 8, "fieldName9": 9, "FieldName10": 10, "FIELDNAME11": 11, "FIELDName12": 12}"#, Ok(r#"{"fieldName7":7,"FieldName8":8,"fieldName9":9,"FieldName10":10,"FIELDNAME11":11,"FIELDName12":12}"#)),
            ("Conformance", r#"{"FieldName13": 13, "FieldName14": 14, "fieldName15": 15, "fieldName16": 16, "fieldName17": 17, "FieldName18": 18}"#, Ok(r#"{"FieldName13":13,"FieldName14":14,"fieldName15":15,"fieldName16":16,"fieldName17":17,"FieldName18":18}"#)),
            ("Conformance", r#"{"fieldname1": 1, "field_name2": 2, "_field_name3": 3, "field__name4_": 4, "field0name5": 5, "field_0_name6": 6, "fieldName7": 7, "FieldName8": 8, "field_Name9": 9, "Field_Name10": 10, "FIELD_NAME11": 11, "FIELD_name12": 12, "__field_name13": 13, "__Field_name14": 14, "field__name15": 15, "field__Name16": 16, "field_name17__": 17, "Field_name18__": 18}"#, Ok(r#"{"fieldname1":1,"fieldName2":2,"FieldName3":3,"fieldName4":4,"field0name5":5,"field0Name6":6,"fieldName7":7,"FieldName8":8,"fieldName9":9,"FieldName10":10,"FIELDNAME11":11,"FIELDName12":12,"FieldName13":13,"FieldName14":14,"fieldName15":15,"fieldName16":16,"fieldName17":17,"FieldName18":18}"#)),
            ("Conformance", r#"{"fieldn\u0061me1": 1}"#, Ok(r#"{"fieldname1":1}"#)),
            ("Conformance", r#"{fieldname1: 1}"#, Err(("", "malformed JSON"))),
            ("Conformance", r#"{"fieldname1":1 ,}"#, Err(("", "malformed JSON"))),
            ("Conformance", "{\n  // comment\n  \"fieldname1\": 1\n}", Err(("", "malformed JSON"))),
            ("Conformance", "{ \"fieldname1\" : 1 , \"fieldName2\" : 2 }", Ok(r#"{"fieldname1":1,"fieldName2":2}"#)),
            ("Conformance", "{\n\"fieldname1\"\n:\n1\n,\n\"fieldName2\"\n:\n2\n}\n", Ok(r#"{"fieldname1":1,"fieldName2":2}"#)),
            ("Conformance", r#"{ "fieldname1": 1 "fieldName2": 2 }"#, Err(("", "malformed JSON"))),
            ("Conformance", r#"{"oneofMessage": {"name": "a"}, "oneofMessage": {}}"#, Err(("oneofMessage", "duplicate key"))),
            ("Conformance", r#"{"oneof_message": {"name": "a"}, "oneofMessage": {}}"#, Err(("oneofMessage", "given twice"))),
            ("Conformance", r#"{"oneofMessage": {"name": "a"}, "oneof_message": {}}"#, Err(("oneof_message", "given twice"))),
            ("Conformance", r#"{"fieldname1": 1, "Fieldname1": 2}"#, Err(("Fieldname1", "unknown field `Fieldname1`"))),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/omnigate.test.Author", "nope": 1}}"#, Err(("optionalAny.nope", "unknown field"))),
            ("Book", "null", Err(("", "but it is null"))),
        ]);
        let lenient = JsonOptions { ignore_unknown_fields: true, ..JsonOptions::default() };
        check_rows(&lenient, &[
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/omnigate.test.Author", "nope": 1, "name": "n"}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/omnigate.test.Author","name":"n"}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s", "extra": 1}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}}"#)),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn conformance_timestamps_and_durations() {
        check_rows(&JsonOptions::default(), &[
            ("WellKnown", r#"{"ts": "0001-01-01T00:00:00Z"}"#, Ok(r#"{"ts":"0001-01-01T00:00:00Z"}"#)),
            ("WellKnown", r#"{"ts": "9999-12-31T23:59:59.999999999Z"}"#, Ok(r#"{"ts":"9999-12-31T23:59:59.999999999Z"}"#)),
            ("WellKnown", r#"{"rTs": ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"]}"#, Ok(r#"{"rTs":["0001-01-01T00:00:00Z","9999-12-31T23:59:59.999999999Z"]}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.000Z"}"#, Ok(r#"{"ts":"1970-01-01T00:00:00Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.000000001Z"}"#, Ok(r#"{"ts":"1970-01-01T00:00:00.000000001Z"}"#)),
            ("WellKnown", r#"{"ts": "1969-12-31T23:59:59.999999999Z"}"#, Ok(r#"{"ts":"1969-12-31T23:59:59.999999999Z"}"#)),
            ("WellKnown", r#"{"ts": "1969-12-31T23:59:49.500Z"}"#, Ok(r#"{"ts":"1969-12-31T23:59:49.500Z"}"#)),
            ("WellKnown", r#"{"ts": "1993-02-10T00:00:00.000Z"}"#, Ok(r#"{"ts":"1993-02-10T00:00:00Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T08:00:01+08:00"}"#, Ok(r#"{"ts":"1970-01-01T00:00:01Z"}"#)),
            ("WellKnown", r#"{"ts": "1969-12-31T16:00:01-08:00"}"#, Ok(r#"{"ts":"1970-01-01T00:00:01Z"}"#)),
            ("WellKnown", r#"{"ts": "1969-12-31T16:00:00-08:00"}"#, Ok(r#"{"ts":"1970-01-01T00:00:00Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.000000000Z"}"#, Ok(r#"{"ts":"1970-01-01T00:00:00Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.010000000Z"}"#, Ok(r#"{"ts":"1970-01-01T00:00:00.010Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.000010000Z"}"#, Ok(r#"{"ts":"1970-01-01T00:00:00.000010Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.000000010Z"}"#, Ok(r#"{"ts":"1970-01-01T00:00:00.000000010Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.1Z"}"#, Ok(r#"{"ts":"1970-01-01T00:00:00.100Z"}"#)),
            ("WellKnown", r#"{"ts": "2000-02-29T00:00:00Z"}"#, Ok(r#"{"ts":"2000-02-29T00:00:00Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-02T01:00:00+02:00"}"#, Ok(r#"{"ts":"1970-01-01T23:00:00Z"}"#)),
            ("WellKnown", r#"{"ts": "0001-01-01T00:00:00-00:01"}"#, Ok(r#"{"ts":"0001-01-01T00:01:00Z"}"#)),
            ("WellKnown", r#"{"ts": "9999-12-31T23:59:59+00:01"}"#, Ok(r#"{"ts":"9999-12-31T23:58:59Z"}"#)),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00-11:30"}"#, Ok(r#"{"ts":"1970-01-01T11:30:00Z"}"#)),
            ("WellKnown", r#"{"ts": "0000-01-01T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "10000-01-01T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "0001-01-01T00:00:00"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "0001-01-01 00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "0001-01-01T00:00:00z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "0001-01-01t00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T08:00:01+0800"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-13-01T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-00-01T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-32T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-00T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T24:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T25:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T00:60:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:60Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00+24:00"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00+00:60"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "0001-01-01T00:00:00+00:01"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "9999-12-31T23:59:59-00:01"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.1234567890Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.123aZ"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-01T00:00:00.Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "999-01-01T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "00001-01-01T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-1-01T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "1970-01-1T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "2001-02-29T00:00:00Z"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": "2001-02-28"}"#, Err(("ts", "timestamp"))),
            ("WellKnown", r#"{"ts": 0}"#, Err(("ts", "invalid type: integer"))),
            ("WellKnown", r#"{"dur": "-315576000000.999999999s"}"#, Ok(r#"{"dur":"-315576000000.999999999s"}"#)),
            ("WellKnown", r#"{"dur": "315576000000.999999999s"}"#, Ok(r#"{"dur":"315576000000.999999999s"}"#)),
            ("WellKnown", r#"{"dur": "-5s"}"#, Ok(r#"{"dur":"-5s"}"#)),
            ("WellKnown", r#"{"dur": "-0.5s"}"#, Ok(r#"{"dur":"-0.500s"}"#)),
            ("WellKnown", r#"{"dur": "0s"}"#, Ok(r#"{"dur":"0s"}"#)),
            ("WellKnown", r#"{"dur": "1.000000000s"}"#, Ok(r#"{"dur":"1s"}"#)),
            ("WellKnown", r#"{"dur": "1.010000000s"}"#, Ok(r#"{"dur":"1.010s"}"#)),
            ("WellKnown", r#"{"dur": "1.000010000s"}"#, Ok(r#"{"dur":"1.000010s"}"#)),
            ("WellKnown", r#"{"dur": "1.000000010s"}"#, Ok(r#"{"dur":"1.000000010s"}"#)),
            ("Conformance", r#"{"repeatedDuration": ["1.5s", "-1.5s"]}"#, Ok(r#"{"repeatedDuration":["1.500s","-1.500s"]}"#)),
            ("WellKnown", r#"{"dur": "1"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": "-315576000001.000000000s"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": "315576000001.000000000s"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": "1.0000000001s"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": "1.s"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": ".5s"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": "+1s"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": "1S"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": " 1s"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": "--1s"}"#, Err(("dur", "duration"))),
            ("WellKnown", r#"{"dur": 1}"#, Err(("dur", "invalid type: integer"))),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn conformance_other_well_known_types() {
        check_rows(&JsonOptions::default(), &[
            ("WellKnown", r#"{"mask": "foo,barBaz"}"#, Ok(r#"{"mask":"foo,barBaz"}"#)),
            ("WellKnown", r#"{"mask": ""}"#, Ok(r#"{"mask":""}"#)),
            ("WellKnown", r#"{"mask": "a.bC.dEf,g"}"#, Ok(r#"{"mask":"a.bC.dEf,g"}"#)),
            ("WellKnown", r#"{"mask": "foo,bar_bar"}"#, Err(("mask", "invalid field mask"))),
            ("WellKnown", r#"{"bw": false, "i32w": 0, "u32w": 0, "i64w": 0, "u64w": 0, "fw": 0, "dw": 0, "sw": "", "byw": ""}"#, Ok(r#"{"bw":false,"i32w":0,"u32w":0,"i64w":"0","u64w":"0","fw":0.0,"dw":0.0,"sw":"","byw":""}"#)),
            ("WellKnown", r#"{"bw": true, "i32w": 1, "u32w": 1, "i64w": "1", "u64w": "1", "fw": 1, "dw": 1, "sw": "1", "byw": "AQI="}"#, Ok(r#"{"bw":true,"i32w":1,"u32w":1,"i64w":"1","u64w":"1","fw":1.0,"dw":1.0,"sw":"1","byw":"AQI="}"#)),
            ("Conformance", r#"{"repeatedInt64Wrapper": [0, "1"], "repeatedFloatWrapper": [0, 1, "NaN"], "repeatedBytesWrapper": ["", "AQI="]}"#, Ok(r#"{"repeatedInt64Wrapper":["0","1"],"repeatedFloatWrapper":[0.0,1.0,"NaN"],"repeatedBytesWrapper":["","AQI="]}"#)),
            ("Conformance", r#"{"repeatedInt64Wrapper": [null]}"#, Err(("repeatedInt64Wrapper[0]", "invalid type: null"))),
            ("Conformance", r#"{"optionalStruct": {"nullValue": null, "intValue": 1234, "boolValue": true, "doubleValue": 1234.5678, "stringValue": "Hello world!", "listValue": [1234, "5678"], "objectValue": {"value": 0}}}"#, Ok(r#"{"optionalStruct":{"nullValue":null,"intValue":1234.0,"boolValue":true,"doubleValue":1234.5678,"stringValue":"Hello world!","listValue":[1234.0,"5678"],"objectValue":{"value":0.0}}}"#)),
            ("Conformance", r#"{"optionalStruct": {"listValue": []}}"#, Ok(r#"{"optionalStruct":{"listValue":[]}}"#)),
            ("Conformance", r#"{"optionalStruct": {}}"#, Ok(r#"{"optionalStruct":{}}"#)),
            ("Conformance", r#"{"optionalStruct": []}"#, Err(("optionalStruct", "invalid type: sequence"))),
            ("Conformance", r#"{"optionalValue": 1}"#, Ok(r#"{"optionalValue":1.0}"#)),
            ("Conformance", r#"{"optionalValue": 1.5}"#, Ok(r#"{"optionalValue":1.5}"#)),
            ("Conformance", r#"{"optionalValue": false}"#, Ok(r#"{"optionalValue":false}"#)),
            ("Conformance", r#"{"optionalValue": null}"#, Ok(r#"{"optionalValue":null}"#)),
            ("Conformance", r#"{"optionalValue": "hello"}"#, Ok(r#"{"optionalValue":"hello"}"#)),
            ("Conformance", r#"{"optionalValue": "NaN"}"#, Ok(r#"{"optionalValue":"NaN"}"#)),
            ("Conformance", r#"{"optionalValue": [0, "hello"]}"#, Ok(r#"{"optionalValue":[0.0,"hello"]}"#)),
            ("Conformance", r#"{"optionalValue": {"value": 1}}"#, Ok(r#"{"optionalValue":{"value":1.0}}"#)),
            ("Conformance", r#"{"repeatedValue": [["a"]]}"#, Ok(r#"{"repeatedValue":[["a"]]}"#)),
            ("Conformance", r#"{"repeatedListValue": [["a"]]}"#, Ok(r#"{"repeatedListValue":[["a"]]}"#)),
            ("Conformance", r#"{"repeatedListValue": [{"a": 1}]}"#, Err(("repeatedListValue[0]", "invalid type: map"))),
            ("Conformance", &format!(r#"{{"optionalValue": {}1{}}}"#, "[".repeat(25), "]".repeat(25)), Ok(&format!(r#"{{"optionalValue":{}1.0{}}}"#, "[".repeat(25), "]".repeat(25)))),
            ("Conformance", &format!(r#"{{"optionalValue": {}1{}}}"#, "[".repeat(200), "]".repeat(200)), Err(("", "nesting"))),
            ("Conformance", &format!(r#"{{"optionalValue": {{{}"value": 1{}}}}}"#, r#""n": {"#.repeat(25), "}".repeat(25)), Ok(&format!(r#"{{"optionalValue":{{{}"value":1.0{}}}}}"#, r#""n":{"#.repeat(25), "}".repeat(25)))),
            ("Conformance", &format!(r#"{{"optionalValue": {{{}"value": 1{}}}}}"#, r#""n": {"#.repeat(200), "}".repeat(200)), Err(("", "nesting"))),
            ("WellKnown", r#"{"empty": {}}"#, Ok(r#"{"empty":{}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/omnigate.test.Author", "name": "n", "authorId": 1}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/omnigate.test.Author","name":"n","authorId":"1"}}"#)),
            ("Conformance", r#"{"optionalAny": {"name": "n", "@type": "type.googleapis.com/omnigate.test.Author"}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/omnigate.test.Author","name":"n"}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Any", "value": {"@type": "type.googleapis.com/omnigate.test.Author", "name": "n"}}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Any","value":{"@type":"type.googleapis.com/omnigate.test.Author","name":"n"}}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Int32Value", "value": 12345}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Int32Value","value":12345}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1.5s"}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1.500s"}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Timestamp", "value": "1970-01-01T00:00:00Z"}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Timestamp","value":"1970-01-01T00:00:00Z"}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.FieldMask", "value": "foo,barBaz"}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.FieldMask","value":"foo,barBaz"}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"foo": 1}}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Struct","value":{"foo":1.0}}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Value", "value": {"foo": 1}}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Value","value":{"foo":1.0}}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Value", "value": 1}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Value","value":1.0}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Empty"}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Empty"}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Empty", "value": {}}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Empty"}}"#)),
            ("Conformance", r#"{"optionalAny": {}}"#, Ok(r#"{"optionalAny":{}}"#)),
            ("Conformance", r#"{"repeatedAny": [{}, {"@type": "type.googleapis.com/omnigate.test.Author"}]}"#, Ok(r#"{"repeatedAny":[{},{"@type":"type.googleapis.com/omnigate.test.Author"}]}"#)),
            ("Conformance", r#"{"optionalAny": null}"#, Ok("{}")),
            // An empty `Any` inside another `Any`'s payload (where it is held encoded).
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Any", "value": {}}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/google.protobuf.Any","value":{}}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/omnigate.test.Conformance", "repeatedAny": [{}], "optionalAny": {}}}"#, Ok(r#"{"optionalAny":{"@type":"type.googleapis.com/omnigate.test.Conformance","repeatedAny":[{}],"optionalAny":{}}}"#)),
            ("Conformance", r#"{"optionalAny": {"@type": "\u0000omnigate/empty-any/omnigate.test.Author"}}"#, Err(("optionalAny", "invalid type url"))),
            ("Conformance", r#"{"optionalAny": {"@type": "", "value": ""}}"#, Err(("optionalAny", "type"))),
            ("Conformance", r#"{"optionalAny": {"@type": "not_a_url", "value": ""}}"#, Err(("optionalAny", "type"))),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/no.Such"}}"#, Err(("optionalAny", "not found"))),
            ("Conformance", r#"{"optionalAny": {"@type": 5}}"#, Err(("optionalAny.@type", "invalid type: integer"))),
            ("Conformance", r#"{"optionalAny": {"name": "n"}}"#, Err(("optionalAny", "@type"))),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/omnigate.test.Author", "@type": "type.googleapis.com/omnigate.test.Author"}}"#, Err(("optionalAny.@type", "duplicate key"))),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/omnigate.test.Author", "authorId": "x"}}"#, Err(("optionalAny.authorId", "not a valid int64"))),
            ("Conformance", r#"{"optionalAny": {"authorId": "x", "@type": "type.googleapis.com/omnigate.test.Author"}}"#, Err(("optionalAny.authorId", "not a valid int64"))),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1"}}"#, Err(("optionalAny.value", "duration"))),
            ("Conformance", r#"{"optionalAny": {"@type": "type.googleapis.com/google.protobuf.Duration"}}"#, Err(("optionalAny", "value"))),
        ]);
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
        let conformance = desc("Conformance");
        let any = conformance.get_field_by_name("optional_any").unwrap();
        let empty = decode_field_value(&any, b"{}", &opts).unwrap().unwrap();
        assert_eq!(empty, Value::Message(DynamicMessage::new(desc("google.protobuf.Any"))));
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
