//! REST ⇄ gRPC for one matched binding: build the request message(s) from path variables,
//! query and body; call the method; render the reply (a JSON object, an HttpBody, or a stream
//! as NDJSON, SSE or a JSON array).
//!
//! In: the normalized request and a [`Binding`] chosen by the router. Out: the HTTP response
//! (or an [`Error`] for the ingress to render). Must not know: axum, hyper clients.
//!
//! Binding precedence: the body is bound first, then path variables, so a path value
//! overrides the same field sent in the body; query parameters may not name fields bound by
//! the path or the body (400), and with `body: "*"` no query parameter is accepted at all.
//! Client-streaming methods read an NDJSON body (one request message per line) or a JSON
//! array of messages ([`body_stream`]), each sent upstream as soon as it is complete, with the
//! path variables applied to every message; as with `body: "*"`, no query parameter is
//! accepted, and errors name the line (or array element) as sent.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{FutureExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};

use crate::config::validate::{Settings, StreamFormat};
use crate::error::Error;
use crate::request::{body_from, full_body, Body, Request, Response};
use crate::router::Binding;
use crate::transcode::body_stream;
use crate::transcode::fields::{self, BodyBinding, FieldPath, QueryOptions};
use crate::transcode::json::{self, FieldError};
use crate::transcode::wire::{self, ReplyError, ReplyPlan};
use crate::upstream::grpc::{self, GrpcCall, MessageStream, RequestMessages};

const HTTP_BODY: &str = "google.api.HttpBody";

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Error {
        Error::invalid(e.field, e.reason)
    }
}

// Constants, not `from_static` calls per request: those check the text every time.
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Call the binding's method for `request` and render the answer.
pub async fn call(
    settings: &Settings,
    pool: &DescriptorPool,
    binding: &Binding,
    vars: Vec<(usize, String)>,
    mut request: Request,
) -> Result<Response, Error> {
    let method = &binding.method;
    if let Some(timeout) = method.timeout {
        request.limit_deadline(timeout);
    }
    let metadata = metadata(settings, &request, &method.metadata);
    let accept_sse = accepts(&request.headers, "text/event-stream");
    let deadline = request.deadline;
    let request_id = request.id.clone();

    let messages = if method.descriptor.is_client_streaming() {
        RequestMessages::Stream(client_stream(settings, binding, vars, request)?)
    } else if let Some(frame) = direct_request(binding, &vars, &request) {
        RequestMessages::One(frame)
    } else {
        let message = request_message(settings, binding, &vars, request).await?;
        RequestMessages::One(grpc::framed(|out| {
            crate::transcode::encode::encode_to(&message, out)
        }))
    };

    let reply = method
        .upstream
        .call(GrpcCall {
            path: method.path.clone(),
            metadata,
            deadline,
            messages,
        })
        .await
        .map_err(|e| with_details(e, pool))?;

    let mut headers = HeaderMap::new();
    prefixed(&mut headers, "grpc-metadata-", &reply.headers);
    let output = method.descriptor.output();
    let mut messages = reply.messages;
    // A status that follows the response headers is answered with their metadata too.
    let failed = |error: Error| with_metadata(with_details(error, pool), &reply.headers);

    if !method.descriptor.is_server_streaming() {
        let first = messages.next().await.map_err(failed)?;
        let Some(bytes) = first else {
            return Err(Error::UpstreamProtocol {
                upstream: method.upstream.name().to_string(),
                reason: "unary call ended with OK but no message".into(),
            });
        };
        // Drain to the trailers (a unary answer has exactly one message).
        if messages.next().await.map_err(failed)?.is_some() {
            return Err(Error::UpstreamProtocol {
                upstream: method.upstream.name().to_string(),
                reason: "unary call answered more than one message".into(),
            });
        }
        prefixed(&mut headers, "grpc-trailer-", messages.trailers());
        let (body, content_type) = render_reply(
            &method.reply,
            &output,
            bytes,
            binding.response_body.as_ref(),
            &settings.json,
            method.upstream.name(),
        )?;
        let mut response = http::Response::new(full_body(body));
        *response.headers_mut() = headers;
        match content_type {
            None => {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, APPLICATION_JSON);
            }
            Some(content_type) => insert_content_type(response.headers_mut(), &content_type),
        }
        return Ok(response);
    }

    // A backend that fails before its first message may send its headers and then the error
    // in the trailers (rather than one Trailers-Only answer). When that error came in with the
    // headers it is answered like a unary call's: its own HTTP status and a plain error body.
    // Otherwise the stream starts now, without waiting: a watch may rightly stay silent long.
    let first = match messages.next().now_or_never() {
        Some(Err(error)) => return Err(failed(error)),
        Some(Ok(first)) => first,
        None => None,
    };
    let messages = stream::iter(first.map(Ok))
        .chain(messages.into_stream())
        .boxed();

    let format = if accept_sse {
        Format::Sse
    } else {
        Format::from(settings.stream_format)
    };
    let body = render_stream(
        messages,
        StreamContext {
            format,
            reply: method.reply.clone(),
            output,
            response_body: binding.response_body.clone(),
            options: settings.json.clone(),
            pool: pool.clone(),
            upstream: method.upstream.name().to_string(),
            request_id,
        },
    );
    let mut response = http::Response::new(body);
    *response.headers_mut() = headers;
    insert_content_type(response.headers_mut(), format.content_type());
    if format == Format::Sse {
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
    }
    Ok(response)
}

