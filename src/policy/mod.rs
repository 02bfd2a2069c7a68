//! Policies: checks every request passes, whatever protocol it came in by.
//!
//! In: the normalized [`Request`]. Out: the same request (possibly with a wrapped body or a
//! tighter deadline) to pass on, or an [`Error`] that answers it early.
//!
//! Architecture Invariant: a policy sees only [`Request`]: never an axum, GraphQL or tonic type,
//! so each one applies to REST, GraphQL and WebSocket alike.

pub mod framing;
pub mod limits;

use crate::config::validate::Settings;
use crate::error::Error;
use crate::request::Request;

/// Apply every policy, outermost first. The order is decided here and nowhere else:
/// 1. framing (the `Host` header RFC 9112 requires);
/// 2. limits (body size).
pub fn apply(settings: &Settings, request: &mut Request) -> Result<(), Error> {
    framing::check(request)?;
    limits::check(settings.max_body_bytes, request)?;
    Ok(())
}
