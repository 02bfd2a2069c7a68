//! The precompiled description of a reply type that [`super::render`] walks: one
//! [`MessagePlan`] per message type reachable from the reply, in an arena indexed by `u32`,
//! with everything the hot path needs resolved once (JSON keys already escaped, kinds without
//! `Arc`s, enum names already quoted, field positions indexed by number).

use std::collections::HashMap;
use std::fmt;

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};

use crate::transcode::json::{enum_value_name, write_str};

const HTTP_BODY: &str = "google.api.HttpBody";

/// Field numbers up to this bound are looked up in a dense table; above it (rare), by binary
/// search over the sorted fields.
const DENSE_LIMIT: u32 = 512;

/// How one value is encoded and rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    /// An enum: index into [`ReplyPlan::enums`].
    Enum(u32),
    /// `google.protobuf.NullValue`: always `null`.
    Null,
    /// A message: index into [`ReplyPlan::messages`].
    Message(u32),
    /// A proto2 group: not rendered here (the caller falls back).
    Group,
}

/// Wire types, as in the protobuf encoding.
pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const I32: u8 = 5;

impl Ty {
    /// The wire type of one (unpacked) value.
    pub(super) fn wire_type(self) -> u8 {
        match self {
            Ty::Int32
            | Ty::Int64
            | Ty::Uint32
            | Ty::Uint64
            | Ty::Sint32
            | Ty::Sint64
            | Ty::Bool
            | Ty::Enum(_)
            | Ty::Null => VARINT,
            Ty::Fixed64 | Ty::Sfixed64 | Ty::Double => I64,
            Ty::Fixed32 | Ty::Sfixed32 | Ty::Float => I32,
            Ty::String | Ty::Bytes | Ty::Message(_) => LEN,
            Ty::Group => 3,
        }
    }

    /// Whether a repeated field of this type may arrive packed.
    pub(super) fn packable(self) -> bool {
        !matches!(self, Ty::String | Ty::Bytes | Ty::Message(_) | Ty::Group)
    }
}

/// Singular, repeated or map.
#[derive(Clone, Copy, Debug)]
pub(super) enum Shape {
    Single,
    List,
    Map { key: Ty, value: Ty },
}

/// One field of a message plan.
pub(super) struct FieldPlan {
    pub(super) number: u32,
    /// `,"pageCount":` and `,"page_count":` (indexed by `use_proto_names`): the key with
    /// the comma before it, which the first key of an object leaves out.
    pub(super) keys: [Box<[u8]>; 2],
    /// The value type (of each element for lists, of each value for maps).
    pub(super) ty: Ty,
    pub(super) shape: Shape,
    /// `supports_presence()`: emitted when present even at its default, never when absent.
    pub(super) presence: bool,
    /// Index of its (non-synthetic) oneof within the message.
    pub(super) oneof: Option<u32>,
}

/// Message types whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Special {
    None,
    Any,
    Timestamp,
    Duration,
    FieldMask,
    Struct,
    Value,
    ListValue,
    Empty,
    /// `google.protobuf.*Value` wrappers: the JSON of field 1, of this type.
    Wrapper(Ty),
}

pub(super) struct MessagePlan {
    /// For the fallbacks only (decoding an `Any`, or the whole reply).
    pub(super) desc: MessageDescriptor,
    pub(super) special: Special,
    /// Sorted by number: the order prost-reflect emits them in.
    pub(super) fields: Vec<FieldPlan>,
    /// `dense[number]` = position + 1 (0: not a field), for numbers below [`DENSE_LIMIT`].
    dense: Vec<u32>,
    /// Number of real (non-synthetic) oneofs.
    pub(super) oneofs: usize,
    /// Some extension in the pool extends this type: prost-reflect would decode and render
    /// such a field, so seeing an unknown number means falling back.
    pub(super) has_extensions: bool,
}

impl MessagePlan {
    /// Position in [`MessagePlan::fields`] of the field numbered `number`.
    #[inline]
    pub(super) fn position(&self, number: u32) -> Option<usize> {
        if let Some(&slot) = self.dense.get(number as usize) {
            return slot.checked_sub(1).map(|p| p as usize);
        }
        if number < DENSE_LIMIT {
            return None;
        }
        self.fields.binary_search_by_key(&number, |f| f.number).ok()
    }
}

