//! Build the [`RouteTable`] from the descriptor pool, the backends' service lists and the
//! config: read every method's `google.api.http` rule (and `additional_bindings`), add the
//! config's extra bindings and the auto-mapping, compile every template once, resolve every
//! field path once, and reject what cannot work (unknown methods and fields, duplicate
//! bindings) with errors that name the place and the fix.

use std::collections::HashMap;
use std::sync::Arc;

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

use super::{sort_http, Binding, GrpcMethod, RouteLine, RouteTable};
use crate::config::load::did_you_mean;
use crate::config::validate::{GrpcBackend, RouteRule, Validated};
use crate::descriptors::BackendApi;
use crate::transcode::fields::{BodyBinding, FieldPath};
use crate::transcode::template::{MatcherBuilder, PathTemplate};
use crate::transcode::wire::ReplyPlan;
use crate::upstream::grpc::GrpcUpstream;

/// A problem found while building, located at a config key when it comes from the config.
pub type BuildError = crate::config::KeyError;

fn error(at: Option<&str>, message: String) -> BuildError {
    BuildError {
        at: at.map(str::to_string),
        message,
        hint: None,
    }
}

/// One HttpRule, flattened from the annotation or the config.
struct Rule {
    http_method: String,
    template: String,
    body: String,
    response_body: String,
    /// `package.Service/Method`.
    method: String,
    /// Where it came from, for messages.
    origin: String,
    /// The config route it comes from (`routes[3]`) and the key of its pattern.
    at: Option<String>,
    pattern_at: Option<String>,
}

/// The part of a rule a problem is in.
enum Part {
    Pattern,
    Body,
    ResponseBody,
}

impl Rule {
    /// The config key to blame for a problem in `part`.
    fn key(&self, part: &Part) -> Option<String> {
        let at = self.at.as_deref()?;
        Some(match part {
            Part::Pattern => self.pattern_at.clone().unwrap_or_else(|| at.to_string()),
            Part::Body => format!("{at}.body"),
            Part::ResponseBody => format!("{at}.response_body"),
        })
    }

    /// How messages name the rule: its config route, or its origin.
    fn describe(&self) -> String {
        match &self.at {
            Some(at) => format!("{at} ({})", self.method),
            None => self.origin.clone(),
        }
    }
}

