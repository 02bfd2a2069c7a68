//! Wires the stages together and serves them on a bound listener until shutdown.
//!
//! In: a bound [`TcpListener`], the [`Gateway`], and a shutdown future. Out: nothing until
//! shutdown: then the listener is closed, in-flight requests get up to the grace period to
//! finish, connections still open after it are closed, and `run` returns.

mod timer;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::gateway::Gateway;
use crate::ingress;
use crate::ingress::graphql::GraphqlState;
use crate::request::{Body, BoxError};
use crate::router::build::BuildError;

/// The HTTP application: every ingress mounted on one router (GraphQL on its path, REST for
/// everything else). Fails when the GraphQL config does not fit the descriptors.
pub fn app(gateway: Arc<Gateway>) -> Result<axum::Router, Vec<BuildError>> {
    let graphql = ingress::graphql::GraphqlState::new(gateway.clone())?;
    Ok(routed(gateway, graphql))
}

fn routed(gateway: Arc<Gateway>, graphql: Option<Arc<GraphqlState>>) -> axum::Router {
    let mut router = axum::Router::<Arc<Gateway>>::new();
    if let Some(graphql) = graphql {
        router = router.merge(ingress::graphql::router(graphql));
    }
    router.fallback(ingress::rest::handle).with_state(gateway)
}

/// What serves each request of a connection: the GraphQL path goes through axum's router
/// (GraphQL over HTTP, WebSocket upgrades, SSE, GraphiQL); every other request is REST, which
/// hyper hands to the REST ingress directly, without axum's routing, boxed services and second
/// boxing of both bodies. Same responses: the router would send those requests to the same
/// REST fallback. Shared behind one `Arc`: each request clones that, not every field.
struct App {
    gateway: Arc<Gateway>,
    /// The GraphQL path and the router that serves it, when GraphQL is configured.
    graphql: Option<(Arc<str>, axum::Router)>,
}

impl App {
    fn new(gateway: Arc<Gateway>) -> Result<Arc<App>, Vec<BuildError>> {
        let graphql = GraphqlState::new(gateway.clone())?.map(|graphql| {
            let path: Arc<str> = graphql.path().into();
            (path, routed(gateway.clone(), Some(graphql)))
        });
        Ok(Arc::new(App { gateway, graphql }))
    }

    async fn serve(
        self: Arc<App>,
        request: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> http::Response<ReplyBody> {
        match &self.graphql {
            Some((path, router)) if request.uri().path() == &**path => {
                let router = router.clone();
                let mut request = request.map(axum::body::Body::new);
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                // Boxed: axum's future is large, and the REST branch should not pay for it.
                let response = Box::pin(router.oneshot(request))
                    .await
                    .unwrap_or_else(|e| match e {});
                response.map(ReplyBody::Routed)
            }
            _ => {
                let request = ingress::rest::normalize(
                    request.map(crate::request::Body::incoming),
                    Some(peer),
                );
                ingress::rest::serve(&self.gateway, request)
                    .await
                    .map(ReplyBody::Rest)
            }
        }
    }
}

/// A response body of either [`App`] (an enum rather than a second box around each).
enum ReplyBody {
    Routed(axum::body::Body),
    Rest(Body),
}

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Both bodies are boxed inside, hence `Unpin`.
        match self.get_mut() {
            ReplyBody::Routed(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
            ReplyBody::Rest(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyBody::Routed(body) => body.is_end_stream(),
            ReplyBody::Rest(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Routed(body) => body.size_hint(),
            ReplyBody::Rest(body) => body.size_hint(),
        }
    }
}

/// Serve until `shutdown` resolves, then drain for at most the configured grace period.
///
/// The accept loop is ours rather than `axum::serve`'s so that each connection task is owned
/// here: when the grace period ends, the connections still open are closed (their tasks
/// aborted) instead of living on after `run` returned.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = gateway.settings.shutdown_grace;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = start(&gateway, &stop_rx)?;
    let serving = accept_loop(listener, app, stop_rx, grace);
    tokio::pin!(serving);
    tokio::select! {
        () = shutdown => {}
        result = &mut serving => return result,
    }
    tracing::info!("Shutting down: no new connections; draining in-flight requests.");
    let _ = stop_tx.send(true);
    gateway.begin_shutdown();
    serving.await
}

/// Bind `address` once per available core, every socket with `SO_REUSEPORT` so that the
/// kernel spreads new connections over them (port 0: the first one picks the port).
///
/// `SO_REUSEPORT` would also let a second process of the same user join a port already in
/// use (a second gateway started by mistake would silently take half the connections), so a
/// fixed port is first bound once without it: a port in use fails with `AddrInUse`.
pub fn bind_per_core(address: SocketAddr) -> std::io::Result<Vec<std::net::TcpListener>> {
    if address.port() != 0 {
        drop(tcp_socket(address, false)?);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(cores);
    let mut address = address;
    for _ in 0..cores {
        let socket = tcp_socket(address, true)?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A non-blocking TCP socket bound to `address` (`SO_REUSEADDR`, so that connections of an
/// earlier run in TIME-WAIT do not block the port).
fn tcp_socket(address: SocketAddr, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// [`run`] on several listeners bound to one address (see [`bind_per_core`]): each is served
/// by its own thread running a single-threaded runtime, so a connection, its requests and
/// the upstream connections they open stay on one core. The calling runtime keeps the
/// shared background work (descriptor refresh, gRPC channels created at start-up).
pub async fn run_per_core(
    listeners: Vec<std::net::TcpListener>,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = gateway.settings.shutdown_grace;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = start(&gateway, &stop_rx)?;
    let mut finished = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let app = app.clone();
        let stop = stop_rx.clone();
        std::thread::Builder::new()
            .name(format!("omnigate-serve-{index}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            accept_loop(listener, app, stop, grace).await
                        })
                    });
                let _ = done_tx.send(served);
            })?;
        finished.push(done_rx);
    }
    shutdown.await;
    tracing::info!("Shutting down: no new connections; draining in-flight requests.");
    let _ = stop_tx.send(true);
    gateway.begin_shutdown();
    let mut result = Ok(());
    for done in finished {
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => result = Err(error),
            Err(_) => result = Err(std::io::Error::other("a serving thread panicked")),
        }
    }
    result
}