/// Fill `details` of an upstream status from `grpc-status-details-bin` through the pool.
/// `error` carrying the response metadata that came before it, when it is a status.
fn with_metadata(error: Error, metadata: &HeaderMap) -> Error {
    match error {
        Error::UpstreamStatus(mut status) if !metadata.is_empty() => {
            status.headers = metadata.clone();
            Error::UpstreamStatus(status)
        }
        other => other,
    }
}

pub fn with_details(error: Error, pool: &DescriptorPool) -> Error {
    match error {
        Error::UpstreamStatus(mut status) => {
            if let Some(bin) = status.details_bin.take() {
                if let Some(serde_json::Value::Array(details)) =
                    json::status_details_to_json(pool, &bin)
                {
                    status.details = details;
                }
            }
            Error::UpstreamStatus(status)
        }
        other => other,
    }
}

/// One reply message as the response body, with its content type when not
/// `application/json`. When the whole reply is the body (no `response_body`, not an
/// `HttpBody`), the JSON is rendered straight from the wire bytes through the method's plan;
/// otherwise the message is decoded and the binding picks what to show.
fn render_reply(
    reply: &ReplyPlan,
    output: &MessageDescriptor,
    bytes: Bytes,
    response_body: Option<&FieldPath>,
    options: &json::JsonOptions,
    upstream: &str,
) -> Result<(Vec<u8>, Option<String>), Error> {
    if response_body.is_none() && !reply.is_http_body() {
        // `render_reply` sizes the buffer for the reply.
        let mut body = Vec::new();
        return match wire::render_reply(reply, &bytes, options, &mut body) {
            Ok(()) => Ok((body, None)),
            Err(ReplyError::Decode(e)) => Err(invalid_message(output, &e, upstream)),
            Err(ReplyError::Render(e)) => Err(render_failure(e, upstream)),
        };
    }
    let message = decode(output, bytes, upstream)?;
    let rendered = fields::render_response(&message, response_body, options)
        .map_err(|e| render_failure(e, upstream))?;
    let content_type =
        (rendered.content_type != "application/json").then_some(rendered.content_type);
    Ok((rendered.body, content_type))
}

/// A reply message that cannot be shown as JSON (e.g. an Any of an unknown type) is the
/// upstream's fault as far as the client is concerned.
fn render_failure(error: FieldError, upstream: &str) -> Error {
    Error::UpstreamProtocol {
        upstream: upstream.to_string(),
        reason: format!("cannot render the reply as JSON: {error}"),
    }
}

pub fn decode(
    desc: &MessageDescriptor,
    bytes: Bytes,
    upstream: &str,
) -> Result<DynamicMessage, Error> {
    DynamicMessage::decode(desc.clone(), bytes).map_err(|e| invalid_message(desc, &e, upstream))
}

fn invalid_message(desc: &MessageDescriptor, error: &prost::DecodeError, upstream: &str) -> Error {
    Error::UpstreamProtocol {
        upstream: upstream.to_string(),
        reason: format!("invalid {} message: {error}", desc.full_name()),
    }
}

/// Headers forwarded as metadata: `authorization`, `x-request-id`, the configured allowlist,
/// then the method's configured metadata.
pub fn metadata(settings: &Settings, request: &Request, extra: &HeaderMap) -> HeaderMap {
    forwarded_metadata(settings, &request.headers, &request.id, extra)
}

