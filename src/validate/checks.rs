//! The check framework: what a check sees ([`Ctx`], [`Out`]), how it ends
//! ([`Verdict`]), the registry of checks implemented here, and the
//! [`Runner`] that turns one catalog entry into one CTRF test, with its
//! budget, timing and status mapping.
//!
//! Catalog entries whose image is one of the upstream validator images and
//! whose check this registry knows run in-process; every other entry runs
//! as a validator Job with its own image (see `workloads`). Owns dispatch
//! and budgets; must not contain check logic itself.

use std::path::PathBuf;
use std::time::{Duration, Instant as StdInstant};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::model::recipe::RecipeResult;
use crate::model::snapshot::Snapshot;

use super::api::{self, Cluster};
use super::ctrf::{Report, Status, Test};
use super::phases::{PhaseName, Validator};
use super::workloads::{Scheduling, ValidatorJobs};
use super::{conformance, deployment, workloads};

/// Extra time a check gets past its catalog timeout before it is abandoned
/// (its own waits end at the timeout, so it normally reports first).
pub const GRACE: Duration = Duration::from_secs(30);

/// Run-wide settings the CLI gathers from flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace for everything the run creates.
    pub namespace: String,
    pub scheduling: Scheduling,
    pub image_pull_secrets: Vec<String>,
    pub cleanup: bool,
    /// Handed to external tools (chainsaw) so they reach the same cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The CLI version, for reports and image tags.
    pub version: String,
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// The cluster lacks what the check needs; the reason says what.
    Skip(String),
    /// The check could not reach a verdict (crash, timeout).
    Other(String),
}

impl Verdict {
    /// Pass when `problems` is empty, else one failure naming them all.
    pub fn from_problems(what: &str, problems: &[String]) -> Verdict {
        if problems.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail(format!("{what}: {}", problems.join("; ")))
        }
    }
}

/// A check's evidence lines and its deadline.
#[derive(Debug)]
pub struct Out {
    pub lines: Vec<String>,
    pub deadline: Instant,
}

impl Out {
    pub fn new(budget: Duration) -> Out {
        Out {
            lines: Vec::new(),
            deadline: Instant::now() + budget,
        }
    }

    pub fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    /// The deadline, brought forward by `margin` so a wait leaves time to
    /// clean up and report.
    pub fn deadline_less(&self, margin: Duration) -> Instant {
        let now = Instant::now();
        if self.deadline > now + margin {
            self.deadline - margin
        } else {
            self.deadline.max(now)
        }
    }
}

/// Everything a check may read, shared by all checks of a run.
pub struct Ctx<'a> {
    pub cluster: Cluster,
    pub recipe: &'a RecipeResult,
    /// Recipe data (embedded catalog plus `--data`): manifests, assert files.
    pub data: &'a Catalog,
    /// The snapshot handed to validator Jobs (the first node's).
    pub snapshot: &'a Snapshot,
    pub settings: &'a Settings,
    pub run_id: String,
    namespace_ready: tokio::sync::OnceCell<()>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        cluster: Cluster,
        recipe: &'a RecipeResult,
        data: &'a Catalog,
        snapshot: &'a Snapshot,
        settings: &'a Settings,
        run_id: String,
    ) -> Ctx<'a> {
        Ctx {
            cluster,
            recipe,
            data,
            snapshot,
            settings,
            run_id,
            namespace_ready: tokio::sync::OnceCell::new(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// Labels on every object the run creates. The check's name is made a
    /// legal label value: catalog names are free text.
    pub fn labels(&self, check: &str) -> Value {
        json!({
            "app.kubernetes.io/name": "aicr",
            "app.kubernetes.io/component": "validation",
            "app.kubernetes.io/managed-by": "aicr",
            "aicr.nvidia.com/run-id": self.run_id,
            "aicr.nvidia.com/validator": workloads::label_value(check),
        })
    }

    /// Create the validation namespace once per run; it already existing is
    /// fine, and it is never deleted.
    pub async fn ensure_namespace(&self) -> std::result::Result<(), String> {
        self.namespace_ready
            .get_or_try_init(|| async {
                let ns = json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": self.namespace(),
                        "labels": {
                            "app.kubernetes.io/name": "aicr",
                            "app.kubernetes.io/component": "validation",
                            "app.kubernetes.io/managed-by": "aicr",
                        },
                    },
                });
                self.cluster
                    .ensure(&api::NAMESPACE, "", ns)
                    .await
                    .map_err(|e| {
                        format!(
                            "failed to ensure validation namespace {}: {e}",
                            self.namespace()
                        )
                    })
            })
            .await
            .map(|_| ())
    }

    /// A component's namespace from the recipe, else `default`.
    pub fn component_namespace(&self, component: &str, default: &str) -> String {
        self.recipe
            .component(component)
            .map(|c| c.namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default.to_string())
    }

    /// Whether the recipe has the component and it is enabled.
    pub fn has_component(&self, component: &str) -> bool {
        self.recipe
            .component(component)
            .is_some_and(|c| c.is_enabled())
    }

    /// A phase constraint's expression (`validation.<phase>.constraints`).
    pub fn phase_constraint(&self, phase: PhaseName, name: &str) -> Option<&'a str> {
        phase
            .of(self.recipe)?
            .constraints
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.as_str())
    }
}

