//! Binding HTTP request parts to request-message fields, and selecting the response body,
//! with `google.api.HttpRule` semantics.
//!
//! **In:** a [`DynamicMessage`] being built, plus already-extracted pieces of the HTTP request:
//! path-variable values (text), the raw query string (percent-encoded, without `?`), the body
//! bytes and the value of its Content-Type header; field paths from the rule (`name`,
//! `book.author_id`, `body: "book"`, `response_body: "items"`).
//! **Out:** the message with those fields set, or a [`FieldError`] whose `field` names what the
//! client sent (the query parameter as sent, the path variable's field path, or a JSON path
//! relative to the body); for responses, the bytes and content type to send.
//! **Must not know:** routing, URL templates, HTTP status codes or frameworks, gRPC clients.
//! Content-type negotiation (415) and mapping [`FieldError`] to 400 are the caller's job.
//!
//! # Order and precedence
//! The gateway calls [`bind_body`] first, then [`set_from_str`] once per path variable, then
//! [`apply_query`]. Hence **path values override body values** for the same field (a path
//! variable also silently replaces another member of its oneof), and the query can never touch
//! a field bound by the path or the body, nor anything inside or above one (`bound`). With
//! `body: "*"` nothing is left for the query: every parameter is rejected (or, with
//! [`QueryOptions::ignore_unknown`], skipped).
//!
//! # Text forms (path variables and query values)
//! * integers: decimal text, optional sign, 64-bit ones too (`"-9223372036854775808"`); no
//!   exponents; range-checked per type.
//! * `float`/`double`: any Rust float literal, plus `NaN`, `Infinity`, `-Infinity`.
//! * `bool`: `true`/`false` (ASCII case-insensitive) or `1`/`0`; anything else, including an
//!   empty value, is an error.
//! * `string`: as is; `bytes`: base64, standard or URL-safe alphabet, padding optional (in a
//!   query, `+` means space, so send `%2B` or use the URL-safe alphabet).
//! * enums: a value name, or any int32 number (proto3 enums are open).
//! * `Timestamp` (RFC 3339, via prost-reflect; send `+` offsets as `%2B`), `Duration` (`"1.5s"`,
//!   via prost-reflect), the nine wrapper types (the wrapped scalar's text form), and
//!   `FieldMask`: comma-separated paths; each dotted segment may be a proto name (`page_count`)
//!   or a lowerCamelCase JSON name (`pageCount`), and is stored as the proto name
//!   (`title,pageCount` -> paths `["title", "page_count"]`; an empty value is an empty mask).
//!   Paths are not checked against any message type.
//! * other messages (plain messages, `Struct`, `Value`, `ListValue`, `Any`, `Empty`) have no
//!   text form: set their fields instead (`filter.author_id=7`).
//!
//! # Query parameters
//! Split on `&`, then on the first `=` (a bare `key` means an empty value); `+` is a space in
//! names and values (as in HTML forms and grpc-gateway; [`QueryOptions::keep_plus`] keeps it,
//! as Envoy does by default); then percent-decoding, which must yield UTF-8. Names are dotted field
//! paths, each segment a proto or JSON name. Repeated fields take one element per occurrence
//! (`tag=a&tag=b`); a comma is *not* a separator (`tag=a,b` is the single element `"a,b"`).
//! Map entries are `labels[color]=red` only (not `labels.color`); keys follow the key type's
//! text form. Repeated messages without a text form cannot be set from the query. A singular
//! field or map entry given twice (also under two spellings) and two members of one oneof are
//! errors. Unknown names are errors unless [`QueryOptions::ignore_unknown`], which skips them
//! (malformed or unsettable names for known fields are still errors).
//!
//! # Bodies
//! `google.api.HttpBody` targets (the whole request, or the `body:` field) are never parsed:
//! `content_type` gets the Content-Type header value as sent (or `application/octet-stream`)
//! and `data` the raw bytes. Responses whose selected message is an `HttpBody` are sent raw
//! with its `content_type` (default `application/octet-stream`).

use std::{borrow::Cow, collections::HashSet};

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value,
};

use super::encode;
use super::json::{self, enum_names, int_range, kind_name, out_of_range, FieldError, JsonOptions};

const HTTP_BODY: &str = "google.api.HttpBody";
const OCTET_STREAM: &str = "application/octet-stream";
const APPLICATION_JSON: &str = "application/json";

/// A resolved dotted field path such as `book.author.author_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    parents: Vec<FieldDescriptor>,
    leaf: FieldDescriptor,
    text: String,
}

enum ResolveError {
    /// A segment names no field.
    Unknown(String),
    /// The path is malformed or walks through something that is not a singular message.
    Invalid(String),
}

impl FieldPath {
    /// Resolves `dotted` against `desc`. Each segment may be a proto name or a JSON name; all
    /// but the last must be singular message fields. Errors name the bad segment and list the
    /// candidates.
    pub fn resolve(desc: &MessageDescriptor, dotted: &str) -> Result<FieldPath, String> {
        resolve(desc, dotted).map_err(|e| match e {
            ResolveError::Unknown(m) | ResolveError::Invalid(m) => m,
        })
    }

    /// The canonical form: proto field names joined by `.` (`book.page_count`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The field the path ends at.
    pub fn last(&self) -> &FieldDescriptor {
        &self.leaf
    }

    /// The path is one field of the message it starts from (no parents).
    pub fn is_top_level(&self) -> bool {
        self.parents.is_empty()
    }

    /// Every field along the path, outermost first.
    pub fn fields(&self) -> impl Iterator<Item = &FieldDescriptor> {
        self.parents.iter().chain(std::iter::once(&self.leaf))
    }

    /// The message type the path starts from.
    pub fn root(&self) -> MessageDescriptor {
        self.parents
            .first()
            .unwrap_or(&self.leaf)
            .parent_message()
            .clone()
    }

