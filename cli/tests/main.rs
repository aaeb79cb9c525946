//! The `aicr` binary end to end, one module per area. One test binary,
//! so one link step; run one area with a filter, e.g.
//! `cargo test -p aicr-cli --test integration validate::`.

mod aggregator;
mod api_objects_schema;
mod attest;
mod bundle;
mod bundle_oci;
mod bundle_registry;
mod compat;
mod configmap;
mod diff;
mod env_and_logs;
mod examples;
mod exit_codes;
mod http_sources;
mod recipe;
mod snapshot;
mod trust;
mod validate;
