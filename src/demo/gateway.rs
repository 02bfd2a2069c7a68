//! The gateway config `omnigate demo` runs with, and the curl lines it prints.

use std::net::SocketAddr;

use super::Backends;
use crate::config::{
    BatchConfig, Config, GraphqlConfig, GrpcUpstreamConfig, HttpFieldConfig, HttpRouteConfig,
    JoinConfig,
};

/// The SDL of the HTTP reviews service's types (also in `schema/reviews.graphql`).
pub const REVIEWS_SDL: &str = include_str!("../../schema/reviews.graphql");

/// Library and Authors by server reflection; the HTTP service at `/reviews` and, prefix
/// stripped, at `/http/...`.
pub fn gateway_config(backends: &Backends, listen: SocketAddr) -> Config {
    let grpc = |name: &str, url: String| GrpcUpstreamConfig {
        name: name.to_string(),
        url: Some(url),
        urls: Vec::new(),
        descriptors: Vec::new(),
        reflection_refresh: "30s".into(),
        services: Vec::new(),
        timeout: Some("10s".into()),
        connect_timeout: "5s".into(),
    };
    let http = |name: &str, prefix: &str, strip_prefix: bool| HttpRouteConfig {
        name: Some(name.to_string()),
        prefix: prefix.to_string(),
        host: None,
        url: backends.http_url(),
        strip_prefix,
        preserve_host: false,
        timeout: Some("10s".into()),
    };
    Config {
        listen: listen.to_string(),
        grpc: vec![
            grpc("library", backends.library_url()),
            grpc("authors", backends.authors_url()),
        ],
        http: vec![
            http("reviews", "/reviews", false),
            http("http-demo", "/http", true),
        ],
        shutdown_grace: "5s".into(),
        graphql: graphql_config(),
        ..Config::default()
    }
}

/// GraphQL over both services: `Book.author` joined from Authors (batched), `Book.reviews`
/// and `Query.reviews` from the HTTP reviews service.
pub fn graphql_config() -> GraphqlConfig {
    let reviews = |on: &str, path: &str, arguments: &[(&str, &str)]| HttpFieldConfig {
        on: on.into(),
        field: "reviews".into(),
        ty: "[Review!]".into(),
        upstream: "reviews".into(),
        path: path.into(),
        arguments: arguments
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        select: Some("reviews".into()),
        description: Some("Reviews from the HTTP reviews service.".into()),
    };
    GraphqlConfig {
        joins: vec![JoinConfig {
            on: "Book".into(),
            field: "author".into(),
            grpc: "authors.v1.Authors/GetAuthor".into(),
            arguments: [("id".to_string(), "{authorId}".to_string())]
                .into_iter()
                .collect(),
            batch: Some(BatchConfig {
                grpc: "authors.v1.Authors/BatchGetAuthors".into(),
                argument: "ids".into(),
                results: "authors".into(),
                key: "id".into(),
            }),
            description: Some("The book's author, from the Authors service.".into()),
        }],
        http_fields: vec![
            reviews("Book", "/reviews?book={name}", &[]),
            reviews("Query", "/reviews?book={book}", &[("book", "String!")]),
        ],
        types: Some(REVIEWS_SDL.to_string()),
        ..GraphqlConfig::default()
    }
}

/// What `omnigate demo` prints once it listens.
pub fn banner(listen: SocketAddr) -> String {
    let base = format!("http://{listen}");
    format!(
        "omnigate demo is listening on {base}
Example backends: library.v1.Library and authors.v1.Authors (gRPC, discovered by reflection),
and a plain HTTP reviews service at /reviews. Try:

  curl {base}/v1/shelves
  curl {base}/v1/shelves/1/books/1
  curl '{base}/v1/shelves/1/books?genre=FICTION&include_drafts=true'
  curl -X POST {base}/v1/shelves/1/books -H 'content-type: application/json' -d '{{\"title\": \"Dune\", \"authorId\": \"2\", \"pageCount\": \"412\"}}'
  curl -N {base}/v1/shelves/1:watch
  curl {base}/v1/authors/1
  curl {base}/v1/shelves/100          # 404 with a google.rpc.Status body
  curl {base}/reviews
  curl {base}/http/echo/headers       # what the HTTP upstream received

Press Ctrl-C to stop."
    )
}
