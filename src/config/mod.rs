//! Configuration: raw serde types (`*Config`), read from YAML with line-accurate errors
//! ([`load`]), then validated into runtime types ([`validate`]).
//!
//! In: a YAML file (or the quick-mode flags, which build the same [`Config`]). Out: a
//! [`validate::Settings`] plus the upstream and route definitions the gateway builds its route
//! table from. Every key is checked (`deny_unknown_fields`); every gRPC route is checked against
//! the descriptor pool when the table is built (`router::build`).

pub mod load;
pub mod quick;
pub mod validate;

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub transcoding: TranscodingConfig,
    /// gRPC backends and where their API descriptions come from.
    #[serde(default)]
    pub grpc: Vec<GrpcUpstreamConfig>,
    /// Plain HTTP backends behind path prefixes (reverse proxy).
    #[serde(default)]
    pub http: Vec<HttpRouteConfig>,
    /// Extra REST bindings of gRPC methods and per-method settings.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(default = "default_grace")]
    pub shutdown_grace: String,
    /// The GraphQL ingress over every gRPC service.
    #[serde(default)]
    pub graphql: GraphqlConfig,
}

pub fn default_listen() -> String {
    "127.0.0.1:8080".to_string()
}

fn default_grace() -> String {
    "10s".to_string()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, enforced while streaming (413 past it).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Deepest JSON nesting accepted in a request body.
    #[serde(default = "default_max_depth")]
    pub max_json_depth: usize,
    /// How long an HTTP/1 client may take to send a request's headers, counted from when the
    /// connection is ready for the next request (so also how long an idle keep-alive
    /// connection stays open). A client too slow is disconnected.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: String,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: default_max_body(),
            max_json_depth: default_max_depth(),
            header_read_timeout: default_header_read_timeout(),
        }
    }
}

fn default_max_body() -> u64 {
    1024 * 1024
}

fn default_header_read_timeout() -> String {
    "30s".to_string()
}

