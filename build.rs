//! Build script: compiles the demo protos in `descriptors/` with protox (a
//! pure-Rust protobuf compiler, so no `protoc` is needed), writes the encoded
//! descriptor sets to `OUT_DIR` and generates the tonic server and client code
//! used by `src/demo`.

use std::env;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// Include root of every `.proto` file.
const PROTO_ROOT: &str = "descriptors";

/// Error-model protos added to every descriptor set, so that a consumer that
/// only loads one set can still decode `grpc-status-details-bin` payloads.
const ERROR_PROTOS: [&str; 2] = ["google/rpc/status.proto", "google/rpc/error_details.proto"];

/// The descriptor sets written to `OUT_DIR`: file name and root protos.
const SETS: [(&str, &str); 2] = [
    ("library.binpb", "library/v1/library.proto"),
    ("authors.binpb", "authors/v1/authors.proto"),
];

/// Compiles `files` (relative to [`PROTO_ROOT`]) keeping comments and imports.
fn compile(files: &[&str]) -> Result<protox::Compiler, protox::Error> {
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files)?;
    Ok(compiler)
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(path, bytes)
}

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut all_files: Vec<&str> = ERROR_PROTOS.to_vec();
    for (set_name, root) in SETS {
        let mut files = vec![root];
        files.extend(ERROR_PROTOS);
        // `encode_file_descriptor_set` (unlike a prost round trip) keeps
        // custom options such as `google.api.http`.
        let encoded = compile(&files)?.encode_file_descriptor_set();
        write_if_changed(&out_dir.join(set_name), &encoded)?;
        all_files.push(root);
    }

    // The set every gateway pool starts from: HTTP annotations, HttpBody, the error model and
    // (as their imports and explicitly) the well-known types.
    let bundled = compile(&[
        "google/api/annotations.proto",
        "google/api/httpbody.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
        "google/protobuf/empty.proto",
        "google/protobuf/field_mask.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/wrappers.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/duration.proto",
    ])?
    .encode_file_descriptor_set();
    write_if_changed(&out_dir.join("bundled.binpb"), &bundled)?;

    // Rust code for our packages; prost maps the well-known types to
    // `prost_types` (and the wrapper types to plain Rust primitives).
    let fds = compile(&all_files)?.file_descriptor_set();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .include_file("demo_pb.rs")
        .compile_fds(fds)?;
    Ok(())
}