/// [`metadata`] from the parts an operation keeps.
pub fn forwarded_metadata(
    settings: &Settings,
    headers: &HeaderMap,
    request_id: &str,
    extra: &HeaderMap,
) -> HeaderMap {
    // Room for what `upstream::grpc` adds (content-type, te, grpc-timeout) without regrowing.
    let mut out = HeaderMap::with_capacity(8 + extra.len());
    for name in [http::header::AUTHORIZATION, X_REQUEST_ID]
        .iter()
        .chain(settings.forward_headers.iter())
    {
        // A name listed twice (`forward_headers: [authorization]`) is forwarded once.
        if out.contains_key(name) {
            continue;
        }
        for value in headers.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    if let Ok(mut id) = HeaderValue::from_str(request_id) {
        // New for every request: HPACK would add each one to the connection's table (evicting
        // entries that do repeat) for nothing; "never indexed" skips that.
        id.set_sensitive(true);
        out.insert(X_REQUEST_ID, id);
    }
    for (name, value) in extra {
        out.insert(name.clone(), value.clone());
    }
    out
}

fn prefixed(out: &mut HeaderMap, prefix: &str, metadata: &HeaderMap) {
    for (name, value) in metadata {
        if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) {
            out.append(name, value.clone());
        }
    }
}

fn insert_content_type(headers: &mut HeaderMap, content_type: &str) {
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
}

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|m| {
                m.trim()
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(media))
            })
        })
}

fn is_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Whether the body binds to a `google.api.HttpBody` (raw bytes, any content type).
fn is_http_body(binding: &Binding) -> bool {
    match &binding.body {
        BodyBinding::None => false,
        BodyBinding::Whole => binding.method.descriptor.input().full_name() == HTTP_BODY,
        BodyBinding::Field(path) => {
            matches!(path.last().kind(), Kind::Message(m) if m.full_name() == HTTP_BODY)
        }
    }
}

/// 415 unless the body is JSON (or absent, or raw for HttpBody).
fn check_content_type(
    binding: &Binding,
    content_type: Option<&str>,
    body: &[u8],
    ndjson: bool,
) -> Result<(), Error> {
    if matches!(binding.body, BodyBinding::None) || body.is_empty() || is_http_body(binding) {
        return Ok(());
    }
    match content_type {
        None => Ok(()),
        Some(ct) if is_json(ct) => Ok(()),
        Some(ct)
            if ndjson
                && ct
                    .split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-ndjson")) =>
        {
            Ok(())
        }
        Some(ct) => Err(Error::UnsupportedMediaType {
            found: ct.to_string(),
            expected: if ndjson {
                "application/x-ndjson"
            } else {
                "application/json"
            },
        }),
    }
}

/// Read the whole (limited) body.
async fn collect(body: Body) -> Result<Bytes, Error> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(body_error)
}

/// A body that failed while being read: too large, or the client went away.
pub fn body_error(error: crate::request::BoxError) -> Error {
    if let Some(limit) = error.downcast_ref::<crate::policy::limits::TooLarge>() {
        return Error::PayloadTooLarge { limit: limit.0 };
    }
    Error::Cancelled
}

/// The request message of a binding that takes only top-level strings from the path
/// ([`Binding::direct`]), written straight as protobuf: see [`direct_message`]. `None` (the
/// general path, [`request_message`]) when the query may set fields too.
fn direct_request(binding: &Binding, vars: &[(usize, String)], request: &Request) -> Option<Bytes> {
    let fields = binding.direct.as_deref()?;
    if request.uri.query().is_some_and(|query| !query.is_empty()) {
        return None;
    }
    direct_message(fields, vars)
}

/// The path values `vars` of the string fields `fields` (`(number, index in path_fields)`, in
/// number order) as a message with its gRPC prefix: the bytes that encoding the message
/// [`request_message`] builds from them gives, without building a `DynamicMessage` first.
/// `None` when a value is missing or empty (a default, which encoding leaves out unless the
/// field has presence): the general path decides.
fn direct_message(fields: &[(u32, usize)], vars: &[(usize, String)]) -> Option<Bytes> {
    let value = |index: usize| {
        vars.iter()
            .find(|(i, _)| *i == index)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    };
    if fields.iter().any(|&(_, index)| value(index).is_none()) {
        return None;
    }
    Some(grpc::framed(|out| {
        for &(number, index) in fields {
            let text = value(index).unwrap_or_default();
            prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, out);
            prost::encoding::encode_varint(text.len() as u64, out);
            out.extend_from_slice(text.as_bytes());
        }
    }))
}

