//! The aggregator's integration tests: end to end with agents, API objects
//! judged by the Kubernetes schemas, Prometheus and Alertmanager, pools and
//! peer deviation, conditions, reports and taints on Nodes. One test
//! binary; filter by module, e.g.
//! `cargo test -p aicr-aggregator --test integration e2e::`.

mod api_objects_schema;
mod common;
mod e2e;
mod env_and_logs;
mod node_status;
mod peers;
mod prometheus;