    /// True if one path is a prefix of (or equal to) the other.
    fn overlaps(&self, other: &FieldPath) -> bool {
        self.fields().zip(other.fields()).all(|(a, b)| a == b)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn candidates(desc: &MessageDescriptor) -> String {
    desc.fields()
        .map(|f| {
            if f.json_name() == f.name() {
                f.name().to_owned()
            } else {
                format!("{} ({})", f.name(), f.json_name())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn resolve(desc: &MessageDescriptor, dotted: &str) -> Result<FieldPath, ResolveError> {
    if dotted.is_empty() {
        return Err(ResolveError::Invalid("empty field path".to_owned()));
    }
    let mut current = desc.clone();
    let mut parents = Vec::new();
    let mut text = String::new();
    let mut segments = dotted.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            return Err(ResolveError::Invalid(format!(
                "empty segment in field path `{dotted}`"
            )));
        }
        let field = current
            .get_field_by_name(segment)
            .or_else(|| current.get_field_by_json_name(segment))
            .ok_or_else(|| {
                ResolveError::Unknown(format!(
                    "no field `{segment}` in message `{}` (in `{dotted}`); candidates: {}",
                    current.full_name(),
                    candidates(&current)
                ))
            })?;
        let Some(_) = segments.peek() else {
            text.push_str(field.name());
            return Ok(FieldPath {
                parents,
                leaf: field,
                text,
            });
        };
        let next = match field.kind() {
            Kind::Message(m) if !field.is_list() && !field.is_map() => m,
            _ => {
                let what = if field.is_map() {
                    format!("a map field (address its entries as `{segment}[key]`)")
                } else if field.is_list() {
                    "a repeated field".to_owned()
                } else {
                    format!("of type {}", kind_name(&field.kind()))
                };
                return Err(ResolveError::Invalid(format!(
                    "`{segment}` in `{dotted}` is {what}, not a singular message, so it has no subfields"
                )));
            }
        };
        text.push_str(field.name());
        text.push('.');
        parents.push(field);
        current = next;
    }
    Err(ResolveError::Invalid("empty field path".to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Text to values.

const B64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const B64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const B64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

fn parse_int(kind: &Kind, text: &str) -> Result<i128, String> {
    let n = text.parse::<i128>().map_err(|_| {
        format!(
            "\"{text}\" is not a valid {}: expected a decimal integer",
            kind_name(kind)
        )
    })?;
    match int_range(kind) {
        Some(range) if n < range.0 || n > range.1 => Err(out_of_range(text, kind, range)),
        _ => Ok(n),
    }
}

fn narrow<T: TryFrom<i128>>(kind: &Kind, text: &str) -> Result<T, String> {
    let n = parse_int(kind, text)?;
    T::try_from(n).map_err(|_| format!("value {text} is out of range for {}", kind_name(kind)))
}

fn parse_float(kind: &Kind, text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => text.parse::<f64>().map_err(|_| {
            format!(
                "\"{text}\" is not a valid {}: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"",
                kind_name(kind)
            )
        }),
    }
}

/// `true`/`false` in any case, `t`/`f`, `1`/`0`: what grpc-gateway's `strconv.ParseBool`
/// takes, and more.
fn parse_bool(text: &str) -> Result<bool, String> {
    if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("t") || text == "1" {
        Ok(true)
    } else if text.eq_ignore_ascii_case("false") || text.eq_ignore_ascii_case("f") || text == "0" {
        Ok(false)
    } else {
        Err(format!(
            "\"{text}\" is not a valid bool: expected true or false (or 1 or 0)"
        ))
    }
}

fn parse_bytes(text: &str) -> Result<Bytes, String> {
    B64_STANDARD
        .decode(text)
        .or_else(|_| B64_URL_SAFE.decode(text))
        .map(Bytes::from)
        .map_err(|e| format!("invalid base64: {e}"))
}

fn wrapper_value_field(m: &MessageDescriptor) -> Option<FieldDescriptor> {
    match m.full_name() {
        "google.protobuf.Int32Value"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.FloatValue"
        | "google.protobuf.DoubleValue"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => m.get_field_by_name("value"),
        _ => None,
    }
}

/// Whether values of `kind` can be given as text.
fn has_text_form(kind: &Kind) -> bool {
    match kind {
        Kind::Message(m) => {
            matches!(
                m.full_name(),
                "google.protobuf.Timestamp"
                    | "google.protobuf.Duration"
                    | "google.protobuf.FieldMask"
            ) || wrapper_value_field(m).is_some()
        }
        _ => true,
    }
}

fn no_text_form(m: &MessageDescriptor) -> String {
    format!(
        "a value of message type `{}` cannot be given as text; set its fields instead (e.g. `field.subfield=value`)",
        m.full_name()
    )
}

/// `pageCount` -> `page_count`; proto names pass through unchanged.
fn mask_segment_to_proto(segment: &str, out: &mut String) {
    for ch in segment.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
}

fn parse_field_mask(m: &MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let paths_field = m
        .get_field_by_name("paths")
        .ok_or_else(|| "malformed google.protobuf.FieldMask descriptor".to_owned())?;
    let mut paths = Vec::new();
    for path in text.split(',').filter(|p| !p.is_empty()) {
        let mut proto = String::with_capacity(path.len() + 4);
        for (i, segment) in path.split('.').enumerate() {
            if segment.is_empty() {
                return Err(format!("invalid field mask path \"{path}\": empty segment"));
            }
            if i > 0 {
                proto.push('.');
            }
            mask_segment_to_proto(segment, &mut proto);
        }
        paths.push(Value::String(proto));
    }
    let mut mask = DynamicMessage::new(m.clone());
    mask.set_field(&paths_field, Value::List(paths));
    Ok(mask)
}

fn parse_message(m: &MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    use serde::de::value::{Error as PlainError, StrDeserializer};
    match m.full_name() {
        "google.protobuf.Timestamp" | "google.protobuf.Duration" => {
            DynamicMessage::deserialize(m.clone(), StrDeserializer::<PlainError>::new(text))
                .map_err(|e| format!("\"{text}\": {e}"))
        }
        "google.protobuf.FieldMask" => parse_field_mask(m, text),
        _ => match wrapper_value_field(m) {
            Some(inner) => {
                let value = parse_text(&inner.kind(), text)?;
                let mut wrapper = DynamicMessage::new(m.clone());
                wrapper.set_field(&inner, value);
                Ok(wrapper)
            }
            None => Err(no_text_form(m)),
        },
    }
}

/// Converts `text` to a value of `kind` (see the module docs for the accepted forms).
fn parse_text(kind: &Kind, text: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::Double => Value::F64(parse_float(kind, text)?),
        Kind::Float => {
            let v = parse_float(kind, text)?;
            if v.is_finite() && v.abs() > f64::from(f32::MAX) {
                return Err(format!("value {text} is out of range for float"));
            }
            Value::F32(v as f32)
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(narrow(kind, text)?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(narrow(kind, text)?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(narrow(kind, text)?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(narrow(kind, text)?),
        Kind::Bool => Value::Bool(parse_bool(text)?),
        Kind::String => Value::String(text.to_owned()),
        Kind::Bytes => Value::Bytes(parse_bytes(text)?),
        Kind::Enum(e) => match e.get_value_by_name(text) {
            Some(v) => Value::EnumNumber(v.number()),
            None => match text.parse::<i32>() {
                Ok(n) => Value::EnumNumber(n),
                Err(_) => {
                    return Err(format!(
                        "unknown value \"{text}\" for enum `{}` (expected one of {} or a number)",
                        e.full_name(),
                        enum_names(e)
                    ))
                }
            },
        },
        Kind::Message(m) => Value::Message(parse_message(m, text)?),
    })
}

fn parse_map_key(kind: &Kind, text: &str) -> Result<MapKey, String> {
    let bad = |e: String| format!("invalid map key: {e}");
    Ok(match kind {
        Kind::Bool => MapKey::Bool(parse_bool(text).map_err(bad)?),
        Kind::String => MapKey::String(text.to_owned()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            MapKey::I32(narrow(kind, text).map_err(bad)?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            MapKey::I64(narrow(kind, text).map_err(bad)?)
        }
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(narrow(kind, text).map_err(bad)?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(narrow(kind, text).map_err(bad)?),
        other => return Err(format!("{} cannot be a map key", kind_name(other))),
    })
}

// ---------------------------------------------------------------------------------------------
// Walking messages.

fn real_oneof(field: &FieldDescriptor) -> Option<prost_reflect::OneofDescriptor> {
    field.containing_oneof().filter(|o| !o.is_synthetic())
}

/// Error if setting `field` on `msg` would replace another member of its oneof.
fn check_oneof(msg: &DynamicMessage, field: &FieldDescriptor) -> Result<(), String> {
    if let Some(oneof) = real_oneof(field) {
        if let Some(other) = oneof
            .fields()
            .find(|other| other != field && msg.has_field(other))
        {
            return Err(format!(
                "`{}` and `{}` belong to oneof `{}`; at most one of them may be set",
                other.name(),
                field.name(),
                oneof.name()
            ));
        }
    }
    Ok(())
}

/// The message holding `path.last()`, creating intermediate messages as needed.
/// With `strict_oneofs`, refuses to create an intermediate that would clear another member of
/// its oneof.
fn parent_mut<'m>(
    msg: &'m mut DynamicMessage,
    path: &FieldPath,
    strict_oneofs: bool,
) -> Result<&'m mut DynamicMessage, String> {
    if path.root() != msg.descriptor() {
        return Err(format!(
            "field path `{path}` belongs to message `{}`, not `{}`",
            path.root().full_name(),
            msg.descriptor().full_name()
        ));
    }
    let mut current = msg;
    for field in &path.parents {
        if strict_oneofs && !current.has_field(field) {
            check_oneof(current, field)?;
        }
        current = match current.get_field_mut(field) {
            Value::Message(m) => m,
            _ => return Err(format!("field `{}` is not a message", field.name())),
        };
    }
    Ok(current)
}

/// The message holding `path.last()`, or `None` if an intermediate message is unset.
fn parent_ref<'m>(msg: &'m DynamicMessage, path: &FieldPath) -> Option<&'m DynamicMessage> {
    let mut current = msg;
    for field in &path.parents {
        current = match current.get_field(field) {
            Cow::Borrowed(Value::Message(m)) => m,
            _ => return None,
        };
    }
    Some(current)
}

/// Sets a singular field or appends to a repeated one.
fn store(parent: &mut DynamicMessage, field: &FieldDescriptor, value: Value) -> Result<(), String> {
    if field.is_list() {
        match parent.get_field_mut(field) {
            Value::List(list) => list.push(value),
            _ => return Err(format!("field `{}` is not a list", field.name())),
        }
    } else {
        parent.set_field(field, value);
    }
    Ok(())
}

fn leaf_value(path: &FieldPath, text: &str) -> Result<Value, String> {
    let leaf = path.last();
    if leaf.is_map() {
        return Err(format!(
            "`{path}` is a map field; it cannot be set from a single value (in a query use `{path}[key]=value`)"
        ));
    }
    if let Kind::Message(m) = leaf.kind() {
        if !has_text_form(&leaf.kind()) {
            return Err(no_text_form(&m));
        }
    }
    parse_text(&leaf.kind(), text)
}

/// Sets the field at `path` from its text form (a path variable's value). Repeated fields get
/// one more element; singular fields are overwritten (so path values win over body values);
/// intermediate messages are created as needed. Maps and messages without a text form are
/// errors. `FieldError::field` is `path.as_str()`.
pub fn set_from_str(
    msg: &mut DynamicMessage,
    path: &FieldPath,
    value: &str,
) -> Result<(), FieldError> {
    let err = |reason: String| FieldError::new(path.as_str(), reason);
    let parsed = leaf_value(path, value).map_err(err)?;
    let parent = parent_mut(msg, path, false).map_err(err)?;
    store(parent, path.last(), parsed).map_err(err)
}

// ---------------------------------------------------------------------------------------------
// Query.

/// Options for [`apply_query`].
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryOptions {
    /// Skip parameters that name no field (and, with `body: "*"`, all parameters).
    pub ignore_unknown: bool,
    /// Keep `+` as a plus sign instead of reading it as a space (Envoy's default,
    /// `query_param_unescape_plus: false`; config `transcoding.query_unescape_plus: false`).
    pub keep_plus: bool,
}

/// `+` is a space (unless `keep_plus`), then percent-decoding; `Err` carries the lossy text
/// if not UTF-8.
fn decode_component(raw: &str, keep_plus: bool) -> Result<String, String> {
    let spaced: Cow<'_, str> = if !keep_plus && raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    let decoded = percent_decode_str(&spaced);
    match decoded.decode_utf8() {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => Err(
            String::from_utf8_lossy(&percent_decode_str(&spaced).collect::<Vec<u8>>()).into_owned(),
        ),
    }
}

/// `labels[color]` -> (`labels`, Some(`color`)).
fn split_map_key(name: &str) -> Result<(&str, Option<&str>), String> {
    let Some(open) = name.find('[') else {
        if name.contains(']') {
            return Err("unbalanced `]` in query parameter name".to_owned());
        }
        return Ok((name, None));
    };
    let inner = name[open + 1..]
        .strip_suffix(']')
        .filter(|inner| !inner.contains(['[', ']']))
        .ok_or_else(|| {
            "malformed map entry parameter: expected `field[key]` with one pair of brackets at the end"
                .to_owned()
        })?;
    Ok((&name[..open], Some(inner)))
}

/// Applies a raw query string to `msg` (see the module docs for the syntax and rules).
/// `bound` lists the fields bound by the path template and the body; `body_is_whole` is
/// `body: "*"`. `FieldError::field` is the parameter name as sent (after decoding).
pub fn apply_query(
    msg: &mut DynamicMessage,
    query: &str,
    bound: &[FieldPath],
    body_is_whole: bool,
    opts: QueryOptions,
) -> Result<(), FieldError> {
    let desc = msg.descriptor();
    let mut seen: HashSet<String> = HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(raw_name, opts.keep_plus).map_err(|lossy| {
            FieldError::new(
                lossy,
                "query parameter name is not valid UTF-8 after percent-decoding",
            )
        })?;
        let err = |reason: String| FieldError::new(name.as_str(), reason);
        let value = decode_component(raw_value, opts.keep_plus).map_err(|_| {
            err("query parameter value is not valid UTF-8 after percent-decoding".to_owned())
        })?;
        if body_is_whole {
            if opts.ignore_unknown {
                continue;
            }
            return Err(err(
                "query parameters are not allowed here: the whole request message is bound to the body (body: \"*\")"
                    .to_owned(),
            ));
        }
        let (path_text, map_key) = split_map_key(&name).map_err(err)?;
        let path = match resolve(&desc, path_text) {
            Ok(path) => path,
            Err(ResolveError::Unknown(_)) if opts.ignore_unknown => continue,
            Err(ResolveError::Unknown(m)) => {
                return Err(err(format!("unknown query parameter: {m}")))
            }
            Err(ResolveError::Invalid(m)) => return Err(err(m)),
        };
        if let Some(b) = bound.iter().find(|b| b.overlaps(&path)) {
            return Err(err(format!(
                "field `{b}` is bound by the request path or body, so `{path}` cannot be set from the query string"
            )));
        }
        let leaf = path.last();
        match map_key {
            Some(key_text) => {
                let Kind::Message(entry) = leaf.kind() else {
                    return Err(err(format!(
                        "`{path}` is not a map field, so `[key]` is not allowed"
                    )));
                };
                if !leaf.is_map() {
                    return Err(err(format!(
                        "`{path}` is not a map field, so `[key]` is not allowed"
                    )));
                }
                let key =
                    parse_map_key(&entry.map_entry_key_field().kind(), key_text).map_err(err)?;
                let value_kind = entry.map_entry_value_field().kind();
                if let Kind::Message(m) = &value_kind {
                    if !has_text_form(&value_kind) {
                        return Err(err(no_text_form(m)));
                    }
                }
                let parsed = parse_text(&value_kind, &value).map_err(err)?;
                if !seen.insert(format!("{path}[{key:?}]")) {
                    return Err(err(format!(
                        "map entry `{path}[{key_text}]` is given more than once"
                    )));
                }
                let parent = parent_mut(msg, &path, true).map_err(err)?;
                match parent.get_field_mut(leaf) {
                    Value::Map(map) => {
                        map.insert(key, parsed);
                    }
                    _ => return Err(err(format!("`{path}` is not a map field"))),
                }
            }
            None => {
                if leaf.is_list() {
                    if let Kind::Message(m) = leaf.kind() {
                        if !has_text_form(&leaf.kind()) {
                            return Err(err(format!(
                                "repeated message field `{path}` cannot be set from the query string ({})",
                                no_text_form(&m)
                            )));
                        }
                    }
                } else if !seen.insert(path.as_str().to_owned()) {
                    return Err(err(format!(
                        "field `{path}` is given more than once, but it is not repeated"
                    )));
                }
                let parsed = leaf_value(&path, &value).map_err(err)?;
                let parent = parent_mut(msg, &path, true).map_err(err)?;
                check_oneof(parent, leaf).map_err(err)?;
                store(parent, leaf, parsed).map_err(err)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Body.

/// What the rule's `body:` binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyBinding {
    /// No `body:`; the body is ignored.
    None,
    /// `body: "*"`.
    Whole,
    /// `body: "field.path"`.
    Field(FieldPath),
}

fn is_http_body(desc: &MessageDescriptor) -> bool {
    desc.full_name() == HTTP_BODY
}

fn fill_http_body(
    target: &mut DynamicMessage,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), FieldError> {
    let desc = target.descriptor();
    let (Some(ct), Some(data)) = (
        desc.get_field_by_name("content_type"),
        desc.get_field_by_name("data"),
    ) else {
        return Err(FieldError::new(
            "",
            "google.api.HttpBody in the descriptor pool lacks `content_type` or `data`",
        ));
    };
    target.set_field(
        &ct,
        Value::String(content_type.unwrap_or(OCTET_STREAM).to_owned()),
    );
    target.set_field(&data, Value::Bytes(Bytes::copy_from_slice(body)));
    Ok(())
}

/// Binds the request body. `Whole`: JSON body merged into `msg` (fields present in the body
/// replace those already set). `Field(p)`: the body is the JSON value of field `p` (an object
/// for a message, an array for a repeated field, a string for a string field...); error paths
/// are relative to the body. An empty JSON body (or `null` for a field) leaves things unset.
/// `google.api.HttpBody` targets take the raw bytes and `content_type` (see module docs).
/// Does not check the content type.
pub fn bind_body(
    msg: &mut DynamicMessage,
    binding: &BodyBinding,
    content_type: Option<&str>,
    body: &[u8],
    opts: &JsonOptions,
) -> Result<(), FieldError> {
    match binding {
        BodyBinding::None => Ok(()),
        BodyBinding::Whole => {
            let desc = msg.descriptor();
            if is_http_body(&desc) {
                return fill_http_body(msg, content_type, body);
            }
            let mut decoded = json::decode_message(&desc, body, opts)?;
            // `take_fields` skips a `-0.0` (equal to the default), which is kept (see `encode`).
            let zeros: Vec<_> = encode::negative_zeros(&decoded)
                .into_iter()
                .map(|(field, value)| (field, value.clone()))
                .collect();
            for (field, value) in decoded.take_fields().chain(zeros) {
                msg.set_field(&field, value);
            }
            for (ext, value) in decoded.take_extensions() {
                msg.set_extension(&ext, value);
            }
            Ok(())
        }
        BodyBinding::Field(path) => {
            let leaf = path.last();
            let internal = |reason: String| FieldError::new("", reason);
            if let Kind::Message(m) = leaf.kind() {
                if is_http_body(&m) && !leaf.is_list() {
                    let parent = parent_mut(msg, path, false).map_err(internal)?;
                    return match parent.get_field_mut(leaf) {
                        Value::Message(target) => fill_http_body(target, content_type, body),
                        _ => Err(internal(format!("field `{path}` is not a message"))),
                    };
                }
            }
            if let Some(value) = json::decode_field_value(leaf, body, opts)? {
                let parent = parent_mut(msg, path, false).map_err(internal)?;
                parent.set_field(leaf, value);
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Response.

/// A response body ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// `application/json`, or an `HttpBody`'s content type.
    pub content_type: String,
    pub body: Vec<u8>,
}

fn render_http_body(hb: &DynamicMessage) -> Rendered {
    let content_type = hb
        .get_field_by_name("content_type")
        .and_then(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
        .unwrap_or_else(|| OCTET_STREAM.to_owned());
    let body = hb
        .get_field_by_name("data")
        .and_then(|v| v.as_bytes().map(|b| b.to_vec()))
        .unwrap_or_default();
    Rendered { content_type, body }
}

/// Renders the whole response message, or only the `response_body` field's proto3 JSON value
/// (message, array, object or scalar; unset renders as the default). An `HttpBody` (whole or
/// selected) is sent raw. Fails only where [`json::encode_message`] can.
pub fn render_response(
    msg: &DynamicMessage,
    response_body: Option<&FieldPath>,
    opts: &JsonOptions,
) -> Result<Rendered, FieldError> {
    let Some(path) = response_body else {
        if is_http_body(&msg.descriptor()) {
            return Ok(render_http_body(msg));
        }
        return Ok(Rendered {
            content_type: APPLICATION_JSON.to_owned(),
            body: json::encode_message(msg, opts)?,
        });
    };
    if path.root() != msg.descriptor() {
        return Err(FieldError::new(
            path.as_str(),
            format!(
                "response_body path belongs to message `{}`, not `{}`",
                path.root().full_name(),
                msg.descriptor().full_name()
            ),
        ));
    }
    let leaf = path.last();
    let empty_parent;
    let parent = match parent_ref(msg, path) {
        Some(parent) => parent,
        None => {
            empty_parent = DynamicMessage::new(leaf.parent_message().clone());
            &empty_parent
        }
    };
    if let Kind::Message(m) = leaf.kind() {
        if is_http_body(&m) && !leaf.is_list() && !leaf.is_map() {
            return Ok(match parent.get_field(leaf).as_message() {
                Some(hb) => render_http_body(hb),
                None => render_http_body(&DynamicMessage::new(m)),
            });
        }
    }
    let mut body = Vec::new();
    json::encode_field_value_to(parent, leaf, opts, &mut body)?;
    Ok(Rendered {
        content_type: APPLICATION_JSON.to_owned(),
        body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost_reflect::DescriptorPool;

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

    fn req() -> MessageDescriptor {
        desc("Request")
    }

    fn path(p: &str) -> FieldPath {
        FieldPath::resolve(&req(), p).unwrap()
    }

    fn to_json(msg: &DynamicMessage) -> serde_json::Value {
        serde_json::from_slice(&json::encode_message(msg, &JsonOptions::default()).unwrap())
            .unwrap()
    }

    fn assert_json(msg: &DynamicMessage, want: &str, ctx: &str) {
        let want: serde_json::Value = serde_json::from_str(want).unwrap();
        assert_eq!(to_json(msg), want, "{ctx}");
    }

    fn assert_err(got: FieldError, field: &str, part: &str, ctx: &str) {
        assert_eq!(got.field, field, "{ctx}: {got}");
        assert!(got.reason.contains(part), "{ctx}: `{got}` lacks `{part}`");
    }

    /// Resolves `dotted` on Request: `Ok(canonical)` or `Err(part of the message)`.
    fn check_resolve(dotted: &str, want: Result<&str, &str>) {
        match (FieldPath::resolve(&req(), dotted), want) {
            (Ok(p), Ok(w)) => assert_eq!(p.as_str(), w, "{dotted}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{dotted}: `{e}` lacks `{w}`"),
            (got, want) => panic!("{dotted}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn resolve_paths() {
        check_resolve("name", Ok("name"));
        check_resolve("page_size", Ok("page_size"));
        check_resolve("pageSize", Ok("page_size"));
        check_resolve("book.page_count", Ok("book.page_count"));
        check_resolve("book.pageCount", Ok("book.page_count"));
        check_resolve("book.label", Ok("book.display_name"));
        check_resolve("filter.inner.q", Ok("filter.inner.q"));
        check_resolve("book.author.authorId", Ok("book.author.author_id"));
        check_resolve("wk.ts", Ok("wk.ts"));
        check_resolve("labels", Ok("labels"));
        check_resolve("book.nope", Err("no field `nope` in message `omnigate.test.Book` (in `book.nope`); candidates: name, title, page_count (pageCount), tags"));
        check_resolve("title", Err("no field `title` in message `omnigate.test.Request`"));
        check_resolve("Book.title", Err("no field `Book`"));
        check_resolve("book.tags.x", Err("`tags` in `book.tags.x` is a repeated field, not a singular message"));
        check_resolve("labels.color", Err("`labels` in `labels.color` is a map field (address its entries as `labels[key]`)"));
        check_resolve("book.title.x", Err("`title` in `book.title.x` is of type string, not a singular message"));
        check_resolve("authors.name", Err("repeated field"));
        check_resolve("", Err("empty field path"));
        check_resolve("book..title", Err("empty segment in field path `book..title`"));
        check_resolve("book.", Err("empty segment"));
        let p = path("book.author.author_id");
        assert_eq!(p.last().name(), "author_id");
        assert_eq!(p.fields().map(|f| f.name()).collect::<Vec<_>>(), ["book", "author", "author_id"]);
        assert_eq!(p.to_string(), "book.author.author_id");
    }

    /// Sets `field` on an empty Request from `text`: `Ok(json of the request)` or
    /// `Err(part of the reason)` (the error's field is always the canonical path).
    fn check_set(field: &str, text: &str, want: Result<&str, &str>) {
        let p = path(field);
        let mut msg = DynamicMessage::new(req());
        match (set_from_str(&mut msg, &p, text), want) {
            (Ok(()), Ok(w)) => assert_json(&msg, w, &format!("{field}={text}")),
            (Err(e), Err(w)) => assert_err(e, p.as_str(), w, &format!("{field}={text}")),
            (got, want) => panic!(
                "{field}={text}: got {got:?} / {}, want {want:?}",
                to_json(&msg)
            ),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn set_scalars_from_text() {
        check_set("name", "shelves/1", Ok(r#"{"name":"shelves/1"}"#));
        check_set("name", "", Ok("{}"));
        check_set("page_size", "25", Ok(r#"{"pageSize":25}"#));
        check_set("page_size", "+7", Ok(r#"{"pageSize":7}"#));
        check_set("page_size", "-2147483648", Ok(r#"{"pageSize":-2147483648}"#));
        check_set("page_size", "2147483648", Err("value 2147483648 is out of range for int32"));
        check_set("page_size", "1.5", Err("\"1.5\" is not a valid int32: expected a decimal integer"));
        check_set("page_size", "1e3", Err("not a valid int32"));
        check_set("page_size", "", Err("\"\" is not a valid int32"));
        check_set("scalars.f_int64", "-9223372036854775808", Ok(r#"{"scalars":{"fInt64":"-9223372036854775808"}}"#));
        check_set("scalars.f_int64", "9223372036854775808", Err("out of range for int64"));
        check_set("scalars.f_uint64", "18446744073709551615", Ok(r#"{"scalars":{"fUint64":"18446744073709551615"}}"#));
        check_set("scalars.f_uint64", "-1", Err("value -1 is out of range for uint64"));
        check_set("scalars.f_uint32", "4294967295", Ok(r#"{"scalars":{"fUint32":4294967295}}"#));
        check_set("scalars.f_sint32", "-3", Ok(r#"{"scalars":{"fSint32":-3}}"#));
        check_set("scalars.f_sint64", "-3", Ok(r#"{"scalars":{"fSint64":"-3"}}"#));
        check_set("scalars.f_fixed32", "3", Ok(r#"{"scalars":{"fFixed32":3}}"#));
        check_set("scalars.f_fixed64", "3", Ok(r#"{"scalars":{"fFixed64":"3"}}"#));
        check_set("scalars.f_sfixed32", "-3", Ok(r#"{"scalars":{"fSfixed32":-3}}"#));
        check_set("scalars.f_sfixed64", "-3", Ok(r#"{"scalars":{"fSfixed64":"-3"}}"#));
        check_set("scalars.f_double", "1.25", Ok(r#"{"scalars":{"fDouble":1.25}}"#));
        check_set("scalars.f_double", "-1e300", Ok(r#"{"scalars":{"fDouble":-1e300}}"#));
        check_set("scalars.f_double", "NaN", Ok(r#"{"scalars":{"fDouble":"NaN"}}"#));
        check_set("scalars.f_float", "Infinity", Ok(r#"{"scalars":{"fFloat":"Infinity"}}"#));
        check_set("scalars.f_float", "-Infinity", Ok(r#"{"scalars":{"fFloat":"-Infinity"}}"#));
        check_set("scalars.f_float", "1e39", Err("value 1e39 is out of range for float"));
        check_set("scalars.f_float", "abc", Err("\"abc\" is not a valid float"));
        check_set("scalars.f_bool", "true", Ok(r#"{"scalars":{"fBool":true}}"#));
        check_set("scalars.f_bool", "TRUE", Ok(r#"{"scalars":{"fBool":true}}"#));
        check_set("scalars.f_bool", "1", Ok(r#"{"scalars":{"fBool":true}}"#));
        check_set("scalars.f_bool", "False", Ok(r#"{"scalars":{}}"#));
        check_set("scalars.f_bool", "0", Ok(r#"{"scalars":{}}"#));
        check_set("scalars.f_bool", "t", Ok(r#"{"scalars":{"fBool":true}}"#));
        check_set("scalars.f_bool", "F", Ok(r#"{"scalars":{}}"#));
        check_set("scalars.f_bool", "yes", Err("\"yes\" is not a valid bool: expected true or false (or 1 or 0)"));
        check_set("scalars.f_bool", "tr", Err("not a valid bool"));
        check_set("scalars.f_bool", "", Err("not a valid bool"));
        check_set("scalars.f_bytes", "aGk=", Ok(r#"{"scalars":{"fBytes":"aGk="}}"#));
        check_set("scalars.f_bytes", "aGk", Ok(r#"{"scalars":{"fBytes":"aGk="}}"#));
        check_set("scalars.f_bytes", "-_8", Ok(r#"{"scalars":{"fBytes":"+/8="}}"#));
        check_set("scalars.f_bytes", "a!b", Err("invalid base64"));
        check_set("scalars.f_enum", "SCIENCE", Ok(r#"{"scalars":{"fEnum":"SCIENCE"}}"#));
        check_set("scalars.f_enum", "1", Ok(r#"{"scalars":{"fEnum":"FICTION"}}"#));
        check_set("scalars.f_enum", "42", Ok(r#"{"scalars":{"fEnum":42}}"#));
        check_set("scalars.f_enum", "science", Err("unknown value \"science\" for enum `omnigate.test.Genre` (expected one of GENRE_UNSPECIFIED, FICTION, SCIENCE or a number)"));
    }

    #[test]
    #[rustfmt::skip]
    fn set_messages_and_containers_from_text() {
        check_set("wk.ts", "2024-05-06T07:08:09Z", Ok(r#"{"wk":{"ts":"2024-05-06T07:08:09Z"}}"#));
        check_set("wk.ts", "2024-05-06T07:08:09+02:00", Ok(r#"{"wk":{"ts":"2024-05-06T05:08:09Z"}}"#));
        check_set("wk.ts", "2024-05-06", Err("\"2024-05-06\": invalid rfc3339 timestamp"));
        check_set("wk.dur", "1.5s", Ok(r#"{"wk":{"dur":"1.500s"}}"#));
        check_set("wk.dur", "90", Err("\"90\": failed to parse duration"));
        check_set("update_mask", "title,pageCount,author.author_id", Ok(r#"{"updateMask":"title,pageCount,author.authorId"}"#));
        check_set("update_mask", "", Ok(r#"{"updateMask":""}"#));
        check_set("update_mask", "a..b", Err("invalid field mask path \"a..b\": empty segment"));
        check_set("wk.i32w", "-5", Ok(r#"{"wk":{"i32w":-5}}"#));
        check_set("wk.i32w", "x", Err("not a valid int32"));
        check_set("wk.i64w", "5", Ok(r#"{"wk":{"i64w":"5"}}"#));
        check_set("wk.u32w", "5", Ok(r#"{"wk":{"u32w":5}}"#));
        check_set("wk.u64w", "5", Ok(r#"{"wk":{"u64w":"5"}}"#));
        check_set("wk.fw", "0.5", Ok(r#"{"wk":{"fw":0.5}}"#));
        check_set("wk.dw", "0.25", Ok(r#"{"wk":{"dw":0.25}}"#));
        check_set("wk.bw", "false", Ok(r#"{"wk":{"bw":false}}"#));
        check_set("wk.sw", "", Ok(r#"{"wk":{"sw":""}}"#));
        check_set("wk.byw", "aGk", Ok(r#"{"wk":{"byw":"aGk="}}"#));
        check_set("wk.r_ts", "1970-01-01T00:00:00Z", Ok(r#"{"wk":{"rTs":["1970-01-01T00:00:00Z"]}}"#));
        check_set("wk.st", "x", Err("a value of message type `google.protobuf.Struct` cannot be given as text"));
        check_set("wk.val", "x", Err("`google.protobuf.Value` cannot be given as text"));
        check_set("wk.any", "x", Err("`google.protobuf.Any` cannot be given as text"));
        check_set("book", "x", Err("`omnigate.test.Book` cannot be given as text; set its fields instead"));
        check_set("authors", "x", Err("`omnigate.test.Author` cannot be given as text"));
        check_set("labels", "x", Err("`labels` is a map field; it cannot be set from a single value"));
        check_set("tag", "a", Ok(r#"{"tag":["a"]}"#));
        check_set("filter.inner.q", "deep", Ok(r#"{"filter":{"inner":{"q":"deep"}}}"#));
        check_set("book.author.author_id", "7", Ok(r#"{"book":{"author":{"authorId":"7"}}}"#));
    }

    #[test]
    #[rustfmt::skip]
    fn set_from_str_repeats_overrides_and_checks_type() {
        let mut msg = DynamicMessage::new(req());
        for (field, text) in [("tag", "a"), ("tag", "b"), ("name", "x"), ("name", "y"), ("order_by", "o"), ("order_by_score", "s")] {
            set_from_str(&mut msg, &path(field), text).unwrap();
        }
        assert_json(&msg, r#"{"tag":["a","b"],"name":"y","orderByScore":"s"}"#, "sequence");
        let other = FieldPath::resolve(&desc("Book"), "title").unwrap();
        let err = set_from_str(&mut msg, &other, "t").unwrap_err();
        assert_eq!(err, FieldError::new("title", "field path `title` belongs to message `omnigate.test.Book`, not `omnigate.test.Request`"));
    }

    type QueryWant<'a> = Result<&'a str, (&'a str, &'a str)>;

    /// Applies `query` to an empty Request with `bound` paths; `Ok(json)` or
    /// `Err((parameter, part of the reason))`.
    fn check_query(query: &str, bound: &[&str], whole: bool, ignore: bool, want: QueryWant) {
        let bound: Vec<FieldPath> = bound.iter().map(|p| path(p)).collect();
        let mut msg = DynamicMessage::new(req());
        let opts = QueryOptions {
            ignore_unknown: ignore,
            keep_plus: false,
        };
        match (apply_query(&mut msg, query, &bound, whole, opts), want) {
            (Ok(()), Ok(w)) => assert_json(&msg, w, query),
            (Err(e), Err((field, part))) => assert_err(e, field, part, query),
            (got, want) => panic!("{query}: got {got:?} / {}, want {want:?}", to_json(&msg)),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn query_accepts() {
        check_query("", &[], false, false, Ok("{}"));
        check_query("&&", &[], false, false, Ok("{}"));
        check_query("page_size=10&name=a", &[], false, false, Ok(r#"{"pageSize":10,"name":"a"}"#));
        check_query("pageSize=10", &[], false, false, Ok(r#"{"pageSize":10}"#));
        check_query("name=a+b%20c%2Bd", &[], false, false, Ok(r#"{"name":"a b c+d"}"#));
        check_query("name=%E2%9C%93", &[], false, false, Ok(r#"{"name":"✓"}"#));
        check_query("name", &[], false, false, Ok("{}"));
        check_query("name=a=b", &[], false, false, Ok(r#"{"name":"a=b"}"#));
        check_query("filter.author_id=7&filter.inner.q=x", &[], false, false, Ok(r#"{"filter":{"authorId":"7","inner":{"q":"x"}}}"#));
        check_query("filter.authorId=-7", &[], false, false, Ok(r#"{"filter":{"authorId":"-7"}}"#));
        check_query("tag=a&tag=b&tag=c,d", &[], false, false, Ok(r#"{"tag":["a","b","c,d"]}"#));
        check_query("labels[color]=red&labels[size]=xl", &[], false, false, Ok(r#"{"labels":{"color":"red","size":"xl"}}"#));
        check_query("labels%5Bcolor%5D=red", &[], false, false, Ok(r#"{"labels":{"color":"red"}}"#));
        check_query("labels[a.b]=1&labels[]=e", &[], false, false, Ok(r#"{"labels":{"a.b":"1","":"e"}}"#));
        check_query("scalars.m_int[-3]=x&scalars.m_bool[true]=9&scalars.m_enum[k]=SCIENCE", &[], false, false, Ok(r#"{"scalars":{"mInt":{"-3":"x"},"mBool":{"true":"9"},"mEnum":{"k":"SCIENCE"}}}"#));
        check_query("scalars.m_ts[5]=1970-01-01T00:00:01Z", &[], false, false, Ok(r#"{"scalars":{"mTs":{"5":"1970-01-01T00:00:01Z"}}}"#));
        check_query("scalars.f_enum=FICTION&scalars.r_enum=1&scalars.r_enum=SCIENCE", &[], false, false, Ok(r#"{"scalars":{"fEnum":"FICTION","rEnum":["FICTION","SCIENCE"]}}"#));
        check_query("scalars.f_bool=true&scalars.f_int64=9007199254740993", &[], false, false, Ok(r#"{"scalars":{"fBool":true,"fInt64":"9007199254740993"}}"#));
        check_query("scalars.r_double=1.5&scalars.r_double=NaN", &[], false, false, Ok(r#"{"scalars":{"rDouble":[1.5,"NaN"]}}"#));
        check_query("update_mask=title,pageCount", &[], false, false, Ok(r#"{"updateMask":"title,pageCount"}"#));
        check_query("updateMask=book.page_count", &[], false, false, Ok(r#"{"updateMask":"book.pageCount"}"#));
        check_query("wk.ts=2024-01-01T00:00:00%2B01:00&wk.dur=3s&wk.i32w=4&wk.bw=true", &[], false, false, Ok(r#"{"wk":{"ts":"2023-12-31T23:00:00Z","dur":"3s","i32w":4,"bw":true}}"#));
        check_query("wk.r_ts=1970-01-01T00:00:00Z&wk.r_ts=1970-01-01T00:00:02Z", &[], false, false, Ok(r#"{"wk":{"rTs":["1970-01-01T00:00:00Z","1970-01-01T00:00:02Z"]}}"#));
        check_query("book.isbn=x&book.title=t", &[], false, false, Ok(r#"{"book":{"isbn":"x","title":"t"}}"#));
        check_query("book.title=t", &["name"], false, false, Ok(r#"{"book":{"title":"t"}}"#));
        check_query("name=n", &["book"], false, false, Ok(r#"{"name":"n"}"#));
        check_query("nope=1&name=n&book.nope=2", &[], false, true, Ok(r#"{"name":"n"}"#));
        check_query("name=n&page_size=1", &[], true, true, Ok("{}"));
    }

    #[test]
    #[rustfmt::skip]
    fn query_rejects() {
        check_query("nope=1", &[], false, false, Err(("nope", "unknown query parameter: no field `nope` in message `omnigate.test.Request`")));
        check_query("book.nope=1", &[], false, false, Err(("book.nope", "no field `nope` in message `omnigate.test.Book`")));
        check_query("=1", &[], false, false, Err(("", "empty field path")));
        check_query("book.title.x=1", &[], false, true, Err(("book.title.x", "is of type string, not a singular message")));
        check_query("name=a&name=b", &[], false, false, Err(("name", "field `name` is given more than once, but it is not repeated")));
        check_query("page_size=1&pageSize=2", &[], false, false, Err(("pageSize", "field `page_size` is given more than once")));
        check_query("labels[a]=1&labels[a]=2", &[], false, false, Err(("labels[a]", "map entry `labels[a]` is given more than once")));
        check_query("order_by=a&order_by_score=b", &[], false, false, Err(("order_by_score", "`order_by` and `order_by_score` belong to oneof `order`")));
        check_query("book.isbn=a&book.ean=1", &[], false, false, Err(("book.ean", "`isbn` and `ean` belong to oneof `identifier`")));
        check_query("book.isbn=a&book.ghost_writer.name=g", &[], false, false, Err(("book.ghost_writer.name", "`isbn` and `ghost_writer` belong to oneof `identifier`")));
        check_query("name=x", &["name"], false, false, Err(("name", "field `name` is bound by the request path or body, so `name` cannot be set from the query string")));
        check_query("book.title=x", &["book"], false, false, Err(("book.title", "field `book` is bound by the request path or body")));
        check_query("book.author.name=x", &["book.author.author_id", "name"], false, false, Ok(r#"{"book":{"author":{"name":"x"}}}"#));
        check_query("filter.inner.q=x", &["filter.inner.q"], false, false, Err(("filter.inner.q", "is bound")));
        check_query("wk.ts=1970-01-01T00:00:00Z", &["wk.ts.seconds"], false, false, Err(("wk.ts", "field `wk.ts.seconds` is bound")));
        check_query("name=x", &[], true, false, Err(("name", "query parameters are not allowed here: the whole request message is bound to the body (body: \"*\")")));
        check_query("nope=x", &[], true, false, Err(("nope", "body: \"*\"")));
        check_query("page_size=abc", &[], false, false, Err(("page_size", "\"abc\" is not a valid int32")));
        check_query("page_size=99999999999", &[], false, false, Err(("page_size", "out of range for int32")));
        check_query("scalars.f_bool=yes", &[], false, false, Err(("scalars.f_bool", "not a valid bool")));
        check_query("scalars.f_enum=HORROR", &[], false, false, Err(("scalars.f_enum", "unknown value \"HORROR\"")));
        check_query("scalars.f_bytes=%%%", &[], false, false, Err(("scalars.f_bytes", "invalid base64")));
        check_query("wk.ts=2024-01-01T00:00:00+01:00", &[], false, false, Err(("wk.ts", "invalid rfc3339 timestamp")));
        check_query("wk.dur=1h", &[], false, false, Err(("wk.dur", "failed to parse duration")));
        check_query("book=x", &[], false, false, Err(("book", "`omnigate.test.Book` cannot be given as text")));
        check_query("wk.st=x", &[], false, false, Err(("wk.st", "`google.protobuf.Struct` cannot be given as text")));
        check_query("authors=x", &[], false, false, Err(("authors", "repeated message field `authors` cannot be set from the query string")));
        check_query("labels=x", &[], false, false, Err(("labels", "`labels` is a map field; it cannot be set from a single value (in a query use `labels[key]=value`)")));
        check_query("labels.color=red", &[], false, false, Err(("labels.color", "address its entries as `labels[key]`")));
        check_query("tag[x]=1", &[], false, false, Err(("tag[x]", "`tag` is not a map field, so `[key]` is not allowed")));
        check_query("labels[a=1", &[], false, false, Err(("labels[a", "malformed map entry parameter")));
        check_query("labels[a][b]=1", &[], false, false, Err(("labels[a][b]", "malformed map entry parameter")));
        check_query("labels]=1", &[], false, false, Err(("labels]", "unbalanced `]`")));
        check_query("scalars.m_int[x]=1", &[], false, false, Err(("scalars.m_int[x]", "invalid map key: \"x\" is not a valid int32")));
        check_query("scalars.m_bool[maybe]=1", &[], false, false, Err(("scalars.m_bool[maybe]", "invalid map key")));
        check_query("scalars.m_int[1]=a&scalars.m_int[01]=b", &[], false, false, Err(("scalars.m_int[01]", "given more than once")));
        check_query("scalars.m_msg[k]=x", &[], false, false, Err(("scalars.m_msg[k]", "`omnigate.test.Author` cannot be given as text")));
        check_query("scalars.m_bool[true]=x", &[], false, false, Err(("scalars.m_bool[true]", "not a valid int64")));
        check_query("name=%FF", &[], false, false, Err(("name", "query parameter value is not valid UTF-8 after percent-decoding")));
        check_query("na%FFme=1", &[], false, false, Err(("na\u{FFFD}me", "query parameter name is not valid UTF-8")));
    }

    /// Binds `body` to an empty Request; `Ok(json)` or `Err((field, part))`.
    fn check_body(binding: &BodyBinding, ct: Option<&str>, body: &[u8], want: QueryWant) {
        let mut msg = DynamicMessage::new(req());
        let shown = String::from_utf8_lossy(body);
        match (
            bind_body(&mut msg, binding, ct, body, &JsonOptions::default()),
            want,
        ) {
            (Ok(()), Ok(w)) => assert_json(&msg, w, &shown),
            (Err(e), Err((field, part))) => assert_err(e, field, part, &shown),
            (got, want) => panic!("{shown}: got {got:?} / {}, want {want:?}", to_json(&msg)),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn body_binding() {
        let whole = BodyBinding::Whole;
        let field = |p: &str| BodyBinding::Field(path(p));
        check_body(&BodyBinding::None, None, b"{\"name\":1}", Ok("{}"));
        check_body(&whole, None, b"", Ok("{}"));
        check_body(&whole, None, br#"{"name":"n","book":{"title":"t"}}"#, Ok(r#"{"name":"n","book":{"title":"t"}}"#));
        check_body(&whole, None, br#"{"book":{"pageCount":"x"}}"#, Err(("book.pageCount", "not a valid int32")));
        check_body(&whole, None, br#"[1]"#, Err(("", "must be a JSON object for message `omnigate.test.Request`")));
        check_body(&field("book"), None, br#"{"title":"t","tags":["a"]}"#, Ok(r#"{"book":{"title":"t","tags":["a"]}}"#));
        check_body(&field("book"), None, br#"{"title":"t","tags":[1]}"#, Err(("tags[0]", "invalid type: integer")));
        check_body(&field("book"), None, br#"{"nope":1}"#, Err(("nope", "unknown field `nope` in message `omnigate.test.Book`")));
        check_body(&field("book"), None, b"", Ok("{}"));
        check_body(&field("book"), None, b"null", Ok("{}"));
        check_body(&field("book"), None, b"[]", Err(("", "must be a JSON object for field `book`, but it is an array")));
        check_body(&field("tag"), None, br#"["a","b"]"#, Ok(r#"{"tag":["a","b"]}"#));
        check_body(&field("tag"), None, br#""a""#, Err(("", "must be a JSON array for field `tag`, but it is a string")));
        check_body(&field("labels"), None, br#"{"k":"v"}"#, Ok(r#"{"labels":{"k":"v"}}"#));
        check_body(&field("labels"), None, br#"{"k":"v","k":"w"}"#, Err(("k", "duplicate key `k`")));
        check_body(&field("name"), None, br#""n""#, Ok(r#"{"name":"n"}"#));
        check_body(&field("page_size"), None, b"12", Ok(r#"{"pageSize":12}"#));
        check_body(&field("page_size"), None, b"1.5", Err(("", "1.5 is not an integer")));
        check_body(&field("book.author"), None, br#"{"authorId":"3"}"#, Ok(r#"{"book":{"author":{"authorId":"3"}}}"#));
        check_body(&field("wk.ts"), None, br#""1970-01-01T00:00:09Z""#, Ok(r#"{"wk":{"ts":"1970-01-01T00:00:09Z"}}"#));
        check_body(&field("wk.st"), None, br#"{"a":[true]}"#, Ok(r#"{"wk":{"st":{"a":[true]}}}"#));
        check_body(&field("update_mask"), None, br#""a.bC,d""#, Ok(r#"{"updateMask":"a.bC,d"}"#));
        check_body(&field("upload"), Some("image/png"), b"\x89PNG\xff", Ok(r#"{"upload":{"contentType":"image/png","data":"iVBOR/8="}}"#));
        check_body(&field("upload"), None, b"{not json", Ok(r#"{"upload":{"contentType":"application/octet-stream","data":"e25vdCBqc29u"}}"#));
        check_body(&field("upload"), Some("text/plain"), b"", Ok(r#"{"upload":{"contentType":"text/plain"}}"#));
    }

    #[test]
    #[rustfmt::skip]
    fn body_binding_http_body_whole_and_merge() {
        let mut hb = DynamicMessage::new(desc("google.api.HttpBody"));
        bind_body(&mut hb, &BodyBinding::Whole, Some("text/csv; charset=utf-8"), b"a,b\n", &JsonOptions::default()).unwrap();
        assert_json(&hb, r#"{"contentType":"text/csv; charset=utf-8","data":"YSxiCg=="}"#, "httpbody");
        let mut msg = DynamicMessage::new(req());
        set_from_str(&mut msg, &path("page_size"), "3").unwrap();
        bind_body(&mut msg, &BodyBinding::Whole, None, br#"{"name":"b"}"#, &JsonOptions::default()).unwrap();
        assert_json(&msg, r#"{"pageSize":3,"name":"b"}"#, "merge keeps fields absent from the body");
    }

    #[test]
    fn negative_zero_in_a_body_reaches_the_wire() {
        let opts = JsonOptions::default();
        let negative_zero = |msg: &DynamicMessage, field: &str| {
            let bytes = encode::encode(msg);
            let back = DynamicMessage::decode(msg.descriptor(), bytes.as_slice()).unwrap();
            let v = back.get_field_by_name(field).unwrap().as_f64().unwrap();
            v == 0.0 && v.is_sign_negative()
        };
        let mut msg = DynamicMessage::new(desc("Scalars"));
        bind_body(
            &mut msg,
            &BodyBinding::Whole,
            None,
            br#"{"fDouble": -0.0}"#,
            &opts,
        )
        .unwrap();
        assert!(negative_zero(&msg, "f_double"));
        let mut msg = DynamicMessage::new(req());
        let field = BodyBinding::Field(path("scalars.f_double"));
        bind_body(&mut msg, &field, None, b"-0", &opts).unwrap();
        let scalars = msg.get_field_by_name("scalars").unwrap();
        assert!(negative_zero(scalars.as_message().unwrap(), "f_double"));
        let mut msg = DynamicMessage::new(desc("Scalars"));
        bind_body(
            &mut msg,
            &BodyBinding::Whole,
            None,
            br#"{"fDouble": 0.0}"#,
            &opts,
        )
        .unwrap();
        assert!(encode::encode(&msg).is_empty());
    }

    #[test]
    #[rustfmt::skip]
    fn precedence_body_then_path_then_query() {
        let mut msg = DynamicMessage::new(req());
        let name = path("name");
        let book_name = path("book.name");
        let opts = JsonOptions::default();
        bind_body(&mut msg, &BodyBinding::Field(path("book")), None, br#"{"name":"from-body","title":"t"}"#, &opts).unwrap();
        set_from_str(&mut msg, &book_name, "from-path").unwrap();
        set_from_str(&mut msg, &name, "shelves/1").unwrap();
        let bound = [name, path("book")];
        let err = apply_query(&mut msg, "book.name=from-query", &bound, false, QueryOptions::default()).unwrap_err();
        assert_eq!(err.field, "book.name");
        apply_query(&mut msg, "page_size=5", &bound, false, QueryOptions::default()).unwrap();
        assert_json(&msg, r#"{"name":"shelves/1","book":{"name":"from-path","title":"t"},"pageSize":5}"#, "precedence");

        let mut msg = DynamicMessage::new(req());
        bind_body(&mut msg, &BodyBinding::Whole, None, br#"{"name":"from-body","orderBy":"b"}"#, &opts).unwrap();
        set_from_str(&mut msg, &path("name"), "from-path").unwrap();
        set_from_str(&mut msg, &path("order_by_score"), "p").unwrap();
        assert_json(&msg, r#"{"name":"from-path","orderByScore":"p"}"#, "path wins over whole body, also within a oneof");
    }

    /// Renders a Request decoded from `body` with `response_body` (`None` = whole).
    fn check_render(
        body: &str,
        response_body: Option<&str>,
        opts: &JsonOptions,
        want_type: &str,
        want_body: &[u8],
    ) {
        let msg = json::decode_message(&req(), body.as_bytes(), &JsonOptions::default()).unwrap();
        let rb = response_body.map(path);
        let got = render_response(&msg, rb.as_ref(), opts).unwrap();
        let ctx = format!("{body} / {response_body:?}");
        assert_eq!(got.content_type, want_type, "{ctx}");
        assert_eq!(
            String::from_utf8_lossy(&got.body),
            String::from_utf8_lossy(want_body),
            "{ctx}"
        );
    }

    #[test]
    #[rustfmt::skip]
    fn render() {
        let d = JsonOptions::default();
        let proto = JsonOptions { use_proto_names: true, ..JsonOptions::default() };
        let j = "application/json";
        let full = r#"{"name":"n","book":{"title":"t","pageCount":2,"tags":["a"],"author":{"authorId":"4"}},"labels":{"k":"v"},"pageSize":0}"#;
        check_render(full, None, &d, j, br#"{"name":"n","book":{"title":"t","pageCount":2,"tags":["a"],"author":{"authorId":"4"}},"labels":{"k":"v"}}"#);
        check_render(full, None, &proto, j, br#"{"name":"n","book":{"title":"t","page_count":2,"tags":["a"],"author":{"author_id":"4"}},"labels":{"k":"v"}}"#);
        check_render(full, Some("book"), &d, j, br#"{"title":"t","pageCount":2,"tags":["a"],"author":{"authorId":"4"}}"#);
        check_render(full, Some("book"), &proto, j, br#"{"title":"t","page_count":2,"tags":["a"],"author":{"author_id":"4"}}"#);
        check_render(full, Some("name"), &d, j, br#""n""#);
        check_render(full, Some("book.tags"), &d, j, br#"["a"]"#);
        check_render(full, Some("book.author.author_id"), &d, j, br#""4""#);
        check_render(full, Some("labels"), &d, j, br#"{"k":"v"}"#);
        check_render(full, Some("page_size"), &d, j, b"0");
        check_render(full, Some("tag"), &d, j, b"[]");
        check_render(full, Some("filter"), &d, j, b"{}");
        check_render(full, Some("filter.inner.q"), &d, j, br#""""#);
        check_render(full, Some("wk.ts"), &d, j, br#""1970-01-01T00:00:00Z""#);
        check_render(full, Some("book.genre"), &d, j, br#""GENRE_UNSPECIFIED""#);
        check_render(full, Some("upload"), &d, "application/octet-stream", b"");
        check_render(r#"{"upload":{"contentType":"text/html","data":"PGI+"}}"#, Some("upload"), &d, "text/html", b"<b>");
        check_render(r#"{"upload":{"data":"PGI+"}}"#, Some("upload"), &d, "application/octet-stream", b"<b>");
        check_render(r#"{"upload":{"data":"PGI+"}}"#, None, &d, j, br#"{"upload":{"data":"PGI+"}}"#);
        let hb = json::decode_message(&desc("google.api.HttpBody"), br#"{"contentType":"image/gif","data":"R0lG"}"#, &d).unwrap();
        assert_eq!(render_response(&hb, None, &d).unwrap(), Rendered { content_type: "image/gif".into(), body: b"GIF".to_vec() });
        let wrong = FieldPath::resolve(&desc("Book"), "title").unwrap();
        let err = render_response(&DynamicMessage::new(req()), Some(&wrong), &d).unwrap_err();
        assert!(err.reason.contains("belongs to message `omnigate.test.Book`"), "{err}");
    }

    #[test]
    #[rustfmt::skip]
    fn render_failure_names_the_field() {
        let d = JsonOptions::default();
        let mut msg = DynamicMessage::new(req());
        let mut any = DynamicMessage::new(desc("google.protobuf.Any"));
        any.set_field_by_name("type_url", Value::String("x/no.Such".into()));
        set_from_str(&mut msg, &path("wk.i32w"), "1").unwrap();
        if let Some(Value::Message(wk)) = msg.get_field_by_name_mut("wk") {
            wk.set_field_by_name("any", Value::Message(any));
        }
        let err = render_response(&msg, None, &d).unwrap_err();
        assert_eq!(err.field, "wk.any");
        let err = render_response(&msg, Some(&path("wk")), &d).unwrap_err();
        assert_eq!((err.field.as_str(), err.reason.contains("no.Such")), ("wk.any", true));
        assert_eq!(render_response(&msg, Some(&path("wk.i32w")), &d).unwrap().body, b"1");
    }
}
