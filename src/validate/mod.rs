//! `aicr validate`: a recipe against live state.
//!
//! The readiness gate ([`readiness`]) judges the recipe's top-level
//! constraints against one snapshot per node, in-process and first; then the
//! selected check phases ([`phases`]: deployment, performance, conformance,
//! always in that order, later ones skipped after a failure) run the
//! recipe's checks from the validator catalog through a [`runner`]. The
//! checks themselves ([`checks`]: deployment readiness, with health-check
//! asserts in [`chainsaw`]; GPU workloads; platform capabilities; validator
//! Jobs) share one vocabulary ([`check`]) and one view of the API server
//! ([`api`]). The result is one CTRF report ([`ctrf`]), optionally rendered
//! as CNCF evidence ([`evidence`]).
//!
//! Layers, each naming only those below it: `api`, `ctrf` and `pods` name no
//! sibling; `check` names only `api`; `chainsaw` only `api`; a check names
//! only those and never another check; `runner`, `phases` and this module
//! sit on top. The `layers` test below holds that line.
//!
//! This module owns the order of those steps and what stops them. It must
//! not parse flags, read input files or print: the CLI loads the documents
//! and writes the report. Everything up to the cluster is pure; cluster I/O
//! sits behind `api::Cluster`.

pub mod api;
pub mod chainsaw;
pub mod check;
pub mod checks;
pub mod ctrf;
pub mod evidence;
#[cfg(test)]
mod layers;
pub mod phases;
pub mod pods;
pub mod readiness;
pub mod runner;

use std::future::Future;
use std::time::SystemTime;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model::recipe::RecipeResult;

pub(crate) use check::PhaseName;
pub use check::{Scheduling, Settings};
pub use ctrf::Report;
pub use phases::ValidatorCatalog;
pub use readiness::NodeSnapshot;

/// One validation run's inputs, loaded and checked by the caller.
pub struct Request<'a> {
    pub recipe: &'a RecipeResult,
    /// At least one snapshot.
    pub nodes: &'a [NodeSnapshot],
    /// Several nodes: readiness per node, reported in the CTRF document.
    pub fleet: bool,
    /// Recipe data for manifests and health-check asserts.
    pub data: &'a Catalog,
    pub validators: &'a ValidatorCatalog,
    pub phases: Vec<PhaseName>,
    /// No cluster access: every check is reported skipped.
    pub no_cluster: bool,
    pub settings: Settings,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// A single node failed the gate: nothing else ran and there is no
    /// report.
    GateFailed(String),
    /// The report, and the gate's failure when several nodes were judged
    /// (phases were then skipped).
    Finished {
        report: Box<Report>,
        gate_failure: Option<String>,
    },
}

/// Whether the report fails the run: a check that `failed`, or one that
/// ended `other` (crash, timeout, OOM), which upstream lets pass.
pub fn run_failed(report: &Report) -> bool {
    report
        .tests()
        .iter()
        .any(|t| matches!(t.status, ctrf::Status::Failed | ctrf::Status::Other))
}

fn log_gate(result: &readiness::NodeResult, fleet: bool) {
    for r in &result.results {
        let node = if fleet {
            format!(" node={}", result.node)
        } else {
            String::new()
        };
        if r.passed {
            tracing::info!(
                "readiness constraint passed:{node} name={} expected={} actual={}",
                r.name,
                r.expected.trim(),
                r.actual.as_deref().unwrap_or("")
            );
        } else {
            tracing::warn!("readiness constraint failed:{node} {}", r.reason);
        }
    }
}

/// Run a validation: gate, then phases (or their skipped stand-ins), then
/// one merged report.
///
/// `cancel` resolves, naming why (the binary passes its signal's name), when
/// the run must stop: checks are abandoned and what the run created is
/// removed before the error returns. The library installs no signal
/// handler and starts no runtime; the caller owns both.
pub async fn run(req: &Request<'_>, cancel: impl Future<Output = &'static str>) -> Result<Outcome> {
    let first = req
        .nodes
        .first()
        .ok_or_else(|| Error::invalid("no snapshot to validate"))?;
    let version = req.settings.version.clone();
    let plan = phases::Plan {
        phases: req.phases.clone(),
        catalog: req.validators,
        recipe: req.recipe,
        version: version.clone(),
    };

    let mut reports = Vec::new();
    let mut gate_failure = None;
    if req.fleet {
        let start = ctrf::epoch_ms(SystemTime::now());
        let fleet = readiness::Fleet::evaluate(&req.recipe.constraints, req.nodes);
        for n in &fleet.nodes {
            log_gate(n, true);
        }
        for d in fleet.disagreements() {
            tracing::warn!("nodes disagree on {}", d.describe());
        }
        gate_failure = fleet.failure_summary();
        tracing::info!(
            "readiness: {} of {} nodes passed",
            fleet.nodes.len() - fleet.failed_nodes().len(),
            fleet.nodes.len()
        );
        reports.push(fleet.report(&version, start, SystemTime::now()));
    } else {
        let result = readiness::evaluate_node(&req.recipe.constraints, first, true);
        log_gate(&result, false);
        if let Some(f) = result.first_failure() {
            return Ok(Outcome::GateFailed(format!(
                "readiness check failed: {}",
                f.reason
            )));
        }
        tracing::info!("readiness: all {} constraints passed", result.results.len());
    }

    for w in plan.warnings() {
        tracing::warn!("{w}");
    }
    if gate_failure.is_some() {
        let now = SystemTime::now();
        reports.extend(
            plan.phases
                .iter()
                .map(|&p| plan.skipped(p, phases::MSG_PREVIOUS_FAILED, now)),
        );
    } else if req.no_cluster {
        tracing::info!("--no-cluster: reporting every check as skipped");
        reports.extend(plan.no_cluster());
    } else {
        reports.extend(run_cluster(req, &plan, first, cancel).await?);
    }
    let report = Report::merge(reports).ok_or_else(|| Error::internal("no phase to report"))?;
    Ok(Outcome::Finished {
        report: Box::new(report),
        gate_failure,
    })
}