async fn request_message(
    settings: &Settings,
    binding: &Binding,
    vars: &[(usize, String)],
    request: Request,
) -> Result<DynamicMessage, Error> {
    let content_type = request.content_type().map(str::to_string);
    let query = request.uri.query().unwrap_or("").to_string();
    let body = if matches!(binding.body, BodyBinding::None) {
        Bytes::new()
    } else {
        collect(request.body).await?
    };
    check_content_type(binding, content_type.as_deref(), &body, false)?;
    let mut message = DynamicMessage::new(binding.method.descriptor.input());
    fields::bind_body(
        &mut message,
        &binding.body,
        content_type.as_deref(),
        &body,
        &settings.json,
    )?;
    bind_path_and_query(settings, binding, vars, &query, &mut message)?;
    Ok(message)
}

fn bind_path_and_query(
    settings: &Settings,
    binding: &Binding,
    vars: &[(usize, String)],
    query: &str,
    message: &mut DynamicMessage,
) -> Result<(), Error> {
    for (index, value) in vars {
        if let Some(path) = binding.path_fields.get(*index) {
            fields::set_from_str(message, path, value)?;
        }
    }
    if query.is_empty() {
        return Ok(());
    }
    let mut bound: Vec<FieldPath> = binding.path_fields.clone();
    if let BodyBinding::Field(path) = &binding.body {
        bound.push(path.clone());
    }
    fields::apply_query(
        message,
        query,
        &bound,
        matches!(binding.body, BodyBinding::Whole),
        QueryOptions {
            ignore_unknown: settings.ignore_unknown_query_parameters,
            keep_plus: !settings.query_unescape_plus,
        },
    )?;
    Ok(())
}

/// NDJSON request body → a stream of encoded messages, one per line, as lines complete.
/// What can be checked before the body is read (content type, query) is checked here, so such
/// a request never reaches the upstream.
fn client_stream(
    settings: &Settings,
    binding: &Binding,
    vars: Vec<(usize, String)>,
    request: Request,
) -> Result<MessageStream, Error> {
    let content_type = request.content_type().map(str::to_string);
    check_content_type(binding, content_type.as_deref(), b"x", true)?;
    // Every line is a whole request message, as with `body: "*"`: the query may not add to
    // it. Checked on a scratch message so that the error names the parameter.
    let query = request.uri.query().unwrap_or("");
    fields::apply_query(
        &mut DynamicMessage::new(binding.method.descriptor.input()),
        query,
        &[],
        true,
        QueryOptions {
            ignore_unknown: settings.ignore_unknown_query_parameters,
            keep_plus: !settings.query_unescape_plus,
        },
    )?;
    let options = settings.json.clone();
    let input = binding.method.descriptor.input();
    let path_fields = binding.path_fields.clone();
    Ok(body_stream::messages(request.body)
        .map(move |item| {
            let (place, text) = item?;
            let mut message = json::decode_message(&input, &text, &options)
                .map_err(|e| Error::invalid(e.field, format!("{place}: {}", e.reason)))?;
            for (index, value) in &vars {
                if let Some(path) = path_fields.get(*index) {
                    fields::set_from_str(&mut message, path, value)?;
                }
            }
            Ok(Bytes::from(crate::transcode::encode::encode(&message)))
        })
        .boxed())
}

/// How a server stream is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Ndjson,
    Sse,
    JsonArray,
}

impl From<StreamFormat> for Format {
    fn from(f: StreamFormat) -> Self {
        match f {
            StreamFormat::Ndjson => Format::Ndjson,
            StreamFormat::JsonArray => Format::JsonArray,
        }
    }
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Sse => "text/event-stream",
            Format::JsonArray => "application/json",
        }
    }
}

/// What rendering a stream of reply messages needs besides the messages.
struct StreamContext {
    format: Format,
    reply: Arc<ReplyPlan>,
    output: MessageDescriptor,
    response_body: Option<FieldPath>,
    options: json::JsonOptions,
    pool: DescriptorPool,
    upstream: String,
    /// For the log line of an error that ends the stream.
    request_id: String,
}

impl StreamContext {
    /// One reply message as JSON, or the error object that ends the stream.
    fn payload(&self, item: Result<Bytes, Error>) -> Result<Vec<u8>, Vec<u8>> {
        let rendered = item
            .map_err(|e| with_details(e, &self.pool))
            .and_then(|bytes| {
                render_reply(
                    &self.reply,
                    &self.output,
                    bytes,
                    self.response_body.as_ref(),
                    &self.options,
                    &self.upstream,
                )
            });
        rendered.map(|(body, _)| body).map_err(|error| {
            error.log(&self.request_id);
            serde_json::json!({ "error": error.render().to_json() })
                .to_string()
                .into_bytes()
        })
    }
}

