//! Routing: the route table as plain data and a pure [`find`].
//!
//! In: a [`RouteTable`] (built once per descriptor/config version by [`build`]) and the
//! downstream method, host and URI. Out: a [`Target`]: a gRPC method binding with its path
//! variables, or an HTTP upstream with the path to ask it for. Must not know: I/O of any kind.
//!
//! Order: REST bindings of gRPC methods (HttpRule templates, most specific first), then HTTP
//! prefix routes (exact host, then wildcard host, then host-less; within each, longest prefix
//! first). A path that matches a binding only for other HTTP methods is a 405 with `Allow` —
//! unless an HTTP route takes it. HTTP routes match, and forward, the path with its
//! dot-segments removed (`/pub/../x` is `/x`, `%2e` counts as `.`), as nginx does before it
//! matches a location, so a request cannot climb out of a prefix; one that climbs above `/`
//! is a 400.

pub mod build;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use prost_reflect::MethodDescriptor;

use crate::config::validate::HttpRoute;
use crate::error::Error;
use crate::transcode::fields::{BodyBinding, FieldPath};
use crate::transcode::template::{Match, Matcher, UnescapeMode};
use crate::transcode::wire::ReplyPlan;
use crate::upstream::grpc::GrpcUpstream;

/// A gRPC method the gateway can call, with everything resolved at build time.
#[derive(Debug)]
pub struct GrpcMethod {
    /// `package.Service/Method`.
    pub name: String,
    /// `/package.Service/Method`, the HTTP/2 path.
    pub path: http::uri::PathAndQuery,
    pub descriptor: MethodDescriptor,
    pub upstream: GrpcUpstream,
    pub timeout: Option<Duration>,
    /// Extra metadata configured for the method.
    pub metadata: HeaderMap,
    /// How to render the method's reply as JSON straight from its wire bytes (shared by the
    /// methods with the same output type; rebuilt with the table on a descriptor refresh).
    pub reply: Arc<ReplyPlan>,
}

/// One REST binding of a gRPC method (one HttpRule, or the auto-mapping).
#[derive(Debug)]
pub struct Binding {
    pub method: Arc<GrpcMethod>,
    pub http_method: String,
    pub template: String,
    /// One per template variable, in the template's order.
    pub path_fields: Vec<FieldPath>,
    pub body: BodyBinding,
    pub response_body: Option<FieldPath>,
    /// `(field number, index in path_fields)` in number order, when the request message is
    /// nothing but top-level singular string fields taken from the path (no body), each bound
    /// once: such a message is written straight as protobuf (`transcode::rest`).
    pub direct: Option<Box<[(u32, usize)]>>,
}

/// One line of `omnigate routes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteLine {
    pub method: String,
    pub path: String,
    pub target: String,
}

/// Everything routing needs, immutable once built.
#[derive(Debug)]
pub struct RouteTable {
    bindings: Matcher<Binding>,
    /// Sorted: exact hosts, wildcard hosts, host-less; then longer prefixes first.
    http: Vec<HttpRoute>,
    /// Every callable method by `package.Service/Method`.
    pub methods: HashMap<String, Arc<GrpcMethod>>,
    unescape: UnescapeMode,
    listing: Vec<RouteLine>,
}

impl RouteTable {
    /// The table in a stable, readable order.
    pub fn lines(&self) -> &[RouteLine] {
        &self.listing
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.len()
    }
}

/// Where a request goes.
#[derive(Debug)]
pub enum Target<'a> {
    Grpc {
        binding: &'a Binding,
        vars: Vec<(usize, String)>,
    },
    Http {
        route: &'a HttpRoute,
        /// What to ask for below the upstream's base path: the path (rest of it, when the
        /// prefix is stripped: possibly empty, or just a query `?a=1`) and the query.
        path_and_query: String,
    },
}

/// Find the target for a downstream request.
pub fn find<'a>(
    table: &'a RouteTable,
    method: &http::Method,
    host: Option<&str>,
    uri: &http::Uri,
) -> Result<Target<'a>, Error> {
    let path = uri.path();
    if let Some(found) = find_binding(table, method.as_str(), path)? {
        return Ok(found);
    }
    // HEAD is GET without the body (RFC 9110 §9.3.2; hyper leaves the body out): a path
    // with a GET binding answers HEAD too, unless a binding names HEAD itself.
    if method == http::Method::HEAD {
        if let Some(found) = find_binding(table, "GET", path)? {
            return Ok(found);
        }
    }
    // A reverse proxy opens no tunnels: CONNECT would be forwarded as `CONNECT /`, which no
    // upstream answers.
    if method == http::Method::CONNECT {
        return Err(Error::MethodNotAllowed {
            method: method.to_string(),
            path: uri.to_string(),
            allowed: Vec::new(),
        });
    }
    let clean = remove_dot_segments(path)?;
    if let Some(route) = table
        .http
        .iter()
        .find(|r| prefix_matches(&r.prefix, &clean) && host_matches(r.host.as_deref(), host))
    {
        return Ok(Target::Http {
            route,
            path_and_query: rewrite(route, &clean, uri.query()),
        });
    }
    // Neither a binding for this method nor an HTTP route: a 405 when other methods have a
    // binding for the path (only worked out now, so proxied requests never pay for it).
    let mut allowed = table.bindings.allowed_methods(method.as_str(), path);
    if allowed.iter().any(|m| m == "GET") && !allowed.iter().any(|m| m == "HEAD") {
        allowed.push("HEAD".to_owned());
        allowed.sort_unstable();
    }
    if allowed.is_empty() {
        Err(Error::NoRoute {
            method: method.to_string(),
            path: path.to_string(),
        })
    } else {
        Err(Error::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allowed,
        })
    }
}

