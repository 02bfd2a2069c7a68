//! HTTP-backed fields: a field resolved by an HTTP upstream answering JSON, its type declared
//! in SDL (`graphql.sdl`), so REST services join the same graph.
//!
//! `path` placeholders `{name}` take the field's argument `name`, else the parent's JSON field
//! `name`, percent-encoded as one path or query component.

use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputValue, Object, SchemaBuilder, TypeRef,
};
use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use async_graphql::{Name, Value};
use http_body_util::BodyExt;

use super::schema::{field_error, operation};
use super::GraphqlSettings;
use crate::error::{Code, Error, UpstreamStatus};
use crate::request::{empty_body, Protocol, Request};
use crate::router::build::BuildError;
use crate::upstream::http::HttpUpstream;

#[derive(Debug)]
pub(crate) struct HttpField {
    pub(crate) on: String,
    field: String,
    ty: TypeRef,
    upstream: HttpUpstream,
    path: String,
    arguments: Vec<(String, TypeRef)>,
    select: Option<String>,
    description: Option<String>,
    pub(crate) at: String,
}

/// Parse a GraphQL type reference such as `[Review!]!`.
pub(crate) fn parse_type(text: &str) -> Option<TypeRef> {
    let ty = Type::new(text.trim())?;
    Some(convert(&ty))
}

fn convert(ty: &Type) -> TypeRef {
    let base = match &ty.base {
        BaseType::Named(name) => TypeRef::Named(name.to_string().into()),
        BaseType::List(inner) => TypeRef::List(Box::new(convert(inner))),
    };
    if ty.nullable {
        base
    } else {
        TypeRef::NonNull(Box::new(base))
    }
}

pub(crate) fn resolve(
    settings: &GraphqlSettings,
    errors: &mut Vec<BuildError>,
) -> Vec<Arc<HttpField>> {
    let mut fields = Vec::new();
    for (i, config) in settings.http_fields.iter().enumerate() {
        let at = format!("graphql.http_fields[{i}]");
        let Some(ty) = parse_type(&config.ty) else {
            errors.push(BuildError {
                at: Some(format!("{at}.type")),
                message: format!("{:?} is not a GraphQL type", config.ty),
                hint: None,
            });
            continue;
        };
        let Some(route) = settings
            .http_routes
            .iter()
            .find(|r| *r.upstream.name == *config.upstream)
        else {
            let names: Vec<&str> = settings
                .http_routes
                .iter()
                .map(|r| &*r.upstream.name)
                .collect();
            errors.push(BuildError {
                at: Some(format!("{at}.upstream")),
                message: format!("no http route named {:?}", config.upstream),
                hint: crate::config::load::did_you_mean(&config.upstream, names)
                    .map(|n| format!("did you mean `{n}`?")),
            });
            continue;
        };
        if !config.path.starts_with('/') {
            errors.push(BuildError {
                at: Some(format!("{at}.path")),
                message: "must start with '/'".into(),
                hint: None,
            });
            continue;
        }
        let mut arguments = Vec::new();
        for (name, ty) in &config.arguments {
            match parse_type(ty) {
                Some(t) => arguments.push((name.clone(), t)),
                None => errors.push(BuildError {
                    at: Some(format!("{at}.arguments.{name}")),
                    message: format!("{ty:?} is not a GraphQL type"),
                    hint: None,
                }),
            }
        }
        fields.push(Arc::new(HttpField {
            on: config.on.clone(),
            field: config.field.clone(),
            ty,
            upstream: route.upstream.clone(),
            path: config.path.clone(),
            arguments,
            select: config.select.clone(),
            description: config.description.clone(),
            at,
        }));
    }
    fields
}

pub(crate) fn field(http_field: &Arc<HttpField>) -> Field {
    let f = http_field.clone();
    let mut field = Field::new(
        http_field.field.clone(),
        http_field.ty.clone(),
        move |ctx| {
            let f = f.clone();
            FieldFuture::new(async move {
                let op = operation(&ctx)?;
                let parent = ctx.parent_value.downcast_ref::<serde_json::Value>();
                let path = fill(&f.path, |name| {
                    if let Some(arg) = ctx.args.get(name) {
                        return arg.as_value().clone().into_json().ok();
                    }
                    parent.and_then(|p| p.get(name)).cloned()
                });
                let json = match fetch(op, &f.upstream, &path).await {
                    Ok(json) => json,
                    Err(e) => return field_error(&ctx, &e),
                };
                let json = match &f.select {
                    Some(key) => json.get(key).cloned().unwrap_or(serde_json::Value::Null),
                    None => json,
                };
                Ok(sdl_value(json, &f.ty))
            })
        },
    );
    for (name, ty) in &http_field.arguments {
        field = field.argument(InputValue::new(name.clone(), ty.clone()));
    }
    if let Some(description) = &http_field.description {
        field = field.description(description.clone());
    }
    field
}

