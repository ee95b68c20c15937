//! Herald's gRPC contracts.
//!
//! # Layout
//! - [`v1`]: the public API `herald.v1` that application backends and the CLI call.
//! - [`internal`]: the peer API `herald.internal.v1` between nodes.
//! - [`DESCRIPTOR_SET`]: the encoded file descriptor set, served by gRPC reflection.

/// The public API, package `herald.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("herald.v1");
}

/// The peer API between nodes, package `herald.internal.v1`.
pub mod internal {
    /// Version 1.
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("herald.internal.v1");
    }
}

/// Encoded `FileDescriptorSet` of every proto in this crate, for tonic-reflection.
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/herald_descriptor.bin"));
