//! The node-side library of the AICR agent: the collectors that measure this
//! node (OS, systemd units, GPU) into `aicr` snapshot measurements, which
//! the `aicr snapshot` command also uses, and the always-on half that the
//! `aicr-agent` binary runs: change signals, per-subtype digests, the
//! AgentService session and the reconnecting stream. Kubernetes-wide
//! collection (K8s, NodeTopology) belongs to the aggregator and the CLI.

pub mod backoff;
pub mod collect;
pub mod digest;
pub mod logging;
pub mod rss;
pub mod session;
pub mod stream;
pub mod volatile;
pub mod watch;
