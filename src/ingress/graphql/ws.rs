//! GraphQL over WebSocket: the `graphql-transport-ws` protocol and the legacy `graphql-ws`
//! protocol (subscriptions-transport-ws), served on one upgraded socket per client.
//!
//! In: an upgraded [`WebSocket`] (or a [`WebSocketUpgrade`] through [`upgrade`]), the dynamic
//! [`Schema`] to execute against, the headers of the upgrade request and a [`Prepare`] hook the
//! gateway uses to authorise the connection and attach per-operation data (principal, headers).
//! Out: protocol messages on the socket, and a close code when the connection is ended.
//! Must not know: gRPC, descriptors, routes or upstreams. The schema's resolvers do that work;
//! this module only moves requests in and results out and owns the lifetime of each operation.
//!
//! # Protocols
//! - `graphql-transport-ws`: `connection_init` → `connection_ack`, `ping`/`pong` both ways (a
//!   ping's payload is echoed in the pong), `subscribe` → `next`* then `complete`, or `error`
//!   when the request fails before execution. Queries and mutations answer one `next` then
//!   `complete`. A client `complete` cancels that operation and nothing more is sent for it.
//!   Protocol violations close the socket: 4400 invalid message (with a reason), 4401 subscribe
//!   before `connection_ack`, 4403 `prepare` rejected `connection_init`, 4406 no acceptable
//!   subprotocol, 4408 no `connection_init` within [`WsConfig::connection_init_timeout`], 4409
//!   `Subscriber for <id> already exists` (checked for every running operation, single-result
//!   ones too, which the spec allows), 4429 a second `connection_init`; 1009 for a message over
//!   [`WsConfig::max_message_bytes`]. Keep-alive uses WebSocket ping frames every
//!   [`WsConfig::keepalive_interval`] (as the graphql-ws reference server does), so clients
//!   without protocol-level pings still keep idle connections open through proxies.
//! - `graphql-ws` (legacy): `connection_init` → `connection_ack`, then (keep-alive on) `ka`
//!   right away and every keep-alive interval; `start` → `data`* then `complete`; `stop`
//!   cancels and answers `complete`; `connection_terminate` closes (1000). A rejected init
//!   answers `connection_error` then closes 4403; an unparseable or unknown message answers
//!   `connection_error` and the socket stays open, as that protocol asks. A `start` reusing a
//!   running id replaces that operation. The init timeout (4408) applies here too.
//!
//! A client offering neither subprotocol gets what graphql-ws gives it: [`upgrade`] completes
//! the handshake without selecting a subprotocol, then closes 4406 `Subprotocol not acceptable`.
//!
//! # Where errors go
//! A result that failed before execution (parse, validation, unknown operation, variables: no
//! `data` and no error carrying a `path`, as the GraphQL spec shapes request errors) is sent as
//! `error` with an array of GraphQL errors (legacy too: its clients accept an array), and no
//! `complete` follows. Errors raised during execution, including an item of a subscription
//! stream, are part of the result and go out in `next` (`data` for legacy); the operation then
//! ends as its stream does (async-graphql ends a subscription after an erroring item).
//! `prepare` rejecting one operation answers `error` `[{"message": reason}]` for that id and
//! the connection stays open.
//!
//! # Prepare
//! `prepare` is called once on `connection_init` with an empty request (`Request::new("")`) to
//! authorise the connection (Err → 4403 / `connection_error`), then for every operation with
//! its request; the [`ConnectionInit`] holds the init payload and the upgrade headers.
//!
//! # Cancellation and backpressure
//! Each operation runs in its own task owned by the connection. A client `complete`/`stop`
//! aborts that task, and closing the socket (either side) aborts all of them: the result
//! stream is dropped, so the resolvers' upstream work is cancelled. Results go to the socket
//! through one bounded queue of [`WsConfig::outgoing_buffer`] messages per connection; an
//! operation waits for room before producing its next result, so a client that reads slowly
//! slows its own subscriptions' upstreams instead of growing the gateway's memory. Nothing is
//! queued without a bound. Control answers (`connection_ack`, `pong`, `error`, close) use a
//! small separate queue so they are not stuck behind results.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use async_graphql::{
    dynamic::Schema,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
    Request, Response, ServerError,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use futures_util::{
    stream::{self, BoxStream, SplitSink},
    SinkExt, StreamExt,
};
use serde_json::{json, Map, Value};
use tokio::{
    sync::{mpsc, watch},
    task::{AbortHandle, JoinHandle, JoinSet},
    time::{Instant, Interval, MissedTickBehavior},
};
use tokio_util::task::TaskTracker;

/// Turns a transport-level request into the request to execute: the gateway uses it to attach
/// per-operation data (headers, principal...).
pub type Prepare = Arc<
    dyn Fn(Request, &ConnectionInit) -> Result<Request, String /*reason for rejection*/>
        + Send
        + Sync,
>;

/// How an operation's document is read before it runs: async-graphql's parser by default; the
/// gateway parses through its cache and checks its limits there, so that every operation
/// (WebSocket and SSE alike) runs a checked document. An error rejects the operation as a
/// request error.
#[derive(Clone)]
pub struct Documents(Arc<ReadDocument>);

type ReadDocument = dyn Fn(&str) -> Result<ExecutableDocument, ServerError> + Send + Sync;

impl Documents {
    pub fn new(
        read: impl Fn(&str) -> Result<ExecutableDocument, ServerError> + Send + Sync + 'static,
    ) -> Documents {
        Documents(Arc::new(read))
    }

    fn read(&self, query: &str) -> Result<ExecutableDocument, ServerError> {
        (self.0)(query)
    }
}

impl Default for Documents {
    fn default() -> Self {
        Documents::new(|query| async_graphql::parser::parse_query(query).map_err(Into::into))
    }
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Documents(..)")
    }
}

/// What the client said when it opened the connection.
#[derive(Clone, Debug, Default)]
pub struct ConnectionInit {
    /// The `connection_init` payload (WebSocket only).
    pub payload: Option<Value>,
    /// The headers of the upgrade (WebSocket) or HTTP (SSE) request.
    pub headers: http::HeaderMap,
}

/// The WebSocket subprotocols spoken here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsProtocol {
    /// `graphql-transport-ws`, the protocol of the graphql-ws library.
    GraphqlTransportWs,
    /// `graphql-ws`, the legacy subscriptions-transport-ws protocol.
    GraphqlWs,
}

impl WsProtocol {
    /// Picks our protocol from a `Sec-WebSocket-Protocol` value (a comma-separated list).
    /// `graphql-transport-ws` wins when both are offered.
    pub fn from_header(sec_websocket_protocol: Option<&str>) -> Option<WsProtocol> {
        let offered: Vec<&str> = sec_websocket_protocol?.split(',').map(str::trim).collect();
        [WsProtocol::GraphqlTransportWs, WsProtocol::GraphqlWs]
            .into_iter()
            .find(|protocol| offered.contains(&protocol.as_str()))
    }

    /// The subprotocol name, as sent in `Sec-WebSocket-Protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            WsProtocol::GraphqlTransportWs => "graphql-transport-ws",
            WsProtocol::GraphqlWs => "graphql-ws",
        }
    }
}

/// Limits and timers of one WebSocket connection.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// How long a client may wait before sending `connection_init` (then 4408).
    pub connection_init_timeout: Duration,
    /// Legacy `ka` messages and WebSocket pings; `None` turns both off.
    pub keepalive_interval: Option<Duration>,
    /// Results queued for the socket (messages) before operations wait.
    pub outgoing_buffer: usize,
    /// The largest message accepted from the client (then 1009).
    pub max_message_bytes: usize,
    /// Turns true when the server shuts down: the socket is then closed with 1001.
    pub closing: Option<watch::Receiver<bool>>,
    /// Where the session runs tracked, so that shutdown can wait for its close handshake.
    pub sessions: Option<TaskTracker>,
    /// How each operation's document is read.
    pub documents: Documents,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            connection_init_timeout: Duration::from_secs(3),
            keepalive_interval: Some(Duration::from_secs(15)),
            outgoing_buffer: 64,
            max_message_bytes: 1024 * 1024,
            closing: None,
            sessions: None,
            documents: Documents::default(),
        }
    }
}

