//! Ingress: one module per downstream protocol, each turning its protocol into the internal
//! [`crate::request::Request`] and the pipeline's answer back into its protocol.
//!
//! Architecture Invariant: nothing outside `ingress/` knows axum extractors (or, later,
//! async-graphql types).

pub mod graphql;
pub mod rest;
