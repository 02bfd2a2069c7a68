//! HTTP upstream dispatch: the reverse proxy (nginx's `proxy_pass`).
//!
//! In: the normalized [`Request`] and the path (and query) to ask the upstream for. Out: the
//! upstream's response, streamed back without buffering. Must not know: routing rules (the
//! router already chose the upstream and rewrote the path), JSON, gRPC.
//!
//! What it adds: `X-Forwarded-For` (appended), `X-Forwarded-Proto`, `X-Forwarded-Host`,
//! `X-Real-IP`; `Host` rewritten to the upstream's authority unless `preserve_host`; hop-by-hop
//! headers removed both ways (RFC 9110 §7.6.1). Connections are HTTP/1.1, kept alive and pooled
//! per upstream (see [`Pool`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::error::Error;
use crate::request::{body_from, Body, BoxError, Request, Response};

/// Connection settings every HTTP upstream shares.
#[derive(Clone, Debug)]
pub struct HttpClient {
    connect_timeout: Duration,
}

impl HttpClient {
    pub fn new(connect_timeout: Duration) -> Self {
        HttpClient { connect_timeout }
    }
}

// Constants, not `from_static` calls: those check the text again on every request.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");
const UPGRADE: HeaderValue = HeaderValue::from_static("upgrade");

/// How long an idle upstream connection is kept for reuse.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per shard of a pool; more are closed when they come back.
const MAX_IDLE_PER_SHARD: usize = 256;

/// An idle connection and when it became idle.
type Idle = (SendRequest<Body>, Instant);

/// The idle keep-alive connections to one upstream, ready for their next request.
///
/// Sharded by thread: each serving thread (a tokio worker, or a per-core runtime) takes and
/// returns connections in its own shard, so the lock is uncontended and a connection's
/// background task usually runs on the thread that uses it.
struct Pool {
    shards: Box<[Mutex<Vec<Idle>>]>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Pool {
    fn new() -> Pool {
        let shards = super::shard_count();
        Pool {
            shards: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    fn shard(&self) -> &Mutex<Vec<Idle>> {
        &self.shards[super::shard_index(self.shards.len())]
    }

    /// The most recently used idle connection that is still open, if any.
    fn take(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_PER_SHARD {
            idle.push((sender, Instant::now()));
        }
    }
}

/// Open a new HTTP/1.1 connection to `authority`; its I/O runs in a task on this runtime.
async fn connect(
    authority: &http::uri::Authority,
    timeout: Duration,
    upgrades: bool,
) -> Result<SendRequest<Body>, BoxError> {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("connecting to {authority} timed out after {timeout:?}"))?
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    stream.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
    // Flattened writes, as on the serving side (src/server.rs, `accept_loop`).
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    if upgrades {
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "Upstream connection ended with an error.");
            }
        });
    } else {
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "Upstream connection ended with an error.");
            }
        });
    }
    Ok(sender)
}

/// Whether `Connection` lists `upgrade`: without it an `Upgrade` header means nothing
/// (RFC 9110 §7.8) and is dropped as hop-by-hop.
fn asks_to_upgrade(headers: &HeaderMap) -> bool {
    connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

/// The comma-separated tokens of every `Connection` line, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The upstream switched protocols: the 101 goes back to the client, and once both sides
/// have switched, a task copies bytes both ways until either closes.
fn tunnel(
    upstream: Arc<str>,
    client_side: hyper::upgrade::OnUpgrade,
    mut response: http::Response<Incoming>,
) -> Response {
    let upstream_side = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client_io, upstream_io) = match tokio::try_join!(client_side, upstream_side) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%upstream, %error, "A protocol switch did not complete.");
                return;
            }
        };
        let (mut client_io, mut upstream_io) = (TokioIo::new(client_io), TokioIo::new(upstream_io));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await {
            tracing::debug!(%upstream, %error, "A tunnel ended with an error.");
        }
    });
    let (mut parts, _) = response.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = protocol {
        parts.headers.insert(header::UPGRADE, protocol);
    }
    parts.headers.insert(header::CONNECTION, UPGRADE);
    parts.version = http::Version::HTTP_11;
    http::Response::from_parts(parts, crate::request::full_body(Bytes::new()))
}

/// An upstream response body that gives its connection back to the pool once it has been
/// read to the end (a body dropped earlier takes the connection down with it).
struct Returning {
    body: Incoming,
    home: Option<(SendRequest<Body>, Arc<Pool>)>,
    /// The route's timeout, also the longest silence allowed within the body.
    stall: Option<Stall>,
}