/// Close codes of `graphql-transport-ws` (and the standard ones used here).
mod close_code {
    pub(super) const NORMAL: u16 = 1000;
    pub(super) const GOING_AWAY: u16 = 1001;
    pub(super) const MESSAGE_TOO_BIG: u16 = 1009;
    pub(super) const INVALID_MESSAGE: u16 = 4400;
    pub(super) const UNAUTHORIZED: u16 = 4401;
    pub(super) const FORBIDDEN: u16 = 4403;
    pub(super) const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    pub(super) const INIT_TIMEOUT: u16 = 4408;
    pub(super) const SUBSCRIBER_EXISTS: u16 = 4409;
    pub(super) const TOO_MANY_INIT: u16 = 4429;
}

/// Control answers waiting for the socket; they are few (one per client message at most).
const CONTROL_BUFFER: usize = 16;
/// How long a closing connection waits for the client's close reply or a stuck write.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// axum handler helper: negotiates the subprotocol and serves the socket.
///
/// When none of our subprotocols is offered, the upgrade still completes (selecting no
/// subprotocol) and the socket is then closed with 4406, as the graphql-ws reference server
/// does. Clients that insist on their subprotocol being echoed (browsers, tungstenite) fail the
/// handshake on their side instead, which is the outcome they would get from graphql-ws too.
pub fn upgrade(
    ws: WebSocketUpgrade,
    headers: &http::HeaderMap,
    schema: Schema,
    prepare: Prepare,
    config: WsConfig,
) -> axum::response::Response {
    let offered = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let protocol = WsProtocol::from_header(Some(&offered));
    // Messages a little over the limit reach `serve`, which answers 1009 with a reason; far
    // larger ones are refused by the WebSocket layer before being buffered whole (also 1009).
    let transport_limit = config.max_message_bytes.saturating_add(64 * 1024);
    let ws = ws
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit);
    let init = ConnectionInit {
        payload: None,
        headers: headers.clone(),
    };
    let sessions = config.sessions.clone().unwrap_or_default();
    match protocol {
        Some(protocol) => ws.protocols([protocol.as_str()]).on_upgrade(move |socket| {
            sessions.track_future(serve(socket, protocol, schema, prepare, init, config))
        }),
        None => ws.on_upgrade(|socket| async move {
            tracing::debug!(%offered, "WebSocket client offered no GraphQL subprotocol.");
            let (sink, incoming) = socket.split();
            close_and_drain(
                sink,
                incoming,
                close_code::SUBPROTOCOL_NOT_ACCEPTABLE,
                "Subprotocol not acceptable",
            )
            .await;
        }),
    }
}

/// Serves one upgraded socket until it closes; every running operation is dropped then.
///
/// `init.headers` are the upgrade request's headers. Prefer [`upgrade`], which also sets the
/// WebSocket layer's frame and message limits from `config`.
pub async fn serve(
    socket: WebSocket,
    protocol: WsProtocol,
    schema: Schema,
    prepare: Prepare,
    init: ConnectionInit,
    config: WsConfig,
) {
    let (sink, mut incoming) = socket.split();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_BUFFER);
    let (data_tx, data_rx) = mpsc::channel(config.outgoing_buffer.max(1));
    let mut writer = Some(tokio::spawn(write_loop(sink, control_rx, data_rx)));
    let mut closing = config.closing.clone();

    let init_deadline = tokio::time::sleep(config.connection_init_timeout);
    tokio::pin!(init_deadline);
    let mut keepalive = config.keepalive_interval.map(|period| {
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });

    let mut conn = Connection {
        protocol,
        schema,
        prepare,
        init,
        documents: config.documents.clone(),
        max_message_bytes: config.max_message_bytes,
        keepalive: config.keepalive_interval.is_some(),
        init_received: false,
        acked: false,
        operations: Arc::default(),
        tasks: JoinSet::new(),
        control: control_tx,
        data: data_tx,
    };

    let end = loop {
        tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(message)) => match conn.on_message(message).await {
                    Flow::Continue => {}
                    end => break end,
                },
                Some(Err(error)) => {
                    tracing::debug!(%error, "WebSocket read failed.");
                    break if is_capacity_error(&error) {
                        Flow::Close(close_code::MESSAGE_TOO_BIG, "Message too big".into())
                    } else {
                        Flow::End
                    };
                }
                None => break Flow::End,
            },
            () = &mut init_deadline, if !conn.init_received => {
                let reason = "Connection initialisation timeout".into();
                break Flow::Close(close_code::INIT_TIMEOUT, reason);
            }
            () = tick(&mut keepalive) => conn.keepalive(),
            () = server_closing(&mut closing) => {
                break Flow::Close(close_code::GOING_AWAY, "Server shutting down".into());
            }
            Some(joined) = conn.tasks.join_next(), if !conn.tasks.is_empty() => {
                if let Err(error) = joined {
                    if error.is_panic() {
                        tracing::error!(%error, "GraphQL operation task panicked.");
                    }
                }
            }
            joined = join(&mut writer) => {
                if let Err(error) = joined {
                    tracing::error!(%error, "WebSocket writer task failed.");
                }
                writer = None;
                break Flow::End;
            }
        }
    };
    conn.shutdown(end, incoming, writer).await;
}

/// What the connection does after a client message.
enum Flow {
    Continue,
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// The client closed or the socket failed: stop without a close frame of ours.
    End,
}

/// One message for the socket; results carry their operation's cancel flag so the writer
/// can drop results of an operation the client has completed meanwhile.
struct Outgoing {
    message: Message,
    cancelled: Option<Arc<AtomicBool>>,
}

impl Outgoing {
    fn control(message: Message) -> Self {
        Outgoing {
            message,
            cancelled: None,
        }
    }
}

/// A running operation, reserved under its id.
struct Operation {
    cancelled: Arc<AtomicBool>,
    abort: Option<AbortHandle>,
}

type Operations = Arc<Mutex<HashMap<String, Operation>>>;

fn lock(operations: &Operations) -> MutexGuard<'_, HashMap<String, Operation>> {
    operations.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Connection {
    protocol: WsProtocol,
    schema: Schema,
    prepare: Prepare,
    init: ConnectionInit,
    documents: Documents,
    max_message_bytes: usize,
    /// Whether legacy `ka` messages are sent (keep-alive configured).
    keepalive: bool,
    init_received: bool,
    acked: bool,
    operations: Operations,
    tasks: JoinSet<()>,
    control: mpsc::Sender<Outgoing>,
    data: mpsc::Sender<Outgoing>,
}

/// A client message split into its envelope fields.
struct ClientMessage {
    kind: String,
    id: Option<String>,
    payload: Option<Value>,
}

impl Connection {
    async fn on_message(&mut self, message: Message) -> Flow {
        let text = match message {
            Message::Text(text) => text.as_str().to_owned(),
            Message::Binary(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(text) => text,
                Err(_) => {
                    return self
                        .invalid("Invalid message: binary frame is not UTF-8")
                        .await
                }
            },
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Close(_) => return Flow::End,
        };
        if text.len() > self.max_message_bytes {
            return Flow::Close(close_code::MESSAGE_TOO_BIG, "Message too big".into());
        }
        let message = match parse_envelope(&text) {
            Ok(message) => message,
            Err(reason) => return self.invalid(&reason).await,
        };
        match self.protocol {
            WsProtocol::GraphqlTransportWs => self.on_transport_message(message).await,
            WsProtocol::GraphqlWs => self.on_legacy_message(message).await,
        }
    }

    /// An unusable message: fatal in `graphql-transport-ws`, answered in legacy.
    async fn invalid(&mut self, reason: &str) -> Flow {
        match self.protocol {
            WsProtocol::GraphqlTransportWs => {
                Flow::Close(close_code::INVALID_MESSAGE, reason.to_owned())
            }
            WsProtocol::GraphqlWs => {
                self.send_control(
                    json!({"type": "connection_error", "payload": {"message": reason}}),
                )
                .await;
                Flow::Continue
            }
        }
    }

