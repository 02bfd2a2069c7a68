//! Rich gRPC errors: `google.rpc.Status` with typed details carried in
//! `grpc-status-details-bin`.

use bytes::Bytes;
use prost::Message;
use prost_types::Any;
use tonic::{Code, Status};

use super::pb::google::rpc;

/// Prefix of the type URLs of packed details.
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// Packs `message` (of the fully qualified protobuf type `type_name`) as `Any`.
pub(crate) fn pack(type_name: &str, message: &impl Message) -> Any {
    Any {
        type_url: format!("{TYPE_URL_PREFIX}{type_name}"),
        value: message.encode_to_vec(),
    }
}

/// A status whose details are a `google.rpc.Status` holding `details`.
pub(crate) fn rich(code: Code, message: impl Into<String>, details: Vec<Any>) -> Status {
    let message = message.into();
    let encoded = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details,
    }
    .encode_to_vec();
    Status::with_details(code, message, Bytes::from(encoded))
}

/// NOT_FOUND with a `google.rpc.ResourceInfo`, message `"{kind} {name} not found"`.
pub(crate) fn not_found(kind: &str, resource_type: &str, name: &str) -> Status {
    let message = format!("{kind} {name} not found");
    let info = rpc::ResourceInfo {
        resource_type: resource_type.to_owned(),
        resource_name: name.to_owned(),
        owner: String::new(),
        description: message.clone(),
    };
    rich(
        Code::NotFound,
        message,
        vec![pack("google.rpc.ResourceInfo", &info)],
    )
}

/// ALREADY_EXISTS with a `google.rpc.ResourceInfo`.
pub(crate) fn already_exists(kind: &str, resource_type: &str, name: &str) -> Status {
    let message = format!("{kind} {name} already exists");
    let info = rpc::ResourceInfo {
        resource_type: resource_type.to_owned(),
        resource_name: name.to_owned(),
        owner: String::new(),
        description: message.clone(),
    };
    rich(
        Code::AlreadyExists,
        message,
        vec![pack("google.rpc.ResourceInfo", &info)],
    )
}

/// Collects field violations for one INVALID_ARGUMENT answer.
#[derive(Debug, Default)]
pub(crate) struct Violations(Vec<rpc::bad_request::FieldViolation>);

impl Violations {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a violation of `field` (dotted proto path).
    pub(crate) fn add(&mut self, field: &str, reason: &str, description: impl Into<String>) {
        self.0.push(rpc::bad_request::FieldViolation {
            field: field.to_owned(),
            description: description.into(),
            reason: reason.to_owned(),
            localized_message: None,
        });
    }

    /// `Err(INVALID_ARGUMENT)` with a `google.rpc.BadRequest` if any
    /// violation was added.
    pub(crate) fn check(self) -> Result<(), Status> {
        if self.0.is_empty() {
            return Ok(());
        }
        let summary = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        let detail = rpc::BadRequest {
            field_violations: self.0,
        };
        Err(rich(
            Code::InvalidArgument,
            format!("invalid request: {summary}"),
            vec![pack("google.rpc.BadRequest", &detail)],
        ))
    }
}

/// INVALID_ARGUMENT about a single field.
pub(crate) fn invalid(field: &str, reason: &str, description: impl Into<String>) -> Status {
    let mut violations = Violations::new();
    violations.add(field, reason, description);
    match violations.check() {
        Err(status) => status,
        Ok(()) => Status::invalid_argument(field.to_owned()),
    }
}

/// FAILED_PRECONDITION with a `google.rpc.PreconditionFailure`.
pub(crate) fn failed_precondition(kind: &str, subject: &str, description: &str) -> Status {
    let detail = rpc::PreconditionFailure {
        violations: vec![rpc::precondition_failure::Violation {
            r#type: kind.to_owned(),
            subject: subject.to_owned(),
            description: description.to_owned(),
        }],
    };
    rich(
        Code::FailedPrecondition,
        format!("{subject}: {description}"),
        vec![pack("google.rpc.PreconditionFailure", &detail)],
    )
}

