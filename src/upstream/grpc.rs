//! gRPC upstream dispatch: encoded protobuf messages in, encoded messages and a status out.
//!
//! In: a [`GrpcCall`] (method path, metadata, deadline, a stream of already-encoded request
//! messages). Out: a [`GrpcReply`] whose messages arrive as they are decoded from the HTTP/2
//! body, ending with the call's status from the trailers. Must not know: JSON, HTTP ingress,
//! descriptors (messages are opaque bytes here; transcoding happens in `transcode/`).
//!
//! The framing (5-byte length prefix, `grpc-status` in trailers or trailers-only headers) is
//! written here on top of the `h2` crate's client connections instead of going through
//! `tonic::client::Grpc`, because the gateway must see the raw answer: an upstream that replies
//! with an HTML page or without any `grpc-status` has to become a 502, never be parsed as
//! protobuf, and tonic's codec path folds that into ordinary statuses.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::{Channel, Endpoint};

use super::error_chain;
use crate::error::{Code, Error, UpstreamStatus};
use crate::request::format_grpc_timeout;

/// Messages larger than this are refused in either direction unless configured otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

type Sender = h2::client::SendRequest<Bytes>;

/// An open HTTP/2 connection: the handle that starts calls on it, and whether its driver task
/// has ended (the connection is closed and a new one is needed).
#[derive(Clone, Debug)]
struct Conn {
    sender: Sender,
    closed: Arc<AtomicBool>,
}

/// One address of a backend.
#[derive(Debug)]
struct Target {
    /// `host:port`, to connect to.
    address: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

/// The HTTP/2 connection one serving thread uses to one [`Target`]: opened on first use, and
/// again once it has closed (the backend restarted, went away, or sent GOAWAY). Calls on it
/// are multiplexed.
#[derive(Debug, Default)]
struct Lane {
    conn: Mutex<Option<Conn>>,
    /// Held while connecting, so that the calls arriving meanwhile wait for that connection
    /// instead of each opening their own.
    connecting: tokio::sync::Mutex<()>,
}

impl Lane {
    fn open(&self) -> Option<Conn> {
        let conn = self.conn.lock().ok()?;
        conn.as_ref()
            .filter(|c| !c.closed.load(Ordering::Relaxed))
            .cloned()
    }

    /// Forget the connection: it refused a call (GOAWAY received, stream ids used up, a
    /// connection error), so the next call opens a new one.
    fn retire(&self, closed: &Arc<AtomicBool>) {
        closed.store(true, Ordering::Relaxed);
        if let Ok(mut conn) = self.conn.lock() {
            if conn
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(&c.closed, closed))
            {
                *conn = None;
            }
        }
    }
}

/// One gRPC backend: a name for errors and logs, and multiplexed HTTP/2 connections to its
/// addresses (one per serving thread and address; calls go round-robin over the addresses and
/// on to the next one when an address cannot be reached).
///
/// Calls are sent on `h2` client connections directly rather than through tonic's `Channel` or
/// hyper's HTTP/2 client: tonic's buffer task, origin, user-agent, timeout and reconnect layers
/// cost about a tenth of the gateway's CPU per call, and hyper's client adds a channel hop to
/// the connection task and a spawned task per call (another tenth). The gateway does each of
/// those jobs itself (the deadline, reconnecting, balancing, streaming the request body).
/// Server reflection, which is not on the request path, keeps using a tonic channel.
#[derive(Clone, Debug)]
pub struct GrpcUpstream {
    name: Arc<str>,
    /// For server reflection.
    /// One tonic channel per URL, for server reflection (see [`Self::channels`]).
    channels: Box<[Channel]>,
    targets: Arc<[Target]>,
    /// `shard_count()` × `targets.len()` lanes: the serving thread's shard, then the target.
    lanes: Arc<[Lane]>,
    next_target: Arc<AtomicUsize>,
    connect_timeout: Duration,
    max_message_bytes: usize,
}