/// Replace `{name}` placeholders with percent-encoded values.
fn fill(template: &str, lookup: impl Fn(&str) -> Option<serde_json::Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + end];
        let value = match lookup(name) {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        out.extend(percent_encoding::utf8_percent_encode(
            &value,
            percent_encoding::NON_ALPHANUMERIC,
        ));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

async fn fetch(
    op: &crate::pipeline::Operation,
    upstream: &HttpUpstream,
    path: &str,
) -> Result<serde_json::Value, Error> {
    let mut headers = http::HeaderMap::new();
    if let Some(auth) = op.headers.get(http::header::AUTHORIZATION) {
        headers.insert(http::header::AUTHORIZATION, auth.clone());
    }
    for name in &op.gateway.settings.forward_headers {
        if let Some(v) = op.headers.get(name) {
            headers.insert(name.clone(), v.clone());
        }
    }
    if let Ok(id) = http::HeaderValue::from_str(&op.request_id) {
        headers.insert("x-request-id", id);
    }
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    let request = Request {
        id: op.request_id.clone(),
        protocol: Protocol::GraphQl,
        method: http::Method::GET,
        uri: path
            .parse()
            .map_err(|e| Error::internal(format!("bad path {path}: {e}")))?,
        version: http::Version::HTTP_11,
        host_lines: 1,
        host: None,
        peer: None,
        secure: false,
        headers,
        principal: None,
        deadline: op.deadline,
        body: empty_body(),
        upgrade: None,
    };
    let response = upstream
        .forward(&op.gateway.http_client, request, path)
        .await?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::UpstreamUnavailable {
            upstream: upstream.name.to_string(),
            reason: e.to_string(),
        })?;
    let bytes = body.to_bytes();
    if !status.is_success() {
        return Err(Error::UpstreamStatus(Box::new(UpstreamStatus {
            code: Code::from_http_status(status),
            message: format!(
                "upstream {} answered HTTP {}",
                upstream.name,
                status.as_u16()
            ),
            details: Vec::new(),
            details_bin: None,
            trailers: http::HeaderMap::new(),
            headers: http::HeaderMap::new(),
        })));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::UpstreamProtocol {
        upstream: upstream.name.to_string(),
        reason: format!("answer is not JSON: {e}"),
    })
}

/// A JSON value as the GraphQL type `ty` declared in SDL.
fn sdl_value(json: serde_json::Value, ty: &TypeRef) -> Option<FieldValue<'static>> {
    match (ty, json) {
        (_, serde_json::Value::Null) => None,
        (TypeRef::NonNull(inner), json) => sdl_value(json, inner),
        (TypeRef::List(inner), serde_json::Value::Array(items)) => Some(FieldValue::list(
            items
                .into_iter()
                .filter_map(|i| sdl_value(i, inner))
                .collect::<Vec<_>>(),
        )),
        (TypeRef::Named(name), json) => match name.as_ref() {
            "String" | "Int" | "Float" | "Boolean" | "JSON" => {
                Value::from_json(json).ok().map(FieldValue::value)
            }
            "ID" => Some(FieldValue::value(match json {
                serde_json::Value::String(s) => Value::String(s),
                other => Value::String(other.to_string()),
            })),
            _ if json.is_object() => Some(FieldValue::owned_any(json)),
            _ => match json {
                serde_json::Value::String(s) => Some(FieldValue::value(Value::Enum(Name::new(s)))),
                _ => None,
            },
        },
        _ => None,
    }
}

/// A field of an SDL object: reads the same-named key of the parent JSON.
fn sdl_field(name: &str, ty: TypeRef) -> Field {
    let key = name.to_string();
    let ty_for_resolver = ty.clone();
    Field::new(name, ty, move |ctx| {
        let value = ctx
            .parent_value
            .downcast_ref::<serde_json::Value>()
            .and_then(|p| p.get(&key))
            .cloned()
            .and_then(|v| sdl_value(v, &ty_for_resolver));
        FieldFuture::Value(value)
    })
}

/// Register the object and enum types declared in the SDL files.
pub(crate) fn register_sdl(
    mut builder: SchemaBuilder,
    settings: &GraphqlSettings,
) -> (SchemaBuilder, Vec<BuildError>) {
    let mut errors = Vec::new();
    for (file, text) in &settings.sdl {
        let document = match async_graphql::parser::parse_schema(text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(BuildError {
                    at: Some("graphql.sdl".into()),
                    message: format!("{file}: {e}"),
                    hint: None,
                });
                continue;
            }
        };
        for definition in document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let ty = ty.node;
            match ty.kind {
                TypeKind::Object(object) => {
                    let mut o = Object::new(ty.name.node.to_string());
                    if let Some(d) = ty.description {
                        o = o.description(d.node);
                    }
                    for field in object.fields {
                        let f = field.node;
                        let mut gf = sdl_field(&f.name.node, convert(&f.ty.node));
                        if let Some(d) = f.description {
                            gf = gf.description(d.node);
                        }
                        o = o.field(gf);
                    }
                    builder = builder.register(o);
                }
                TypeKind::Enum(e) => {
                    let mut en = Enum::new(ty.name.node.to_string());
                    for value in e.values {
                        en = en.item(value.node.value.node.to_string());
                    }
                    builder = builder.register(en);
                }
                _ => errors.push(BuildError {
                    at: Some("graphql.sdl".into()),
                    message: format!(
                        "{file}: only object and enum types are supported (found {})",
                        ty.name.node
                    ),
                    hint: None,
                }),
            }
        }
    }
    (builder, errors)
}