/// The deterministic failure for an id of the form `fail-<code>`, if any.
///
/// | id                          | code                | details             |
/// |-----------------------------|---------------------|---------------------|
/// | `fail-internal`             | INTERNAL            | `DebugInfo`         |
/// | `fail-unavailable`          | UNAVAILABLE         | `RetryInfo` (1 s)   |
/// | `fail-permission-denied`    | PERMISSION_DENIED   | `ErrorInfo`         |
/// | `fail-unauthenticated`      | UNAUTHENTICATED     | `ErrorInfo`         |
/// | `fail-resource-exhausted`   | RESOURCE_EXHAUSTED  | `QuotaFailure`      |
/// | `fail-deadline-exceeded`    | DEADLINE_EXCEEDED   | none                |
/// | `fail-failed-precondition`  | FAILED_PRECONDITION | `PreconditionFailure` |
/// | `fail-help`                 | INVALID_ARGUMENT    | `Help`, `LocalizedMessage`, `RequestInfo` |
pub fn trigger_for_id(id: &str) -> Option<Status> {
    let code = id.strip_prefix("fail-")?;
    let error_info = |reason: &str| {
        pack(
            "google.rpc.ErrorInfo",
            &rpc::ErrorInfo {
                reason: reason.to_owned(),
                domain: "demo.omnigate".to_owned(),
                metadata: [("id".to_owned(), id.to_owned())].into_iter().collect(),
            },
        )
    };
    let status = match code {
        "internal" => rich(
            Code::Internal,
            format!("simulated internal error for {id}"),
            vec![pack(
                "google.rpc.DebugInfo",
                &rpc::DebugInfo {
                    stack_entries: vec![
                        "demo::trigger_for_id".to_owned(),
                        "demo::handler".to_owned(),
                    ],
                    detail: "triggered on purpose".to_owned(),
                },
            )],
        ),
        "unavailable" => rich(
            Code::Unavailable,
            format!("simulated outage for {id}"),
            vec![pack(
                "google.rpc.RetryInfo",
                &rpc::RetryInfo {
                    retry_delay: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                },
            )],
        ),
        "permission-denied" => rich(
            Code::PermissionDenied,
            format!("caller may not access {id}"),
            vec![error_info("DEMO_PERMISSION_DENIED")],
        ),
        "unauthenticated" => rich(
            Code::Unauthenticated,
            format!("credentials required for {id}"),
            vec![error_info("DEMO_UNAUTHENTICATED")],
        ),
        "resource-exhausted" => rich(
            Code::ResourceExhausted,
            format!("quota exhausted for {id}"),
            vec![pack(
                "google.rpc.QuotaFailure",
                &rpc::QuotaFailure {
                    violations: vec![rpc::quota_failure::Violation {
                        subject: id.to_owned(),
                        description: "demo quota of 0 requests exceeded".to_owned(),
                        ..Default::default()
                    }],
                },
            )],
        ),
        "deadline-exceeded" => Status::deadline_exceeded(format!("simulated timeout for {id}")),
        "failed-precondition" => failed_precondition("DEMO", id, "simulated precondition failure"),
        "help" => rich(
            Code::InvalidArgument,
            format!("simulated invalid request for {id}"),
            vec![
                pack(
                    "google.rpc.Help",
                    &rpc::Help {
                        links: vec![rpc::help::Link {
                            description: "omnigate demo backends".to_owned(),
                            url: "https://example.invalid/omnigate/demo".to_owned(),
                        }],
                    },
                ),
                pack(
                    "google.rpc.LocalizedMessage",
                    &rpc::LocalizedMessage {
                        locale: "en-US".to_owned(),
                        message: "This request was rejected on purpose.".to_owned(),
                    },
                ),
                pack(
                    "google.rpc.RequestInfo",
                    &rpc::RequestInfo {
                        request_id: format!("demo-{id}"),
                        serving_data: String::new(),
                    },
                ),
            ],
        ),
        _ => return None,
    };
    Some(status)
}

/// Decodes the `google.rpc.Status` carried in a status' details.
pub fn status_details(status: &Status) -> Result<rpc::Status, prost::DecodeError> {
    rpc::Status::decode(status.details())
}

/// Finds and decodes the first detail of protobuf type `type_name` (e.g.
/// `"google.rpc.BadRequest"`) in a status' details.
pub fn unpack_detail<M: Message + Default>(status: &Status, type_name: &str) -> Option<M> {
    let details = status_details(status).ok()?;
    details
        .details
        .iter()
        .find(|any| {
            let name = any
                .type_url
                .rsplit_once('/')
                .map_or(any.type_url.as_str(), |(_, n)| n);
            name == type_name
        })
        .and_then(|any| M::decode(any.value.as_slice()).ok())
}
