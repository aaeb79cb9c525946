//! Active/passive leader election through a `coordination.k8s.io/v1` Lease.
//! The holder renews it; a standby takes it over once it has watched the
//! lease go unrenewed for a whole lease duration (measured on its own clock,
//! so clock skew between replicas does not matter). Updates carry the
//! lease's resourceVersion, so two replicas racing for it cannot both win.
//!
//! Owns the lease only; it tells the hub when leadership starts and ends and
//! must not touch anything else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

#[derive(Debug, Clone)]
pub struct Election {
    pub name: String,
    pub namespace: String,
    /// This replica's holder identity.
    pub identity: String,
    pub lease_duration: Duration,
}

impl Election {
    /// Attempts happen five times per lease duration.
    fn retry(&self) -> Duration {
        (self.lease_duration / 5).max(Duration::from_millis(50))
    }

    /// A leader that could not renew for this long steps down, before any
    /// standby may take over.
    fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    fn seconds(&self) -> i32 {
        self.lease_duration.as_secs().clamp(1, i32::MAX as u64) as i32
    }
}

/// What this replica last saw of someone else's lease, and since when.
struct Observed {
    holder: String,
    renew: Option<MicroTime>,
    since: Instant,
}

struct Elector {
    api: Api<Lease>,
    e: Election,
    observed: Option<Observed>,
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.e.identity.clone()),
            lease_duration_seconds: Some(self.e.seconds()),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: `Ok(true)` while we hold the lease.
    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.e.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.e.name.clone()),
                    namespace: Some(self.e.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let next = if holder == self.e.identity {
            self.spec(transitions, spec.acquire_time.clone())
        } else {
            let changed = self
                .observed
                .as_ref()
                .is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
            if changed {
                self.observed = Some(Observed {
                    holder: holder.clone(),
                    renew: spec.renew_time.clone(),
                    since: Instant::now(),
                });
            }
            let duration = spec
                .lease_duration_seconds
                .map_or(self.e.lease_duration, |s| {
                    Duration::from_secs(s.max(1) as u64)
                });
            let expired = self
                .observed
                .as_ref()
                .is_some_and(|o| o.since.elapsed() >= duration);
            if !holder.is_empty() && !expired {
                return Ok(false);
            }
            self.spec(transitions + 1, None)
        };
        lease.spec = Some(next);
        match self
            .api
            .replace(&self.e.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Hand the lease back on a clean shutdown so a standby need not wait
    /// out the lease duration.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.e.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.e.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(e) = self
            .api
            .replace(&self.e.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(
                "failed to release lease {}/{}: {e}",
                self.e.namespace,
                self.e.name
            );
        }
    }
}

/// Campaign until `cancel`; the hub hears `take_over` / `step_down`.
pub fn spawn(
    client: kube::Client,
    e: Election,
    hub: Arc<Hub>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut el = Elector {
            api: Api::namespaced(client, &e.namespace),
            e,
            observed: None,
        };
        let mut leading = false;
        let mut last_renew = Instant::now();
        loop {
            match el.attempt().await {
                Ok(true) => {
                    last_renew = Instant::now();
                    if !leading {
                        leading = true;
                        tracing::info!(
                            "leading: holding lease {}/{} as {}",
                            el.e.namespace,
                            el.e.name,
                            el.e.identity
                        );
                        hub.take_over();
                    }
                }
                Ok(false) => {
                    if leading {
                        leading = false;
                        tracing::warn!("lost lease {}/{}; standing by", el.e.namespace, el.e.name);
                        hub.step_down();
                    }
                }
                Err(err) => {
                    tracing::warn!("lease {}/{}: {err}", el.e.namespace, el.e.name);
                    if leading && last_renew.elapsed() >= el.e.renew_deadline() {
                        leading = false;
                        tracing::warn!("could not renew lease in time; standing by");
                        hub.step_down();
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(el.e.retry()) => {}
            }
        }
        if leading {
            hub.step_down();
            el.release().await;
        }
    })
}
