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
pub async fn open(
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
