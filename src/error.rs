//! The one error type of the request path, and the one gRPC ⇄ HTTP status table.
//!
//! Every stage (ingress, policy, router, upstream, transcode) fails with an [`Error`]. Each
//! variant says what happened and which side failed ([`Side`]); [`Error::render`] turns it into
//! an HTTP status, a gRPC code, a stable machine code and a client-safe message exactly once.
//! Each ingress then gives that rendering its own shape (REST: a `google.rpc.Status` JSON body).
//!
//! Architecture Invariant: internal error text (I/O errors, transport details) is logged, never
//! sent to the client.

use std::time::Duration;

use serde_json::{json, Value};

/// gRPC status codes (grpc/doc/statuscodes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// The table, in one place: (code, name, HTTP status). Envoy's transcoder and grpc-gateway
/// both follow it; FAILED_PRECONDITION is deliberately 400, not 412.
const TABLE: [(Code, &str, u16); 17] = [
    (Code::Ok, "OK", 200),
    (Code::Cancelled, "CANCELLED", 499),
    (Code::Unknown, "UNKNOWN", 500),
    (Code::InvalidArgument, "INVALID_ARGUMENT", 400),
    (Code::DeadlineExceeded, "DEADLINE_EXCEEDED", 504),
    (Code::NotFound, "NOT_FOUND", 404),
    (Code::AlreadyExists, "ALREADY_EXISTS", 409),
    (Code::PermissionDenied, "PERMISSION_DENIED", 403),
    (Code::ResourceExhausted, "RESOURCE_EXHAUSTED", 429),
    (Code::FailedPrecondition, "FAILED_PRECONDITION", 400),
    (Code::Aborted, "ABORTED", 409),
    (Code::OutOfRange, "OUT_OF_RANGE", 400),
    (Code::Unimplemented, "UNIMPLEMENTED", 501),
    (Code::Internal, "INTERNAL", 500),
    (Code::Unavailable, "UNAVAILABLE", 503),
    (Code::DataLoss, "DATA_LOSS", 500),
    (Code::Unauthenticated, "UNAUTHENTICATED", 401),
];

impl Code {
    /// Any value outside 0..=16 is UNKNOWN, as the gRPC spec asks of clients.
    pub fn from_i32(value: i32) -> Code {
        usize::try_from(value)
            .ok()
            .and_then(|i| TABLE.get(i))
            .map_or(Code::Unknown, |row| row.0)
    }

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// `NOT_FOUND`, `INVALID_ARGUMENT`, ...
    pub fn name(self) -> &'static str {
        TABLE[self as usize].1
    }

    pub fn http_status(self) -> http::StatusCode {
        http::StatusCode::from_u16(TABLE[self as usize].2)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The reverse direction, for an HTTP answer seen by a gRPC caller
    /// (grpc's http-grpc-status-mapping.md).
    pub fn from_http_status(status: http::StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

/// Which side of the gateway failed (pingora's split): it decides the log level and whether
/// a retry could help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we cannot serve.
    Downstream,
    /// The backend failed or answered with an error.
    Upstream,
    /// The gateway itself.
    Internal,
}

/// A gRPC status as received from an upstream, kept whole so its details reach the client.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamStatus {
    pub code: Code,
    pub message: String,
    /// `details` of the `google.rpc.Status` in `grpc-status-details-bin`, already in proto3 JSON.
    pub details: Vec<Value>,
    /// The raw `grpc-status-details-bin`, until a stage that knows the descriptor pool turns
    /// it into `details`.
    pub details_bin: Option<bytes::Bytes>,
    /// Trailing metadata (already filtered of reserved `grpc-*` keys), for `Grpc-Trailer-*`.
    pub trailers: http::HeaderMap,
    /// Response metadata the backend sent before the error, for `Grpc-Metadata-*`.
    pub headers: http::HeaderMap,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("method {method} is not allowed on {path}; allowed: {}", allowed.join(", "))]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: Vec<String>,
    },
    /// A request field could not be mapped: bad JSON, wrong type, unknown field or parameter...
    #[error("{}", invalid_argument_message(field, reason))]
    InvalidArgument { field: String, reason: String },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("content type {found:?} is not supported here; send {expected}")]
    UnsupportedMediaType {
        found: String,
        expected: &'static str,
    },
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    UpstreamTimeout { upstream: String, timeout: Duration },
    /// The upstream could not be reached at all (connection refused, reset, DNS...).
    #[error("upstream {upstream} is unavailable")]
    UpstreamUnavailable { upstream: String, reason: String },
    /// The upstream answered something that is not a valid answer of its protocol, for
    /// example an HTML error page where gRPC was expected.
    #[error("upstream {upstream} sent an invalid response")]
    UpstreamProtocol { upstream: String, reason: String },
    /// The upstream answered with a gRPC status other than OK.
    #[error("{}", .0.message)]
    UpstreamStatus(Box<UpstreamStatus>),
    /// The client went away or cancelled.
    #[error("the request was cancelled")]
    Cancelled,
    #[error("internal error")]
    Internal { reason: String },
}

