//! `aicr validate`: flags, loading the recipe and the snapshots (files,
//! URLs, ConfigMaps, directories of per-node snapshots, or one captured by
//! the agent Job), the report's destination and the exit decision. Every
//! input is checked before anything runs or is written; the validation
//! itself is `aicr::validate`.

use std::path::{Path, PathBuf};

use aicr::error::{Error, Result, ResultExt};
use aicr::kubernetes::snapshot_job::AgentJob;
use aicr::model::recipe::{RECIPE_RESULT_KIND, RecipeResult};
use aicr::model::snapshot::Snapshot;
use aicr::sink::{self, OutputFormat};
use aicr::source::{ConfigMapRef, Source};
use aicr::validate::{
    self, NodeSnapshot, Outcome, Request, Scheduling, Settings, ValidatorCatalog, evidence, phases,
    readiness,
};
use aicr::yaml;
use clap::Args;

use crate::args::agent_job::{AgentJobArgs, Placement};

#[derive(Debug, Args)]
// Validate documents its own default agent Job name (spec: validate §1);
// every other default of the shared group is snapshot's.
#[command(mut_arg("job_name", |a| a.default_value("aicr-validate")))]
pub struct ValidateArgs {
    /// Recipe: file, http(s) URL or cm://namespace/name
    #[arg(long, short = 'r')]
    pub recipe: Option<String>,
    /// Snapshot: file, http(s) URL, cm://namespace/name, or a directory of
    /// per-node snapshots; repeat for several nodes (default: capture one
    /// with the agent Job)
    #[arg(long, short = 's', action = clap::ArgAction::Append)]
    pub snapshot: Vec<String>,
    /// Phase: deployment, performance, conformance, all (repeatable;
    /// phases always run in that order; default all)
    #[arg(long, action = clap::ArgAction::Append, value_parser = aicr::flags::offered(aicr::flags::typed::<phases::PhaseChoice>, phases::PhaseChoice::NAMES), hide_possible_values = true)]
    pub phase: Vec<phases::PhaseChoice>,
    /// Exit 8 when a check fails or cannot finish; --fail-on-error=false
    /// only reports
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub fail_on_error: bool,
    /// Judge readiness only; report every check skipped, no cluster access
    #[arg(long)]
    pub no_cluster: bool,
    /// Report destination: file, - (stdout, the default) or
    /// cm://namespace/name; always CTRF JSON
    #[arg(long, short = 'o')]
    pub output: Option<String>,
    /// Namespace for validation workloads (and the agent Job)
    #[arg(
        long,
        short = 'n',
        env = "AICR_NAMESPACE",
        default_value = "aicr-validation"
    )]
    pub namespace: String,
    /// Image pull secret for validation pods (repeatable)
    #[arg(long, action = clap::ArgAction::Append)]
    pub image_pull_secret: Vec<String>,
    /// Node selector for inner test workloads, key=value (repeatable;
    /// replaces the platform default)
    #[arg(long, action = clap::ArgAction::Append)]
    pub node_selector: Vec<String>,
    /// Toleration for inner test workloads, key=value:effect or key:effect
    /// (repeatable; default: tolerate everything)
    #[arg(long, action = clap::ArgAction::Append)]
    pub toleration: Vec<String>,
    /// Keep what the run created (Jobs, test pods, RBAC) for debugging
    #[arg(long)]
    pub no_cleanup: bool,
    /// Registry for validator images: replaces the registry part of each
    /// catalog image (host/org of host/org/name, host of host/name)
    #[arg(long, env = "AICR_VALIDATOR_IMAGE_REGISTRY")]
    pub validator_image_registry: Option<String>,
    /// Tag for validator images: replaces a :latest tag on catalog images
    #[arg(long, env = "AICR_VALIDATOR_IMAGE_TAG")]
    pub validator_image_tag: Option<String>,
    /// Image for the nccl-all-reduce-bw benchmark, providing mpirun and
    /// nccl-tests' all_reduce_perf (without one the check is skipped)
    #[arg(long, env = "AICR_NCCL_TESTS_IMAGE")]
    pub nccl_tests_image: Option<String>,
    /// Write CNCF conformance evidence (markdown) from the results here
    #[arg(long)]
    pub evidence_dir: Option<PathBuf>,
    /// Collect CNCF evidence by running the conformance checks instead of
    /// validating a recipe (needs --evidence-dir; --recipe optional)
    #[arg(long)]
    pub cncf_submission: bool,
    /// Evidence feature for --cncf-submission (repeatable; default all):
    /// dra-support, gang-scheduling, secure-access, accelerator-metrics,
    /// inference-gateway, robust-operator, pod-autoscaling,
    /// cluster-autoscaling
    #[arg(long, short = 'f', action = clap::ArgAction::Append)]
    pub feature: Vec<String>,
    /// External data directory layered over the embedded catalog (also
    /// extends the validator catalog)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)
    #[arg(long, short = 'k', action = clap::ArgAction::Append)]
    pub kubeconfig: Vec<PathBuf>,
    /// Judge the recipe against every node's live state in the aggregator
    /// at this URL (readiness, one suite per node; no check phases run)
    #[arg(long, conflicts_with = "snapshot")]
    pub aggregator: Option<String>,
    #[command(flatten)]
    pub connection: crate::remote::Connection,
    // The agent Job that captures a snapshot when none is given. It also
    // takes --namespace, --image-pull-secret, --node-selector, --toleration
    // and --no-cleanup, which validate defines for its own workloads too.
    #[command(flatten, next_help_heading = "Agent Job (without --snapshot)")]
    pub agent: AgentJobArgs,
}