/// The binding of `method` for `path`, if any.
fn find_binding<'a>(
    table: &'a RouteTable,
    method: &str,
    path: &str,
) -> Result<Option<Target<'a>>, Error> {
    match table.bindings.find_for_method(method, path, table.unescape) {
        Ok(Match::Found {
            value, bindings, ..
        }) => Ok(Some(Target::Grpc {
            binding: value,
            vars: bindings,
        })),
        Ok(Match::NotFound | Match::MethodNotAllowed { .. }) => Ok(None),
        Err(e) => {
            let crate::transcode::template::MatchError::InvalidEncoding { variable } = &e;
            Err(Error::invalid(variable.clone(), e.to_string()))
        }
    }
}

fn strip_port(host: &str) -> &str {
    // `[::1]:8080`, `example.com:8080`, `example.com`
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

/// Whether `host` (a `Host` header, port included) is one `pattern` names. The port is only
/// stripped here, for routes that name a host: most name none.
fn host_matches(pattern: Option<&str>, host: Option<&str>) -> bool {
    let Some(pattern) = pattern else { return true };
    let Some(host) = host.map(strip_port) else {
        return false;
    };
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// Segment-boundary prefix match: `/books` matches `/books`, `/books/`, `/books/1`, never
/// `/bookshelf`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The path and query below the upstream's base path. A stripped prefix leaves what follows
/// it, which may be empty: the upstream then decides between `/` and its base path itself
/// (nginx: `/http` → `/`, `/api` to `http://u/v2` → `/v2`).
fn rewrite(route: &HttpRoute, path: &str, query: Option<&str>) -> String {
    let path = if route.strip_prefix && route.prefix != "/" {
        &path[route.prefix.len()..]
    } else {
        path
    };
    // Pushed rather than `format!`ed: this runs for every proxied request.
    let mut target = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    target.push_str(path);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    target
}

/// `path` without its dot-segments (RFC 3986 §5.2.4), `%2e` read as `.`: `/a/./b/../c` is
/// `/a/c`, `/a/b/..` is `/a/`. A `..` with nothing left to remove is refused (nginx answers
/// it with 400 too). Paths without a `/.` or `/%` are returned as they are, without a scan
/// of their segments.
fn remove_dot_segments(path: &str) -> Result<Cow<'_, str>, Error> {
    let suspect = path
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'/' && matches!(w[1], b'.' | b'%'));
    if !suspect || !path.starts_with('/') {
        return Ok(Cow::Borrowed(path));
    }
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    // `..`, `.%2e`, `%2e.`, `%2e%2e`: two dots, each written plainly or escaped.
    let is_double = |s: &str| {
        [(1, 1), (1, 3), (3, 1), (3, 3)].iter().any(|&(a, b)| {
            s.len() == a + b && s.is_char_boundary(a) && is_dot(&s[..a]) && is_dot(&s[a..])
        })
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut changed = false;
    // A path ending in a dot-segment names a directory: it keeps a trailing slash.
    let mut ends_in_slash = false;
    for segment in path[1..].split('/') {
        ends_in_slash = false;
        if is_dot(segment) {
            changed = true;
            ends_in_slash = true;
        } else if is_double(segment) {
            if kept.pop().is_none() {
                return Err(Error::invalid(
                    "path",
                    format!("the path {path:?} climbs above the root with '..'"),
                ));
            }
            changed = true;
            ends_in_slash = true;
        } else {
            kept.push(segment);
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(path));
    }
    let mut clean = String::with_capacity(path.len());
    for segment in &kept {
        clean.push('/');
        clean.push_str(segment);
    }
    if ends_in_slash || clean.is_empty() {
        clean.push('/');
    }
    Ok(Cow::Owned(clean))
}

/// Sort HTTP routes into match order: the most specific host first (an exact name beats a
/// wildcard, which beats no host, as nginx picks the server before the location), then the
/// longest prefix.
fn sort_http(routes: &mut [HttpRoute]) {
    fn host_rank(route: &HttpRoute) -> u8 {
        match route.host.as_deref() {
            Some(host) if host.starts_with("*.") => 1,
            Some(_) => 2,
            None => 0,
        }
    }
    routes.sort_by(|a, b| {
        host_rank(b)
            .cmp(&host_rank(a))
            .then(b.prefix.len().cmp(&a.prefix.len()))
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let check = |prefix: &str, path: &str, expected: bool| {
            assert_eq!(prefix_matches(prefix, path), expected, "{prefix} vs {path}")
        };
        check("/books", "/books", true);
        check("/books", "/books/", true);
        check("/books", "/books/1", true);
        check("/books", "/bookshelf", false);
        check("/books", "/", false);
        check("/", "/anything", true);
    }

    #[test]
    fn hosts_match_exactly_or_by_one_wildcard_label() {
        let check = |pattern: Option<&str>, host: Option<&str>, expected: bool| {
            assert_eq!(
                host_matches(pattern, host),
                expected,
                "{pattern:?} vs {host:?}"
            )
        };
        check(None, None, true);
        check(None, Some("a.com"), true);
        check(Some("a.com"), Some("A.com"), true);
        check(Some("a.com"), Some("b.com"), false);
        check(Some("a.com"), None, false);
        check(Some("*.a.com"), Some("x.a.com"), true);
        check(Some("*.a.com"), Some("a.com"), false);
        check(Some("*.a.com"), Some("x.y.a.com"), false);
    }

    fn route(host: Option<&str>, prefix: &str, strip_prefix: bool) -> HttpRoute {
        let url: http::Uri = "http://127.0.0.1:1".parse().unwrap();
        HttpRoute {
            prefix: prefix.to_string(),
            host: host.map(str::to_string),
            strip_prefix,
            upstream: crate::upstream::http::HttpUpstream::new(prefix, &url, false, None).unwrap(),
        }
    }

    #[test]
    fn exact_hosts_sort_before_wildcards_before_host_less_then_longest_prefix() {
        let mut routes = vec![
            route(None, "/a/b", false),
            route(Some("*.x.com"), "/a/b/c", false),
            route(None, "/", false),
            route(Some("a.x.com"), "/", false),
            route(Some("*.x.com"), "/", false),
            route(Some("a.x.com"), "/a", false),
        ];
        sort_http(&mut routes);
        let order: Vec<(Option<&str>, &str)> = routes
            .iter()
            .map(|r| (r.host.as_deref(), r.prefix.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (Some("a.x.com"), "/a"),
                (Some("a.x.com"), "/"),
                (Some("*.x.com"), "/a/b/c"),
                (Some("*.x.com"), "/"),
                (None, "/a/b"),
                (None, "/"),
            ]
        );
    }

    #[test]
    fn rewriting_strips_the_prefix_and_keeps_the_query() {
        let check = |prefix: &str, strip: bool, uri: &str, expected: &str| {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(
                rewrite(&route(None, prefix, strip), uri.path(), uri.query()),
                expected,
                "{uri}"
            )
        };
        check("/http", true, "/http/echo/headers", "/echo/headers");
        check("/http", true, "/http", "");
        check("/http", true, "/http/", "/");
        check("/http", true, "/http?a=1&a=2", "?a=1&a=2");
        check("/http", false, "/http/x?a=1", "/http/x?a=1");
        check("/", true, "/x?y", "/x?y");
    }

    #[test]
    fn dot_segments_are_removed_and_climbing_above_the_root_is_refused() {
        let check = |path: &str, expected: &str| {
            assert_eq!(remove_dot_segments(path).unwrap(), expected, "{path}")
        };
        check("/reviews/1", "/reviews/1");
        check("/a/./b/../c", "/a/c");
        check("/a/b/..", "/a/");
        check("/a/b/.", "/a/b/");
        check("/a/%2e%2E/b", "/b");
        check("/a/.%2e/b", "/b");
        check("/a/%2e./b", "/b");
        check("/a/%2e/b", "/a/b");
        check("/a/..b/.c/...", "/a/..b/.c/...");
        check("/a//b/../c", "/a//c");
        check("/a/", "/a/");
        check("/", "/");
        check("/a/..", "/");
        check("/v1.2/%2Fx", "/v1.2/%2Fx");
        for bad in ["/..", "/a/../..", "/%2e%2e/x", "/a/b/../../../c"] {
            assert!(remove_dot_segments(bad).is_err(), "{bad}");
        }
        assert!(matches!(remove_dot_segments("/a/b"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn ports_are_ignored_for_host_matching() {
        let check = |input: &str, expected: &str| assert_eq!(strip_port(input), expected);
        check("example.com:8080", "example.com");
        check("example.com", "example.com");
        check("[::1]:8080", "::1");
    }
}
