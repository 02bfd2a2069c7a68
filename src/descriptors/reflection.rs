//! Backend API discovery through gRPC server reflection.
//!
//! * **In:** a [`tonic::transport::Channel`] to one backend (connected or lazy)
//!   and a time budget.
//! * **Out:** the names of the backend's application services and the
//!   `FileDescriptorProto`s that define them, closed over all transitive
//!   imports ([`Discovered`]); plus [`build_pool`] / [`build_pool_encoded`],
//!   which merge such files into a clone of the gateway's bundled
//!   [`DescriptorPool`].
//! * **Must not know:** HTTP ingress, routing, transcoding, or how and when
//!   backends are (re)discovered. This module only talks the reflection
//!   protocol and assembles descriptors.
//!
//! # Protocol
//!
//! One bidirectional `ServerReflectionInfo` stream is opened on
//! `grpc.reflection.v1.ServerReflection`; if the backend answers
//! `UNIMPLEMENTED` before answering anything, one more stream is opened on
//! `grpc.reflection.v1alpha.ServerReflection`. Both versions share the same
//! wire format, so the v1 message types are used for both paths.
//!
//! On that single stream the client sends `list_services`, then one
//! `file_containing_symbol` per application service (all at once), then one
//! `file_by_filename` for every import not yet seen, until every file's
//! imports are known. Requests are pipelined: nothing waits for an answer
//! except what needs that answer's content. Responses are matched to requests
//! by order, which is how reflection servers answer.
//!
//! Servers differ in how they report a missing symbol or file: some send an
//! `error_response` message, others (tonic-reflection among them) end the
//! stream with a status such as `NOT_FOUND`. Both become
//! [`ReflectionError::Protocol`] naming the request being answered.
//!
//! # Custom options
//!
//! `prost_types` drops fields it does not know when decoding, which includes
//! extension options such as `google.api.http`. [`Discovered::encoded_files`]
//! therefore keeps the bytes exactly as the backend sent them, and
//! [`build_pool_encoded`] builds a pool that still carries those options.
//! [`build_pool`] accepts `prost_types` values and so cannot restore them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use prost::Message;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_prost::ProstCodec;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

/// Service name prefixes that belong to gRPC infrastructure rather than to the
/// backend's own API. They are left out of [`Discovered::services`] unless
/// [`DiscoverOptions::include_infrastructure_services`] is set.
pub const INFRASTRUCTURE_SERVICE_PREFIXES: &[&str] = &["grpc.reflection.", "grpc.health."];

const V1_PATH: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const V1ALPHA_PATH: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

/// How long a finished stream may take to close cleanly in the background.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Why discovery or pool building failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReflectionError {
    /// The backend could not be reached, the transport failed, or the whole
    /// discovery did not finish within its time budget. Stream statuses
    /// `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `CANCELLED` and `UNKNOWN` (tonic's
    /// code for many transport faults) land here.
    Unavailable {
        /// What went wrong, for logs.
        reason: String,
    },
    /// The backend serves neither `grpc.reflection.v1` nor
    /// `grpc.reflection.v1alpha`.
    Unimplemented,
    /// The backend answered, but not usefully: an error for a symbol or file,
    /// a malformed or unexpected answer, a file it never sent.
    Protocol {
        /// What went wrong, naming the symbol or file concerned.
        reason: String,
    },
    /// A descriptor could not be decoded, or was rejected when added to a
    /// pool.
    Decode {
        /// The file (or, if its name is unknown, the request) concerned.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// A file imports another file that neither the given files nor the base
    /// pool provide.
    MissingDependency {
        /// The importing file.
        file: String,
        /// The import that could not be found.
        dependency: String,
    },
}

impl fmt::Display for ReflectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { reason } => {
                write!(f, "reflection unavailable: {reason}")
            }
            Self::Unimplemented => f.write_str(
                "backend serves neither grpc.reflection.v1 nor grpc.reflection.v1alpha",
            ),
            Self::Protocol { reason } => write!(f, "reflection protocol error: {reason}"),
            Self::Decode { file, reason } => {
                write!(f, "invalid descriptor for '{file}': {reason}")
            }
            Self::MissingDependency { file, dependency } => write!(
                f,
                "'{file}' imports '{dependency}', which is neither served by the backend nor bundled"
            ),
        }
    }
}

impl std::error::Error for ReflectionError {}

/// Which reflection service answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReflectionVersion {
    /// `grpc.reflection.v1.ServerReflection`.
    #[default]
    V1,
    /// `grpc.reflection.v1alpha.ServerReflection`.
    V1Alpha,
}

impl ReflectionVersion {
    fn path(self) -> &'static str {
        match self {
            Self::V1 => V1_PATH,
            Self::V1Alpha => V1ALPHA_PATH,
        }
    }
}

impl fmt::Display for ReflectionVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "grpc.reflection.v1",
            Self::V1Alpha => "grpc.reflection.v1alpha",
        })
    }
}

