//! Failure handling over real sockets: timeouts, unreachable or non-gRPC upstreams, body
//! limits, routing errors, graceful shutdown and request ids. Every gateway error is a
//! `google.rpc.Status` JSON body, and the gateway keeps serving afterwards.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use omnigate::config::{Config, GrpcUpstreamConfig, LimitsConfig};
use serde_json::json;

use crate::support::{
    closed_port_url, demo, gateway, get, http_only, http_route, post_json, run_gateway, send,
    send_chunked, FakeHttp, Reply,
};

/// Assert `r` is a gateway error: status, JSON `google.rpc.Status` with `code`, and the stable
/// reason in `details[0]`.
fn assert_error(r: &Reply, status: u16, code: i64, reason: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["details"][0]["reason"], reason, "{body}");
    assert!(r.header("x-request-id").is_some());
}

/// The gateway still answers: the HTTP backend behind `/http` says hello.
async fn still_serving(url: &str) {
    let r = get(url).await;
    assert_eq!(r.status, 200, "the gateway stopped serving: {}", r.text());
}

fn grpc_backend(name: &str, url: &str, descriptors: &[&str]) -> GrpcUpstreamConfig {
    GrpcUpstreamConfig {
        name: name.to_string(),
        url: Some(url.to_string()),
        urls: Vec::new(),
        descriptors: descriptors.iter().map(|d| d.to_string()).collect(),
        reflection_refresh: "0s".into(),
        services: Vec::new(),
        timeout: Some("5s".into()),
        connect_timeout: "2s".into(),
    }
}

#[tokio::test]
async fn a_route_timeout_answers_504_and_the_gateway_keeps_serving() {
    let backends = omnigate::demo::start().await.expect("backends");
    let mut route = http_route("/http", &backends.http_url());
    route.strip_prefix = true;
    route.timeout = Some("200ms".into());
    let gw = gateway(http_only(vec![route])).await;

    let r = get(&gw.url("/http/delay/2000")).await;
    assert_error(&r, 504, 4, "UPSTREAM_TIMEOUT");
    still_serving(&gw.url("/http/delay/0")).await;
}

/// An upstream that answers at once and then sends its body as `chunks`, each after `gap`;
/// `stall` leaves the body open forever after the last one.
async fn trickling_upstream(chunks: usize, gap: Duration, stall: bool) -> FakeHttp {
    FakeHttp::spawn(axum::Router::new().fallback(move || async move {
        use futures_util::StreamExt as _;
        let lines = futures_util::stream::iter(0..chunks)
            .then(move |i| async move {
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                Ok::<_, std::convert::Infallible>(Bytes::from(format!("line {i}\n")))
            })
            .chain(futures_util::stream::pending().take(usize::from(stall)));
        axum::body::Body::from_stream(lines)
    }))
    .await
}

