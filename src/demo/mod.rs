//! In-process example backends for `omnigate demo`, the test suite and the
//! benchmark.
//!
//! Three services are provided, all in memory and deterministic:
//!
//! * [`LibraryBackend`]: the gRPC service `library.v1.Library` (shelves and
//!   books), whose HTTP annotations exercise every transcoding feature the
//!   gateway supports;
//! * [`AuthorsBackend`]: the gRPC service `authors.v1.Authors`, referenced by
//!   the books' `author_id`;
//! * [`HttpBackend`]: a plain JSON-over-HTTP service (reviews plus echo,
//!   delay, status and streaming helpers).
//!
//! Both gRPC servers also serve server reflection (`grpc.reflection.v1` and
//! `grpc.reflection.v1alpha`) and health checking (`grpc.health.v1`).
//! [`start`] runs all three on ephemeral loopback ports.
//!
//! The protos live in `descriptors/` and are compiled by `build.rs`;
//! [`LIBRARY_DESCRIPTOR_SET`] and [`AUTHORS_DESCRIPTOR_SET`] are the encoded
//! `FileDescriptorSet`s (with imports, source info and custom options).
//!
//! # Error triggers
//!
//! Any shelf id (library) or author id (authors) of the form `fail-<code>`
//! makes the call fail deterministically; see [`trigger_for_id`].

mod authors;
mod errors;
mod gateway;
mod http;
mod library;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataMap;

pub use self::authors::AuthorsBackend;
pub use self::errors::{status_details, trigger_for_id, unpack_detail};
pub use self::gateway::{banner, gateway_config, graphql_config, REVIEWS_SDL};
pub use self::http::HttpBackend;
pub use self::library::LibraryBackend;

/// Code generated from the demo protos (messages, tonic clients and servers).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/demo_pb.rs"));
}

/// Encoded `FileDescriptorSet` of `library/v1/library.proto`, its imports
/// (`google/api/*`, well-known types) and the `google/rpc` error protos.
pub const LIBRARY_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/library.binpb"));

/// Encoded `FileDescriptorSet` of `authors/v1/authors.proto`, its imports and
/// the `google/rpc` error protos.
pub const AUTHORS_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/authors.binpb"));

/// Fully qualified name of the library service.
pub const LIBRARY_SERVICE: &str = "library.v1.Library";

/// Fully qualified name of the authors service.
pub const AUTHORS_SERVICE: &str = "authors.v1.Authors";

/// Locks a mutex, ignoring poisoning (the guarded data stays consistent
/// because every critical section is panic-free bookkeeping).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Call counters, last metadata and artificial latency shared by the clones
/// of one backend handle.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    calls: Mutex<HashMap<&'static str, usize>>,
    last_metadata: Mutex<Option<MetadataMap>>,
    delay_nanos: AtomicU64,
}

impl Observer {
    /// Records a call of `method` carrying `metadata`.
    pub(crate) fn record(&self, method: &'static str, metadata: &MetadataMap) {
        *lock(&self.calls).entry(method).or_default() += 1;
        *lock(&self.last_metadata) = Some(metadata.clone());
    }

    /// Records a unary call and then waits for the configured delay.
    pub(crate) async fn unary(&self, method: &'static str, metadata: &MetadataMap) {
        self.record(method, metadata);
        let delay = self.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    pub(crate) fn calls(&self, method: &str) -> usize {
        lock(&self.calls).get(method).copied().unwrap_or(0)
    }

    pub(crate) fn last_metadata(&self) -> Option<MetadataMap> {
        lock(&self.last_metadata).clone()
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.delay_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }
}

/// Where [`start_at`] binds each backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendAddrs {
    /// Address of the library gRPC server.
    pub library: SocketAddr,
    /// Address of the authors gRPC server.
    pub authors: SocketAddr,
    /// Address of the HTTP/JSON server.
    pub http: SocketAddr,
}

impl BackendAddrs {
    /// All three on `127.0.0.1` with ports chosen by the OS.
    pub fn ephemeral() -> Self {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self {
            library: any,
            authors: any,
            http: any,
        }
    }
}

impl Default for BackendAddrs {
    fn default() -> Self {
        Self::ephemeral()
    }
}