impl GrpcUpstream {
    /// Lazily connecting: nothing is opened until the first call. With several URLs, calls go
    /// round-robin over them.
    pub fn new(name: &str, urls: &[http::Uri], connect_timeout: Duration) -> Result<Self, String> {
        let mut endpoints = Vec::new();
        let mut targets = Vec::new();
        for url in urls {
            let invalid = |reason: &dyn std::fmt::Display| {
                format!("invalid gRPC upstream URL {url}: {reason}")
            };
            let endpoint = Endpoint::from_shared(url.to_string())
                .map_err(|e| invalid(&e))?
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true);
            endpoints.push(endpoint);
            let scheme = url.scheme().cloned().ok_or_else(|| invalid(&"no scheme"))?;
            if scheme != http::uri::Scheme::HTTP {
                return Err(invalid(&"only http:// (h2c) is supported"));
            }
            let authority = url
                .authority()
                .cloned()
                .ok_or_else(|| invalid(&"no host"))?;
            let port = authority.port_u16().unwrap_or(80);
            targets.push(Target {
                address: format!("{}:{port}", authority.host()),
                scheme,
                authority,
            });
        }
        if endpoints.is_empty() {
            return Err(format!("gRPC upstream {name} has no URL"));
        }
        let channels = endpoints.iter().map(Endpoint::connect_lazy).collect();
        let lanes = (0..super::shard_count() * targets.len())
            .map(|_| Lane::default())
            .collect();
        Ok(GrpcUpstream {
            name: name.into(),
            channels,
            targets: targets.into(),
            lanes,
            next_target: Arc::default(),
            connect_timeout,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A tonic channel to each of the backend's URLs, in config order, for descriptor
    /// discovery by server reflection: discovery asks them in turn until one answers, so a
    /// URL that is down is skipped (a balanced channel would often pick it and fail).
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Start a call. Resolves once the response headers arrived (or the call failed).
    pub async fn call(&self, call: GrpcCall) -> Result<GrpcReply, Error> {
        let GrpcCall {
            path,
            metadata,
            deadline,
            messages,
        } = call;
        if let RequestMessages::One(framed) = &messages {
            if framed.len().saturating_sub(5) > self.max_message_bytes {
                return Err(Error::PayloadTooLarge {
                    limit: self.max_message_bytes as u64,
                });
            }
        }
        // Set for a streaming request: its first error, and the guard that stops its task.
        let mut request_stream: Option<RequestStream> = None;

        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        let headers = request.headers_mut();
        *headers = metadata;
        // HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2); `h2` refuses a request
        // carrying any.
        super::http::remove_hop_by_hop(headers);
        headers.insert(http::header::CONTENT_TYPE, APPLICATION_GRPC);
        headers.insert(http::header::TE, TRAILERS);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(value) = HeaderValue::from_str(&format_grpc_timeout(left)) {
                headers.insert(GRPC_TIMEOUT, value);
            }
        }

        let deadline = deadline.map(|at| Deadline::starting_now(at, &self.name));
        let send = async {
            let (target, mut sender) = self.sender().await?;
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(target.scheme.clone());
            parts.authority = Some(target.authority.clone());
            parts.path_and_query = Some(path);
            *request.uri_mut() = http::Uri::from_parts(parts)
                .map_err(|e| Error::internal(format!("building gRPC request URI: {e}")))?;
            let broken =
                |e: h2::Error| reset(&e).unwrap_or_else(|| self.unavailable(&error_chain(&e)));
            let (response, mut stream) = sender.send_request(request, false).map_err(broken)?;
            match messages {
                RequestMessages::One(framed) => stream.send_data(framed, true).map_err(broken)?,
                RequestMessages::Stream(messages) => {
                    let stop = CancellationToken::new();
                    let error = RequestError::default();
                    let pump =
                        stream_request(stream, messages, self.max_message_bytes, error.clone());
                    request_stream = Some(RequestStream {
                        error,
                        _stop: stop.clone().drop_guard(),
                    });
                    tokio::spawn(async move {
                        tokio::select! {
                            () = pump => {}
                            () = stop.cancelled() => {}
                        }
                    });
                }
            }
            response.await.map_err(broken)
        };
        let response = match with_deadline(deadline.as_ref(), send).await {
            Ok(response) => response,
            // A request stream that failed (a bad NDJSON line, a body over the limit) makes the
            // call fail too; the client must hear about its own mistake, not a broken upstream.
            Err(error) => return Err(taken(&request_stream).unwrap_or(error)),
        };
        let (parts, body) = response.into_parts();
        // Trailers-only answers carry the status in the headers. With OK it is a call that
        // ended without a message: an empty server stream, as grpc-go, C++, Java and Python
        // servers send it; the metadata in it counts as trailers.
        let mut trailers_only = None;
        if parts.headers.contains_key(GRPC_STATUS) {
            if let Some(status) = parse_status(parts.headers.clone()) {
                if status.code != Code::Ok || !is_grpc(&parts.headers) {
                    return Err(taken(&request_stream).unwrap_or_else(|| status.into_error()));
                }
                trailers_only = Some(status.trailers);
            }
        }
        if !is_grpc(&parts.headers) {
            return Err(Error::UpstreamProtocol {
                upstream: self.name.to_string(),
                reason: format!(
                    "HTTP {} with content-type {:?} instead of a gRPC response",
                    parts.status,
                    parts.headers.get(http::header::CONTENT_TYPE)
                ),
            });
        }
        let mut headers = parts.headers;
        strip_reserved(&mut headers);
        let (headers, trailers, done) = match trailers_only {
            Some(trailers) => (HeaderMap::new(), trailers, true),
            None => (headers, HeaderMap::new(), false),
        };
        Ok(GrpcReply {
            headers,
            messages: Messages {
                upstream: self.name.clone(),
                body,
                buffer: BytesMut::new(),
                trailers,
                done,
                deadline,
                max_message_bytes: self.max_message_bytes,
                request_stream,
            },
        })
    }

    /// A connection to one of the backend's addresses for this thread: the next one in turn,
    /// or the ones after it when it cannot be reached.
    async fn sender(&self) -> Result<(&Target, Sender), Error> {
        let count = self.targets.len();
        let first = if count == 1 {
            0
        } else {
            self.next_target.fetch_add(1, Ordering::Relaxed) % count
        };
        let shard = super::shard_index(self.lanes.len() / count);
        let mut failure = None;
        for attempt in 0..count {
            let index = (first + attempt) % count;
            let target = &self.targets[index];
            let lane = &self.lanes[shard * count + index];
            match self.ready(target, lane).await {
                Ok(sender) => return Ok((target, sender)),
                Err(error) => failure = Some(error),
            }
        }
        Err(failure.unwrap_or_else(|| self.unavailable(&"no address")))
    }

    /// The lane's connection once it can take one more call, connecting (once) if needed.
    async fn ready(&self, target: &Target, lane: &Lane) -> Result<Sender, Error> {
        let conn = match lane.open() {
            Some(conn) => conn,
            // Boxed: connecting is rare, and its large future would otherwise be part of (and
            // copied along with) every call's future.
            None => Box::pin(self.reopen(target, lane)).await?,
        };
        match conn.sender.ready().await {
            Ok(sender) => Ok(sender),
            // The connection takes no new calls (the backend sent GOAWAY, stream ids ran out,
            // it broke): nothing was sent on it, so the call goes to a new connection.
            Err(_) => {
                lane.retire(&conn.closed);
                let conn = Box::pin(self.reopen(target, lane)).await?;
                conn.sender
                    .ready()
                    .await
                    .map_err(|e| self.unavailable(&error_chain(&e)))
            }
        }
    }

    /// Connect the lane (unless a call that held the lock before us just did).
    async fn reopen(&self, target: &Target, lane: &Lane) -> Result<Conn, Error> {
        let _connecting = lane.connecting.lock().await;
        if let Some(conn) = lane.open() {
            return Ok(conn);
        }
        let conn = connect(target, self.connect_timeout)
            .await
            .map_err(|reason| self.unavailable(&reason))?;
        if let Ok(mut slot) = lane.conn.lock() {
            *slot = Some(conn.clone());
        }
        Ok(conn)
    }

    fn unavailable(&self, error: &dyn std::fmt::Display) -> Error {
        Error::UpstreamUnavailable {
            upstream: self.name.to_string(),
            reason: error.to_string(),
        }
    }
}

/// Flow-control windows offered to a backend (hyper's client defaults): large enough that a
/// reply of a few megabytes is not held up by WINDOW_UPDATE round trips.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// A PING this often, on busy and idle connections alike, finds a backend that vanished
/// without closing the connection; no answer within the timeout closes it.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Open an HTTP/2 (h2c) connection to `target`; its driver runs as a task of the current
/// runtime until the connection closes.
/// The largest response header or trailer block accepted from a backend. A gRPC error's
/// trailers carry its message and `grpc-status-details-bin` (e.g. every violation of a
/// `BadRequest`), so they can be large; with 16 KiB a NOT_FOUND quoting a long id became a
/// 502. Envoy allows 60 KiB, grpc-go clients 16 MiB.
const MAX_HEADER_LIST: u32 = 1024 * 1024;

async fn connect(target: &Target, timeout: Duration) -> Result<Conn, String> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target.address))
        .await
        .map_err(|_| {
            format!(
                "connecting to {} timed out after {timeout:?}",
                target.address
            )
        })?
        .map_err(|e| format!("connecting to {}: {e}", target.address))?;
    let _ = stream.set_nodelay(true);
    let (sender, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(1024 * 1024)
        .enable_push(false)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|e| {
            format!(
                "HTTP/2 handshake with {}: {}",
                target.address,
                error_chain(&e)
            )
        })?;
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let address = target.address.clone();
    let ping = connection.ping_pong();
    tokio::spawn(async move {
        let ended = match ping {
            Some(ping) => tokio::select! {
                result = &mut connection => result.map_err(|e| e.to_string()),
                reason = keep_alive(ping) => Err(reason),
            },
            None => connection.await.map_err(|e| e.to_string()),
        };
        flag.store(true, Ordering::Relaxed);
        if let Err(error) = ended {
            tracing::debug!(%address, %error, "gRPC upstream connection closed.");
        }
    });
    Ok(Conn { sender, closed })
}