/// Render a stream of reply messages. An error mid-stream ends the stream with an error
/// object (`{"error": {...}}` line, an SSE `event: error`, or the array's last element):
/// never a silent truncation.
fn render_stream(messages: BoxStream<'static, Result<Bytes, Error>>, cx: StreamContext) -> Body {
    struct State {
        messages: BoxStream<'static, Result<Bytes, Error>>,
        cx: StreamContext,
        first: bool,
        finished: bool,
    }
    let state = State {
        messages,
        cx,
        first: true,
        finished: false,
    };
    let chunks = stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        let format = state.cx.format;
        let mut out = Vec::new();
        let Some(item) = state.messages.next().await else {
            state.finished = true;
            if format != Format::JsonArray {
                return None;
            }
            out.extend_from_slice(if state.first { b"[]" } else { b"]" });
            return Some((Bytes::from(out), state));
        };
        let payload = state.cx.payload(item).unwrap_or_else(|error| {
            state.finished = true;
            error
        });
        match format {
            Format::Ndjson => {
                out.extend_from_slice(&payload);
                out.push(b'\n');
            }
            Format::Sse if state.finished => {
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(&payload);
                out.extend_from_slice(b"\n\n");
            }
            Format::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&payload);
                out.extend_from_slice(b"\n\n");
            }
            Format::JsonArray => {
                out.push(if state.first { b'[' } else { b',' });
                out.extend_from_slice(&payload);
                if state.finished {
                    out.push(b']');
                }
            }
        }
        state.first = false;
        Some((Bytes::from(out), state))
    });
    body_from(http_body_util::StreamBody::new(chunks.map(|bytes| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes))
    })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::router::build::direct_fields;

    fn paths(message: &str, names: &[&str]) -> Vec<FieldPath> {
        let desc = crate::transcode::test_pool()
            .get_message_by_name(&format!("omnigate.test.{message}"))
            .unwrap();
        names
            .iter()
            .map(|name| FieldPath::resolve(&desc, name).unwrap())
            .collect()
    }

    #[test]
    fn path_strings_written_directly_equal_the_encoded_message() {
        // Template order (display_name, then name) differs from number order (1, 14).
        let paths = paths("Book", &["display_name", "name"]);
        let plan = direct_fields(&paths, &BodyBinding::None).unwrap();
        let vars = vec![
            (0, "Ünïcode / 100%".to_string()),
            (1, "shelves/1/books/2".to_string()),
        ];
        let direct = direct_message(&plan, &vars).unwrap();

        let mut message = DynamicMessage::new(paths[0].root());
        for (index, value) in &vars {
            fields::set_from_str(&mut message, &paths[*index], value).unwrap();
        }
        let encoded = crate::transcode::encode::encode(&message);
        assert_eq!(direct[0], 0, "not compressed");
        assert_eq!(direct[1..5], (encoded.len() as u32).to_be_bytes());
        assert_eq!(direct[5..], encoded[..]);
    }

    #[test]
    fn only_top_level_singular_strings_from_a_body_less_binding_are_written_directly() {
        let cases: [(&[&str], BodyBinding, bool, &str); 8] = [
            (&["name"], BodyBinding::None, true, "a top-level string"),
            (&[], BodyBinding::None, true, "no fields at all"),
            (&["name"], BodyBinding::Whole, false, "a body"),
            (&["book.name"], BodyBinding::None, false, "nested"),
            (&["page_size"], BodyBinding::None, false, "an int32"),
            (&["tag"], BodyBinding::None, false, "repeated"),
            (&["order_by"], BodyBinding::None, false, "a oneof member"),
            (&["name", "name"], BodyBinding::None, false, "bound twice"),
        ];
        for (names, body, direct, why) in cases {
            let plan = direct_fields(&paths("Request", names), &body);
            assert_eq!(plan.is_some(), direct, "{why}");
        }
    }

    #[test]
    fn an_empty_or_missing_path_value_takes_the_general_path() {
        let plan = direct_fields(&paths("Book", &["name"]), &BodyBinding::None).unwrap();
        assert!(direct_message(&plan, &[(0, String::new())]).is_none());
        assert!(direct_message(&plan, &[]).is_none());
    }
}
