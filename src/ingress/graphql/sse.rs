//! GraphQL over Server-Sent Events, "distinct connections mode" of the graphql-sse protocol:
//! one HTTP request carries one operation, and its response is the stream of its results.
//!
//! In: the dynamic [`Schema`], the [`Prepare`] hook, how documents are read ([`Documents`]),
//! the HTTP request headers and the GraphQL
//! request the gateway has already read from the body or query string (the gateway routes here
//! when the client accepts `text/event-stream`).
//! Out: a `text/event-stream` response with `event: next` / `data: <result JSON>` per result
//! and a final `event: complete`. Queries and mutations give one `next`; subscriptions one per
//! item. Errors raised during execution are part of the results (`next`).
//! Must not know: gRPC, descriptors, routes or upstreams.
//!
//! # Where errors go
//! - Parse and validation errors (anything that fails before execution) are sent through the
//!   accepted stream as one `next` whose data is `{"errors": [...]}`, then `complete`: the
//!   graphql-sse spec requires it, because a 4xx answer makes `EventSource` fail without
//!   showing the reason.
//! - `prepare` rejecting the request is not a GraphQL validation step but an authorisation
//!   decision of the gateway: it answers `403 Forbidden` with a JSON body
//!   `{"errors": [{"message": reason}]}` and no stream.
//!
//! # Cancellation and backpressure
//! The body pulls results one at a time as the connection can take them, so a slow client
//! slows the operation's upstream. When the client disconnects, the server drops the body and
//! with it the result stream, which cancels the upstream work. A comment line (`:`) is sent
//! after [`KEEPALIVE`] without results so idle streams survive proxies and a vanished client
//! is noticed.

use std::{convert::Infallible, time::Duration};

use async_graphql::{dynamic::Schema, Request};
use axum::{body::Body, response::IntoResponse};
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use super::ws::{errors_json, execute, response_json, ConnectionInit, Documents, Event, Prepare};

