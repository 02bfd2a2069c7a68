//! The reverse proxy (nginx `proxy_pass` semantics) over real sockets: prefix and host
//! routing, path rewriting, forwarded and hop-by-hop headers, streaming both ways and pooled
//! keep-alive connections to upstreams.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use omnigate::config::HttpRouteConfig;
use serde_json::Value;

use crate::support::{
    chunked, demo, gateway, get, http_only, http_route, open, send, send_chunked, FakeHttp,
};

/// A route with the given host.
fn on_host(host: &str, mut route: HttpRouteConfig) -> HttpRouteConfig {
    route.host = Some(host.to_string());
    route
}

fn stripped(mut route: HttpRouteConfig) -> HttpRouteConfig {
    route.strip_prefix = true;
    route
}

#[tokio::test]
async fn prefix_routes_pick_the_longest_prefix_on_segment_boundaries_and_rewrite_the_path() {
    let root = FakeHttp::whoami("root").await;
    let reviews = FakeHttp::whoami("reviews").await;
    let special = FakeHttp::whoami("special").await;
    let strip = FakeHttp::whoami("strip").await;
    let based = FakeHttp::whoami("based").await;
    let gw = gateway(http_only(vec![
        http_route("/", &root.url("")),
        http_route("/reviews", &reviews.url("")),
        http_route("/reviews/special", &special.url("")),
        stripped(http_route("/strip", &strip.url(""))),
        stripped(http_route("/based", &based.url("/base"))),
        http_route("/kept", &based.url("/base/")),
    ]))
    .await;

    // (request path and query, upstream expected, path and query that upstream must see)
    let cases = [
        ("/reviews", "reviews", "/reviews"),
        ("/reviews/", "reviews", "/reviews/"),
        ("/reviews/1", "reviews", "/reviews/1"),
        ("/reviewsX", "root", "/reviewsX"),
        ("/reviews/specialist", "reviews", "/reviews/specialist"),
        ("/reviews/special", "special", "/reviews/special"),
        ("/reviews/special/9", "special", "/reviews/special/9"),
        ("/", "root", "/"),
        ("/elsewhere/deep?x=1", "root", "/elsewhere/deep?x=1"),
        ("/strip/echo/headers", "strip", "/echo/headers"),
        ("/strip", "strip", "/"),
        ("/strip/", "strip", "/"),
        ("/strip?a=1&a=2", "strip", "/?a=1&a=2"),
        ("/strip/q?a=1&a=2&b=%20c", "strip", "/q?a=1&a=2&b=%20c"),
        ("/stripped", "root", "/stripped"),
        ("/based/x/y", "based", "/base/x/y"),
        ("/based/", "based", "/base/"),
        ("/based", "based", "/base"),
        ("/based?q=1", "based", "/base?q=1"),
        ("/kept/1", "based", "/base/kept/1"),
        ("/reviews/a%2Fb?x=%41", "reviews", "/reviews/a%2Fb?x=%41"),
        // Dot-segments are removed before matching: a request cannot climb out of a prefix.
        ("/strip/a/./../echo?x=1", "strip", "/echo?x=1"),
        ("/reviews/../elsewhere", "root", "/elsewhere"),
        ("/based/%2e%2e/secret", "root", "/secret"),
        ("/based/x/..", "based", "/base/"),
    ];
    for (path, upstream, seen) in cases {
        let r = get(&gw.url(path)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let echo = r.json();
        assert_eq!(echo["upstream"], upstream, "{path}");
        let seen_path = match echo["query"].as_str() {
            Some(q) => format!("{}?{q}", echo["path"].as_str().unwrap_or_default()),
            None => echo["path"].as_str().unwrap_or_default().to_string(),
        };
        assert_eq!(seen_path, seen, "{path}");
    }
    let asked = || root.requests() + based.requests() + strip.requests();
    let before = asked();
    for path in ["/..", "/based/../../etc", "/strip/%2E%2e/%2e%2e/x"] {
        let r = get(&gw.url(path)).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains("climbs above the root"), "{}", r.text());
    }
    assert_eq!(asked(), before, "a refused path was forwarded");
}