/// PINGs the backend every [`KEEP_ALIVE_INTERVAL`]; returns why the connection is dead.
async fn keep_alive(mut ping: h2::PingPong) -> String {
    loop {
        tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
        match tokio::time::timeout(KEEP_ALIVE_TIMEOUT, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(error)) => return format!("keep-alive PING failed: {error}"),
            Err(_) => return format!("no reply to a keep-alive PING in {KEEP_ALIVE_TIMEOUT:?}"),
        }
    }
}

/// A stream of encoded request messages; an `Err` aborts the call with that error.
pub type MessageStream = BoxStream<'static, Result<Bytes, Error>>;

/// One call to make.
pub struct GrpcCall {
    /// `/package.Service/Method`.
    pub path: http::uri::PathAndQuery,
    /// Request metadata (already filtered: what the caller chose to forward).
    pub metadata: HeaderMap,
    pub deadline: Option<Instant>,
    pub messages: RequestMessages,
}

/// The request messages of a call.
pub enum RequestMessages {
    /// One message, framed by [`framed`] (unary and server-streaming calls).
    One(Bytes),
    /// Messages as they come (client and bidi streams); each is framed as it goes.
    Stream(MessageStream),
}

/// One request message, written by `write`, with its 5-byte gRPC prefix in front (written in
/// place: the message is not copied).
pub fn framed(write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    // Room for most request messages up front: growing from the prefix's 5 bytes would copy
    // a 1 KB message seven times.
    let mut frame = Vec::with_capacity(5 + 1024);
    frame.extend_from_slice(&[0; 5]);
    write(&mut frame);
    let len = u32::try_from(frame.len() - 5).unwrap_or(u32::MAX);
    frame[1..5].copy_from_slice(&len.to_be_bytes());
    Bytes::from(frame)
}

