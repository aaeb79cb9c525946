//! Work the validation puts on the cluster: inner-workload scheduling
//! (`--node-selector`, `--toleration`), validator Jobs for catalog entries
//! that run as their own image, pod result and log extraction, and the
//! checks that need GPU workloads to answer (`check-nvidia-smi`,
//! `nccl-all-reduce-bw`).
//!
//! Scheduling flags go to inner workloads only; a validator Job (the
//! orchestrator) always tolerates every taint and prefers CPU nodes, and
//! pods pinned with `nodeName` are left alone. Everything created carries
//! the run's labels and is removed afterwards unless `--no-cleanup`. Owns
//! these objects' shapes and lifecycles; must not judge deployment state.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use k8s_openapi::api::core::v1::Toleration;

use crate::error::{Error, Result};
use crate::scheduling;

use super::api::{self, gpu_nodes, name_of, quantity_count, str_at};
use super::checks::{Ctx, Out, Verdict};
use super::ctrf::{Report, Status};
use super::phases::{PhaseName, Validator};

/// Log lines kept per check, and bytes per line.
pub const MAX_LOG_LINES: usize = 1000;
pub const MAX_LINE_BYTES: usize = 512;
/// The image the nvidia-smi probe runs.
pub const CUDA_IMAGE: &str = "nvcr.io/nvidia/cuda:13.0.0-base-ubuntu22.04";
/// Names the image the NCCL benchmark runs (it must provide `mpirun` and
/// nccl-tests' `all_reduce_perf`); there is no default we could vouch for.
pub const NCCL_IMAGE_ENV: &str = "AICR_NCCL_TESTS_IMAGE";
const VALIDATOR_SA: &str = "aicr-validator";

/// Where inner workloads may run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scheduling {
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
}

impl Scheduling {
    /// Parse the flags (the grammar shared with `aicr snapshot`); malformed
    /// values are invalid input.
    pub fn parse(selectors: &[String], tolerations: &[String]) -> Result<Scheduling> {
        Ok(Scheduling {
            node_selector: scheduling::parse_node_selectors(selectors)?,
            tolerations: scheduling::parse_tolerations(tolerations)?,
        })
    }