#[tokio::test]
async fn the_route_timeout_also_bounds_silence_within_a_response_body() {
    // Each gap is well inside the timeout, the whole body well past it: it arrives whole.
    let steady = trickling_upstream(12, Duration::from_millis(100), false).await;
    let mut route = http_route("/steady", &steady.url(""));
    route.timeout = Some("600ms".into());
    // Headers and one line at once, then nothing: cut after the timeout.
    let stalled = trickling_upstream(1, Duration::ZERO, true).await;
    let mut stalled_route = http_route("/stalled", &stalled.url(""));
    stalled_route.timeout = Some("300ms".into());
    let gw = gateway(http_only(vec![route, stalled_route])).await;

    let r = get(&gw.url("/steady/x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().lines().count(), 12, "{}", r.text());

    let response = crate::support::open(
        "GET",
        &gw.url("/stalled/x"),
        &[],
        omnigate::request::full_body(Bytes::new()),
    )
    .await;
    assert_eq!(response.status(), 200);
    // The bound only keeps a broken build from hanging.
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .expect("the stalled body is still open after 10s");
    assert!(body.is_err(), "a stalled body must be cut, not ended");
    still_serving(&gw.url("/steady/x")).await;
}

#[tokio::test]
async fn an_unreachable_http_upstream_answers_502_without_leaking_the_cause() {
    let closed = closed_port_url().await;
    let gw = gateway(http_only(vec![http_route("/gone", &closed)])).await;
    for method in ["GET", "POST", "DELETE"] {
        let r = send(method, &gw.url("/gone/x"), &[], "payload").await;
        assert_error(&r, 502, 14, "UPSTREAM_UNAVAILABLE");
        let text = r.text().to_ascii_lowercase();
        assert!(
            !text.contains("refused") && !text.contains("os error") && !text.contains(&closed),
            "internal detail leaked: {text}"
        );
    }
}

#[tokio::test]
async fn upstream_http_errors_are_passed_through_as_the_backends_answer() {
    let d = demo().await;
    for code in [400u16, 404, 500, 503] {
        let r = get(&d.url(&format!("/http/status/{code}"))).await;
        assert_eq!(r.status, code, "{}", r.text());
        let body = r.json();
        assert_eq!(body["status"], code, "the backend's own body: {body}");
        assert!(body.get("details").is_none(), "not a gateway error: {body}");
        assert!(r.header("x-request-id").is_some());
    }
    // The backend's own 404 for a path it does not know is not the gateway's NO_ROUTE.
    let r = get(&d.url("/http/no/such/thing")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], 404, "{}", r.text());
    still_serving(&d.url("/reviews")).await;
}

/// What a misconfigured or non-gRPC server answers to every request.
#[derive(Clone, Copy, Debug)]
enum NotGrpc {
    /// A `text/html` error page with 200.
    HtmlPage,
    /// A `text/html` page with 404, as a web server would.
    HtmlNotFound,
    /// `application/json` 200.
    Json,
    /// `application/grpc` 200 with an empty body and no `grpc-status` anywhere.
    GrpcWithoutStatus,
    /// `application/grpc` 200 with one well-formed message frame and no `grpc-status`.
    GrpcMessageWithoutStatus,
}

async fn not_grpc_server(kind: NotGrpc) -> FakeHttp {
    FakeHttp::spawn(axum::Router::new().fallback(move || async move {
        use axum::response::IntoResponse;
        let html = "<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>";
        match kind {
            NotGrpc::HtmlPage => ([("content-type", "text/html")], html).into_response(),
            NotGrpc::HtmlNotFound => (
                http::StatusCode::NOT_FOUND,
                [("content-type", "text/html")],
                html,
            )
                .into_response(),
            NotGrpc::Json => axum::Json(json!({"ok": true})).into_response(),
            NotGrpc::GrpcWithoutStatus => {
                ([("content-type", "application/grpc")], "").into_response()
            }
            NotGrpc::GrpcMessageWithoutStatus => (
                [("content-type", "application/grpc")],
                // An empty message: flag 0, length 0.
                Bytes::from_static(&[0, 0, 0, 0, 0]),
            )
                .into_response(),
        }
    }))
    .await
}

#[tokio::test]
async fn a_grpc_upstream_that_does_not_answer_grpc_is_a_502_never_parsed() {
    for kind in [
        NotGrpc::HtmlPage,
        NotGrpc::HtmlNotFound,
        NotGrpc::Json,
        NotGrpc::GrpcWithoutStatus,
        NotGrpc::GrpcMessageWithoutStatus,
    ] {
        let server = not_grpc_server(kind).await;
        let backends = omnigate::demo::start().await.expect("backends");
        let mut route = http_route("/http", &backends.http_url());
        route.strip_prefix = true;
        let mut config = http_only(vec![route]);
        config.grpc = vec![grpc_backend(
            "library",
            &server.url(""),
            &["descriptors/library.binpb"],
        )];
        let gw = gateway(config).await;

        let r = get(&gw.url("/v1/shelves/1/books/1")).await;
        assert_error(&r, 502, 14, "UPSTREAM_PROTOCOL_ERROR");
        assert!(!r.text().contains("nginx"), "{kind:?}: {}", r.text());
        assert!(server.requests() >= 1, "{kind:?}: the server was not asked");
        let r = post_json(&gw.url("/v1/shelves/1/books"), json!({"title": "x"})).await;
        assert_error(&r, 502, 14, "UPSTREAM_PROTOCOL_ERROR");
        still_serving(&gw.url("/http/reviews")).await;
    }
}

/// A gRPC upstream that answers every call with `chunks` as separate DATA frames (a little
/// apart, so that they arrive separately) and then `grpc-status` in the trailers.
async fn framing_server(chunks: Vec<Vec<u8>>, status: &'static str) -> FakeHttp {
    FakeHttp::spawn(axum::Router::new().fallback(move || {
        let chunks = chunks.clone();
        async move {
            use futures_util::StreamExt as _;
            let frames = futures_util::stream::iter(chunks)
                .then(|chunk| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    http_body::Frame::data(Bytes::from(chunk))
                })
                .chain(futures_util::stream::once(async move {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static(status));
                    http_body::Frame::trailers(trailers)
                }))
                .map(Ok::<_, std::convert::Infallible>);
            http::Response::builder()
                .header("content-type", "application/grpc")
                .header("x-backend", "framing")
                .body(axum::body::Body::new(http_body_util::StreamBody::new(
                    frames,
                )))
                .expect("response")
        }
    }))
    .await
}