    async fn on_transport_message(&mut self, message: ClientMessage) -> Flow {
        let ClientMessage { kind, id, payload } = message;
        match kind.as_str() {
            "connection_init" | "ping" | "pong"
                if payload.as_ref().is_some_and(|payload| !payload.is_object()) =>
            {
                Flow::Close(
                    close_code::INVALID_MESSAGE,
                    format!("Invalid message: \"{kind}\" payload must be an object"),
                )
            }
            "connection_init" => self.on_init(payload).await,
            "ping" => {
                let pong = match payload {
                    Some(payload) => json!({"type": "pong", "payload": payload}),
                    None => json!({"type": "pong"}),
                };
                self.send_control(pong).await;
                Flow::Continue
            }
            "pong" => Flow::Continue,
            "subscribe" => {
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return Flow::Close(
                        close_code::INVALID_MESSAGE,
                        "Invalid message: \"subscribe\" needs a non-empty \"id\"".into(),
                    );
                };
                let request = match parse_operation(payload) {
                    Ok(request) => request,
                    Err(reason) => return Flow::Close(close_code::INVALID_MESSAGE, reason),
                };
                if !self.acked {
                    return Flow::Close(close_code::UNAUTHORIZED, "Unauthorized".into());
                }
                if lock(&self.operations).contains_key(&id) {
                    return Flow::Close(
                        close_code::SUBSCRIBER_EXISTS,
                        format!("Subscriber for {id} already exists"),
                    );
                }
                self.start(id, request).await;
                Flow::Continue
            }
            "complete" => {
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return Flow::Close(
                        close_code::INVALID_MESSAGE,
                        "Invalid message: \"complete\" needs a non-empty \"id\"".into(),
                    );
                };
                self.cancel(&id);
                Flow::Continue
            }
            "connection_ack" | "next" | "error" => Flow::Close(
                close_code::INVALID_MESSAGE,
                format!("Invalid message: \"{kind}\" is sent by the server only"),
            ),
            _ => Flow::Close(
                close_code::INVALID_MESSAGE,
                format!("Invalid message: unknown type \"{kind}\""),
            ),
        }
    }

    async fn on_legacy_message(&mut self, message: ClientMessage) -> Flow {
        let ClientMessage { kind, id, payload } = message;
        match kind.as_str() {
            "connection_init" => self.on_init(payload).await,
            "start" => {
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return self
                        .invalid("Invalid message: \"start\" needs a non-empty \"id\"")
                        .await;
                };
                if !self.acked {
                    self.send_control(error_message(&id, "Connection is not initialised"))
                        .await;
                    return Flow::Continue;
                }
                match parse_operation(payload) {
                    Ok(request) => {
                        // subscriptions-transport-ws replaces an operation started again.
                        self.cancel(&id);
                        self.start(id, request).await;
                    }
                    Err(reason) => self.send_control(error_message(&id, &reason)).await,
                }
                Flow::Continue
            }
            "stop" => {
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return self
                        .invalid("Invalid message: \"stop\" needs a non-empty \"id\"")
                        .await;
                };
                if self.cancel(&id) {
                    self.send_control(json!({"type": "complete", "id": id}))
                        .await;
                }
                Flow::Continue
            }
            "connection_terminate" => Flow::Close(close_code::NORMAL, String::new()),
            _ => {
                self.invalid(&format!("Invalid message: unknown type \"{kind}\""))
                    .await
            }
        }
    }

    async fn on_init(&mut self, payload: Option<Value>) -> Flow {
        if self.init_received && self.protocol == WsProtocol::GraphqlTransportWs {
            return Flow::Close(
                close_code::TOO_MANY_INIT,
                "Too many initialisation requests".into(),
            );
        }
        self.init_received = true;
        self.init.payload = payload;
        if let Err(reason) = (self.prepare)(Request::new(""), &self.init) {
            tracing::debug!(%reason, "GraphQL WebSocket connection rejected.");
            if self.protocol == WsProtocol::GraphqlWs {
                self.send_control(
                    json!({"type": "connection_error", "payload": {"message": reason}}),
                )
                .await;
            }
            return Flow::Close(close_code::FORBIDDEN, "Forbidden".into());
        }
        self.acked = true;
        self.send_control(json!({"type": "connection_ack"})).await;
        if self.protocol == WsProtocol::GraphqlWs && self.keepalive {
            self.send_control(json!({"type": "ka"})).await;
        }
        Flow::Continue
    }

    /// Reserves `id` and runs the operation in its own task.
    async fn start(&mut self, id: String, request: Request) {
        let request = match (self.prepare)(request, &self.init) {
            Ok(request) => request,
            Err(reason) => {
                tracing::debug!(%id, %reason, "GraphQL operation rejected.");
                // Same shape in both protocols: no result was sent for this id yet.
                self.send_control(error_message(&id, &reason)).await;
                return;
            }
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        lock(&self.operations).insert(
            id.clone(),
            Operation {
                cancelled: cancelled.clone(),
                abort: None,
            },
        );
        let reservation = Reservation {
            operations: self.operations.clone(),
            id: id.clone(),
            cancelled: cancelled.clone(),
        };
        let task = run_operation(
            self.protocol,
            self.schema.clone(),
            self.documents.clone(),
            request,
            reservation,
            self.data.clone(),
        );
        let abort = self.tasks.spawn(task);
        // The task may already have finished and released its id: only fill our own entry.
        if let Some(operation) = lock(&self.operations).get_mut(&id) {
            if Arc::ptr_eq(&operation.cancelled, &cancelled) {
                operation.abort = Some(abort);
            }
        }
    }

    /// Stops the operation `id`, dropping its stream; false when none was running.
    fn cancel(&mut self, id: &str) -> bool {
        let Some(operation) = lock(&self.operations).remove(id) else {
            return false;
        };
        operation.cancelled.store(true, Ordering::Release);
        if let Some(abort) = operation.abort {
            abort.abort();
        }
        true
    }

    fn keepalive(&mut self) {
        let message = match self.protocol {
            WsProtocol::GraphqlTransportWs => Message::Ping(bytes::Bytes::new()),
            WsProtocol::GraphqlWs if self.acked => text(&json!({"type": "ka"})),
            WsProtocol::GraphqlWs => return,
        };
        // A full queue means the socket is busy anyway: skip this beat rather than wait.
        let _ = self.control.try_send(Outgoing::control(message));
    }

    async fn send_control(&self, message: Value) {
        // Fails only when the writer is gone, which ends the connection anyway.
        let _ = self.control.send(Outgoing::control(text(&message))).await;
    }

    /// Cancels every operation, sends our close frame if any and waits for the client's.
    async fn shutdown(
        mut self,
        end: Flow,
        mut incoming: stream::SplitStream<WebSocket>,
        writer: Option<JoinHandle<()>>,
    ) {
        for (_, operation) in lock(&self.operations).drain() {
            operation.cancelled.store(true, Ordering::Release);
        }
        self.tasks.shutdown().await;
        if let Flow::Close(code, reason) = &end {
            tracing::debug!(code, %reason, "Closing GraphQL WebSocket.");
            let close = Outgoing::control(close_message(*code, reason));
            let _ = tokio::time::timeout(CLOSE_GRACE, self.control.send(close)).await;
        }
        drop(self.control);
        drop(self.data);
        if let Some(mut writer) = writer {
            if tokio::time::timeout(CLOSE_GRACE, &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        }
        // Reading on lets the client's close reply (or ours to it) complete the handshake.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = incoming.next().await {}
        })
        .await;
    }
}

/// Holds an operation's id until it finishes, or is dropped (abort, panic).
struct Reservation {
    operations: Operations,
    id: String,
    cancelled: Arc<AtomicBool>,
}

