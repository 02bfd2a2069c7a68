//! Transcoding between JSON/HTTP and protobuf/gRPC.
//!
//! - [`template`]: HttpRule path templates, compiled once into a matcher;
//! - [`json`]: proto3 JSON mapping both ways (through prost-reflect);
//! - [`fields`]: path variables, query parameters, `body` and `response_body` bindings;
//! - [`rest`]: one REST call of a matched binding, request to response;
//! - [`body_stream`]: a streamed request body split into its messages (NDJSON or an array);
//! - [`wire`]: gRPC reply bytes straight to proto3 JSON, through a plan compiled per reply type.

pub mod body_stream;
pub mod encode;
pub mod fields;
pub mod json;
pub mod rest;
pub mod template;
pub mod wire;

/// The descriptor pool of the transcoding unit tests (`tests/protos/omnigate/test.proto`).
#[cfg(test)]
pub(crate) fn test_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let dirs = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/protos"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors"),
        ];
        let mut compiler = protox::Compiler::new(dirs).expect("test proto dirs");
        compiler.include_imports(true);
        compiler
            .open_files(["omnigate/test.proto", "google/rpc/status.proto"])
            .expect("test protos compile");
        compiler.descriptor_pool()
    })
}

/// A descriptor pool compiled from in-memory proto sources (`(file name, source)` pairs, the
/// well-known types importable), for tests that need message shapes of their own.
#[cfg(test)]
pub(crate) fn compile_sources(
    sources: &'static [(&'static str, &'static str)],
) -> prost_reflect::DescriptorPool {
    struct Sources(&'static [(&'static str, &'static str)]);

    impl protox::file::FileResolver for Sources {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            match self.0.iter().find(|(file, _)| *file == name) {
                Some((_, source)) => protox::file::File::from_source(name, source),
                None => Err(protox::Error::file_not_found(name)),
            }
        }
    }

    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(Sources(sources));
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_files(sources.iter().map(|(file, _)| *file))
        .expect("test protos compile");
    compiler.descriptor_pool()
}