/// The checks implemented in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    OperatorHealth,
    ExpectedResources,
    GpuOperatorVersion,
    CheckNvidiaSmi,
    NcclAllReduceBw,
    DraSupport,
    GangScheduling,
    AcceleratorMetrics,
    AiServiceMetrics,
    InferenceGateway,
    PodAutoscaling,
    ClusterAutoscaling,
    RobustController,
    SecureAcceleratorAccess,
    GpuOperatorHealth,
    PlatformHealth,
}

pub const NATIVE: [(Native, &str, PhaseName); 16] = [
    (
        Native::OperatorHealth,
        "operator-health",
        PhaseName::Deployment,
    ),
    (
        Native::ExpectedResources,
        "expected-resources",
        PhaseName::Deployment,
    ),
    (
        Native::GpuOperatorVersion,
        "gpu-operator-version",
        PhaseName::Deployment,
    ),
    (
        Native::CheckNvidiaSmi,
        "check-nvidia-smi",
        PhaseName::Deployment,
    ),
    (
        Native::NcclAllReduceBw,
        "nccl-all-reduce-bw",
        PhaseName::Performance,
    ),
    (Native::DraSupport, "dra-support", PhaseName::Conformance),
    (
        Native::GangScheduling,
        "gang-scheduling",
        PhaseName::Conformance,
    ),
    (
        Native::AcceleratorMetrics,
        "accelerator-metrics",
        PhaseName::Conformance,
    ),
    (
        Native::AiServiceMetrics,
        "ai-service-metrics",
        PhaseName::Conformance,
    ),
    (
        Native::InferenceGateway,
        "inference-gateway",
        PhaseName::Conformance,
    ),
    (
        Native::PodAutoscaling,
        "pod-autoscaling",
        PhaseName::Conformance,
    ),
    (
        Native::ClusterAutoscaling,
        "cluster-autoscaling",
        PhaseName::Conformance,
    ),
    (
        Native::RobustController,
        "robust-controller",
        PhaseName::Conformance,
    ),
    (
        Native::SecureAcceleratorAccess,
        "secure-accelerator-access",
        PhaseName::Conformance,
    ),
    (
        Native::GpuOperatorHealth,
        "gpu-operator-health",
        PhaseName::Conformance,
    ),
    (
        Native::PlatformHealth,
        "platform-health",
        PhaseName::Conformance,
    ),
];

impl Native {
    /// The in-process implementation of a catalog entry, if it has one: the
    /// image must be an upstream validator image for the entry's phase and
    /// the check it selects (first argument, else the name) one we know.
    pub fn of(v: &Validator, phase: PhaseName) -> Option<Native> {
        let repo = image_repository(&v.image);
        if !repo.ends_with(&format!("aicr-validators/{}", phase.as_str())) {
            return None;
        }
        let check = v.args.first().unwrap_or(&v.name);
        NATIVE
            .iter()
            .find(|(_, name, p)| name == check && *p == phase)
            .map(|(n, _, _)| *n)
    }

    async fn run(self, ctx: &Ctx<'_>, out: &mut Out) -> Verdict {
        match self {
            Native::OperatorHealth => deployment::operator_health(ctx, out).await,
            Native::ExpectedResources => deployment::expected_resources(ctx, out).await,
            Native::GpuOperatorVersion => deployment::gpu_operator_version(ctx, out).await,
            Native::CheckNvidiaSmi => workloads::check_nvidia_smi(ctx, out).await,
            Native::NcclAllReduceBw => workloads::nccl_all_reduce_bw(ctx, out).await,
            Native::DraSupport => conformance::dra_support(ctx, out).await,
            Native::GangScheduling => conformance::gang_scheduling(ctx, out).await,
            Native::AcceleratorMetrics => conformance::accelerator_metrics(ctx, out).await,
            Native::AiServiceMetrics => conformance::ai_service_metrics(ctx, out).await,
            Native::InferenceGateway => conformance::inference_gateway(ctx, out).await,
            Native::PodAutoscaling => conformance::pod_autoscaling(ctx, out).await,
            Native::ClusterAutoscaling => conformance::cluster_autoscaling(ctx, out).await,
            Native::RobustController => conformance::robust_controller(ctx, out).await,
            Native::SecureAcceleratorAccess => {
                conformance::secure_accelerator_access(ctx, out).await
            }
            Native::GpuOperatorHealth => deployment::gpu_operator_health(ctx, out).await,
            Native::PlatformHealth => deployment::platform_health(ctx, out).await,
        }
    }
}

/// `registry/org/name:tag@digest` → `registry/org/name`.
pub fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Runs catalog entries one at a time against the cluster.
pub struct Runner<'a> {
    ctx: Ctx<'a>,
    jobs: ValidatorJobs,
}