impl Reservation {
    fn release(&self) {
        let mut operations = lock(&self.operations);
        if operations
            .get(&self.id)
            .is_some_and(|operation| Arc::ptr_eq(&operation.cancelled, &self.cancelled))
        {
            operations.remove(&self.id);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs one operation, forwarding its results; waiting for room in `data` is the backpressure.
async fn run_operation(
    protocol: WsProtocol,
    schema: Schema,
    documents: Documents,
    request: Request,
    reservation: Reservation,
    data: mpsc::Sender<Outgoing>,
) {
    let id = reservation.id.clone();
    let send = |message: Value| {
        data.send(Outgoing {
            message: text(&message),
            cancelled: Some(reservation.cancelled.clone()),
        })
    };
    let mut events = execute(&schema, &documents, request);
    while let Some(event) = events.next().await {
        match event {
            Event::Next(response) => {
                let kind = match protocol {
                    WsProtocol::GraphqlTransportWs => "next",
                    WsProtocol::GraphqlWs => "data",
                };
                let message = json!({"type": kind, "id": id, "payload": response_json(&response)});
                if send(message).await.is_err() {
                    return;
                }
            }
            Event::Rejected(errors) => {
                // Release first: once the client sees the error it may reuse the id.
                reservation.release();
                let _ =
                    send(json!({"type": "error", "id": id, "payload": errors_json(&errors)})).await;
                return;
            }
        }
    }
    drop(events);
    reservation.release();
    let _ = send(json!({"type": "complete", "id": id})).await;
}

/// What executing a request produces, in order.
pub(crate) enum Event {
    /// A result (data and/or execution errors).
    Next(Response),
    /// The request failed before execution; nothing else follows.
    Rejected(Vec<ServerError>),
}

/// Executes `request`, its document read through `documents`: subscriptions as a stream,
/// queries and mutations as one result (so a schema without a subscription root still answers
/// queries here).
pub(crate) fn execute(
    schema: &Schema,
    documents: &Documents,
    mut request: Request,
) -> BoxStream<'static, Event> {
    let kind = match documents.read(&request.query) {
        Ok(document) => {
            let kind = operation_type(&document, request.operation_name.as_deref());
            request.set_parsed_query(document);
            kind
        }
        Err(error) => return stream::once(async move { Event::Rejected(vec![error]) }).boxed(),
    };
    if kind == Some(OperationType::Subscription) {
        let mut first = true;
        schema
            .execute_stream(request)
            .map(move |response| {
                let rejected = first && is_request_error(&response);
                first = false;
                if rejected {
                    Event::Rejected(response.errors)
                } else {
                    Event::Next(response)
                }
            })
            .boxed()
    } else {
        let schema = schema.clone();
        stream::once(async move {
            let response = schema.execute(request).await;
            if is_request_error(&response) {
                Event::Rejected(response.errors)
            } else {
                Event::Next(response)
            }
        })
        .boxed()
    }
}

/// The type of the operation the request selects; `None` when the executor must report it.
fn operation_type(document: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), None) => Some(operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|operation| operation.node.ty)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
            .values()
            .next()
            .map(|operation| operation.node.ty),
        _ => None,
    }
}

/// A request error in the GraphQL spec's sense: no data, and no error tied to a field.
fn is_request_error(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

pub(crate) fn response_json(response: &Response) -> Value {
    serde_json::to_value(response).unwrap_or_else(|error| {
        tracing::error!(%error, "GraphQL response could not be serialized.");
        json!({"errors": [{"message": "Internal error: the response could not be serialized"}]})
    })
}

pub(crate) fn errors_json(errors: &[ServerError]) -> Value {
    serde_json::to_value(errors).unwrap_or_else(|error| {
        tracing::error!(%error, "GraphQL errors could not be serialized.");
        json!([{"message": "Internal error: the errors could not be serialized"}])
    })
}

/// An `error` message with one GraphQL error.
fn error_message(id: &str, reason: &str) -> Value {
    json!({"type": "error", "id": id, "payload": [{"message": reason}]})
}

fn parse_envelope(text: &str) -> Result<ClientMessage, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| format!("Invalid message: not JSON ({error})"))?;
    let Value::Object(mut object) = value else {
        return Err("Invalid message: expected a JSON object".into());
    };
    let kind = match object.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Err("Invalid message: missing \"type\"".into()),
    };
    let id = match object.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => return Err("Invalid message: \"id\" must be a string".into()),
    };
    let payload = object
        .remove("payload")
        .filter(|payload| !payload.is_null());
    Ok(ClientMessage { kind, id, payload })
}

/// Reads `{query, operationName?, variables?, extensions?}` into a request.
fn parse_operation(payload: Option<Value>) -> Result<Request, String> {
    let Some(Value::Object(payload)) = payload else {
        return Err("Invalid message: the operation payload must be an object".into());
    };
    if !payload.get("query").is_some_and(Value::is_string) {
        return Err("Invalid message: the operation payload needs a \"query\" string".into());
    }
    let optional = |field: &str, ok: fn(&Value) -> bool, what: &str| match payload.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(value) if ok(value) => Ok(()),
        Some(_) => Err(format!(
            "Invalid message: \"{field}\" must be {what} or null"
        )),
    };
    optional("operationName", Value::is_string, "a string")?;
    optional("variables", Value::is_object, "an object")?;
    optional("extensions", Value::is_object, "an object")?;
    let cleaned: Map<String, Value> = payload
        .into_iter()
        .filter(|(_, value)| !value.is_null())
        .collect();
    serde_json::from_value(Value::Object(cleaned))
        .map_err(|error| format!("Invalid message: bad operation payload ({error})"))
}

fn text(message: &Value) -> Message {
    Message::Text(message.to_string().into())
}

/// A close frame; the reason is cut to the 123 bytes a close frame can carry.
fn close_message(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    }))
}

fn is_capacity_error(error: &axum::Error) -> bool {
    // axum hides tungstenite's error type; its capacity errors read "Space limit exceeded".
    let text = error.to_string();
    text.contains("limit exceeded") || text.contains("too long")
}

/// Waits for the next keep-alive beat, forever when keep-alive is off.
/// Resolves once the server starts shutting down (never without a `closing` signal).
async fn server_closing(closing: &mut Option<watch::Receiver<bool>>) {
    match closing {
        Some(closing) => {
            // An error means the gateway is gone: that is shutting down too.
            let _ = closing.wait_for(|&closing| closing).await;
        }
        None => std::future::pending().await,
    }
}

async fn tick(keepalive: &mut Option<Interval>) {
    match keepalive {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Waits for the writer task to end, forever once it has been joined.
async fn join(writer: &mut Option<JoinHandle<()>>) -> Result<(), tokio::task::JoinError> {
    match writer {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Sends results and control answers; control answers go first.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut control: mpsc::Receiver<Outgoing>,
    mut data: mpsc::Receiver<Outgoing>,
) {
    loop {
        let outgoing = tokio::select! {
            biased;
            Some(outgoing) = control.recv() => outgoing,
            Some(outgoing) = data.recv() => outgoing,
            else => break,
        };
        if outgoing
            .cancelled
            .as_ref()
            .is_some_and(|cancelled| cancelled.load(Ordering::Acquire))
        {
            continue;
        }
        let closing = matches!(outgoing.message, Message::Close(_));
        if let Err(error) = sink.send(outgoing.message).await {
            tracing::debug!(%error, "WebSocket write failed.");
            break;
        }
        if closing {
            break;
        }
    }
}

async fn close_and_drain(
    mut sink: SplitSink<WebSocket, Message>,
    mut incoming: stream::SplitStream<WebSocket>,
    code: u16,
    reason: &str,
) {
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close_message(code, reason))).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = incoming.next().await {}
    })
    .await;
}

#[cfg(test)]
pub(crate) mod tests {
    //! A small dynamic schema, a real axum server and a real tokio-tungstenite client.

