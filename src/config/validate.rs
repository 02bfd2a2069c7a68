//! Raw config → runtime types: addresses, URLs, durations, header names and templates parsed
//! once, every error collected (not just the first) and located at its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::load::{ConfigError, ConfigErrors, SourceMap};
use super::{Config, RouteConfig, StreamFormatConfig, UnescapeConfig};
use crate::transcode::json::JsonOptions;
use crate::transcode::template::{PathTemplate, UnescapeMode};
use crate::upstream::http::HttpUpstream;

/// Gateway-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub max_body_bytes: u64,
    pub json: JsonOptions,
    pub ignore_unknown_query_parameters: bool,
    /// `+` in a query string is a space (false: a plus sign, as in Envoy).
    pub query_unescape_plus: bool,
    pub unescape: UnescapeMode,
    pub stream_format: StreamFormat,
    pub auto_mapping: bool,
    /// Request headers forwarded as metadata besides `authorization` and `x-request-id`.
    pub forward_headers: Vec<HeaderName>,
    pub shutdown_grace: Duration,
    /// HTTP/1 clients get this long to send a request's headers (`limits.header_read_timeout`).
    pub header_read_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFormat {
    Ndjson,
    JsonArray,
}

/// Where a gRPC backend's API description comes from.
#[derive(Clone, Debug)]
pub enum DescriptorSource {
    Files(Vec<PathBuf>),
    /// Server reflection, fetched again every `refresh` (never when `None`).
    Reflection {
        refresh: Option<Duration>,
    },
}

#[derive(Clone, Debug)]
pub struct GrpcBackend {
    pub name: String,
    pub urls: Vec<http::Uri>,
    pub source: DescriptorSource,
    /// Services to expose; empty means all.
    pub services: Vec<String>,
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    /// Config key path, for errors found later.
    pub at: String,
}

#[derive(Clone, Debug)]
pub struct HttpRoute {
    /// Normalized: starts with '/', no trailing '/' unless it is just "/".
    pub prefix: String,
    pub host: Option<String>,
    pub strip_prefix: bool,
    pub upstream: HttpUpstream,
}

/// A REST binding or a per-method override, checked against descriptors by `router::build`.
#[derive(Clone, Debug)]
pub struct RouteRule {
    /// `package.Service/Method`.
    pub method: String,
    pub pattern: Option<(String, PathTemplate)>,
    /// Config key of the pattern (`routes[3].get`, `routes[3].custom.path`).
    pub pattern_at: String,
    pub body: Option<String>,
    pub response_body: Option<String>,
    pub timeout: Option<Duration>,
    pub metadata: HeaderMap,
    /// Config key path (`routes[3]`), for errors found later.
    pub at: String,
}

/// Everything the gateway is built from.
#[derive(Clone, Debug)]
pub struct Validated {
    pub settings: Settings,
    pub grpc: Vec<GrpcBackend>,
    pub http: Vec<HttpRoute>,
    pub routes: Vec<RouteRule>,
    /// The GraphQL section; checked against the descriptors when the schema is built.
    pub graphql: super::GraphqlConfig,
    /// The SDL files of `graphql.sdl`: (path as written, text).
    pub graphql_sdl: Vec<(String, String)>,
}

/// Collects located errors while validating.
struct Check<'a> {
    source: &'a SourceMap,
    errors: Vec<ConfigError>,
}

impl Check<'_> {
    fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.source.error(path, message));
    }

    fn fail_hint(&mut self, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        self.errors
            .push(self.source.error_with_hint(path, message, hint));
    }

    fn duration(&mut self, path: &str, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.fail_hint(
                    path,
                    format!("invalid duration {text:?}: {e}"),
                    "write e.g. 500ms, 5s or 1m",
                );
                None
            }
        }
    }

    /// A timeout: a duration above zero (zero would fail every call at once).
    fn timeout(&mut self, path: &str, text: &str) -> Option<Duration> {
        let d = self.duration(path, text)?;
        if d.is_zero() {
            self.fail_hint(
                path,
                format!("timeout {text:?} is zero, so every call would time out at once"),
                "leave the key out for no timeout, or write e.g. 5s",
            );
            return None;
        }
        Some(d)
    }

    fn url(&mut self, path: &str, text: &str) -> Option<http::Uri> {
        match text.parse::<http::Uri>() {
            Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => Some(uri),
            Ok(_) => {
                self.fail_hint(
                    path,
                    format!("{text:?} is not an absolute URL"),
                    "write e.g. http://127.0.0.1:50051",
                );
                None
            }
            Err(e) => {
                self.fail_hint(
                    path,
                    format!("invalid URL {text:?}: {e}"),
                    "write e.g. http://127.0.0.1:50051",
                );
                None
            }
        }
    }
}

