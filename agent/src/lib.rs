//! The node-side library of the AICR agent: the collectors that measure this
//! node (OS, systemd units, GPU) into `aicr` snapshot measurements. Both the
//! `aicr-agent` binary and the `aicr snapshot` command use it. It only
//! produces measurements; writing, streaming and Kubernetes-wide collection
//! belong to other crates and modules.

pub mod collect;
