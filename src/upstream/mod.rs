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
