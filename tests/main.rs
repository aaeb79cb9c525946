//! The core library's integration tests, and the whole-system tests
//! (`e2e`: the Helm chart and the demo script with all three binaries).
//! One test binary, so one link step; run one area with a filter, e.g.
//! `cargo test -p aicr --test integration e2e::`.

mod architecture;
mod bundle_helm;
mod catalog;
mod common;
mod e2e;
mod gotmpl_helm;
mod hostile_input;
mod snapshot_compat;
