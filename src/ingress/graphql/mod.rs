//! GraphQL ingress: one schema over every gRPC service (and HTTP-backed fields), on one path,
//! over HTTP (GraphQL over HTTP), WebSocket (`graphql-transport-ws` and legacy `graphql-ws`)
//! and SSE (graphql-sse distinct connections).
//!
//! In: downstream GraphQL requests. Out: the same internal [`crate::request::Request`] the REST
//! ingress makes, run through the same policies ([`Operation::begin`]); every resolver reaches
//! its backend through the same upstream dispatch ([`Operation::unary`] and friends).
//!
//! The schema belongs to a descriptor snapshot: when a reflection refresh swaps the snapshot,
//! the next operation rebuilds the schema once, while operations in flight keep theirs.

mod http_fields;
mod joins;
mod limits;
mod reply;
mod schema;
pub mod sse;
pub mod ws;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_graphql::dynamic::Schema;
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ServerResult, ValidationMode};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use self::joins::{Join, JoinLoaders};
use self::limits::{limit_error, Limits};
use crate::config::validate::{normalize_method, HttpRoute, Validated};
use crate::config::{HttpFieldConfig, JoinConfig};
use crate::error::Error;
use crate::gateway::{Gateway, Snapshot};
use crate::pipeline::Operation;
use crate::request::Protocol;
use crate::router::build::BuildError;

/// The GraphQL part of the config, as the schema builder needs it.
#[derive(Clone, Debug)]
pub struct GraphqlSettings {
    pub path: String,
    pub introspection: bool,
    pub graphiql: bool,
    pub(crate) queries: Vec<String>,
    pub(crate) mutations: Vec<String>,
    pub(crate) limits: Limits,
    pub(crate) joins: Vec<JoinConfig>,
    pub(crate) http_fields: Vec<HttpFieldConfig>,
    pub(crate) sdl: Vec<(String, String)>,
    pub(crate) http_routes: Vec<HttpRoute>,
}

impl GraphqlSettings {
    /// `None` when GraphQL is disabled or there is nothing to serve (no gRPC upstream and no
    /// HTTP-backed root field): a schema needs at least one Query field.
    pub fn from_config(config: &Validated) -> Option<GraphqlSettings> {
        let g = &config.graphql;
        if !g.enabled || (config.grpc.is_empty() && !g.http_fields.iter().any(|f| f.on == "Query"))
        {
            return None;
        }
        let methods = |list: &[String]| list.iter().filter_map(|m| normalize_method(m)).collect();
        Some(GraphqlSettings {
            path: g.path.clone(),
            introspection: g.introspection,
            graphiql: g.graphiql,
            queries: methods(&g.queries),
            mutations: methods(&g.mutations),
            limits: Limits::from(&g.limits),
            joins: g.joins.clone(),
            http_fields: g.http_fields.clone(),
            sdl: config.graphql_sdl.clone(),
            http_routes: config.http.clone(),
        })
    }
}

/// A schema and the joins its resolvers use, for one snapshot.
pub(crate) struct Built {
    snapshot: Arc<Snapshot>,
    schema: Schema,
    joins: Vec<Arc<Join>>,
    /// For serving HTTP requests; `None` when only checking the config or printing the SDL.
    revalidation: Option<Revalidation>,
}

/// Validation is a fifth of a small query's cost, and its outcome depends only on the schema,
/// the document, the operation name and the variables. So an HTTP request that passed
/// `schema`'s full validation once runs the next times on `fast`: the same schema with
/// async-graphql's fast validation mode, which still checks fragment cycles, complexity and
/// depth, and answers exactly as `schema` would.
struct Revalidation {
    fast: Schema,
    /// Requests that passed full validation, by [`validation_key`].
    requests: Mutex<lru::LruCache<String, ()>>,
}

/// Requests remembered as validated, per schema.
const VALIDATED_REQUESTS: usize = 256;
/// Larger requests are validated every time (bounds the memory of [`Revalidation::requests`]).
const MAX_VALIDATION_KEY: usize = 8 * 1024;

