//! Phases and the validator catalog: which phases run and in what order,
//! which catalog checks each phase runs for a recipe, the reports of phases
//! that do not run (`--no-cluster`, after a failure), and the loop that runs
//! the rest through a `Runner`.
//!
//! Owns selection and ordering rules and the `ValidatorCatalog` document. It
//! must not talk to the cluster itself; checks do that.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::model::recipe::RecipeResult;

use super::check::{PhaseName, Validator};
use super::ctrf::{PhaseStatus, Report, Test, epoch_ms};
use super::runner::Runner;

/// The catalog's path inside recipe data.
pub(crate) const CATALOG_PATH: &str = "validators/catalog.yaml";
pub(crate) const CATALOG_API_VERSION: &str = "aicr.nvidia.com/v1";
pub(crate) const CATALOG_KIND: &str = "ValidatorCatalog";

pub(crate) const MSG_NO_CLUSTER: &str = "skipped - no-cluster mode";
pub(crate) const MSG_PREVIOUS_FAILED: &str = "skipped due to previous phase failure";

/// One `--phase` value: a phase, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseChoice {
    All,
    Only(PhaseName),
}

impl PhaseChoice {
    /// The spellings `from_str` accepts, offered to shell completion.
    pub const NAMES: &'static [&'static str] = &["all", "deployment", "performance", "conformance"];
}

impl std::str::FromStr for PhaseChoice {
    type Err = Error;

    fn from_str(v: &str) -> Result<PhaseChoice> {
        let v = v.trim();
        if v == "all" {
            return Ok(PhaseChoice::All);
        }
        PhaseName::parse(v).map(PhaseChoice::Only).ok_or_else(|| {
            Error::invalid(format!(
                "invalid phase {v:?}: must be one of: deployment, performance, conformance, all"
            ))
        })
    }
}

