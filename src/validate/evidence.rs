//! CNCF AI conformance evidence rendered from a CTRF report
//! (`--evidence-dir`): one markdown file per requirement whose checks ran,
//! and an `index.md` that lists them.
//!
//! Owns the mapping from checks to requirements and the markdown; reads only
//! the report and writes only into the directory it is given.

use std::path::Path;
use std::time::SystemTime;

use crate::error::{Error, Result};

use super::ctrf::{Report, Status, Test};

/// A requirement, the checks that evidence it, its file and the
/// `--feature` names that select it for `--cncf-submission`.
struct Requirement {
    id: &'static str,
    features: &'static [&'static str],
    file: &'static str,
    title: &'static str,
    checks: &'static [&'static str],
    description: &'static str,
}

const REQUIREMENTS: [Requirement; 8] = [
    Requirement {
        id: "dra_support",
        features: &["dra-support", "dra"],
        file: "dra-support.md",
        title: "Dynamic Resource Allocation",
        checks: &["dra-support"],
        description: "Accelerators are requested and allocated through Dynamic Resource Allocation claims.",
    },
    Requirement {
        id: "gang_scheduling",
        features: &["gang-scheduling", "gang"],
        file: "gang-scheduling.md",
        title: "Gang Scheduling",
        checks: &["gang-scheduling"],
        description: "A group of pods that must run together is scheduled all at once or not at all.",
    },
    Requirement {
        id: "accelerator_metrics",
        features: &["accelerator-metrics", "metrics"],
        file: "accelerator-metrics.md",
        title: "Accelerator Metrics",
        checks: &["accelerator-metrics", "ai-service-metrics"],
        description: "Accelerator utilisation, memory, temperature and power are exported and collected for AI services.",
    },
    Requirement {
        id: "ai_inference",
        features: &["inference-gateway", "gateway"],
        file: "inference-gateway.md",
        title: "AI Inference Gateway",
        checks: &["inference-gateway"],
        description: "An inference gateway routes traffic to model servers through the Gateway API.",
    },
    Requirement {
        id: "pod_autoscaling",
        features: &["pod-autoscaling", "hpa"],
        file: "pod-autoscaling.md",
        title: "Pod Autoscaling",
        checks: &["pod-autoscaling"],
        description: "Workloads scale horizontally on accelerator metrics.",
    },
    Requirement {
        id: "cluster_autoscaling",
        features: &["cluster-autoscaling"],
        file: "cluster-autoscaling.md",
        title: "Cluster Autoscaling",
        checks: &["cluster-autoscaling"],
        description: "Accelerator node capacity grows and shrinks with demand.",
    },
    Requirement {
        id: "robust_controller",
        features: &["robust-operator", "operator"],
        file: "robust-operator.md",
        title: "Robust AI Operator",
        checks: &["robust-controller"],
        description: "The AI workload operator runs and its admission webhooks are served.",
    },
    Requirement {
        id: "secure_accelerator_access",
        features: &["secure-access", "secure"],
        file: "secure-accelerator-access.md",
        title: "Secure Accelerator Access",
        checks: &["secure-accelerator-access"],
        description: "Workloads reach accelerators only through their claims, never through host device mounts.",
    },
];

/// `--feature` values to the checks that collect their evidence, in
/// requirement order; none or `all` means every feature.
pub fn feature_checks(values: &[String]) -> Result<Vec<&'static str>> {
    let all = values.is_empty() || values.iter().any(|v| v.trim() == "all");
    let mut chosen: Vec<&Requirement> = Vec::new();
    for v in values.iter().map(|v| v.trim()).filter(|v| *v != "all") {
        let Some(req) = REQUIREMENTS.iter().find(|r| r.features.contains(&v)) else {
            let valid: Vec<&str> = REQUIREMENTS.iter().map(|r| r.features[0]).collect();
            return Err(Error::invalid(format!(
                "unknown feature {v:?}; valid features: {}, all",
                valid.join(", ")
            )));
        };
        if !chosen.iter().any(|c| c.id == req.id) {
            chosen.push(req);
        }
    }
    Ok(REQUIREMENTS
        .iter()
        .filter(|r| all || chosen.iter().any(|c| c.id == r.id))
        .flat_map(|r| r.checks.iter().copied())
        .collect())
}

fn requirement_of(check: &str) -> Option<&'static Requirement> {
    REQUIREMENTS.iter().find(|r| r.checks.contains(&check))
}

/// `other` results (crashes, timeouts) are not evidence of conformance.
fn group_result(tests: &[&Test]) -> &'static str {
    if tests
        .iter()
        .any(|t| matches!(t.status, Status::Failed | Status::Other))
    {
        "FAILED"
    } else {
        "PASSED"
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::Pending => "pending",
        Status::Other => "other",
    }
}

