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

/// A gateway run by the test itself, with its shutdown signal in hand.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub run: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn run_gateway(mut config: Config, grace: &str) -> Running {
    config.shutdown_grace = grace.to_string();
    let loaded = omnigate::config::load_config(&config, "<test>").expect("valid config");
    let gateway = omnigate::gateway::Gateway::start(loaded.validated)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(omnigate::server::run(listener, gateway, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        shutdown: Some(tx),
        run,
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
    let response = open(
        method,
        url,
        headers,
        omnigate::request::full_body(body.into()),
    )
    .await;
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
/// A raw TCP server on 127.0.0.1 that runs `serve` on every connection it accepts, each in a
/// task of its own; returns its `http://` URL. For upstreams that must misbehave in ways no
/// HTTP library would (resets, odd framing, protocol switches).
pub async fn tcp_server<F, Fut>(serve: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    format!("http://{addr}")
}

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
    let response = open(
        method,
        url,
        headers,
        omnigate::request::full_body(body.into()),
    )
    .await;
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

/// Like [`send`], but a connection failure is an `Err` instead of a panic (for polling a
/// server that may not be up yet).
pub async fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .map_err(|_| "no response within 20s".to_string())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// Send one request and read only the status, headers and first body chunk: for endless
/// streams (`curl -N`).
pub async fn send_first_chunk(
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
    let (parts, mut body) = response.into_parts();
    let mut first = Bytes::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(20), body.frame())
        .await
        .expect("a body chunk within 20s")
    {
        if let Ok(data) = frame.expect("body frame").into_data() {
            if !data.is_empty() {
                first = data;
                break;
            }
        }
    }
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: first,
    }
}

/// The crate root: `examples/` and `descriptors/` are found from here.
pub fn manifest_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port that was free a moment ago (bind :0, read, drop). Callers retry if it got taken.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("omnigate-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Write `text` to `name` in this directory; returns its path.
    pub fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `curl` command from documentation (an example's header, the demo banner), as the
/// request real curl would send. Parsed like a POSIX shell word list; an unquoted shell
/// metacharacter (`&`, `;`, `|`...) is refused, since pasted into a shell it would not do
/// what the line says.
#[derive(Clone, Debug)]
pub struct Curl {
    pub line: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// `-N`: an endless stream; read the first chunk only.
    pub streaming: bool,
    /// The shell comment after the command, if any (`# 404 with a ... body`).
    pub comment: String,
}

impl Curl {
    /// The status the line promises: a number opening its comment, else any 2xx.
    pub fn expects(&self, status: u16) -> bool {
        let promised = self
            .comment
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<u16>().ok());
        match promised {
            Some(code) => status == code,
            None => (200..300).contains(&status),
        }
    }

    /// Send it, with `from` (e.g. `http://127.0.0.1:8080`) in the URL replaced by `to`.
    pub async fn send(&self, from: &str, to: &str) -> Reply {
        let url = self.url.replacen(from, to, 1);
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let has_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if self.body.is_some() && !has_type {
            // What curl sends with -d unless told otherwise.
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let body = Bytes::from(self.body.clone().unwrap_or_default());
        if self.streaming {
            send_first_chunk(&self.method, &url, &headers, body).await
        } else {
            send(&self.method, &url, &headers, body).await
        }
    }
}

/// Every `curl ...` command in `text`, also inside `#` comment lines.
pub fn curl_lines(text: &str) -> Vec<Curl> {
    text.lines()
        .map(|l| l.trim_start().trim_start_matches('#').trim())
        .filter(|l| l.starts_with("curl "))
        .map(parse_curl)
        .collect()
}

fn parse_curl(line: &str) -> Curl {
    let (words, comment) = shell_words(line);
    let mut curl = Curl {
        line: line.to_string(),
        method: String::new(),
        url: String::new(),
        headers: Vec::new(),
        body: None,
        streaming: false,
        comment,
    };
    let mut args = words.into_iter().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{arg} needs a value in: {line}"))
        };
        match arg.as_str() {
            "-X" | "--request" => curl.method = value(),
            "-H" | "--header" => {
                let header = value();
                let (k, v) = header
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header {header:?} in: {line}"));
                curl.headers
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
            "-d" | "--data" | "--data-raw" | "--data-binary" => curl.body = Some(value()),
            "-N" | "--no-buffer" => curl.streaming = true,
            "-s" | "-S" | "-sS" | "-i" | "-v" | "--silent" | "--fail" | "-f" => {}
            other if other.starts_with('-') => panic!("unsupported curl option {other} in: {line}"),
            _ => {
                assert!(curl.url.is_empty(), "two URLs in: {line}");
                curl.url = arg;
            }
        }
    }
    assert!(curl.url.starts_with("http://"), "no http:// URL in: {line}");
    if curl.method.is_empty() {
        curl.method = if curl.body.is_some() { "POST" } else { "GET" }.to_string();
    }
    curl
}

/// POSIX-shell word splitting for one line: '...', "..." (with \" \\ \$ escapes), \x outside
/// quotes and a trailing `# comment`. Panics on unquoted metacharacters and open quotes.
fn shell_words(line: &str) -> (Vec<String>, String) {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                words.extend(word.take());
            }
            '#' if word.is_none() => {
                let comment: String = chars.collect();
                return (words, comment.trim().to_string());
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => panic!("unterminated ' in: {line}"),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => panic!("unterminated \" in: {line}"),
                        },
                        Some(c @ ('$' | '`')) => panic!("unescaped {c} inside \"...\" in: {line}"),
                        Some(c) => w.push(c),
                        None => panic!("unterminated \" in: {line}"),
                    }
                }
            }
            '\\' => {
                let c = chars
                    .next()
                    .unwrap_or_else(|| panic!("trailing \\ in: {line}"));
                word.get_or_insert_with(String::new).push(c);
            }
            '&' | ';' | '|' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' => {
                panic!("unquoted shell metacharacter {c:?} in: {line} (quote the URL)")
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    (words, String::new())
}

