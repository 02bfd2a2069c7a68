//! Proto3 JSON of a gRPC reply, rendered straight from its protobuf wire bytes.
//!
//! **In:** a [`ReplyPlan`] (compiled once per reply type when the route table is built), the
//! reply's wire bytes and the [`JsonOptions`]. **Out:** the reply's proto3 JSON appended to a
//! `Vec<u8>`, JSON-equal to `json::encode_message(&DynamicMessage::decode(desc, bytes)?, opts)`
//! for every input and both output options (`use_proto_names`, `emit_unpopulated`), or that
//! path's exact error. **Must not know:** HTTP, gRPC clients, routing.
//!
//! Why hand-written: no crate renders protobuf wire bytes as proto3 JSON from descriptors
//! known only at run time without first building a dynamic message; decoding into a
//! `DynamicMessage` (a `BTreeMap` insert and a `Value` per field) and serializing it through
//! serde cost more than a third of the gateway's CPU on a typical reply. Here the bytes are
//! walked once, with a per-type plan (JSON keys pre-escaped, kinds and enum names resolved),
//! writing JSON as fields go by.
//!
//! Equivalence rules (prost's decoding, `json`'s rendering): fields in number order;
//! unknown fields skipped; for a singular field the last occurrence wins, for a oneof the last
//! member seen; repeated scalars packed or not, mixed; map entries with missing key or value
//! defaulted, duplicate keys last-wins; fields without presence omitted at their default
//! unless `emit_unpopulated`; well-known types in their special forms (`Timestamp`,
//! `Duration`, wrappers, `Struct`/`Value`/`ListValue`, `Empty`, `FieldMask`, with `json`'s text
//! helpers); `Any` through `json` for its span alone. Anything rarer (groups, a singular message field twice,
//! which protobuf merges, a field of a pool extension) and every failure (malformed bytes,
//! an unrenderable value) re-runs the whole reply through `DynamicMessage::decode` and
//! `json::encode_message`: the fallback gives the exact answer, so it never changes the output.

mod plan;
mod render;
#[cfg(test)]
mod tests;

use prost_reflect::DynamicMessage;

pub use plan::ReplyPlan;

use crate::transcode::json::{self, FieldError, JsonOptions};
use render::{Renderer, RECURSION_LIMIT};

/// Why a reply could not be rendered: exactly what the decode-then-encode path says.
#[derive(Debug)]
pub enum ReplyError {
    /// The bytes are not a valid message of the reply type.
    Decode(prost::DecodeError),
    /// The message cannot be shown as JSON (an `Any` of an unknown type, ...).
    Render(FieldError),
}

/// Append the proto3 JSON of the reply `bytes` to `out`. On error `out` is left as it was.
pub fn render_reply(
    plan: &ReplyPlan,
    bytes: &[u8],
    opts: &JsonOptions,
    out: &mut Vec<u8>,
) -> Result<(), ReplyError> {
    // JSON is usually 1.5 to 2.5 times its protobuf (keys are longer than tags, and most
    // values are short): room for that up front, rather than a `realloc` that copies what
    // was written. A buffer the caller already sized is used as it is.
    if out.capacity() == out.len() {
        out.reserve(bytes.len().saturating_mul(5) / 2 + 64);
    }
    let start = out.len();
    if Renderer::new(plan, opts, out)
        .message(0, bytes, RECURSION_LIMIT)
        .is_ok()
    {
        return Ok(());
    }
    out.truncate(start);
    let message =
        DynamicMessage::decode(plan.root().desc.clone(), bytes).map_err(ReplyError::Decode)?;
    json::encode_message_to(&message, opts, out).map_err(ReplyError::Render)
}