/// What a backend exposes, as learned through reflection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    /// Fully-qualified names of the backend's services, in the order the
    /// backend listed them, without infrastructure services (see
    /// [`INFRASTRUCTURE_SERVICE_PREFIXES`]) unless asked for.
    pub services: Vec<String>,
    /// Every file defining those services plus all their transitive imports,
    /// one per name, in the order received (not necessarily dependency
    /// order). Extension options are lost here; see [`Self::encoded_files`].
    pub files: Vec<FileDescriptorProto>,
    /// The same files, in the same order, as the exact bytes the backend
    /// sent. These keep extension options such as `google.api.http`; feed
    /// them to [`build_pool_encoded`].
    pub encoded_files: Vec<Vec<u8>>,
    /// Which reflection service answered.
    pub version: ReflectionVersion,
}

/// Knobs for [`discover_with`]. [`discover`] uses [`DiscoverOptions::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// Budget for the whole discovery, both protocol versions included.
    pub timeout: Duration,
    /// Also report (and fetch the files of) `grpc.reflection.*` and
    /// `grpc.health.*` services.
    pub include_infrastructure_services: bool,
    /// Give up with [`ReflectionError::Protocol`] past this many files.
    pub max_files: usize,
    /// Largest single reflection response accepted, in bytes.
    pub max_message_bytes: usize,
}

impl DiscoverOptions {
    /// Defaults: infrastructure services left out, at most 10 000 files,
    /// responses up to 64 MiB.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            include_infrastructure_services: false,
            max_files: 10_000,
            max_message_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Discovers the backend's services and their descriptors through server
/// reflection, v1 first and v1alpha if v1 is unimplemented, within `timeout`.
///
/// Running out of time is reported as [`ReflectionError::Unavailable`].
pub async fn discover(channel: Channel, timeout: Duration) -> Result<Discovered, ReflectionError> {
    discover_with(channel, &DiscoverOptions::new(timeout)).await
}

/// [`discover`] with every knob exposed.
pub async fn discover_with(
    channel: Channel,
    options: &DiscoverOptions,
) -> Result<Discovered, ReflectionError> {
    match tokio::time::timeout(options.timeout, discover_any_version(channel, options)).await {
        Ok(result) => result,
        Err(_) => Err(ReflectionError::Unavailable {
            reason: format!("reflection did not complete within {:?}", options.timeout),
        }),
    }
}

async fn discover_any_version(
    channel: Channel,
    options: &DiscoverOptions,
) -> Result<Discovered, ReflectionError> {
    match run_stream(channel.clone(), ReflectionVersion::V1, options).await {
        Ok(found) => return Ok(found),
        Err(Attempt::Failed(err)) => return Err(err),
        Err(Attempt::Unimplemented) => {
            tracing::debug!("grpc.reflection.v1 unimplemented, trying v1alpha");
        }
    }
    match run_stream(channel, ReflectionVersion::V1Alpha, options).await {
        Ok(found) => Ok(found),
        Err(Attempt::Failed(err)) => Err(err),
        Err(Attempt::Unimplemented) => Err(ReflectionError::Unimplemented),
    }
}

/// Outcome of one stream that did not produce a result.
enum Attempt {
    /// The server does not know this reflection version.
    Unimplemented,
    Failed(ReflectionError),
}

impl From<ReflectionError> for Attempt {
    fn from(err: ReflectionError) -> Self {
        Self::Failed(err)
    }
}

/// A request sent and not yet answered.
#[derive(Debug, Clone)]
enum Pending {
    ListServices,
    Symbol(String),
    File(String),
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ListServices => f.write_str("list_services"),
            Self::Symbol(symbol) => write!(f, "file_containing_symbol '{symbol}'"),
            Self::File(name) => write!(f, "file_by_filename '{name}'"),
        }
    }
}

impl Pending {
    fn subject(&self) -> &str {
        match self {
            Self::ListServices => "list_services",
            Self::Symbol(name) | Self::File(name) => name,
        }
    }

    fn to_request(&self) -> ServerReflectionRequest {
        let message = match self {
            Self::ListServices => MessageRequest::ListServices(String::new()),
            Self::Symbol(symbol) => MessageRequest::FileContainingSymbol(symbol.clone()),
            Self::File(name) => MessageRequest::FileByFilename(name.clone()),
        };
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message),
        }
    }
}

fn is_infrastructure(service: &str) -> bool {
    INFRASTRUCTURE_SERVICE_PREFIXES
        .iter()
        .any(|prefix| service.starts_with(prefix))
}

fn is_transport_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// State of one reflection stream.
struct Session<'a> {
    options: &'a DiscoverOptions,
    requests: mpsc::UnboundedSender<ServerReflectionRequest>,
    pending: VecDeque<Pending>,
    answered: usize,
    services: Vec<String>,
    /// File names already received, mapped to their index in `files`.
    known: HashMap<String, usize>,
    /// File names asked for by `file_by_filename`.
    requested: HashSet<String>,
    files: Vec<FileDescriptorProto>,
    encoded: Vec<Vec<u8>>,
}

impl<'a> Session<'a> {
    fn new(
        options: &'a DiscoverOptions,
        requests: mpsc::UnboundedSender<ServerReflectionRequest>,
    ) -> Self {
        Self {
            options,
            requests,
            pending: VecDeque::new(),
            answered: 0,
            services: Vec::new(),
            known: HashMap::new(),
            requested: HashSet::new(),
            files: Vec::new(),
            encoded: Vec::new(),
        }
    }

