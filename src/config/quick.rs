//! Quick mode: the command-line flags as a [`Config`], so they go through the same validation
//! as a file.

use super::{Config, GrpcUpstreamConfig, HttpRouteConfig};

/// `--grpc URL …`, `--descriptors FILE …`, `--http PREFIX=URL …`, `--listen ADDR`.
///
/// With `--descriptors`, a single `--grpc` serves every service in every file; with several
/// `--grpc`, pass one `--descriptors` per `--grpc`, paired in order. Without, every backend is
/// discovered by server reflection.
pub fn config(
    grpc: &[String],
    descriptors: &[String],
    http: &[String],
    listen: Option<&str>,
) -> Result<Config, String> {
    if !descriptors.is_empty() && grpc.is_empty() {
        return Err(
            "--descriptors describes a --grpc upstream: add --grpc URL for the backend that serves it"
                .into(),
        );
    }
    if grpc.is_empty() && http.is_empty() {
        return Err(
            "nothing to serve: pass --config FILE, or at least one --grpc URL or --http PREFIX=URL"
                .into(),
        );
    }
    if let Some(missing) = descriptors
        .iter()
        .find(|f| !std::path::Path::new(f).is_file())
    {
        return Err(format!(
            "--descriptors {missing}: no such file (build one with `protoc --include_imports --descriptor_set_out=FILE`)"
        ));
    }
    if !descriptors.is_empty() && grpc.len() > 1 && descriptors.len() != grpc.len() {
        return Err(format!(
            "{} --grpc upstreams but {} --descriptors files: pass one --descriptors per --grpc (paired in order), or a single --grpc",
            grpc.len(),
            descriptors.len()
        ));
    }
    let mut config = Config {
        listen: listen.map_or_else(super::default_listen, str::to_string),
        ..Config::default()
    };
    config.shutdown_grace = "10s".into();
    for (i, url) in grpc.iter().enumerate() {
        let files = match (descriptors.is_empty(), grpc.len()) {
            (true, _) => Vec::new(),
            (false, 1) => descriptors.to_vec(),
            (false, _) => vec![descriptors[i].clone()],
        };
        config.grpc.push(GrpcUpstreamConfig {
            name: url.trim_start_matches("http://").to_string(),
            url: Some(url.clone()),
            urls: Vec::new(),
            descriptors: files,
            reflection_refresh: "30s".into(),
            services: Vec::new(),
            timeout: None,
            connect_timeout: "5s".into(),
        });
    }
    for spec in http {
        let (prefix, url) = spec.split_once('=').ok_or_else(|| {
            format!("--http {spec:?}: write PREFIX=URL, e.g. /books=http://127.0.0.1:5000")
        })?;
        config.http.push(HttpRouteConfig {
            name: Some(prefix.to_string()),
            prefix: prefix.to_string(),
            host: None,
            url: url.to_string(),
            strip_prefix: false,
            preserve_host: false,
            timeout: None,
        });
    }
    Ok(config)
}