fn input_error(e: Error, what: &str, uri: &str) -> Error {
    e.input(format!("failed to load {what} from {uri:?}"))
}

fn read_text(uri: &str, kubeconfig: Option<&PathBuf>) -> Result<(String, yaml::Format)> {
    let source = Source::parse(uri)?;
    let (bytes, format) = crate::kubernetes::read_source(&source, uri, kubeconfig)?;
    Ok((yaml::utf8(&bytes)?.to_string(), format))
}

fn load_recipe(uri: &str, kubeconfig: Option<&PathBuf>) -> Result<RecipeResult> {
    tracing::info!("loading recipe from: uri={uri}");
    let inner = || -> Result<RecipeResult> {
        let (text, format) = read_text(uri, kubeconfig)?;
        let recipe: RecipeResult = yaml::parse(&text, format)?;
        if recipe.kind != RECIPE_RESULT_KIND {
            return Err(Error::invalid(format!(
                "not a recipe: kind {:?}, expected {RECIPE_RESULT_KIND:?} (generate one with `aicr recipe`)",
                recipe.kind
            )));
        }
        Ok(recipe)
    };
    inner().map_err(|e| input_error(e, "recipe", uri))
}

/// Just a document's `kind`, to name a document that is not a snapshot.
#[derive(serde::Deserialize)]
struct KindProbe {
    #[serde(default)]
    kind: String,
}

fn load_snapshot(uri: &str, kubeconfig: Option<&PathBuf>) -> Result<NodeSnapshot> {
    tracing::info!("loading snapshot from: uri={uri}");
    let inner = || -> Result<NodeSnapshot> {
        let (text, format) = read_text(uri, kubeconfig)?;
        match Snapshot::parse(&text, format) {
            Ok(snap) => {
                readiness::check_snapshot_kind(&snap.kind, uri)?;
                Ok(NodeSnapshot::new(uri, snap))
            }
            // Another kind of document fails to parse as a snapshot; say
            // what it is rather than where the parser stumbled.
            Err(e) => {
                if let Ok(probe) = yaml::parse::<KindProbe>(&text, format) {
                    readiness::check_snapshot_kind(&probe.kind, uri)?;
                }
                Err(e)
            }
        }
    };
    inner().map_err(|e| input_error(e, "snapshot", uri))
}

/// The snapshot files of a directory: `*.yaml`, `*.yml`, `*.json`, by name.
fn directory_files(dir: &Path) -> Result<Vec<String>> {
    let fail = |e: std::io::Error| {
        Error::invalid(format!(
            "failed to read snapshot directory {:?}: {e}",
            dir.display().to_string()
        ))
    };
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(fail)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(fail)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
        })
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid(format!(
            "snapshot directory {:?} holds no *.yaml, *.yml or *.json files",
            dir.display().to_string()
        )));
    }
    Ok(files)
}