/// `--phase` values to the phases to run: none or any `all` means every
/// phase; otherwise the named ones, deduplicated, always in canonical order
/// so a later phase can never run before the one it depends on.
pub fn select(choices: &[PhaseChoice]) -> Vec<PhaseName> {
    let mut chosen = Vec::new();
    for c in choices {
        match c {
            PhaseChoice::All => return PhaseName::ALL.to_vec(),
            PhaseChoice::Only(p) => chosen.push(*p),
        }
    }
    if chosen.is_empty() {
        return PhaseName::ALL.to_vec();
    }
    chosen.sort();
    chosen.dedup();
    chosen
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogMetadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorCatalog {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: CatalogMetadata,
    #[serde(default)]
    pub validators: Vec<Validator>,
}

impl ValidatorCatalog {
    /// Parse and check one catalog document.
    pub(crate) fn parse(text: &str) -> Result<ValidatorCatalog> {
        let cat: ValidatorCatalog = crate::yaml::from_yaml(text)?;
        cat.check()?;
        Ok(cat)
    }

    fn check(&self) -> Result<()> {
        if self.api_version != CATALOG_API_VERSION {
            return Err(Error::internal(format!(
                "invalid apiVersion {:?}, expected {CATALOG_API_VERSION:?}",
                self.api_version
            )));
        }
        if self.kind != CATALOG_KIND {
            return Err(Error::internal(format!(
                "invalid kind {:?}, expected {CATALOG_KIND:?}",
                self.kind
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, v) in self.validators.iter().enumerate() {
            if v.name.trim().is_empty() {
                return Err(Error::internal(format!("validator #{i} has no name")));
            }
            if !seen.insert(v.name.as_str()) {
                return Err(Error::internal(format!("duplicate validator {:?}", v.name)));
            }
            if v.phase_name().is_none() {
                return Err(Error::internal(format!(
                    "validator {:?} has invalid phase {:?} (want deployment, performance or conformance)",
                    v.name, v.phase
                )));
            }
            if v.image.trim().is_empty() {
                return Err(Error::internal(format!(
                    "validator {:?} has no image",
                    v.name
                )));
            }
            if !v.timeout.trim().is_empty() && humantime::parse_duration(v.timeout.trim()).is_err()
            {
                return Err(Error::internal(format!(
                    "validator {:?} has invalid timeout {:?}",
                    v.name, v.timeout
                )));
            }
        }
        Ok(())
    }

    /// Layer another catalog: an entry with a known name replaces it in
    /// place, new names are appended in their order.
    pub(crate) fn merge(&mut self, other: ValidatorCatalog) {
        for v in other.validators {
            match self.validators.iter_mut().find(|x| x.name == v.name) {
                Some(slot) => *slot = v,
                None => self.validators.push(v),
            }
        }
    }

    /// The embedded catalog, with `data`'s `validators/catalog.yaml` merged
    /// over it when that file comes from an external directory.
    pub fn load(data: &Catalog) -> Result<ValidatorCatalog> {
        let fail = |e: Error, what: &str| {
            e.wrap(
                ErrorKind::Internal,
                format!("failed to load validator catalog ({what})"),
            )
        };
        let embedded = Catalog::embedded()?
            .file(CATALOG_PATH)
            .ok_or_else(|| Error::internal(format!("embedded {CATALOG_PATH} is missing")))?;
        let mut cat = crate::yaml::utf8(embedded)
            .and_then(ValidatorCatalog::parse)
            .map_err(|e| fail(e, "embedded"))?;
        if data.is_external(CATALOG_PATH)
            && let Some(bytes) = data.file(CATALOG_PATH)
        {
            let external = crate::yaml::utf8(bytes)
                .and_then(ValidatorCatalog::parse)
                .map_err(|e| fail(e, &format!("--data {CATALOG_PATH}")))?;
            tracing::info!(
                "merged external validator catalog: entries={}",
                external.validators.len()
            );
            cat.merge(external);
        }
        Ok(cat)
    }

    /// Every entry of a phase, in catalog order.
    pub(crate) fn phase(&self, phase: PhaseName) -> impl Iterator<Item = &Validator> {
        self.validators
            .iter()
            .filter(move |v| v.phase_name() == Some(phase))
    }
}

/// What a run will do: the phases, the catalog and the recipe that chooses
/// checks from it.
pub(crate) struct Plan<'a> {
    pub phases: Vec<PhaseName>,
    pub catalog: &'a ValidatorCatalog,
    pub recipe: &'a RecipeResult,
    pub version: String,
}

impl Plan<'_> {
    /// The catalog checks a phase runs against a cluster: those the recipe
    /// names, in catalog order. Names the catalog lacks are dropped.
    pub(crate) fn checks(&self, phase: PhaseName) -> Vec<&Validator> {
        let declared = phase.of(self.recipe).map(|p| &p.checks[..]).unwrap_or(&[]);
        self.catalog
            .phase(phase)
            .filter(|v| declared.iter().any(|d| d == &v.name))
            .collect()
    }

    /// Warnings worth a log line before anything runs.
    pub(crate) fn warnings(&self) -> Vec<String> {
        if self.recipe.validation.is_none() {
            return vec![
                "recipe has no validation section; requested phases will have no checks".into(),
            ];
        }
        let mut out = Vec::new();
        for &p in &self.phases {
            let declared = p.of(self.recipe).map(|x| &x.checks[..]).unwrap_or(&[]);
            if declared.is_empty() {
                out.push(format!("phase {p} declares no checks in the recipe"));
            }
            for d in declared {
                if !self.catalog.validators.iter().any(|v| &v.name == d) {
                    out.push(format!(
                        "phase {p}: check {d:?} is not in the validator catalog and will not run"
                    ));
                }
            }
        }
        out
    }

    /// A phase that does not run: every catalog entry of it, skipped.
    pub(crate) fn skipped(&self, phase: PhaseName, message: &str, now: SystemTime) -> Report {
        let tests = self
            .catalog
            .phase(phase)
            .map(|v| Test::skipped(&v.name, &[phase.as_str()], message))
            .collect();
        Report::build(&self.version, epoch_ms(now), tests, now)
    }

    /// `--no-cluster`: every selected phase, all skipped.
    pub(crate) fn no_cluster(&self) -> Vec<Report> {
        self.phases
            .iter()
            .map(|&p| self.skipped(p, MSG_NO_CLUSTER, SystemTime::now()))
            .collect()
    }

    /// Run the phases in order. A `failed` phase turns every later phase
    /// into skipped entries.
    pub(crate) async fn run(&self, runner: &mut Runner<'_>) -> Result<Vec<Report>> {
        let mut reports = Vec::new();
        let mut blocked = false;
        for &phase in &self.phases {
            if blocked {
                tracing::info!("skipping phase {phase}: a previous phase failed");
                reports.push(self.skipped(phase, MSG_PREVIOUS_FAILED, SystemTime::now()));
                continue;
            }
            let checks = self.checks(phase);
            tracing::info!("running phase {phase}: checks={}", checks.len());
            let start = epoch_ms(SystemTime::now());
            let mut tests = Vec::with_capacity(checks.len());
            for v in checks {
                tests.push(
                    runner
                        .run(v, phase)
                        .await
                        .context(format!("phase {phase}"))?,
                );
            }
            let report = Report::build(&self.version, start, tests, SystemTime::now());
            let status = report.phase_status();
            tracing::info!("phase {phase} finished: status={status:?}");
            blocked = status == PhaseStatus::Failed;
            reports.push(report);
            let done: Vec<(PhaseName, &Report)> =
                self.phases.iter().copied().zip(reports.iter()).collect();
            runner.publish_reports(&done).await;
        }
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::validate::check::DEFAULT_TIMEOUT;

    #[test]
    fn selection_is_canonical_and_deduplicated() {
        let s = |v: &[&str]| -> Result<Vec<PhaseName>> {
            let choices = v.iter().map(|s| s.parse()).collect::<Result<Vec<_>>>()?;
            Ok(select(&choices))
        };
        assert_eq!(s(&[]).unwrap(), PhaseName::ALL);
        assert_eq!(s(&["conformance", "all"]).unwrap(), PhaseName::ALL);
        assert_eq!(s(&["all", "conformance"]).unwrap(), PhaseName::ALL);
        assert_eq!(
            s(&["conformance", " deployment", "conformance"]).unwrap(),
            [PhaseName::Deployment, PhaseName::Conformance]
        );
        let e = s(&["readiness"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(
            e.message(),
            "invalid phase \"readiness\": must be one of: deployment, performance, conformance, all"
        );
    }

    #[test]
    fn embedded_catalog_is_in_reference_order() {
        let cat = ValidatorCatalog::load(Catalog::embedded().unwrap()).unwrap();
        let names = |p| cat.phase(p).map(|v| v.name.as_str()).collect::<Vec<_>>();
        assert_eq!(
            names(PhaseName::Deployment),
            [
                "operator-health",
                "expected-resources",
                "gpu-operator-version",
                "check-nvidia-smi"
            ]
        );
        assert_eq!(names(PhaseName::Performance), ["nccl-all-reduce-bw"]);
        assert_eq!(names(PhaseName::Conformance).len(), 11);
        let t = |n: &str| {
            cat.validators
                .iter()
                .find(|v| v.name == n)
                .unwrap()
                .timeout()
        };
        assert_eq!(t("check-nvidia-smi"), Duration::from_secs(600));
        assert_eq!(t("nccl-all-reduce-bw"), Duration::from_secs(1800));
    }

    #[test]
    fn catalog_documents_are_checked_and_merge_by_name() {
        let doc = |body: &str| {
            format!("apiVersion: aicr.nvidia.com/v1\nkind: ValidatorCatalog\nvalidators:\n{body}")
        };
        let bad = [
            (
                "apiVersion: v1\nkind: ValidatorCatalog\n".to_string(),
                "invalid apiVersion",
            ),
            (
                doc("  - {name: a, phase: readiness, image: x}\n"),
                "invalid phase",
            ),
            (
                doc("  - {name: a, phase: deployment, image: ''}\n"),
                "has no image",
            ),
            (
                doc(
                    "  - {name: a, phase: deployment, image: x}\n  - {name: a, phase: deployment, image: y}\n",
                ),
                "duplicate",
            ),
            (
                doc("  - {name: a, phase: deployment, image: x, timeout: soon}\n"),
                "invalid timeout",
            ),
        ];
        for (text, want) in bad {
            let e = ValidatorCatalog::parse(&text).unwrap_err();
            assert!(e.message().contains(want), "{e}");
        }
        let mut a = ValidatorCatalog::parse(&doc(
            "  - {name: a, phase: deployment, image: x}\n  - {name: b, phase: deployment, image: x}\n",
        ))
        .unwrap();
        a.merge(
            ValidatorCatalog::parse(&doc(
                "  - {name: c, phase: deployment, image: z}\n  - {name: a, phase: deployment, image: y, timeout: 3s}\n",
            ))
            .unwrap(),
        );
        let got: Vec<_> = a
            .validators
            .iter()
            .map(|v| (v.name.as_str(), v.image.as_str()))
            .collect();
        assert_eq!(got, [("a", "y"), ("b", "x"), ("c", "z")]);
        assert_eq!(a.validators[0].timeout(), Duration::from_secs(3));
        assert_eq!(a.validators[1].timeout(), DEFAULT_TIMEOUT);
    }
}