fn default_max_depth() -> usize {
    64
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodingConfig {
    /// Emit proto field names (`page_count`) instead of lowerCamelCase (`pageCount`).
    #[serde(default)]
    pub use_proto_names: bool,
    /// Emit fields that hold their default value.
    #[serde(default)]
    pub emit_unpopulated: bool,
    /// Accept (and drop) JSON fields the request message does not have, instead of a 400.
    #[serde(default)]
    pub ignore_unknown_fields: bool,
    /// Accept (and drop) query parameters that name no field, instead of a 400.
    #[serde(default)]
    pub ignore_unknown_query_parameters: bool,
    /// `+` in a query string is a space, as in HTML forms and grpc-gateway; `false` keeps it a
    /// plus sign, as Envoy does by default (`?at=2024-01-01T10:00:00+01:00`). `%2B` is a plus
    /// sign either way.
    #[serde(default = "yes")]
    pub query_unescape_plus: bool,
    /// How path variables are percent-decoded (Envoy's `url_unescape_spec`).
    #[serde(default)]
    pub url_unescape: UnescapeConfig,
    /// Server-streaming responses: NDJSON (default) or one JSON array. Clients that send
    /// `Accept: text/event-stream` always get SSE.
    #[serde(default)]
    pub stream_format: StreamFormatConfig,
    /// Expose every method at `POST /{package.Service}/{Method}` with the body as the request.
    #[serde(default = "yes")]
    pub auto_mapping: bool,
    /// Request headers forwarded as gRPC metadata besides `authorization` and `x-request-id`.
    #[serde(default)]
    pub forward_headers: Vec<String>,
}

impl Default for TranscodingConfig {
    fn default() -> Self {
        TranscodingConfig {
            use_proto_names: false,
            emit_unpopulated: false,
            ignore_unknown_fields: false,
            ignore_unknown_query_parameters: false,
            query_unescape_plus: true,
            url_unescape: UnescapeConfig::default(),
            stream_format: StreamFormatConfig::default(),
            auto_mapping: true,
            forward_headers: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnescapeConfig {
    #[default]
    AllCharactersExceptReserved,
    AllCharactersExceptSlash,
    AllCharacters,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StreamFormatConfig {
    #[default]
    Ndjson,
    JsonArray,
}

/// One gRPC backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcUpstreamConfig {
    pub name: String,
    /// `http://host:port`; use `urls` for several (calls go round-robin over them, skipping
    /// one that cannot be reached).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    /// FileDescriptorSet files (relative to the config file). Empty: discover by reflection.
    #[serde(default)]
    pub descriptors: Vec<String>,
    /// How often reflection-discovered descriptors are fetched again (`0s` turns it off).
    #[serde(default = "default_refresh")]
    pub reflection_refresh: String,
    /// Only expose these services (fully qualified). Empty: every service found.
    #[serde(default)]
    pub services: Vec<String>,
    /// Deadline of every call to this backend unless a route sets its own.
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
}

fn default_refresh() -> String {
    "30s".to_string()
}

fn default_connect_timeout() -> String {
    "5s".to_string()
}

/// One reverse-proxy route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Path prefix, matched on segment boundaries (`/books` matches `/books` and `/books/1`,
    /// not `/bookshelf`). The longest matching prefix wins.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Only for this `Host` (port ignored); `*.example.com` matches one label.
    #[serde(default)]
    pub host: Option<String>,
    /// Upstream base URL, e.g. `http://127.0.0.1:5000` or `http://127.0.0.1:5000/api`.
    pub url: String,
    /// Remove the prefix before forwarding (`/books/1` → `/1`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Send the original `Host` instead of the upstream's.
    #[serde(default)]
    pub preserve_host: bool,
    /// The longest wait for the upstream: for its response headers, counted from the last
    /// piece of the request body sent (504 past it), and between pieces of its response body
    /// (the response is cut past it), as nginx's `proxy_send_timeout`/`proxy_read_timeout`.
    #[serde(default)]
    pub timeout: Option<String>,
}

fn default_prefix() -> String {
    "/".to_string()
}

/// An extra REST binding for a gRPC method (google.api.HttpRule in YAML), or, with no pattern,
/// settings for all of the method's bindings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `package.Service/Method` (or `package.Service.Method`).
    pub grpc: String,
    #[serde(default)]
    pub get: Option<String>,
    #[serde(default)]
    pub put: Option<String>,
    #[serde(default)]
    pub post: Option<String>,
    #[serde(default)]
    pub delete: Option<String>,
    #[serde(default)]
    pub patch: Option<String>,
    #[serde(default)]
    pub custom: Option<CustomPatternConfig>,
    /// `*`, a field path, or absent.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub response_body: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    /// Extra metadata sent with every call of this method.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPatternConfig {
    pub kind: String,
    pub path: String,
}

/// The GraphQL ingress: a schema generated from the descriptors, served on `path` over HTTP,
/// WebSocket and SSE.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_graphql_path")]
    pub path: String,
    #[serde(default = "yes")]
    pub introspection: bool,
    /// GraphiQL for browsers at GET `path`.
    #[serde(default = "yes")]
    pub graphiql: bool,
    /// Methods exposed as Query fields whatever their annotations say.
    #[serde(default)]
    pub queries: Vec<String>,
    /// Methods exposed as Mutation fields whatever their annotations say.
    #[serde(default)]
    pub mutations: Vec<String>,
    #[serde(default)]
    pub limits: GraphqlLimitsConfig,
    /// Fields added to a type and resolved by another gRPC method.
    #[serde(default)]
    pub joins: Vec<JoinConfig>,
    /// Fields resolved by an HTTP upstream answering JSON.
    #[serde(default)]
    pub http_fields: Vec<HttpFieldConfig>,
    /// SDL files (relative to the config file) declaring the types of `http_fields`.
    #[serde(default)]
    pub sdl: Vec<String>,
    /// The same, inline.
    #[serde(default)]
    pub types: Option<String>,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            enabled: true,
            path: default_graphql_path(),
            introspection: true,
            graphiql: true,
            queries: Vec::new(),
            mutations: Vec::new(),
            limits: GraphqlLimitsConfig::default(),
            joins: Vec::new(),
            http_fields: Vec::new(),
            sdl: Vec::new(),
            types: None,
        }
    }
}