    /// `AICR_NODE_SELECTOR` for validator Jobs: `k=v` pairs, keys sorted.
    pub fn selector_env(&self) -> Option<String> {
        (!self.node_selector.is_empty()).then(|| {
            self.node_selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// `AICR_TOLERATIONS` for validator Jobs, in the flag grammar.
    pub fn tolerations_env(&self) -> Option<String> {
        (!self.tolerations.is_empty()).then(|| {
            self.tolerations
                .iter()
                .map(|t| {
                    let key = t.key.as_deref().unwrap_or("");
                    let effect = t.effect.as_deref().unwrap_or("");
                    match &t.value {
                        Some(v) => format!("{key}={v}:{effect}"),
                        None => format!("{key}:{effect}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// Tolerations for an inner workload: the flags, else tolerate all.
    pub fn pod_tolerations(&self) -> Value {
        if self.tolerations.is_empty() {
            return json!([scheduling::tolerate_all()]);
        }
        json!(self.tolerations)
    }

    /// The node selector for an inner workload: the flags replace the
    /// platform default.
    pub fn pod_node_selector(&self, default: BTreeMap<String, String>) -> BTreeMap<String, String> {
        if self.node_selector.is_empty() {
            default
        } else {
            self.node_selector.clone()
        }
    }

    /// Put both on a pod spec that is not pinned to a node.
    pub fn apply(&self, pod_spec: &mut Value, default_selector: BTreeMap<String, String>) {
        let selector = self.pod_node_selector(default_selector);
        if !selector.is_empty() {
            pod_spec["nodeSelector"] = json!(selector);
        }
        pod_spec["tolerations"] = self.pod_tolerations();
    }
}

/// A validator Job's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub status: Status,
    pub message: String,
    pub stdout: Vec<String>,
    /// How long the check's container ran; 0 when it never did.
    pub duration_ms: u64,
}

/// Exit code to test status: 0 passed, 1 failed, 2 skipped, else other.
pub fn status_of_exit(code: i64) -> Status {
    match code {
        0 => Status::Passed,
        1 => Status::Failed,
        2 => Status::Skipped,
        _ => Status::Other,
    }
}

/// What a finished (or stuck) pod says: exit code (−1 when none) and
/// message, from its first container.
pub fn pod_outcome(pod: &Value) -> (i64, String) {
    let Some(cs) = pod
        .pointer("/status/containerStatuses/0")
        .filter(|c| c.is_object())
    else {
        return (-1, "no container status available".into());
    };
    if let Some(t) = cs.pointer("/state/terminated") {
        let code = t["exitCode"].as_i64().unwrap_or(-1);
        let message = if t["reason"] == "OOMKilled" {
            "Container OOMKilled".to_string()
        } else {
            t["message"].as_str().unwrap_or("").trim_end().to_string()
        };
        return (code, message);
    }
    if let Some(w) = cs.pointer("/state/waiting") {
        return (
            -1,
            format!(
                "{}: {}",
                w["reason"].as_str().unwrap_or(""),
                w["message"].as_str().unwrap_or("")
            ),
        );
    }
    (-1, "container still running after wait completed".into())
}

/// finishedAt − startedAt of a terminated first container, in ms.
pub fn container_runtime_ms(pod: &Value) -> u64 {
    let t = |field: &str| {
        pod.pointer(&format!(
            "/status/containerStatuses/0/state/terminated/{field}"
        ))
        .and_then(Value::as_str)
        .and_then(|s| humantime::parse_rfc3339(s).ok())
    };
    match (t("startedAt"), t("finishedAt")) {
        (Some(a), Some(b)) => b
            .duration_since(a)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        _ => 0,
    }
}

/// The last [`MAX_LOG_LINES`] lines, each cut to [`MAX_LINE_BYTES`] bytes
/// at a character boundary with a note of what was dropped.
pub fn log_lines(log: &str) -> Vec<String> {
    let trimmed = log.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Vec::new();
    }
    let lines: Vec<&str> = trimmed.split('\n').collect();
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    lines[start..]
        .iter()
        .map(|l| {
            if l.len() <= MAX_LINE_BYTES {
                return l.to_string();
            }
            let mut cut = MAX_LINE_BYTES;
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}... [truncated {} chars]", &l[..cut], l.len() - cut)
        })
        .collect()
}

/// 8 random bytes as hex, from the standard library's randomly keyed hasher.
pub fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

/// `<YYYYMMDD>-<HHMMSS>-<16 hex>` (UTC).
pub fn new_run_id() -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}-{}", &digits[..8], &digits[8..14], random_hex())
}

/// A Kubernetes name from arbitrary text: lower case, `[a-z0-9-]`, at most
/// `max` bytes, no leading or trailing dash.
pub fn dns_label(text: &str, max: usize) -> String {
    let mut s: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(max);
    s.trim_matches('-').to_string()
}

/// A Kubernetes label value from arbitrary text (a validator's name):
/// `[A-Za-z0-9._-]`, at most 63 bytes, starting and ending alphanumeric;
/// empty stays empty. The API server refuses any other value.
pub fn label_value(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(63);
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// `AICR_VALIDATOR_IMAGE_REGISTRY` replaces the registry part (two segments
/// for `host/org/rest`, one for `host/rest`); `AICR_VALIDATOR_IMAGE_TAG`
/// replaces a `:latest` tag.
pub fn resolve_image(image: &str, registry: Option<&str>, tag: Option<&str>) -> String {
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
pub struct ValidatorJobs {
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
    pub async fn publish_reports(&mut self, ctx: &Ctx<'_>, reports: &[(PhaseName, &Report)]) {
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
            std::env::var("AICR_VALIDATOR_IMAGE_REGISTRY")
                .ok()
                .as_deref(),
            std::env::var("AICR_VALIDATOR_IMAGE_TAG").ok().as_deref(),
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
    pub async fn run(
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
        let deadline = Instant::now() + v.timeout() + super::checks::GRACE;
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
    pub async fn cleanup(&self, ctx: &Ctx<'_>) {
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
        let mut steps: Vec<(&api::Res, String, String)> = vec![
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

/// Wait for a pod to finish (Succeeded or Failed). `Err` carries why it
/// did not, for the report.
async fn wait_pod(
    ctx: &Ctx<'_>,
    ns: &str,
    name: &str,
    deadline: Instant,
) -> std::result::Result<Value, String> {
    let done = api::poll(deadline, Duration::from_secs(2), || async {
        match ctx.cluster.get(&api::POD, ns, name).await {
            Ok(Some(p)) if matches!(str_at(&p, "/status/phase"), "Succeeded" | "Failed") => {
                Some(Ok(p))
            }
            Ok(None) => Some(Err(format!("pod {ns}/{name} disappeared"))),
            _ => None,
        }
    })
    .await;
    if let Some(r) = done {
        return r;
    }
    let detail = match ctx.cluster.get(&api::POD, ns, name).await {
        Ok(Some(p)) => format!(
            "phase {}, {}",
            str_at(&p, "/status/phase"),
            pod_outcome(&p).1
        ),
        Ok(None) => "gone".to_string(),
        Err(e) => e.to_string(),
    };
    Err(format!("pod {ns}/{name} did not finish in time ({detail})"))
}

async fn delete_quietly(ctx: &Ctx<'_>, res: &api::Res, ns: &str, name: &str) {
    if !ctx.settings.cleanup {
        return;
    }
    if let Err(e) = ctx.cluster.delete(res, ns, name).await {
        tracing::warn!("cleanup: failed to delete {} {ns}/{name}: {e}", res.kind);
    }
}

/// Pods that hold GPUs and have not finished, by node.
fn busy_gpu_nodes(pods: &[Value], gpu_node_names: &[&str]) -> Vec<String> {
    let mut busy: Vec<String> = Vec::new();
    for p in pods {
        if matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed") {
            continue;
        }
        let node = str_at(p, "/spec/nodeName");
        if !gpu_node_names.contains(&node) || busy.iter().any(|b| b == node) {
            continue;
        }
        let wants_gpu = p
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    ["requests", "limits"].iter().any(|k| {
                        quantity_count(c.pointer(&format!("/resources/{k}/nvidia.com~1gpu"))) > 0
                    })
                })
            });
        if wants_gpu {
            busy.push(node.to_string());
        }
    }
    busy
}

/// `check-nvidia-smi`: run nvidia-smi once on every idle GPU node.
pub async fn check_nvidia_smi(ctx: &Ctx<'_>, out: &mut Out) -> Verdict {
    let nodes = match ctx.cluster.list(&api::NODE, "", "").await {
        Ok(n) => n,
        Err(e) => return Verdict::Fail(format!("failed to list nodes: {e}")),
    };
    let gpu = gpu_nodes(&nodes);
    if gpu.is_empty() {
        return Verdict::Skip("no GPU nodes found in the cluster".into());
    }
    let names: Vec<&str> = gpu.iter().map(|n| name_of(n)).collect();
    out.say(format!("GPU nodes: {}", names.join(", ")));
    let busy = match ctx.cluster.list(&api::POD, "", "").await {
        Ok(pods) => busy_gpu_nodes(&pods, &names),
        // Unknown occupancy: do not put work on nodes that may be in use.
        Err(e) => {
            tracing::warn!("cannot list pods to check GPU occupancy: {e}");
            names.iter().map(|s| s.to_string()).collect()
        }
    };
    if !busy.is_empty() {
        return Verdict::Skip(format!(
            "GPU nodes busy with existing workloads: [{}]",
            busy.join(", ")
        ));
    }
    if let Err(e) = ctx.ensure_namespace().await {
        return Verdict::Fail(e);
    }
    let ns = ctx.namespace();
    let suffix = &ctx.run_id[ctx.run_id.len().saturating_sub(8)..];
    let mut pods = Vec::new();
    let mut failures = Vec::new();
    for node in &names {
        let pod_name = format!(
            "nvidia-smi-verify-{}-{suffix}",
            dns_label(&node.replace('.', "-"), 40)
        );
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": ctx.labels("check-nvidia-smi")},
            "spec": {
                // Pinned by name: scheduling flags do not apply.
                "nodeName": node,
                "restartPolicy": "Never",
                "tolerations": [{"operator": "Exists"}],
                "imagePullSecrets": ctx.settings.image_pull_secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000},
                "containers": [{
                    "name": "nvidia-smi",
                    "image": CUDA_IMAGE,
                    "command": ["sh", "-c", "nvidia-smi && echo GPU_CHECK_SUCCESS"],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }],
            },
        });
        match ctx.cluster.create(&api::POD, ns, pod).await {
            Ok(_) => pods.push((node.to_string(), pod_name)),
            Err(e) => failures.push(format!("{node}: failed to create pod: {e}")),
        }
    }
    let deadline = out.deadline_less(Duration::from_secs(15));
    for (node, pod) in &pods {
        match wait_pod(ctx, ns, pod, deadline).await {
            Err(e) => failures.push(format!("{node}: {e}")),
            Ok(p) => {
                let log = ctx.cluster.logs(ns, pod).await.unwrap_or_default();
                let missing: Vec<&str> = [
                    "NVIDIA-SMI",
                    "Driver Version:",
                    "CUDA Version:",
                    "GPU_CHECK_SUCCESS",
                ]
                .into_iter()
                .filter(|m| !log.contains(m))
                .collect();
                if str_at(&p, "/status/phase") == "Succeeded" && missing.is_empty() {
                    let header = log
                        .lines()
                        .find(|l| l.contains("Driver Version:"))
                        .map(|l| {
                            l.trim_matches(|c: char| c == '|' || c.is_whitespace())
                                .to_string()
                        })
                        .unwrap_or_default();
                    out.say(format!("  {node}: nvidia-smi OK {header}"));
                } else {
                    failures.push(format!(
                        "{node}: pod {} ended {}, output lacks {missing:?}",
                        pod,
                        str_at(&p, "/status/phase")
                    ));
                }
            }
        }
        delete_quietly(ctx, &api::POD, ns, pod).await;
    }
    if failures.is_empty() {
        out.say(format!(
            "nvidia-smi verified on {} GPU node(s)",
            names.len()
        ));
        Verdict::Pass
    } else {
        for f in &failures {
            out.say(format!("  {f}"));
        }
        Verdict::Fail(format!(
            "nvidia-smi verification failed on {} of {} GPU node(s): {}",
            failures.len(),
            names.len(),
            failures.join("; ")
        ))
    }
}

/// The NCCL threshold from a constraint value such as `>= 300` or
/// `450 GB/s`: operators and spaces stripped, first token as a number.
pub fn nccl_threshold(expr: &str) -> Option<f64> {
    let t = expr.trim_start_matches(['>', '<', '=', '!', ' ']);
    t.split_whitespace().next()?.parse().ok()
}

/// The out-of-place bus bandwidth (GB/s) of the last result row of
/// `all_reduce_perf` output: rows are `size count type redop root time
/// algbw busbw #wrong ...`.
pub fn nccl_busbw(log: &str) -> Option<f64> {
    log.lines().rev().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() >= 8 && cols[0].parse::<u64>().is_ok() {
            cols[7].parse::<f64>().ok()
        } else {
            None
        }
    })
}

/// `nccl-all-reduce-bw`: an all-reduce benchmark across two GPU nodes
/// through Kubeflow Trainer, held to 90% of the recipe's threshold.
pub async fn nccl_all_reduce_bw(ctx: &Ctx<'_>, out: &mut Out) -> Verdict {
    let Some(expr) = ctx.phase_constraint(PhaseName::Performance, "nccl-all-reduce-bw") else {
        return Verdict::Skip("the recipe sets no nccl-all-reduce-bw constraint in validation.performance.constraints".into());
    };
    let Some(threshold) = nccl_threshold(expr) else {
        return Verdict::Fail(format!(
            "cannot read a bandwidth threshold from nccl-all-reduce-bw {expr:?}"
        ));
    };
    let (service, accelerator) = (
        ctx.recipe.criteria.service.as_str(),
        ctx.recipe.criteria.accelerator.as_str(),
    );
    if !matches!((service, accelerator), ("eks", "h100") | ("gke", "h100")) {
        return Verdict::Skip(format!(
            "the NCCL benchmark has platform settings for eks/h100 and gke/h100 only (recipe: service={service}, accelerator={accelerator})"
        ));
    }
    let nodes = match ctx.cluster.list(&api::NODE, "", "").await {
        Ok(n) => n,
        Err(e) => return Verdict::Fail(format!("failed to list nodes: {e}")),
    };
    let gpu = gpu_nodes(&nodes);
    if gpu.len() < 2 {
        return Verdict::Skip(format!(
            "the NCCL benchmark needs at least 2 schedulable GPU nodes, found {}",
            gpu.len()
        ));
    }
    match ctx.cluster.served(&api::TRAIN_JOB.api_version()).await {
        Ok(Some(p))
            if p.iter().any(|x| x == "trainjobs") && p.iter().any(|x| x == "trainingruntimes") => {}
        Ok(_) => {
            return Verdict::Skip(
                "Kubeflow Trainer is not installed (trainer.kubeflow.org/v1alpha1 TrainJob and TrainingRuntime are not served); install it to run the NCCL benchmark".into(),
            );
        }
        Err(e) => {
            return Verdict::Fail(format!(
                "failed to discover trainer.kubeflow.org/v1alpha1: {e}"
            ));
        }
    }
    let Some(image) = std::env::var(NCCL_IMAGE_ENV)
        .ok()
        .filter(|i| !i.trim().is_empty())
    else {
        return Verdict::Skip(format!(
            "no NCCL benchmark image: set {NCCL_IMAGE_ENV} to an image that provides mpirun and all_reduce_perf (nccl-tests)"
        ));
    };
    if let Err(e) = ctx.ensure_namespace().await {
        return Verdict::Fail(e);
    }
    let gpus = quantity_count(gpu[0].pointer("/status/allocatable/nvidia.com~1gpu"));
    let mut default_selector = BTreeMap::new();
    match service {
        "eks" => {
            let it = str_at(gpu[0], "/metadata/labels/node.kubernetes.io~1instance-type");
            if !it.is_empty() {
                default_selector.insert(
                    "node.kubernetes.io/instance-type".to_string(),
                    it.to_string(),
                );
            }
        }
        _ => {
            default_selector.insert(
                "cloud.google.com/gke-accelerator".to_string(),
                "nvidia-h100-mega-80gb".to_string(),
            );
        }
    }
    let ns = ctx.namespace();
    let name = format!("aicr-nccl-{}", &random_hex()[..8]);
    let mut worker_spec = json!({
        "containers": [{"name": "node", "image": image,
                        "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}],
        "imagePullSecrets": ctx.settings.image_pull_secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
    });
    ctx.settings
        .scheduling
        .apply(&mut worker_spec, default_selector.clone());
    let mut launcher_spec = json!({
        "containers": [{"name": "node", "image": image, "command": [
            "mpirun", "--allow-run-as-root", "-np", (2 * gpus).to_string(), "-bind-to", "none",
            "-x", "NCCL_DEBUG=WARN", "all_reduce_perf", "-b", "8", "-e", "8G", "-f", "2", "-g", "1",
        ]}],
        "imagePullSecrets": ctx.settings.image_pull_secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
    });
    ctx.settings
        .scheduling
        .apply(&mut launcher_spec, default_selector);
    let labels = ctx.labels("nccl-all-reduce-bw");
    let runtime = json!({
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainingRuntime",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "mlPolicy": {"numNodes": 2, "mpi": {"numProcPerNode": gpus, "mpiImplementation": "OpenMPI", "runLauncherAsNode": false}},
            "template": {"spec": {"replicatedJobs": [
                {"name": "launcher", "replicas": 1, "template": {"spec": {"template": {"spec": launcher_spec}}}},
                {"name": "node", "replicas": 1, "template": {"spec": {"template": {"spec": worker_spec}}}},
            ]}},
        },
    });
    let train_job = json!({
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime", "name": name},
                 "trainer": {"numNodes": 2}},
    });
    if let Err(e) = ctx
        .cluster
        .create(&api::TRAINING_RUNTIME, ns, runtime)
        .await
    {
        return Verdict::Fail(format!("failed to create TrainingRuntime {ns}/{name}: {e}"));
    }
    let verdict = run_train_job(ctx, out, ns, &name, train_job, threshold, expr).await;
    delete_quietly(ctx, &api::TRAIN_JOB, ns, &name).await;
    delete_quietly(ctx, &api::TRAINING_RUNTIME, ns, &name).await;
    verdict
}

async fn run_train_job(
    ctx: &Ctx<'_>,
    out: &mut Out,
    ns: &str,
    name: &str,
    train_job: Value,
    threshold: f64,
    expr: &str,
) -> Verdict {
    if let Err(e) = ctx.cluster.create(&api::TRAIN_JOB, ns, train_job).await {
        return Verdict::Fail(format!("failed to create TrainJob {ns}/{name}: {e}"));
    }
    out.say(format!("TrainJob {ns}/{name} created"));
    let selector = format!(
        "jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name=launcher"
    );
    let deadline = out.deadline_less(Duration::from_secs(30));
    let launcher = api::poll(deadline, Duration::from_secs(5), || async {
        let pods = ctx.cluster.list(&api::POD, ns, &selector).await.ok()?;
        pods.into_iter()
            .find(|p| matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed"))
    })
    .await;
    let Some(pod) = launcher else {
        return Verdict::Fail(format!(
            "the NCCL launcher pod of TrainJob {ns}/{name} did not finish in time"
        ));
    };
    let pod_name = name_of(&pod).to_string();
    let log = match ctx.cluster.logs(ns, &pod_name).await {
        Ok(l) => l,
        Err(e) => return Verdict::Fail(format!("failed to read launcher logs ({pod_name}): {e}")),
    };
    let Some(bw) = nccl_busbw(&log) else {
        out.lines
            .extend(log_lines(&log).into_iter().rev().take(20).rev());
        return Verdict::Fail(format!(
            "no all_reduce_perf results in launcher pod {pod_name} (phase {})",
            str_at(&pod, "/status/phase")
        ));
    };
    let ok = bw >= 0.9 * threshold;
    out.say(format!("NCCL All Reduce bandwidth: {bw:.2} GB/s"));
    out.say(format!("Constraint: {} → {ok}", expr.trim()));
    if ok {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "NCCL All Reduce bus bandwidth {bw:.2} GB/s is below 90% of {threshold} GB/s"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduling_flags_reach_workloads_and_env() {
        let s = Scheduling::parse(
            &["zone=a".into(), "nodeGroup=gpu=x".into()],
            &[
                "dedicated=gpu:NoSchedule".into(),
                "nvidia.com/gpu:NoExecute".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.node_selector["nodeGroup"], "gpu=x");
        assert_eq!(s.selector_env().unwrap(), "nodeGroup=gpu=x,zone=a");
        assert_eq!(
            s.tolerations_env().unwrap(),
            "dedicated=gpu:NoSchedule,nvidia.com/gpu:NoExecute"
        );
        assert_eq!(
            s.pod_tolerations(),
            json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                   {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}])
        );
        let none = Scheduling::default();
        assert_eq!(none.pod_tolerations(), json!([{"operator": "Exists"}]));
        assert_eq!((none.selector_env(), none.tolerations_env()), (None, None));
        let default = BTreeMap::from([("a".to_string(), "b".to_string())]);
        assert_eq!(none.pod_node_selector(default.clone()), default);
        let mut spec = json!({});
        s.apply(&mut spec, default);
        assert_eq!(
            spec["nodeSelector"],
            json!({"nodeGroup": "gpu=x", "zone": "a"})
        );
    }

    #[test]
    fn malformed_scheduling_flags_are_invalid_input() {
        let e = Scheduling::parse(&["x".into()], &[]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        for bad in ["k=v", "k=v:Sometimes", "a:b:NoSchedule"] {
            let e = Scheduling::parse(&[], &[bad.into()]).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn pod_outcomes() {
        let term = |code: i64, reason: &str, msg: &str| json!({"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": code, "reason": reason, "message": msg}}}]}});
        assert_eq!(pod_outcome(&term(1, "Error", "boom\n")), (1, "boom".into()));
        assert_eq!(
            pod_outcome(&term(137, "OOMKilled", "")),
            (137, "Container OOMKilled".into())
        );
        let waiting = json!({"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]}});
        assert_eq!(
            pod_outcome(&waiting).1,
            "ImagePullBackOff: Back-off pulling image \"x\""
        );
        assert_eq!(pod_outcome(&json!({})).1, "no container status available");
        let timed = json!({"status": {"containerStatuses": [{"state": {"terminated": {
            "exitCode": 0, "startedAt": "2026-11-28T01:12:29Z", "finishedAt": "2026-11-28T01:12:32Z"}}}]}});
        assert_eq!(container_runtime_ms(&timed), 3000);
        assert_eq!(container_runtime_ms(&waiting), 0);
        assert_eq!(status_of_exit(2), Status::Skipped);
        assert_eq!(status_of_exit(-1), Status::Other);
    }

    #[test]
    fn logs_keep_the_tail_and_cut_long_lines_on_char_boundaries() {
        let many: String = (0..1500).map(|i| format!("line {i}\n")).collect();
        let lines = log_lines(&many);
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[0], "line 500");
        let long = format!("{}é{}", "a".repeat(511), "b".repeat(100));
        let cut = &log_lines(&long)[0];
        assert!(cut.starts_with(&"a".repeat(511)));
        assert!(cut.ends_with("... [truncated 102 chars]"), "{cut}");
        assert!(log_lines("\n\n").is_empty());
    }

    #[test]
    fn run_ids_and_names() {
        let id = new_run_id();
        assert_eq!(id.len(), 8 + 1 + 6 + 1 + 16, "{id}");
        assert_eq!(
            dns_label("ip-10-0-1-12.EC2.internal", 63),
            "ip-10-0-1-12-ec2-internal"
        );
        assert_eq!(dns_label("-x-", 63), "x");
        assert_eq!(label_value("nccl-all-reduce-bw"), "nccl-all-reduce-bw");
        assert_eq!(
            label_value("Team GPU burn-in (nightly)"),
            "Team-GPU-burn-in--nightly"
        );
        assert_eq!(label_value(&format!("{}_x", "a".repeat(70))).len(), 63);
        assert_eq!(label_value("é"), "");
        assert_eq!(label_value(""), "");
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

    #[test]
    fn nccl_output_parsing() {
        assert_eq!(nccl_threshold(">= 300"), Some(300.0));
        assert_eq!(nccl_threshold("450 GB/s"), Some(450.0));
        assert_eq!(nccl_threshold(">= fast"), None);
        let log = "# nThread 1\n#  size  count  type redop root  time algbw busbw #wrong  time algbw busbw #wrong\n\
                   1048576  262144 float sum -1  55.1  19.03  35.68  0  54.2 19.3 36.2 0\n\
                   8589934592 2147483648 float sum -1 32989 260.39 488.37 0 32970 260.5 488.5 0\n\
                   # Avg bus bandwidth    : 250.1\n";
        assert_eq!(nccl_busbw(log), Some(488.37));
        assert_eq!(nccl_busbw("no results"), None);
    }

    #[test]
    fn busy_nodes_are_those_with_running_gpu_pods() {
        let pods = vec![
            json!({"spec": {"nodeName": "g1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}, "status": {"phase": "Running"}}),
            json!({"spec": {"nodeName": "g2", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}, "status": {"phase": "Succeeded"}}),
            json!({"spec": {"nodeName": "g2", "containers": [{"resources": {}}]}, "status": {"phase": "Running"}}),
            json!({"spec": {"nodeName": "c1", "containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}, "status": {"phase": "Running"}}),
        ];
        assert_eq!(busy_gpu_nodes(&pods, &["g1", "g2"]), ["g1"]);
    }
}