/// Every `--snapshot`, directories expanded; several nodes make a fleet.
fn load_snapshots(
    uris: &[String],
    kubeconfig: Option<&PathBuf>,
) -> Result<(Vec<NodeSnapshot>, bool)> {
    let mut nodes: Vec<NodeSnapshot> = Vec::new();
    let mut fleet = uris.len() > 1;
    for uri in uris {
        let is_dir = !uri.contains("://") && Path::new(uri).is_dir();
        let files = if is_dir {
            fleet = true;
            directory_files(Path::new(uri))?
        } else {
            vec![uri.clone()]
        };
        for f in files {
            let node = load_snapshot(&f, kubeconfig)?;
            if let Some(prev) = nodes.iter().find(|n| n.node == node.node) {
                return Err(Error::invalid(format!(
                    "snapshots {:?} and {:?} both describe node {:?}; give one snapshot per node",
                    prev.source, node.source, node.node
                )));
            }
            nodes.push(node);
        }
    }
    Ok((nodes, fleet))
}

/// The agent Job that captures a snapshot when none is given: the shared
/// agent flags, placed as validate's own flags say (its scheduling flags
/// reach the agent as upstream's do), writing
/// `cm://<namespace>/aicr-snapshot`.
fn agent_job(a: &ValidateArgs, sched: &Scheduling) -> Result<AgentJob> {
    a.agent.check()?;
    let place = Placement {
        namespace: a.namespace.clone(),
        image_pull_secrets: a.image_pull_secret.clone(),
        node_selector: sched.node_selector.clone(),
        tolerations: (!sched.tolerations.is_empty()).then(|| sched.tolerations.clone()),
        cleanup: !a.no_cleanup,
        output: ConfigMapRef {
            namespace: a.namespace.clone(),
            name: "aicr-snapshot".into(),
        },
    };
    Ok(a.agent.job(place, a.agent.max_nodes()))
}

/// No `--snapshot`: capture one with the agent Job, as `aicr snapshot`
/// does.
fn capture_snapshot(a: &ValidateArgs, job: &AgentJob) -> Result<NodeSnapshot> {
    tracing::info!(
        "no --snapshot given: capturing one with the agent Job in {}",
        a.namespace
    );
    let kubeconfig = a.kubeconfig.last().cloned();
    let text = crate::runtime::block_on(async {
        let client = crate::kubernetes::client(kubeconfig.as_deref())
            .await
            .map_err(|e| e.context("failed to create Kubernetes client"))?;
        aicr::kubernetes::snapshot_job::run(&client, job).await
    })??;
    let snap = Snapshot::parse(&text, yaml::Format::Yaml)
        .context("failed to parse the agent's snapshot")?;
    Ok(NodeSnapshot::new(
        &format!("cm://{}/aicr-snapshot", a.namespace),
        snap,
    ))
}

/// A file destination must be writable before anything runs.
fn check_output(dest: &str) -> Result<()> {
    if sink::is_stdout(dest) {
        return Ok(());
    }
    if dest.starts_with("cm://") {
        return ConfigMapRef::parse(dest).map(|_| ());
    }
    let dir = match Path::new(dest).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "invalid --output {dest:?}: directory {:?} does not exist",
            dir.display().to_string()
        )));
    }
    Ok(())
}

/// The run-wide settings both validation paths hand the library.
fn settings(a: &ValidateArgs, scheduling: Scheduling, kubeconfig: Option<&PathBuf>) -> Settings {
    Settings {
        namespace: a.namespace.clone(),
        scheduling,
        image_pull_secrets: a.image_pull_secret.clone(),
        cleanup: !a.no_cleanup,
        kubeconfig: kubeconfig.cloned(),
        kube_timeout: crate::kubernetes::request_timeout(),
        version: aicr::VERSION.to_string(),
        validator_image_registry: a.validator_image_registry.clone(),
        validator_image_tag: a.validator_image_tag.clone(),
        nccl_tests_image: a.nccl_tests_image.clone(),
    }
}

