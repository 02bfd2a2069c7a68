//! HTTP upstream dispatch: the reverse proxy (nginx's `proxy_pass`).
//!
//! In: the normalized [`Request`] and the path (and query) to ask the upstream for. Out: the
//! upstream's response, streamed back without buffering. Must not know: routing rules (the
//! router already chose the upstream and rewrote the path), JSON, gRPC.
//!
//! What it adds: `X-Forwarded-For` (appended), `X-Forwarded-Proto`, `X-Forwarded-Host`,
//! `X-Real-IP`; `Host` rewritten to the upstream's authority unless `preserve_host`; hop-by-hop
//! headers removed both ways (RFC 9110 §7.6.1). Connections are pooled and kept alive by
//! hyper-util's client.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::Error;
use crate::request::{body_from, Body, Request, Response};

/// The pooled client every HTTP upstream shares (pools are per authority inside).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpConnector, Body>,
}

impl HttpClient {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(connector);
        HttpClient { client }
    }
}

/// One HTTP backend.
#[derive(Clone, Debug)]
pub struct HttpUpstream {
    pub name: String,
    /// `http://host:port` plus an optional base path (without trailing slash).
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    pub preserve_host: bool,
    pub timeout: Option<Duration>,
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
        Ok(HttpUpstream {
            name: name.to_string(),
            scheme,
            authority,
            base_path,
            preserve_host,
            timeout,
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
        let uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(upstream_target(&self.base_path, path_and_query))
            .build()
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
            ..
        } = request;
        remove_hop_by_hop(&mut headers);
        // The id the client gets back, so both sides log the same one.
        insert(&mut headers, "x-request-id", &id);
        if let Some(peer) = peer {
            // An IP address is always a valid header value: no copy, no check needed.
            let ip = HeaderValue::from_maybe_shared(bytes::Bytes::from(peer.ip().to_string()));
            if let Ok(ip) = ip {
                append_forwarded_for(&mut headers, &ip);
                headers.insert(HeaderName::from_static("x-real-ip"), ip);
            }
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if secure { "https" } else { "http" }),
        );
        let host =
            host.and_then(|host| HeaderValue::from_maybe_shared(bytes::Bytes::from(host)).ok());
        if let Some(host) = &host {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
        if self.preserve_host {
            if let Some(host) = host {
                headers.insert(header::HOST, host);
            }
        } else {
            // hyper fills `Host` from the URI's authority when none is set.
            headers.remove(header::HOST);
        }

        let mut upstream_request = http::Request::new(body);
        *upstream_request.method_mut() = method;
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() = headers;

        let timeout = match (self.timeout, deadline) {
            (Some(t), Some(d)) => {
                Some(t.min(d.saturating_duration_since(std::time::Instant::now())))
            }
            (t, d) => {
                t.or_else(|| d.map(|d| d.saturating_duration_since(std::time::Instant::now())))
            }
        };
        let send = client.client.request(upstream_request);
        let result = match timeout {
            Some(timeout) => match tokio::time::timeout(timeout, send).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(Error::UpstreamTimeout {
                        upstream: self.name.clone(),
                        timeout,
                    })
                }
            },
            None => send.await,
        };
        let response = result.map_err(|e| match crate::policy::limits::is_too_large(&e) {
            // The request body passed the size limit while it streamed upstream: the client's
            // fault, not the upstream's.
            Some(limit) => Error::PayloadTooLarge { limit },
            None => Error::UpstreamUnavailable {
                upstream: self.name.clone(),
                reason: error_chain(&e),
            },
        })?;
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        Ok(http::Response::from_parts(parts, body_from(body)))
    }
}

/// `base_path` + `rest`, never empty and always starting with '/'.
fn upstream_target(base_path: &str, rest: &str) -> String {
    let target = format!("{base_path}{rest}");
    if target.starts_with('/') {
        target
    } else {
        format!("/{target}")
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// Set `X-Forwarded-For` to the incoming list (every line, in order: a list header may
/// arrive split over several) followed by `ip`.
fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    let name = HeaderName::from_static("x-forwarded-for");
    let mut list: Vec<&[u8]> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::as_bytes)
        .collect();
    if list.is_empty() {
        // The usual case: the client is the first hop.
        headers.insert(name, ip.clone());
        return;
    }
    list.push(ip.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&list.join(&b", "[..])) {
        headers.insert(name, value);
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

/// Remove the connection-specific headers, including those named by `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one scan of the names instead of nine hashed removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