/// Start the gateway's background work and build the application (fails when the GraphQL
/// config does not fit the descriptors).
fn start(
    gateway: &Arc<Gateway>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<Arc<App>> {
    gateway.spawn_refresh(stop.clone());
    App::new(gateway.clone()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        std::io::Error::other(lines.join("\n"))
    })
}

/// Accept and serve connections on `listener` until `stop` turns true, then close it and
/// drain for at most `grace`.
async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Slow-header clients (and idle keep-alive connections) are closed after this; the timer
    // is what makes hyper enforce it (a coarse one: see `timer`). Flattened writes (head and
    // small bodies copied into one buffer, one `write`) cost fewer instructions per response
    // than hyper's default vectored queue: callgrind, bench/PROFILE.md "Ninth session".
    builder
        .http1()
        .writev(false)
        .timer(timer::CoarseTimer)
        .header_read_timeout(app.gateway.settings.header_read_timeout);
    // Extended CONNECT, for WebSocket over HTTP/2 (as `axum::serve` enables it).
    builder.http2().enable_connect_protocol();
    let drain = Drain::default();
    let mut connections = JoinSet::new();

    loop {
        tokio::select! {
            // Only ever set to true (or dropped): any change means stop.
            _ = stop.changed() => break,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(%error, "Accepting a connection failed.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = hyper::service::service_fn(move |request| {
                    let response = app.clone().serve(request, peer);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection =
                    drain.watch(connection, |connection| connection.graceful_shutdown());
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "Connection ended with an error.");
                    }
                });
            }
        }
    }

    drop(listener);
    // WebSocket sessions outlive their connection: they were told to close (`closing`) and
    // are waited for in the same grace period.
    let drained = async {
        drain.stop();
        // A connection's task ends when it has finished gracefully (or failed).
        while connections.join_next().await.is_some() {}
        app.gateway.sessions_closed().await;
    };
    tokio::select! {
        () = drained => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "Grace period over; closing the remaining connections.");
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// Tells every connection of one accept loop to finish gracefully (hyper's
/// `graceful_shutdown`: an idle connection closes, a busy one after its in-flight requests).
///
/// Same behaviour as hyper-util's `GracefulShutdown`, which polls a watch channel's `Notified`
/// (a mutex lock) on every poll of every connection. Here a poll checks a flag and whether the
/// task's waker is still the one registered (it always is for a spawned task); the registry
/// lock is taken once per connection, and once more at shutdown.
#[derive(Default)]
struct Drain {
    shared: Arc<DrainShared>,
}

#[derive(Default)]
struct DrainShared {
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// The waker of every connection being served, to wake the idle ones at shutdown.
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Drain {
    /// `connection`, told to finish gracefully (`graceful_shutdown`) once [`Drain::stop`] is
    /// called.
    fn watch<C: Future>(
        &self,
        connection: C,
        graceful_shutdown: fn(Pin<&mut C>),
    ) -> impl Future<Output = C::Output> {
        let mut watcher = Watcher {
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            shared: self.shared.clone(),
            registered: None,
            told: false,
        };
        async move {
            let mut connection = std::pin::pin!(connection);
            std::future::poll_fn(|cx| {
                if watcher.should_stop(cx) {
                    graceful_shutdown(connection.as_mut());
                }
                connection.as_mut().poll(cx)
            })
            .await
        }
    }

    fn stop(&self) {
        // Set before the wakers are taken: a connection registering after this sees the flag.
        self.shared.stopping.store(true, Ordering::Release);
        let wakers = lock(&self.shared.wakers);
        for waker in wakers.values() {
            waker.wake_by_ref();
        }
    }
}

/// One connection's side of a [`Drain`].
struct Watcher {
    id: u64,
    shared: Arc<DrainShared>,
    /// The waker last put in the registry (compared without the lock on each poll).
    registered: Option<Waker>,
    /// Whether the connection was already told to finish.
    told: bool,
}

impl Watcher {
    /// True once, the first time it is polled after [`Drain::stop`].
    fn should_stop(&mut self, cx: &Context<'_>) -> bool {
        if self.told {
            return false;
        }
        if !self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            lock(&self.shared.wakers).insert(self.id, cx.waker().clone());
            self.registered = Some(cx.waker().clone());
        }
        self.told = self.shared.stopping.load(Ordering::Acquire);
        self.told
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.registered.is_some() {
            lock(&self.shared.wakers).remove(&self.id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