/// What validation depends on besides the schema: the operation name, the variables and the
/// query (which the document is parsed from). Debug forms escape newlines, so the key is
/// unambiguous.
fn validation_key(request: &async_graphql::Request) -> Option<String> {
    if request.query.len() > MAX_VALIDATION_KEY {
        return None;
    }
    let key = format!(
        "{:?}\n{:?}\n{}",
        request.operation_name, request.variables, request.query
    );
    (key.len() <= MAX_VALIDATION_KEY).then_some(key)
}

impl Built {
    /// Run one HTTP request (its document set, its data attached).
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        let Some(revalidation) = &self.revalidation else {
            return self.schema.execute(request).await;
        };
        let key = validation_key(&request);
        let seen = key.as_ref().is_some_and(|key| {
            revalidation
                .requests
                .lock()
                .is_ok_and(|mut requests| requests.get(key).is_some())
        });
        if seen {
            return revalidation.fast.execute(request).await;
        }
        let response = self.schema.execute(request).await;
        // A request that failed validation fails before execution; one that ran passed it.
        if let Some(key) = key.filter(|_| !before_execution(&response)) {
            if let Ok(mut requests) = revalidation.requests.lock() {
                requests.put(key, ());
            }
        }
        response
    }
}

/// `serving`: also build what [`Built::execute`] needs.
fn build(
    snapshot: &Arc<Snapshot>,
    settings: &GraphqlSettings,
    serving: bool,
) -> Result<Built, Vec<BuildError>> {
    let (schema, joins) = schema::build(snapshot, settings, ValidationMode::Strict)?;
    let revalidation = if serving {
        let (fast, _) = schema::build(snapshot, settings, ValidationMode::Fast)?;
        Some(Revalidation {
            fast,
            requests: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(VALIDATED_REQUESTS)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        })
    } else {
        None
    };
    Ok(Built {
        snapshot: snapshot.clone(),
        schema,
        joins,
        revalidation,
    })
}