/// A tonic server with a chosen set of the example services, and server reflection knowing
/// only those (or no reflection at all): a backend whose API can change between deploys.
pub struct FakeGrpc {
    library: Option<demo::LibraryBackend>,
    authors: Option<demo::AuthorsBackend>,
    reflection: bool,
}

/// A running [`FakeGrpc`]; stops when dropped.
pub struct RunningGrpc {
    pub addr: SocketAddr,
    pub library: Option<demo::LibraryBackend>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeGrpc {
    /// Serves `library.v1.Library` only.
    pub fn library() -> FakeGrpc {
        FakeGrpc::library_with(demo::LibraryBackend::new())
    }

    pub fn library_with(backend: demo::LibraryBackend) -> FakeGrpc {
        FakeGrpc {
            library: Some(backend),
            authors: None,
            reflection: true,
        }
    }

    /// Serves nothing but reflection (a backend before its first feature ships).
    pub fn nothing() -> FakeGrpc {
        FakeGrpc {
            library: None,
            authors: None,
            reflection: true,
        }
    }

    /// Serves `authors.v1.Authors` only.
    pub fn authors_only() -> FakeGrpc {
        FakeGrpc {
            library: None,
            authors: Some(demo::AuthorsBackend::new()),
            reflection: true,
        }
    }

    /// Also serves `authors.v1.Authors`.
    pub fn and_authors(mut self) -> FakeGrpc {
        self.authors = Some(demo::AuthorsBackend::new());
        self
    }

    /// No server reflection: only descriptor files can describe it.
    pub fn without_reflection(mut self) -> FakeGrpc {
        self.reflection = false;
        self
    }

    pub async fn spawn(self) -> RunningGrpc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.serve(listener)
    }

