//! The AICR aggregator: keeps a live snapshot of every node from its
//! agent's stream, re-evaluates the active recipe's constraints whenever a
//! node or the cluster changes, records drift (opened, resolved, stale) in
//! an embedded store, and raises it through Prometheus, Kubernetes Events,
//! Alertmanager, the CLI's watch streams, and on the Nodes themselves
//! (a condition, a policy report, an opt-in taint).
//!
//! The binary `aicr-aggregator` parses flags into a [`Config`] and calls
//! [`start`]; tests and benchmarks do the same in-process.

pub mod api;
pub mod baseline_mirror;
pub mod cluster_state;
pub mod conformance;
pub mod evaluator;
pub mod http;
pub mod hub;
pub mod identity;
pub mod ingest;
pub mod ingest_body;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod node_status;
pub mod peers;
pub mod recorder;
pub mod server;
pub mod sinks;
pub mod state;
pub mod states;
pub mod store;

pub use server::{Config, Running, TlsFiles, start};

/// 16 hex digits of `text`'s SHA-256: a short, stable stand-in in an
/// object name for text that is too long for one or not valid in one.
pub(crate) fn name_digest(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
