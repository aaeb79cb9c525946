//! The agent Job's own flags, shared by `aicr snapshot` and `aicr validate`
//! (which deploys the same Job when it has no `--snapshot`), and their one
//! conversion into the library's [`AgentJob`].
//!
//! Flags that mean more than the agent Job in one of the commands
//! (namespace, pull secrets, node selector, tolerations, cleanup: validate
//! applies them to its own workloads too) stay with each command and come
//! in as a [`Placement`]. Must not read anything but these flags and the
//! one variable documented for them.

use std::collections::BTreeMap;
use std::time::Duration;

use aicr::error::{Error, Result};
use aicr::kubernetes::snapshot_job::AgentJob;
use aicr::source::ConfigMapRef;
use clap::Args;
use k8s_openapi::api::core::v1::Toleration;

#[derive(Debug, Args)]
pub struct AgentJobArgs {
    /// Agent image
    #[arg(long, env = "AICR_IMAGE", default_value = "ghcr.io/nvidia/aicr:latest")]
    pub image: String,
    /// Name of the agent Job
    #[arg(long, default_value = "aicr")]
    pub job_name: String,
    /// Service account (also names the Role and RoleBinding)
    #[arg(long, default_value = "aicr")]
    pub service_account_name: String,
    /// How long to wait for the agent Job (e.g. 90s, 10m)
    #[arg(long, default_value = "5m", value_parser = aicr::flags::timeout)]
    pub timeout: Duration,
    /// Run the agent privileged (host namespaces, systemd socket); use
    /// --privileged=false in PSS-restricted namespaces
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub privileged: bool,
    /// Fail unless a GPU is found (agent: request one GPU)
    #[arg(long, env = "AICR_REQUIRE_GPU", value_parser = aicr::flags::EnvBool)]
    pub require_gpu: bool,
    /// RuntimeClass for the agent pod (e.g. nvidia)
    #[arg(long, env = "AICR_RUNTIME_CLASS")]
    pub runtime_class: Option<String>,
    /// Cap node lists in NodeTopology entries (0 = unlimited)
    #[arg(long)]
    pub max_nodes_per_entry: Option<u32>,
}

/// What each command decides about its agent Job from its own flags: where
/// the Job runs and writes, what it pulls with, and whether it is kept.
pub struct Placement {
    pub namespace: String,
    pub image_pull_secrets: Vec<String>,
    pub node_selector: BTreeMap<String, String>,
    /// `None`: tolerate every taint.
    pub tolerations: Option<Vec<Toleration>>,
    pub cleanup: bool,
    pub output: ConfigMapRef,
}

impl AgentJobArgs {
    /// Mistakes worth stopping before anything is deployed: no image, or
    /// both `--require-gpu` and `--runtime-class` (each gives the agent GPU
    /// access).
    pub fn check(&self) -> Result<()> {
        if self.image.trim().is_empty() {
            return Err(Error::invalid("--image is empty: name the agent image"));
        }
        if self.require_gpu && self.runtime_class.is_some() {
            return Err(Error::invalid(
                "--require-gpu and --runtime-class are mutually exclusive; prefer --runtime-class, which gives the agent GPU access without reserving a GPU",
            ));
        }
        Ok(())
    }

    /// `--max-nodes-per-entry`, else `AICR_MAX_NODES_PER_ENTRY`; an
    /// unreadable variable warns and means unlimited, so call this once.
    pub fn max_nodes(&self) -> u32 {
        match self.max_nodes_per_entry {
            Some(n) => n,
            None => match std::env::var("AICR_MAX_NODES_PER_ENTRY") {
                Ok(v) => v.trim().parse().unwrap_or_else(|_| {
                    tracing::warn!("invalid AICR_MAX_NODES_PER_ENTRY {v:?} - using 0");
                    0
                }),
                Err(_) => 0,
            },
        }
    }

    /// The library's Job options: these flags, the command's placement and
    /// the node-list cap from [`max_nodes`](Self::max_nodes).
    pub fn job(&self, place: Placement, max_nodes_per_entry: u32) -> AgentJob {
        AgentJob {
            namespace: place.namespace,
            image: self.image.clone(),
            image_pull_secrets: place.image_pull_secrets,
            job_name: self.job_name.clone(),
            service_account: self.service_account_name.clone(),
            node_selector: place.node_selector,
            tolerations: place.tolerations,
            timeout: self.timeout,
            kube_timeout: crate::kubernetes::request_timeout(),
            cleanup: place.cleanup,
            privileged: self.privileged,
            require_gpu: self.require_gpu,
            runtime_class: self.runtime_class.clone(),
            max_nodes_per_entry,
            debug: tracing::enabled!(tracing::Level::DEBUG),
            output: place.output,
        }
    }
}
