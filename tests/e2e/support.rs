//! Shared test fixtures: the example backends, a gateway in front of them on 127.0.0.1:0,
//! and a small real HTTP client (hyper) that returns status, headers and body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use omnigate::config::{self, Config};
use omnigate::demo::{self, Backends};
use omnigate::gateway::Gateway;
use serde_json::Value;
use tokio::sync::oneshot;

/// A gateway serving on a real socket; shuts down when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    _stop: oneshot::Sender<()>,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Start a gateway for `config` (validated like a file would be).
pub async fn gateway(config: Config) -> TestGateway {
    try_gateway(config)
        .await
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
}

pub async fn try_gateway(config: Config) -> Result<TestGateway, String> {
    let loaded = config::load_config(&config, "<test>").map_err(|e| e.to_string())?;
    let gateway = Gateway::start(loaded.validated.clone())
        .await
        .map_err(|e| loaded.locate(&e).to_string())?;
    Ok(serve(gateway).await)
}

pub async fn serve(gateway: Arc<Gateway>) -> TestGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(omnigate::server::run(
        listener,
        gateway.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    TestGateway {
        addr,
        gateway,
        _stop: stop,
    }
}

/// The example backends plus a gateway configured like `omnigate demo`.
pub struct Demo {
    pub backends: Backends,
    pub gw: TestGateway,
}

pub async fn demo() -> Demo {
    let backends = demo::start().await.expect("backends");
    let config = demo::gateway_config(&backends, "127.0.0.1:0".parse().expect("addr"));
    let gw = gateway(config).await;
    Demo { backends, gw }
}

impl Demo {
    pub fn url(&self, path: &str) -> String {
        self.gw.url(path)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `message` of a google.rpc.Status error body.
    pub fn error_message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Send one request with a real HTTP/1.1 client over a real socket.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(Full::new(body.into())).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("response within 20s")
        .expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Reply {
    send("GET", url, &[], Bytes::new()).await
}

pub async fn post_json(url: &str, body: Value) -> Reply {
    send(
        "POST",
        url,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// Send a body as a chunked stream (no `Content-Length`), one frame per chunk.
pub async fn send_chunked(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Bytes>,
) -> Reply {
    let response = open(method, url, headers, chunked(chunks)).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// A streaming request body of `chunks`, sent with `Transfer-Encoding: chunked`.
pub fn chunked(chunks: Vec<Bytes>) -> omnigate::request::Body {
    let frames = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(c))),
    );
    omnigate::request::body_from(http_body_util::StreamBody::new(frames))
}

/// Send a request and return the response with its body still streaming.
pub async fn open(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: omnigate::request::Body,
) -> http::Response<hyper::body::Incoming> {
    let client: Client<_, omnigate::request::Body> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(body).expect("request");
    tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("response within 20s")
        .expect("response")
}

/// A fake HTTP upstream (HTTP/1.1 and h2c) on 127.0.0.1:0 that counts the TCP connections it
/// accepted and the requests it received.
pub struct FakeHttp {
    pub addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl FakeHttp {
    pub async fn spawn(router: axum::Router) -> FakeHttp {
        use axum::serve::ListenerExt as _;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let listener = listener.tap_io(move |_| {
            accepted.fetch_add(1, Ordering::SeqCst);
        });
        let received = requests.clone();
        let router = router.layer(tower::util::MapRequestLayer::new(
            move |request: axum::extract::Request| {
                received.fetch_add(1, Ordering::SeqCst);
                request
            },
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeHttp {
            addr,
            connections,
            requests,
            _stop: stop,
        }
    }

    /// A fake answering every request with [`whoami`]'s JSON.
    pub async fn whoami(name: &str) -> FakeHttp {
        FakeHttp::spawn(whoami(name)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A router answering every request with `{upstream, method, path, query, host, body_len,
/// headers}` as JSON, so a test can tell which upstream got what.
pub fn whoami(name: &str) -> axum::Router {
    let name = name.to_string();
    axum::Router::new().fallback(
        move |method: http::Method, uri: http::Uri, headers: http::HeaderMap, body: Bytes| {
            let name = name.clone();
            async move {
                let mut all = serde_json::Map::new();
                for key in headers.keys() {
                    let values: Vec<&str> = headers
                        .get_all(key)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    all.insert(key.to_string(), Value::from(values.join(", ")));
                }
                axum::Json(serde_json::json!({
                    "upstream": name,
                    "method": method.as_str(),
                    "path": uri.path(),
                    "query": uri.query(),
                    "host": headers.get("host").and_then(|v| v.to_str().ok()),
                    "body_len": body.len(),
                    "headers": all,
                }))
            }
        },
    )
}

/// `http://127.0.0.1:P` where nothing listens (a port that was just bound and released).
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// An HTTP route to `url` at `prefix` (no host, no strip, no timeout).
pub fn http_route(prefix: &str, url: &str) -> config::HttpRouteConfig {
    config::HttpRouteConfig {
        name: Some(prefix.trim_matches('/').replace('/', "-")),
        prefix: prefix.to_string(),
        host: None,
        url: url.to_string(),
        strip_prefix: false,
        preserve_host: false,
        timeout: None,
    }
}

/// A config with only these HTTP routes.
pub fn http_only(routes: Vec<config::HttpRouteConfig>) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        http: routes,
        shutdown_grace: "5s".into(),
        ..Config::default()
    }
}


/// The example backends plus a gateway configured like `omnigate demo`, after `edit` changed
/// the config (flip transcoding options, add routes...).
pub async fn demo_with(edit: impl FnOnce(&mut Config)) -> Demo {
    let backends = demo::start().await.expect("backends");
    let mut config = demo::gateway_config(&backends, "127.0.0.1:0".parse().expect("addr"));
    edit(&mut config);
    let gw = gateway(config).await;
    Demo { backends, gw }
}

/// A response whose body is read piece by piece (server streams). Dropping it drops the
/// connection.
pub struct Streamed {
    pub status: u16,
    pub headers: http::HeaderMap,
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

/// Send one request and return as soon as the response headers arrived.
pub async fn open_stream(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Streamed {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(Full::new(body.into())).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("response headers within 20s")
        .expect("response");
    let (parts, body) = response.into_parts();
    Streamed {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        buffer: Vec::new(),
    }
}

impl Streamed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Read one more data frame into the buffer; false at the end of the body.
    async fn fill(&mut self) -> bool {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), self.body.frame())
                .await
                .expect("a body frame within 20s");
            match frame {
                None => return false,
                Some(frame) => {
                    if let Ok(data) = frame.expect("body frame").into_data() {
                        self.buffer.extend_from_slice(&data);
                        return true;
                    }
                }
            }
        }
    }

    /// The next `\n`-terminated line (without the `\n`), or what is left at the end of the
    /// body, or `None` once everything was read.
    pub async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=pos).collect();
                return Some(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if !self.fill().await {
                if self.buffer.is_empty() {
                    return None;
                }
                let rest = std::mem::take(&mut self.buffer);
                return Some(String::from_utf8_lossy(&rest).into_owned());
            }
        }
    }

    /// Everything not read yet, until the end of the body.
    pub async fn rest(&mut self) -> String {
        while self.fill().await {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned()
    }
}

/// Poll `condition` every 20 ms, at most 10 s; true once it held. Not a timing assertion: the
/// bound only keeps a broken build from hanging.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}