/// Quiet time after which a keep-alive comment is sent.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Executes `request` and answers with its results as server-sent events.
pub async fn handle(
    schema: Schema,
    prepare: Prepare,
    documents: Documents,
    headers: http::HeaderMap,
    request: Request,
) -> axum::response::Response {
    let init = ConnectionInit {
        payload: None,
        headers,
    };
    let request = match prepare(request, &init) {
        Ok(request) => request,
        Err(reason) => {
            tracing::debug!(%reason, "GraphQL SSE request rejected.");
            let body = json!({"errors": [{"message": reason}]});
            return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        }
    };
    let events = execute(&schema, &documents, request).map(|event| {
        let data = match event {
            Event::Next(response) => response_json(&response),
            Event::Rejected(errors) => json!({"errors": errors_json(&errors)}),
        };
        Bytes::from(format!("event: next\ndata: {data}\n\n"))
    });
    let complete = stream::once(async { Bytes::from_static(b"event: complete\ndata:\n\n") });
    let body = with_keepalive(events.chain(complete), KEEPALIVE).map(Ok::<_, Infallible>);

    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells buffering proxies (nginx) to pass events through as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Passes `events` through, adding a comment line after each `period` without one.
fn with_keepalive(
    events: impl Stream<Item = Bytes> + Send + 'static,
    period: Duration,
) -> impl Stream<Item = Bytes> + Send + 'static {
    stream::unfold(events.boxed(), move |mut events| async move {
        // `next` is cancel-safe: a timed-out wait loses no event.
        match tokio::time::timeout(period, events.next()).await {
            Ok(Some(event)) => Some((event, events)),
            Ok(None) => None,
            Err(_elapsed) => Some((Bytes::from_static(b":\n\n"), events)),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, sync::atomic::Ordering, sync::Arc};

    use axum::{extract::State, routing::post, Router};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use serde_json::Value;
    use tokio::{net::TcpStream, task::JoinHandle};

    use super::super::ws::tests::{eventually, prepare, schema, Probe};
    use super::*;

    async fn graphql_sse(
        State(schema): State<Schema>,
        headers: http::HeaderMap,
        axum::Json(request): axum::Json<Request>,
    ) -> axum::response::Response {
        handle(schema, prepare(), Documents::default(), headers, request).await
    }

    async fn server() -> (SocketAddr, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let app = Router::new()
            .route("/graphql/stream", post(graphql_sse))
            .with_state(schema(probe.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, probe)
    }

    /// One response read event by event over a real HTTP/1.1 connection.
    struct Reply {
        status: StatusCode,
        headers: http::HeaderMap,
        body: Incoming,
        buffer: String,
        connection: JoinHandle<()>,
    }

    const WAIT: Duration = Duration::from_secs(10);

    async fn post_graphql(addr: SocketAddr, body: Value, user: Option<&str>) -> Reply {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = http::Request::post(format!("http://{addr}/graphql/stream"))
            .header(header::HOST, addr.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream");
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = tokio::time::timeout(WAIT, sender.send_request(request))
            .await
            .unwrap()
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            buffer: String::new(),
            connection,
        }
    }

    impl Reply {
        /// The next event as (name, data), comments skipped; `None` when the body ends.
        async fn event(&mut self) -> Option<(String, String)> {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut name = None;
                    let mut data = None;
                    for line in block.lines() {
                        if let Some(value) = line.strip_prefix("event:") {
                            name = Some(value.trim_start().to_owned());
                        } else if let Some(value) = line.strip_prefix("data:") {
                            data = Some(value.trim_start().to_owned());
                        }
                    }
                    match (name, data) {
                        (None, None) => continue, // a comment
                        (name, data) => return Some((name.unwrap(), data.unwrap())),
                    }
                }
                let frame = tokio::time::timeout(WAIT, self.body.frame())
                    .await
                    .expect("the server answers in time")?
                    .unwrap();
                if let Ok(chunk) = frame.into_data() {
                    self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
                }
            }
        }

        /// Every remaining event, the data of `next` events parsed.
        async fn events(&mut self) -> Vec<(String, Value)> {
            let mut events = Vec::new();
            while let Some((name, data)) = self.event().await {
                let data = if data.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&data).unwrap()
                };
                events.push((name, data));
            }
            events
        }

        fn is_event_stream(&self) -> bool {
            self.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        }
    }

    fn next(data: Value) -> (String, Value) {
        ("next".into(), json!({"data": data}))
    }

    fn complete() -> (String, Value) {
        ("complete".into(), Value::Null)
    }

    #[tokio::test]
    async fn a_subscription_streams_next_events_then_complete() {
        let (addr, _) = server().await;
        let mut reply = post_graphql(
            addr,
            json!({"query": "subscription Count($to: Int!) { count(to: $to) }", "variables": {"to": 3}}),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.is_event_stream());
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            reply.events().await,
            vec![
                next(json!({"count": 1})),
                next(json!({"count": 2})),
                next(json!({"count": 3})),
                complete()
            ]
        );
    }

    #[tokio::test]
    async fn a_query_answers_one_next_then_complete() {
        let (addr, _) = server().await;
        let mut reply = post_graphql(addr, json!({"query": "{ whoami }"}), Some("bob")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.events().await,
            vec![next(json!({"whoami": "bob"})), complete()]
        );
    }

    #[tokio::test]
    async fn validation_errors_come_as_a_next_event_on_the_stream() {
        let (addr, _) = server().await;
        for query in ["subscription { nope }", "subscription {", "{ hello }"] {
            let mut reply = post_graphql(addr, json!({ "query": query }), None).await;
            assert_eq!(reply.status, StatusCode::OK, "{query}");
            assert!(reply.is_event_stream());
            let events = reply.events().await;
            assert_eq!(events.len(), 2, "{query}: {events:?}");
            assert_eq!(events[0].0, "next");
            assert!(events[0].1.get("data").is_none(), "{query}: {events:?}");
            assert!(events[0].1["errors"][0]["message"].is_string());
            assert_eq!(events[1], complete());
        }
    }

    #[tokio::test]
    async fn a_request_rejected_by_prepare_answers_403_json() {
        let (addr, probe) = server().await;
        let reply = post_graphql(
            addr,
            json!({"query": "subscription { forever }"}),
            Some("bad"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
        let body = reply.body.collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({"errors": [{"message": "bad token"}]}));
        assert_eq!(probe.forever_started.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_error_mid_stream_is_a_next_event_then_complete() {
        let (addr, _) = server().await;
        let mut reply = post_graphql(
            addr,
            json!({"query": "subscription { failAfter(k: 1) }"}),
            None,
        )
        .await;
        let events = reply.events().await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0], next(json!({"failAfter": 1})));
        assert_eq!(events[1].0, "next");
        assert_eq!(events[1].1["errors"][0]["message"], "upstream broke");
        assert_eq!(events[2], complete());
    }

    #[tokio::test]
    async fn a_client_disconnect_cancels_the_subscription() {
        let (addr, probe) = server().await;
        let mut reply =
            post_graphql(addr, json!({"query": "subscription { forever }"}), None).await;
        let (name, data) = reply.event().await.unwrap();
        assert_eq!(
            (name.as_str(), data.as_str()),
            ("next", r#"{"data":{"forever":0}}"#)
        );
        reply.connection.abort();
        drop(reply);
        eventually("the subscription is dropped", || {
            probe.forever_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn quiet_streams_get_keepalive_comments() {
        let events = stream::once(async {
            tokio::time::sleep(Duration::from_millis(120)).await;
            Bytes::from_static(b"event: next\ndata: {}\n\n")
        });
        let out: Vec<Bytes> = with_keepalive(events, Duration::from_millis(50))
            .collect()
            .await;
        assert!(out.len() >= 2, "{out:?}");
        assert!(out[..out.len() - 1].iter().all(|b| b == ":\n\n"), "{out:?}");
        assert_eq!(out[out.len() - 1], "event: next\ndata: {}\n\n");
    }
}
