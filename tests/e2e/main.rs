#![allow(unreachable_pub, dead_code)]
//! End-to-end tests: real backends, a real gateway and real clients over 127.0.0.1 sockets.
//! One test binary, so it links once.

mod support;

mod cli;
mod config;
mod descriptors;
mod failures;
mod graphql;
mod graphql_limits;
mod graphql_types;
mod graphql_validation;
mod graphql_ws;
mod proxy;
mod rest;
mod streaming;