    fn send(&mut self, request: Pending) -> Result<(), ReflectionError> {
        self.requests
            .send(request.to_request())
            .map_err(|_| ReflectionError::Unavailable {
                reason: format!("request stream closed before sending {request}"),
            })?;
        self.pending.push_back(request);
        Ok(())
    }

    /// Maps a status that ended the stream (or refused to open it).
    fn stream_failed(&self, status: &Status) -> Attempt {
        if status.code() == Code::Unimplemented && self.answered == 0 {
            return Attempt::Unimplemented;
        }
        if is_transport_failure(status.code()) {
            return Attempt::Failed(ReflectionError::Unavailable {
                reason: format!("{}: {}", status.code(), status.message()),
            });
        }
        let during = match self.pending.front() {
            Some(request) => format!(" while answering {request}"),
            None => String::new(),
        };
        Attempt::Failed(ReflectionError::Protocol {
            reason: format!(
                "server ended the stream with {}{during}: {}",
                status.code(),
                status.message()
            ),
        })
    }

    fn handle(&mut self, response: ServerReflectionResponse) -> Result<(), ReflectionError> {
        let Some(request) = self.pending.pop_front() else {
            return Err(ReflectionError::Protocol {
                reason: "server sent a response nobody asked for".to_owned(),
            });
        };
        self.answered += 1;
        match (response.message_response, &request) {
            (None, _) => Err(ReflectionError::Protocol {
                reason: format!("empty response to {request}"),
            }),
            (Some(MessageResponse::ErrorResponse(error)), _) => Err(ReflectionError::Protocol {
                reason: format!(
                    "server could not answer {request}: {} ({})",
                    Code::from_i32(error.error_code),
                    error.error_message
                ),
            }),
            (Some(MessageResponse::ListServicesResponse(list)), Pending::ListServices) => {
                let mut seen = HashSet::new();
                for service in list.service {
                    let name = service.name;
                    if name.is_empty() || !seen.insert(name.clone()) {
                        continue;
                    }
                    if !self.options.include_infrastructure_services && is_infrastructure(&name) {
                        continue;
                    }
                    self.send(Pending::Symbol(name.clone()))?;
                    self.services.push(name);
                }
                Ok(())
            }
            (
                Some(MessageResponse::FileDescriptorResponse(found)),
                Pending::Symbol(_) | Pending::File(_),
            ) => {
                // One answer may bundle a file with its imports, so take all
                // of it in before asking for what is still missing.
                let first_new = self.files.len();
                for raw in found.file_descriptor_proto {
                    self.add_file(&request, raw)?;
                }
                self.request_missing_imports(first_new)
            }
            (Some(_), _) => Err(ReflectionError::Protocol {
                reason: format!("unexpected kind of response to {request}"),
            }),
        }
    }

    fn add_file(&mut self, request: &Pending, raw: Vec<u8>) -> Result<(), ReflectionError> {
        let file =
            FileDescriptorProto::decode(raw.as_slice()).map_err(|err| ReflectionError::Decode {
                file: request.subject().to_owned(),
                reason: err.to_string(),
            })?;
        let name = file.name().to_owned();
        if name.is_empty() {
            return Err(ReflectionError::Decode {
                file: request.subject().to_owned(),
                reason: "file descriptor has no name".to_owned(),
            });
        }
        if self.known.contains_key(&name) {
            return Ok(());
        }
        if self.files.len() >= self.options.max_files {
            return Err(ReflectionError::Protocol {
                reason: format!(
                    "backend sent more than {} files (at '{name}')",
                    self.options.max_files
                ),
            });
        }
        self.known.insert(name, self.files.len());
        self.files.push(file);
        self.encoded.push(raw);
        Ok(())
    }

    /// Asks for every import of `files[first..]` neither received nor asked
    /// for yet.
    fn request_missing_imports(&mut self, first: usize) -> Result<(), ReflectionError> {
        let mut missing = Vec::new();
        for file in &self.files[first..] {
            for dependency in &file.dependency {
                if !self.known.contains_key(dependency) && self.requested.insert(dependency.clone())
                {
                    missing.push(dependency.clone());
                }
            }
        }
        for dependency in missing {
            self.send(Pending::File(dependency))?;
        }
        Ok(())
    }

    /// Checks that everything asked for arrived, and hands the result out.
    fn finish(self, version: ReflectionVersion) -> Result<Discovered, ReflectionError> {
        for file in &self.files {
            for dependency in &file.dependency {
                if !self.known.contains_key(dependency) {
                    return Err(ReflectionError::Protocol {
                        reason: format!(
                            "server never sent '{dependency}', imported by '{}'",
                            file.name()
                        ),
                    });
                }
            }
        }
        let defined: HashSet<String> = self
            .files
            .iter()
            .flat_map(|file| {
                file.service
                    .iter()
                    .map(move |service| qualify(file.package(), service.name()))
            })
            .collect();
        if let Some(missing) = self.services.iter().find(|name| !defined.contains(*name)) {
            return Err(ReflectionError::Protocol {
                reason: format!("service '{missing}' was listed but no file sent defines it"),
            });
        }
        Ok(Discovered {
            services: self.services,
            files: self.files,
            encoded_files: self.encoded,
            version,
        })
    }
}

fn qualify(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    }
}