fn default_graphql_path() -> String {
    "/graphql".to_string()
}

/// Checked before any upstream call; each refusal names the limit.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlLimitsConfig {
    #[serde(default = "default_document_bytes")]
    pub max_document_bytes: usize,
    #[serde(default = "default_gql_depth")]
    pub max_depth: usize,
    #[serde(default = "default_aliases")]
    pub max_aliases: usize,
    #[serde(default = "default_root_fields")]
    pub max_root_fields: usize,
    #[serde(default = "default_complexity")]
    pub max_complexity: usize,
    #[serde(default = "default_batch")]
    pub max_batch: usize,
}

impl Default for GraphqlLimitsConfig {
    fn default() -> Self {
        GraphqlLimitsConfig {
            max_document_bytes: default_document_bytes(),
            max_depth: default_gql_depth(),
            max_aliases: default_aliases(),
            max_root_fields: default_root_fields(),
            max_complexity: default_complexity(),
            max_batch: default_batch(),
        }
    }
}

fn default_document_bytes() -> usize {
    32 * 1024
}
fn default_gql_depth() -> usize {
    12
}
fn default_aliases() -> usize {
    30
}
fn default_root_fields() -> usize {
    20
}
fn default_complexity() -> usize {
    500
}
fn default_batch() -> usize {
    10
}

/// `Book.author` resolved by `authors.v1.Authors/GetAuthor` with `id: "{authorId}"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// The GraphQL type that gets the field.
    pub on: String,
    pub field: String,
    /// The method that resolves it (its output type is the field's type).
    pub grpc: String,
    /// Request fields (JSON names) → `{parentField}` or a literal.
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
    /// Resolve all parents of an operation with one call instead.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `authors.v1.Authors/BatchGetAuthors` with `ids: [...]` answering `authors: [...]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub grpc: String,
    /// The repeated request field that takes the keys.
    pub argument: String,
    /// The repeated response field with the results.
    pub results: String,
    /// The field of each result that holds its key.
    pub key: String,
}

/// `Book.reviews` resolved by `GET /reviews?book={name}` on an HTTP upstream.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFieldConfig {
    /// The GraphQL type that gets the field (`Query` for a root field).
    pub on: String,
    pub field: String,
    /// GraphQL type of the field, e.g. `[Review!]!`, using types from `sdl`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Name of an `http` route whose upstream answers.
    pub upstream: String,
    /// Path and query with `{parentField}` / `{argument}` placeholders (percent-encoded).
    pub path: String,
    /// Field arguments: name → GraphQL input type (`String!`).
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
    /// Use this top-level key of the JSON answer (e.g. `reviews` of `{"reviews": [...]}`).
    #[serde(default)]
    pub select: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A problem found after parsing (descriptors, route table, GraphQL schema), located at the
/// config key to blame when there is one; `Loaded::locate` turns it into a `ConfigError` with
/// its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    pub at: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// A config file read and validated, with its source map for errors found later.
#[derive(Debug)]
pub struct Loaded {
    pub validated: validate::Validated,
    pub source: load::SourceMap,
}

/// A config checked as far as it goes: every error found, and what loaded when the errors
/// leave enough to check further (the gRPC upstreams are intact), so start-up errors such as
/// unknown methods can be reported in the same run ([`crate::gateway::Gateway::start_checked`]).
#[derive(Debug)]
pub struct Checked {
    pub loaded: Option<Loaded>,
    /// Located and sorted by position.
    pub errors: Vec<load::ConfigError>,
}

