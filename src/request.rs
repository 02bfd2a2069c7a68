//! THE normalized request every ingress produces and every later stage consumes.
//!
//! In: nothing (each ingress builds a [`Request`] from its protocol). Out: a value that policies
//! inspect, the router matches and the upstream dispatch turns into a call.
//!
//! Architecture Invariant: no axum, async-graphql, tonic or hyper-client type appears here, so
//! a policy written against [`Request`] works for REST, GraphQL and WebSocket alike. ([`Body`]
//! keeps hyper's server-side body inside it, privately, only to spare it a box: stages see an
//! `http_body::Body` and nothing else.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;

/// Errors inside bodies are boxed: a body may fail for I/O, limits or upstream reasons.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming HTTP body, as it travels between stages (never buffered unless a stage must).
///
/// The two shapes nearly every request and reply has, a body as hyper received it and one
/// buffer, are held as they are; anything else is boxed. (A box per body was a sixth of the
/// allocations of a proxied request.)
pub struct Body(Kind);

enum Kind {
    Incoming(hyper::body::Incoming),
    Full(http_body_util::Full<Bytes>),
    Boxed(http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// A body as hyper's server received it.
    pub fn incoming(body: hyper::body::Incoming) -> Body {
        Body(Kind::Incoming(body))
    }
}

impl Default for Body {
    fn default() -> Body {
        empty_body()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Incoming(_) => "Body::Incoming",
            Kind::Full(_) => "Body::Full",
            Kind::Boxed(_) => "Body::Boxed",
        })
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::pin::Pin;
        // Every variant is `Unpin`.
        match &mut self.get_mut().0 {
            Kind::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
            Kind::Full(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::Full(body) => body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.0 {
            Kind::Incoming(body) => body.size_hint(),
            Kind::Full(body) => body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

/// Wrap any body into the internal [`Body`] type.
pub fn body_from<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Body(Kind::Boxed(body.map_err(Into::into).boxed_unsync()))
}

/// A body with nothing in it.
pub fn empty_body() -> Body {
    full_body(Bytes::new())
}

/// A body holding one buffer.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Body(Kind::Full(http_body_util::Full::new(bytes.into())))
}

/// The response every stage passes back toward the ingress.
pub type Response = http::Response<Body>;

/// The protocol the client spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Rest,
    GraphQl,
    WebSocket,
    GrpcWeb,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::GraphQl => "graphql",
            Protocol::WebSocket => "websocket",
            Protocol::GrpcWeb => "grpc-web",
        }
    }
}

/// Who is calling, once an authentication policy has established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
}

/// The normalized request.
#[derive(Debug)]
pub struct Request {
    /// `X-Request-Id` as received, or generated at ingress.
    pub id: String,
    pub protocol: Protocol,
    /// The downstream HTTP method (for GraphQL: the method of the transport request).
    pub method: http::Method,
    /// The request URI as received (path and query still percent-encoded).
    pub uri: http::Uri,
    /// The downstream HTTP version.
    pub version: http::Version,
    /// How many `Host` header lines the request had (counted while normalizing, for the
    /// framing policy).
    pub host_lines: u8,
    /// `Host` (or `:authority`), without port normalization.
    pub host: Option<String>,
    /// The client's socket address, when known.
    pub peer: Option<SocketAddr>,
    /// Whether the client connection was TLS (for `X-Forwarded-Proto`).
    pub secure: bool,
    /// Incoming headers: the metadata policies read and upstream calls forward from.
    pub headers: http::HeaderMap,
    pub principal: Option<Principal>,
    /// When the whole call must be finished, from `grpc-timeout` or a route's timeout.
    pub deadline: Option<Instant>,
    pub body: Body,
    /// The client's side of a protocol upgrade (`Upgrade: websocket`), when it asked for one:
    /// an HTTP route that the upstream switches protocols for becomes a tunnel.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    pub fn query(&self) -> &str {
        self.uri.query().unwrap_or("")
    }

    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// Time left before the deadline, if any (zero once passed).
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Tighten the deadline to `timeout` from now, keeping an earlier one.
    pub fn limit_deadline(&mut self, timeout: Duration) {
        let candidate = Instant::now() + timeout;
        self.deadline = Some(self.deadline.map_or(candidate, |d| d.min(candidate)));
    }
}

/// Parse a `grpc-timeout` header value (`1S`, `250m`, `100u`...) per the gRPC HTTP/2 spec:
/// at most 8 digits and one unit letter.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Format a duration as a `grpc-timeout` value, choosing the finest unit that fits 8 digits.
pub fn format_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    for (unit, per) in [
        ("n", 1u128),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
    ] {
        let n = nanos.div_ceil(per);
        if n <= MAX {
            return format!("{n}{unit}");
        }
    }
    format!("{}H", nanos.div_ceil(3_600_000_000_000).min(MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grpc_timeout_parsing() {
        let check = |input: &str, expected: Option<Duration>| {
            assert_eq!(parse_grpc_timeout(input), expected, "{input}")
        };
        check("1S", Some(Duration::from_secs(1)));
        check("250m", Some(Duration::from_millis(250)));
        check("100u", Some(Duration::from_micros(100)));
        check("7n", Some(Duration::from_nanos(7)));
        check("2M", Some(Duration::from_secs(120)));
        check("1H", Some(Duration::from_secs(3600)));
        check("12345678S", Some(Duration::from_secs(12_345_678)));
        check("123456789S", None);
        check("S", None);
        check("10x", None);
        check("-1S", None);
        check("", None);
    }

    #[test]
    fn grpc_timeout_formatting_round_trips() {
        for d in [
            Duration::from_millis(1500),
            Duration::from_secs(30),
            Duration::from_nanos(5),
            Duration::from_secs(86_400 * 400),
        ] {
            let text = format_grpc_timeout(d);
            let back = parse_grpc_timeout(&text).expect("valid");
            assert!(back >= d, "{text} for {d:?}");
        }
    }
}
