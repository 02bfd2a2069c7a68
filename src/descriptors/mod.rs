//! The descriptor pool: what the gRPC backends' APIs look like, learnt at run time.
//!
//! In: FileDescriptorSet files, or a backend's own server reflection ([`reflection`]).
//! Out: [`BackendApi`]s (files + the services a backend serves) and one merged
//! [`DescriptorPool`] that always holds the bundled `google/api`, `google/rpc` and well-known
//! types, so users never supply them. Must not know: routes or HTTP.

pub mod reflection;

use std::time::Duration;

use prost::Message as _;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;

use crate::config::validate::{DescriptorSource, GrpcBackend};
use crate::upstream::grpc::GrpcUpstream;

/// google/api/{annotations,http,httpbody}.proto, google/rpc/{status,error_details}.proto and
/// the well-known types, compiled at build time.
const BUNDLED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bundled.binpb"));

/// The pool every merged pool starts from.
pub fn bundled_pool() -> DescriptorPool {
    DescriptorPool::decode(BUNDLED)
        .expect("the bundled descriptor set is valid (built by build.rs)")
}

/// A backend's API as last learnt.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendApi {
    pub backend: String,
    /// Fully qualified service names this backend serves.
    pub services: Vec<String>,
    /// Encoded `FileDescriptorProto`s with their names. Kept encoded on purpose: decoding
    /// through `prost_types` would drop extension options such as `google.api.http`.
    pub files: Vec<(String, Vec<u8>)>,
}

/// A FileDescriptorSet read without decoding its files (see [`BackendApi::files`]).
#[derive(Clone, PartialEq, prost::Message)]
struct EncodedSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// Services that are infrastructure, never exposed as API.
fn is_infrastructure(service: &str) -> bool {
    service.starts_with("grpc.reflection.") || service.starts_with("grpc.health.")
}

/// A descriptor problem, located at the config key to blame.
pub type FetchError = crate::config::KeyError;

impl FetchError {
    fn at(at: String, message: String) -> FetchError {
        FetchError {
            at: Some(at),
            message,
            hint: None,
        }
    }
}

/// Learn a backend's API from its configured source.
pub async fn fetch(
    backend: &GrpcBackend,
    upstream: &GrpcUpstream,
) -> Result<BackendApi, FetchError> {
    let (mut services, files) = match &backend.source {
        DescriptorSource::Files(paths) => {
            let mut files = Vec::new();
            let mut services = Vec::new();
            for (i, path) in paths.iter().enumerate() {
                let at = || format!("{}.descriptors[{i}]", backend.at);
                for encoded in read_set(path).map_err(|e| FetchError::at(at(), e))? {
                    let file = FileDescriptorProto::decode(encoded.as_slice()).map_err(|e| {
                        FetchError::at(
                            at(),
                            format!("{}: invalid file descriptor: {e}", path.display()),
                        )
                    })?;
                    let package = file.package();
                    services.extend(
                        file.service
                            .iter()
                            .map(|s| qualified(package, s.name()))
                            .filter(|s| !is_infrastructure(s)),
                    );
                    files.push((file.name().to_string(), encoded));
                }
            }
            (services, files)
        }
        DescriptorSource::Reflection { .. } => {
            let mut discovered = Err(None);
            for channel in upstream.channels() {
                match reflection::discover(channel.clone(), Duration::from_secs(10)).await {
                    Ok(found) => {
                        discovered = Ok(found);
                        break;
                    }
                    Err(e) => discovered = Err(Some(e)),
                }
            }
            let discovered = discovered.map_err(|e| {
                let e = e.map_or_else(|| "no URL".to_string(), |e| e.to_string());
                FetchError {
                    at: Some(format!("{}.url", backend.at)),
                    message: format!("server reflection on {}: {e}", backend.name),
                    hint: Some(
                        "is the backend up and serving grpc.reflection.v1 (or v1alpha)? \
                         Otherwise list its descriptor files under `descriptors`"
                            .into(),
                    ),
                }
            })?;
            let names = discovered.files.iter().map(|f| f.name().to_string());
            (
                discovered.services,
                names.zip(discovered.encoded_files).collect(),
            )
        }
    };
    if !backend.services.is_empty() {
        for (i, wanted) in backend.services.iter().enumerate() {
            if !services.contains(wanted) {
                let hint = match crate::config::load::did_you_mean(
                    wanted,
                    services.iter().map(String::as_str),
                ) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if services.is_empty() => "it serves no services".to_string(),
                    None => format!("it serves: {}", services.join(", ")),
                };
                return Err(FetchError {
                    at: Some(format!("{}.services[{i}]", backend.at)),
                    message: format!("service {wanted:?} is not served by {}", backend.name),
                    hint: Some(hint),
                });
            }
        }
        services.retain(|s| backend.services.contains(s));
    }
    services.sort();
    services.dedup();
    Ok(BackendApi {
        backend: backend.name.clone(),
        services,
        files,
    })
}

fn qualified(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_string()
    } else {
        format!("{package}.{name}")
    }
}

/// Read one FileDescriptorSet file into its encoded files.
pub fn read_set(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let files = EncodedSet::decode(bytes.as_slice())
        .map(|set| set.file)
        .map_err(|e| format!("{} is not a FileDescriptorSet: {e}", path.display()))?;
    // An empty file decodes as an empty set: the backend would silently expose nothing.
    if files.is_empty() {
        return Err(format!(
            "{} holds no proto files (an empty FileDescriptorSet); build it with \
             `protoc --descriptor_set_out=... --include_imports` or protox",
            path.display()
        ));
    }
    Ok(files)
}

/// Merge every backend's files into one pool on top of the bundled one.
pub fn merge(apis: &[BackendApi]) -> Result<DescriptorPool, String> {
    let mut unique: Vec<&(String, Vec<u8>)> = Vec::new();
    for file in apis.iter().flat_map(|a| a.files.iter()) {
        match unique.iter().find(|f| f.0 == file.0) {
            Some(existing) if existing.1 != file.1 && !file.0.starts_with("google/") => {
                return Err(format!(
                    "two backends define {} differently; give each backend its own file names",
                    file.0
                ));
            }
            Some(_) => {}
            None => unique.push(file),
        }
    }
    let encoded: Vec<Vec<u8>> = unique.into_iter().map(|f| f.1.clone()).collect();
    reflection::build_pool_encoded(&bundled_pool(), &encoded).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bundled_pool_has_http_annotations_and_rpc_status() {
        let pool = bundled_pool();
        assert!(pool.get_extension_by_name("google.api.http").is_some());
        assert!(pool.get_message_by_name("google.api.HttpBody").is_some());
        assert!(pool.get_message_by_name("google.rpc.Status").is_some());
        assert!(pool.get_message_by_name("google.rpc.BadRequest").is_some());
        assert!(pool
            .get_message_by_name("google.protobuf.Timestamp")
            .is_some());
    }

    #[test]
    fn infrastructure_services_are_not_api() {
        assert!(is_infrastructure("grpc.health.v1.Health"));
        assert!(is_infrastructure(
            "grpc.reflection.v1alpha.ServerReflection"
        ));
        assert!(!is_infrastructure("library.v1.Library"));
    }
}