/// `--cncf-submission`: evidence from the conformance checks, no gate, no
/// phases, no CTRF document.
fn run_submission(a: &ValidateArgs, evidence_dir: &Path) -> Result<()> {
    let checks = evidence::feature_checks(&a.feature)?;
    let scheduling = Scheduling::parse(&a.node_selector, &a.toleration)?;
    let kubeconfig = a.kubeconfig.last();
    let data = crate::cmd::recipe::open_catalog(a.data.clone(), false)?;
    let recipe = a
        .recipe
        .as_deref()
        .map(|uri| load_recipe(uri, kubeconfig))
        .transpose()?;
    let validators = ValidatorCatalog::load(&data)?;
    let submission = validate::Submission {
        checks,
        recipe: recipe.as_ref(),
        data: &data,
        validators: &validators,
        settings: settings(a, scheduling, kubeconfig),
    };
    let report = crate::runtime::block_on(validate::collect_evidence(
        &submission,
        crate::signal::interrupted(),
    ))??;
    evidence::write(evidence_dir, &report)?;
    let mut failed = 0;
    for t in report.tests() {
        match t.status {
            validate::ctrf::Status::Failed | validate::ctrf::Status::Other => {
                failed += 1;
                tracing::error!("evidence section {} failed: {}", t.name, t.message);
            }
            validate::ctrf::Status::Skipped => {
                tracing::warn!("evidence section {} skipped: {}", t.name, t.message);
            }
            _ => tracing::info!("evidence section {} collected", t.name),
        }
    }
    if failed > 0 {
        return Err(Error::internal("one or more evidence sections failed"));
    }
    Ok(())
}

pub fn run(a: &ValidateArgs) -> Result<()> {
    if a.cncf_submission && a.evidence_dir.is_none() {
        return Err(Error::invalid("--cncf-submission requires --evidence-dir"));
    }
    if !a.feature.is_empty() && !a.cncf_submission {
        return Err(Error::invalid("--feature requires --cncf-submission"));
    }
    if let (true, Some(dir)) = (a.cncf_submission, &a.evidence_dir) {
        return run_submission(a, dir);
    }
    aicr::kubernetes::check_namespace(&a.namespace)?;
    let phases = phases::select(&a.phase);
    let recipe_uri = a
        .recipe
        .as_deref()
        .ok_or_else(|| Error::invalid("--recipe is required"))?;
    let scheduling = Scheduling::parse(&a.node_selector, &a.toleration)?;
    let output = a.output.clone().unwrap_or_default();
    check_output(&output)?;
    if a.no_cluster && a.snapshot.is_empty() {
        return Err(Error::invalid(
            "--no-cluster needs --snapshot: without a cluster no snapshot can be captured",
        ));
    }
    let capture = (a.snapshot.is_empty() && a.aggregator.is_none())
        .then(|| agent_job(a, &scheduling))
        .transpose()?;
    let kubeconfig = a.kubeconfig.last();
    let data = crate::cmd::recipe::open_catalog(a.data.clone(), false)?;
    let recipe = load_recipe(recipe_uri, kubeconfig)?;
    readiness::check_recipe(&recipe, recipe_uri)?;
    if a.aggregator.is_some() {
        return crate::remote::validate_remote(
            a.aggregator.as_deref(),
            &a.connection,
            &recipe,
            &output,
            kubeconfig,
            a.fail_on_error,
        );
    }
    let (nodes, fleet) = match &capture {
        Some(job) => (vec![capture_snapshot(a, job)?], false),
        None => load_snapshots(&a.snapshot, kubeconfig)?,
    };
    let validators = ValidatorCatalog::load(&data)?;
    let request = Request {
        recipe: &recipe,
        nodes: &nodes,
        fleet,
        data: &data,
        validators: &validators,
        phases,
        no_cluster: a.no_cluster,
        settings: settings(a, scheduling, kubeconfig),
    };
    let outcome = crate::runtime::block_on(validate::run(&request, crate::signal::interrupted()))??;
    let (report, gate_failure) = match outcome {
        Outcome::GateFailed(why) => {
            return Err(Error::internal(format!("validation failed: {why}")));
        }
        Outcome::Finished {
            report,
            gate_failure,
        } => (report, gate_failure),
    };
    let text = report.to_json()?;
    crate::kubernetes::write_destination(
        &output,
        text.as_bytes(),
        "report",
        kubeconfig,
        OutputFormat::Json,
    )
    .context("failed to write the validation report")?;
    let s = &report.results.summary;
    tracing::info!(
        "validation report written: output={} tests={} passed={} failed={} skipped={} other={}",
        if output.is_empty() { "stdout" } else { &output },
        s.tests,
        s.passed,
        s.failed,
        s.skipped,
        s.other
    );
    if let Some(dir) = &a.evidence_dir {
        evidence::write(dir, &report)?;
    }
    if let Some(why) = gate_failure {
        return Err(Error::internal(format!("validation failed: {why}")));
    }
    if a.fail_on_error && validate::run_failed(&report) {
        return Err(Error::internal(
            "validation failed: one or more phases did not pass",
        ));
    }
    Ok(())
}