/// `--cncf-submission`: run the checks that collect CNCF evidence, with no
/// recipe gate and no phases.
pub struct Submission<'a> {
    /// Conformance checks to run, by catalog name.
    pub checks: Vec<&'static str>,
    /// Optional: tells checks which components (and namespaces) to expect.
    pub recipe: Option<&'a RecipeResult>,
    pub data: &'a Catalog,
    pub validators: &'a ValidatorCatalog,
    pub settings: Settings,
}

/// The whole evidence collection stops after this long.
pub(crate) const SUBMISSION_LIMIT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// Run a submission's checks against the cluster; the report holds one
/// test per check, whatever its outcome. `cancel` stops it as it stops
/// [`run`].
pub async fn collect_evidence(
    sub: &Submission<'_>,
    cancel: impl Future<Output = &'static str>,
) -> Result<Report> {
    let bare = RecipeResult {
        kind: crate::model::recipe::RECIPE_RESULT_KIND.into(),
        api_version: crate::model::recipe::API_VERSION.into(),
        metadata: Default::default(),
        criteria: Default::default(),
        constraints: Vec::new(),
        component_refs: Vec::new(),
        deployment_order: Vec::new(),
        validation: None,
    };
    let recipe = sub.recipe.unwrap_or(&bare);
    let snapshot = crate::model::snapshot::Snapshot::default();
    let checks: Vec<&check::Validator> = sub
        .checks
        .iter()
        .map(|name| {
            sub.validators
                .phase(PhaseName::Conformance)
                .find(|v| v.name == *name)
                .ok_or_else(|| {
                    Error::internal(format!("check {name} is not in the validator catalog"))
                })
        })
        .collect::<Result<_>>()?;
    let cluster = connect(&sub.settings).await?;
    let ctx = check::Ctx::new(
        cluster,
        recipe,
        sub.data,
        &snapshot,
        &sub.settings,
        check::new_run_id(),
    );
    let mut runner = runner::Runner::new(ctx);
    let start = ctrf::epoch_ms(SystemTime::now());
    let mut tests = Vec::new();
    let work = async {
        for v in &checks {
            tests.push(runner.run(v, PhaseName::Conformance).await?);
        }
        Ok::<(), Error>(())
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(SUBMISSION_LIMIT, work) => match r {
            Ok(r) => r,
            Err(_) => Err(Error::new(crate::ErrorKind::Internal, format!(
                "evidence collection did not finish within {}",
                humantime::format_duration(SUBMISSION_LIMIT)
            ))),
        },
        signal = cancel => Err(Error::internal(format!("evidence collection cancelled by {signal}"))),
    };
    runner.sweep().await;
    runner.finish().await;
    outcome?;
    Ok(Report::build(
        &sub.settings.version,
        start,
        tests,
        SystemTime::now(),
    ))
}

/// A client for the settings' kubeconfig, checked to reach the API server.
async fn connect(settings: &Settings) -> Result<api::Cluster> {
    let client = crate::kubernetes::client(settings.kubeconfig.as_deref(), settings.kube_timeout)
        .await
        .map_err(|e| {
            e.wrap(
                crate::ErrorKind::Internal,
                "failed to create kubernetes client",
            )
        })?;
    let cluster = api::Cluster::new(client);
    let version = cluster
        .server_version()
        .await
        .map_err(|e| Error::internal(format!("failed to reach the Kubernetes API server: {e}")))?;
    tracing::info!("connected to cluster {version}");
    Ok(cluster)
}

async fn run_cluster(
    req: &Request<'_>,
    plan: &phases::Plan<'_>,
    first: &NodeSnapshot,
    cancel: impl Future<Output = &'static str>,
) -> Result<Vec<Report>> {
    let cluster = connect(&req.settings).await?;
    let run_id = check::new_run_id();
    tracing::info!("validating: run={run_id}");
    let ctx = check::Ctx::new(
        cluster,
        req.recipe,
        req.data,
        &first.snapshot,
        &req.settings,
        run_id,
    );
    let mut runner = runner::Runner::new(ctx);
    let reports = tokio::select! {
        r = plan.run(&mut runner) => r,
        signal = cancel => {
            tracing::warn!("{signal}: cancelling validation and removing what it created");
            runner.sweep().await;
            Err(Error::internal(format!("validation cancelled by {signal}")))
        }
    };
    runner.finish().await;
    reports
}