/// The evidence files for a report, in order of first appearance, then
/// `index.md`; empty when no requirement has a check that ran.
pub(crate) fn render(report: &Report, now: SystemTime) -> Vec<(String, String)> {
    let generated = humantime::format_rfc3339_seconds(now).to_string();
    let mut groups: Vec<(&Requirement, Vec<&Test>)> = Vec::new();
    for t in report.tests() {
        if t.status == Status::Skipped {
            continue;
        }
        let Some(req) = requirement_of(&t.name) else {
            continue;
        };
        match groups.iter_mut().find(|(r, _)| r.id == req.id) {
            Some((_, tests)) => tests.push(t),
            None => groups.push((req, vec![t])),
        }
    }
    if groups.is_empty() {
        return Vec::new();
    }
    let mut files = Vec::new();
    let mut index = format!(
        "# CNCF AI Conformance Evidence\n\nGenerated: {generated}\n\n| # | Requirement | Title | Result | Evidence |\n|---|---|---|---|---|\n"
    );
    for (i, (req, tests)) in groups.iter().enumerate() {
        let result = group_result(tests);
        index.push_str(&format!(
            "| {} | `{}` | {} | {result} | [{}]({}) |\n",
            i + 1,
            req.id,
            req.title,
            req.file,
            req.file
        ));
        let mut md = format!(
            "# {}\n\nGenerated: {generated}\n\nRequirement: `{}`\n\nResult: **{result}**\n\n{}\n",
            req.title, req.id, req.description
        );
        for t in tests {
            md.push_str(&format!(
                "\n## {}\n\nStatus: {}\n\nDuration: {}ms\n",
                t.name,
                status_word(t.status),
                t.duration
            ));
            if !t.message.is_empty() {
                md.push_str(&format!("\n### Error\n\n```\n{}\n```\n", t.message));
            }
            if !t.stdout.is_empty() {
                md.push_str(&format!(
                    "\n### Evidence Output\n\n```\n{}\n```\n",
                    t.stdout.join("\n")
                ));
            }
        }
        files.push((req.file.to_string(), md));
    }
    files.push(("index.md".to_string(), index));
    files
}

/// Write the evidence into `dir` (created if needed). Returns how many
/// files were written; zero, with a warning, when nothing maps.
pub fn write(dir: &Path, report: &Report) -> Result<usize> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::internal(format!(
            "failed to render evidence into {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| fail(&e))?;
    }
    if report.tests().is_empty() {
        tracing::warn!("no tests in the report; no evidence written");
        return Ok(0);
    }
    let files = render(report, SystemTime::now());
    if files.is_empty() {
        tracing::warn!(
            "no conformance check ran (all skipped or none selected); no evidence written to {}",
            dir.display()
        );
        return Ok(0);
    }
    for (name, text) in &files {
        crate::sink::write_file_atomic(&dir.join(name), text.as_bytes()).map_err(|e| fail(&e))?;
    }
    tracing::info!(
        "evidence written: dir={} files={}",
        dir.display(),
        files.len()
    );
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(name: &str, status: Status) -> Test {
        Test {
            name: name.into(),
            status,
            duration: 1200,
            suite: vec!["conformance".into()],
            message: if status == Status::Failed {
                "boom".into()
            } else {
                String::new()
            },
            stdout: vec!["line 1".into()],
        }
    }

    #[test]
    fn groups_by_requirement_in_order_of_appearance() {
        let report = Report::build(
            "dev",
            1,
            vec![
                t("platform-health", Status::Passed),
                t("ai-service-metrics", Status::Failed),
                t("dra-support", Status::Passed),
                t("accelerator-metrics", Status::Passed),
                t("gang-scheduling", Status::Skipped),
            ],
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let files = render(&report, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["accelerator-metrics.md", "dra-support.md", "index.md"]
        );
        let metrics = &files[0].1;
        assert!(metrics.contains("Result: **FAILED**"));
        assert!(metrics.contains("## ai-service-metrics"));
        assert!(metrics.contains("## accelerator-metrics"));
        assert!(metrics.contains("### Error\n\n```\nboom\n```"));
        assert!(metrics.contains("Duration: 1200ms"));
        assert!(metrics.contains("Generated: 2023-11-14T22:13:20Z"));
        let index = &files[2].1;
        assert!(index.contains("| 1 | `accelerator_metrics` | Accelerator Metrics | FAILED | [accelerator-metrics.md](accelerator-metrics.md) |"));
        assert!(index.contains("| 2 | `dra_support` |"));
    }

    #[test]
    fn features_select_checks_by_name_or_alias() {
        let f = |v: &[&str]| feature_checks(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(f(&[]).unwrap().len(), 9);
        assert_eq!(f(&["all", "hpa"]).unwrap().len(), 9);
        assert_eq!(
            f(&["operator", "metrics", "accelerator-metrics"]).unwrap(),
            [
                "accelerator-metrics",
                "ai-service-metrics",
                "robust-controller"
            ]
        );
        let e = f(&["gpus"]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        assert!(
            e.message().starts_with(
                "unknown feature \"gpus\"; valid features: dra-support, gang-scheduling"
            )
        );
    }

    #[test]
    fn nothing_to_say_writes_nothing() {
        let report = Report::build(
            "dev",
            1,
            vec![t("dra-support", Status::Skipped)],
            SystemTime::now(),
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("evidence");
        assert_eq!(write(&out, &report).unwrap(), 0);
        assert!(out.is_dir());
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }
}