/// The running demo backends, as returned by [`start`].
///
/// Dropping this value (or calling [`Backends::shutdown`]) stops all three
/// servers.
#[derive(Debug)]
pub struct Backends {
    /// Bound address of the library gRPC server.
    pub library: SocketAddr,
    /// Bound address of the authors gRPC server.
    pub authors: SocketAddr,
    /// Bound address of the HTTP/JSON server.
    pub http: SocketAddr,
    /// Handle to the library service's state and counters.
    pub library_backend: LibraryBackend,
    /// Handle to the authors service's state and counters.
    pub authors_backend: AuthorsBackend,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Backends {
    /// `http://` URL of the library gRPC server.
    pub fn library_url(&self) -> String {
        format!("http://{}", self.library)
    }

    /// `http://` URL of the authors gRPC server.
    pub fn authors_url(&self) -> String {
        format!("http://{}", self.authors)
    }

    /// `http://` URL of the HTTP/JSON server.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Stops the servers and waits for them to finish. Connections that are
    /// still busy after two seconds (e.g. an endless `WatchShelf`) are cut.
    pub async fn shutdown(mut self) {
        // Receivers may already be gone if a server failed; nothing to do then.
        let _ = self.stop.send(true);
        for mut task in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

/// Completes once `stop` becomes true or its sender is dropped.
async fn stop_signal(mut stop: watch::Receiver<bool>) {
    // An error means the sender was dropped, which also means "stop".
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Starts all three backends on ephemeral `127.0.0.1` ports.
/// Serve one example gRPC service with server reflection (v1 and v1alpha, describing
/// `descriptor_set`) and health checking (reported SERVING) on `listener` until `shutdown`.
async fn serve_grpc<S>(
    service: S,
    descriptor_set: &'static [u8],
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error>
where
    S: tower::Service<
            ::http::Request<tonic::body::Body>,
            Response = ::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(S::NAME, tonic_health::ServingStatus::Serving)
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptor_set)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid");
    tonic::transport::Server::builder()
        .add_service(service)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

pub async fn start() -> std::io::Result<Backends> {
    start_at(BackendAddrs::ephemeral()).await
}

/// Starts all three backends on the given addresses (port 0 picks a free one).
pub async fn start_at(addrs: BackendAddrs) -> std::io::Result<Backends> {
    let library_listener = TcpListener::bind(addrs.library).await?;
    let authors_listener = TcpListener::bind(addrs.authors).await?;
    let http_listener = TcpListener::bind(addrs.http).await?;
    let library = library_listener.local_addr()?;
    let authors = authors_listener.local_addr()?;
    let http = http_listener.local_addr()?;

    let library_backend = LibraryBackend::new();
    let authors_backend = AuthorsBackend::new();
    let (stop, stop_rx) = watch::channel(false);

    let tasks = vec![
        tokio::spawn({
            let backend = library_backend.clone();
            let signal = stop_signal(stop_rx.clone());
            async move {
                if let Err(error) = backend.serve(library_listener, signal).await {
                    tracing::error!(%error, "demo library backend failed");
                }
            }
        }),
        tokio::spawn({
            let backend = authors_backend.clone();
            let signal = stop_signal(stop_rx.clone());
            async move {
                if let Err(error) = backend.serve(authors_listener, signal).await {
                    tracing::error!(%error, "demo authors backend failed");
                }
            }
        }),
        tokio::spawn({
            let signal = stop_signal(stop_rx);
            async move {
                if let Err(error) = HttpBackend::serve(http_listener, signal).await {
                    tracing::error!(%error, "demo HTTP backend failed");
                }
            }
        }),
    ];
    tracing::info!(%library, %authors, %http, "demo backends listening");

    Ok(Backends {
        library,
        authors,
        http,
        library_backend,
        authors_backend,
        stop,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message as _;
    use prost_reflect::DescriptorPool;
    use std::path::PathBuf;

    /// The command that rewrites the checked-in descriptor sets.
    const BLESS: &str =
        "OMNIGATE_BLESS=1 cargo test --lib demo::tests::descriptor_sets_are_current";

    #[test]
    fn descriptor_sets_are_current() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("descriptors");
        let bless = std::env::var_os("OMNIGATE_BLESS").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for (file, built) in [
            ("library.binpb", LIBRARY_DESCRIPTOR_SET),
            ("authors.binpb", AUTHORS_DESCRIPTOR_SET),
        ] {
            let path = dir.join(file);
            let current = std::fs::read(&path).ok();
            if current.as_deref() == Some(built) {
                continue;
            }
            if bless {
                std::fs::write(&path, built).expect("write descriptor set");
            } else {
                stale.push(format!("descriptors/{file}"));
            }
        }
        assert!(
            stale.is_empty(),
            "{} out of date with the .proto files compiled by build.rs; \
             regenerate with `{BLESS}`",
            stale.join(" and ")
        );
    }

    #[tokio::test]
    async fn start_runs_all_three_and_shutdown_stops_them() {
        use pb::authors::v1::{authors_client::AuthorsClient, GetAuthorRequest};
        use pb::library::v1::{library_client::LibraryClient, GetBookRequest};

        let backends = start().await.expect("start demo backends");
        for addr in [backends.library, backends.authors, backends.http] {
            assert!(addr.ip().is_loopback() && addr.port() != 0);
        }
        let book = LibraryClient::connect(backends.library_url())
            .await
            .expect("connect library")
            .get_book(GetBookRequest {
                name: "shelves/2/books/1".to_owned(),
            })
            .await
            .expect("get book")
            .into_inner();
        let author = AuthorsClient::connect(backends.authors_url())
            .await
            .expect("connect authors")
            .get_author(GetAuthorRequest { id: book.author_id })
            .await
            .expect("get author")
            .into_inner();
        assert_eq!(author.display_name, "Mei Aranda");
        assert_eq!(backends.library_backend.calls("GetBook"), 1);
        assert_eq!(backends.authors_backend.calls("GetAuthor"), 1);
        let index = tokio::net::TcpStream::connect(backends.http).await;
        assert!(index.is_ok(), "HTTP backend accepts connections");

        let addrs = [backends.library, backends.authors, backends.http];
        tokio::time::timeout(Duration::from_secs(5), backends.shutdown())
            .await
            .expect("shutdown finishes promptly");
        for addr in addrs {
            assert!(
                tokio::net::TcpStream::connect(addr).await.is_err(),
                "{addr} still accepting after shutdown"
            );
        }
    }

    #[test]
    fn descriptor_sets_keep_comments_and_http_rules() {
        for (set, service, method, expected) in [
            (
                LIBRARY_DESCRIPTOR_SET,
                LIBRARY_SERVICE,
                "UpdateBook",
                "/v1/{book.name=shelves/*/books/*}",
            ),
            (
                AUTHORS_DESCRIPTOR_SET,
                AUTHORS_SERVICE,
                "GetAuthor",
                "/v1/authors/{id}",
            ),
        ] {
            let pool = DescriptorPool::decode(set).expect("descriptor set decodes");
            let service = pool.get_service_by_name(service).expect("service present");
            let method = service
                .methods()
                .find(|m| m.name() == method)
                .expect("method present");
            let http = pool
                .get_extension_by_name("google.api.http")
                .expect("http extension present");
            let rule = method.options().get_extension(&http).into_owned();
            let rule = rule.as_message().expect("HttpRule message");
            let rule = pb::google::api::HttpRule::decode(rule.encode_to_vec().as_slice())
                .expect("HttpRule decodes");
            let path = match rule.pattern {
                Some(pb::google::api::http_rule::Pattern::Patch(p))
                | Some(pb::google::api::http_rule::Pattern::Get(p)) => p,
                other => panic!("unexpected pattern {other:?}"),
            };
            assert_eq!(path, expected);
            // Source info survives, so comments can become GraphQL descriptions.
            let comments = method
                .parent_file()
                .file_descriptor_proto()
                .source_code_info
                .as_ref()
                .is_some_and(|info| {
                    info.location
                        .iter()
                        .any(|l| l.leading_comments.as_deref().is_some_and(|c| !c.is_empty()))
                });
            assert!(comments, "comments missing from {}", service.name());
            for detail in [
                "google.rpc.Status",
                "google.rpc.BadRequest",
                "google.rpc.ResourceInfo",
            ] {
                assert!(
                    pool.get_message_by_name(detail).is_some(),
                    "{detail} missing"
                );
            }
        }
    }
}