    use std::{
        net::SocketAddr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use async_graphql::{
        dynamic::{
            Field, FieldFuture, InputValue, Object, Subscription, SubscriptionField,
            SubscriptionFieldFuture, TypeRef,
        },
        Value as GqlValue,
    };
    use axum::{extract::State, routing::get, Router};
    use futures_util::{SinkExt, StreamExt};
    use serde_json::{json, Value};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpSocket, TcpStream},
    };
    use tokio_tungstenite::{
        tungstenite::{client::IntoClientRequest, protocol::Role, Message as WsMessage},
        WebSocketStream,
    };

    use super::*;

    // ----- the schema -------------------------------------------------------------------

    /// What the resolvers did, observable from the tests.
    #[derive(Default)]
    pub(crate) struct Probe {
        pub(crate) forever_started: AtomicUsize,
        pub(crate) forever_dropped: AtomicUsize,
        pub(crate) produced: AtomicUsize,
        pub(crate) bumps: AtomicUsize,
    }

    /// Flips `forever_dropped` when the `forever` stream is dropped (cancelled).
    struct DropFlag(Arc<Probe>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.forever_dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Per-operation data that `prepare` attaches.
    pub(crate) struct Principal(pub(crate) String);

    fn int_arg(name: &str) -> InputValue {
        InputValue::new(name, TypeRef::named_nn(TypeRef::INT))
    }

    /// Query `hello(name)`, `whoami`; mutation `bump`; subscriptions `count(to)` (1..=to),
    /// `failAfter(k)` (k items then an error), `forever` (one item, then never ends; counts
    /// starts and drops), `ticks(n, everyMs)` (slow), `firehose(size)` (as fast as read).
    pub(crate) fn schema(probe: Arc<Probe>) -> Schema {
        let query = Object::new("Query")
            .field(
                Field::new("hello", TypeRef::named_nn(TypeRef::STRING), |ctx| {
                    FieldFuture::new(async move {
                        let name = ctx.args.try_get("name")?.string()?.to_owned();
                        Ok(Some(GqlValue::from(format!("hello, {name}"))))
                    })
                })
                .argument(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING))),
            )
            .field(Field::new(
                "whoami",
                TypeRef::named(TypeRef::STRING),
                |ctx| {
                    FieldFuture::new(async move {
                        Ok(ctx
                            .data_opt::<Principal>()
                            .map(|principal| GqlValue::from(principal.0.clone())))
                    })
                },
            ));
        let bump_probe = probe.clone();
        let mutation = Object::new("Mutation").field(Field::new(
            "bump",
            TypeRef::named_nn(TypeRef::INT),
            move |_| {
                let probe = bump_probe.clone();
                FieldFuture::new(async move {
                    let n = probe.bumps.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok(Some(GqlValue::from(n as i64)))
                })
            },
        ));
        let forever_probe = probe.clone();
        let firehose_probe = probe;
        let subscription = Subscription::new("Subscription")
            .field(
                SubscriptionField::new("count", TypeRef::named_nn(TypeRef::INT), |ctx| {
                    SubscriptionFieldFuture::new(async move {
                        let to = ctx.args.try_get("to")?.i64()?;
                        Ok(stream::iter((1..=to).map(|i| Ok(GqlValue::from(i)))))
                    })
                })
                .argument(int_arg("to")),
            )
            .field(
                SubscriptionField::new("failAfter", TypeRef::named_nn(TypeRef::INT), |ctx| {
                    SubscriptionFieldFuture::new(async move {
                        let k = ctx.args.try_get("k")?.i64()?;
                        let items = (1..=k).map(|i| Ok(GqlValue::from(i)));
                        let failure = Err(async_graphql::Error::new("upstream broke"));
                        Ok(stream::iter(items.chain(std::iter::once(failure))))
                    })
                })
                .argument(int_arg("k")),
            )
            .field(SubscriptionField::new(
                "forever",
                TypeRef::named_nn(TypeRef::INT),
                move |_| {
                    let probe = forever_probe.clone();
                    SubscriptionFieldFuture::new(async move {
                        probe.forever_started.fetch_add(1, Ordering::SeqCst);
                        let flag = DropFlag(probe);
                        let items = stream::once(async { Ok(GqlValue::from(0)) })
                            .chain(stream::pending())
                            .map(move |item| {
                                let _alive = &flag;
                                item
                            });
                        Ok(items)
                    })
                },
            ))
            .field(
                SubscriptionField::new("ticks", TypeRef::named_nn(TypeRef::INT), |ctx| {
                    SubscriptionFieldFuture::new(async move {
                        let n = ctx.args.try_get("n")?.i64()?;
                        let every = ctx.args.try_get("everyMs")?.u64()?;
                        Ok(stream::unfold(0, move |i| async move {
                            if i >= n {
                                return None;
                            }
                            tokio::time::sleep(Duration::from_millis(every)).await;
                            Some((Ok(GqlValue::from(i)), i + 1))
                        }))
                    })
                })
                .argument(int_arg("n"))
                .argument(int_arg("everyMs")),
            )
            .field(
                SubscriptionField::new(
                    "firehose",
                    TypeRef::named_nn(TypeRef::STRING),
                    move |ctx| {
                        let probe = firehose_probe.clone();
                        SubscriptionFieldFuture::new(async move {
                            let size = ctx.args.try_get("size")?.u64()? as usize;
                            // Bounded so that a failing test cannot eat the machine's memory.
                            Ok(stream::iter(0..FIREHOSE_ITEMS).map(move |_| {
                                probe.produced.fetch_add(1, Ordering::SeqCst);
                                Ok(GqlValue::from("x".repeat(size)))
                            }))
                        })
                    },
                )
                .argument(int_arg("size")),
            );
        Schema::build("Query", Some("Mutation"), Some("Subscription"))
            .register(query)
            .register(mutation)
            .register(subscription)
            .finish()
            .unwrap()
    }

    pub(crate) const FIREHOSE_ITEMS: usize = 20_000;

    /// Accepts everything, attaches `Principal` from the init payload's `token` or the
    /// `x-user` header; rejects the token "bad" and operations named `Forbidden`.
    pub(crate) fn prepare() -> Prepare {
        Arc::new(|request: Request, init: &ConnectionInit| {
            if request.operation_name.as_deref() == Some("Forbidden") {
                return Err("operation Forbidden is not allowed".into());
            }
            let token = init
                .payload
                .as_ref()
                .and_then(|payload| payload.get("token"))
                .and_then(Value::as_str)
                .or_else(|| init.headers.get("x-user").and_then(|v| v.to_str().ok()));
            match token {
                Some("bad") => Err("bad token".into()),
                Some(user) => Ok(request.data(Principal(user.to_owned()))),
                None => Ok(request),
            }
        })
    }

    /// Waits (bounded) until `condition` holds.
    pub(crate) async fn eventually(what: &str, condition: impl Fn() -> bool) {
        for _ in 0..500 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    // ----- server and client ------------------------------------------------------------

    #[derive(Clone)]
    struct AppState {
        schema: Schema,
        prepare: Prepare,
        config: WsConfig,
    }

    async fn graphql_ws(
        State(state): State<AppState>,
        headers: http::HeaderMap,
        ws: WebSocketUpgrade,
    ) -> axum::response::Response {
        upgrade(ws, &headers, state.schema, state.prepare, state.config)
    }

    /// A test config: no keep-alive noise unless a test asks for it.
    fn quiet() -> WsConfig {
        WsConfig {
            keepalive_interval: None,
            ..WsConfig::default()
        }
    }

    struct Server {
        addr: SocketAddr,
        probe: Arc<Probe>,
    }

    async fn server(config: WsConfig) -> Server {
        server_with(config, None).await
    }

    /// `send_buffer` shrinks the kernel's socket buffer (inherited by accepted sockets) so
    /// that backpressure reaches the gateway after a few messages.
    async fn server_with(config: WsConfig, send_buffer: Option<u32>) -> Server {
        let probe = Arc::new(Probe::default());
        let state = AppState {
            schema: schema(probe.clone()),
            prepare: prepare(),
            config,
        };
        let app = Router::new()
            .route("/graphql", get(graphql_ws))
            .with_state(state);
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = send_buffer {
            socket.set_send_buffer_size(size).unwrap();
        }
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server { addr, probe }
    }

    struct Client {
        ws: WebSocketStream<TcpStream>,
    }

    const WAIT: Duration = Duration::from_secs(10);

    impl Client {
        async fn connect(addr: SocketAddr, protocol: WsProtocol) -> Client {
            Client::connect_with(addr, protocol, None).await
        }

        async fn connect_with(
            addr: SocketAddr,
            protocol: WsProtocol,
            recv_buffer: Option<u32>,
        ) -> Client {
            let mut request = format!("ws://{addr}/graphql")
                .into_client_request()
                .unwrap();
            request.headers_mut().insert(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                protocol.as_str().parse().unwrap(),
            );
            request
                .headers_mut()
                .insert("x-user", "header-user".parse().unwrap());
            let socket = TcpSocket::new_v4().unwrap();
            if let Some(size) = recv_buffer {
                socket.set_recv_buffer_size(size).unwrap();
            }
            let stream = socket.connect(addr).await.unwrap();
            let (ws, response) = tokio_tungstenite::client_async(request, stream)
                .await
                .unwrap();
            assert_eq!(
                response.headers()[http::header::SEC_WEBSOCKET_PROTOCOL],
                protocol.as_str()
            );
            Client { ws }
        }

        async fn send(&mut self, message: Value) {
            self.send_text(&message.to_string()).await;
        }

        async fn send_text(&mut self, text: &str) {
            self.ws.send(WsMessage::text(text)).await.unwrap();
        }

        async fn frame(&mut self) -> Option<WsMessage> {
            tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the server answers in time")
                .map(|message| message.unwrap())
        }

        /// The next protocol message (WebSocket pings are skipped).
        async fn recv(&mut self) -> Value {
            loop {
                match self.frame().await {
                    Some(WsMessage::Text(text)) => return serde_json::from_str(&text).unwrap(),
                    Some(WsMessage::Ping(_) | WsMessage::Pong(_)) => continue,
                    other => panic!("expected a message, got {other:?}"),
                }
            }
        }

        /// Reads until the server's close frame: its code and reason.
        async fn closed(&mut self) -> (u16, String) {
            loop {
                match self.frame().await {
                    Some(WsMessage::Close(Some(frame))) => {
                        return (frame.code.into(), frame.reason.to_string())
                    }
                    Some(WsMessage::Ping(_) | WsMessage::Pong(_)) => continue,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        }

        async fn init(&mut self) {
            self.send(json!({"type": "connection_init"})).await;
            assert_eq!(self.recv().await, json!({"type": "connection_ack"}));
        }

        async fn subscribe(&mut self, id: &str, query: &str) {
            self.send(json!({"type": "subscribe", "id": id, "payload": {"query": query}}))
                .await;
        }
    }

    fn next(id: &str, data: Value) -> Value {
        json!({"type": "next", "id": id, "payload": {"data": data}})
    }

    fn complete(id: &str) -> Value {
        json!({"type": "complete", "id": id})
    }

    // ----- graphql-transport-ws ---------------------------------------------------------

    #[test]
    fn subprotocol_is_picked_from_the_offered_list() {
        let cases = [
            (None, None),
            (Some(""), None),
            (Some("foo, bar"), None),
            (Some("graphql-ws"), Some(WsProtocol::GraphqlWs)),
            (
                Some("graphql-transport-ws"),
                Some(WsProtocol::GraphqlTransportWs),
            ),
            (Some("foo,graphql-ws"), Some(WsProtocol::GraphqlWs)),
            (
                Some("graphql-ws, graphql-transport-ws"),
                Some(WsProtocol::GraphqlTransportWs),
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(WsProtocol::from_header(header), expected, "{header:?}");
        }
        for protocol in [WsProtocol::GraphqlTransportWs, WsProtocol::GraphqlWs] {
            assert_eq!(
                WsProtocol::from_header(Some(protocol.as_str())),
                Some(protocol)
            );
        }
    }

    #[tokio::test]
    async fn a_subscription_streams_next_messages_then_complete() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client.subscribe("1", "subscription { count(to: 3) }").await;
        for i in 1..=3 {
            assert_eq!(client.recv().await, next("1", json!({"count": i})));
        }
        assert_eq!(client.recv().await, complete("1"));
    }

    #[tokio::test]
    async fn queries_and_mutations_answer_one_next_then_complete() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client
            .send(json!({"type": "subscribe", "id": "q", "payload": {
            "query": "query Greet($name: String!) { hello(name: $name) }",
            "variables": {"name": "ada"}, "operationName": "Greet", "extensions": {}}}))
            .await;
        assert_eq!(
            client.recv().await,
            next("q", json!({"hello": "hello, ada"}))
        );
        assert_eq!(client.recv().await, complete("q"));
        client.subscribe("m", "mutation { bump }").await;
        assert_eq!(client.recv().await, next("m", json!({"bump": 1})));
        assert_eq!(client.recv().await, complete("m"));
        assert_eq!(server.probe.bumps.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn prepare_attaches_data_from_the_init_payload_or_the_upgrade_headers() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client
            .send(json!({"type": "connection_init", "payload": {"token": "alice"}}))
            .await;
        assert_eq!(client.recv().await, json!({"type": "connection_ack"}));
        client.subscribe("1", "{ whoami }").await;
        assert_eq!(client.recv().await, next("1", json!({"whoami": "alice"})));

        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client.subscribe("1", "{ whoami }").await;
        assert_eq!(
            client.recv().await,
            next("1", json!({"whoami": "header-user"}))
        );
    }

    #[tokio::test]
    async fn pings_are_answered_with_pongs_carrying_the_payload() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        // Allowed before the connection is acknowledged too.
        client.send(json!({"type": "ping"})).await;
        assert_eq!(client.recv().await, json!({"type": "pong"}));
        client.init().await;
        client
            .send(json!({"type": "ping", "payload": {"at": 42}}))
            .await;
        assert_eq!(
            client.recv().await,
            json!({"type": "pong", "payload": {"at": 42}})
        );
        // A client pong (unsolicited heartbeat) is accepted silently.
        client.send(json!({"type": "pong"})).await;
        client.send(json!({"type": "ping"})).await;
        assert_eq!(client.recv().await, json!({"type": "pong"}));
    }

    #[tokio::test]
    async fn the_server_sends_websocket_pings_as_keepalive() {
        let config = WsConfig {
            keepalive_interval: Some(Duration::from_millis(20)),
            ..WsConfig::default()
        };
        let server = server(config).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        let mut pings = 0;
        while pings < 2 {
            match client.frame().await {
                Some(WsMessage::Ping(_)) => pings += 1,
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn subscribe_before_connection_ack_closes_4401() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.subscribe("1", "subscription { count(to: 1) }").await;
        assert_eq!(client.closed().await, (4401, "Unauthorized".into()));
    }

    #[tokio::test]
    async fn a_second_connection_init_closes_4429() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client.send(json!({"type": "connection_init"})).await;
        assert_eq!(
            client.closed().await,
            (4429, "Too many initialisation requests".into())
        );
    }

    #[tokio::test]
    async fn no_connection_init_in_time_closes_4408() {
        let config = WsConfig {
            connection_init_timeout: Duration::from_millis(50),
            ..quiet()
        };
        let server = server(config).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        assert_eq!(
            client.closed().await,
            (4408, "Connection initialisation timeout".into())
        );
    }

    #[tokio::test]
    async fn an_acknowledged_connection_outlives_the_init_timeout() {
        let config = WsConfig {
            connection_init_timeout: Duration::from_millis(30),
            ..quiet()
        };
        let server = server(config).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client
            .subscribe("1", "subscription { ticks(n: 2, everyMs: 60) }")
            .await;
        assert_eq!(client.recv().await, next("1", json!({"ticks": 0})));
        assert_eq!(client.recv().await, next("1", json!({"ticks": 1})));
        assert_eq!(client.recv().await, complete("1"));
    }

    #[tokio::test]
    async fn a_rejected_connection_init_closes_4403() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client
            .send(json!({"type": "connection_init", "payload": {"token": "bad"}}))
            .await;
        assert_eq!(client.closed().await, (4403, "Forbidden".into()));
    }

    #[tokio::test]
    async fn a_duplicate_id_of_a_running_operation_closes_4409() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client.subscribe("dup", "subscription { forever }").await;
        assert_eq!(client.recv().await, next("dup", json!({"forever": 0})));
        client
            .subscribe("dup", "subscription { count(to: 1) }")
            .await;
        assert_eq!(
            client.closed().await,
            (4409, "Subscriber for dup already exists".into())
        );
        let probe = server.probe.clone();
        eventually("the running subscription is dropped", || {
            probe.forever_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn invalid_messages_close_4400_with_a_reason() {
        // (case, send connection_init first, message, words expected in the close reason)
        let cases = [
            ("bad JSON", true, r#"{"type": "subscribe""#, "not JSON"),
            ("not an object", true, r#"[1, 2]"#, "object"),
            ("no type", true, r#"{"id": "1"}"#, "type"),
            ("unknown type", true, r#"{"type": "hello"}"#, "unknown type"),
            (
                "server-only type",
                true,
                r#"{"type": "next", "id": "1", "payload": {}}"#,
                "server",
            ),
            (
                "id not a string",
                true,
                r#"{"type": "complete", "id": 7}"#,
                "id",
            ),
            (
                "subscribe without id",
                true,
                r#"{"type": "subscribe", "payload": {"query": "{ whoami }"}}"#,
                "id",
            ),
            (
                "subscribe without payload",
                true,
                r#"{"type": "subscribe", "id": "1"}"#,
                "payload",
            ),
            (
                "subscribe without query",
                true,
                r#"{"type": "subscribe", "id": "1", "payload": {}}"#,
                "query",
            ),
            (
                "variables not an object",
                true,
                r#"{"type": "subscribe", "id": "1", "payload": {"query": "{ whoami }", "variables": [1]}}"#,
                "variables",
            ),
            ("complete without id", true, r#"{"type": "complete"}"#, "id"),
            (
                "init payload not an object",
                false,
                r#"{"type": "connection_init", "payload": "token"}"#,
                "payload",
            ),
        ];
        let server = server(quiet()).await;
        for (case, init, message, reason) in cases {
            let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
            if init {
                client.init().await;
            }
            client.send_text(message).await;
            let (code, text) = client.closed().await;
            assert_eq!(code, 4400, "{case}: {text}");
            assert!(
                text.contains(reason),
                "{case}: reason {text:?} lacks {reason:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_message_over_the_size_limit_closes_1009() {
        let config = WsConfig {
            max_message_bytes: 1024,
            ..quiet()
        };
        let server = server(config).await;
        // Just over the limit (seen by the protocol layer) and far over it (refused by the
        // WebSocket layer before it is buffered whole).
        for size in [2000, 200_000] {
            let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
            client.init().await;
            let query = format!("{{ hello(name: \"{}\") }}", "a".repeat(size));
            client.subscribe("1", &query).await;
            assert_eq!(
                client.closed().await,
                (1009, "Message too big".into()),
                "{size}"
            );
        }
    }

    /// Sends a raw upgrade request offering `protocols`; returns the head and the socket.
    async fn raw_upgrade(addr: SocketAddr, protocols: Option<&str>) -> (String, TcpStream) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let offer = protocols
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /graphql HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(WAIT, stream.read(&mut byte))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(read, 1, "the server hung up during the handshake");
            head.push(byte[0]);
        }
        (
            String::from_utf8(head).unwrap().to_ascii_lowercase(),
            stream,
        )
    }

    #[tokio::test]
    async fn an_unknown_subprotocol_is_upgraded_without_one_then_closed_4406() {
        let server = server(quiet()).await;
        for offered in [Some("foo"), Some("graphql-subscriptions, bar"), None] {
            let (head, stream) = raw_upgrade(server.addr, offered).await;
            assert!(head.starts_with("http/1.1 101"), "{offered:?}: {head}");
            assert!(
                !head.contains("sec-websocket-protocol"),
                "{offered:?}: {head}"
            );
            let ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
            let mut client = Client { ws };
            assert_eq!(
                client.closed().await,
                (4406, "Subprotocol not acceptable".into()),
                "{offered:?}"
            );
        }
        let (head, _) = raw_upgrade(server.addr, Some("foo, graphql-transport-ws")).await;
        assert!(
            head.contains("sec-websocket-protocol: graphql-transport-ws"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn two_subscriptions_share_one_socket_with_interleaved_results() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client
            .subscribe("slow", "subscription { ticks(n: 5, everyMs: 80) }")
            .await;
        client
            .subscribe("fast", "subscription { ticks(n: 2, everyMs: 30) }")
            .await;
        let mut seen: Vec<Value> = Vec::new();
        while seen.iter().filter(|m| m["type"] == "complete").count() < 2 {
            seen.push(client.recv().await);
        }
        for id in ["slow", "fast"] {
            let values: Vec<&Value> = seen
                .iter()
                .filter(|m| m["id"] == id && m["type"] == "next")
                .map(|m| &m["payload"]["data"]["ticks"])
                .collect();
            let expected = if id == "slow" { 5 } else { 2 };
            assert_eq!(
                values,
                (0..expected)
                    .map(|i| json!(i))
                    .collect::<Vec<_>>()
                    .iter()
                    .collect::<Vec<_>>()
            );
        }
        let position = |wanted: &Value| seen.iter().position(|m| m == wanted).unwrap();
        // "fast" finished while "slow" was still streaming.
        assert!(position(&complete("fast")) < position(&complete("slow")));
        assert!(position(&complete("fast")) < position(&next("slow", json!({"ticks": 4}))));
    }

    #[tokio::test]
    async fn client_complete_cancels_the_operation_and_frees_its_id() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client.subscribe("1", "subscription { forever }").await;
        assert_eq!(client.recv().await, next("1", json!({"forever": 0})));
        client.send(complete("1")).await;
        let probe = server.probe.clone();
        eventually("the subscription is dropped", || {
            probe.forever_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
        // Nothing is sent for a completed operation: the next message is the pong.
        client.send(json!({"type": "ping"})).await;
        assert_eq!(client.recv().await, json!({"type": "pong"}));
        // The id can be used again, and completing an unknown id is harmless.
        client.send(complete("unknown")).await;
        client.subscribe("1", "subscription { count(to: 1) }").await;
        assert_eq!(client.recv().await, next("1", json!({"count": 1})));
        assert_eq!(client.recv().await, complete("1"));
    }

    #[tokio::test]
    async fn closing_the_socket_cancels_every_operation() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client.subscribe("a", "subscription { forever }").await;
        client.subscribe("b", "subscription { forever }").await;
        client.recv().await;
        client.recv().await;
        assert_eq!(server.probe.forever_started.load(Ordering::SeqCst), 2);
        client.ws.close(None).await.unwrap();
        let probe = server.probe.clone();
        eventually("both subscriptions are dropped", || {
            probe.forever_dropped.load(Ordering::SeqCst) == 2
        })
        .await;
    }

    #[tokio::test]
    async fn a_vanished_client_cancels_its_operations() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client.subscribe("a", "subscription { forever }").await;
        client.recv().await;
        drop(client); // TCP closed without a close frame
        let probe = server.probe.clone();
        eventually("the subscription is dropped", || {
            probe.forever_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn request_errors_answer_error_without_complete() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        // (id, query, words expected in the first error message)
        let cases = [
            ("parse", "subscription {", "expected"),
            ("validation", "subscription { nope }", "nope"),
            ("missing argument", "subscription { count }", "to"),
            (
                "unknown operation",
                "query A { whoami } query B { whoami }",
                "operation",
            ),
        ];
        for (id, query, words) in cases {
            client.subscribe(id, query).await;
            let message = client.recv().await;
            assert_eq!(message["type"], "error", "{id}: {message}");
            assert_eq!(message["id"], id);
            let errors = message["payload"].as_array().expect("an array of errors");
            let text = errors[0]["message"].as_str().unwrap().to_lowercase();
            assert!(text.contains(words), "{id}: {text:?} lacks {words:?}");
        }
        // No `complete` followed any of them, and their ids are free again.
        client
            .subscribe("parse", "subscription { count(to: 1) }")
            .await;
        assert_eq!(client.recv().await, next("parse", json!({"count": 1})));
    }

    #[tokio::test]
    async fn a_rejected_operation_answers_error_and_the_connection_stays() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client
            .send(json!({"type": "subscribe", "id": "1", "payload": {
            "query": "subscription Forbidden { count(to: 1) }", "operationName": "Forbidden"}}))
            .await;
        assert_eq!(
            client.recv().await,
            json!({"type": "error", "id": "1", "payload": [{"message": "operation Forbidden is not allowed"}]})
        );
        client.subscribe("1", "{ hello(name: \"again\") }").await;
        assert_eq!(
            client.recv().await,
            next("1", json!({"hello": "hello, again"}))
        );
    }

    #[tokio::test]
    async fn an_error_mid_stream_goes_in_next_then_the_operation_completes() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlTransportWs).await;
        client.init().await;
        client
            .subscribe("1", "subscription { failAfter(k: 2) }")
            .await;
        assert_eq!(client.recv().await, next("1", json!({"failAfter": 1})));
        assert_eq!(client.recv().await, next("1", json!({"failAfter": 2})));
        let failed = client.recv().await;
        assert_eq!(failed["type"], "next", "{failed}");
        assert_eq!(failed["payload"]["errors"][0]["message"], "upstream broke");
        assert_eq!(failed["payload"]["errors"][0]["path"], json!(["failAfter"]));
        assert_eq!(client.recv().await, complete("1"));
    }

    #[tokio::test]
    async fn a_slow_reader_pauses_the_producer_instead_of_buffering() {
        let config = WsConfig {
            outgoing_buffer: 4,
            ..quiet()
        };
        let server = server_with(config, Some(4096)).await;
        let mut client =
            Client::connect_with(server.addr, WsProtocol::GraphqlTransportWs, Some(4096)).await;
        client.init().await;
        client
            .subscribe("hose", "subscription { firehose(size: 1024) }")
            .await;
        // Do not read: wait until production stops moving.
        let probe = server.probe.clone();
        let produced = || probe.produced.load(Ordering::SeqCst);
        let mut last = 0;
        let mut still = 0;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let now = produced();
            still = if now == last && now > 0 { still + 1 } else { 0 };
            last = now;
            if still == 8 {
                break;
            }
        }
        assert_eq!(still, 8, "production never paused: {last} items");
        // The queue (4) plus what the kernel's small socket buffers hold, far from all.
        assert!(
            last < 64,
            "{last} items produced for a client that read none"
        );
        // Reading resumes production.
        for _ in 0..last + 50 {
            let message = client.recv().await;
            assert_eq!(message["type"], "next");
        }
        assert!(produced() > last);
        client.send(complete("hose")).await;
    }

    // ----- legacy graphql-ws ------------------------------------------------------------

    fn data(id: &str, data: Value) -> Value {
        json!({"type": "data", "id": id, "payload": {"data": data}})
    }

    fn start(id: &str, query: &str) -> Value {
        json!({"type": "start", "id": id, "payload": {"query": query}})
    }

    async fn legacy_client(server: &Server) -> Client {
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlWs).await;
        client.send(json!({"type": "connection_init"})).await;
        assert_eq!(client.recv().await, json!({"type": "connection_ack"}));
        client
    }

    #[tokio::test]
    async fn legacy_start_streams_data_then_complete() {
        let server = server(quiet()).await;
        let mut client = legacy_client(&server).await;
        client
            .send(start("1", "subscription { count(to: 2) }"))
            .await;
        assert_eq!(client.recv().await, data("1", json!({"count": 1})));
        assert_eq!(client.recv().await, data("1", json!({"count": 2})));
        assert_eq!(client.recv().await, complete("1"));
        client.send(start("2", "{ hello(name: \"old\") }")).await;
        assert_eq!(
            client.recv().await,
            data("2", json!({"hello": "hello, old"}))
        );
        assert_eq!(client.recv().await, complete("2"));
    }

    #[tokio::test]
    async fn legacy_keepalive_sends_ka_after_ack_and_periodically() {
        let config = WsConfig {
            keepalive_interval: Some(Duration::from_millis(20)),
            ..WsConfig::default()
        };
        let server = server(config).await;
        let mut client = legacy_client(&server).await;
        // One right after the ack, then one per interval.
        for _ in 0..3 {
            assert_eq!(client.recv().await, json!({"type": "ka"}));
        }
    }

    #[tokio::test]
    async fn legacy_stop_cancels_and_answers_complete() {
        let server = server(quiet()).await;
        let mut client = legacy_client(&server).await;
        client.send(start("1", "subscription { forever }")).await;
        assert_eq!(client.recv().await, data("1", json!({"forever": 0})));
        client.send(json!({"type": "stop", "id": "1"})).await;
        assert_eq!(client.recv().await, complete("1"));
        let probe = server.probe.clone();
        eventually("the subscription is dropped", || {
            probe.forever_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn legacy_start_with_a_running_id_replaces_that_operation() {
        let server = server(quiet()).await;
        let mut client = legacy_client(&server).await;
        client.send(start("x", "subscription { forever }")).await;
        assert_eq!(client.recv().await, data("x", json!({"forever": 0})));
        client
            .send(start("x", "subscription { count(to: 1) }"))
            .await;
        assert_eq!(client.recv().await, data("x", json!({"count": 1})));
        assert_eq!(client.recv().await, complete("x"));
        assert_eq!(server.probe.forever_dropped.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn legacy_connection_terminate_closes_and_cancels() {
        let server = server(quiet()).await;
        let mut client = legacy_client(&server).await;
        client.send(start("1", "subscription { forever }")).await;
        client.recv().await;
        client.send(json!({"type": "connection_terminate"})).await;
        assert_eq!(client.closed().await.0, 1000);
        let probe = server.probe.clone();
        eventually("the subscription is dropped", || {
            probe.forever_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn legacy_rejected_init_answers_connection_error_then_closes() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlWs).await;
        client
            .send(json!({"type": "connection_init", "payload": {"token": "bad"}}))
            .await;
        assert_eq!(
            client.recv().await,
            json!({"type": "connection_error", "payload": {"message": "bad token"}})
        );
        assert_eq!(client.closed().await, (4403, "Forbidden".into()));
    }

    #[tokio::test]
    async fn legacy_bad_messages_answer_connection_error_and_keep_the_socket() {
        let server = server(quiet()).await;
        let mut client = legacy_client(&server).await;
        for message in [
            r#"{"type": "start""#,
            r#"{"type": "subscribe", "id": "1"}"#,
            r#"{"type": "start"}"#,
        ] {
            client.send_text(message).await;
            let answer = client.recv().await;
            assert_eq!(answer["type"], "connection_error", "{message}: {answer}");
            assert!(answer["payload"]["message"].is_string());
        }
        client
            .send(start("1", "subscription { count(to: 1) }"))
            .await;
        assert_eq!(client.recv().await, data("1", json!({"count": 1})));
    }

    #[tokio::test]
    async fn legacy_request_errors_answer_error() {
        let server = server(quiet()).await;
        let mut client = Client::connect(server.addr, WsProtocol::GraphqlWs).await;
        client
            .send(start("early", "subscription { count(to: 1) }"))
            .await;
        let early = client.recv().await;
        assert_eq!(early["type"], "error", "{early}");
        assert_eq!(early["id"], "early");
        client.send(json!({"type": "connection_init"})).await;
        assert_eq!(client.recv().await, json!({"type": "connection_ack"}));
        client.send(start("1", "subscription { nope }")).await;
        let invalid = client.recv().await;
        assert_eq!(invalid["type"], "error", "{invalid}");
        assert_eq!(invalid["id"], "1");
        assert!(invalid["payload"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nope"));
        client
            .send(start("2", "subscription { failAfter(k: 0) }"))
            .await;
        let failed = client.recv().await;
        assert_eq!(failed["type"], "data", "{failed}");
        assert_eq!(failed["payload"]["errors"][0]["message"], "upstream broke");
        assert_eq!(client.recv().await, complete("2"));
    }
}