/// Value numbers and their quoted names (`"DRAFT"`), as prost-reflect resolves them.
pub(super) struct EnumPlan {
    numbers: Vec<i32>,
    names: Vec<Box<[u8]>>,
    /// The number of the first value: the default.
    pub(super) default: i32,
}

impl EnumPlan {
    #[inline]
    pub(super) fn name(&self, number: i32) -> Option<&[u8]> {
        self.numbers
            .binary_search(&number)
            .ok()
            .map(|i| &*self.names[i])
    }
}

/// Everything needed to render one reply type from wire bytes; built once per route table.
pub struct ReplyPlan {
    /// `messages[0]` is the reply type.
    pub(super) messages: Vec<MessagePlan>,
    pub(super) enums: Vec<EnumPlan>,
    http_body: bool,
}

impl fmt::Debug for ReplyPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyPlan")
            .field("reply", &self.root().desc.full_name())
            .field("message_types", &self.messages.len())
            .finish()
    }
}

impl ReplyPlan {
    /// Compile the plan of `reply` and of every message and enum type reachable from it.
    pub fn compile(reply: &MessageDescriptor) -> ReplyPlan {
        let mut builder = Builder::default();
        builder.message_id(reply);
        while let Some((id, desc)) = builder.queue.pop() {
            let plan = builder.compile_message(desc);
            builder.messages[id as usize] = plan;
        }
        ReplyPlan {
            messages: builder.messages,
            enums: builder.enums,
            http_body: reply.full_name() == HTTP_BODY,
        }
    }

    /// Whether the reply is a `google.api.HttpBody` (rendered as raw bytes, not JSON).
    pub fn is_http_body(&self) -> bool {
        self.http_body
    }

    pub(super) fn root(&self) -> &MessagePlan {
        &self.messages[0]
    }
}

#[derive(Default)]
struct Builder {
    messages: Vec<MessagePlan>,
    enums: Vec<EnumPlan>,
    message_ids: HashMap<String, u32>,
    enum_ids: HashMap<String, u32>,
    queue: Vec<(u32, MessageDescriptor)>,
}

fn special(full_name: &str) -> Special {
    match full_name {
        "google.protobuf.Any" => Special::Any,
        "google.protobuf.Timestamp" => Special::Timestamp,
        "google.protobuf.Duration" => Special::Duration,
        "google.protobuf.FieldMask" => Special::FieldMask,
        "google.protobuf.Struct" => Special::Struct,
        "google.protobuf.Value" => Special::Value,
        "google.protobuf.ListValue" => Special::ListValue,
        "google.protobuf.Empty" => Special::Empty,
        "google.protobuf.DoubleValue" => Special::Wrapper(Ty::Double),
        "google.protobuf.FloatValue" => Special::Wrapper(Ty::Float),
        "google.protobuf.Int64Value" => Special::Wrapper(Ty::Int64),
        "google.protobuf.UInt64Value" => Special::Wrapper(Ty::Uint64),
        "google.protobuf.Int32Value" => Special::Wrapper(Ty::Int32),
        "google.protobuf.UInt32Value" => Special::Wrapper(Ty::Uint32),
        "google.protobuf.BoolValue" => Special::Wrapper(Ty::Bool),
        "google.protobuf.StringValue" => Special::Wrapper(Ty::String),
        "google.protobuf.BytesValue" => Special::Wrapper(Ty::Bytes),
        _ => Special::None,
    }
}

fn quoted_key(name: &str) -> Box<[u8]> {
    let mut key = Vec::with_capacity(name.len() + 4);
    key.push(b',');
    write_str(&mut key, name);
    key.push(b':');
    key.into_boxed_slice()
}

impl Builder {
    /// The arena index of `desc`, queueing it for compilation the first time.
    fn message_id(&mut self, desc: &MessageDescriptor) -> u32 {
        if let Some(&id) = self.message_ids.get(desc.full_name()) {
            return id;
        }
        let id = self.messages.len() as u32;
        self.message_ids.insert(desc.full_name().to_owned(), id);
        // A placeholder until the queue reaches it (types may be recursive).
        self.messages.push(MessagePlan {
            desc: desc.clone(),
            special: Special::None,
            fields: Vec::new(),
            dense: Vec::new(),
            oneofs: 0,
            has_extensions: false,
        });
        self.queue.push((id, desc.clone()));
        id
    }

