//! Whole-system tests: what a user installs (the Helm chart, judged by
//! Helm and the Kubernetes schemas) and what a user runs first (the demo
//! script, with the real agent, aggregator and CLI), and peer deviation
//! across a restart with all three binaries.

mod chart;
mod demo;
mod peers;