/// Validate `config`; relative descriptor paths are resolved against `base_dir`.
pub fn validate(
    config: &Config,
    source: &SourceMap,
    base_dir: &Path,
) -> Result<Validated, ConfigErrors> {
    let (validated, errors) = validate_all(config, source, base_dir);
    if errors.is_empty() {
        Ok(validated)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Like [`validate`], but always returns what validated (failing entries left out, failing
/// settings at their defaults) beside every error, so later checks can look for more errors.
pub fn validate_all(
    config: &Config,
    source: &SourceMap,
    base_dir: &Path,
) -> (Validated, Vec<ConfigError>) {
    let mut check = Check {
        source,
        errors: Vec::new(),
    };

    let listen = match config.listen.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            check.fail_hint(
                "listen",
                format!("{:?} is not a socket address", config.listen),
                "write e.g. 127.0.0.1:8080",
            );
            None
        }
    };
    if config.limits.max_body_bytes == 0 {
        check.fail("limits.max_body_bytes", "must be greater than 0");
    }
    if config.limits.max_json_depth == 0 {
        check.fail("limits.max_json_depth", "must be greater than 0");
    }
    let t = &config.transcoding;
    let mut forward_headers = Vec::new();
    for (i, name) in t.forward_headers.iter().enumerate() {
        match HeaderName::from_bytes(name.trim().as_bytes()) {
            Ok(h) => forward_headers.push(h),
            Err(_) => check.fail(
                &format!("transcoding.forward_headers[{i}]"),
                format!("{name:?} is not a header name"),
            ),
        }
    }
    let shutdown_grace = check.duration("shutdown_grace", &config.shutdown_grace);
    let header_read_timeout = check.duration(
        "limits.header_read_timeout",
        &config.limits.header_read_timeout,
    );
    if header_read_timeout.is_some_and(|t| t.is_zero()) {
        check.fail("limits.header_read_timeout", "must be greater than 0");
    }

    let mut names = std::collections::HashMap::new();
    let mut grpc = Vec::new();
    for (i, g) in config.grpc.iter().enumerate() {
        let at = format!("grpc[{i}]");
        if g.name.trim().is_empty() {
            check.fail(&format!("{at}.name"), "must not be empty");
        } else if let Some(first) = names.get(&g.name) {
            check.fail_hint(
                &format!("{at}.name"),
                format!("grpc[{first}] is already named {:?}", g.name),
                "give every upstream its own name",
            );
        } else {
            names.insert(g.name.clone(), i);
        }
        let mut urls = Vec::new();
        match (&g.url, g.urls.is_empty()) {
            (Some(_), false) => check.fail_hint(
                &format!("{at}.urls"),
                "both `url` and `urls` are set",
                "keep one of them",
            ),
            (None, true) => check.fail_hint(&at, "no address", "add `url: http://host:port`"),
            _ => {}
        }
        if let Some(url) = &g.url {
            urls.extend(check.url(&format!("{at}.url"), url));
        }
        for (j, url) in g.urls.iter().enumerate() {
            urls.extend(check.url(&format!("{at}.urls[{j}]"), url));
        }
        let source = if g.descriptors.is_empty() {
            let path = format!("{at}.reflection_refresh");
            let refresh = check.duration(&path, &g.reflection_refresh);
            if refresh.is_some_and(|d| !d.is_zero() && d < Duration::from_millis(100)) {
                check.fail_hint(
                    &path,
                    format!(
                        "refreshing every {:?} would keep the gateway busy asking the backend",
                        g.reflection_refresh
                    ),
                    "use 100ms or more (e.g. 30s), or 0s to turn the refresh off",
                );
            }
            DescriptorSource::Reflection {
                refresh: refresh.filter(|d| !d.is_zero()),
            }
        } else {
            let mut files = Vec::new();
            for (j, file) in g.descriptors.iter().enumerate() {
                let path = base_dir.join(file);
                if !path.is_file() {
                    check.fail_hint(
                        &format!("{at}.descriptors[{j}]"),
                        format!("descriptor set {} does not exist", path.display()),
                        "paths are relative to the config file; build the file with \
                         `protoc --include_imports --descriptor_set_out=FILE`, or drop \
                         `descriptors` to use server reflection",
                    );
                }
                files.push(path);
            }
            DescriptorSource::Files(files)
        };
        let timeout = g
            .timeout
            .as_ref()
            .and_then(|t| check.timeout(&format!("{at}.timeout"), t));
        let connect_timeout = check.timeout(&format!("{at}.connect_timeout"), &g.connect_timeout);
        grpc.push(GrpcBackend {
            name: g.name.clone(),
            urls,
            source,
            services: g.services.clone(),
            timeout,
            connect_timeout: connect_timeout.unwrap_or(Duration::from_secs(5)),
            at,
        });
    }

    let mut http = Vec::new();
    // (prefix, host, index in the file) of every route whose prefix is valid.
    let mut seen: Vec<(String, Option<String>, usize)> = Vec::new();
    for (i, h) in config.http.iter().enumerate() {
        let at = format!("http[{i}]");
        let name = h.name.clone().unwrap_or_else(|| format!("http[{i}]"));
        let host = h.host.as_ref().map(|host| host.to_ascii_lowercase());
        let prefix = match normalize_prefix(&h.prefix) {
            Ok(p) => p,
            Err(e) => {
                check.fail(&format!("{at}.prefix"), e);
                continue;
            }
        };
        if let Some((_, _, j)) = seen.iter().find(|(p, h, _)| *p == prefix && *h == host) {
            check.fail_hint(
                &format!("{at}.prefix"),
                format!("prefix {prefix:?} is already routed by http[{j}]"),
                "give each route its own prefix (or host), or remove one",
            );
        } else {
            seen.push((prefix.clone(), host.clone(), i));
        }
        let timeout = h
            .timeout
            .as_ref()
            .and_then(|t| check.timeout(&format!("{at}.timeout"), t));
        let Some(url) = check.url(&format!("{at}.url"), &h.url) else {
            continue;
        };
        match HttpUpstream::new(&name, &url, h.preserve_host, timeout) {
            Ok(upstream) => http.push(HttpRoute {
                prefix,
                host,
                strip_prefix: h.strip_prefix,
                upstream,
            }),
            Err(e) => check.fail(&format!("{at}.url"), e),
        }
    }

    let mut routes = Vec::new();
    for (i, r) in config.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if let Some(rule) = route_rule(&mut check, r, &at) {
            routes.push(rule);
        }
    }

    let g = &config.graphql;
    if !g.path.starts_with('/') {
        check.fail_hint(
            "graphql.path",
            format!("{:?} must start with '/'", g.path),
            "write e.g. /graphql",
        );
    }
    for (key, list) in [("queries", &g.queries), ("mutations", &g.mutations)] {
        for (i, method) in list.iter().enumerate() {
            if normalize_method(method).is_none() {
                check.fail(
                    &format!("graphql.{key}[{i}]"),
                    format!("{method:?} is not a method name (package.Service/Method)"),
                );
            }
        }
    }
    let mut graphql_sdl: Vec<(String, String)> = g
        .types
        .iter()
        .map(|text| ("graphql.types".to_string(), text.clone()))
        .collect();
    for (i, file) in g.sdl.iter().enumerate() {
        match std::fs::read_to_string(base_dir.join(file)) {
            Ok(text) => graphql_sdl.push((file.clone(), text)),
            Err(e) => check.fail(
                &format!("graphql.sdl[{i}]"),
                format!("cannot read {}: {e}", base_dir.join(file).display()),
            ),
        }
    }

    let settings = Settings {
        listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
        max_body_bytes: config.limits.max_body_bytes,
        json: JsonOptions {
            use_proto_names: t.use_proto_names,
            emit_unpopulated: t.emit_unpopulated,
            ignore_unknown_fields: t.ignore_unknown_fields,
            max_depth: config.limits.max_json_depth,
        },
        ignore_unknown_query_parameters: t.ignore_unknown_query_parameters,
        query_unescape_plus: t.query_unescape_plus,
        unescape: match t.url_unescape {
            UnescapeConfig::AllCharactersExceptReserved => {
                UnescapeMode::AllCharactersExceptReserved
            }
            UnescapeConfig::AllCharactersExceptSlash => UnescapeMode::AllCharactersExceptSlash,
            UnescapeConfig::AllCharacters => UnescapeMode::AllCharacters,
        },
        stream_format: match t.stream_format {
            StreamFormatConfig::Ndjson => StreamFormat::Ndjson,
            StreamFormatConfig::JsonArray => StreamFormat::JsonArray,
        },
        auto_mapping: t.auto_mapping,
        forward_headers,
        shutdown_grace: shutdown_grace.unwrap_or(Duration::from_secs(10)),
        header_read_timeout: header_read_timeout.unwrap_or(Duration::from_secs(30)),
    };
    let validated = Validated {
        settings,
        grpc,
        http,
        routes,
        graphql: config.graphql.clone(),
        graphql_sdl,
    };
    (validated, check.errors)
}