    fn enum_id(&mut self, desc: &EnumDescriptor) -> u32 {
        if let Some(&id) = self.enum_ids.get(desc.full_name()) {
            return id;
        }
        let mut numbers: Vec<i32> = desc.values().map(|v| v.number()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let mut names = Vec::with_capacity(numbers.len());
        for &n in &numbers {
            // As `json` names it: the first value declared with the number.
            let mut name = Vec::new();
            if let Some(v) = enum_value_name(desc, n) {
                write_str(&mut name, v);
            }
            names.push(name.into_boxed_slice());
        }
        let id = self.enums.len() as u32;
        self.enums.push(EnumPlan {
            numbers,
            names,
            default: desc.default_value().number(),
        });
        self.enum_ids.insert(desc.full_name().to_owned(), id);
        id
    }

    fn ty(&mut self, field: &FieldDescriptor, kind: &Kind) -> Ty {
        match kind {
            Kind::Double => Ty::Double,
            Kind::Float => Ty::Float,
            Kind::Int32 => Ty::Int32,
            Kind::Int64 => Ty::Int64,
            Kind::Uint32 => Ty::Uint32,
            Kind::Uint64 => Ty::Uint64,
            Kind::Sint32 => Ty::Sint32,
            Kind::Sint64 => Ty::Sint64,
            Kind::Fixed32 => Ty::Fixed32,
            Kind::Fixed64 => Ty::Fixed64,
            Kind::Sfixed32 => Ty::Sfixed32,
            Kind::Sfixed64 => Ty::Sfixed64,
            Kind::Bool => Ty::Bool,
            Kind::String => Ty::String,
            Kind::Bytes => Ty::Bytes,
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => Ty::Null,
            Kind::Enum(e) => Ty::Enum(self.enum_id(e)),
            Kind::Message(_) if field.is_group() => Ty::Group,
            Kind::Message(m) => Ty::Message(self.message_id(m)),
        }
    }

    fn compile_message(&mut self, desc: MessageDescriptor) -> MessagePlan {
        let special = special(desc.full_name());
        let mut fields = Vec::new();
        let mut oneof_ids: Vec<String> = Vec::new();
        // Well-known types are rendered by dedicated code that knows their fields.
        if special == Special::None {
            for field in desc.fields() {
                let kind = field.kind();
                let (ty, shape) = match &kind {
                    Kind::Message(entry) if field.is_map() => {
                        let key = self.ty(&field, &entry.map_entry_key_field().kind());
                        let value_field = entry.map_entry_value_field();
                        let value = self.ty(&value_field, &value_field.kind());
                        (value, Shape::Map { key, value })
                    }
                    _ => {
                        let ty = self.ty(&field, &kind);
                        let shape = if field.is_list() {
                            Shape::List
                        } else {
                            Shape::Single
                        };
                        (ty, shape)
                    }
                };
                let oneof = field
                    .containing_oneof()
                    .filter(|o| !o.is_synthetic())
                    .map(|o| {
                        let name = o.full_name().to_owned();
                        match oneof_ids.iter().position(|n| *n == name) {
                            Some(i) => i as u32,
                            None => {
                                oneof_ids.push(name);
                                (oneof_ids.len() - 1) as u32
                            }
                        }
                    });
                fields.push(FieldPlan {
                    number: field.number(),
                    keys: [quoted_key(field.json_name()), quoted_key(field.name())],
                    ty,
                    shape,
                    presence: field.supports_presence(),
                    oneof,
                });
            }
        }
        fields.sort_by_key(|f| f.number);
        let max = fields
            .iter()
            .map(|f| f.number)
            .filter(|&n| n < DENSE_LIMIT)
            .max();
        let mut dense = vec![0u32; max.map_or(0, |m| m as usize + 1)];
        for (pos, f) in fields.iter().enumerate() {
            if let Some(slot) = dense.get_mut(f.number as usize) {
                *slot = pos as u32 + 1;
            }
        }
        let has_extensions = desc.extensions().len() > 0;
        MessagePlan {
            has_extensions,
            desc,
            special,
            fields,
            dense,
            oneofs: oneof_ids.len(),
        }
    }
}