#[tokio::test]
async fn a_path_outside_every_prefix_is_a_404_even_when_it_starts_like_one() {
    let d = demo().await;
    for path in ["/reviewsX", "/httpd/echo/headers", "/revi"] {
        let r = get(&d.url(path)).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.json()["details"][0]["reason"], "NO_ROUTE", "{path}");
    }
    for path in ["/reviews", "/reviews/1", "/reviews/"] {
        let r = get(&d.url(path)).await;
        assert_ne!(r.json()["details"][0]["reason"], "NO_ROUTE", "{path}");
    }
    assert_eq!(get(&d.url("/reviews/1")).await.json()["id"], "1");
}

#[tokio::test]
async fn host_routes_match_their_host_with_or_without_port_and_beat_host_less_routes() {
    let any = FakeHttp::whoami("any").await;
    let reviews = FakeHttp::whoami("reviews").await;
    let exact = FakeHttp::whoami("exact").await;
    let wild = FakeHttp::whoami("wild").await;
    let wild_api = FakeHttp::whoami("wild-api").await;
    let gw = gateway(http_only(vec![
        // The wildcard comes first in the file: an exact host must still win over it.
        on_host("*.example.com", http_route("/", &wild.url(""))),
        on_host("*.example.com", http_route("/api", &wild_api.url(""))),
        on_host("a.example.com", http_route("/", &exact.url(""))),
        http_route("/", &any.url("")),
        http_route("/reviews", &reviews.url("")),
    ]))
    .await;

    // (Host header, path, upstream expected)
    let cases = [
        ("a.example.com", "/x", "exact"),
        ("a.example.com:8080", "/x", "exact"),
        ("A.Example.COM", "/x", "exact"),
        // host-specific beats host-less even with a shorter prefix
        ("a.example.com", "/reviews/1", "exact"),
        // an exact host beats a wildcard, whatever their prefixes
        ("a.example.com", "/api/v1", "exact"),
        ("b.example.com", "/x", "wild"),
        ("b.example.com:9000", "/reviews", "wild"),
        ("b.example.com", "/api/v1", "wild-api"),
        ("b.example.com", "/apiary", "wild"),
        // the wildcard covers one label, not the bare domain or two labels
        ("example.com", "/x", "any"),
        ("x.y.example.com", "/x", "any"),
        ("a.example.com.evil.test", "/x", "any"),
        ("other.test", "/reviews/1", "reviews"),
        ("other.test", "/x", "any"),
    ];
    for (host, path, upstream) in cases {
        let r = send("GET", &gw.url(path), &[("host", host)], Bytes::new()).await;
        assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
        assert_eq!(r.json()["upstream"], upstream, "{host}{path}");
    }
}

#[tokio::test]
async fn a_host_only_route_is_not_reachable_from_another_host() {
    let exact = FakeHttp::whoami("exact").await;
    let gw = gateway(http_only(vec![on_host(
        "a.example.com",
        http_route("/", &exact.url("")),
    )]))
    .await;
    let r = send(
        "GET",
        &gw.url("/x"),
        &[("host", "b.example.com")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["details"][0]["reason"], "NO_ROUTE");
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.status, 404, "the gateway's own address is another host");
    assert_eq!(exact.requests(), 0);
}