pub fn build(
    config: &Validated,
    apis: &[BackendApi],
    pool: &DescriptorPool,
    upstreams: &HashMap<String, GrpcUpstream>,
) -> Result<RouteTable, Vec<BuildError>> {
    let mut errors = Vec::new();
    let backends: HashMap<&str, &GrpcBackend> =
        config.grpc.iter().map(|b| (b.name.as_str(), b)).collect();

    // Every exposed method, with its upstream and timeout.
    let mut methods: HashMap<String, Arc<GrpcMethod>> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    // One reply plan per output type.
    let mut replies: HashMap<String, Arc<ReplyPlan>> = HashMap::new();
    for api in apis {
        let (Some(backend), Some(upstream)) = (
            backends.get(api.backend.as_str()),
            upstreams.get(&api.backend),
        ) else {
            errors.push(error(None, format!("no upstream named {}", api.backend)));
            continue;
        };
        for service_name in &api.services {
            let Some(service) = pool.get_service_by_name(service_name) else {
                errors.push(error(
                    Some(&backend.at),
                    format!("service {service_name} is not in the descriptors"),
                ));
                continue;
            };
            for method in service.methods() {
                let name = format!("{}/{}", service.full_name(), method.name());
                let rule = config.routes.iter().rev().find(|r| r.method == name);
                let grpc_method = GrpcMethod {
                    path: format!("/{name}")
                        .parse()
                        .map_err(|_| ())
                        .unwrap_or_else(|()| http::uri::PathAndQuery::from_static("/")),
                    name: name.clone(),
                    descriptor: method.clone(),
                    upstream: upstream.clone(),
                    // A backend-wide timeout bounds calls, not long-lived streams (a watch
                    // would be cut every `timeout`); an explicit route timeout still applies.
                    timeout: rule.and_then(|r| r.timeout).or_else(|| {
                        (!method.is_server_streaming() && !method.is_client_streaming())
                            .then_some(backend.timeout)
                            .flatten()
                    }),
                    metadata: rule.map(|r| r.metadata.clone()).unwrap_or_default(),
                    reply: replies
                        .entry(method.output().full_name().to_owned())
                        .or_insert_with(|| Arc::new(ReplyPlan::compile(&method.output())))
                        .clone(),
                };
                if methods
                    .insert(name.clone(), Arc::new(grpc_method))
                    .is_some()
                {
                    errors.push(error(
                        Some(&backend.at),
                        format!("method {name} is served by two upstreams"),
                    ));
                } else {
                    order.push(name);
                }
            }
        }
    }

    // Config rules must name a known method.
    for rule in &config.routes {
        if !methods.contains_key(&rule.method) {
            let candidates: Vec<&str> = methods.keys().map(String::as_str).collect();
            let hint = did_you_mean(&rule.method, candidates.iter().copied())
                .map(|m| format!("did you mean `{m}`?"));
            errors.push(BuildError {
                at: Some(format!("{}.grpc", rule.at)),
                message: format!(
                    "method {:?} is not served by any gRPC upstream",
                    rule.method
                ),
                hint: hint.or_else(|| Some(method_hint(&methods))),
            });
        }
    }

    let mut builder = MatcherBuilder::new();
    // (HTTP method, canonical template) -> the rule that took it, to name both in conflicts.
    let mut taken: HashMap<(String, String), String> = HashMap::new();
    let mut listing = Vec::new();
    let http_ext = pool.get_extension_by_name("google.api.http");
    // Rules in three stages: the descriptors' own bindings, then the config's, then the
    // auto-mapping, so a conflict is blamed on the config route that caused it (with its
    // line), never on an annotation. The listing stays grouped by method.
    let mut staged: Vec<(usize, usize, Rule)> = Vec::new();
    for (index, name) in order.iter().enumerate() {
        let method = &methods[name];
        if let Some(ext) = &http_ext {
            let options = method.descriptor.options();
            if options.has_extension(ext) {
                if let Value::Message(rule) = options.get_extension(ext).as_ref() {
                    let mut rules = Vec::new();
                    flatten_rule(rule, name, &mut rules, true);
                    staged.extend(rules.into_iter().map(|r| (0, index, r)));
                }
            }
        }
        for rule in config.routes.iter().filter(|r| &r.method == name) {
            if let Some(rule) = config_rule(rule) {
                staged.push((1, index, rule));
            }
        }
        if config.settings.auto_mapping {
            let rule = Rule {
                http_method: "POST".into(),
                template: format!(
                    "/{}/{}",
                    method.descriptor.parent_service().full_name(),
                    method.descriptor.name()
                ),
                body: "*".into(),
                response_body: String::new(),
                method: name.clone(),
                origin: format!("{name} (auto-mapping)"),
                at: None,
                pattern_at: None,
            };
            staged.push((2, index, rule));
        }
    }
    // (position as pushed, i.e. grouped by method; stage; method; rule), by stage.
    let mut staged: Vec<(usize, usize, usize, Rule)> = staged
        .into_iter()
        .enumerate()
        .map(|(position, (stage, index, rule))| (position, stage, index, rule))
        .collect();
    staged.sort_by_key(|(_, stage, _, _)| *stage);
    let mut listed: Vec<(usize, RouteLine)> = Vec::new();
    for (position, _, index, rule) in staged {
        let name = &order[index];
        let method = &methods[name];
        match compile(method, &rule) {
            Ok((template, binding)) => {
                let http_method = binding.http_method.clone();
                let key = (http_method.clone(), template.canonical());
                let line = RouteLine {
                    method: http_method.clone(),
                    path: binding.template.clone(),
                    target: format!("grpc {name}"),
                };
                match builder.insert(&http_method, template, binding) {
                    Ok(()) => {
                        listed.push((position, line));
                        taken.insert(key, rule.describe());
                    }
                    Err(dup) => errors.push(BuildError {
                        at: rule.key(&Part::Pattern),
                        message: format!(
                            "{} {:?} of {} matches the same paths as {} {:?} of {}",
                            dup.method,
                            dup.new,
                            rule.describe(),
                            dup.method,
                            dup.existing,
                            taken.get(&key).map_or("another binding", String::as_str),
                        ),
                        hint: Some("change one of the two templates, or remove one".into()),
                    }),
                }
            }
            Err((part, message)) => errors.push(error(
                rule.key(&part).as_deref(),
                format!("{}: {message}", rule.origin),
            )),
        }
    }
    listed.sort_by_key(|(position, _)| *position);
    listing.extend(listed.into_iter().map(|(_, line)| line));

    let mut http = config.http.clone();
    sort_http(&mut http);
    for route in &http {
        let host = route
            .host
            .as_deref()
            .map(|h| format!(" (host {h})"))
            .unwrap_or_default();
        listing.push(RouteLine {
            method: "*".into(),
            path: if route.prefix == "/" {
                "/**".into()
            } else {
                format!("{}/**", route.prefix)
            },
            target: format!(
                "http {}{}{host}",
                route.upstream.name,
                if route.strip_prefix {
                    " (prefix stripped)"
                } else {
                    ""
                }
            ),
        });
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(RouteTable {
        bindings: builder.build(),
        http,
        methods,
        unescape: config.settings.unescape,
        listing,
    })
}

fn method_hint(methods: &HashMap<String, Arc<GrpcMethod>>) -> String {
    let mut names: Vec<&str> = methods.keys().map(String::as_str).collect();
    names.sort_unstable();
    if names.is_empty() {
        "no gRPC methods are known; check the grpc upstreams".into()
    } else {
        format!(
            "known methods: {}",
            names.iter().take(8).copied().collect::<Vec<_>>().join(", ")
        )
    }
}

/// Read a `google.api.HttpRule` message into rules (its own pattern and, one level down, its
/// additional bindings).
fn flatten_rule(rule: &DynamicMessage, method: &str, out: &mut Vec<Rule>, top: bool) {
    let text = |field: &str| match rule.get_field_by_name(field).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let mut pattern = None;
    for verb in ["get", "put", "post", "delete", "patch"] {
        if rule.has_field_by_name(verb) {
            pattern = Some((verb.to_ascii_uppercase(), text(verb)));
        }
    }
    if rule.has_field_by_name("custom") {
        if let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref() {
            let get = |f: &str| match custom.get_field_by_name(f).as_deref() {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            pattern = Some((get("kind").to_ascii_uppercase(), get("path")));
        }
    }
    if let Some((http_method, template)) = pattern {
        out.push(Rule {
            http_method,
            template,
            body: text("body"),
            response_body: text("response_body"),
            method: method.to_string(),
            origin: format!("{method} (google.api.http)"),
            at: None,
            pattern_at: None,
        });
    }
    if top {
        if let Some(Value::List(extra)) = rule.get_field_by_name("additional_bindings").as_deref() {
            for binding in extra {
                if let Value::Message(binding) = binding {
                    flatten_rule(binding, method, out, false);
                }
            }
        }
    }
}

fn config_rule(rule: &RouteRule) -> Option<Rule> {
    let (http_method, template) = rule.pattern.as_ref()?;
    Some(Rule {
        http_method: http_method.clone(),
        template: template.as_str().to_string(),
        body: rule.body.clone().unwrap_or_default(),
        response_body: rule.response_body.clone().unwrap_or_default(),
        method: rule.method.clone(),
        origin: format!("{} (config)", rule.method),
        at: Some(rule.at.clone()),
        pattern_at: Some(rule.pattern_at.clone()),
    })
}

fn compile(
    method: &Arc<GrpcMethod>,
    rule: &Rule,
) -> Result<(PathTemplate, Binding), (Part, String)> {
    if rule.http_method.is_empty() || http::Method::from_bytes(rule.http_method.as_bytes()).is_err()
    {
        return Err((
            Part::Pattern,
            format!("{:?} is not an HTTP method", rule.http_method),
        ));
    }
    let template =
        PathTemplate::parse(&rule.template).map_err(|e| (Part::Pattern, e.to_string()))?;
    let input = method.descriptor.input();
    let path_fields = template
        .variables()
        .iter()
        .map(|v| {
            let path = FieldPath::resolve(&input, &v.field_path).map_err(|e| {
                format!(
                    "path variable {{{}}} in {}: {e}",
                    v.field_path, rule.template
                )
            })?;
            if path.last().is_map()
                || matches!(path.last().kind(), prost_reflect::Kind::Message(_))
                    && !is_string_message(path.last())
            {
                return Err(format!(
                    "path variable {{{}}} must name a scalar field",
                    v.field_path
                ));
            }
            Ok(path)
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| (Part::Pattern, e))?;
    let body = match rule.body.as_str() {
        "" => BodyBinding::None,
        "*" => BodyBinding::Whole,
        field => BodyBinding::Field(
            FieldPath::resolve(&input, field)
                .map_err(|e| (Part::Body, format!("body {field:?}: {e}")))?,
        ),
    };
    let response_body = match rule.response_body.as_str() {
        "" => None,
        field => Some(
            FieldPath::resolve(&method.descriptor.output(), field)
                .map_err(|e| (Part::ResponseBody, format!("response_body {field:?}: {e}")))?,
        ),
    };
    if method.descriptor.is_client_streaming() && !matches!(body, BodyBinding::Whole) {
        return Err((
            Part::Body,
            "a client-streaming method needs body: \"*\" (one JSON message per line)".into(),
        ));
    }
    let direct = direct_fields(&path_fields, &body);
    let binding = Binding {
        method: method.clone(),
        http_method: rule.http_method.clone(),
        template: rule.template.clone(),
        path_fields,
        body,
        response_body,
        direct,
    };
    Ok((template, binding))
}

/// [`Binding::direct`]: the path's fields in number order, if each is a top-level, singular
/// string field outside any oneof, bound once, and nothing comes from a body.
pub(crate) fn direct_fields(
    path_fields: &[FieldPath],
    body: &BodyBinding,
) -> Option<Box<[(u32, usize)]>> {
    if !matches!(body, BodyBinding::None) {
        return None;
    }
    let mut fields = path_fields
        .iter()
        .enumerate()
        .map(|(index, path)| {
            let field = path.last();
            (path.is_top_level()
                && !field.is_list()
                && !field.is_map()
                && matches!(field.kind(), prost_reflect::Kind::String)
                && field.containing_oneof().is_none())
            .then(|| (field.number(), index))
        })
        .collect::<Option<Vec<_>>>()?;
    fields.sort_unstable();
    if fields.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return None;
    }
    Some(fields.into())
}

/// Message types with a string JSON form can be bound from a path segment.
fn is_string_message(field: &prost_reflect::FieldDescriptor) -> bool {
    match field.kind() {
        prost_reflect::Kind::Message(m) => matches!(
            m.full_name(),
            "google.protobuf.Timestamp"
                | "google.protobuf.Duration"
                | "google.protobuf.FieldMask"
                | "google.protobuf.StringValue"
                | "google.protobuf.BytesValue"
                | "google.protobuf.Int32Value"
                | "google.protobuf.Int64Value"
                | "google.protobuf.UInt32Value"
                | "google.protobuf.UInt64Value"
                | "google.protobuf.FloatValue"
                | "google.protobuf.DoubleValue"
                | "google.protobuf.BoolValue"
        ),
        _ => false,
    }
}

/// Whether a method only reads (used by GraphQL and for listing).
pub fn is_read_only(method: &MethodDescriptor) -> bool {
    let options = method.options();
    matches!(
        options.get_field_by_name("idempotency_level").as_deref(),
        Some(Value::EnumNumber(1))
    )
}