/// The first error of the request stream: it explains the upstream's reset better than the
/// reset itself.
type RequestError = Arc<Mutex<Option<Error>>>;

/// What a call keeps of its streaming request: the stream's first error, and the guard that
/// stops the task sending it once the call is over or dropped.
struct RequestStream {
    error: RequestError,
    _stop: DropGuard,
}

fn taken(stream: &Option<RequestStream>) -> Option<Error> {
    stream.as_ref()?.error.lock().ok()?.take()
}

/// Send the request messages of a streaming call as they come, framed, with backpressure: the
/// next message is only read once the stream has send window again. A failed message (a bad
/// NDJSON line, a body over the limit) is kept in `slot` and resets the stream.
async fn stream_request(
    mut stream: h2::SendStream<Bytes>,
    mut messages: MessageStream,
    max_message_bytes: usize,
    slot: RequestError,
) {
    while let Some(message) = messages.next().await {
        let message = message.and_then(|message| {
            if message.len() > max_message_bytes {
                return Err(Error::PayloadTooLarge {
                    limit: max_message_bytes as u64,
                });
            }
            Ok(message)
        });
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                // The error itself is kept for the caller (it explains the failed call better
                // than the reset that follows).
                if let Ok(mut slot) = slot.lock() {
                    slot.get_or_insert(error);
                }
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
        };
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(0);
        frame.put_u32(message.len() as u32);
        frame.put_slice(&message);
        // Wait for some window, then hand the whole frame over; h2 sends it as the window
        // allows.
        stream.reserve_capacity(1);
        while stream.capacity() == 0 {
            match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                // The stream was reset or the connection closed: the reply says why.
                _ => return,
            }
        }
        if stream.send_data(frame.freeze(), false).is_err() {
            return;
        }
    }
    let _ = stream.send_data(Bytes::new(), true);
}