/// The demo HTTP backend's `/echo/headers` as seen through `/http`.
async fn echoed(d: &crate::support::Demo, headers: &[(&str, &str)]) -> Value {
    let r = send("GET", &d.url("/http/echo/headers"), headers, Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn forwarded_headers_tell_the_upstream_who_asked_and_how() {
    let d = demo().await;
    let gateway_authority = d.gw.addr.to_string();
    let upstream_authority = d.backends.http.to_string();

    let echo = echoed(&d, &[]).await;
    let h = &echo["headers"];
    assert_eq!(echo["path"], "/echo/headers");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gateway_authority.as_str());
    assert_eq!(
        h["host"],
        upstream_authority.as_str(),
        "Host is the upstream's"
    );
    assert_eq!(echo["authority"], upstream_authority.as_str());

    // An incoming X-Forwarded-For is appended to; spoofed single-value headers are replaced.
    let echo = echoed(
        &d,
        &[
            ("x-forwarded-for", "203.0.113.7, 198.51.100.2"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed.test"),
            ("host", "shop.example.com"),
        ],
    )
    .await;
    let h = &echo["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 198.51.100.2, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.com");
    assert_eq!(h["host"], upstream_authority.as_str());
}

#[tokio::test]
async fn every_incoming_x_forwarded_for_line_is_kept_in_order() {
    let d = demo().await;
    let echo = echoed(
        &d,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.2"),
        ],
    )
    .await;
    assert_eq!(
        echo["headers"]["x-forwarded-for"],
        "203.0.113.7, 198.51.100.2, 127.0.0.1"
    );
}

#[tokio::test]
async fn preserve_host_sends_the_clients_host_to_the_upstream() {
    let backends = omnigate::demo::start().await.expect("backends");
    let mut route = stripped(http_route("/keep", &backends.http_url()));
    route.preserve_host = true;
    let gw = gateway(http_only(vec![route])).await;
    let r = send(
        "GET",
        &gw.url("/keep/echo/headers"),
        &[("host", "shop.example.com:8443")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["headers"]["host"], "shop.example.com:8443");
    assert_eq!(echo["headers"]["x-forwarded-host"], "shop.example.com:8443");
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let d = demo().await;
    let echo = echoed(
        &d,
        &[
            ("connection", "close, X-Secret"),
            ("x-secret", "do not forward"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
            ("authorization", "Bearer end-to-end"),
        ],
    )
    .await;
    let h = echo["headers"].as_object().expect("headers");
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "upgrade",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!h.contains_key(gone), "{gone} was forwarded: {h:?}");
    }
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["authorization"], "Bearer end-to-end");
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_not_passed_back() {
    let upstream = FakeHttp::spawn(axum::Router::new().fallback(|| async {
        (
            [
                ("connection", "X-Hop-Secret"),
                ("x-hop-secret", "upstream only"),
                ("keep-alive", "timeout=5, max=100"),
                ("upgrade", "h2c"),
                ("proxy-authenticate", "Basic realm=\"upstream\""),
                ("x-end-to-end", "kept"),
            ],
            axum::response::AppendHeaders([("set-cookie", "a=1"), ("set-cookie", "b=2")]),
            "hello",
        )
    }))
    .await;
    let gw = gateway(http_only(vec![http_route("/", &upstream.url(""))])).await;
    let r = get(&gw.url("/anything")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    for gone in [
        "x-hop-secret",
        "keep-alive",
        "upgrade",
        "proxy-authenticate",
    ] {
        assert!(
            r.header(gone).is_none(),
            "{gone} passed back: {:?}",
            r.headers
        );
    }
    assert!(
        !r.header("connection")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("x-hop-secret"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
    let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
    assert_eq!(
        cookies,
        ["a=1", "b=2"],
        "repeated end-to-end headers are all kept"
    );
}

#[tokio::test]
async fn head_requests_empty_statuses_and_expect_continue_pass_through() {
    let d = demo().await;
    let r = send("HEAD", &d.url("/reviews"), &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), Some("application/json"));

    let r = get(&d.url("/http/status/204")).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());

    // curl sends `Expect: 100-continue` for bodies over 1 KiB.
    let data = pattern(4096);
    let r = send(
        "POST",
        &d.url("/http/echo/body"),
        &[("expect", "100-continue")],
        data.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == data);
}

/// `len` bytes of a repeating, position-dependent pattern (a reordering or loss shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_large_chunked_request_body_streams_through_and_back_intact() {
    let d = demo().await;
    let data = pattern(600 * 1024);
    let chunks: Vec<Bytes> = data.chunks(16 * 1024).map(Bytes::copy_from_slice).collect();
    let r = send_chunked(
        "POST",
        &d.url("/http/echo/body"),
        &[("content-type", "application/x-test")],
        chunks,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "the body came back altered");

    // The same with a Content-Length.
    let r = send("POST", &d.url("/http/echo/body"), &[], data.clone()).await;
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the body came back altered");
}

#[tokio::test]
async fn a_streamed_response_arrives_chunked_line_by_line() {
    let d = demo().await;
    let response = open("GET", &d.url("/http/stream/20"), &[], chunked(Vec::new())).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(
        response
            .headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "{text}");
    for line in lines {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[tokio::test]
async fn the_first_chunk_reaches_the_client_before_the_upstream_finished() {
    let release = Arc::new(tokio::sync::Notify::new());
    let upstream = {
        let release = release.clone();
        FakeHttp::spawn(axum::Router::new().fallback(move || {
            let release = release.clone();
            async move {
                let frames = futures_util::stream::unfold(0, move |step| {
                    let release = release.clone();
                    async move {
                        match step {
                            0 => Some((Ok::<_, std::io::Error>(Bytes::from("first\n")), 1)),
                            1 => {
                                // Only sent once the client proved it got the first line.
                                release.notified().await;
                                Some((Ok(Bytes::from("last\n")), 2))
                            }
                            _ => None,
                        }
                    }
                });
                axum::body::Body::from_stream(frames)
            }
        }))
        .await
    };
    let gw = gateway(http_only(vec![http_route("/", &upstream.url(""))])).await;

    let response = tokio::time::timeout(
        Duration::from_secs(10),
        open("GET", &gw.url("/stream"), &[], chunked(Vec::new())),
    )
    .await
    .expect("the response was held back until the upstream finished");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first chunk was held back until the upstream finished")
        .expect("a frame")
        .expect("frame ok")
        .into_data()
        .expect("data");
    assert_eq!(first, "first\n");
    release.notify_one();
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(rest, "last\n");
}

#[tokio::test]
async fn sequential_requests_reuse_pooled_upstream_connections() {
    let upstream = FakeHttp::whoami("pooled").await;
    let gw = gateway(http_only(vec![http_route("/", &upstream.url(""))])).await;
    const REQUESTS: usize = 40;
    for i in 0..REQUESTS {
        let r = if i % 2 == 0 {
            get(&gw.url(&format!("/item/{i}"))).await
        } else {
            send("POST", &gw.url("/item"), &[], vec![b'x'; 2048]).await
        };
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(upstream.requests(), REQUESTS);
    let connections = upstream.connections();
    assert!(
        connections <= REQUESTS / 8,
        "{connections} upstream connections for {REQUESTS} sequential requests"
    );
}

#[tokio::test]
async fn an_http2_client_is_proxied_to_an_http1_upstream_with_its_authority_forwarded() {
    let d = demo().await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let response = client
        .get(d.url("/http/echo/headers?a=1&a=2").parse().expect("uri"))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let echo: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["path"], "/echo/headers");
    assert_eq!(echo["args"]["a"], serde_json::json!(["1", "2"]));
    assert_eq!(
        echo["headers"]["x-forwarded-host"],
        d.gw.addr.to_string().as_str()
    );
    assert_eq!(
        echo["headers"]["host"],
        d.backends.http.to_string().as_str()
    );
}

/// One request written as raw bytes on a new connection; everything the gateway answers
/// until it closes (the request should say `Connection: close`).
async fn raw_exchange(gateway_url: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = gateway_url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// An upstream that answers every request with `response`, byte for byte, then closes.
async fn raw_upstream(response: &'static str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    crate::support::tcp_server(move |mut socket| async move {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let _ = socket.write_all(response.as_bytes()).await;
    })
    .await
}

#[tokio::test]
async fn an_http11_request_without_exactly_one_host_is_a_400_and_not_forwarded() {
    let d = demo().await;
    let missing = raw_exchange(
        &d.url(""),
        "GET /reviews/1 HTTP/1.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
    assert!(missing.contains("Host header"), "{missing}");
    let twice = raw_exchange(
        &d.url(""),
        "GET /reviews/1 HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(twice.starts_with("HTTP/1.1 400"), "{twice}");
    assert!(twice.contains("more than one Host"), "{twice}");
    // HTTP/1.0 has no such rule.
    let old = raw_exchange(&d.url(""), "GET /reviews/1 HTTP/1.0\r\n\r\n").await;
    assert!(old.contains(" 200 OK"), "{old}");
}

#[tokio::test]
async fn the_client_gets_http11_and_the_right_length_whatever_the_upstream_framed() {
    let http10 = raw_upstream("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let both = raw_upstream(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let gw = gateway(http_only(vec![
        stripped(http_route("/old", &http10)),
        stripped(http_route("/both", &both)),
    ]))
    .await;
    // The upstream's HTTP/1.0 is not the client's: it keeps HTTP/1.1 (and its keep-alive).
    let answer = raw_exchange(
        &gw.url(""),
        "GET /old/x HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    // Transfer-Encoding wins over a stale Content-Length, which is not passed on.
    let r = get(&gw.url("/both/x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert_eq!(r.header("content-length"), None);
}

/// A request body of `pieces` of 1000 bytes, `gap` apart (the first after `gap` too).
fn slow_body(pieces: usize, gap: Duration) -> omnigate::request::Body {
    use futures_util::StreamExt as _;
    let frames = futures_util::stream::iter(0..pieces).then(move |_| async move {
        tokio::time::sleep(gap).await;
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'x'; 1000])))
    });
    omnigate::request::body_from(http_body_util::StreamBody::new(frames))
}

#[tokio::test]
async fn a_route_timeout_bounds_each_wait_not_the_whole_upload() {
    let up = FakeHttp::whoami("up").await;
    let mut route = http_route("/up", &up.url(""));
    route.timeout = Some("500ms".into());
    let gw = gateway(http_only(vec![route])).await;
    // 1.2 s of upload, never 500 ms without a piece: the upstream answers once it has all.
    let response = open(
        "POST",
        &gw.url("/up/x"),
        &[],
        slow_body(6, Duration::from_millis(200)),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let echo: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(echo["body_len"], 6000, "{echo}");
    // An upload that goes quiet for longer than the timeout is a 504.
    let response = open(
        "POST",
        &gw.url("/up/x"),
        &[],
        slow_body(2, Duration::from_millis(900)),
    )
    .await;
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn connect_is_refused_with_a_405_not_forwarded() {
    let d = demo().await;
    let answer = raw_exchange(
        &d.url(""),
        "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(answer.contains("CONNECT"), "{answer}");
}

/// A WebSocket server that echoes every text message with a prefix, and the request path
/// and `Host` it was opened with as the first message.
async fn websocket_echo() -> String {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::{handshake::server, Message};
    crate::support::tcp_server(|socket| async move {
        let mut opened = String::new();
        #[allow(clippy::result_large_err)] // tungstenite's callback signature
        let callback = |request: &server::Request, response: server::Response| {
            opened = format!(
                "{} {}",
                request.uri().path(),
                request
                    .headers()
                    .get("x-forwarded-host")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
            );
            Ok(response)
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(socket, callback).await else {
            return;
        };
        let _ = ws.send(Message::text(opened)).await;
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(text) = message {
                let _ = ws.send(Message::text(format!("echo: {text}"))).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_websocket_upgrade_through_an_http_route_becomes_a_tunnel() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let upstream = websocket_echo().await;
    let plain = FakeHttp::whoami("plain").await;
    let gw = gateway(http_only(vec![
        http_route("/ws", &upstream),
        http_route("/plain", &plain.url("")),
    ]))
    .await;
    let url = gw.url("/ws/chat").replacen("http://", "ws://", 1);
    let (mut ws, response) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("the upgrade goes through");
    assert_eq!(response.status(), 101);
    let first = ws.next().await.expect("a message").expect("ok");
    assert!(
        first.to_text().unwrap_or_default().starts_with("/ws/chat "),
        "{first}"
    );
    for text in ["one", "two"] {
        ws.send(Message::text(text)).await.expect("send");
        let answer = ws.next().await.expect("an answer").expect("ok");
        assert_eq!(
            answer.to_text().unwrap_or_default(),
            format!("echo: {text}")
        );
    }
    ws.close(None).await.expect("close");
    // An upstream that does not switch answers as usual, and the gateway keeps serving.
    let refused = tokio_tungstenite::connect_async(
        gw.url("/plain/x").replacen("http://", "ws://", 1).as_str(),
    )
    .await;
    assert!(refused.is_err());
    assert_eq!(get(&gw.url("/plain/x")).await.status, 200);
}

#[tokio::test]
async fn an_absolute_form_target_names_the_host_whatever_the_host_header_says() {
    let shop = FakeHttp::whoami("shop").await;
    let other = FakeHttp::whoami("other").await;
    let gw = gateway(http_only(vec![
        on_host("shop.example.com", http_route("/", &shop.url(""))),
        http_route("/", &other.url("")),
    ]))
    .await;
    let answer = raw_exchange(
        &gw.url(""),
        "GET http://shop.example.com/x HTTP/1.1\r\nhost: elsewhere\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""upstream":"shop""#), "{answer}");
    assert!(
        answer.contains(r#""x-forwarded-host":"shop.example.com""#),
        "{answer}"
    );
}
