//! AICR core library: the document model, the recipe engine, constraint
//! evaluation, catalog loading and the I/O edges (sources and sinks) that the
//! `aicr`, `aicr-agent` and `aicr-aggregator` binaries share.
//!
//! The engine parts (`engine`, `hydrate`, `constraint`) are pure functions
//! of their inputs; reading files, URLs and the cluster happens in `catalog`,
//! `source` and `sink`.

pub mod agent_job;
pub mod attest;
pub mod bundle;
pub mod catalog;
pub mod cluster;
pub mod constraint;
pub mod engine;
pub mod error;
pub mod flags;
pub mod hydrate;
pub mod k8s;
pub mod logfmt;
pub mod model;
pub mod parts;
pub mod scheduling;
pub mod sink;
pub mod snapshot_io;
pub mod source;
pub mod template;
pub mod validate;
pub mod yaml;

pub use error::{Error, ErrorKind, Result};

/// Generated gRPC types and services (`proto/aicr.proto`).
pub mod proto {
    tonic::include_proto!("aicr.v1");
}

/// The version every document we write carries.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Make ring the process's rustls provider before building a reqwest client.
/// The reqwest inside sigstore-tuf and oci-client is built without a
/// provider so the process keeps the single one ureq, kube and tonic use
/// here; without a default, building the client panics. Calling it again
/// is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
