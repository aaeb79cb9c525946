//! Pinned baselines kept in ConfigMaps beside the leader lease, so that a
//! standby taking over judges every pool against the same baselines: each
//! replica's store lives on its own volume, and a baseline is an operator's
//! decision that must outlive any one replica.
//!
//! One ConfigMap per pool (a ConfigMap holds at most 1 MiB), named by a
//! digest of the pool and labelled so the set can be listed; the pool's own
//! name is in an annotation. Writes are server-side applies, so a replica
//! that lost the lease and a new leader never fight over fields.
//!
//! Owns those ConfigMaps only: the hub decides what a baseline is and tells
//! this module what changed; on becoming leader this module hands the hub
//! what the ConfigMaps hold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aicr::error::{Error, ErrorKind, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::peers::Baseline;

/// Marks the ConfigMaps this module owns.
pub const LABEL: &str = "aicr.nvidia.com/baseline";
const POOL_ANNOTATION: &str = "aicr.nvidia.com/pool";
const KEY: &str = "baseline.json";
const MANAGER: &str = "aicr-aggregator";
/// Below the API server's 1 MiB object limit, with room for metadata.
pub const MAX_BYTES: usize = 900 * 1024;
const RETRY: Duration = Duration::from_secs(5);

/// A baseline set (`Some`) or cleared (`None`) for a pool.
pub type Change = (String, Option<Baseline>);

/// The ConfigMap of `pool`: `{prefix}-baseline-{16 hex digits}`.
pub fn config_map_name(prefix: &str, pool: &str) -> String {
    format!("{prefix}-baseline-{}", crate::name_digest(pool))
}

fn config_map(prefix: &str, pool: &str, json: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(prefix, pool)),
            labels: Some(BTreeMap::from([
                (LABEL.to_string(), "true".to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    MANAGER.to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([(
                POOL_ANNOTATION.to_string(),
                pool.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), json)])),
        ..Default::default()
    }
}

/// Every baseline the ConfigMaps hold; one that cannot be read is skipped
/// with a warning rather than costing the others.
pub async fn load(api: &Api<ConfigMap>) -> Result<Vec<(String, Baseline)>> {
    let list = api
        .list(&ListParams::default().labels(&format!("{LABEL}=true")))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot list baseline ConfigMaps: {e}"),
            )
        })?;
    let mut out = Vec::new();
    for cm in list {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let pool = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POOL_ANNOTATION));
        let json = cm.data.as_ref().and_then(|d| d.get(KEY));
        match (pool, json) {
            (Some(pool), Some(json)) => match serde_json::from_str::<Baseline>(json) {
                Ok(b) => out.push((pool.clone(), b)),
                Err(e) => tracing::warn!("ConfigMap {name} holds no readable baseline: {e}"),
            },
            _ => tracing::warn!("ConfigMap {name} lacks the pool annotation or {KEY}"),
        }
    }
    Ok(out)
}

async fn write(api: &Api<ConfigMap>, prefix: &str, (pool, baseline): &Change) -> Result<()> {
    let name = config_map_name(prefix, pool);
    match baseline {
        Some(b) => {
            let json = serde_json::to_string(b).map_err(|e| Error::internal(e.to_string()))?;
            let cm = config_map(prefix, pool, json);
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot write ConfigMap {name}: {e}"),
                )
            })
        }
        None => match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("cannot delete ConfigMap {name}: {e}"),
            )),
        },
    }
}

/// Mirror the hub's baseline changes into ConfigMaps in `namespace`, and
/// hand the hub the ConfigMaps' baselines each time this replica starts
/// leading. Runs until `cancel`.
pub fn spawn(
    client: kube::Client,
    namespace: &str,
    prefix: String,
    hub: Arc<Hub>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let (tx, rx) = unbounded_channel();
    hub.mirror_baselines(tx);
    let leadership = hub.leadership();
    tokio::spawn(run(api, prefix, hub, leadership, rx, cancel))
}

async fn run(
    api: Api<ConfigMap>,
    prefix: String,
    hub: Arc<Hub>,
    mut leadership: tokio::sync::watch::Receiver<bool>,
    mut changes: UnboundedReceiver<Change>,
    cancel: CancellationToken,
) {
    // A change that could not be written yet, tried again before the next.
    let mut pending: Option<Change> = None;
    let mut adopt = *leadership.borrow_and_update();
    loop {
        if adopt {
            match load(&api).await {
                Ok(all) => {
                    tracing::info!("took up {} pinned baseline(s) from ConfigMaps", all.len());
                    hub.replace_baselines(all);
                    adopt = false;
                }
                Err(e) => tracing::warn!("{e}; retrying"),
            }
        }
        if let Some(c) = pending.take()
            && let Err(e) = write(&api, &prefix, &c).await
        {
            tracing::warn!("{e}; retrying");
            pending = Some(c);
        }
        let retry = adopt || pending.is_some();
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = leadership.changed() => match changed {
                Ok(()) => adopt = *leadership.borrow_and_update(),
                Err(_) => return,
            },
            c = changes.recv(), if pending.is_none() => match c {
                Some(c) => pending = Some(c),
                None => return,
            },
            _ = tokio::time::sleep(RETRY), if retry => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_stable_and_distinct() {
        let a = config_map_name("aicr", "p5.48xlarge/NVIDIA-H100-80GB-HBM3");
        assert_eq!(
            a,
            config_map_name("aicr", "p5.48xlarge/NVIDIA-H100-80GB-HBM3")
        );
        assert_ne!(a, config_map_name("aicr", "default"));
        assert!(a.starts_with("aicr-baseline-") && a.len() == "aicr-baseline-".len() + 16);
    }
}
