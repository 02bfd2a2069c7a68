//! REST ingress: any HTTP request that no other ingress claims.
//!
//! In: an HTTP request (hyper's or axum's). Out: the pipeline's response, or an error rendered as a
//! `google.rpc.Status` JSON body with the matching HTTP status (and `Allow` on a 405).
//! Every response carries `X-Request-Id` (the client's, or one generated here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use http::{HeaderName, HeaderValue};

use crate::error::Error;
use crate::gateway::Gateway;
use crate::pipeline;
use crate::request::{body_from, full_body, parse_grpc_timeout, Body, Protocol, Request};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
// A name rather than a `&str` key, which would be parsed and checked on every request.
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The axum fallback: used when the app also mounts other ingresses (GraphQL).
pub async fn handle(
    State(gateway): State<Arc<Gateway>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    serve(&gateway, normalize(request.map(body_from), peer))
        .await
        .map(axum::body::Body::new)
        .into_response()
}

/// Serve one [`normalize`]d REST request (the server calls this directly when REST is the
/// only ingress, axum through [`handle`] otherwise).
pub async fn serve(gateway: &Gateway, request: Request) -> crate::request::Response {
    // The id's response header, made now rather than from a clone of the id afterwards: one
    // copy instead of two. (Always valid: `normalize` takes the id from a valid header value or
    // generates it.)
    let id_value = HeaderValue::from_str(&request.id).ok();
    // Only what the debug line needs, and only when it will be written.
    let debug = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (Instant::now(), request.method.clone(), request.uri.clone()));
    let mut response = match pipeline::serve(gateway, request).await {
        Ok(response) => response,
        Err(error) => {
            error.log(id_text(id_value.as_ref()));
            render_error(&error)
        }
    };
    if let Some((started, method, uri)) = debug {
        tracing::debug!(request_id = id_text(id_value.as_ref()), %method, path = uri.path(), status = response.status().as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "Request served.");
    }
    if let Some(value) = id_value {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

/// The request id for logs, from its header value.
fn id_text(value: Option<&HeaderValue>) -> &str {
    value
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// A random (version 4) UUID for a request that brought no id. The bytes come from a fast
/// per-thread generator rather than the OS (one `getrandom` syscall per request): an id only
/// has to be unique enough to correlate logs, not unpredictable.
fn new_request_id() -> String {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    // Encoded into a buffer rather than through `Display`, which goes through the formatter.
    id.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// HTTP request → internal request (its body already an internal [`Body`]: see
/// [`Body::incoming`] and [`body_from`]).
pub fn normalize(request: http::Request<Body>, peer: Option<SocketAddr>) -> Request {
    let (mut parts, body) = request.into_parts();
    // hyper only adds it to requests that ask to switch protocols.
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    // One pass over the headers rather than a hashed lookup per name (most requests carry
    // few headers); the first value of each name counts, as `HeaderMap::get` gives it.
    let (mut id, mut host, mut timeout) = (None, None, None);
    let mut host_lines = 0u8;
    for (name, value) in &parts.headers {
        let slot = if name == http::header::HOST {
            host_lines = host_lines.saturating_add(1);
            &mut host
        } else if name == X_REQUEST_ID {
            &mut id
        } else if name == GRPC_TIMEOUT {
            &mut timeout
        } else {
            continue;
        };
        slot.get_or_insert(value);
    }
    let id = id
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map_or_else(new_request_id, str::to_string);
    // An absolute-form target (or HTTP/2's `:authority`) names the host; a `Host` header
    // beside it is ignored (RFC 9112 §3.2.2).
    let host = match parts.uri.authority() {
        Some(authority) => Some(authority.to_string()),
        None => host.and_then(|v| v.to_str().ok()).map(str::to_string),
    };
    let deadline = timeout
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|timeout| Instant::now() + timeout);
    Request {
        id,
        protocol: Protocol::Rest,
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        host_lines,
        host,
        peer,
        secure: false,
        headers: parts.headers,
        principal: None,
        deadline,
        body,
        upgrade,
    }
}

/// An error as a REST response: status, `google.rpc.Status` JSON, `Allow` for 405.
pub fn render_error(error: &Error) -> crate::request::Response {
    let rendered = error.render();
    let mut response = http::Response::new(full_body(rendered.to_json().to_string()));
    *response.status_mut() = rendered.http_status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Error::MethodNotAllowed { allowed, .. } = error {
        if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(http::header::ALLOW, value);
        }
    }
    if let Error::UpstreamStatus(status) = error {
        let metadata = [
            ("grpc-metadata-", &status.headers),
            ("grpc-trailer-", &status.trailers),
        ];
        for (prefix, map) in metadata {
            for (name, value) in map {
                if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) {
                    response.headers_mut().append(name, value.clone());
                }
            }
        }
    }
    response
}
