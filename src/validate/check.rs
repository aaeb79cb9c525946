//! The vocabulary every check shares: the run-wide [`Settings`] (with the
//! inner-workload [`Scheduling`]), the catalog entry a check runs from
//! ([`Validator`], its [`PhaseName`]), what a check sees (`Ctx`), what it
//! records (`CheckLog`) and how it ends (`Verdict`), and the names the
//! run gives what it creates.
//!
//! Every other part of `validate` builds on this module, so it must not
//! name any of them; the one sibling it uses is [`api`], the I/O layer
//! beneath it, for the cluster handle a `Ctx` carries. A type that two
//! checks share belongs here, not in one of them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Toleration;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::kubernetes::scheduling;
use crate::model::recipe::{Phase, RecipeResult};
use crate::model::snapshot::Snapshot;

use super::api::{self, Cluster};

/// Extra time a check gets past its catalog timeout before it is abandoned
/// (its own waits end at the timeout, so it normally reports first).
pub(crate) const GRACE: Duration = Duration::from_secs(30);

/// A catalog entry without a timeout gets this one.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// Bound on each Kubernetes API request.
    pub kube_timeout: std::time::Duration,
    /// The CLI version, for reports and image tags.
    pub version: String,
    /// Replaces the registry part of validator Job images (for mirrors).
    pub validator_image_registry: Option<String>,
    /// Replaces a `:latest` tag on validator Job images.
    pub validator_image_tag: Option<String>,
    /// The image the NCCL benchmark runs (it must provide `mpirun` and
    /// nccl-tests' `all_reduce_perf`); there is no default we could vouch
    /// for, so without one the benchmark is skipped.
    pub nccl_tests_image: Option<String>,
}