/// A body that stalls (sends nothing for `limit`) is cut, as nginx's `proxy_read_timeout`
/// does: the client sees an incomplete response rather than one that never ends, and the
/// connection is dropped.
struct Stall {
    upstream: Arc<str>,
    limit: Duration,
    /// Made at the first wait (most bodies arrive whole and never need one).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the timer runs for the current wait; a frame ends the wait.
    waiting: bool,
}

impl Stall {
    /// Ready once the current wait has lasted `limit`.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + self.limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match &mut self.timer {
            Some(timer) => std::future::Future::poll(timer.as_mut(), cx),
            None => Poll::Pending,
        }
    }
}

impl Returning {
    fn give_back(&mut self) {
        if let Some((sender, pool)) = self.home.take() {
            pool.put(sender);
        }
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A body with nothing left (or nothing at all, which nobody polls) still frees its
        // connection.
        if http_body::Body::is_end_stream(&self.body) {
            self.give_back();
        }
    }
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => this.home = None,
            Poll::Ready(_) if this.body.is_end_stream() => this.give_back(),
            Poll::Ready(None) => this.give_back(),
            Poll::Pending => {
                if let Some(stall) = &mut this.stall {
                    if stall.poll_expired(cx).is_ready() {
                        this.home = None;
                        let error = Error::UpstreamTimeout {
                            upstream: stall.upstream.to_string(),
                            timeout: stall.limit,
                        };
                        tracing::warn!(upstream = %stall.upstream, timeout = ?stall.limit,
                            "The upstream's response body stalled; the response is cut.");
                        return Poll::Ready(Some(Err(error.into())));
                    }
                }
            }
            Poll::Ready(Some(Ok(_))) => {}
        }
        if let (Some(stall), Poll::Ready(_)) = (&mut this.stall, &polled) {
            stall.waiting = false;
        }
        polled.map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One HTTP backend.
#[derive(Clone, Debug)]
pub struct HttpUpstream {
    pub name: Arc<str>,
    /// `http://host:port` plus an optional base path (without trailing slash).
    authority: http::uri::Authority,
    base_path: String,
    pub preserve_host: bool,
    pub timeout: Option<Duration>,
    /// The `Host` header sent when the client's is not preserved.
    host: HeaderValue,
    /// Shared by the clones of this upstream (a config reload starts a new pool).
    pool: Arc<Pool>,
}

impl HttpUpstream {
    pub fn new(
        name: &str,
        url: &http::Uri,
        preserve_host: bool,
        timeout: Option<Duration>,
    ) -> Result<Self, String> {
        let scheme = url
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{url}: missing http:// scheme"))?;
        if scheme != http::uri::Scheme::HTTP {
            return Err(format!("{url}: only http:// upstreams are supported"));
        }
        let authority = url
            .authority()
            .cloned()
            .ok_or_else(|| format!("{url}: missing host"))?;
        if url.query().is_some() {
            return Err(format!("{url}: an upstream URL cannot carry a query"));
        }
        let base_path = url.path().trim_end_matches('/').to_string();
        // The port is left out when it is the default one, as clients do.
        let host = match authority.port_u16() {
            Some(80) | None => authority.host(),
            Some(_) => authority.as_str(),
        };
        let host = HeaderValue::from_str(host).map_err(|e| format!("{url}: {e}"))?;
        Ok(HttpUpstream {
            name: name.into(),
            authority,
            base_path,
            preserve_host,
            timeout,
            host,
            pool: Arc::new(Pool::new()),
        })
    }