/// A gateway whose library backend is a [`framing_server`] (kept alive by the first value).
async fn framing_gateway(
    chunks: Vec<Vec<u8>>,
    status: &'static str,
) -> (FakeHttp, crate::support::TestGateway) {
    let server = framing_server(chunks, status).await;
    let gw = library_gateway(&server.url("")).await;
    (server, gw)
}

/// A gateway whose only backend is a library at `url`, described by its descriptor file.
async fn library_gateway(url: &str) -> crate::support::TestGateway {
    let mut config = http_only(Vec::new());
    config.grpc = vec![grpc_backend("library", url, &["descriptors/library.binpb"])];
    gateway(config).await
}

/// A `library.v1.Book` as protobuf bytes.
fn encoded_book(name: &str, title: &str) -> Vec<u8> {
    use prost::Message as _;
    omnigate::demo::pb::library::v1::Book {
        name: name.into(),
        title: title.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `message` with its 5-byte gRPC prefix (`flag` 1 = compressed).
fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![flag];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

#[tokio::test]
async fn grpc_messages_are_read_across_data_frames_and_bad_framing_is_a_502() {
    let book = encoded_book("shelves/1/books/9", "Split Across Frames");
    let whole = framed(0, &book);
    let (head, tail) = whole.split_at(12);
    const BAD: &str = "UPSTREAM_PROTOCOL_ERROR";
    // (case, DATA frames, grpc-status, expected HTTP status, error reason)
    type Case<'a> = (&'a str, Vec<Vec<u8>>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("whole in one frame", vec![whole.clone()], "0", 200, ""),
        (
            "prefix split over frames",
            vec![whole[..3].to_vec(), whole[3..].to_vec()],
            "0",
            200,
            "",
        ),
        (
            "message split",
            vec![head.to_vec(), tail.to_vec()],
            "0",
            200,
            "",
        ),
        (
            "two messages for a unary call",
            vec![[whole.clone(), whole.clone()].concat()],
            "0",
            502,
            BAD,
        ),
        ("compressed flag", vec![framed(1, &book)], "0", 502, BAD),
        ("ends inside a message", vec![head.to_vec()], "0", 502, BAD),
        ("no message", vec![], "0", 502, BAD),
        (
            "error status after a message",
            vec![whole.clone()],
            "5",
            404,
            "NOT_FOUND",
        ),
    ];
    for (case, chunks, status, expected, reason) in cases {
        let (_server, gw) = framing_gateway(chunks, status).await;
        let r = get(&gw.url("/v1/shelves/1/books/9")).await;
        assert_eq!(r.status, expected, "{case}: {}", r.text());
        if expected == 200 {
            assert_eq!(r.json()["title"], "Split Across Frames", "{case}");
        } else if reason == BAD {
            assert_error(&r, 502, 14, BAD);
        } else {
            assert_eq!(r.json()["code"], 5, "{case}: {}", r.text());
        }
    }
}

/// A backend may fail a server stream after its headers, in the trailers, instead of one
/// Trailers-Only answer (tonic does when the handler's stream yields an error first).
#[tokio::test]
async fn a_stream_failing_in_the_trailers_before_any_message_is_a_plain_error_response() {
    // (case, DATA frames, grpc-status, HTTP status, NDJSON lines)
    type Case<'a> = (&'a str, Vec<Vec<u8>>, &'a str, u16, usize);
    let cases: Vec<Case> = vec![
        ("error before any message", vec![], "5", 404, 0),
        ("error after one message", vec![framed(0, &[])], "5", 200, 2),
        ("no message, OK", vec![], "0", 200, 0),
    ];
    for (case, chunks, status, expected, lines) in cases {
        let (_server, gw) = framing_gateway(chunks, status).await;
        let r = get(&gw.url("/v1/shelves/1:watch")).await;
        assert_eq!(r.status, expected, "{case}: {}", r.text());
        if expected == 200 {
            assert_eq!(
                r.header("content-type"),
                Some("application/x-ndjson"),
                "{case}"
            );
            let text = r.text();
            let body: Vec<&str> = text.lines().collect();
            assert_eq!(body.len(), lines, "{case}: {body:?}");
            if lines == 2 {
                assert!(body[1].contains(r#""code":5"#), "{case}: {body:?}");
            }
        } else {
            assert_eq!(r.header("content-type"), Some("application/json"), "{case}");
            assert_eq!(r.json()["code"], 5, "{case}: {}", r.text());
        }
    }
}

#[tokio::test]
async fn an_error_after_the_response_headers_keeps_their_metadata() {
    let (_server, gw) = framing_gateway(vec![], "5").await;
    for path in ["/v1/shelves/1/books/1", "/v1/shelves/1:watch"] {
        let r = get(&gw.url(path)).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(
            r.header("grpc-metadata-x-backend"),
            Some("framing"),
            "{path}"
        );
    }
}

/// An HTTP/2 server that resets every stream it is sent with `reason` (RST_STREAM).
async fn resetting_server(reason: h2::Reason) -> String {
    crate::support::tcp_server(move |socket| async move {
        let Ok(mut conn) = h2::server::handshake(socket).await else {
            return;
        };
        while let Some(Ok((_request, mut respond))) = conn.accept().await {
            respond.send_reset(reason);
        }
    })
    .await
}

#[tokio::test]
async fn a_stream_reset_by_the_backend_answers_the_status_its_code_stands_for() {
    // (RST_STREAM code, HTTP status, gRPC code), by gRPC's PROTOCOL-HTTP2.md.
    let cases = [
        (h2::Reason::REFUSED_STREAM, 503, 14),
        (h2::Reason::CANCEL, 499, 1),
        (h2::Reason::ENHANCE_YOUR_CALM, 429, 8),
        (h2::Reason::INTERNAL_ERROR, 500, 13),
    ];
    for (reason, status, code) in cases {
        let gw = library_gateway(&resetting_server(reason).await).await;
        let r = get(&gw.url("/v1/shelves/1/books/1")).await;
        assert_eq!(r.status, status, "{reason:?}: {}", r.text());
        assert_eq!(r.json()["code"], code, "{reason:?}");
        assert!(r.error_message().contains("reset"), "{}", r.text());
    }
}

/// A gRPC upstream whose every answer is Trailers-Only: one HEADERS frame with the status and
/// END_STREAM, as grpc-go, C++, Java and Python servers end a stream without messages.
async fn trailers_only_server(status: &'static str) -> FakeHttp {
    FakeHttp::spawn(axum::Router::new().fallback(move || async move {
        http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", status)
            .header("x-shelf-state", "quiet")
            .body(axum::body::Body::empty())
            .expect("response")
    }))
    .await
}

#[tokio::test]
async fn a_trailers_only_ok_is_an_empty_stream_and_a_trailers_only_error_its_status() {
    let server = trailers_only_server("0").await;
    let gw = library_gateway(&server.url("")).await;
    let r = get(&gw.url("/v1/shelves/1:watch")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert!(r.body.is_empty(), "{}", r.text());
    // A unary call still needs its one message.
    let r = get(&gw.url("/v1/shelves/1/books/1")).await;
    assert_eq!(r.status, 502, "{}", r.text());

    let server = trailers_only_server("7").await;
    let gw = library_gateway(&server.url("")).await;
    let r = get(&gw.url("/v1/shelves/1:watch")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], 7);
}

#[tokio::test]
async fn calls_go_round_robin_over_a_backends_urls_skipping_one_that_is_down() {
    let first = omnigate::demo::start().await.expect("backends");
    let second = omnigate::demo::start().await.expect("backends");
    let closed = closed_port_url().await;
    let mut backend = grpc_backend("library", &closed, &["descriptors/library.binpb"]);
    backend.url = None;
    backend.urls = vec![closed, first.library_url(), second.library_url()];
    let mut config = http_only(Vec::new());
    config.grpc = vec![backend];
    let gw = gateway(config).await;
    for _ in 0..6 {
        let r = get(&gw.url("/v1/shelves/1/books/1")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let calls = [&first, &second].map(|b| b.library_backend.calls("GetBook"));
    assert_eq!(calls.iter().sum::<usize>(), 6, "{calls:?}");
    assert!(
        calls.iter().all(|&n| n > 0),
        "both live backends take calls: {calls:?}"
    );
}

#[tokio::test]
async fn reflection_skips_a_url_that_is_down_and_learns_the_api_from_the_next() {
    let live = omnigate::demo::start().await.expect("backends");
    for _ in 0..3 {
        let closed = closed_port_url().await;
        let mut backend = grpc_backend("library", &closed, &[]);
        backend.url = None;
        backend.urls = vec![closed, live.library_url()];
        let mut config = http_only(Vec::new());
        config.grpc = vec![backend];
        let gw = gateway(config).await;
        let r = get(&gw.url("/v1/shelves/1/books/1")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// A gRPC backend on `h2` that answers every call with `book`, and after its first answer on a
/// connection sends GOAWAY (as a server shutting down gracefully does) and then takes no
/// more calls on it, without closing it. Returns its URL and how many connections it took.
async fn goaway_after_one_call(book: Vec<u8>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let book = book.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                let mut answered = false;
                // Serves what arrives until a short while after GOAWAY went out, then holds
                // the connection open without reading from it.
                loop {
                    let next = if answered {
                        match tokio::time::timeout(Duration::from_millis(200), conn.accept()).await
                        {
                            Ok(next) => next,
                            Err(_) => break,
                        }
                    } else {
                        conn.accept().await
                    };
                    let Some(Ok((_request, mut respond))) = next else {
                        break;
                    };
                    let response = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .expect("response");
                    let Ok(mut stream) = respond.send_response(response, false) else {
                        break;
                    };
                    let _ = stream.send_data(Bytes::from(framed(0, &book)), false);
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let _ = stream.send_trailers(trailers);
                    if !answered {
                        conn.graceful_shutdown();
                        answered = true;
                    }
                }
                std::future::pending::<()>().await;
                drop(conn);
            });
        }
    });
    (url, connections)
}

#[tokio::test]
async fn calls_after_a_backends_goaway_go_to_a_new_connection() {
    let book = encoded_book("shelves/1/books/1", "After GOAWAY");
    let (url, connections) = goaway_after_one_call(book).await;
    let gw = library_gateway(&url).await;
    for i in 0..4 {
        let r = get(&gw.url("/v1/shelves/1/books/1")).await;
        assert_eq!(r.status, 200, "call {i}: {}", r.text());
        assert_eq!(r.json()["title"], "After GOAWAY", "call {i}");
    }
    // Every connection takes one call (two if a call raced its GOAWAY).
    let opened = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened >= 2, "{opened} connection(s) for 4 calls");
}

#[tokio::test]
async fn an_unreachable_grpc_upstream_answers_502() {
    let closed = closed_port_url().await;
    let gw = library_gateway(&closed).await;
    for _ in 0..2 {
        let r = get(&gw.url("/v1/shelves")).await;
        assert_error(&r, 502, 14, "UPSTREAM_UNAVAILABLE");
        assert!(!r.text().contains(&closed), "{}", r.text());
    }
}

/// A gateway with `max_body_bytes: 1000`, an HTTP route to a counting fake at `/up`, and the
/// demo library (descriptor files) for gRPC JSON routes.
struct Limited {
    gw: crate::support::TestGateway,
    upstream: FakeHttp,
    backends: omnigate::demo::Backends,
}

const LIMIT: usize = 1000;

async fn limited() -> Limited {
    let backends = omnigate::demo::start().await.expect("backends");
    let upstream = FakeHttp::whoami("counted").await;
    let config = Config {
        limits: LimitsConfig {
            max_body_bytes: LIMIT as u64,
            ..LimitsConfig::default()
        },
        grpc: vec![grpc_backend(
            "library",
            &backends.library_url(),
            &["descriptors/library.binpb"],
        )],
        ..http_only(vec![http_route("/up", &upstream.url(""))])
    };
    Limited {
        gw: gateway(config).await,
        upstream,
        backends,
    }
}

fn split(data: &[u8], size: usize) -> Vec<Bytes> {
    data.chunks(size).map(Bytes::copy_from_slice).collect()
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_anything_is_forwarded() {
    let l = limited().await;
    let r = send("POST", &l.gw.url("/up/items"), &[], vec![b'x'; LIMIT + 1]).await;
    assert_error(&r, 413, 8, "PAYLOAD_TOO_LARGE");
    let r = send(
        "POST",
        &l.gw.url("/v1/shelves/1/books"),
        &[("content-type", "application/json")],
        vec![b' '; LIMIT + 1],
    )
    .await;
    assert_error(&r, 413, 8, "PAYLOAD_TOO_LARGE");
    assert_eq!(l.upstream.requests(), 0, "the upstream saw the request");
    assert_eq!(l.upstream.connections(), 0, "the upstream was connected to");
    assert_eq!(l.backends.library_backend.calls("CreateBook"), 0);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_on_an_http_route() {
    let l = limited().await;
    let r = send_chunked(
        "POST",
        &l.gw.url("/up/items"),
        &[],
        split(&[b'x'; 3 * LIMIT], 500),
    )
    .await;
    // The body streams upstream until it passes the limit; the fake reads whole bodies before
    // answering, so the cut comes first and the client learns why.
    assert_error(&r, 413, 8, "PAYLOAD_TOO_LARGE");
    still_serving(&l.gw.url("/up/after")).await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_on_a_grpc_json_route() {
    let l = limited().await;
    let mut body = json!({"title": "Too long", "authorId": "1"}).to_string();
    body.push_str(&" ".repeat(2 * LIMIT));
    let r = send_chunked(
        "POST",
        &l.gw.url("/v1/shelves/1/books"),
        &[("content-type", "application/json")],
        split(body.as_bytes(), 400),
    )
    .await;
    assert_error(&r, 413, 8, "PAYLOAD_TOO_LARGE");
    assert_eq!(l.backends.library_backend.calls("CreateBook"), 0);
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_passes() {
    let l = limited().await;
    let data = vec![b'x'; LIMIT];
    let r = send("POST", &l.gw.url("/up/items"), &[], data.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], LIMIT);
    let r = send_chunked("POST", &l.gw.url("/up/items"), &[], split(&data, 300)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], LIMIT);

    let mut body = json!({"title": "Exactly", "authorId": "1"}).to_string();
    body.push_str(&" ".repeat(LIMIT - body.len()));
    assert_eq!(body.len(), LIMIT);
    let r = send_chunked(
        "POST",
        &l.gw.url("/v1/shelves/1/books"),
        &[("content-type", "application/json")],
        split(body.as_bytes(), 300),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["title"], "Exactly");
}

#[tokio::test]
async fn an_unknown_path_is_a_404_status_with_the_no_route_reason() {
    let d = demo().await;
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/v2/shelves"),
        ("GET", "/v1"),
        ("DELETE", "/"),
    ] {
        let r = send(method, &d.url(path), &[], Bytes::new()).await;
        assert_error(&r, 404, 5, "NO_ROUTE");
        assert!(r.error_message().contains(path), "{}", r.text());
    }
}

#[tokio::test]
async fn a_known_path_with_another_method_is_a_405_listing_the_allowed_methods() {
    let d = demo().await;
    let cases = [
        ("PUT", "/v1/shelves", &["GET", "HEAD", "POST"][..]),
        ("PATCH", "/v1/shelves/1", &["DELETE", "GET", "HEAD"][..]),
        (
            "POST",
            "/v1/shelves/1/books/1",
            &["DELETE", "GET", "HEAD", "PATCH"][..],
        ),
    ];
    for (method, path, allowed) in cases {
        let r = send(method, &d.url(path), &[], Bytes::new()).await;
        assert_error(&r, 405, 12, "METHOD_NOT_ALLOWED");
        let allow = r.header("allow").expect("an Allow header");
        let mut listed: Vec<&str> = allow.split(',').map(str::trim).collect();
        listed.sort_unstable();
        assert_eq!(listed, allowed, "{method} {path}");
    }
}

#[tokio::test]
async fn an_http_route_covering_the_path_takes_precedence_over_a_405() {
    let backends = omnigate::demo::start().await.expect("backends");
    let fallback = FakeHttp::whoami("legacy").await;
    let mut config = http_only(vec![http_route("/v1", &fallback.url(""))]);
    config.grpc = vec![grpc_backend(
        "library",
        &backends.library_url(),
        &["descriptors/library.binpb"],
    )];
    let gw = gateway(config).await;

    let r = send("PUT", &gw.url("/v1/shelves"), &[], "{}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["upstream"], "legacy");
    assert_eq!(r.json()["method"], "PUT");
    // A binding that matches still goes to gRPC.
    let r = get(&gw.url("/v1/shelves/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "shelves/1");
}

/// A fake upstream whose every request reports its arrival, then waits for `release`.
async fn held_upstream() -> (
    FakeHttp,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    Arc<tokio::sync::Notify>,
) {
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let upstream = FakeHttp::spawn(axum::Router::new().fallback(move || {
        let arrived_tx = arrived_tx.clone();
        let held = held.clone();
        async move {
            let _ = arrived_tx.send(());
            held.notified().await;
            "finished"
        }
    }))
    .await;
    (upstream, arrived, release)
}

/// Wait until connecting to `addr` is refused (the listener is closed).
async fn refused(addr: std::net::SocketAddr) -> bool {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn shutdown_stops_accepting_lets_in_flight_requests_finish_and_returns() {
    let (upstream, mut arrived, release) = held_upstream().await;
    let mut running = run_gateway(
        http_only(vec![http_route("/slow", &upstream.url(""))]),
        "10s",
    )
    .await;
    let url = format!("http://{}/slow/request", running.addr);
    let in_flight = tokio::spawn(async move { get(&url).await });
    arrived
        .recv()
        .await
        .expect("the request reached the upstream");

    let _ = running.shutdown.take().expect("sender").send(());
    assert!(
        refused(running.addr).await,
        "still accepting connections after shutdown"
    );
    assert!(
        !running.run.is_finished(),
        "run returned with a request in flight"
    );
    release.notify_one();

    let r = in_flight.await.expect("client task");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "finished");
    tokio::time::timeout(Duration::from_secs(10), running.run)
        .await
        .expect("run returned once drained")
        .expect("run task")
        .expect("run result");
}

#[tokio::test]
async fn after_the_grace_period_run_returns_and_closes_the_stuck_connections() {
    let (upstream, mut arrived, _release) = held_upstream().await;
    let mut running = run_gateway(
        http_only(vec![http_route("/stuck", &upstream.url(""))]),
        "200ms",
    )
    .await;
    let url = format!("http://{}/stuck/forever", running.addr);
    let in_flight = tokio::spawn(async move {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        client.get(url.parse().expect("uri")).await
    });
    arrived
        .recv()
        .await
        .expect("the request reached the upstream");
    let _ = running.shutdown.take().expect("sender").send(());
    tokio::time::timeout(Duration::from_secs(10), running.run)
        .await
        .expect("run returned after the grace period")
        .expect("run task")
        .expect("run result");
    // The stuck request is cut, not left hanging on a gateway that has stopped.
    let outcome = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the stuck connection was closed when run returned")
        .expect("task");
    assert!(outcome.is_err(), "{outcome:?}");
}

#[tokio::test]
async fn x_request_id_is_echoed_when_sent() {
    let d = demo().await;
    let id = "req-1234-abcd";
    for (method, path) in [
        ("GET", "/http/echo/headers"),
        ("GET", "/v1/shelves/1"),
        ("GET", "/nope"),
        ("PUT", "/v1/shelves"),
        ("GET", "/v1/shelves/100"),
    ] {
        let r = send(method, &d.url(path), &[("x-request-id", id)], Bytes::new()).await;
        assert_eq!(r.header("x-request-id"), Some(id), "{method} {path}");
    }
    let r = send(
        "GET",
        &d.url("/http/echo/headers"),
        &[("x-request-id", id)],
        Bytes::new(),
    )
    .await;
    assert_eq!(
        r.json()["headers"]["x-request-id"],
        id,
        "the upstream got it"
    );
}

#[tokio::test]
async fn x_request_id_is_generated_when_absent_even_on_errors() {
    let d = demo().await;
    let unreachable = gateway(http_only(vec![http_route(
        "/gone",
        &closed_port_url().await,
    )]))
    .await;
    let mut seen = std::collections::HashSet::new();
    for url in [
        d.url("/reviews/1"),
        d.url("/v1/shelves/1"),
        d.url("/nope"),
        d.url("/v1/shelves/100"),
        unreachable.url("/gone/x"),
    ] {
        let r = get(&url).await;
        let id = r.header("x-request-id").expect("an id").to_string();
        uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{url}: {id:?} is not a UUID: {e}"));
        assert!(seen.insert(id), "ids repeat");
    }
    // An id that is not acceptable (too long) is replaced by a fresh one.
    let long = "x".repeat(500);
    let r = send(
        "GET",
        &d.url("/nope"),
        &[("x-request-id", &long)],
        Bytes::new(),
    )
    .await;
    let id = r.header("x-request-id").expect("an id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn the_http_upstream_sees_the_same_request_id_as_the_client() {
    let d = demo().await;
    let r = get(&d.url("/http/echo/headers")).await;
    let id = r.header("x-request-id").expect("an id");
    assert_eq!(r.json()["headers"]["x-request-id"], id);
}

#[tokio::test]
async fn a_body_passing_the_limit_after_a_streaming_upstream_answered_never_looks_complete() {
    // `/echo/body` answers as soon as the request starts and echoes while it reads, so with a
    // slow client its 200 may already be on the way when the limit is passed: the gateway
    // cannot turn that into a 413 any more, and must cut the response instead of ending it.
    let backends = omnigate::demo::start().await.expect("backends");
    let mut route = http_route("/http", &backends.http_url());
    route.strip_prefix = true;
    let config = Config {
        limits: LimitsConfig {
            max_body_bytes: LIMIT as u64,
            ..LimitsConfig::default()
        },
        ..http_only(vec![route])
    };
    let gw = gateway(config).await;
    let slow = futures_util::StreamExt::then(
        futures_util::stream::iter(split(&[b'x'; 3 * LIMIT], 300)),
        |chunk| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(chunk))
        },
    );
    let response = crate::support::open(
        "POST",
        &gw.url("/http/echo/body"),
        &[],
        omnigate::request::body_from(http_body_util::StreamBody::new(slow)),
    )
    .await;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body()).await;
    match status.as_u16() {
        413 => {}
        200 => assert!(body.is_err(), "a cut body ended like a complete one"),
        other => panic!("unexpected status {other}"),
    }
    still_serving(&gw.url("/http/reviews")).await;
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_disconnected() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let d = crate::support::demo_with(|c| c.limits.header_read_timeout = "300ms".into()).await;
    let address = d
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut slow = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    // Half a request, then nothing: the connection is closed once the timeout passes.
    slow.write_all(b"GET /reviews/1 HTTP/1.1\r\nhost: gw\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "still open 10 s after a 300 ms header timeout"
    );
    assert!(
        !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "the half request was served: {}",
        String::from_utf8_lossy(&buf)
    );
    // A client that sends its request in time is served as usual.
    let r = get(&d.url("/reviews/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_grpc_error_with_large_trailers_keeps_its_status() {
    // The authors backend quotes the id in its NOT_FOUND message and details, so the
    // trailers outgrow 16 KiB; the client must still read them, not call the backend down.
    let demo = demo().await;
    let id = "a".repeat(12_000);
    let r = get(&demo.url(&format!("/v1/authors/{id}"))).await;
    assert_eq!(r.status, 404, "{}", &r.text()[..r.text().len().min(300)]);
    let body = r.json();
    assert_eq!(body["code"], 5);
    assert!(body["message"].as_str().is_some_and(|m| m.contains(&id)));
    let r = get(&demo.url("/v1/authors/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
