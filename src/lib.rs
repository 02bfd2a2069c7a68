//! omnigate: one front door for REST, GraphQL and WebSocket clients, in front of gRPC and plain
//! HTTP backends whose APIs are learnt at run time.
//!
//! # Layout
//! Modules in the order a request travels:
//! - [`server`]: binds the stages together on a listener;
//! - [`ingress`]: one module per downstream protocol → the internal [`request::Request`];
//! - [`request`]: THE normalized request shared by every stage;
//! - [`pipeline`]: the order of the stages, in one place;
//! - [`policy`]: checks every request passes (limits, ...);
//! - [`router`]: the route table as data and a pure `find`;
//! - [`transcode`]: JSON ⇄ protobuf, HttpRule templates and bindings;
//! - [`upstream`]: HTTP proxy and gRPC dispatch;
//!
//! and beside the flow: [`config`] (raw → validated), [`descriptors`] (files, reflection),
//! [`gateway`] (the live, atomically swapped state), [`error`] (one error type, one status
//! table), [`demo`] (the example backends), [`telemetry`].

pub mod config;
pub mod demo;
pub mod descriptors;
pub mod error;
pub mod gateway;
pub mod ingress;
pub mod pipeline;
pub mod policy;
pub mod request;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod transcode;
pub mod upstream;