    /// Forward `request` to `path_and_query` below the base path (empty, or starting with
    /// '/' or '?': a request for exactly a stripped prefix asks for the base path itself, or
    /// `/` when there is none).
    pub async fn forward(
        &self,
        client: &HttpClient,
        request: Request,
        path_and_query: &str,
    ) -> Result<Response, Error> {
        let uri = http::Uri::try_from(upstream_target(&self.base_path, path_and_query))
            .map_err(|e| Error::invalid("", format!("cannot forward to this path: {e}")))?;

        let Request {
            id,
            method,
            mut headers,
            host,
            peer,
            secure,
            body,
            deadline,
            upgrade,
            ..
        } = request;
        // A protocol switch (`Upgrade: websocket`) the client can make: its headers are kept
        // through the hop-by-hop removal, and the upstream's 101 turns the exchange into a
        // tunnel (nginx needs `proxy_set_header Upgrade` for this; here it is the default).
        let switch_to = upgrade
            .as_ref()
            .filter(|_| asks_to_upgrade(&headers))
            .and_then(|_| headers.get(header::UPGRADE).cloned());
        remove_hop_by_hop(&mut headers);
        if let Some(protocol) = &switch_to {
            headers.insert(header::UPGRADE, protocol.clone());
            headers.insert(header::CONNECTION, UPGRADE);
        }
        // The id the client gets back, so both sides log the same one. The `String` becomes the
        // value's buffer: no copy.
        if let Ok(id) = HeaderValue::from_maybe_shared(Bytes::from(id)) {
            headers.insert(X_REQUEST_ID, id);
        }
        if let Some(ip) = peer.and_then(|peer| ip_header_value(peer.ip())) {
            append_forwarded_for(&mut headers, &ip);
            headers.insert(X_REAL_IP, ip);
        }
        headers.insert(X_FORWARDED_PROTO, if secure { HTTPS } else { HTTP });
        let host = host.and_then(|host| HeaderValue::from_maybe_shared(Bytes::from(host)).ok());
        if self.preserve_host {
            if let Some(host) = host {
                headers.insert(X_FORWARDED_HOST, host.clone());
                headers.insert(header::HOST, host);
            }
        } else {
            if let Some(host) = host {
                headers.insert(X_FORWARDED_HOST, host);
            }
            headers.insert(header::HOST, self.host.clone());
        }

        // The route's timeout is the longest wait for the upstream, as nginx's send and read
        // timeouts are: while the request body is still going up, each piece of it starts the
        // wait again, so a long upload is not cut for its length.
        let upload = (self.timeout.is_some() && !http_body::Body::is_end_stream(&body))
            .then(|| Arc::new(Mutex::new(Instant::now())));
        let body = match &upload {
            Some(last) => body_from(Uploading {
                body,
                last: last.clone(),
            }),
            None => body,
        };
        let mut upstream_request = http::Request::new(body);
        *upstream_request.method_mut() = method;
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() = headers;

        let send = self.send(client, upstream_request, switch_to.is_some());
        let result = wait(send, self.timeout, deadline, upload.as_deref())
            .await
            .map_err(|timeout| Error::UpstreamTimeout {
                upstream: self.name.to_string(),
                timeout,
            })?;
        let (sender, response) =
            result.map_err(|e| match crate::policy::limits::is_too_large(&*e) {
                // The request body passed the size limit while it streamed upstream: the client's
                // fault, not the upstream's.
                Some(limit) => Error::PayloadTooLarge { limit },
                None => Error::UpstreamUnavailable {
                    upstream: self.name.to_string(),
                    reason: super::error_chain(&*e),
                },
            })?;
        if let Some(client_side) = upgrade.filter(|_| {
            switch_to.is_some() && response.status() == http::StatusCode::SWITCHING_PROTOCOLS
        }) {
            return Ok(tunnel(self.name.clone(), client_side, response));
        }
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        // A proxy answers in its own HTTP version, not the upstream's (RFC 9110 §6.2): an
        // HTTP/1.0 upstream must not turn the client's keep-alive connection into 1.0.
        parts.version = http::Version::HTTP_11;
        let body = Returning {
            body,
            home: Some((sender, self.pool.clone())),
            stall: self.timeout.map(|limit| Stall {
                upstream: self.name.clone(),
                limit,
                timer: None,
                waiting: false,
            }),
        };
        Ok(http::Response::from_parts(parts, body_from(body)))
    }