fn route_rule(check: &mut Check<'_>, r: &RouteConfig, at: &str) -> Option<RouteRule> {
    let method = normalize_method(&r.grpc);
    if method.is_none() {
        check.fail_hint(
            &format!("{at}.grpc"),
            format!("{:?} is not a method name", r.grpc),
            "write package.Service/Method, e.g. library.v1.Library/GetBook",
        );
    }
    let patterns: Vec<(&str, String)> = [
        ("GET", &r.get),
        ("PUT", &r.put),
        ("POST", &r.post),
        ("DELETE", &r.delete),
        ("PATCH", &r.patch),
    ]
    .into_iter()
    .filter_map(|(m, p)| p.clone().map(|p| (m, p)))
    .chain(r.custom.iter().map(|c| ("", c.path.clone())))
    .collect();
    if patterns.len() > 1 {
        check.fail_hint(
            at,
            "more than one HTTP pattern",
            "one route binds one HTTP method; add another route for the next",
        );
        return None;
    }
    let mut pattern = None;
    let mut pattern_at = at.to_string();
    if let Some((verb, path)) = patterns.into_iter().next() {
        let verb = match (&r.custom, verb) {
            (Some(custom), "") => {
                let kind = custom.kind.trim().to_ascii_uppercase();
                if kind.is_empty() || http::Method::from_bytes(kind.as_bytes()).is_err() {
                    check.fail(
                        &format!("{at}.custom.kind"),
                        format!("{:?} is not an HTTP method", custom.kind),
                    );
                    return None;
                }
                kind
            }
            _ => verb.to_string(),
        };
        let key = if r.custom.is_some() {
            format!("{at}.custom.path")
        } else {
            format!("{at}.{}", verb.to_ascii_lowercase())
        };
        pattern_at.clone_from(&key);
        match PathTemplate::parse(&path) {
            Ok(template) => pattern = Some((verb, template)),
            Err(e) => {
                check.fail(&key, e.to_string());
                return None;
            }
        }
    } else if r.body.is_some() || r.response_body.is_some() {
        check.fail_hint(
            at,
            "`body`/`response_body` without an HTTP pattern",
            "add get/put/post/delete/patch/custom",
        );
    }
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|t| check.timeout(&format!("{at}.timeout"), t));
    let mut metadata = HeaderMap::new();
    for (key, value) in &r.metadata {
        match (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(k), Ok(v)) => {
                metadata.insert(k, v);
            }
            _ => check.fail(
                &format!("{at}.metadata.{key}"),
                "not a valid metadata key/value",
            ),
        }
    }
    Some(RouteRule {
        method: method?,
        pattern,
        pattern_at,
        body: r.body.clone(),
        response_body: r.response_body.clone(),
        timeout,
        metadata,
        at: at.to_string(),
    })
}

