//! Transcoding between JSON/HTTP and protobuf/gRPC.
//!
//! - [`template`]: HttpRule path templates, compiled once into a matcher;
//! - [`json`]: proto3 JSON mapping both ways (through prost-reflect);
//! - [`fields`]: path variables, query parameters, `body` and `response_body` bindings;
//! - [`rest`]: one REST call of a matched binding, request to response;
//! - [`wire`]: gRPC reply bytes straight to proto3 JSON, through a plan compiled per reply type.

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