    /// Send `request` on an idle pooled connection, or on a new one when none is left. A
    /// request a pooled connection could not even start (the upstream had closed it) is sent
    /// again on the next one; one that failed on a new connection is an error.
    /// A request that may switch protocols always gets a connection of its own (which will
    /// not come back to the pool).
    async fn send(
        &self,
        client: &HttpClient,
        mut request: http::Request<Body>,
        upgrade: bool,
    ) -> Result<(SendRequest<Body>, http::Response<Incoming>), BoxError> {
        loop {
            let idle = if upgrade { None } else { self.pool.take() };
            let (mut sender, pooled) = match idle {
                Some(sender) => (sender, true),
                // Boxed: connecting is rare, and its large future would otherwise be part of
                // (and copied along with) every request's future.
                None => (
                    Box::pin(connect(&self.authority, client.connect_timeout, upgrade)).await?,
                    false,
                ),
            };
            if let Err(error) = sender.ready().await {
                if pooled {
                    continue;
                }
                return Err(error.into());
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((sender, response)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if pooled => request = unsent,
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }
}

/// A request body that notes when it last gave a piece to the upstream connection.
struct Uploading {
    body: Body,
    last: Arc<Mutex<Instant>>,
}

impl http_body::Body for Uploading {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `send` within `idle` of the later of now and the last upload progress, and before
/// `deadline` (without a timer when there is neither); `Err` with the limit that passed.
async fn wait<F: std::future::Future>(
    send: F,
    idle: Option<Duration>,
    deadline: Option<Instant>,
    upload: Option<&Mutex<Instant>>,
) -> Result<F::Output, Duration> {
    if idle.is_none() && deadline.is_none() {
        return Ok(send.await);
    }
    let started = Instant::now();
    let last = || upload.map_or(started, |m| *m.lock().unwrap_or_else(|e| e.into_inner()));
    let mut send = std::pin::pin!(send);
    loop {
        // The earlier of the two limits (at least one is set).
        let until = [idle.map(|idle| last() + idle), deadline]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(started);
        if let Ok(output) = tokio::time::timeout_at(until.into(), send.as_mut()).await {
            return Ok(output);
        }
        let now = Instant::now();
        if let Some(deadline) = deadline.filter(|d| now >= *d) {
            return Err(deadline.saturating_duration_since(started));
        }
        match idle {
            // The upload moved on since the wait began: wait again from its last piece.
            Some(idle) if last() + idle > now => continue,
            Some(idle) => return Err(idle),
            None => continue,
        }
    }
}

/// `base_path` + `rest`, never empty and always starting with '/'.
fn upstream_target(base_path: &str, rest: &str) -> String {
    let slash = base_path.bytes().chain(rest.bytes()).next() != Some(b'/');
    let mut target = String::with_capacity(usize::from(slash) + base_path.len() + rest.len());
    if slash {
        target.push('/');
    }
    target.push_str(base_path);
    target.push_str(rest);
    target
}

/// `ip` as a header value (for `X-Real-IP` and `X-Forwarded-For`).
///
/// Keep-alive clients send many requests from one address, so each thread keeps the last
/// address it formatted: cloning the value only bumps a reference count, where formatting an
/// address and allocating its text is a visible part of a proxied request's cost.
fn ip_header_value(ip: std::net::IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((cached, value)) if *cached == ip => Some(value.clone()),
        _ => {
            let value = HeaderValue::from_maybe_shared(Bytes::from(ip.to_string())).ok()?;
            *last = Some((ip, value.clone()));
            Some(value)
        }
    })
}

/// Set `X-Forwarded-For` to the incoming list (every line, in order: a list header may
/// arrive split over several) followed by `ip`.
fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    // One lookup: the usual case is a client that is the first hop (no header yet).
    let mut entry = match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(vacant) => {
            vacant.insert(ip.clone());
            return;
        }
        header::Entry::Occupied(occupied) => occupied,
    };
    let mut list: Vec<&[u8]> = entry
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::as_bytes)
        .collect();
    list.push(ip.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&list.join(&b", "[..])) {
        entry.insert(value);
    }
}

/// The headers that only concern one connection (RFC 9110 §7.6.1), besides the ones
/// `Connection` names.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is one of [`HOP_BY_HOP`]: one `match` on the text (by length, then
/// bytes) rather than nine comparisons of names.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Remove the connection-specific headers, including those named by `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one scan of the names instead of nine hashed removals.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Both framings: Transfer-Encoding wins (RFC 9112 §6.3), and the stale length must not
    // be passed on, or the next hop cuts the body short at it.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_hop_by_hop_match_names_exactly_the_listed_headers() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "x-connection",
            "tee",
            "host",
            "upgrade-insecure-requests",
            "trailers",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed_including_connection_tokens() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ] {
            headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        remove_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn the_upstream_target_joins_the_base_path_and_the_rest() {
        let check = |base: &str, rest: &str, expected: &str| {
            assert_eq!(upstream_target(base, rest), expected, "{base:?} + {rest:?}")
        };
        check("", "", "/");
        check("", "?a=1", "/?a=1");
        check("", "/x?a=1", "/x?a=1");
        check("/base", "", "/base");
        check("/base", "?a=1", "/base?a=1");
        check("/base", "/", "/base/");
        check("/base", "/x", "/base/x");
    }

    #[test]
    fn each_client_address_gets_its_own_header_value_even_when_addresses_alternate() {
        for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.1", "::1", "::1", "10.0.0.2"] {
            let value = ip_header_value(ip.parse().unwrap()).unwrap();
            assert_eq!(value, ip);
        }
    }

    #[test]
    fn upstream_urls_are_checked() {
        let check = |url: &str, ok: bool| {
            let uri: http::Uri = url.parse().expect("uri");
            assert_eq!(
                HttpUpstream::new("u", &uri, false, None).is_ok(),
                ok,
                "{url}"
            )
        };
        check("http://127.0.0.1:5000", true);
        check("http://127.0.0.1:5000/api/", true);
        check("https://example.com", false);
        check("http://127.0.0.1:5000/?a=1", false);
    }
}
