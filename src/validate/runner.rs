//! The `Runner`: one catalog entry to one CTRF test. An entry the
//! `checks::REGISTRY` knows runs in-process under its
//! budget (plus `GRACE`); any other runs as a validator Job. Also what a
//! run must undo: published reports, validator objects and, after an
//! interruption, whatever the checks left behind.
//!
//! Owns dispatch, budgets, status mapping and cleanup; must not contain
//! check logic, nor choose which entries run (that is `phases`).

use std::time::Instant;

use crate::error::Result;

use super::api;
use super::check::{CheckLog, Ctx, GRACE, PhaseName, Validator, Verdict};
use super::checks::{self, jobs::ValidatorJobs};
use super::ctrf::{Report, Status, Test};

/// Runs catalog entries one at a time against the cluster.
pub(crate) struct Runner<'a> {
    ctx: Ctx<'a>,
    jobs: ValidatorJobs,
}

impl<'a> Runner<'a> {
    pub(crate) fn new(ctx: Ctx<'a>) -> Runner<'a> {
        Runner {
            ctx,
            jobs: ValidatorJobs::default(),
        }
    }

    /// One catalog entry to one test. Errors are infrastructure failures
    /// that abort the run (validator Job preparation); a check's own
    /// trouble is always a test result.
    pub(crate) async fn run(&mut self, v: &Validator, phase: PhaseName) -> Result<Test> {
        let started = Instant::now();
        let budget = v.timeout();
        let (status, message, stdout, duration) = match checks::native(v, phase) {
            Some(check) => {
                tracing::info!("running check {} in-process (budget {:?})", v.name, budget);
                let mut out = CheckLog::new(budget);
                let verdict =
                    match tokio::time::timeout(budget + GRACE, (check.run)(&self.ctx, &mut out))
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
    pub(crate) async fn publish_reports(&mut self, reports: &[(PhaseName, &Report)]) {
        self.jobs.publish_reports(&self.ctx, reports).await;
    }

    /// Remove what the run created for validator Jobs (unless told to keep it).
    pub(crate) async fn finish(self) {
        self.jobs.cleanup(&self.ctx).await;
    }

    /// After an interrupted check: delete what the run's checks create
    /// (found by the run label), which the check had no chance to remove.
    /// Types the cluster does not serve are passed over.
    pub(crate) async fn sweep(&self) {
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