async fn run_stream(
    channel: Channel,
    version: ReflectionVersion,
    options: &DiscoverOptions,
) -> Result<Discovered, Attempt> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let mut session = Session::new(options, sender);
    // Queued before the call so it can leave with the request headers.
    session.send(Pending::ListServices)?;

    let mut grpc =
        tonic::client::Grpc::new(channel).max_decoding_message_size(options.max_message_bytes);
    grpc.ready()
        .await
        .map_err(|err| ReflectionError::Unavailable {
            reason: err.to_string(),
        })?;
    let codec: ProstCodec<ServerReflectionRequest, ServerReflectionResponse> =
        ProstCodec::default();
    let opened = grpc
        .streaming(
            tonic::Request::new(UnboundedReceiverStream::new(receiver)),
            PathAndQuery::from_static(version.path()),
            codec,
        )
        .await;
    let mut responses = match opened {
        Ok(response) => response.into_inner(),
        Err(status) => return Err(session.stream_failed(&status)),
    };

    while !session.pending.is_empty() {
        match responses.message().await {
            Ok(Some(response)) => session.handle(response)?,
            Ok(None) => {
                let next = session
                    .pending
                    .front()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                return Err(Attempt::Failed(ReflectionError::Protocol {
                    reason: format!(
                        "server closed the stream with {} request(s) unanswered, first {next}",
                        session.pending.len()
                    ),
                }));
            }
            Err(status) => return Err(session.stream_failed(&status)),
        }
    }

    // Consuming the session drops the request sender, which half-closes the
    // stream. The server's side finishes in the background rather than being
    // reset or making the caller wait for it.
    let found = session.finish(version)?;
    tokio::spawn(drain(responses));
    tracing::debug!(
        %version,
        services = found.services.len(),
        files = found.files.len(),
        "reflection discovery complete"
    );
    Ok(found)
}

async fn drain(mut responses: Streaming<ServerReflectionResponse>) {
    let _ = tokio::time::timeout(DRAIN_GRACE, async move {
        while let Ok(Some(_)) = responses.message().await {}
    })
    .await;
}

/// Adds `files` to a clone of `base`.
///
/// Files whose name `base` already holds are skipped (backends often ship
/// their own copies of `google/protobuf/*.proto` or `google/api/*.proto`), as
/// are later files repeating an earlier name. The rest are added in
/// dependency order. A file importing something found neither among `files`
/// nor in `base` gives [`ReflectionError::MissingDependency`].
///
/// Extension options (e.g. `google.api.http`) are already gone from
/// `prost_types` values; use [`build_pool_encoded`] to keep them.
pub fn build_pool(
    base: &DescriptorPool,
    files: Vec<FileDescriptorProto>,
) -> Result<DescriptorPool, ReflectionError> {
    let inputs = files
        .into_iter()
        .map(|file| PoolInput {
            name: file.name().to_owned(),
            encoded: file.encode_to_vec(),
            dependencies: file.dependency,
        })
        .collect();
    add_in_dependency_order(base, inputs)
}

/// [`build_pool`] for encoded `FileDescriptorProto`s, such as
/// [`Discovered::encoded_files`]; keeps extension options.
pub fn build_pool_encoded(
    base: &DescriptorPool,
    encoded_files: &[Vec<u8>],
) -> Result<DescriptorPool, ReflectionError> {
    let mut inputs = Vec::with_capacity(encoded_files.len());
    for (index, encoded) in encoded_files.iter().enumerate() {
        let file = FileDescriptorProto::decode(encoded.as_slice()).map_err(|err| {
            ReflectionError::Decode {
                file: format!("encoded file #{index}"),
                reason: err.to_string(),
            }
        })?;
        inputs.push(PoolInput {
            name: file.name().to_owned(),
            dependencies: file.dependency,
            encoded: encoded.clone(),
        });
    }
    add_in_dependency_order(base, inputs)
}

struct PoolInput {
    name: String,
    dependencies: Vec<String>,
    encoded: Vec<u8>,
}