fn invalid_argument_message(field: &str, reason: &str) -> String {
    if field.is_empty() {
        reason.to_string()
    } else {
        format!("field `{field}`: {reason}")
    }
}

/// An [`Error`] rendered once, for every ingress to shape.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub http_status: http::StatusCode,
    pub code: Code,
    /// Stable machine-readable reason, e.g. `NO_ROUTE`, `UPSTREAM_TIMEOUT`.
    pub reason: &'static str,
    /// Safe to show to the client.
    pub message: String,
    /// `google.rpc.Status.details`, proto3 JSON.
    pub details: Vec<Value>,
}

impl Rendered {
    /// The REST body: `google.rpc.Status` in proto3 JSON.
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code.as_i32(), "message": self.message, "details": self.details })
    }
}

pub(crate) const ERROR_DOMAIN: &str = "omnigate";

fn error_info(reason: &str, metadata: Value) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": ERROR_DOMAIN,
        "metadata": metadata,
    })
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn internal(reason: impl Into<String>) -> Error {
        Error::Internal {
            reason: reason.into(),
        }
    }

    pub fn side(&self) -> Side {
        match self {
            Error::NoRoute { .. }
            | Error::MethodNotAllowed { .. }
            | Error::InvalidArgument { .. }
            | Error::PayloadTooLarge { .. }
            | Error::UnsupportedMediaType { .. }
            | Error::Cancelled => Side::Downstream,
            Error::UpstreamTimeout { .. }
            | Error::UpstreamUnavailable { .. }
            | Error::UpstreamProtocol { .. }
            | Error::UpstreamStatus(_) => Side::Upstream,
            Error::Internal { .. } => Side::Internal,
        }
    }

    /// The gRPC code this error carries (what a gRPC or GraphQL caller sees).
    pub fn code(&self) -> Code {
        match self {
            Error::NoRoute { .. } => Code::NotFound,
            Error::MethodNotAllowed { .. } => Code::Unimplemented,
            Error::InvalidArgument { .. } | Error::UnsupportedMediaType { .. } => {
                Code::InvalidArgument
            }
            Error::PayloadTooLarge { .. } => Code::ResourceExhausted,
            Error::UpstreamTimeout { .. } => Code::DeadlineExceeded,
            Error::UpstreamUnavailable { .. } | Error::UpstreamProtocol { .. } => Code::Unavailable,
            Error::UpstreamStatus(status) => status.code,
            Error::Cancelled => Code::Cancelled,
            Error::Internal { .. } => Code::Internal,
        }
    }

    /// The stable machine code clients can switch on.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NoRoute { .. } => "NO_ROUTE",
            Error::MethodNotAllowed { .. } => "METHOD_NOT_ALLOWED",
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Error::UnsupportedMediaType { .. } => "UNSUPPORTED_MEDIA_TYPE",
            Error::UpstreamTimeout { .. } => "UPSTREAM_TIMEOUT",
            Error::UpstreamUnavailable { .. } => "UPSTREAM_UNAVAILABLE",
            Error::UpstreamProtocol { .. } => "UPSTREAM_PROTOCOL_ERROR",
            Error::UpstreamStatus(status) => status.code.name(),
            Error::Cancelled => "CANCELLED",
            Error::Internal { .. } => "INTERNAL",
        }
    }

    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Error::NoRoute { .. } => S::NOT_FOUND,
            Error::MethodNotAllowed { .. } => S::METHOD_NOT_ALLOWED,
            Error::InvalidArgument { .. } => S::BAD_REQUEST,
            Error::PayloadTooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType { .. } => S::UNSUPPORTED_MEDIA_TYPE,
            Error::UpstreamTimeout { .. } => S::GATEWAY_TIMEOUT,
            // A refused or reset connection and a non-protocol answer are both a bad gateway
            // (nginx answers 502 for both); 503 is kept for an upstream saying UNAVAILABLE.
            Error::UpstreamUnavailable { .. } | Error::UpstreamProtocol { .. } => S::BAD_GATEWAY,
            Error::UpstreamStatus(status) => status.code.http_status(),
            Error::Cancelled => Code::Cancelled.http_status(),
            Error::Internal { .. } => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// Render once: status, code, client-safe message and details.
    pub fn render(&self) -> Rendered {
        let details = match self {
            Error::UpstreamStatus(status) => status.details.clone(),
            Error::InvalidArgument { field, reason } => vec![json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{ "field": field, "description": reason }],
            })],
            Error::MethodNotAllowed { allowed, .. } => {
                vec![error_info(
                    self.reason(),
                    json!({ "allow": allowed.join(", ") }),
                )]
            }
            Error::UpstreamTimeout { upstream, .. }
            | Error::UpstreamUnavailable { upstream, .. }
            | Error::UpstreamProtocol { upstream, .. } => {
                vec![error_info(self.reason(), json!({ "upstream": upstream }))]
            }
            _ => vec![error_info(self.reason(), json!({}))],
        };
        Rendered {
            http_status: self.http_status(),
            code: self.code(),
            reason: self.reason(),
            message: self.to_string(),
            details,
        }
    }

    /// Log at the level the failing side deserves, with the internal reason that the client
    /// never sees.
    pub fn log(&self, request_id: &str) {
        let internal = match self {
            Error::UpstreamUnavailable { reason, .. }
            | Error::UpstreamProtocol { reason, .. }
            | Error::Internal { reason } => reason.as_str(),
            _ => "",
        };
        match self.side() {
            Side::Downstream => {
                tracing::debug!(request_id, error = %self, "Request rejected.")
            }
            Side::Upstream => {
                tracing::warn!(request_id, error = %self, detail = internal, "Upstream call failed.")
            }
            Side::Internal => {
                tracing::error!(request_id, error = %self, detail = internal, "Gateway error.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_table_matches_the_standard_mapping() {
        let check = |grpc: i32, http: u16| {
            assert_eq!(
                Code::from_i32(grpc).http_status().as_u16(),
                http,
                "grpc code {grpc}"
            )
        };
        check(0, 200);
        check(1, 499);
        check(2, 500);
        check(3, 400);
        check(4, 504);
        check(5, 404);
        check(6, 409);
        check(7, 403);
        check(8, 429);
        check(9, 400);
        check(10, 409);
        check(11, 400);
        check(12, 501);
        check(13, 500);
        check(14, 503);
        check(15, 500);
        check(16, 401);
        check(17, 500);
        check(-1, 500);
    }

    #[test]
    fn table_rows_are_in_code_order() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.0 as usize, i, "{}", row.1);
        }
    }

    #[test]
    fn http_to_grpc_reverse_mapping() {
        let check = |http: u16, code: Code| {
            let status = http::StatusCode::from_u16(http).expect("valid status");
            assert_eq!(Code::from_http_status(status), code, "http {http}")
        };
        check(400, Code::Internal);
        check(401, Code::Unauthenticated);
        check(403, Code::PermissionDenied);
        check(404, Code::Unimplemented);
        check(429, Code::Unavailable);
        check(502, Code::Unavailable);
        check(503, Code::Unavailable);
        check(504, Code::Unavailable);
        check(418, Code::Unknown);
    }

    #[test]
    fn invalid_argument_renders_bad_request_details() {
        let rendered = Error::invalid("book.pageCount", "expected an integer").render();
        assert_eq!(rendered.http_status, http::StatusCode::BAD_REQUEST);
        assert_eq!(
            rendered.message,
            "field `book.pageCount`: expected an integer"
        );
        let body = rendered.to_json();
        assert_eq!(body["code"], 3);
        assert_eq!(
            body["details"][0]["fieldViolations"][0]["field"],
            "book.pageCount"
        );
    }

    #[test]
    fn internal_reasons_never_reach_the_client() {
        let err = Error::UpstreamUnavailable {
            upstream: "library".into(),
            reason: "connect: connection refused (os error 111) at 10.0.0.7".into(),
        };
        let body = err.render().to_json().to_string();
        assert!(!body.contains("os error"), "{body}");
        assert_eq!(err.http_status(), http::StatusCode::BAD_GATEWAY);
    }
}
