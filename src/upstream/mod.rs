//! Upstream dispatch: calls to backends.
//!
//! - [`http`]: the reverse proxy to plain HTTP backends;
//! - [`grpc`]: gRPC calls with runtime-described (encoded) messages.
//!
//! Architecture Invariant: nothing outside `upstream/` knows tonic channels or hyper clients.

pub mod grpc;
pub mod http;
