//! Upstream dispatch: calls to backends.
//!
//! - [`http`]: the reverse proxy to plain HTTP backends;
//! - [`grpc`]: gRPC calls with runtime-described (encoded) messages.
//!
//! Architecture Invariant: nothing outside `upstream/` knows tonic channels or hyper clients.

pub mod grpc;
pub mod http;

/// How many shards the per-thread upstream state has: twice the cores, so that the serving
/// threads (one per core, or the runtime's workers) rarely share one.
pub(crate) fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 2
}

/// This thread's shard (threads are numbered in the order they first ask).
pub(crate) fn shard_index(shards: usize) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i) % shards
}

/// An error with its sources (`outer: inner: root cause`), for the log and error reasons.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
