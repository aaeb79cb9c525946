//! Validator Jobs: catalog entries that run as their own image. The
//! namespace, ServiceAccount, cluster-admin binding and data ConfigMaps
//! they need (created on first use), one Job per entry, the phase reports
//! they may read, and cleanup.
//!
//! The orchestrator Job always tolerates every taint and prefers CPU nodes;
//! scheduling flags reach the check inside it as environment only.
//! Everything created carries the run's labels and is removed afterwards
//! unless `--no-cleanup`. Owns these objects' shapes and lifecycles; must
//! not name other checks, and judges nothing itself: the Job's exit code
//! does.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::validate::api::{self, name_of, str_at};
use crate::validate::check::{
    Ctx, GRACE, PhaseName, Validator, dns_label, label_value, random_hex,
};
use crate::validate::ctrf::{Report, Status};
use crate::validate::pods::{container_runtime_ms, log_lines, pod_outcome};

const VALIDATOR_SA: &str = "aicr-validator";

/// A validator Job's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobResult {
    pub status: Status,
    pub message: String,
    pub stdout: Vec<String>,
    /// How long the check's container ran; 0 when it never did.
    pub duration_ms: u64,
}

/// Exit code to test status: 0 passed, 1 failed, 2 skipped, else other.
pub(crate) fn status_of_exit(code: i64) -> Status {
    match code {
        0 => Status::Passed,
        1 => Status::Failed,
        2 => Status::Skipped,
        _ => Status::Other,
    }
}

/// A catalog image as the run pulls it: `registry` (the settings'
/// `validator_image_registry`) replaces the registry part (two segments for
/// `host/org/rest`, one for `host/rest`), `tag` (`validator_image_tag`)
/// replaces a `:latest` tag; empty values change nothing.
pub(crate) fn resolve_image(image: &str, registry: Option<&str>, tag: Option<&str>) -> String {
    let mut out = image.to_string();
    if let Some(t) = tag.filter(|t| !t.is_empty())
        && let Some(base) = out.strip_suffix(":latest")
    {
        out = format!("{base}:{t}");
    }
    if let Some(r) = registry.filter(|r| !r.is_empty()) {
        let parts: Vec<&str> = out.splitn(4, '/').collect();
        let rest = match parts.len() {
            n if n >= 3 => parts[2..].join("/"),
            2 => parts[1].to_string(),
            _ => out.clone(),
        };
        out = format!("{}/{rest}", r.trim_end_matches('/'));
    }
    out
}

/// Validator Jobs for catalog entries that run as their own image: the
/// namespace, ServiceAccount, cluster-admin binding and data ConfigMaps
/// they need (created on first use), one Job per check, and cleanup.
#[derive(Debug, Default)]
pub(crate) struct ValidatorJobs {
    prepared: bool,
    /// Phases whose CTRF report ConfigMap this run wrote.
    published: Vec<PhaseName>,
}

impl ValidatorJobs {
    fn data_configmaps(ctx: &Ctx<'_>) -> [String; 2] {
        [
            format!("aicr-snapshot-{}", ctx.run_id),
            format!("aicr-recipe-{}", ctx.run_id),
        ]
    }

