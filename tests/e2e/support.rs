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