impl<'a> Runner<'a> {
    pub fn new(ctx: Ctx<'a>) -> Runner<'a> {
        Runner {
            ctx,
            jobs: ValidatorJobs::default(),
        }
    }

    /// One catalog entry to one test. Errors are infrastructure failures
    /// that abort the run (validator Job preparation); a check's own
    /// trouble is always a test result.
    pub async fn run(&mut self, v: &Validator, phase: PhaseName) -> Result<Test> {
        let started = StdInstant::now();
        let budget = v.timeout();
        let (status, message, stdout, duration) = match Native::of(v, phase) {
            Some(native) => {
                tracing::info!("running check {} in-process (budget {:?})", v.name, budget);
                let mut out = Out::new(budget);
                let verdict =
                    match tokio::time::timeout(budget + GRACE, native.run(&self.ctx, &mut out))
                        .await
                    {
                        Ok(v) => v,
                        Err(_) => Verdict::Other(format!(
                            "timeout: check did not complete within {}",
                            humantime::format_duration(budget)
                        )),
                    };
                let (status, message) = match verdict {
                    Verdict::Pass => (Status::Passed, String::new()),
                    Verdict::Fail(m) => (Status::Failed, m),
                    Verdict::Skip(m) => (Status::Skipped, m),
                    Verdict::Other(m) => (Status::Other, m),
                };
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                (status, message, out.lines, ms)
            }
            None => {
                tracing::info!("running check {} as a validator Job ({})", v.name, v.image);
                // As upstream: the container's own run time, not the wait.
                let r = self.jobs.run(&self.ctx, v, phase).await?;
                (r.status, r.message, r.stdout, r.duration_ms)
            }
        };
        tracing::info!("check {} finished: status={status:?}", v.name);
        Ok(Test {
            name: v.name.clone(),
            status,
            duration,
            suite: vec![phase.as_str().to_string()],
            message,
            stdout,
        })
    }

    /// Publish finished phases' reports where validator Jobs can read them.
    pub async fn publish_reports(&mut self, reports: &[(PhaseName, &Report)]) {
        self.jobs.publish_reports(&self.ctx, reports).await;
    }

    /// Remove what the run created for validator Jobs (unless told to keep it).
    pub async fn finish(self) {
        self.jobs.cleanup(&self.ctx).await;
    }

    /// After an interrupted check: delete what the run's checks create
    /// (found by the run label), which the check had no chance to remove.
    /// Types the cluster does not serve are passed over.
    pub async fn sweep(&self) {
        if !self.ctx.settings.cleanup {
            return;
        }
        let ns = self.ctx.namespace();
        let selector = format!("aicr.nvidia.com/run-id={}", self.ctx.run_id);
        for res in [
            &api::JOB,
            &api::POD,
            &api::RESOURCE_CLAIM,
            &api::HPA,
            &api::DEPLOYMENT,
            &api::TRAIN_JOB,
            &api::TRAINING_RUNTIME,
            &api::NAMESPACE,
        ] {
            let scope = if res.namespaced { ns } else { "" };
            let Ok(objects) = self.ctx.cluster.list(res, scope, &selector).await else {
                continue;
            };
            for o in &objects {
                let name = api::name_of(o);
                if let Err(e) = self.ctx.cluster.delete(res, scope, name).await {
                    tracing::warn!("cleanup: failed to delete {} {name}: {e}", res.kind);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(image: &str, name: &str, args: &[&str]) -> Validator {
        Validator {
            name: name.into(),
            phase: "deployment".into(),
            image: image.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_images_run_in_process_others_as_jobs() {
        let up = "ghcr.io/nvidia/aicr-validators/deployment:latest";
        assert_eq!(
            Native::of(
                &v(up, "operator-health", &["operator-health"]),
                PhaseName::Deployment
            ),
            Some(Native::OperatorHealth)
        );
        // A renamed entry still selects its check by argument.
        assert_eq!(
            Native::of(
                &v(up, "my-health", &["operator-health"]),
                PhaseName::Deployment
            ),
            Some(Native::OperatorHealth)
        );
        let mirror = "registry.local:5000/nvidia/aicr-validators/deployment@sha256:abc";
        assert!(Native::of(&v(mirror, "operator-health", &[]), PhaseName::Deployment).is_some());
        assert!(
            Native::of(
                &v("example.com/mine:1", "operator-health", &[]),
                PhaseName::Deployment
            )
            .is_none()
        );
        assert!(Native::of(&v(up, "custom", &["custom"]), PhaseName::Deployment).is_none());
        // The phase must agree with the image.
        assert!(Native::of(&v(up, "dra-support", &[]), PhaseName::Deployment).is_none());
    }

    #[test]
    fn image_repository_strips_tag_and_digest_only() {
        assert_eq!(image_repository("a/b:1"), "a/b");
        assert_eq!(image_repository("host:5000/a/b"), "host:5000/a/b");
        assert_eq!(
            image_repository("host:5000/a/b:v1@sha256:x"),
            "host:5000/a/b"
        );
    }
}