impl Checked {
    /// The loaded config if there is no error; every error otherwise.
    pub fn into_result(self) -> Result<Loaded, load::ConfigErrors> {
        match self.loaded {
            Some(loaded) if self.errors.is_empty() => Ok(loaded),
            _ => Err(load::ConfigErrors(self.errors)),
        }
    }
}

/// Read, substitute `${VAR}`s (from the process environment), parse and validate a file.
pub fn load_file(path: &std::path::Path) -> Result<Loaded, load::ConfigErrors> {
    check_file(path).into_result()
}

/// [`load_file`] going as far as it can; see [`Checked`].
pub fn check_file(path: &std::path::Path) -> Checked {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let base_dir = path.parent().unwrap_or(std::path::Path::new("."));
            check_str(&file, &text, base_dir, |name| std::env::var(name).ok())
        }
        Err(e) => Checked {
            loaded: None,
            errors: vec![load::ConfigError {
                file,
                line: None,
                column: None,
                path: String::new(),
                message: format!("cannot read the file: {e}"),
                hint: None,
            }],
        },
    }
}

/// Load config `text` as if read from `file`: variables come from `lookup`, relative
/// descriptor paths are resolved against `base_dir`.
pub fn load_str(
    file: &str,
    text: &str,
    base_dir: &std::path::Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, load::ConfigErrors> {
    check_str(file, text, base_dir, lookup).into_result()
}

/// [`load_str`] going as far as it can; see [`Checked`].
pub fn check_str(
    file: &str,
    text: &str,
    base_dir: &std::path::Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Checked {
    let (config, source, mut errors) = load::parse_str_partial::<Config>(file, text, lookup);
    let Some(config) = config else {
        return Checked {
            loaded: None,
            errors,
        };
    };
    let (validated, more) = validate::validate_all(&config, &source, base_dir);
    errors.extend(more);
    errors.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
    // With a broken upstream, every route to its methods would be reported as well.
    let grpc_intact = !errors
        .iter()
        .any(|e| e.path == "grpc" || e.path.starts_with("grpc["));
    Checked {
        loaded: grpc_intact.then_some(Loaded { validated, source }),
        errors,
    }
}

/// Validate a config built in code (quick mode, the demo); errors name keys, not lines.
pub fn load_config(config: &Config, origin: &str) -> Result<Loaded, load::ConfigErrors> {
    check_config(config, origin).into_result()
}

/// [`load_config`] going as far as it can; see [`Checked`].
pub fn check_config(config: &Config, origin: &str) -> Checked {
    let source = load::SourceMap::empty(origin);
    // Relative paths stay relative to the working directory, and read as the user wrote them.
    let (validated, errors) = validate::validate_all(config, &source, std::path::Path::new(""));
    let grpc_intact = !errors.iter().any(|e| e.path.starts_with("grpc["));
    Checked {
        loaded: grpc_intact.then_some(Loaded { validated, source }),
        errors,
    }
}

impl Loaded {
    /// Locate start-up errors (unknown methods, bad bindings...) at their config keys.
    pub fn locate(&self, error: &crate::gateway::StartError) -> load::ConfigErrors {
        use crate::gateway::StartError;
        let located = |at: &Option<String>, message: &str, hint: &Option<String>| {
            let mut e = self.source.error(at.as_deref().unwrap_or(""), message);
            if at.is_none() {
                // Not the fault of one key: no line to point at.
                (e.line, e.column) = (None, None);
            }
            e.hint = hint.clone();
            e
        };
        let errors = match error {
            StartError::Descriptors(errors) => errors
                .iter()
                .map(|e| located(&e.at, &e.message, &e.hint))
                .collect(),
            StartError::Routes(errors) => errors
                .iter()
                .map(|e| located(&e.at, &e.message, &e.hint))
                .collect(),
        };
        load::ConfigErrors(errors)
    }
}