    /// On a given address (a backend "redeploying" on its port); retries while the old
    /// socket lets go.
    pub async fn spawn_at(self, addr: SocketAddr) -> RunningGrpc {
        let mut attempt = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        };
        self.serve(listener)
    }

    fn serve(self, listener: tokio::net::TcpListener) -> RunningGrpc {
        let addr = listener.local_addr().expect("addr");
        let reflection = self.reflection.then(|| {
            let mut builder = tonic_reflection::server::Builder::configure();
            if self.library.is_some() {
                builder =
                    builder.register_encoded_file_descriptor_set(demo::LIBRARY_DESCRIPTOR_SET);
            }
            if self.authors.is_some() {
                builder =
                    builder.register_encoded_file_descriptor_set(demo::AUTHORS_DESCRIPTOR_SET);
            }
            builder.build_v1().expect("reflection service")
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_optional_service(self.library.clone().map(demo::LibraryBackend::into_service))
            .add_optional_service(self.authors.map(demo::AuthorsBackend::into_service))
            .add_optional_service(reflection);
        let task = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        RunningGrpc {
            addr,
            library: self.library,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl RunningGrpc {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving and release the port.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for RunningGrpc {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// POST one GraphQL operation to `gw`'s `/graphql`; the JSON response (any status).
pub async fn graphql(gw: &TestGateway, query: &str, variables: Value) -> Value {
    send(
        "POST",
        &gw.url("/graphql"),
        &[("content-type", "application/json")],
        serde_json::json!({ "query": query, "variables": variables }).to_string(),
    )
    .await
    .json()
}

/// A real WebSocket client (tokio-tungstenite) on a gateway's `/graphql`, speaking
/// `graphql-transport-ws` or the legacy `graphql-ws` as JSON values.
pub struct GraphqlWs {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// How long a test waits for one message before failing (only keeps a broken build from
/// hanging; not a timing assertion).
const WS_WAIT: Duration = Duration::from_secs(10);

impl GraphqlWs {
    /// Connect offering `protocol`; the server must select it.
    pub async fn connect(gw: &TestGateway, protocol: &str) -> GraphqlWs {
        let (ws, selected) = GraphqlWs::try_connect(gw, Some(protocol))
            .await
            .unwrap_or_else(|e| panic!("WebSocket handshake with {protocol}: {e}"));
        assert_eq!(selected.as_deref(), Some(protocol), "selected subprotocol");
        ws
    }

    /// Connect offering `protocol` (or none); the client and the subprotocol the server
    /// selected, or the handshake error.
    pub async fn try_connect(
        gw: &TestGateway,
        protocol: Option<&str>,
    ) -> Result<(GraphqlWs, Option<String>), String> {
        GraphqlWs::try_connect_at(gw.addr, protocol).await
    }

    /// [`GraphqlWs::try_connect`] to a gateway at `addr`.
    pub async fn try_connect_at(
        addr: SocketAddr,
        protocol: Option<&str>,
    ) -> Result<(GraphqlWs, Option<String>), String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = format!("ws://{addr}/graphql")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(protocol) = protocol {
            request.headers_mut().insert(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                protocol.parse().map_err(|e| format!("{e}"))?,
            );
        }
        let (ws, response) =
            tokio::time::timeout(WS_WAIT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| "no handshake within 10s".to_string())?
                .map_err(|e| e.to_string())?;
        let selected = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((GraphqlWs { ws }, selected))
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt as _;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .expect("send a WebSocket message");
    }

    async fn frame(&mut self) -> Option<tokio_tungstenite::tungstenite::Message> {
        use futures_util::StreamExt as _;
        tokio::time::timeout(WS_WAIT, self.ws.next())
            .await
            .expect("a WebSocket frame within 10s")
            .map(|frame| frame.expect("a WebSocket frame"))
    }

    /// The next protocol message; WebSocket pings and legacy `ka` keep-alives are skipped.
    pub async fn recv(&mut self) -> Value {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match self.frame().await {
                Some(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
                    if value["type"] != "ka" {
                        return value;
                    }
                }
                Some(Message::Ping(_) | Message::Pong(_)) => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Reads until the server's close frame: its code and reason (messages before it are
    /// skipped).
    pub async fn closed(&mut self) -> (u16, String) {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match self.frame().await {
                Some(Message::Close(Some(frame))) => {
                    return (frame.code.into(), frame.reason.to_string())
                }
                Some(Message::Close(None)) | None => return (1005, String::new()),
                Some(_) => {}
            }
        }
    }

    /// Send our close frame (code 1000).
    pub async fn close(&mut self) {
        self.ws.close(None).await.expect("close the WebSocket");
    }

    /// `connection_init` (with `payload` if any), then expect `connection_ack`.
    pub async fn init(&mut self, payload: Option<Value>) {
        let mut init = serde_json::json!({"type": "connection_init"});
        if let Some(payload) = payload {
            init["payload"] = payload;
        }
        self.send(init).await;
        assert_eq!(
            self.recv().await,
            serde_json::json!({"type": "connection_ack"})
        );
    }

    /// `graphql-transport-ws` `subscribe` with `query` and `variables`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(serde_json::json!({"type": "subscribe", "id": id,
            "payload": {"query": query, "variables": variables}}))
            .await;
    }
}
