//! Compiles the `.proto` files with protox (pure Rust, no system `protoc`) and generates
//! tonic clients and servers; the encoded descriptor set is kept for gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "herald/v1/projects.proto",
    "herald/v1/endpoints.proto",
    "herald/v1/events.proto",
    "herald/v1/cluster.proto",
    "herald/v1/templates.proto",
    "herald/v1/segments.proto",
    "herald/v1/imports.proto",
    "herald/v1/channels.proto",
    "herald/v1/messages.proto",
    "herald/v1/campaigns.proto",
    "herald/v1/analytics.proto",
    "herald/internal/v1/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("herald_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
