//! AICR core library: the document model, the recipe engine, constraint
//! evaluation, catalog loading and the I/O edges (sources and sinks) that the
//! `aicr`, `aicr-agent` and `aicr-aggregator` binaries share.
//!
//! The engine parts (`engine`, `hydrate`, `constraint`) are pure functions
//! of their inputs; reading files, URLs and the cluster happens in `catalog`,
//! `source` and `sink`.

// Always: what the node agent links.
pub mod constraint;
pub mod error;
pub mod flags;
pub mod logfmt;
pub mod model;
pub mod parts;
pub mod yaml;

#[cfg(feature = "engine")]
pub mod catalog;
#[cfg(feature = "engine")]
pub mod diff;
#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "engine")]
pub mod hydrate;
#[cfg(feature = "engine")]
pub mod sink;
#[cfg(feature = "engine")]
pub mod snapshot_io;

#[cfg(feature = "kube")]
pub mod kubernetes;
#[cfg(feature = "kube")]
pub mod source;

#[cfg(feature = "validate")]
pub mod validate;

#[cfg(feature = "bundle")]
pub mod bundle;
#[cfg(feature = "bundle")]
pub mod template;

#[cfg(feature = "trust")]
pub mod attest;

pub use error::{Error, ErrorKind, Result};

pub mod codec;

/// Generated gRPC types and services (`proto/aicr.proto`).
pub mod proto {
    tonic::include_proto!("aicr.v1");
}

/// The version every document we write carries.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

#[cfg(feature = "trust")]
/// Make ring the process's rustls provider before building a reqwest client.
/// The reqwest inside sigstore-tuf and oci-client is built without a
/// provider so the process keeps the single one ureq, kube and tonic use
/// here; without a default, building the client panics. Calling it again
/// is harmless.
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