/// `pkg.Service/Method` or `pkg.Service.Method` → `pkg.Service/Method`.
pub fn normalize_method(text: &str) -> Option<String> {
    let text = text.trim().trim_start_matches('/');
    let (service, method) = match text.split_once('/') {
        Some(parts) => parts,
        None => text.rsplit_once('.')?,
    };
    let ident = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    };
    (ident(service) && ident(method) && !method.contains('.'))
        .then(|| format!("{service}/{method}"))
}

fn normalize_prefix(prefix: &str) -> Result<String, String> {
    if !prefix.starts_with('/') {
        return Err(format!("prefix {prefix:?} must start with '/'"));
    }
    if prefix.contains(['?', '#', '*', '{']) {
        return Err(format!(
            "prefix {prefix:?} must be a plain path (no query, wildcard or template)"
        ));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn method_names_normalize() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(normalize_method(input).as_deref(), expected, "{input}")
        };
        check(
            "library.v1.Library/GetBook",
            Some("library.v1.Library/GetBook"),
        );
        check(
            "/library.v1.Library/GetBook",
            Some("library.v1.Library/GetBook"),
        );
        check(
            "library.v1.Library.GetBook",
            Some("library.v1.Library/GetBook"),
        );
        check("GetBook", None);
        check("library.v1.Library/", None);
        check("library v1/Get", None);
    }

    #[test]
    fn prefixes_normalize() {
        let check = |input: &str, expected: Result<&str, ()>| {
            assert_eq!(
                normalize_prefix(input).map_err(|_| ()),
                expected.map(str::to_string),
                "{input}"
            )
        };
        check("/", Ok("/"));
        check("/books/", Ok("/books"));
        check("/books", Ok("/books"));
        check("books", Err(()));
        check("/books/*", Err(()));
    }
}