    /// §5.2, once per run. Failure aborts the run.
    async fn prepare(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        if self.prepared {
            return Ok(());
        }
        let infra = |what: &str, e: &dyn std::fmt::Display| Error::internal(format!("{what}: {e}"));
        ctx.ensure_namespace().await.map_err(Error::internal)?;
        let ns = ctx.namespace();
        let labels =
            json!({"app.kubernetes.io/name": VALIDATOR_SA, "app.kubernetes.io/managed-by": "aicr"});
        let sa = json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": VALIDATOR_SA, "namespace": ns, "labels": labels},
        });
        ctx.cluster
            .apply(&api::SERVICE_ACCOUNT, ns, VALIDATOR_SA, sa, "aicr")
            .await
            .map_err(|e| infra("failed to ensure RBAC", &e))?;
        let crb = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": VALIDATOR_SA, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": VALIDATOR_SA, "namespace": ns}],
        });
        ctx.cluster
            .apply(&api::CLUSTER_ROLE_BINDING, "", VALIDATOR_SA, crb, "aicr")
            .await
            .map_err(|e| infra("failed to ensure RBAC", &e))?;
        let docs = [
            ("snapshot.yaml", crate::yaml::to_yaml(ctx.snapshot)?),
            ("recipe.yaml", crate::yaml::to_yaml(ctx.recipe)?),
        ];
        for (name, (key, text)) in Self::data_configmaps(ctx).iter().zip(docs) {
            let mut labels = ctx.labels("data");
            labels
                .as_object_mut()
                .map(|m| m.remove("aicr.nvidia.com/validator"));
            let cm = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "data": {key: text},
            });
            ctx.cluster
                .apply(&api::CONFIG_MAP, ns, name, cm, "aicr")
                .await
                .map_err(|e| infra("failed to create data ConfigMaps", &e))?;
        }
        self.prepared = true;
        Ok(())
    }

    fn report_configmap(ctx: &Ctx<'_>, phase: PhaseName) -> String {
        format!("aicr-ctrf-{}-{}", ctx.run_id, phase.as_str())
    }

    /// §5.3: each finished phase's CTRF as ConfigMap
    /// `aicr-ctrf-<run>-<phase>`, for validator Jobs and for `--no-cleanup`
    /// inspection. Only once the run has created its validator objects: a
    /// run of in-process checks alone (the deployment phase) stays
    /// read-only, as the seed promises. Reports of earlier phases are
    /// written then too. A failed write is a warning.
    pub(crate) async fn publish_reports(
        &mut self,
        ctx: &Ctx<'_>,
        reports: &[(PhaseName, &Report)],
    ) {
        if !self.prepared {
            return;
        }
        let ns = ctx.namespace();
        for (phase, report) in reports {
            if self.published.contains(phase) {
                continue;
            }
            let name = Self::report_configmap(ctx, *phase);
            let text = match report.to_json() {
                Ok(t) => t.trim_end_matches('\n').to_string(),
                Err(e) => {
                    tracing::warn!("CTRF report of phase {phase} not published: {e}");
                    continue;
                }
            };
            let mut labels = ctx.labels("");
            if let Some(m) = labels.as_object_mut() {
                m.remove("aicr.nvidia.com/validator");
                m.insert("aicr.nvidia.com/phase".into(), phase.as_str().into());
                m.insert("aicr.nvidia.com/report-type".into(), "ctrf".into());
            }
            let cm = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "data": {"report.json": text},
            });
            match ctx
                .cluster
                .apply(&api::CONFIG_MAP, ns, &name, cm, "aicr-validator")
                .await
            {
                Ok(_) => self.published.push(*phase),
                Err(e) => tracing::warn!("failed to write CTRF report ConfigMap {ns}/{name}: {e}"),
            }
        }
    }

    fn job(ctx: &Ctx<'_>, v: &Validator, phase: PhaseName, name: &str) -> Value {
        let image = resolve_image(
            &v.image,
            ctx.settings.validator_image_registry.as_deref(),
            ctx.settings.validator_image_tag.as_deref(),
        );
        let timeout = v.timeout().as_secs();
        let mut env = vec![
            json!({"name": "AICR_SNAPSHOT_PATH", "value": "/data/snapshot/snapshot.yaml"}),
            json!({"name": "AICR_RECIPE_PATH", "value": "/data/recipe/recipe.yaml"}),
            json!({"name": "AICR_VALIDATOR_NAME", "value": v.name}),
            json!({"name": "AICR_VALIDATOR_PHASE", "value": phase.as_str()}),
            json!({"name": "AICR_RUN_ID", "value": ctx.run_id}),
            json!({"name": "AICR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
        ];
        let sched = &ctx.settings.scheduling;
        if let Some(s) = sched.selector_env() {
            env.push(json!({"name": "AICR_NODE_SELECTOR", "value": s}));
        }
        if let Some(t) = sched.tolerations_env() {
            env.push(json!({"name": "AICR_TOLERATIONS", "value": t}));
        }
        env.extend(
            v.env
                .iter()
                .map(|e| json!({"name": e.name, "value": e.value})),
        );
        let (cpu, memory) = match &v.resources {
            Some(r) if !r.cpu.is_empty() && !r.memory.is_empty() => {
                (r.cpu.clone(), r.memory.clone())
            }
            _ => ("1".to_string(), "1Gi".to_string()),
        };
        let [snapshot_cm, recipe_cm] = Self::data_configmaps(ctx);
        let mut labels = ctx.labels(&v.name);
        labels["aicr.nvidia.com/job-type"] = "validation".into();
        labels["aicr.nvidia.com/phase"] = phase.as_str().into();
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": ctx.namespace(), "labels": labels},
            "spec": {
                "activeDeadlineSeconds": timeout,
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": {
                        "app.kubernetes.io/name": "aicr",
                        "app.kubernetes.io/component": "validation",
                        "aicr.nvidia.com/validator": label_value(&v.name),
                    }},
                    "spec": {
                        "serviceAccountName": VALIDATOR_SA,
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": 30,
                        "imagePullSecrets": ctx.settings.image_pull_secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
                        // The orchestrator runs anywhere, preferring CPU
                        // nodes; scheduling flags are for inner workloads.
                        "tolerations": [{"operator": "Exists"}],
                        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "preference": {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}]},
                        }]}},
                        "containers": [{
                            "name": "validator",
                            "image": image,
                            "imagePullPolicy": if image.ends_with(":latest") { "Always" } else { "IfNotPresent" },
                            "args": v.args,
                            "env": env,
                            "resources": {
                                "requests": {"cpu": cpu, "memory": memory},
                                "limits": {"cpu": cpu, "memory": memory},
                            },
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "volumeMounts": [
                                {"name": "snapshot", "mountPath": "/data/snapshot", "readOnly": true},
                                {"name": "recipe", "mountPath": "/data/recipe", "readOnly": true},
                            ],
                        }],
                        "volumes": [
                            {"name": "snapshot", "configMap": {"name": snapshot_cm}},
                            {"name": "recipe", "configMap": {"name": recipe_cm}},
                        ],
                    },
                },
            },
        })
    }

    /// §5.4: apply the Job, wait for it, read its pod, clean up.
    pub(crate) async fn run(
        &mut self,
        ctx: &Ctx<'_>,
        v: &Validator,
        phase: PhaseName,
    ) -> Result<JobResult> {
        self.prepare(ctx).await?;
        let ns = ctx.namespace();
        let name = format!(
            "aicr-{}-{}",
            dns_label(&v.name, 63 - 14),
            &random_hex()[..8]
        );
        let other = |message: String| JobResult {
            status: Status::Other,
            message,
            stdout: Vec::new(),
            duration_ms: 0,
        };
        if let Err(e) = ctx
            .cluster
            .apply(
                &api::JOB,
                ns,
                &name,
                Self::job(ctx, v, phase, &name),
                "aicr",
            )
            .await
        {
            return Ok(other(format!(
                "failed to deploy Job: failed to apply Job with prefix {}: {e}",
                v.name
            )));
        }
        let deadline = Instant::now() + v.timeout() + GRACE;
        let finished = api::poll(deadline, Duration::from_secs(2), || async {
            match ctx.cluster.get(&api::JOB, ns, &name).await {
                Ok(Some(job))
                    if api::condition_true(&job, "Complete")
                        || api::condition_true(&job, "Failed") =>
                {
                    Some(Ok(()))
                }
                Ok(None) => Some(Err(format!("Job {name} was deleted while waiting for it"))),
                _ => None,
            }
        })
        .await;
        let result = match finished {
            Some(Err(m)) => other(m),
            Some(Ok(())) => Self::collect(ctx, &name, None).await,
            None => Self::collect(ctx, &name, Some(v.timeout())).await,
        };
        if ctx.settings.cleanup {
            Self::remove_job(ctx, &name).await;
        }
        Ok(result)
    }

    /// §5.6 (and §5.4.3 when the wait ran out: `timed_out` is the budget).
    async fn collect(ctx: &Ctx<'_>, job: &str, timed_out: Option<Duration>) -> JobResult {
        let ns = ctx.namespace();
        let selector = format!("batch.kubernetes.io/job-name={job}");
        let pods = match ctx.cluster.list(&api::POD, ns, &selector).await {
            Ok(p) => p,
            Err(e) => {
                return JobResult {
                    status: Status::Other,
                    message: format!("pod not found for Job {job}: {e}"),
                    stdout: Vec::new(),
                    duration_ms: 0,
                };
            }
        };
        let Some(pod) = pods.first() else {
            let message = if timed_out.is_some() {
                "pod never reached running state".to_string()
            } else {
                format!("pod not found for Job {job}: no pods")
            };
            return JobResult {
                status: Status::Other,
                message,
                stdout: Vec::new(),
                duration_ms: 0,
            };
        };
        let (mut code, mut message) = pod_outcome(pod);
        let terminated = pod
            .pointer("/status/containerStatuses/0/state/terminated")
            .is_some();
        let waiting = pod
            .pointer("/status/containerStatuses/0/state/waiting")
            .is_some();
        if let Some(budget) = timed_out
            && !terminated
        {
            code = -1;
            message = format!(
                "timeout: validator did not complete within {}",
                humantime::format_duration(budget)
            );
        }
        let stdout = if waiting && !terminated {
            Vec::new()
        } else {
            match ctx.cluster.logs(ns, name_of(pod)).await {
                Ok(log) => log_lines(&log),
                Err(e) => {
                    tracing::warn!("failed to read logs of pod {}: {e}", name_of(pod));
                    Vec::new()
                }
            }
        };
        JobResult {
            status: status_of_exit(code),
            message,
            stdout,
            duration_ms: container_runtime_ms(pod),
        }
    }

    async fn remove_job(ctx: &Ctx<'_>, job: &str) {
        let ns = ctx.namespace();
        if let Err(e) = ctx.cluster.delete(&api::JOB, ns, job).await {
            tracing::warn!("failed to delete Job {ns}/{job}: {e}");
            return;
        }
        let selector = format!("batch.kubernetes.io/job-name={job}");
        let gone = api::poll(
            Instant::now() + Duration::from_secs(60),
            Duration::from_secs(2),
            || async {
                match ctx.cluster.list(&api::POD, ns, &selector).await {
                    Ok(pods) => pods
                        .iter()
                        .all(|p| matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed"))
                        .then_some(()),
                    Err(_) => None,
                }
            },
        )
        .await;
        if gone.is_none() {
            tracing::warn!("pods of Job {ns}/{job} did not terminate within 60s");
        }
    }

    /// End of run: RBAC and data ConfigMaps go (the namespace stays).
    pub(crate) async fn cleanup(&self, ctx: &Ctx<'_>) {
        if !self.prepared {
            return;
        }
        let ns = ctx.namespace();
        if !ctx.settings.cleanup {
            tracing::warn!(
                "--no-cleanup: keeping validator Jobs, data ConfigMaps, ServiceAccount {ns}/{VALIDATOR_SA} and ClusterRoleBinding {VALIDATOR_SA} (cluster-admin) for run {}; inspect with: kubectl logs -l aicr.nvidia.com/run-id={} -n {ns}",
                ctx.run_id,
                ctx.run_id
            );
            return;
        }
        let mut steps: Vec<(&api::ResourceType, String, String)> = vec![
            (&api::SERVICE_ACCOUNT, ns.to_string(), VALIDATOR_SA.into()),
            (
                &api::CLUSTER_ROLE_BINDING,
                String::new(),
                VALIDATOR_SA.into(),
            ),
        ];
        for cm in Self::data_configmaps(ctx) {
            steps.push((&api::CONFIG_MAP, ns.to_string(), cm));
        }
        for phase in &self.published {
            let cm = Self::report_configmap(ctx, *phase);
            steps.push((&api::CONFIG_MAP, ns.to_string(), cm));
        }
        for (res, ns, name) in steps {
            let r =
                tokio::time::timeout(Duration::from_secs(30), ctx.cluster.delete(res, &ns, &name))
                    .await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cleanup: failed to delete {} {name}: {e}", res.kind),
                Err(_) => tracing::warn!("cleanup: deleting {} {name} timed out", res.kind),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_statuses() {
        assert_eq!(status_of_exit(2), Status::Skipped);
        assert_eq!(status_of_exit(-1), Status::Other);
    }

    #[test]
    fn image_overrides() {
        let up = "ghcr.io/nvidia/aicr-validators/deployment:latest";
        assert_eq!(resolve_image(up, None, None), up);
        assert_eq!(
            resolve_image(up, Some("mirror.local/ai"), Some("v0.11.1")),
            "mirror.local/ai/aicr-validators/deployment:v0.11.1"
        );
        assert_eq!(
            resolve_image("host/img:1", Some("m.io"), Some("v2")),
            "m.io/img:1"
        );
    }
}