/// Check the GraphQL config against the current descriptors (start-up and `omnigate validate`).
pub fn check(gateway: &Gateway) -> Result<(), Vec<BuildError>> {
    let Some(settings) = GraphqlSettings::from_config(gateway.config()) else {
        return Ok(());
    };
    let snapshot = gateway.snapshot();
    let mut errors = unserved_methods(gateway.config(), &snapshot);
    if let Err(more) = build(&snapshot, &settings, false) {
        errors.extend(more);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `graphql.queries` and `graphql.mutations` entries that name no method of any backend (at
/// start-up only: a refresh that drops one just leaves its field out).
fn unserved_methods(config: &Validated, snapshot: &Snapshot) -> Vec<BuildError> {
    let g = &config.graphql;
    let mut errors = Vec::new();
    for (key, list) in [("queries", &g.queries), ("mutations", &g.mutations)] {
        for (i, text) in list.iter().enumerate() {
            // Malformed names were reported with the config.
            let Some(method) = normalize_method(text) else {
                continue;
            };
            if snapshot.table.methods.contains_key(&method) {
                continue;
            }
            let near = crate::config::load::did_you_mean(
                &method,
                snapshot.table.methods.keys().map(String::as_str),
            );
            errors.push(BuildError {
                at: Some(format!("graphql.{key}[{i}]")),
                message: format!("method {text:?} is not served by any gRPC upstream"),
                hint: Some(match near {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "list methods as package.Service/Method".to_string(),
                }),
            });
        }
    }
    errors
}

/// The SDL of the current schema (`omnigate schema`).
pub fn sdl(gateway: &Gateway) -> Result<String, Vec<BuildError>> {
    let settings = GraphqlSettings::from_config(gateway.config()).ok_or_else(|| {
        vec![BuildError {
            at: Some("graphql.enabled".into()),
            message: "GraphQL is disabled".into(),
            hint: None,
        }]
    })?;
    let built = build(&gateway.snapshot(), &settings, false)?;
    Ok(built.schema.sdl())
}

/// Shared state of the GraphQL routes.
pub struct GraphqlState {
    gateway: Arc<Gateway>,
    settings: GraphqlSettings,
    built: ArcSwap<Built>,
    rebuilding: Mutex<()>,
    /// The snapshot whose schema could not be built: not tried again for every request (the
    /// last good schema serves until the next snapshot).
    failed: arc_swap::ArcSwapOption<Snapshot>,
}

impl GraphqlState {
    pub fn new(gateway: Arc<Gateway>) -> Result<Option<Arc<GraphqlState>>, Vec<BuildError>> {
        let Some(settings) = GraphqlSettings::from_config(gateway.config()) else {
            return Ok(None);
        };
        let built = build(&gateway.snapshot(), &settings, true)?;
        Ok(Some(Arc::new(GraphqlState {
            gateway,
            settings,
            built: ArcSwap::from_pointee(built),
            rebuilding: Mutex::new(()),
            failed: arc_swap::ArcSwapOption::empty(),
        })))
    }

    pub fn path(&self) -> &str {
        &self.settings.path
    }

    /// The schema of the current snapshot, rebuilt once after a swap. A failed rebuild keeps
    /// the last good schema (and says why in the log).
    fn current(&self) -> Arc<Built> {
        let snapshot = self.gateway.snapshot();
        let built = self.built.load_full();
        let failed = |state: &Self| {
            state
                .failed
                .load()
                .as_ref()
                .is_some_and(|f| Arc::ptr_eq(f, &snapshot))
        };
        if Arc::ptr_eq(&built.snapshot, &snapshot) || failed(self) {
            return built;
        }
        let Ok(_guard) = self.rebuilding.lock() else {
            return built;
        };
        let built = self.built.load_full();
        if Arc::ptr_eq(&built.snapshot, &snapshot) || failed(self) {
            return built;
        }
        match build(&snapshot, &self.settings, true) {
            Ok(fresh) => {
                tracing::info!("GraphQL schema rebuilt for the new descriptors.");
                let fresh = Arc::new(fresh);
                self.built.store(fresh.clone());
                fresh
            }
            Err(errors) => {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                tracing::warn!(errors = %errors.join("; "), "GraphQL schema rebuild failed; keeping the last good schema until the descriptors change again.");
                self.failed.store(Some(snapshot));
                built
            }
        }
    }

    /// How WebSocket and SSE operations read their documents: cached, under the limits.
    fn documents(&self) -> ws::Documents {
        let limits = self.settings.limits.clone();
        ws::Documents::new(move |query| limits.document(query))
    }

    /// Attach what resolvers need to one request: the operation and its join loaders.
    fn prepare(
        &self,
        built: &Built,
        request: async_graphql::Request,
        op: &Operation,
    ) -> async_graphql::Request {
        request
            .data(op.clone())
            .data(JoinLoaders::new(op, &built.joins))
    }
}

/// The GraphQL routes, to merge into the app.
pub fn router<S: Clone + Send + Sync + 'static>(state: Arc<GraphqlState>) -> axum::Router<S> {
    let path = state.settings.path.clone();
    axum::Router::new()
        .route(&path, axum::routing::any(handle))
        .with_state(state)
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(media))
        })
}