/// When a call must be over, and how long it had from its start (for the error message).
#[derive(Clone, Debug)]
struct Deadline {
    at: Instant,
    budget: Duration,
    upstream: Arc<str>,
}

impl Deadline {
    fn starting_now(at: Instant, upstream: &Arc<str>) -> Deadline {
        Deadline {
            at,
            budget: at.saturating_duration_since(Instant::now()),
            upstream: upstream.clone(),
        }
    }

    /// The error for a call cut short by this deadline: it names the whole budget of the call
    /// (to the millisecond), not the time left when the last message was awaited.
    fn exceeded(&self) -> Error {
        let millis = (self.budget.as_micros() + 500) / 1000;
        Error::UpstreamTimeout {
            upstream: self.upstream.to_string(),
            timeout: Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX)),
        }
    }
}

async fn with_deadline<T>(
    deadline: Option<&Deadline>,
    future: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let Some(deadline) = deadline else {
        return future.await;
    };
    match tokio::time::timeout_at(deadline.at.into(), future).await {
        // The upstream enforces the same deadline (we send it as `grpc-timeout`) and may cut
        // the call first: a reset or a CANCELLED once the deadline passed is the deadline.
        Ok(Err(error)) if Instant::now() >= deadline.at && cut_short(&error) => {
            Err(deadline.exceeded())
        }
        Ok(result) => result,
        Err(_) => Err(deadline.exceeded()),
    }
}

