//! Transcoding between JSON/HTTP and protobuf/gRPC.
//!
//! - [`template`]: HttpRule path templates, compiled once into a matcher;
//! - [`json`]: proto3 JSON mapping both ways (through prost-reflect);
//! - [`fields`]: path variables, query parameters, `body` and `response_body` bindings;
//! - [`rest`]: one REST call of a matched binding, request to response.

pub mod fields;
pub mod json;
pub mod rest;
pub mod template;