async fn handle(
    State(state): State<Arc<GraphqlState>>,
    request: axum::extract::Request,
) -> Response {
    let method = request.method().clone();
    if method == Method::GET && request.headers().get(http::header::UPGRADE).is_some() {
        return websocket(state, request).await;
    }
    if method == Method::GET
        && state.settings.graphiql
        && request.uri().query().is_none()
        && accepts(request.headers(), "text/html")
    {
        let page = async_graphql::http::GraphiQLSource::build()
            .endpoint(&state.settings.path)
            .subscription_endpoint(&state.settings.path)
            .title("omnigate GraphiQL")
            .finish();
        return axum::response::Html(page).into_response();
    }
    let graphql_response = accepts(request.headers(), GRAPHQL_RESPONSE);
    let wants_sse = method == Method::POST && accepts(request.headers(), "text/event-stream");
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let mut normalized = super::rest::normalize(request.map(crate::request::body_from), peer);
    normalized.protocol = Protocol::GraphQl;
    // The policies run before the body is read: it is then read through their limits.
    if let Err(error) = crate::policy::apply(&state.gateway.settings, &mut normalized) {
        return gateway_error(&error, graphql_response);
    }
    let (batch, normalized) =
        match parse_request(&state, &method, graphql_response, normalized).await {
            Ok(parsed) => parsed,
            Err(response) => return response,
        };
    let op = Operation::after_policies(state.gateway.clone(), normalized);
    let built = state.current();
    // Each operation's document, parsed once (cached) under the limits: the checks below read
    // it, and execution runs it.
    let limits = &state.settings.limits;
    let mut documents: Vec<_> = batch.iter().map(|r| limits.document(&r.query)).collect();
    let kinds: Vec<_> = batch
        .iter()
        .zip(&documents)
        .map(|(request, document)| operation_type(request, document))
        .collect();
    if method == Method::GET && kinds.contains(&Some(OperationType::Mutation)) {
        let mut response = errors_response(
            StatusCode::METHOD_NOT_ALLOWED,
            vec![async_graphql::ServerError::new(
                "mutations are not allowed over GET; use POST",
                None,
            )],
            graphql_response,
        );
        response
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if wants_sse {
        if let async_graphql::BatchRequest::Single(request) = batch {
            let headers = op.headers.clone();
            return sse_response(&state, built, headers, request, op).await;
        }
        return errors_response(
            StatusCode::BAD_REQUEST,
            vec![async_graphql::ServerError::new(
                "SSE takes one operation, not a batch",
                None,
            )],
            graphql_response,
        );
    }
    if kinds.contains(&Some(OperationType::Subscription)) {
        // async-graphql would only say "not supported on this transport": name the ones that are.
        let status = if graphql_response {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        return errors_response(
            status,
            vec![async_graphql::ServerError::new(
                "subscriptions stream their results: use a WebSocket (graphql-transport-ws or \
                 graphql-ws) or SSE (POST with Accept: text/event-stream)",
                None,
            )],
            graphql_response,
        );
    }
    let run = |request: async_graphql::Request, document: ServerResult<ExecutableDocument>| {
        let request = document.map(|document| {
            let mut request = state.prepare(&built, request, &op);
            request.set_parsed_query(document);
            request
        });
        async {
            match request {
                Ok(request) => built.execute(request).await,
                // A refused document answers as async-graphql answers a parse error.
                Err(error) => async_graphql::Response::from_errors(vec![error]),
            }
        }
    };
    let response = match batch {
        async_graphql::BatchRequest::Single(request) => {
            let document = documents
                .pop()
                .unwrap_or_else(|| limits.document(&request.query));
            async_graphql::BatchResponse::Single(run(request, document).await)
        }
        async_graphql::BatchRequest::Batch(requests) => async_graphql::BatchResponse::Batch(
            requests
                .into_iter()
                .zip(documents)
                .map(|(request, document)| run(request, document))
                .collect::<futures_util::stream::FuturesOrdered<_>>()
                .collect()
                .await,
        ),
    };
    let failed_before_execution = match &response {
        async_graphql::BatchResponse::Single(r) => before_execution(r),
        async_graphql::BatchResponse::Batch(rs) => rs.iter().all(before_execution),
    };
    let status = if graphql_response && failed_before_execution {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    json_response(status, &response, graphql_response)
}

/// Errors without a path and no data: the operation never ran (syntax, validation, limits).
fn before_execution(response: &async_graphql::Response) -> bool {
    !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The type of the operation `request` runs; `None` when its document does not parse or pass
/// the limits (execution then reports why).
fn operation_type(
    request: &async_graphql::Request,
    document: &ServerResult<ExecutableDocument>,
) -> Option<OperationType> {
    match &document.as_ref().ok()?.operations {
        async_graphql::parser::types::DocumentOperations::Single(op) => Some(op.node.ty),
        // One named operation parses as `Multiple` and runs without an `operationName`.
        async_graphql::parser::types::DocumentOperations::Multiple(ops) => {
            match &request.operation_name {
                Some(name) => ops.get(name.as_str()).map(|op| op.node.ty),
                None if ops.len() == 1 => ops.values().next().map(|op| op.node.ty),
                None => None,
            }
        }
    }
}

/// The length of the last JSON response body (a hint for the next one's buffer).
static LAST_RESPONSE_LEN: AtomicUsize = AtomicUsize::new(0);
/// The largest buffer reserved from [`LAST_RESPONSE_LEN`].
const MAX_RESPONSE_HINT: usize = 64 * 1024;

fn json_response<T: serde::Serialize>(
    status: StatusCode,
    body: &T,
    graphql_response: bool,
) -> Response {
    // Sized like the last response (serde_json's own buffer starts at 128 bytes and grows by
    // doubling, a copy each time).
    let hint = LAST_RESPONSE_LEN
        .load(Ordering::Relaxed)
        .min(MAX_RESPONSE_HINT);
    let mut buffer = Vec::with_capacity(hint + hint / 8 + 64);
    let body = match serde_json::to_writer(&mut buffer, body) {
        Ok(()) => {
            LAST_RESPONSE_LEN.store(buffer.len(), Ordering::Relaxed);
            buffer
        }
        Err(_) => b"{}".to_vec(),
    };
    let content_type = if graphql_response {
        GRAPHQL_RESPONSE
    } else {
        "application/json"
    };
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

fn errors_response(
    status: StatusCode,
    errors: Vec<async_graphql::ServerError>,
    graphql_response: bool,
) -> Response {
    json_response(
        status,
        &serde_json::json!({ "errors": errors }),
        graphql_response,
    )
}

/// A gateway error before execution (policies, body limits) as a GraphQL error response.
fn gateway_error(error: &Error, graphql_response: bool) -> Response {
    error.log("");
    let rendered = error.render();
    let mut e = async_graphql::ServerError::new(rendered.message.clone(), None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", rendered.code.name());
    extensions.set("reason", rendered.reason);
    e.extensions = Some(extensions);
    errors_response(rendered.http_status, vec![e], graphql_response)
}

/// Read the GraphQL request(s) from GET parameters or a POST body.
async fn parse_request(
    state: &GraphqlState,
    method: &Method,
    graphql_response: bool,
    mut request: crate::request::Request,
) -> Result<(async_graphql::BatchRequest, crate::request::Request), Response> {
    let bad = |message: String| {
        errors_response(
            StatusCode::BAD_REQUEST,
            vec![async_graphql::ServerError::new(message, None)],
            graphql_response,
        )
    };
    let batch = match *method {
        Method::GET => {
            let query = request.uri.query().unwrap_or("");
            let parsed = serde_urlencoded_get(query).map_err(bad)?;
            async_graphql::BatchRequest::Single(parsed)
        }
        Method::POST => {
            let content_type = request
                .content_type()
                .unwrap_or("application/json")
                .to_ascii_lowercase();
            let media = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            let body = std::mem::take(&mut request.body);
            let bytes = body
                .collect()
                .await
                .map_err(|e| {
                    gateway_error(&crate::transcode::rest::body_error(e), graphql_response)
                })?
                .to_bytes();
            match media.as_str() {
                "application/json" => serde_json::from_slice::<async_graphql::BatchRequest>(&bytes)
                    .map_err(|e| bad(format!("the body is not a GraphQL request: {e}")))?,
                "application/graphql" => {
                    async_graphql::BatchRequest::Single(async_graphql::Request::new(
                        String::from_utf8(bytes.to_vec())
                            .map_err(|_| bad("the body is not UTF-8".into()))?,
                    ))
                }
                other => {
                    return Err(errors_response(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        vec![async_graphql::ServerError::new(
                            format!(
                                "content type {other:?} is not supported; send application/json"
                            ),
                            None,
                        )],
                        graphql_response,
                    ))
                }
            }
        }
        _ => {
            let mut response = errors_response(
                StatusCode::METHOD_NOT_ALLOWED,
                vec![async_graphql::ServerError::new(
                    format!("{method} is not allowed; use GET or POST"),
                    None,
                )],
                graphql_response,
            );
            response
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, POST"));
            return Err(response);
        }
    };
    if let async_graphql::BatchRequest::Batch(items) = &batch {
        if items.len() > state.settings.limits.max_batch {
            return Err(errors_response(
                StatusCode::BAD_REQUEST,
                vec![limit_error(
                    format!(
                        "the batch has {} operations; the limit is {}",
                        items.len(),
                        state.settings.limits.max_batch
                    ),
                    "max_batch",
                )],
                graphql_response,
            ));
        }
        if items.is_empty() {
            return Err(bad("the batch is empty".into()));
        }
    }
    for item in batch.iter() {
        if item.query.trim().is_empty() {
            return Err(bad("the request has no `query`".into()));
        }
    }
    Ok((batch, request))
}

/// `?query=...&variables=<json>&operationName=...&extensions=<json>`.
fn serde_urlencoded_get(query: &str) -> Result<async_graphql::Request, String> {
    let mut request = async_graphql::Request::new("");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("parameter {key:?} is not UTF-8"))
        };
        let value = decode(value)?;
        match decode(key)?.as_str() {
            "query" => request.query = value,
            "operationName" => request.operation_name = Some(value).filter(|v| !v.is_empty()),
            "variables" if !value.is_empty() => {
                let json: serde_json::Value = serde_json::from_str(&value)
                    .map_err(|e| format!("`variables` is not JSON: {e}"))?;
                request.variables = async_graphql::Variables::from_json(json);
            }
            "extensions" if !value.is_empty() => {
                let json: serde_json::Value = serde_json::from_str(&value)
                    .map_err(|e| format!("`extensions` is not JSON: {e}"))?;
                request.extensions =
                    serde_json::from_value(json).map_err(|e| format!("`extensions`: {e}"))?;
            }
            _ => {}
        }
    }
    Ok(request)
}

/// `GET path` with `Upgrade: websocket`: subscriptions (and queries, mutations) over
/// `graphql-transport-ws` or the legacy `graphql-ws`.
async fn websocket(state: Arc<GraphqlState>, request: axum::extract::Request) -> Response {
    use axum::extract::FromRequestParts as _;
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let (mut parts, _body) = request.into_parts();
    let upgrade =
        match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
    let built = state.current();
    let headers = parts.headers.clone();
    let uri = parts.uri.clone();
    let schema = built.schema.clone();
    let prepare_state = state.clone();
    let prepare: ws::Prepare = Arc::new(move |request, init| {
        let mut headers = init.headers.clone();
        // graphql-ws clients cannot set headers on the upgrade from a browser: they send
        // credentials in the connection_init payload instead. Merged before normalizing, so
        // an `x-request-id` there is the request id too.
        if let Some(payload) = init.payload.as_ref().and_then(|p| p.as_object()) {
            for (key, value) in payload {
                let Some(value) = value.as_str() else {
                    continue;
                };
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.insert(name, value);
                }
            }
        }
        let mut downstream = axum::extract::Request::new(axum::body::Body::empty());
        *downstream.uri_mut() = uri.clone();
        *downstream.headers_mut() = headers;
        let mut normalized =
            super::rest::normalize(downstream.map(crate::request::body_from), peer);
        normalized.protocol = Protocol::WebSocket;
        let op = Operation::begin(prepare_state.gateway.clone(), normalized)
            .map_err(|e| e.render().message)?;
        Ok(prepare_state.prepare(&built, request, &op))
    });
    let config = ws::WsConfig {
        closing: Some(state.gateway.closing()),
        sessions: Some(state.gateway.sessions()),
        documents: state.documents(),
        ..ws::WsConfig::default()
    };
    ws::upgrade(upgrade, &headers, schema, prepare, config)
}

/// `POST path` with `Accept: text/event-stream`: graphql-sse, distinct connections mode.
fn sse_response(
    state: &Arc<GraphqlState>,
    built: Arc<Built>,
    headers: HeaderMap,
    request: async_graphql::Request,
    op: Operation,
) -> impl std::future::Future<Output = Response> {
    let state = state.clone();
    let schema = built.schema.clone();
    let documents = state.documents();
    let prepare: ws::Prepare =
        Arc::new(move |request, _init| Ok(state.prepare(&built, request, &op)));
    sse::handle(schema, prepare, documents, headers, request)
}