fn add_in_dependency_order(
    base: &DescriptorPool,
    inputs: Vec<PoolInput>,
) -> Result<DescriptorPool, ReflectionError> {
    let mut files: Vec<PoolInput> = Vec::with_capacity(inputs.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for (position, input) in inputs.into_iter().enumerate() {
        if input.name.is_empty() {
            return Err(ReflectionError::Decode {
                file: format!("file #{position}"),
                reason: "file descriptor has no name".to_owned(),
            });
        }
        if base.get_file_by_name(&input.name).is_some() || index.contains_key(&input.name) {
            tracing::trace!(file = %input.name, "skipping already known descriptor file");
            continue;
        }
        index.insert(input.name.clone(), files.len());
        files.push(input);
    }

    // Kahn's algorithm over imports among the new files; imports that `base`
    // provides are already satisfied.
    let mut waiting_on = vec![0usize; files.len()];
    let mut importers: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
    for (position, file) in files.iter().enumerate() {
        let mut seen = HashSet::new();
        for dependency in &file.dependencies {
            if !seen.insert(dependency.as_str()) {
                continue;
            }
            if let Some(&provider) = index.get(dependency) {
                waiting_on[position] += 1;
                importers[provider].push(position);
            } else if base.get_file_by_name(dependency).is_none() {
                return Err(ReflectionError::MissingDependency {
                    file: file.name.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..files.len())
        .filter(|&position| waiting_on[position] == 0)
        .collect();
    let mut order = Vec::with_capacity(files.len());
    while let Some(position) = ready.pop_front() {
        order.push(position);
        for &importer in &importers[position] {
            waiting_on[importer] -= 1;
            if waiting_on[importer] == 0 {
                ready.push_back(importer);
            }
        }
    }
    if order.len() < files.len() {
        let mut cyclic: Vec<&str> = (0..files.len())
            .filter(|&position| waiting_on[position] > 0)
            .map(|position| files[position].name.as_str())
            .collect();
        cyclic.sort_unstable();
        return Err(ReflectionError::Protocol {
            reason: format!("import cycle among {}", cyclic.join(", ")),
        });
    }

    let mut pool = base.clone();
    for position in order {
        let file = &files[position];
        pool.decode_file_descriptor_proto(file.encoded.as_slice())
            .map_err(|err| ReflectionError::Decode {
                file: file.name.clone(),
                reason: err.to_string(),
            })?;
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use prost_reflect::Value;
    use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
    use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
    use tokio_stream::StreamExt;
    use tonic::transport::{Endpoint, Server};
    use tonic_reflection::pb::v1::server_reflection_server::{
        ServerReflection, ServerReflectionServer,
    };
    use tonic_reflection::pb::v1::ServiceResponse;
    use tonic_reflection::pb::v1::{ErrorResponse, FileDescriptorResponse, ListServiceResponse};

    const COMMON: &str = r#"
        syntax = "proto3";
        package test.v1;
        import "google/protobuf/descriptor.proto";
        extend google.protobuf.MethodOptions { string route = 50001; }
        message Meta { string request_id = 1; }
    "#;
    const ECHO: &str = r#"
        syntax = "proto3";
        package test.v1;
        import "google/protobuf/timestamp.proto";
        import "test/v1/common.proto";
        message EchoRequest { string text = 1; Meta meta = 2; }
        message EchoReply { string text = 1; google.protobuf.Timestamp at = 2; }
        service Echo {
          rpc Say(EchoRequest) returns (EchoReply) { option (test.v1.route) = "/v1/say"; }
        }
    "#;
    const ADMIN: &str = r#"
        syntax = "proto3";
        package test.v1;
        import "test/v1/common.proto";
        service Admin { rpc Ping(Meta) returns (Meta); }
    "#;

    const TEST_FILES: &[&str] = &[
        "google/protobuf/descriptor.proto",
        "google/protobuf/timestamp.proto",
        "test/v1/common.proto",
        "test/v1/echo.proto",
        "test/v1/admin.proto",
    ];

    struct Sources;

    impl FileResolver for Sources {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            let source = match name {
                "test/v1/common.proto" => COMMON,
                "test/v1/echo.proto" => ECHO,
                "test/v1/admin.proto" => ADMIN,
                _ => return Err(protox::Error::file_not_found(name)),
            };
            File::from_source(name, source)
        }
    }

    /// Compiles `roots` and their imports into an encoded FileDescriptorSet
    /// that keeps extension options.
    fn compile(roots: &[&str]) -> Vec<u8> {
        let mut resolver = ChainFileResolver::new();
        resolver.add(Sources);
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler.open_files(roots).unwrap();
        compiler.encode_file_descriptor_set()
    }

    /// The encoded files of a set, by name, in set (dependency) order.
    fn split(set: &[u8]) -> Vec<(String, Vec<u8>)> {
        #[derive(Clone, PartialEq, prost::Message)]
        struct EncodedSet {
            #[prost(bytes = "vec", repeated, tag = "1")]
            file: Vec<Vec<u8>>,
        }
        EncodedSet::decode(set)
            .unwrap()
            .file
            .into_iter()
            .map(|raw| {
                let name = FileDescriptorProto::decode(raw.as_slice())
                    .unwrap()
                    .name()
                    .to_owned();
                (name, raw)
            })
            .collect()
    }

    /// Re-encodes a subset of `set`'s files as a new set.
    fn subset(set: &[u8], keep: &[&str]) -> Vec<u8> {
        let files = split(set)
            .into_iter()
            .filter(|(name, _)| keep.contains(&name.as_str()))
            .map(|(_, raw)| FileDescriptorProto::decode(raw.as_slice()).unwrap())
            .collect();
        prost_types::FileDescriptorSet { file: files }.encode_to_vec()
    }

    fn echo_set() -> &'static [u8] {
        static SET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        SET.get_or_init(|| compile(&["test/v1/echo.proto", "test/v1/admin.proto"]))
    }

    /// The pool the gateway would bundle: here just the well-known types used.
    fn base_pool() -> DescriptorPool {
        let set = compile(&[
            "google/protobuf/descriptor.proto",
            "google/protobuf/timestamp.proto",
        ]);
        DescriptorPool::decode(set.as_slice()).unwrap()
    }

    async fn serve(router: tonic::transport::server::Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
        addr
    }

    fn channel(addr: SocketAddr) -> Channel {
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy()
    }

    fn names(found: &Discovered) -> Vec<&str> {
        let mut names: Vec<&str> = found.files.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names
    }

    fn sorted(mut list: Vec<String>) -> Vec<String> {
        list.sort();
        list
    }

    const SECS: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn v1_lists_services_and_fetches_transitive_imports() {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(echo_set())
            .build_v1()
            .unwrap();
        let addr = serve(Server::builder().add_service(reflection)).await;

        let found = discover(channel(addr), SECS).await.unwrap();

        assert_eq!(found.version, ReflectionVersion::V1);
        assert_eq!(
            sorted(found.services.clone()),
            ["test.v1.Admin", "test.v1.Echo"]
        );
        let mut expected = TEST_FILES.to_vec();
        expected.sort_unstable();
        assert_eq!(names(&found), expected);
        assert_eq!(found.files.len(), found.encoded_files.len());
        for (file, raw) in found.files.iter().zip(&found.encoded_files) {
            let decoded = FileDescriptorProto::decode(raw.as_slice()).unwrap();
            assert_eq!(&decoded, file);
        }
    }

    #[tokio::test]
    async fn falls_back_to_v1alpha() {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(echo_set())
            .build_v1alpha()
            .unwrap();
        let addr = serve(Server::builder().add_service(reflection)).await;

        let found = discover(channel(addr), SECS).await.unwrap();

        assert_eq!(found.version, ReflectionVersion::V1Alpha);
        assert_eq!(
            sorted(found.services.clone()),
            ["test.v1.Admin", "test.v1.Echo"]
        );
        assert_eq!(found.files.len(), TEST_FILES.len());
    }

    #[tokio::test]
    async fn prefers_v1_when_both_are_served() {
        let v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(echo_set())
            .build_v1()
            .unwrap();
        let v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(echo_set())
            .build_v1alpha()
            .unwrap();
        let addr = serve(Server::builder().add_service(v1).add_service(v1alpha)).await;

        let found = discover(channel(addr), SECS).await.unwrap();

        assert_eq!(found.version, ReflectionVersion::V1);
    }

    #[tokio::test]
    async fn server_without_reflection_is_unimplemented() {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let addr = serve(Server::builder().add_service(health)).await;

        let err = discover(channel(addr), SECS).await.unwrap_err();

        assert_eq!(err, ReflectionError::Unimplemented);
    }

    #[tokio::test]
    async fn closed_port_is_unavailable_within_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let timeout = Duration::from_secs(3);
        let started = Instant::now();

        let err = discover(channel(addr), timeout).await.unwrap_err();

        assert!(
            matches!(err, ReflectionError::Unavailable { .. }),
            "{err:?}"
        );
        assert!(started.elapsed() < timeout + Duration::from_millis(500));
    }

    #[tokio::test]
    async fn silent_server_is_cut_off_by_timeout() {
        let fake = Fake::new(Mode::Silent);
        let addr = serve(Server::builder().add_service(fake.clone().into_server())).await;
        let timeout = Duration::from_millis(300);
        let started = Instant::now();

        let err = discover(channel(addr), timeout).await.unwrap_err();

        let elapsed = started.elapsed();
        assert!(
            matches!(&err, ReflectionError::Unavailable { reason } if reason.contains("within")),
            "{err:?}"
        );
        assert!(elapsed >= timeout && elapsed < timeout + Duration::from_secs(1));
    }

    #[tokio::test]
    async fn file_missing_on_server_is_protocol_error_naming_it() {
        // tonic-reflection ends the stream with NOT_FOUND for unknown files.
        let incomplete = subset(
            echo_set(),
            &["google/protobuf/timestamp.proto", "test/v1/echo.proto"],
        );
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(&incomplete)
            .build_v1()
            .unwrap();
        let addr = serve(Server::builder().add_service(reflection)).await;

        let err = discover(channel(addr), SECS).await.unwrap_err();

        match err {
            ReflectionError::Protocol { reason } => {
                assert!(reason.contains("'test/v1/common.proto'"), "{reason}");
                assert!(reason.contains("not found"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn error_response_is_protocol_error_naming_the_file() {
        let fake = Fake::new(Mode::ErrorFor("test/v1/common.proto"));
        let addr = serve(Server::builder().add_service(fake.into_server())).await;

        let err = discover(channel(addr), SECS).await.unwrap_err();

        match err {
            ReflectionError::Protocol { reason } => {
                assert!(reason.contains("'test/v1/common.proto'"), "{reason}");
                assert!(reason.contains("no such file"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn bundled_answers_use_one_pipelined_stream() {
        // Like grpc-go: each answer carries the file and its not-yet-sent imports.
        let fake = Fake::new(Mode::Bundled);
        let addr = serve(Server::builder().add_service(fake.clone().into_server())).await;

        let found = discover(channel(addr), SECS).await.unwrap();

        assert_eq!(
            sorted(found.services.clone()),
            ["test.v1.Admin", "test.v1.Echo"]
        );
        assert_eq!(found.files.len(), TEST_FILES.len());
        assert_eq!(fake.streams.load(Ordering::SeqCst), 1);
        let seen = sorted(fake.requests.lock().unwrap().clone());
        assert_eq!(
            seen,
            [
                "list_services",
                "symbol test.v1.Admin",
                "symbol test.v1.Echo"
            ]
        );
    }

    #[tokio::test]
    async fn infrastructure_services_only_when_asked() {
        let fake = Fake::new(Mode::Bundled);
        let addr = serve(Server::builder().add_service(fake.clone().into_server())).await;

        let found = discover(channel(addr), SECS).await.unwrap();
        assert!(!found.services.iter().any(|s| s.starts_with("grpc.")));
        assert!(!names(&found).contains(&"grpc/health/v1/health.proto"));

        let mut options = DiscoverOptions::new(SECS);
        options.include_infrastructure_services = true;
        let found = discover_with(channel(addr), &options).await.unwrap();
        assert!(found.services.contains(&"grpc.health.v1.Health".to_owned()));
        assert!(names(&found).contains(&"grpc/health/v1/health.proto"));
    }

    #[tokio::test]
    async fn max_files_is_enforced() {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(echo_set())
            .build_v1()
            .unwrap();
        let addr = serve(Server::builder().add_service(reflection)).await;
        let mut options = DiscoverOptions::new(SECS);
        options.max_files = 2;

        let err = discover_with(channel(addr), &options).await.unwrap_err();

        assert!(matches!(err, ReflectionError::Protocol { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn discovered_files_build_a_pool_with_options() {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(echo_set())
            .build_v1()
            .unwrap();
        let addr = serve(Server::builder().add_service(reflection)).await;
        let found = discover(channel(addr), SECS).await.unwrap();
        let base = base_pool();

        let pool = build_pool_encoded(&base, &found.encoded_files).unwrap();
        assert_eq!(route_of_say(&pool), Some("/v1/say".to_owned()));

        // prost_types cannot carry extension options.
        let lossy = build_pool(&base, found.files).unwrap();
        assert!(lossy.get_service_by_name("test.v1.Echo").is_some());
        assert_eq!(route_of_say(&lossy), None);
    }

    fn route_of_say(pool: &DescriptorPool) -> Option<String> {
        let route = pool.get_extension_by_name("test.v1.route")?;
        let method = pool
            .get_service_by_name("test.v1.Echo")?
            .methods()
            .find(|m| m.name() == "Say")?;
        let options = method.options();
        if !options.has_extension(&route) {
            return None;
        }
        match options.get_extension(&route).as_ref() {
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn protos(set: &[u8]) -> Vec<FileDescriptorProto> {
        split(set)
            .into_iter()
            .map(|(_, raw)| FileDescriptorProto::decode(raw.as_slice()).unwrap())
            .collect()
    }

    #[test]
    fn build_pool_skips_files_base_has_and_resolves_echo() {
        let base = base_pool();
        let mut files = protos(echo_set());
        // A backend's own, different copy of a bundled file must not win.
        for file in &mut files {
            if file.name() == "google/protobuf/timestamp.proto" {
                file.message_type.push(prost_types::DescriptorProto {
                    name: Some("Bogus".to_owned()),
                    ..Default::default()
                });
            }
        }

        let pool = build_pool(&base, files).unwrap();

        let echo = pool.get_service_by_name("test.v1.Echo").unwrap();
        let say = echo.methods().next().unwrap();
        assert_eq!(say.input().full_name(), "test.v1.EchoRequest");
        assert_eq!(say.output().full_name(), "test.v1.EchoReply");
        assert!(pool.get_message_by_name("google.protobuf.Bogus").is_none());
        assert!(pool.get_service_by_name("test.v1.Admin").is_some());
        assert_eq!(pool.files().len(), base.files().len() + 3);
        // The base is untouched.
        assert!(base.get_service_by_name("test.v1.Echo").is_none());
    }

    #[test]
    fn build_pool_orders_dependencies_and_ignores_repeats() {
        let mut files = protos(echo_set());
        files.reverse();
        let repeat = files.clone();
        files.extend(repeat);

        let pool = build_pool(&DescriptorPool::new(), files).unwrap();

        assert!(pool.get_service_by_name("test.v1.Echo").is_some());
        assert_eq!(pool.files().len(), TEST_FILES.len());
    }

    #[test]
    fn build_pool_names_missing_dependency() {
        let files: Vec<FileDescriptorProto> = protos(echo_set())
            .into_iter()
            .filter(|f| f.name() != "test/v1/common.proto")
            .collect();

        let err = build_pool(&base_pool(), files).unwrap_err();

        assert!(
            matches!(
                &err,
                ReflectionError::MissingDependency { file, dependency }
                    if dependency == "test/v1/common.proto"
                        && (file == "test/v1/echo.proto" || file == "test/v1/admin.proto")
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("test/v1/common.proto"));
    }

    #[test]
    fn build_pool_rejects_import_cycles() {
        let file = |name: &str, import: &str| FileDescriptorProto {
            name: Some(name.to_owned()),
            package: Some("c".to_owned()),
            dependency: vec![import.to_owned()],
            syntax: Some("proto3".to_owned()),
            ..Default::default()
        };
        let files = vec![
            file("c/a.proto", "c/b.proto"),
            file("c/b.proto", "c/a.proto"),
        ];

        let err = build_pool(&DescriptorPool::new(), files).unwrap_err();

        assert!(
            matches!(&err, ReflectionError::Protocol { reason }
                if reason.contains("c/a.proto") && reason.contains("c/b.proto")),
            "{err:?}"
        );
    }

    #[test]
    fn build_pool_encoded_reports_garbage() {
        let err =
            build_pool_encoded(&DescriptorPool::new(), &[vec![0xff, 0xff, 0xff]]).unwrap_err();
        assert!(matches!(err, ReflectionError::Decode { .. }), "{err:?}");
    }

    // ---- a hand-written reflection server for behaviours tonic's lacks ----

    #[derive(Clone, Copy)]
    enum Mode {
        /// Answer like grpc-go: each file with its imports not yet sent.
        Bundled,
        /// Answer `error_response` when asked for this file.
        ErrorFor(&'static str),
        /// Accept the stream, never answer.
        Silent,
    }

    type FakeFile = (Vec<u8>, Vec<String>);

    #[derive(Clone)]
    struct Fake {
        mode: Mode,
        /// File name to (encoded file, its imports).
        files: Arc<HashMap<String, FakeFile>>,
        services: Arc<Vec<(String, String)>>,
        streams: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn new(mode: Mode) -> Self {
            let mut set = split(echo_set());
            set.extend(split(&compile_health()));
            let mut files = HashMap::new();
            let mut services = Vec::new();
            for (name, raw) in set {
                let file = FileDescriptorProto::decode(raw.as_slice()).unwrap();
                for service in &file.service {
                    services.push((qualify(file.package(), service.name()), name.clone()));
                }
                files.insert(name, (raw, file.dependency.clone()));
            }
            Self {
                mode,
                files: Arc::new(files),
                services: Arc::new(services),
                streams: Arc::default(),
                requests: Arc::default(),
            }
        }

        fn into_server(self) -> ServerReflectionServer<Self> {
            ServerReflectionServer::new(self)
        }

        fn answer(
            &self,
            request: MessageRequest,
            sent: &mut HashSet<String>,
        ) -> Option<MessageResponse> {
            let wanted = match request {
                MessageRequest::ListServices(_) => {
                    self.log("list_services".to_owned());
                    let service = self
                        .services
                        .iter()
                        .map(|(name, _)| ServiceResponse { name: name.clone() })
                        .collect();
                    return Some(MessageResponse::ListServicesResponse(ListServiceResponse {
                        service,
                    }));
                }
                MessageRequest::FileContainingSymbol(symbol) => {
                    self.log(format!("symbol {symbol}"));
                    self.services
                        .iter()
                        .find(|(name, _)| *name == symbol)
                        .map(|(_, file)| file.clone())
                }
                MessageRequest::FileByFilename(name) => {
                    self.log(format!("file {name}"));
                    Some(name)
                }
                _ => None,
            };
            let refused =
                matches!((&wanted, self.mode), (Some(name), Mode::ErrorFor(bad)) if name == bad);
            let wanted = match wanted {
                Some(name) if !refused && self.files.contains_key(&name) => name,
                _ => {
                    return Some(MessageResponse::ErrorResponse(ErrorResponse {
                        error_code: Code::NotFound as i32,
                        error_message: "no such file".to_owned(),
                    }))
                }
            };
            let mut out = Vec::new();
            let mut queue = VecDeque::from([wanted]);
            while let Some(name) = queue.pop_front() {
                let first = out.is_empty();
                let Some((raw, deps)) = self.files.get(&name) else {
                    continue;
                };
                if !sent.insert(name.clone()) && !first {
                    continue;
                }
                out.push(raw.clone());
                if matches!(self.mode, Mode::Bundled) {
                    queue.extend(deps.iter().cloned());
                }
            }
            Some(MessageResponse::FileDescriptorResponse(
                FileDescriptorResponse {
                    file_descriptor_proto: out,
                },
            ))
        }

        fn log(&self, entry: String) {
            self.requests.lock().unwrap().push(entry);
        }
    }

    fn compile_health() -> Vec<u8> {
        // Health's proto is not bundled with protox; a stand-in suffices.
        struct Health;
        impl FileResolver for Health {
            fn open_file(&self, name: &str) -> Result<File, protox::Error> {
                if name != "grpc/health/v1/health.proto" {
                    return Err(protox::Error::file_not_found(name));
                }
                File::from_source(
                    name,
                    r#"syntax = "proto3"; package grpc.health.v1;
                       message HealthCheckRequest { string service = 1; }
                       message HealthCheckResponse { int32 status = 1; }
                       service Health {
                         rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
                       }"#,
                )
            }
        }
        let mut compiler = protox::Compiler::with_file_resolver(Health);
        compiler
            .open_files(["grpc/health/v1/health.proto"])
            .unwrap();
        compiler.encode_file_descriptor_set()
    }

    #[tonic::async_trait]
    impl ServerReflection for Fake {
        type ServerReflectionInfoStream = ReceiverStream<Result<ServerReflectionResponse, Status>>;

        async fn server_reflection_info(
            &self,
            request: tonic::Request<Streaming<ServerReflectionRequest>>,
        ) -> Result<tonic::Response<Self::ServerReflectionInfoStream>, Status> {
            self.streams.fetch_add(1, Ordering::SeqCst);
            let mut inbound = request.into_inner();
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let this = self.clone();
            tokio::spawn(async move {
                let mut sent = HashSet::new();
                while let Some(Ok(request)) = inbound.next().await {
                    if matches!(this.mode, Mode::Silent) {
                        continue;
                    }
                    let message_response = request
                        .message_request
                        .clone()
                        .and_then(|m| this.answer(m, &mut sent));
                    let response = ServerReflectionResponse {
                        valid_host: String::new(),
                        original_request: Some(request),
                        message_response,
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        }
    }
}