fn cut_short(error: &Error) -> bool {
    match error {
        Error::UpstreamUnavailable { .. } => true,
        Error::UpstreamStatus(status) => status.code == Code::Cancelled,
        _ => false,
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The gRPC protocol's own headers: they never travel on as metadata.
static RESERVED: [HeaderName; 9] = [
    http::header::CONTENT_TYPE,
    GRPC_STATUS,
    GRPC_MESSAGE,
    GRPC_STATUS_DETAILS,
    HeaderName::from_static("grpc-encoding"),
    HeaderName::from_static("grpc-accept-encoding"),
    http::header::CONTENT_LENGTH,
    http::header::DATE,
    http::header::TE,
];

/// Remove the [`RESERVED`] headers.
fn strip_reserved(headers: &mut HeaderMap) {
    // Most maps hold none of them, or only them: one scan instead of nine hashed removals.
    let found = headers.keys().filter(|key| is_reserved(key)).count();
    if found == 0 {
        return;
    }
    if found == headers.keys_len() {
        headers.clear();
        return;
    }
    for name in &RESERVED {
        headers.remove(name);
    }
}

/// Whether `name` is one of [`RESERVED`]: one `match` on the text (by length, then bytes)
/// rather than nine comparisons of names.
fn is_reserved(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-type"
            | "grpc-status"
            | "grpc-message"
            | "grpc-status-details-bin"
            | "grpc-encoding"
            | "grpc-accept-encoding"
            | "content-length"
            | "date"
            | "te"
    )
}

/// A status read from headers or trailers.
struct Status {
    code: Code,
    message: String,
    details_bin: Option<Bytes>,
    trailers: HeaderMap,
}

/// A stream the backend reset (RST_STREAM) as the status it stands for, by the table of
/// gRPC's PROTOCOL-HTTP2.md ("Errors"): REFUSED_STREAM is UNAVAILABLE (the call was not
/// processed), CANCEL is CANCELLED, ENHANCE_YOUR_CALM is RESOURCE_EXHAUSTED,
/// INADEQUATE_SECURITY is PERMISSION_DENIED, any other code INTERNAL. `None` when the error
/// is not a reset from the backend (a broken connection stays "unavailable").
fn reset(error: &h2::Error) -> Option<Error> {
    if !error.is_reset() || !error.is_remote() {
        return None;
    }
    let reason = error.reason()?;
    let code = match reason {
        h2::Reason::REFUSED_STREAM => Code::Unavailable,
        h2::Reason::CANCEL => Code::Cancelled,
        h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
        h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
        _ => Code::Internal,
    };
    let status = Status {
        code,
        message: format!("the backend reset the stream ({reason:?})"),
        details_bin: None,
        trailers: HeaderMap::new(),
    };
    Some(status.into_error())
}

impl Status {
    fn into_error(self) -> Error {
        Error::UpstreamStatus(Box::new(UpstreamStatus {
            code: self.code,
            message: self.message,
            details: Vec::new(),
            details_bin: self.details_bin,
            trailers: self.trailers,
            headers: HeaderMap::new(),
        }))
    }
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
// Constants, not `from_static` calls in the request path: those check the text every time.
const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const TRAILERS: HeaderValue = HeaderValue::from_static("trailers");

/// The status in `headers` (trailers, or the headers of a trailers-only answer); what is left
/// after removing the reserved names is the trailing metadata.
fn parse_status(mut headers: HeaderMap) -> Option<Status> {
    // One pass over the (usually one or two) trailers instead of a hashed lookup per name;
    // the first value of each name counts, as `HeaderMap::get` would give it.
    let (mut code, mut message, mut details) = (None, None, None);
    for (name, value) in &headers {
        let slot = match name.as_str() {
            "grpc-status" => &mut code,
            "grpc-message" => &mut message,
            "grpc-status-details-bin" => &mut details,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    let code = code?.to_str().ok()?.trim().parse::<i32>().ok()?;
    let message = message
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let details_bin = details
        .and_then(|v| BASE64.decode(v.as_bytes()).ok())
        .map(Bytes::from);
    strip_reserved(&mut headers);
    Some(Status {
        code: Code::from_i32(code),
        message,
        details_bin,
        trailers: headers,
    })
}

/// Binary metadata is base64 with or without padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The length of the message whose 5-byte prefix starts `bytes` (`None`: the prefix is not
/// complete yet); compressed and oversized messages are refused with the reason.
fn message_len(bytes: &[u8], max_message_bytes: usize) -> Result<Option<usize>, String> {
    let [compressed, a, b, c, d, ..] = *bytes else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if compressed != 0 {
        return Err("compressed message although no compression was offered".into());
    }
    if len > max_message_bytes {
        return Err(format!(
            "message of {len} bytes exceeds the limit of {max_message_bytes} bytes"
        ));
    }
    Ok(Some(len))
}

/// An answer in progress.
pub struct GrpcReply {
    /// Response metadata (reserved gRPC headers removed).
    pub headers: HeaderMap,
    pub messages: Messages,
}

/// The response messages, decoded from the body as frames arrive.
pub struct Messages {
    upstream: Arc<str>,
    body: h2::RecvStream,
    buffer: BytesMut,
    trailers: HeaderMap,
    done: bool,
    deadline: Option<Deadline>,
    max_message_bytes: usize,
    /// A streaming request's error slot; dropping it ends the stream's task.
    request_stream: Option<RequestStream>,
}

impl Messages {
    /// The next message; `Ok(None)` once the call ended with OK; `Err` for a non-OK status or
    /// a broken stream.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        let deadline = self.deadline.clone();
        with_deadline(deadline.as_ref(), self.next_inner()).await
    }

    async fn next_inner(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            if let Some(message) = self.split_message()? {
                return Ok(Some(message));
            }
            if self.done {
                return Ok(None);
            }
            match self.body.data().await {
                Some(Ok(mut data)) => {
                    // Taken out of the stream: the backend may send as much again.
                    let _ = self.body.flow_control().release_capacity(data.len());
                    if !self.buffer.is_empty() {
                        self.buffer.extend_from_slice(&data);
                        continue;
                    }
                    // A frame that starts with a whole message (the usual unary answer) gives
                    // it out without copying it through the buffer.
                    let len = message_len(&data, self.max_message_bytes)
                        .map_err(|reason| self.protocol(&reason))?;
                    match len {
                        Some(len) if data.len() >= 5 + len => {
                            data.advance(5);
                            let message = data.split_to(len);
                            self.buffer.extend_from_slice(&data);
                            return Ok(Some(message));
                        }
                        _ => self.buffer.extend_from_slice(&data),
                    }
                }
                Some(Err(error)) => return Err(self.broke(&error)),
                None => match self.body.trailers().await {
                    Ok(trailers) => return self.finish(trailers),
                    Err(error) => return Err(self.broke(&error)),
                },
            }
        }
    }

    fn broke(&mut self, error: &h2::Error) -> Error {
        self.done = true;
        if let Some(error) = taken(&self.request_stream) {
            return error;
        }
        if let Some(error) = reset(error) {
            return error;
        }
        Error::UpstreamUnavailable {
            upstream: self.upstream.to_string(),
            reason: format!("response stream broke: {}", error_chain(error)),
        }
    }

    fn split_message(&mut self) -> Result<Option<Bytes>, Error> {
        let Some(len) = message_len(&self.buffer, self.max_message_bytes)
            .map_err(|reason| self.protocol(&reason))?
        else {
            return Ok(None);
        };
        if self.buffer.len() < 5 + len {
            self.buffer.reserve(5 + len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(5);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    fn finish(&mut self, trailers: Option<HeaderMap>) -> Result<Option<Bytes>, Error> {
        self.done = true;
        if !self.buffer.is_empty() {
            return Err(self.protocol("stream ended inside a message"));
        }
        let Some(status) = trailers.and_then(parse_status) else {
            if let Some(error) = taken(&self.request_stream) {
                return Err(error);
            }
            return Err(self.protocol("stream ended without grpc-status"));
        };
        if status.code != Code::Ok {
            return Err(taken(&self.request_stream).unwrap_or_else(|| status.into_error()));
        }
        self.trailers = status.trailers;
        Ok(None)
    }

    fn protocol(&mut self, reason: &str) -> Error {
        self.done = true;
        Error::UpstreamProtocol {
            upstream: self.upstream.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Trailing metadata, once `next` returned `Ok(None)`.
    pub fn trailers(&self) -> &HeaderMap {
        &self.trailers
    }

    /// All remaining messages as a stream (ends after the first error).
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, Error>> {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut messages = state?;
            match messages.next().await {
                Ok(Some(message)) => Some((Ok(message), Some(messages))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserved_match_names_exactly_the_listed_headers() {
        for name in &RESERVED {
            assert!(is_reserved(name), "{name}");
        }
        for name in [
            "grpc-status-details",
            "grpc-statuses",
            "x-date",
            "tee",
            "grpc-timeout",
        ] {
            assert!(!is_reserved(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn reserved_headers_are_stripped_and_metadata_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
        headers.insert(http::header::DATE, HeaderValue::from_static("today"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_reserved(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);

        let mut only_reserved = HeaderMap::new();
        only_reserved.insert(GRPC_STATUS, HeaderValue::from_static("0"));
        only_reserved.insert(GRPC_MESSAGE, HeaderValue::from_static("ok"));
        strip_reserved(&mut only_reserved);
        assert!(only_reserved.is_empty());
    }
}