/// Where inner workloads may run (`--node-selector`, `--toleration`): the
/// pods a check creates, never the validator Job that hosts a check, nor a
/// pod pinned to its node by name.
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
    pub(crate) fn selector_env(&self) -> Option<String> {
        (!self.node_selector.is_empty()).then(|| {
            self.node_selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// `AICR_TOLERATIONS` for validator Jobs, in the flag grammar.
    pub(crate) fn tolerations_env(&self) -> Option<String> {
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
    pub(crate) fn pod_tolerations(&self) -> Value {
        if self.tolerations.is_empty() {
            return json!([scheduling::tolerate_all()]);
        }
        json!(self.tolerations)
    }

    /// The node selector for an inner workload: the flags replace the
    /// platform default.
    pub(crate) fn pod_node_selector(
        &self,
        default: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        if self.node_selector.is_empty() {
            default
        } else {
            self.node_selector.clone()
        }
    }

    /// Put both on a pod spec that is not pinned to a node.
    pub(crate) fn apply(&self, pod_spec: &mut Value, default_selector: BTreeMap<String, String>) {
        let selector = self.pod_node_selector(default_selector);
        if !selector.is_empty() {
            pod_spec["nodeSelector"] = json!(selector);
        }
        pod_spec["tolerations"] = self.pod_tolerations();
    }
}

/// A check phase, in canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseName {
    Deployment,
    Performance,
    Conformance,
}

impl PhaseName {
    pub(crate) const ALL: [PhaseName; 3] = [
        PhaseName::Deployment,
        PhaseName::Performance,
        PhaseName::Conformance,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PhaseName::Deployment => "deployment",
            PhaseName::Performance => "performance",
            PhaseName::Conformance => "conformance",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<PhaseName> {
        PhaseName::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The recipe's block for this phase, if it has one.
    pub(crate) fn of(self, recipe: &RecipeResult) -> Option<&Phase> {
        let v = recipe.validation.as_ref()?;
        match self {
            PhaseName::Deployment => v.deployment.as_ref(),
            PhaseName::Performance => v.performance.as_ref(),
            PhaseName::Conformance => v.conformance.as_ref(),
        }
    }
}

impl std::fmt::Display for PhaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub cpu: String,
    #[serde(default)]
    pub memory: String,
}

/// One catalog entry: a check, the phase it belongs to and the image that
/// implements it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    pub name: String,
    pub phase: String,
    #[serde(default)]
    pub description: String,
    pub image: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

impl Validator {
    /// The budget for one run of the check; zero or absent means 5 minutes.
    pub(crate) fn timeout(&self) -> Duration {
        match humantime::parse_duration(self.timeout.trim()) {
            Ok(d) if !d.is_zero() => d,
            _ => DEFAULT_TIMEOUT,
        }
    }

    pub(crate) fn phase_name(&self) -> Option<PhaseName> {
        PhaseName::parse(&self.phase)
    }
}

/// `registry/org/name:tag@digest` → `registry/org/name`.
pub(crate) fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Fail(String),
    /// The cluster lacks what the check needs; the reason says what.
    Skip(String),
    /// The check could not reach a verdict (crash, timeout).
    Other(String),
}

impl Verdict {
    /// Pass when `problems` is empty, else one failure naming them all.
    pub(crate) fn from_problems(what: &str, problems: &[String]) -> Verdict {
        if problems.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail(format!("{what}: {}", problems.join("; ")))
        }
    }
}

/// A check's evidence lines and its deadline.
#[derive(Debug)]
pub(crate) struct CheckLog {
    pub lines: Vec<String>,
    pub deadline: Instant,
}

impl CheckLog {
    pub(crate) fn new(budget: Duration) -> CheckLog {
        CheckLog {
            lines: Vec::new(),
            deadline: Instant::now() + budget,
        }
    }

    pub(crate) fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    /// The deadline, brought forward by `margin` so a wait leaves time to
    /// clean up and report.
    pub(crate) fn deadline_less(&self, margin: Duration) -> Instant {
        let now = Instant::now();
        if self.deadline > now + margin {
            self.deadline - margin
        } else {
            self.deadline.max(now)
        }
    }
}

/// Everything a check may read, shared by all checks of a run.
pub(crate) struct Ctx<'a> {
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
    pub(crate) fn new(
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

    pub(crate) fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// Labels on every object the run creates. The check's name is made a
    /// legal label value: catalog names are free text.
    pub(crate) fn labels(&self, check: &str) -> Value {
        json!({
            "app.kubernetes.io/name": "aicr",
            "app.kubernetes.io/component": "validation",
            "app.kubernetes.io/managed-by": "aicr",
            "aicr.nvidia.com/run-id": self.run_id,
            "aicr.nvidia.com/validator": label_value(check),
        })
    }

    /// Create the validation namespace once per run; it already existing is
    /// fine, and it is never deleted.
    pub(crate) async fn ensure_namespace(&self) -> std::result::Result<(), String> {
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
    pub(crate) fn component_namespace(&self, component: &str, default: &str) -> String {
        self.recipe
            .component(component)
            .map(|c| c.namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default.to_string())
    }

    /// Whether the recipe has the component and it is enabled.
    pub(crate) fn has_component(&self, component: &str) -> bool {
        self.recipe
            .component(component)
            .is_some_and(|c| c.is_enabled())
    }

    /// A phase constraint's expression (`validation.<phase>.constraints`).
    pub(crate) fn phase_constraint(&self, phase: PhaseName, name: &str) -> Option<&'a str> {
        phase
            .of(self.recipe)?
            .constraints
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.as_str())
    }
}

/// 8 random bytes as hex, from the standard library's randomly keyed hasher.
pub(crate) fn random_hex() -> String {
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
pub(crate) fn new_run_id() -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}-{}", &digits[..8], &digits[8..14], random_hex())
}

/// A Kubernetes name from arbitrary text: lower case, `[a-z0-9-]`, at most
/// `max` bytes, no leading or trailing dash.
pub(crate) fn dns_label(text: &str, max: usize) -> String {
    let mut s: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(max);
    s.trim_matches('-').to_string()
}

/// A validator's name as a label value (`-` for what a label refuses).
pub(crate) fn label_value(text: &str) -> String {
    crate::kubernetes::label_value(text, '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduling_flags_reach_workloads_and_env() {
        // Split at the first `=`: a value holding another is no label value.
        assert!(Scheduling::parse(&["nodeGroup=gpu=x".into()], &[]).is_err());
        let s = Scheduling::parse(
            &["zone=a".into(), "nodeGroup=gpu-x".into()],
            &[
                "dedicated=gpu:NoSchedule".into(),
                "nvidia.com/gpu:NoExecute".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.node_selector["nodeGroup"], "gpu-x");
        assert_eq!(s.selector_env().unwrap(), "nodeGroup=gpu-x,zone=a");
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
            json!({"nodeGroup": "gpu-x", "zone": "a"})
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
    fn image_repository_strips_tag_and_digest_only() {
        assert_eq!(image_repository("a/b:1"), "a/b");
        assert_eq!(image_repository("host:5000/a/b"), "host:5000/a/b");
        assert_eq!(
            image_repository("host:5000/a/b:v1@sha256:x"),
            "host:5000/a/b"
        );
    }
}
